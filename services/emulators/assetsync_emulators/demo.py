"""`assetsync up --demo`: the whole stack against the project's emulators, with realistic data."""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from assetsync.bus import Publisher
from assetsync.config import Settings, deep_merge, load_settings
from assetsync.events import Snapshot, TaskName
from assetsync.outcome import headline
from assetsync.stack import Stack
from assetsync.tasks import TaskTimeout, request_task

from assetsync_emulators.alternative_me import AlternativeMeEmulator
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, BinanceEmulator, create_app
from assetsync_emulators.common import serve_in_thread
from assetsync_emulators.ecb import EcbEmulator
from assetsync_emulators.feishu import FeishuEmulator
from assetsync_emulators.feishu_bot import BotEmulator
from assetsync_emulators.xueqiu import DEMO_FUND_HOLDINGS, XueqiuEmulator

log = logging.getLogger("assetsync.demo")
HISTORY_DAYS = 90
DAY_MS = 86_400_000


async def start_demo(settings: Settings, stack: AsyncExitStack) -> Settings:
    """Serve the Binance, Xueqiu/Danjuan, Feishu, group-bot, ECB and alternative.me emulators; settings pointing at them."""
    binance_url = stack.enter_context(serve_in_thread(create_app(BinanceEmulator(seed=1))))
    xueqiu = XueqiuEmulator.with_defaults()
    xueqiu_url = stack.enter_context(serve_in_thread(xueqiu.app))
    feishu = FeishuEmulator()
    # The user's hand-kept fund rows in 持仓, as the original tool expects funds to be discovered.
    names = {
        "SH510300": "沪深300ETF",
        "SZ159915": "创业板ETF",
        "110011": "易方达优质精选",
        "161725": "招商中证白酒",
    }
    feishu.seed_demo(
        [
            (h["symbol"], names.get(h["symbol"], h["symbol"]), h["quantity"], h["avg_cost"])
            for h in DEMO_FUND_HOLDINGS
        ]
    )
    feishu_url = stack.enter_context(serve_in_thread(feishu.app))
    bot = BotEmulator()
    bot_url = stack.enter_context(serve_in_thread(bot.app))
    # USDT→CNY for the 历史 totals comes from the emulated ECB reference rates, as it would for real.
    ecb = EcbEmulator()
    ecb_url = stack.enter_context(serve_in_thread(ecb.app))
    # FG001 from the emulated alternative.me fear & greed API (the watch list is the default one).
    fng_url = stack.enter_context(serve_in_thread(AlternativeMeEmulator().app))
    overrides: dict[str, Any] = {
        "mcp_server": {"app_id": feishu.app_id, "app_secret": feishu.app_secret},
        "asset_sync": {
            "binance": {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": binance_url},
            "feishu": {"app_token": feishu.app_token, "base_url": feishu_url},
            "alerts": {"enabled": True, "feishu_webhook": bot.url(bot_url), "alert_on_partial_success": True},
            "fx": {"source": "ecb", "base_url": ecb_url},
            # 90 days of hourly klines, so /portfolio's price charts and history are full.
            "assets": {"crypto": {"kline_backfill_hours": HISTORY_DAYS * 24}},
        },
        "sync_gateway": {"site_id": "demo"},
        "market": {"fear_greed": {"base_url": fng_url}},
    }
    deep_merge(overrides, xueqiu.config_overrides(xueqiu_url, with_funds=False))
    print(
        f"  emulators: binance {binance_url}  xueqiu {xueqiu_url}  feishu {feishu_url}  bot {bot_url}  ecb {ecb_url}"
        f"  alternative.me {fng_url}"
    )
    return load_settings(
        settings.config_path,
        data_dir=settings.data_dir,
        log_dir=settings.log_dir,
        overrides=overrides,
        demo=True,
    )


async def kick_off(stack: Stack) -> asyncio.Task[None]:
    """Run the first crypto and fund syncs, then a snapshot, in the background; print each outcome."""
    assert stack.rt is not None
    rt = stack.rt

    async def one(task: TaskName) -> None:
        try:
            result, _ = await request_task(rt, task, timeout=300)
        except TaskTimeout as exc:
            print(f"  demo {task}: {exc}", flush=True)
            return
        print(f"  demo {task}: {result.status}, {headline(result)}", flush=True)

    async def run() -> None:
        running = {p.name for p in stack.parts if p.state == "running"}
        first = [
            t for t, owner in (("crypto", "collector-crypto"), ("fund", "collector-fund")) if owner in running
        ]
        await asyncio.gather(*(one(t) for t in first))  # type: ignore[arg-type]
        # Today's snapshot first: it fetches the (emulated) ECB rates the history is valued with.
        await one("snapshot")
        try:
            n = await seed_history(rt.settings, rt.publisher)
            print(f"  demo history: {n} daily snapshots from the {HISTORY_DAYS} days of klines", flush=True)
        except Exception as exc:  # the demo runs on without its history
            log.warning("demo history not seeded: %s", exc)
        print("  demo data is in: the store, the emulated Feishu tables and the gateway feeds", flush=True)

    task = asyncio.create_task(run(), name="demo-kick-off")
    task.add_done_callback(_report)
    return task


async def seed_history(
    settings: Settings, publisher: Publisher, *, days: int = HISTORY_DAYS, wait: float = 60.0
) -> int:
    """Publish a daily snapshot for each of the past `days` days: today's holdings at each day's close.

    The store writes them like any snapshot (and the feishu-writer fills 历史), so /portfolio's net
    worth chart is full on first start. Waits for the store to have the backfilled klines.
    """
    from assetsync_store import views

    tz = ZoneInfo(settings.timezone)
    today = datetime.now(tz).date()
    first = today - timedelta(days=days)
    since = int(datetime.combine(first, datetime.min.time(), tz).timestamp() * 1000)

    def read() -> tuple[views.Valuation, list[views.HoldingRow], dict[str, list[tuple[int, float]]]] | None:
        try:
            conn = views.open_readonly(settings.db_path)
        except views.StoreNotFound:
            return None
        try:
            val = views.valuation_for(conn, settings)
            rows = views.holdings(conn, val, now_ms=int(time.time() * 1000))
            closes: dict[str, list[tuple[int, float]]] = {}
            for h in rows:
                if h.asset_type == "crypto" and h.value_base is not None:
                    got = conn.execute(
                        "SELECT open_time + 3600000, close FROM klines WHERE source = ? AND symbol = ? "
                        "AND interval = '1h' AND open_time >= ? ORDER BY open_time",
                        (h.source, f"{h.asset}/{h.currency}", since),
                    ).fetchall()
                    if got:  # assets priced through another market keep today's value
                        closes[h.asset] = got
            if not closes or max(len(c) for c in closes.values()) < (days - 1) * 24:
                return None  # the backfill is not stored yet
            return val, rows, closes
        finally:
            conn.close()

    deadline = time.monotonic() + wait
    got = await asyncio.to_thread(read)
    while got is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {days} days of klines in {settings.db_path} after {wait:.0f}s")
        await asyncio.sleep(1.0)
        got = await asyncio.to_thread(read)
    val, rows, closes = got
    n = 0
    for k in range(days):
        day = first + timedelta(days=k)
        end = int(datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp() * 1000)
        value = cost = 0.0
        by_cur: dict[str, float] = {}
        for h in rows:
            rate = val.rate(h.currency)
            if h.value is None or rate is None:
                continue
            amount = h.value
            series = closes.get(h.asset)
            if series:
                i = bisect.bisect_right(series, (end, float("inf"))) - 1
                if i < 0:
                    continue
                amount = h.quantity * series[i][1]
            by_cur[h.currency] = by_cur.get(h.currency, 0.0) + amount
            value += amount * rate
            cost += (h.total_cost if h.total_cost is not None else h.value) * rate
        await publisher.publish(
            Snapshot(
                date=day.isoformat(),
                base_currency=val.base_currency,
                total_value=round(value, 8),
                total_cost=round(cost, 8),
                total_pnl=round(value - cost, 8),
                pnl_pct=round((value - cost) / cost * 100.0, 6) if cost else None,
                asset_count=len(rows),
                taken_at=end - 1,
                command_id="demo-history",
                by_currency={c: round(v, 8) for c, v in sorted(by_cur.items())},
            )
        )
        n += 1
    await publisher.flush()
    return n


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("demo kick-off failed: %s", task.exception())

"""`assetsync up --demo`: the whole stack against the project's emulators, with realistic data."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from assetsync.bus import Publisher
from assetsync.config import Settings, deep_merge, load_settings
from assetsync.endpoints import SEED_ENDPOINTS
from assetsync.events import Snapshot, TaskName
from assetsync.files import atomic_write
from assetsync.outcome import headline
from assetsync.secrets import mask_urls
from assetsync.stack import Stack
from assetsync.tasks import TaskTimeout, request_task

from assetsync_emulators.alternative_me import AlternativeMeEmulator
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, BinanceEmulator, create_app
from assetsync_emulators.common import serve_in_thread
from assetsync_emulators.demo_site import SITE_B_ID, SiteB, run_site_b
from assetsync_emulators.ecb import EcbEmulator
from assetsync_emulators.feishu import FeishuEmulator
from assetsync_emulators.feishu_bot import BotEmulator
from assetsync_emulators.okx import DEMO_API_KEY as OKX_API_KEY
from assetsync_emulators.okx import DEMO_API_SECRET as OKX_API_SECRET
from assetsync_emulators.okx import DEMO_PASSPHRASE as OKX_PASSPHRASE
from assetsync_emulators.okx import OkxEmulator
from assetsync_emulators.okx import create_app as create_okx_app
from assetsync_emulators.upstream import UpstreamEmulator, registry_entries
from assetsync_emulators.xueqiu import DEMO_FUND_HOLDINGS, XueqiuEmulator

log = logging.getLogger("assetsync.demo")
HISTORY_DAYS = 90
DAY_MS = 86_400_000
SITE_B_SYNC_INTERVAL = 30.0  # seconds between the demo receiver's pulls of site B


async def start_demo(settings: Settings, stack: AsyncExitStack) -> Settings:
    """Serve the emulators and site B (a second gateway the demo's receiver pulls); settings for them."""
    binance_url = stack.enter_context(serve_in_thread(create_app(BinanceEmulator(seed=1))))
    # The OKX demo account also holds BTC: 持仓 shows it as `BTC` (Binance) and `BTC@OKX`.
    okx_url = stack.enter_context(serve_in_thread(create_okx_app(OkxEmulator(seed=1))))
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
    upstream_url = stack.enter_context(serve_in_thread(UpstreamEmulator().app))
    registry = write_upstream_registry(settings, upstream_url)
    # FG001 from the emulated alternative.me fear & greed API (the watch list is the default one).
    fng_url = stack.enter_context(serve_in_thread(AlternativeMeEmulator().app))
    overrides: dict[str, Any] = {
        "mcp_server": {"app_id": feishu.app_id, "app_secret": feishu.app_secret},
        "asset_sync": {
            "binance": {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": binance_url},
            "okx": {
                "api_key": OKX_API_KEY,
                "api_secret": OKX_API_SECRET,
                "password": OKX_PASSPHRASE,
                "base_url": okx_url,
            },
            "feishu": {"app_token": feishu.app_token, "base_url": feishu_url},
            "alerts": {"enabled": True, "feishu_webhook": bot.url(bot_url), "alert_on_partial_success": True},
            "fx": {"source": "ecb", "base_url": ecb_url},
            # 90 days of hourly klines, so /portfolio's price charts and history are full.
            "assets": {"crypto": {"kline_backfill_hours": HISTORY_DAYS * 24}},
        },
        # The original host's 9 strategy codes (AN…, ES…, PI001, V1V2001, ME001) from its emulator.
        "sync_gateway": {"site_id": "demo", "registry": str(registry)},
        "market": {"fear_greed": {"base_url": fng_url}},
    }
    deep_merge(overrides, xueqiu.config_overrides(xueqiu_url, with_funds=False))
    site_b = await start_site_b(settings, stack)
    deep_merge(overrides, site_b_overrides(site_b))
    print(
        f"  emulators: binance {binance_url}  okx {okx_url}  xueqiu {xueqiu_url}  feishu {feishu_url}  "
        f"bot {bot_url}  ecb {ecb_url}  alternative.me {fng_url}  upstream {upstream_url}  "
        f"site {site_b.site_id} {site_b.url}"
    )
    return load_settings(
        settings.config_path,
        data_dir=settings.data_dir,
        log_dir=settings.log_dir,
        overrides=overrides,
        demo=True,
    )


async def start_site_b(settings: Settings, stack: AsyncExitStack) -> SiteB:
    """Site B (`demo-b`): a second gateway with live feeds, under the demo's data dir; stopped with `up`."""
    return await stack.enter_async_context(run_site_b(settings.data_dir / "site-b", site_id=SITE_B_ID))


def site_b_overrides(site_b: SiteB) -> dict[str, Any]:
    """The demo gateway's receiver pulls site B automatically (its records land under origin demo-b)."""
    return {"sync_gateway": {"receiver": site_b.receiver_overrides(SITE_B_SYNC_INTERVAL)}}


def write_upstream_registry(settings: Settings, upstream_url: str) -> Path:
    """The demo gateway's registry: the 9 upstream codes polled from the emulated original host."""
    path = settings.data_dir / "demo" / "upstream-registry.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = registry_entries(upstream_url, coins=["BTC", "ETH", "SOL"])
    atomic_write(path, json.dumps(entries, ensure_ascii=False, indent=2).encode())
    return path


async def kick_off(stack: Stack) -> asyncio.Task[None]:
    """Run the first crypto, okx and fund syncs, then a snapshot, in the background; print each outcome."""
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
            t
            for t, owner in (
                ("crypto", "collector-crypto"),
                ("okx", "collector-okx"),
                ("fund", "collector-fund"),
            )
            if owner in running
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
        await report_catalog(stack)

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


def gateway_url(stack: Stack) -> str:
    """The demo gateway's base URL: the running service's, else the configured host and port."""
    url = str(getattr(stack.service("sync-gateway"), "url", "") or "")
    if url:
        return url
    gw = stack.settings.config.sync_gateway
    host = "127.0.0.1" if gw.host in ("", "0.0.0.0", "::") else gw.host
    return f"{'https' if gw.tls_cert else 'http'}://{host}:{gw.port}"


def catalog_line(catalog: dict[str, Any]) -> str:
    """One line on the demo gateway's catalog: its endpoints, the seed's codes in it and which hold data."""
    eps = {e["code"]: e for e in catalog.get("endpoints", [])}
    seed = [e.code for e in SEED_ENDPOINTS]
    listed = [c for c in seed if c in eps]
    empty = [c for c in listed if not eps[c].get("records")]
    missing = [c for c in seed if c not in eps]
    parts = [f"{len(listed)} of {len(seed)} seed codes" if missing else f"{len(seed)} seed codes"]
    parts.append(f"{len(listed) - len(empty)} with data")
    if empty:
        parts.append(f"no records yet: {' '.join(empty)}")
    if missing:
        parts.append(f"not in the catalog: {' '.join(missing)}")
    others = len(eps) - len(listed)
    return f"  catalog: {len(eps)} endpoints ({', '.join(parts)}; {others} others)"


async def report_catalog(stack: Stack, *, wait: float = 120.0, every: float = 2.0) -> None:
    """Once every seed code has a record (or after `wait` s), print the catalog line and site B's pulls."""
    import httpx

    if not stack.settings.config.sync_gateway.enabled:
        return
    base = gateway_url(stack)
    admin = stack.settings.config.sync_gateway.admin_token.get()
    headers = {"Authorization": f"Bearer {admin}"} if admin else {}
    seed = {e.code for e in SEED_ENDPOINTS}
    deadline = time.monotonic() + wait
    catalog: dict[str, Any] = {}
    pulled: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10.0) as client:
        while True:
            try:
                catalog = (await client.get("/api/data-sync/sender/catalog")).raise_for_status().json()
                pulled = (await client.get("/api/data-sync/receiver/status")).raise_for_status().json()
                error = ""
            except (httpx.HTTPError, ValueError) as exc:  # e.g. --processes: the gateway still starting
                error = mask_urls(f"{type(exc).__name__}: {exc}")
            full = {e["code"] for e in catalog.get("endpoints", []) if e.get("records")} >= seed
            if (not error and full and pulled.get("total_records")) or time.monotonic() > deadline:
                break
            await asyncio.sleep(every)
    if error:
        log.warning("demo catalog not read from %s: %s", mask_urls(base), error)
        return
    print(catalog_line(catalog), flush=True)
    print(site_b_line(pulled), flush=True)


def site_b_line(status: dict[str, Any]) -> str:
    """One line on what the demo's receiver pulled from site B (its receiver status document)."""
    last = f", last error: {status['last_error']}" if status.get("last_error") else ""
    return (
        f"  site {status.get('remote_site_id') or SITE_B_ID}: {status.get('total_records', 0)} records "
        f"pulled in {status.get('successful_syncs', 0)} endpoint syncs "
        f"(every {status.get('sync_interval', 0):g}s){last}"
    )


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("demo kick-off failed: %s", task.exception())

"""`assetsync up --demo`: the whole stack against the project's emulators, with realistic data."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from assetsync.config import Settings, deep_merge, load_settings
from assetsync.emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, BinanceEmulator, create_app
from assetsync.emulators.common import serve_in_thread
from assetsync.emulators.ecb import EcbEmulator
from assetsync.emulators.feishu import FeishuEmulator
from assetsync.emulators.feishu_bot import BotEmulator
from assetsync.emulators.xueqiu import DEMO_FUND_HOLDINGS, XueqiuEmulator
from assetsync.events import TaskName
from assetsync.outcome import headline
from assetsync.runner import Stack
from assetsync.tasks import TaskTimeout, request_task

log = logging.getLogger("assetsync.demo")


async def start_demo(settings: Settings, stack: AsyncExitStack) -> Settings:
    """Serve the Binance, Xueqiu/Danjuan, Feishu and group-bot emulators; settings pointing at them."""
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
    overrides: dict[str, Any] = {
        "mcp_server": {"app_id": feishu.app_id, "app_secret": feishu.app_secret},
        "asset_sync": {
            "binance": {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": binance_url},
            "feishu": {"app_token": feishu.app_token, "base_url": feishu_url},
            "alerts": {"enabled": True, "feishu_webhook": bot.url(bot_url), "alert_on_partial_success": True},
            "fx": {"source": "ecb", "base_url": ecb_url},
            "assets": {"crypto": {"kline_backfill_hours": 48}},
        },
        "sync_gateway": {"site_id": "demo"},
    }
    deep_merge(overrides, xueqiu.config_overrides(xueqiu_url, with_funds=False))
    print(
        f"  emulators: binance {binance_url}  xueqiu {xueqiu_url}  feishu {feishu_url}  bot {bot_url}  ecb {ecb_url}"
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
        await one("snapshot")
        print("  demo data is in: the store, the emulated Feishu tables and the gateway feeds", flush=True)

    task = asyncio.create_task(run(), name="demo-kick-off")
    task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("demo kick-off failed: %s", task.exception())

"""A renamed Feishu field: the writer names it, the alerter sends a card, the other tables are still written."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

from assetsync.embedded import EmbeddedNats
from assetsync.events import Holding, Snapshot
from assetsync.feishu import schema as fs
from assetsync.feishu.setup import setup_tables
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync_alerter.service import AlerterService
from assetsync_emulators.common import serve
from assetsync_emulators.feishu_bot import BotEmulator
from assetsync_feishu_writer.service import FeishuWriterService

from tests.feishu.support import client_for, feishu_site
from tests.support import wait_for


async def test_renamed_field_alerts_and_other_tables_written(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    bot = BotEmulator()
    async with feishu_site() as site, serve(bot.app) as bot_base:
        overrides = site.overrides()
        overrides["asset_sync"]["alerts"] = {"feishu_webhook": bot.url(bot_base)}
        settings = make_settings(overrides)
        async with client_for(settings) as c:
            await setup_tables(settings, c)
        site.emu.rename_field("持仓", fs.PNL_PCT, "收益率%")
        async with open_runtime(settings, nats_server.url, name="e2e", metrics=Metrics()) as rt:
            client = client_for(settings)
            async with AsyncExitStack() as stack:
                stack.push_async_callback(client.aclose)
                await FeishuWriterService(rt, linger=0.05, client=client).start(stack)
                await AlerterService(rt, linger=0.05).start(stack)
                await rt.publisher.publish(
                    Holding(
                        source="binance",
                        asset="BTC",
                        quantity=1.0,
                        currency="USDT",
                        as_of=1,
                        price=9.0,
                        avg_cost=8.0,
                    )
                )
                await rt.publisher.publish(
                    Snapshot(
                        date="2026-11-21",
                        base_currency="CNY",
                        total_value=9.0,
                        total_cost=8.0,
                        total_pnl=1.0,
                        pnl_pct=12.5,
                        asset_count=1,
                        taken_at=1,
                    )
                )
                await rt.publisher.flush()
                await wait_for(lambda: bot.cards(), timeout=15, what="alert card")
        card = json.dumps(bot.cards()[0], ensure_ascii=False)
        assert "持仓" in card and fs.PNL_PCT in card and bot.cards()[0]["header"]["template"] == "red"
        assert len(site.emu.rows("历史")) == 1 and site.emu.rows("持仓") == []

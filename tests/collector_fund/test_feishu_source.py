"""Funds discovered from the Feishu 持仓 table (emulated Open Platform), priced by the Xueqiu emulator."""

from __future__ import annotations

from typing import Any

from assetsync.config import ManualFund, XueqiuConf
from assetsync.events import Event, Holding
from assetsync.feishu import schema as fs
from assetsync_collector_fund.discovery import ManualFunds
from assetsync_collector_fund.feishu_source import FeishuFunds
from assetsync_collector_fund.snowball import SnowballClient
from assetsync_collector_fund.sync import FundSync
from assetsync_emulators.xueqiu import XueqiuEmulator

from tests.feishu.support import feishu_site


async def test_fund_rows_of_the_holdings_table_are_synced(
    make_settings: Any, emu: XueqiuEmulator, xq_conf: XueqiuConf
) -> None:
    async with feishu_site() as site:
        site.emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields])
        rows: list[dict[str, Any]] = [
            {fs.CODE: "SH510300", fs.ASSET_TYPE: fs.TYPE_FUND, fs.QUANTITY: 1200, fs.AVG_COST: 3.61},
            {fs.CODE: "005827", fs.ASSET_TYPE: fs.TYPE_FUND, fs.QUANTITY: 800.25},
            {fs.CODE: "BTC", fs.ASSET_TYPE: fs.TYPE_CRYPTO, fs.QUANTITY: 0.5, fs.AVG_COST: 50000},
            {fs.CODE: "161725", fs.ASSET_TYPE: fs.TYPE_FUND, fs.QUANTITY: 100, fs.AVG_COST: 1.0},
        ]
        for row in rows:
            site.emu.add_record(fs.HOLDINGS.name, row)
        settings = make_settings(site.overrides())
        feishu = site.client()
        try:
            source = FeishuFunds(feishu, settings)
            found = {p.code: p for p in await source.positions()}
            assert set(found) == {"SH510300", "005827", "161725"}  # the crypto row is not a fund
            assert (found["SH510300"].quantity, found["SH510300"].avg_cost) == (1200, 3.61)
            assert found["005827"].avg_cost is None and found["005827"].origin == "feishu"

            manual = ManualFunds([ManualFund(symbol="161725", avg_cost=0.95)])
            sync = FundSync(SnowballClient(xq_conf), [source, manual], [], clock=lambda: emu.clock())
            published: list[Event] = []

            async def publish(event: Event) -> None:
                published.append(event)

            result = await sync.run("fund-feishu", publish)
        finally:
            await feishu.aclose()
    assert result.status == "success", result
    holdings = {e.asset: e for e in published if isinstance(e, Holding)}
    assert set(holdings) == {"SH510300", "005827", "161725"}
    assert (holdings["SH510300"].quantity, holdings["SH510300"].cost_source) == (1200, "feishu")
    assert (holdings["161725"].quantity, holdings["161725"].avg_cost) == (100, 0.95)  # manual cost wins
    assert holdings["161725"].cost_source == "manual"

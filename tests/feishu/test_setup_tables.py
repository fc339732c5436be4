"""setup-tables and the 持仓 fund reader against the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from assetsync.feishu import schema as fs
from assetsync.feishu.holdings import read_fund_holdings
from assetsync.feishu.setup import run_setup_tables, setup_tables
from assetsync.feishu.tables import resolve_tables

from tests.feishu.support import client_for, feishu_site


async def test_creates_three_tables_with_every_field_and_type(make_settings: Any) -> None:
    async with feishu_site() as site:
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            report = await setup_tables(settings, c)
        assert [t.created for t in report.tables] == [True, True, True]
        for spec in fs.TABLES:
            table = site.emu.table(spec.name)
            assert [(f.name, f.type) for f in table.fields] == [(f.name, f.type) for f in spec.fields]
            assert table.fields[0].is_primary
        kind = site.emu.table("持仓").field_by_name("资产类型")
        status = site.emu.table("日志").field_by_name("状态")
        assert kind is not None and [o["name"] for o in (kind.property or {})["options"]] == [
            "加密货币",
            "基金",
        ]
        assert status is not None and [o["name"] for o in (status.property or {})["options"]] == [
            "success", "partial", "failed",
        ]  # fmt: skip
        assert "持仓" in report.text() and "created" in report.text()


async def test_is_idempotent_and_keeps_user_fields_and_rows(make_settings: Any) -> None:
    async with feishu_site() as site:
        # A 持仓 table the user made by hand: some of our fields, one of theirs, and a row.
        site.emu.add_table("持仓", [("资产代码", fs.TEXT), ("数量", fs.NUMBER), ("备注", fs.TEXT)])
        site.emu.add_record("持仓", {"资产代码": "SH510300", "数量": 1000, "备注": "mine"})
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            first = await setup_tables(settings, c)
            writes_after_first = site.emu.calls["fields.create"] + site.emu.calls["tables.create"]
            second = await setup_tables(settings, c)
        hold = first.tables[0]
        assert not hold.created and hold.added == [
            n for n in fs.HOLDINGS.names if n not in ("资产代码", "数量")
        ]
        assert [f.name for f in site.emu.table("持仓").fields][:3] == ["资产代码", "数量", "备注"]
        assert site.emu.rows("持仓") == [{"资产代码": "SH510300", "数量": 1000, "备注": "mine"}]
        assert not second.changed and "nothing to change" in second.text()
        assert site.emu.calls["fields.create"] + site.emu.calls["tables.create"] == writes_after_first


async def test_wrong_field_type_is_reported_not_changed(make_settings: Any) -> None:
    async with feishu_site() as site:
        site.emu.add_table("日志", [("时间", fs.DATETIME), ("耗时", fs.TEXT)])
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            report = await setup_tables(settings, c)
        logs = report.tables[2]
        assert any("耗时" in w and "expected number" in w for w in logs.warnings)
        assert site.emu.table("日志").field_by_name("耗时").type == fs.TEXT  # type: ignore[union-attr]


async def test_run_setup_tables_prints_and_exits(
    make_settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_setup_tables(make_settings()) == 2
    assert "mcp_server.app_id" in capsys.readouterr().out
    async with feishu_site() as site:
        settings = make_settings(site.overrides())
        assert await run_setup_tables(settings) == 0
        out = capsys.readouterr().out
        assert "历史" in out and "日志" in out and "Feishu tables ready" in out
        async with client_for(settings) as c:
            ids = await resolve_tables(c, settings)
        assert ids.holdings == site.emu.table("持仓").table_id
        bad = make_settings(site.overrides(tables={"history": "tblDoesNotExist"}))
        assert await run_setup_tables(bad) == 1
        assert "tblDoesNotExist" in capsys.readouterr().out


async def test_read_fund_holdings_returns_fund_rows_only(make_settings: Any) -> None:
    async with feishu_site() as site:
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            await setup_tables(settings, c)
            site.emu.add_record("持仓", {"资产代码": "BTC", "资产类型": "加密货币", "数量": 1.5})
            site.emu.add_record("持仓", {"资产代码": "sh510300", "资产名称": "沪深300ETF", "资产类型": "基金",
                                         "数量": 1000, "成本价": 3.5, "币种": "CNY"})  # fmt: skip
            site.emu.add_record("持仓", {"资产代码": "110011", "资产类型": "基金"})
            # Another site's fund in the combined view is not this site's to sync.
            site.emu.add_record("持仓", {"资产代码": "SH510500@office", "资产类型": "基金", "数量": 9})
            funds = await read_fund_holdings(c, settings)
        assert [(f.code, f.name, f.quantity, f.avg_cost) for f in funds] == [
            ("SH510300", "沪深300ETF", 1000.0, 3.5),
            ("110011", "", None, None),
        ]


async def test_emulator_demo_seed_matches_setup_tables(make_settings: Any) -> None:
    async with feishu_site() as site:
        site.emu.seed_demo([("110011", "易方达中小盘", 1000.0, 5.2)])
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            report = await setup_tables(settings, c)
            funds = await read_fund_holdings(c, settings)
        assert not report.changed and not any(t.warnings for t in report.tables)
        assert [(f.code, f.quantity, f.avg_cost) for f in funds] == [("110011", 1000.0, 5.2)]

"""FeishuWriter against the emulator: upserts, economy, durability and rejections."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from assetsync.config import deep_merge
from assetsync.events import Event, Holding, Snapshot, TaskResult
from assetsync.feishu import errors as fe
from assetsync.feishu import schema as fs
from assetsync.feishu.client import FeishuClient, RetryPolicy
from assetsync.feishu.setup import setup_tables
from assetsync_emulators.common import Fault
from assetsync_feishu_writer.writer import FeishuWriter

from tests.feishu.support import FeishuSite, client_for, feishu_site

T0 = 1_790_000_000_000


def holding(
    asset: str, qty: float = 1.0, price: float | None = 10.0, cost: float | None = 8.0, **kw: Any
) -> Holding:
    return Holding(source="binance", asset=asset, quantity=qty, currency="USDT", as_of=kw.pop("as_of", T0),
                   price=price, avg_cost=cost, **kw)  # fmt: skip


def result(cid: str, **kw: Any) -> TaskResult:
    base: dict[str, Any] = dict(command_id=cid, task="crypto", source="binance", status="success",
                                started_at=T0, finished_at=T0 + 1500, records=1, total=1)  # fmt: skip
    base.update(kw)
    return TaskResult(**base)


def snapshot(date: str, value: float, taken_at: int = T0) -> Snapshot:
    return Snapshot(date=date, base_currency="CNY", total_value=value, total_cost=100.0, total_pnl=value - 100.0,
                    pnl_pct=(value - 100.0), asset_count=2, taken_at=taken_at)  # fmt: skip


@asynccontextmanager
async def writer_on(
    make_settings: Any, **emu: Any
) -> AsyncIterator[tuple[FeishuSite, FeishuWriter, FeishuClient]]:
    async with feishu_site(**emu) as site:
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            await setup_tables(settings, c)
            w = FeishuWriter(c, settings)
            await w.start()
            site.emu.reset_counts()
            yield site, w, c


def by_code(site: FeishuSite) -> dict[str, dict[str, Any]]:
    return {r[fs.CODE]: r for r in site.emu.rows("持仓")}


async def test_upsert_writes_only_what_changed_in_batches(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        batch: list[Event] = [holding(f"C{i:04d}", qty=i + 1) for i in range(1500)]
        out = await w.apply(batch)
        assert out.created["持仓"] == 1500
        assert site.emu.calls["records.batch_create"] == 2  # ceil(1500 / 1000)
        site.emu.reset_counts()
        assert (
            await w.apply([holding(f"C{i:04d}", qty=i + 1, as_of=T0 + 60_000) for i in range(1500)])
        ).unchanged == 1500
        assert sum(site.emu.calls.values()) == 0, "nothing changed: no call at all"
        changed = [holding(f"C{i:04d}", qty=i + 1, price=11.0, as_of=T0 + 120_000) for i in range(40)]
        new = [holding("NEW1"), holding("NEW2")]
        await w.apply([*changed, *new])
        assert site.emu.calls["records.batch_update"] == 1 and site.emu.calls["records.batch_create"] == 1
        rows = by_code(site)
        assert len(rows) == 1502
        assert rows["C0000"][fs.PRICE] == 11.0 and rows["C0000"][fs.UPDATED] == T0 + 120_000
        assert rows["C0100"][fs.PRICE] == 10.0 and rows["C0100"][fs.UPDATED] == T0
        site.emu.reset_counts()
        # A late redelivery of an older run does not roll newer values back.
        await w.apply([holding("C0000", qty=1, price=9.0, as_of=T0 + 60_000)])
        assert sum(site.emu.calls.values()) == 0 and by_code(site)["C0000"][fs.PRICE] == 11.0


async def test_row_values_follow_contract_and_empty_cost_stays_empty(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        await w.apply(
            [holding("BTC", qty=2, price=100.0, cost=80.0, name="比特币"), holding("DOGE", cost=None)]
        )
        rows = by_code(site)
        btc, doge = rows["BTC"], rows["DOGE"]
        assert (btc[fs.VALUE], btc[fs.TOTAL_COST], btc[fs.PNL], btc[fs.PNL_PCT]) == (200.0, 160.0, 40.0, 25.0)
        assert btc[fs.ASSET_TYPE] == "加密货币" and btc[fs.NAME] == "比特币" and btc[fs.CURRENCY] == "USDT"
        assert (
            fs.AVG_COST not in doge
            and fs.TOTAL_COST not in doge
            and fs.PNL not in doge
            and fs.PNL_PCT not in doge
        )
        await w.apply([holding("BTC", qty=2, price=100.0, cost=None, as_of=T0 + 1)])
        assert fs.AVG_COST not in by_code(site)["BTC"] and fs.PNL_PCT not in by_code(site)["BTC"]


async def test_hand_added_fund_row_keeps_quantity_and_cost(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        rid = site.emu.add_record("持仓", {fs.CODE: "110011", fs.ASSET_TYPE: "基金", fs.QUANTITY: 1000, fs.AVG_COST: 1.2,
                                           fs.NAME: "易方达"})  # fmt: skip
        fund = Holding(source="xueqiu", asset="110011", quantity=1000.0, currency="CNY", as_of=T0, asset_type="fund",
                       price=1.5, avg_cost=1.2, cost_source="feishu")  # fmt: skip
        await w.apply([fund])
        row = site.emu.table("持仓").records[rid]
        assert row[fs.QUANTITY] == 1000 and row[fs.AVG_COST] == 1.2 and row[fs.NAME] == "易方达"
        assert (row[fs.PRICE], row[fs.VALUE], row[fs.TOTAL_COST], row[fs.PNL]) == (1.5, 1500.0, 1200.0, 300.0)
        assert math.isclose(row[fs.PNL_PCT], 25.0)
        assert len(site.emu.rows("持仓")) == 1, "found by 资产代码, not created again"
        # The user edits 数量 in Feishu; the next run's values come from there and 数量 is never overwritten.
        site.emu.table("持仓").records[rid][fs.QUANTITY] = 2000
        await w.apply([Holding(source="xueqiu", asset="110011", quantity=2000.0, currency="CNY", as_of=T0 + 1,
                               asset_type="fund", price=1.5, avg_cost=1.2, cost_source="feishu")])  # fmt: skip
        row = site.emu.table("持仓").records[rid]
        assert row[fs.QUANTITY] == 2000 and row[fs.VALUE] == 3000.0


async def test_code_typed_by_hand_matches_regardless_of_case_and_spaces(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        rid = site.emu.add_record("持仓", {fs.CODE: "sh510300 ", fs.ASSET_TYPE: "基金", fs.QUANTITY: 100})
        fund = Holding(source="xueqiu", asset="SH510300", quantity=100.0, currency="CNY", as_of=T0, asset_type="fund",
                       price=4.0, avg_cost=None, cost_source="feishu")  # fmt: skip
        await w.apply([fund])
        assert len(site.emu.rows("持仓")) == 1 and site.emu.table("持仓").records[rid][fs.VALUE] == 400.0


async def test_row_deleted_by_hand_is_recreated(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        await w.apply([holding("BTC"), holding("ETH"), snapshot("2026-11-20", 150.0)])
        table = site.emu.table("持仓")
        del table.records[next(rid for rid, r in table.records.items() if r[fs.CODE] == "BTC")]
        site.emu.table("历史").records.clear()
        out = await w.apply([holding("BTC", price=11.0, as_of=T0 + 1), holding("ETH", price=11.0, as_of=T0 + 1),
                             snapshot("2026-11-20", 160.0, taken_at=T0 + 1)])  # fmt: skip
        assert out.rejected == []
        assert sorted(by_code(site)) == ["BTC", "ETH"] and by_code(site)["BTC"][fs.PRICE] == 11.0
        assert [r[fs.TOTAL_VALUE] for r in site.emu.rows("历史")] == [160.0]


async def test_history_one_row_per_day_and_logs_one_per_run(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        await w.apply([snapshot("2026-11-20", 150.0), result("run-1")])
        await w.apply([snapshot("2026-11-20", 175.0, taken_at=T0 + 5), snapshot("2026-11-21", 180.0)])
        await w.apply([result("run-1"), result("run-2", status="failed", records=0, message="Binance down")])
        hist = sorted(site.emu.rows("历史"), key=lambda r: r[fs.SNAP_DATE])
        assert [r[fs.TOTAL_VALUE] for r in hist] == [175.0, 180.0]
        logs = site.emu.rows("日志")
        assert [(r[fs.LOG_STATUS], r[fs.LOG_TASK]) for r in logs] == [
            ("success", "crypto_sync"),
            ("failed", "crypto_sync"),
        ]
        assert logs[1][fs.LOG_ERROR] == "Binance down" and logs[0][fs.LOG_DURATION] == 1.5


async def test_feishu_down_for_a_sync_then_back_leaves_no_duplicates(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        await w.apply([holding("BTC")])
        site.emu.switch.add(Fault("5xx", path_prefix="/open-apis/bitable"))
        sync = [holding(f"C{i}", as_of=T0 + 1) for i in range(30)] + [
            holding("BTC", price=12.0, as_of=T0 + 1)
        ]
        with pytest.raises(fe.FeishuUnavailable):
            await w.apply(sync)
        site.emu.switch.clear()
        await w.apply(sync)  # the redelivered batch
        rows = site.emu.rows("持仓")
        assert len(rows) == 31 and len({r[fs.CODE] for r in rows}) == 31
        assert by_code(site)["BTC"][fs.PRICE] == 12.0


async def test_lost_answer_to_a_create_does_not_duplicate(make_settings: Any) -> None:
    async with feishu_site(write_latency=0.4) as site:
        settings = make_settings(site.overrides())
        async with client_for(settings, timeout=0.2, retry=RetryPolicy(2, 0.05, 0.1, 5.0)) as c:
            await setup_tables(settings, c)
            w = FeishuWriter(c, settings, fresh_for=0.0)
            await w.start()
            sync = [holding(f"C{i}") for i in range(20)]
            with pytest.raises(fe.FeishuError) as info:
                await w.apply(sync)  # times out while Feishu still writes the rows
            assert info.value.transient
        async with client_for(settings) as c2:
            w2 = FeishuWriter(c2, settings, fresh_for=0.0)
            await w2.start()
            await w2.apply(sync)
    codes = [r[fs.CODE] for r in site.emu.rows("持仓")]
    assert sorted(codes) == sorted(f"C{i}" for i in range(20))


async def test_renamed_field_rejects_holdings_but_other_tables_are_written(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        site.emu.rename_field("持仓", fs.PRICE, "最新价")
        out = await w.apply([holding("BTC"), snapshot("2026-11-20", 150.0), result("run-9")])
        assert [(r.index, r.table, r.field) for r in out.rejected] == [(0, "持仓", fs.PRICE)]
        assert fs.PRICE in out.rejected[0].reason and out.rejected[0].record_key.startswith(
            "holding:binance:BTC"
        )
        assert site.emu.rows("持仓") == []
        assert len(site.emu.rows("历史")) == 1 and len(site.emu.rows("日志")) == 1


async def test_crypto_result_removes_rows_no_longer_held(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        site.emu.add_record("持仓", {fs.CODE: "110011", fs.ASSET_TYPE: "基金", fs.QUANTITY: 1})
        await w.apply([holding("BTC"), holding("ETH"), holding("LUNA")])
        await w.apply([result("run-3", assets=["BTC", "ETH"])])
        assert sorted(by_code(site)) == ["110011", "BTC", "ETH"]
        await w.apply([result("run-4", status="failed", assets=None)])
        assert sorted(by_code(site)) == ["110011", "BTC", "ETH"]


async def test_other_sites_records_never_touch_this_sites_rows(make_settings: Any) -> None:
    async with writer_on(make_settings) as (site, w, _):
        await w.apply(
            [holding("BTC", 1.0), snapshot("2026-11-20", 150.0), result("crypto@slot", assets=["BTC"])]
        )
        before = (by_code(site), site.emu.rows("历史"), site.emu.rows("日志"))
        theirs: list[Event] = [
            msgspec.structs.replace(e, origin="office")
            for e in (
                holding("BTC", 9.0, as_of=T0 + 5),
                holding("SOL", 2.0, as_of=T0 + 5),
                snapshot("2026-11-20", 999.0, taken_at=T0 + 5),
                result("crypto@slot", assets=["SOL"], started_at=T0 + 5, finished_at=T0 + 6),
            )
        ]
        out = await w.apply(theirs)
        assert not out.rejected and not out.created and not out.updated and not out.deleted
        assert (by_code(site), site.emu.rows("历史"), site.emu.rows("日志")) == before


async def test_combined_view_adds_other_sites_rows_beside_this_sites(make_settings: Any) -> None:
    async with feishu_site() as site:
        overrides = site.overrides()
        deep_merge(overrides, {"asset_sync": {"views": {"combined": True}}})
        settings = make_settings(overrides)
        async with client_for(settings) as c:
            await setup_tables(settings, c)
            w = FeishuWriter(c, settings)
            await w.start()
            await w.apply([holding("BTC", 1.0)])
            office = [
                msgspec.structs.replace(e, origin="office")
                for e in (holding("BTC", 9.0, as_of=T0 + 5), holding("SOL", 2.0, as_of=T0 + 5))
            ]
            await w.apply(office)
            rows = by_code(site)
            assert {k: r[fs.QUANTITY] for k, r in rows.items()} == {
                "BTC": 1.0,
                "BTC@office": 9.0,
                "SOL@office": 2.0,
            }
            # The office's next complete run no longer lists SOL: only its row goes.
            gone = msgspec.structs.replace(
                result("c2", assets=["BTC"], started_at=T0 + 9, finished_at=T0 + 10), origin="office"
            )
            await w.apply([gone])
            assert set(by_code(site)) == {"BTC", "BTC@office"}
            assert site.emu.rows("日志") == []  # the office's runs are its own 日志
            # This site's run prunes this site's rows only.
            await w.apply([result("c3", assets=["ETH"], started_at=T0 + 20, finished_at=T0 + 21)])
            assert set(by_code(site)) == {"BTC@office"}

"""Pure row logic: §6 arithmetic, empty cells, diffs, user-owned fund cells, history days, log rows."""

from __future__ import annotations

from assetsync.events import AssetError, Holding, PriceTick, Snapshot, TaskResult
from assetsync.feishu import schema as fs
from assetsync_feishu_writer import rows


def holding(**kw: object) -> Holding:
    base: dict[str, object] = dict(
        source="binance", asset="BTC", quantity=2.0, currency="USDT", as_of=1_000, price=100.0, avg_cost=80.0
    )
    base.update(kw)
    return Holding(**base)  # type: ignore[arg-type]


def test_holding_cells_follow_the_accounting_rules() -> None:
    c = rows.holding_cells(holding(name="比特币"), None)
    assert c[fs.VALUE] == 200.0 and c[fs.TOTAL_COST] == 160.0 and c[fs.PNL] == 40.0 and c[fs.PNL_PCT] == 25.0
    assert c[fs.ASSET_TYPE] == "加密货币" and c[fs.CURRENCY] == "USDT" and c[fs.NAME] == "比特币"
    assert c[fs.UPDATED] == 1_000


def test_unknown_cost_or_price_leaves_cells_empty_not_zero() -> None:
    c = rows.holding_cells(holding(avg_cost=None), None)
    assert c[fs.AVG_COST] is None and c[fs.TOTAL_COST] is None and c[fs.PNL] is None and c[fs.PNL_PCT] is None
    created = rows.diff(c, None)
    assert fs.AVG_COST not in created and fs.PNL not in created and created[fs.VALUE] == 200.0
    unpriced = rows.holding_cells(holding(price=None), None)
    assert unpriced[fs.PRICE] is None and unpriced[fs.VALUE] is None and unpriced[fs.PNL] is None
    # A cost that disappears clears the filled cells (None = clear), it never writes 0.
    existing = rows.diff(rows.holding_cells(holding(), None), None)
    change = rows.diff(c, existing, stamp=fs.UPDATED)
    assert change[fs.AVG_COST] is None and change[fs.PNL_PCT] is None and change[fs.UPDATED] == 1_000


def test_zero_cost_has_no_percentage() -> None:
    c = rows.holding_cells(holding(avg_cost=0.0), None)
    assert c[fs.TOTAL_COST] == 0.0 and c[fs.PNL] == 200.0 and c[fs.PNL_PCT] is None


def test_unchanged_values_produce_no_change_even_with_a_new_timestamp() -> None:
    first = rows.diff(rows.holding_cells(holding(), None), None)
    again = rows.holding_cells(holding(as_of=2_000), first)
    assert rows.diff(again, first, stamp=fs.UPDATED) == {}
    moved = rows.holding_cells(holding(as_of=3_000, price=101.0), first)
    change = rows.diff(moved, first, stamp=fs.UPDATED)
    assert change == {fs.PRICE: 101.0, fs.VALUE: 202.0, fs.PNL: 42.0, fs.PNL_PCT: 26.25, fs.UPDATED: 3_000}


def test_hand_kept_fund_row_keeps_quantity_and_cost() -> None:
    row = {fs.CODE: "110011", fs.ASSET_TYPE: "基金", fs.QUANTITY: 1000, fs.AVG_COST: 1.2}
    h = holding(asset="110011", asset_type="fund", currency="CNY", quantity=1000.0, avg_cost=1.2, price=1.5,
                cost_source="feishu")  # fmt: skip
    c = rows.holding_cells(h, row)
    assert fs.QUANTITY not in c and fs.AVG_COST not in c
    assert (
        c[fs.VALUE] == 1500.0 and c[fs.TOTAL_COST] == 1200.0 and c[fs.PNL] == 300.0 and c[fs.PNL_PCT] == 25.0
    )
    manual = rows.holding_cells(holding(asset="110011", asset_type="fund", cost_source="manual"), row)
    assert manual[fs.QUANTITY] == 2.0  # a cost from the config file is the config's to set


def test_price_tick_updates_an_existing_row_with_its_own_quantity() -> None:
    row = {fs.CODE: "ETH", fs.QUANTITY: 3, fs.AVG_COST: 10.0, fs.UPDATED: 5_000}
    t = PriceTick(source="binance", asset="ETH", price=12.0, currency="USDT", ts=6_000)
    c = rows.tick_cells(t, row)
    assert c is not None and c[fs.VALUE] == 36.0 and c[fs.PNL] == 6.0 and c[fs.PNL_PCT] == 20.0
    old = PriceTick(source="binance", asset="ETH", price=9.0, currency="USDT", ts=4_000)
    assert rows.tick_cells(old, row) is None


def test_history_row_is_keyed_by_local_day() -> None:
    s = Snapshot(date="2026-11-22", base_currency="CNY", total_value=1000.0, total_cost=800.0, total_pnl=200.0,
                 pnl_pct=25.0, asset_count=3, taken_at=0)  # fmt: skip
    c = rows.history_cells(s, "Asia/Shanghai")
    assert rows.day_of(c[fs.SNAP_DATE], "Asia/Shanghai") == "2026-11-22"
    assert c[fs.SNAP_DATE] == 1_795_276_800_000  # 2026-11-22 00:00 +08:00
    assert c[fs.COUNT] == 3 and c[fs.SNAP_CURRENCY] == "CNY"


def test_log_row_names_failing_assets_and_duration() -> None:
    r = TaskResult(command_id="c1", task="crypto", source="binance", status="partial", started_at=1_000,
                   finished_at=3_500, records=9, total=10, errors=[AssetError(asset="DOGE", reason="no market")],
                   message="1 asset failed")  # fmt: skip
    c = rows.log_cells(r)
    assert c == {
        fs.LOG_TIME: 3_500, fs.LOG_SOURCE: "binance", fs.LOG_TASK: "crypto_sync", fs.LOG_STATUS: "partial",
        fs.LOG_RECORDS: 9, fs.LOG_DURATION: 2.5, fs.LOG_ERROR: "1 asset failed; DOGE: no market",
    }  # fmt: skip
    long = TaskResult(command_id="c2", task="fund", source="xueqiu", status="failed", started_at=0, finished_at=1,
                      message="x" * 5000)  # fmt: skip
    assert len(rows.log_cells(long)[fs.LOG_ERROR]) == rows.ERROR_TEXT_LIMIT

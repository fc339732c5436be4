"""The store: idempotent upserts, derived holding values, pruning, snapshot, backup and restore."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from assetsync import events as ev
from assetsync.tasks import request_task
from assetsync_store.backup import list_backups

from tests.store.conftest import StoreHarness
from tests.support import wait_for

T0 = 1_763_800_000_000


def holding(
    asset: str, qty: float, price: float | None, cost: float | None, as_of: int = T0, **kw: object
) -> ev.Holding:
    return ev.Holding(
        source=str(kw.get("source", "binance")),
        asset=asset,
        quantity=qty,
        price=price,
        avg_cost=cost,
        currency=str(kw.get("currency", "USDT")),
        as_of=as_of,
    )


async def test_redelivered_and_replayed_events_make_one_row(harness: StoreHarness) -> None:
    rt = harness.rt
    tick = ev.PriceTick(source="binance", asset="BTC", price=90000.0, currency="USDT", ts=T0)
    candles = [ev.Candle(T0 + i * 3_600_000, 1, 2, 0.5, 1.5, 10) for i in range(24)]
    batch = ev.KlineBatch(source="binance", symbol="BTC/USDT", interval="1h", candles=candles)
    trade = ev.Trade(
        source="binance", trade_id="42", symbol="BTC/USDT", side="buy", price=1, amount=2, cost=2, ts=T0
    )
    for e in (tick, batch, trade):
        # Raw publishes without Nats-Msg-Id: JetStream keeps both copies, the store must upsert.
        for _ in range(2):
            await rt.js.publish(rt.topo.subject_for(e), rt.codec.encode(e))
    await wait_for(lambda: harness.store.db.rows_written >= 52, what="rows written")
    assert await harness.count("price_history") == 1
    assert await harness.count("klines") == 24
    assert await harness.count("trades") == 1


async def test_holding_values_and_empty_cost(harness: StoreHarness) -> None:
    pub = harness.rt.publisher
    await pub.publish_many(
        [holding("BTC", 2, 100.0, 80.0), holding("DOGE", 1000, 0.1, None), holding("XYZ", 5, None, 1.0)]
    )

    async def three() -> bool:
        return await harness.count("holdings") == 3

    await wait_for(three)
    rows = {r["asset"]: r for r in await harness.rows("SELECT * FROM holdings")}
    assert rows["BTC"]["value"] == 200.0 and rows["BTC"]["total_cost"] == 160.0
    assert rows["BTC"]["pnl"] == 40.0 and rows["BTC"]["pnl_pct"] == 25.0
    assert rows["DOGE"]["total_cost"] is None and rows["DOGE"]["pnl"] is None
    assert rows["XYZ"]["value"] is None, "unpriced is never priced 0"


async def test_older_holding_never_overwrites_newer(harness: StoreHarness) -> None:
    pub = harness.rt.publisher
    await pub.publish_many(
        [holding("ETH", 3, 10.0, None, as_of=T0 + 10), holding("ETH", 1, 10.0, None, as_of=T0)]
    )
    await wait_for(lambda: harness.store.db.rows_written >= 2)
    rows = await harness.rows("SELECT quantity FROM holdings WHERE asset='ETH'")
    assert rows == [{"quantity": 3.0}]


async def test_complete_discovery_prunes_sold_assets(harness: StoreHarness) -> None:
    pub = harness.rt.publisher
    await pub.publish_many([holding("BTC", 1, 1.0, None), holding("SOLD", 1, 1.0, None)])
    await wait_for(lambda: harness.store.db.rows_written >= 2)
    result = ev.TaskResult(
        command_id="c1", task="crypto", source="binance", status="success", started_at=T0 + 5,
        finished_at=T0 + 6, records=1, total=1, assets=["BTC"],
    )  # fmt: skip
    await pub.publish_many([holding("BTC", 1, 2.0, None, as_of=T0 + 5), result])

    async def pruned() -> bool:
        return await harness.count("holdings") == 1 and await harness.count("sync_logs") == 1

    await wait_for(pruned, what="SOLD pruned")


async def test_snapshot_task_totals_in_base_currency(harness: StoreHarness) -> None:
    await harness.rt.publisher.publish_many(
        [holding("BTC", 2, 100.0, 80.0), holding("SH510300", 100, 4.0, 3.0, source="xueqiu", currency="CNY")]
    )
    await wait_for(lambda: harness.store.db.rows_written >= 2)
    result, stored = await request_task(harness.rt, "snapshot", timeout=30)
    assert result.status == "success" and stored
    rows = await harness.rows("SELECT * FROM snapshots")
    assert len(rows) == 1
    snap = rows[0]
    assert snap["total_value"] == 2 * 100 * 7.0 + 400.0
    assert snap["total_cost"] == 2 * 80 * 7.0 + 300.0
    assert snap["asset_count"] == 2
    # Re-running the same day updates that row, never a second one.
    result2, _ = await request_task(harness.rt, "snapshot", timeout=30)
    assert result2.status == "success"
    assert await harness.count("snapshots") == 1
    assert await harness.count("sync_logs", "task='snapshot'") == 2


async def test_snapshot_without_fx_rate_fails_naming_key(harness: StoreHarness) -> None:
    await harness.rt.publisher.publish_many([holding("BTC", 1, 1.0, None, currency="EUR")])
    await wait_for(lambda: harness.store.db.rows_written >= 1)
    result, _ = await request_task(harness.rt, "snapshot", timeout=30)
    assert result.status == "failed"
    assert "asset_sync.fx_rates" in result.message and "EUR" in result.message


async def test_backup_then_restore_and_corrupt_refused(harness: StoreHarness) -> None:
    pub = harness.rt.publisher
    await pub.publish_many([holding("BTC", 1, 1.0, None)])
    await wait_for(lambda: harness.store.db.rows_written >= 1)
    result, stored = await request_task(harness.rt, "backup", timeout=30)
    assert result.status == "success", result.message
    assert stored
    backups = list_backups(harness.rt.settings.backup_dir)
    assert len(backups) == 1 and backups[0].path.name.startswith("assets_")
    await wait_for(lambda: harness.count("backups", "ok=1"), what="backup result stored")

    # Change the live DB, then restore: the change is gone.
    await pub.publish_many([holding("ETH", 1, 1.0, None)])

    async def two() -> bool:
        return await harness.count("holdings") == 2

    await wait_for(two)
    corrupt = harness.rt.settings.data_dir / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x00garbage" * 500)
    bad, _ = await request_task(harness.rt, "restore", args={"path": str(corrupt)}, timeout=30)
    assert bad.status == "failed" and "restore refused" in bad.message
    assert await harness.count("holdings") == 2, "live DB untouched by a refused restore"

    good, _ = await request_task(harness.rt, "restore", args={"path": str(backups[0].path)}, timeout=30)
    assert good.status == "success", good.message
    assert [r["asset"] for r in await harness.rows("SELECT asset FROM holdings")] == ["BTC"]


async def test_backup_retention_removes_old_files(harness: StoreHarness) -> None:
    d: Path = harness.rt.settings.backup_dir
    d.mkdir(parents=True)
    old = d / "assets_20200101_010000.db"
    sqlite3.connect(old).close()
    result, _ = await request_task(harness.rt, "backup", timeout=30)
    assert result.status == "success"
    assert not old.exists()
    assert "removed 1 old" in result.message


async def test_backup_into_readonly_dir_fails_cleanly(harness: StoreHarness) -> None:
    d: Path = harness.rt.settings.backup_dir
    d.parent.mkdir(parents=True, exist_ok=True)
    d.write_text("a file where the backup directory should be")
    result, _ = await request_task(harness.rt, "backup", timeout=30)
    assert result.status == "failed"
    assert str(d) in result.message
    ok, _ = harness.store.health()
    assert ok, "a failed backup does not make the store unhealthy"


async def test_late_holding_of_a_sold_asset_is_not_written_back(harness: StoreHarness) -> None:
    pub = harness.rt.publisher
    result = ev.TaskResult(
        command_id="c2", task="crypto", source="binance", status="success", started_at=T0 + 5,
        finished_at=T0 + 6, records=1, total=1, assets=["BTC"],
    )  # fmt: skip
    # The result (on OPS) overtakes the holdings (on PORTFOLIO): different consumers, no order.
    await pub.publish_many([result])
    await wait_for(lambda: harness.count("sync_logs"), what="result stored")
    await pub.publish_many(
        [holding("SOLD", 1, 1.0, None, as_of=T0), holding("BTC", 1, 2.0, None, as_of=T0 + 5)]
    )

    async def btc_only() -> bool:
        return [r["asset"] for r in await harness.rows("SELECT asset FROM holdings")] == ["BTC"]

    await wait_for(btc_only, what="SOLD stays out, BTC in")

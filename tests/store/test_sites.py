"""Per-site data in the store (CONTRACTS §5.2): other sites' records beside this site's, never over them."""

from __future__ import annotations

import json
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec
from assetsync import events as ev
from assetsync.cli import main
from assetsync.embedded import EmbeddedNats
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync.tasks import request_task
from assetsync_store import schema
from assetsync_store.service import StoreService, build

from tests.store.conftest import StoreHarness
from tests.store.test_store import T0, holding
from tests.support import wait_for


def foreign(e: Any, site: str = "B") -> Any:
    """The event as received from another site's gateway."""
    return msgspec.structs.replace(e, origin=site, origin_seq=7)


def crypto_result(command_id: str, assets: list[str], at: int, origin: str = "") -> ev.TaskResult:
    return ev.TaskResult(
        command_id=command_id, task="crypto", source="binance", status="success", started_at=at,
        finished_at=at + 1, records=len(assets), total=len(assets), assets=assets, origin=origin,
    )  # fmt: skip


def test_v2_database_is_migrated_keeping_every_row(tmp_path: Path) -> None:
    db = tmp_path / "assets.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for script in schema.MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO holdings (asset, source, asset_type, currency, quantity, as_of) VALUES ('BTC','binance','crypto','USDT',1,5)"
    )
    conn.execute(
        "INSERT INTO trades (source, symbol, trade_id, side, price, amount, cost, ts) VALUES ('binance','BTC/USDT','1','buy',1,1,1,1)"
    )
    conn.execute(
        "INSERT INTO snapshots (date, base_currency, total_value, total_cost, total_pnl, asset_count, taken_at)"
        " VALUES ('2026-11-20','CNY',10,8,2,1,1)"
    )
    conn.execute(
        "INSERT INTO sync_logs (command_id, task, source, status, started_at, finished_at, duration, records, total)"
        " VALUES ('crypto@x','crypto','binance','success',1,2,1,1,1)"
    )
    conn.execute("INSERT INTO holding_sets (source, started_at, assets) VALUES ('binance', 1, '[\"BTC\"]')")
    assert schema.migrate(conn) == schema.LATEST
    for table in ("holdings", "trades", "snapshots", "sync_logs", "holding_sets", "orders"):
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        assert "origin" in cols, table
    assert conn.execute("SELECT origin, asset, quantity FROM holdings").fetchall() == [("", "BTC", 1.0)]
    assert conn.execute("SELECT count(*) FROM trades WHERE origin = ''").fetchone() == (1,)
    assert conn.execute("SELECT origin, total_value FROM snapshots").fetchall() == [("", 10.0)]
    assert conn.execute("SELECT origin, source FROM holding_sets").fetchall() == [("", "binance")]
    # The same keys may now exist once per site.
    conn.execute(
        "INSERT INTO holdings (asset, source, asset_type, currency, quantity, as_of, origin) VALUES ('BTC','binance','crypto','USDT',9,5,'B')"
    )
    conn.execute(
        "INSERT INTO sync_logs (command_id, task, source, status, started_at, finished_at, duration, records, total, origin)"
        " VALUES ('crypto@x','crypto','binance','success',1,2,1,1,1,'B')"
    )
    assert conn.execute("SELECT count(*) FROM holdings").fetchone() == (2,)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '%_v3'")] == []
    conn.close()


async def test_other_sites_records_never_replace_or_prune_this_sites(harness: StoreHarness) -> None:
    pub = harness.rt.publisher
    own_trade = ev.Trade(
        source="binance", trade_id="1", symbol="BTC/USDT", side="buy", price=1, amount=1, cost=1, ts=T0
    )
    await pub.publish_many(
        [
            holding("BTC", 1, 100.0, 80.0),
            holding("ETH", 2, 10.0, None),
            own_trade,
            foreign(holding("BTC", 5, 100.0, 90.0, as_of=T0 + 100)),
            foreign(holding("SOL", 3, 20.0, None, as_of=T0 + 100)),
            foreign(
                ev.Trade(
                    source="binance",
                    trade_id="1",
                    symbol="BTC/USDT",
                    side="sell",
                    price=2,
                    amount=2,
                    cost=4,
                    ts=T0,
                )
            ),
        ]
    )

    async def stored() -> bool:
        return await harness.count("holdings") == 4 and await harness.count("trades") == 2

    await wait_for(stored, what="both sites' rows")
    # Site B's complete run lists only BTC: its SOL goes, this site's ETH stays.
    await pub.publish_many([foreign(crypto_result("crypto@slot", ["BTC"], T0 + 200))])

    async def pruned() -> bool:
        return await harness.count("holdings", "origin = 'B'") == 1

    await wait_for(pruned, what="B's SOL pruned")
    own = await harness.rows("SELECT asset, quantity FROM holdings WHERE origin = '' ORDER BY asset")
    assert own == [{"asset": "BTC", "quantity": 1.0}, {"asset": "ETH", "quantity": 2.0}]
    # This site's run of the same slot id is its own log row, beside B's.
    await pub.publish_many([crypto_result("crypto@slot", ["BTC", "ETH"], T0 + 300)])

    async def two_logs() -> bool:
        return await harness.count("sync_logs", "command_id = 'crypto@slot'") == 2

    await wait_for(two_logs, what="one log row per site")
    # The snapshot counts this site's holdings only, and B's snapshot of the day is kept apart.
    result, stored_ok = await request_task(harness.rt, "snapshot", timeout=30)
    assert result.status == "success" and stored_ok
    snap = (await harness.rows("SELECT * FROM snapshots WHERE origin = ''"))[0]
    assert snap["asset_count"] == 2 and snap["total_value"] == 100 * 7.0 + 20 * 7.0
    await pub.publish_many(
        [
            foreign(
                ev.Snapshot(
                    date=snap["date"],
                    base_currency="CNY",
                    total_value=1.0,
                    total_cost=1.0,
                    total_pnl=0.0,
                    pnl_pct=0.0,
                    asset_count=9,
                    taken_at=snap["taken_at"] + 1,
                )
            )
        ]
    )

    async def both_snapshots() -> bool:
        return await harness.count("snapshots") == 2

    await wait_for(both_snapshots, what="B's snapshot beside A's")
    again = (await harness.rows("SELECT total_value FROM snapshots WHERE origin = ''"))[0]
    assert again["total_value"] == snap["total_value"]
    # Records of this site relayed back by a third site are this site's own, not a copy.
    site = harness.rt.settings.site_id
    await pub.publish_many([foreign(holding("ETH", 4, 10.0, None, as_of=T0 + 400), site)])

    async def eth_updated() -> bool:
        rows = await harness.rows("SELECT quantity FROM holdings WHERE origin = '' AND asset = 'ETH'")
        return rows == [{"quantity": 4.0}]

    await wait_for(eth_updated, what="own relayed record")


async def test_combined_view_totals_every_sites_holdings(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    settings = make_settings({"asset_sync": {"fx_rates": {"USDT": 7.0}, "views": {"combined": True}}})
    async with open_runtime(settings, nats_server.url, name="store-combined", metrics=Metrics()) as rt:
        rt.scheduling = False
        svc = build(rt)
        assert isinstance(svc, StoreService)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            await rt.publisher.publish_many(
                [holding("BTC", 1, 100.0, 80.0), foreign(holding("BTC", 2, 100.0, 50.0))]
            )

            async def two() -> bool:
                rows = await svc.db.fetchall("SELECT count(*) AS n FROM holdings")
                return bool(rows[0]["n"] == 2)

            await wait_for(two, what="both holdings")
            result, _ = await request_task(rt, "snapshot", timeout=30)
            assert result.status == "success"
            snap = dict((await svc.db.fetchall("SELECT * FROM snapshots"))[0])
            assert snap["total_value"] == 300 * 7.0 and snap["total_cost"] == 180 * 7.0
            assert snap["asset_count"] == 2


def test_holdings_cli_shows_this_site_or_another(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"sync_gateway": {"site_id": "home"}}))
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "assets.db", isolation_level=None)
    schema.migrate(conn)
    for origin, asset, qty in (("", "BTC", 1.5), ("office", "BTC", 4.0), ("office", "SH510300", 1000.0)):
        conn.execute(
            "INSERT INTO holdings (asset, source, asset_type, currency, quantity, price, value, as_of, origin)"
            " VALUES (?, 'binance', ?, 'USDT', ?, 2.0, ?, 1, ?)",
            (asset, "fund" if asset.startswith("SH") else "crypto", qty, qty * 2, origin),
        )
    conn.close()
    base = ["--config", str(cfg), "--data-dir", str(data)]
    assert main(["holdings", *base]) == 0
    out = capsys.readouterr().out
    assert "site home (this site): 1 holdings" in out and "BTC" in out
    assert main(["holdings", "--site", "office", "--json", *base]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["site"] == "office" and doc["own"] is False
    assert {h["asset"]: h["quantity"] for h in doc["holdings"]} == {"BTC": 4.0, "SH510300": 1000.0}
    assert doc["sites"] == {"home": 1, "office": 2}
    assert main(["holdings", "--site", "nowhere", *base]) == 1
    assert "office" in capsys.readouterr().err

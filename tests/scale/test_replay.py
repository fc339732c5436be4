"""`assetsync replay`: a fresh SQLite store rebuilt from the streams equals the live store's."""

from __future__ import annotations

import io
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assetsync import events as ev
from assetsync.embedded import EmbeddedNats
from assetsync.runtime import Runtime
from assetsync_store.replay import run_replay
from assetsync_store.schema import TABLES
from assetsync_store.service import StoreService

from tests.scale.support import read_only
from tests.support import wait_for

T0 = 1_790_000_000_000


def history() -> list[list[ev.Event]]:
    """Two crypto runs (the second no longer holds ETH) plus every other kind of fact the store keeps.

    Phases are published one after the other, as runs happen hours apart: each run's holdings are
    stored before its result (which prunes what the run no longer saw) arrives.
    """
    phases: list[list[ev.Event]] = []
    out: list[ev.Event] = []
    for i in range(3000):
        out.append(
            ev.PriceTick(source="binance", asset=f"A{i % 50}", price=1.0 + i, currency="USDT", ts=T0 + i)
        )
    out.append(ev.KlineBatch(source="binance", symbol="BTC/USDT", interval="1m",
                             candles=[ev.Candle(T0 + m * 60_000, 1, 2, 0.5, 1.5, 10) for m in range(200)]))  # fmt: skip
    for run, assets in ((0, ["BTC", "ETH"]), (1, ["BTC"])):
        at = T0 + run * 3_600_000
        for a in assets:
            out.append(ev.Holding(source="binance", asset=a, quantity=1.0 + run, currency="USDT", as_of=at,
                                  price=100.0 + run, avg_cost=90.0))  # fmt: skip
        out.append(ev.TaskResult(command_id=f"crypto-{run}", task="crypto", source="binance", status="success",
                                 started_at=at, finished_at=at + 1000, records=len(assets), total=len(assets),
                                 assets=assets))  # fmt: skip
        phases.append(out)
        out = []
    out.append(ev.Holding(source="xueqiu", asset="161725", quantity=1000, currency="CNY", as_of=T0,
                          asset_type="fund", price=1.2, avg_cost=1.1, cost_source="feishu"))  # fmt: skip
    for t in range(20):
        out.append(ev.Trade(source="binance", trade_id=str(t), symbol="BTC/USDT", side="buy", price=100,
                            amount=0.1, cost=10, ts=T0 + t))  # fmt: skip
    out.append(ev.Order(source="binance", order_id="o1", symbol="BTC/USDT", side="buy", status="open",
                        created_at=T0, updated_at=T0))  # fmt: skip
    out.append(ev.Order(source="binance", order_id="o1", symbol="BTC/USDT", side="buy", status="closed",
                        created_at=T0, updated_at=T0 + 5, filled=1.0))  # fmt: skip
    out.append(ev.Snapshot(date="2026-11-21", base_currency="CNY", total_value=10.0, total_cost=9.0,
                           total_pnl=1.0, pnl_pct=11.1, asset_count=2, taken_at=T0))  # fmt: skip
    out.append(ev.BackupResult(command_id="b1", ok=True, started_at=T0, finished_at=T0 + 10, path="/x.db"))
    out.append(ev.ServiceLifecycle(service="store", instance="h-1", state="started", at=T0))  # not stored
    phases.append(out)
    return phases


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with read_only(db) as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}"), key=repr) for t in TABLES}


async def test_replayed_database_equals_the_live_store(
    runtime: Runtime, nats_server: EmbeddedNats, make_settings: Any, tmp_path: Path
) -> None:
    store = StoreService(runtime)
    async with AsyncExitStack() as stack:
        await store.start(stack)
        phases = history()
        for i, phase in enumerate(phases):
            if i == len(phases) - 1:
                mid = datetime.now(UTC)  # every earlier event is in the streams by now
            await runtime.publisher.publish_many(phase)
            await wait_for(lambda: all_idle(store), 20, what="the live store caught up")
        live = dump(runtime.settings.db_path)
    assert len(live["price_history"]) == 3000 and len(live["klines"]) == 200
    assert [r[0] for r in live["holdings"]] == ["161725", "BTC"]  # ETH pruned by the second run

    settings = make_settings({"nats": {"url": nats_server.url}})
    assert settings.db_path == runtime.settings.db_path
    out, bar = io.StringIO(), io.StringIO()
    code = await run_replay(settings, None, "", out=out, progress=bar)
    assert code == 0
    assert bar.getvalue().splitlines()[-1] == f"replay: events [{'#' * 30}] 3031/3031 100%"
    replayed = settings.data_dir / "replay" / "assets.db"
    assert dump(replayed) == live
    assert "replayed 3,031 events" in out.getvalue()  # lifecycle events are not read at all
    # A second run refuses to overwrite, unless forced.
    assert await run_replay(settings, None, "", out=io.StringIO()) == 1
    assert await run_replay(settings, None, "", force=True, out=io.StringIO()) == 0
    assert dump(replayed) == live
    # --since after every event: an empty (but valid) database.
    later = tmp_path / "later.db"
    assert await run_replay(settings, later, "2999-01-01", out=io.StringIO()) == 0
    assert {t: len(r) for t, r in dump(later).items()} == dict.fromkeys(TABLES, 0)
    # --since between the phases: only the last phase's facts.
    last = tmp_path / "last.db"
    assert await run_replay(settings, last, mid.isoformat(), out=io.StringIO()) == 0
    counts = {t: len(r) for t, r in dump(last).items()}
    assert counts == {"price_history": 0, "klines": 0, "holdings": 1, "orders": 1, "trades": 20,
                      "snapshots": 1, "sync_logs": 0, "backups": 1}  # fmt: skip
    assert await run_replay(settings, tmp_path / "x.db", "yesterday", out=io.StringIO()) == 2
    # Never into the live database.
    assert await run_replay(settings, settings.db_path, "", out=io.StringIO()) == 1


async def all_idle(store: StoreService) -> bool:
    return all([await c.lag() == 0 for c in store.consumers])

"""The store's read API for people (assetsync_store.views): downsampling, valuation, flags, the day report."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from assetsync_store import views
from assetsync_store.snapshot import compute_snapshot

from tests.support.portfolio import DAY, HOUR, fill_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sqlite3.Connection, int]]:
    tmp_path = tmp_path_factory.mktemp("views")
    filled = fill_store(
        tmp_path / "assets.db",
        crypto=4,
        funds=2,
        snapshot_days=1500,
        kline_hours=400 * 24,
        stale_assets=("SOL",),
        unpriced_assets=("DOGE",),
    )
    conn = views.open_readonly(tmp_path / "assets.db")
    yield conn, filled.now_ms
    conn.close()


def test_read_only_and_missing_file(tmp_path: Path, store: tuple[sqlite3.Connection, int]) -> None:
    conn, _ = store
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM snapshots")
    with pytest.raises(views.StoreNotFound, match=r"asset_sync\.database\.path"):
        views.open_readonly(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_net_worth_ranges_are_downsampled_to_the_last_day_of_each_bucket(
    store: tuple[sqlite3.Connection, int],
) -> None:
    conn, _ = store
    full = views.net_worth(conn, "all")
    assert full["count"] == 1500 and len(full["points"]) <= views.MAX_POINTS
    days = [p[0] for p in full["points"]]
    assert days == sorted(days) and len(set(days)) == len(days)
    last = conn.execute("SELECT date, total_value FROM snapshots ORDER BY date DESC LIMIT 1").fetchone()
    assert full["points"][-1][:2] == [last[0], last[1]]  # the newest day is always shown as is
    month = views.net_worth(conn, "1m")
    assert month["count"] == 32 and len(month["points"]) == 32
    with pytest.raises(ValueError, match="range"):
        views.net_worth(conn, "5y")


def test_price_series_picks_klines_downsamples_and_keeps_the_cost(
    store: tuple[sqlite3.Connection, int],
) -> None:
    conn, now = store
    btc = views.price_series(conn, "BTC", "1y", now_ms=now)
    assert btc is not None and btc["symbol"] == "BTC/USDT" and btc["interval"] == "1h"
    assert btc["avg_cost"] is not None and btc["quote"] == "USDT"
    pts = btc["points"]
    assert len(pts) <= views.MAX_POINTS + 1 and pts[0][0] >= now - 366 * DAY
    assert pts[-1][0] >= now - 2 * HOUR  # the newest candle is in
    week = views.price_series(conn, "BTC", "1w", now_ms=now)
    assert week is not None and len(week["points"]) in (7 * 24 - 1, 7 * 24)  # not thinned
    fund = views.price_series(conn, "110011", "3m", now_ms=now)
    assert fund is not None and fund["interval"] == "price" and len(fund["points"]) >= 80
    assert views.price_series(conn, "NOPE", "3m", now_ms=now) is None


def test_holdings_flags_weights_and_totals(store: tuple[sqlite3.Connection, int]) -> None:
    conn, now = store
    val = views.make_valuation(conn, base_currency="CNY", fx_rates={"USDT": 7.0})
    rows = views.holdings(conn, val, now_ms=now)
    by = {r.asset: r for r in rows}
    assert by["DOGE"].unpriced and by["DOGE"].value_base is None and not by["DOGE"].stale
    assert by["SOL"].stale and not by["BTC"].stale
    assert sum(r.weight or 0 for r in rows) == pytest.approx(100.0)
    assert [r.asset for r in rows][-1] == "DOGE"  # unvalued rows last
    t = views.totals(rows, val)
    # The same rule as the snapshot (CONTRACTS §6).
    snap = compute_snapshot(
        [
            {"asset": r.asset, "currency": r.currency, "value": r.value, "total_cost": r.total_cost}
            for r in rows
        ],
        base_currency="CNY",
        fx_rates={"USDT": 7.0},
        day="2026-01-01",
        taken_at=0,
    )
    assert t.total_value == pytest.approx(snap.total_value) and t.total_cost == pytest.approx(snap.total_cost)
    alloc = views.allocation(rows, top=3)
    assert [a["key"] for a in alloc["by_type"]] == sorted(
        {r.asset_type for r in rows if r.value_base},
        key=lambda k: -sum(r.value_base or 0 for r in rows if r.asset_type == k),
    )
    assert alloc["by_asset"][-1]["key"] == "*" and len(alloc["by_asset"]) == 4
    assert sum(a["percent"] for a in alloc["by_asset"]) == pytest.approx(100.0, abs=0.01)


def test_a_missing_rate_comes_from_the_last_snapshot_or_is_flagged(
    store: tuple[sqlite3.Connection, int],
) -> None:
    conn, now = store
    derived = views.make_valuation(conn, base_currency="CNY", fx_rates={})
    rate = derived.rate("USDT")
    assert rate is not None and rate > 0  # the rate the last snapshot was valued at
    none = views.Valuation("EUR", {})
    rows = views.holdings(conn, none, now_ms=now)
    assert all(r.no_rate for r in rows)
    assert views.totals(rows, none).no_rate == ["CNY", "USDT"]


def test_day_report(store: tuple[sqlite3.Connection, int]) -> None:
    conn, _ = store
    val = views.make_valuation(conn, base_currency="CNY", fx_rates={"USDT": 7.0})
    rep = views.day_report(conn, None, val)
    assert rep is not None
    d = conn.execute(
        "SELECT (SELECT total_value FROM snapshots WHERE date = ?) - total_value FROM snapshots WHERE date = date(?, '-1 day')",
        (rep.date, rep.date),
    ).fetchone()[0]
    assert rep.change_day == pytest.approx(d)
    assert rep.change_week is not None and len(rep.movers) == 5
    assert [abs(m["change_pct"]) for m in rep.movers] == sorted(
        (abs(m["change_pct"]) for m in rep.movers), reverse=True
    )
    assert views.day_report(conn, "1999-01-01", val) is None

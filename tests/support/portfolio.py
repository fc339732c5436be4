"""A store database filled with a portfolio's history (snapshots, klines, prices, holdings, task logs).

Used by the portfolio tests and `./run bench portfolio`; writes SQLite the way the store's schema has it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from assetsync_store import schema

HOUR = 3_600_000
DAY = 24 * HOUR


@dataclass(frozen=True)
class Filled:
    """What was written: the assets, the snapshot days, the newest kline time."""

    assets: list[str]
    first_day: str
    last_day: str
    now_ms: int


def price_at(i: int, t_ms: int) -> float:
    """A smooth deterministic price path for asset number i."""
    base = 10.0 ** (1 + (i % 4))
    x = t_ms / DAY
    return base * (1.0 + 0.25 * math.sin(x / (9 + i % 7)) + 0.05 * math.sin(x * 3.1 + i))


def fill_store(
    path: Path,
    *,
    crypto: int = 4,
    funds: int = 2,
    snapshot_days: int = 90,
    kline_hours: int = 90 * 24,
    now_ms: int | None = None,
    stale_assets: tuple[str, ...] = (),
    unpriced_assets: tuple[str, ...] = (),
    logs: bool = True,
) -> Filled:
    """Create (or extend) a store database at `path` with the given amount of history."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    now_h = now - now % HOUR
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    schema.migrate(conn)
    conn.execute("BEGIN")
    assets: list[str] = []
    holdings = []
    for i in range(crypto):
        asset = ["BTC", "ETH", "SOL", "DOGE"][i] if i < 4 else f"C{i:03d}"
        assets.append(asset)
        price: float | None = price_at(i, now_h)
        if asset in unpriced_assets:
            price = None
        qty = 1000.0 / price_at(i, now_h) * (1 + i % 5)
        cost = price_at(i, now_h - 60 * DAY)
        value = qty * price if price is not None else None
        pnl = value - qty * cost if value is not None else None
        as_of = now - 3 * DAY if asset in stale_assets else now
        holdings.append(
            (asset, "binance", asset, "crypto", "USDT", qty, price, value, cost, qty * cost, pnl,
             pnl / (qty * cost) * 100 if pnl is not None else None, "trades", "", as_of, "")
        )  # fmt: skip
        candles = [
            ("binance", f"{asset}/USDT", "1h", t, price_at(i, t), price_at(i, t) * 1.01,
             price_at(i, t) * 0.99, price_at(i, t + HOUR), 10.0)
            for t in range(now_h - kline_hours * HOUR, now_h, HOUR)
        ]  # fmt: skip
        conn.executemany("INSERT OR REPLACE INTO klines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", candles)
    for j in range(funds):
        code = ["110011", "SH510300"][j] if j < 2 else f"{160000 + j}"
        assets.append(code)
        nav = 1.5 + 0.1 * j
        holdings.append(
            (code, "xueqiu", f"基金{j}", "fund", "CNY", 10000.0, nav, 10000.0 * nav, 1.4, 14000.0,
             10000.0 * nav - 14000.0, (10000.0 * nav - 14000.0) / 140.0, "feishu", "", now, "")
        )  # fmt: skip
        conn.executemany(
            "INSERT OR REPLACE INTO price_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    "xueqiu",
                    code,
                    now - d * DAY,
                    nav * (1 + 0.02 * math.sin(d / 5)),
                    "CNY",
                    "fund",
                    "",
                    "",
                    "",
                    "",
                )
                for d in range(min(snapshot_days, 400))
            ],
        )
    conn.executemany(
        "INSERT OR REPLACE INTO holdings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", holdings
    )
    today = date.fromtimestamp(now / 1000)
    first = today - timedelta(days=snapshot_days - 1)
    snaps = []
    for k in range(snapshot_days):
        d = first + timedelta(days=k)
        v = 100_000.0 * (1 + 0.3 * math.sin(k / 40)) + 200.0 * k
        snaps.append(
            (d.isoformat(), "CNY", v, 90_000.0, v - 90_000.0, (v - 90_000.0) / 900.0, len(holdings),
             json.dumps({"CNY": 30000.0, "USDT": (v - 30000.0) / 7.12}), now - (snapshot_days - k) * DAY, "")
        )  # fmt: skip
    conn.executemany("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", snaps)
    if logs:
        rows = [
            (f"c{n}", "crypto", "binance", "success", now - n * HOUR, now - n * HOUR + 5000, 5.0, 4, 4,
             "[]", "", "", "")
            for n in range(1, 48)
        ]  # fmt: skip
        rows.append(
            ("f1", "fund", "xueqiu", "failed", now - 2 * HOUR, now - 2 * HOUR + 3000, 3.0, 0, 2, "[]",
             "xueqiu: cookie expired (asset_sync.xueqiu.cookies)", "", "")
        )  # fmt: skip
        conn.executemany(
            "INSERT OR REPLACE INTO sync_logs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
    conn.execute("COMMIT")
    conn.close()
    return Filled(assets, first.isoformat(), today.isoformat(), now)

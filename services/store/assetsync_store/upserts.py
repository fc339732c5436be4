"""Event -> row upserts on natural keys, so a redelivered or replayed event never adds a second row."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from assetsync import events as ev

PRICE_SQL = """
INSERT INTO price_history (source, asset, ts, price, currency, asset_type, name, via, price_date, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ts, source, asset) DO UPDATE SET
    price = excluded.price, currency = excluded.currency, name = excluded.name, via = excluded.via,
    price_date = excluded.price_date
"""

KLINE_SQL = """
INSERT INTO klines (source, symbol, interval, open_time, open, high, low, close, volume)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, symbol, interval, open_time) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume
"""

HOLDING_SQL = """
INSERT INTO holdings (asset, source, name, asset_type, currency, quantity, price, value, avg_cost,
                      total_cost, pnl, pnl_pct, cost_source, price_date, as_of, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (origin, source, asset) DO UPDATE SET
    name = excluded.name, asset_type = excluded.asset_type,
    currency = excluded.currency, quantity = excluded.quantity, price = excluded.price,
    value = excluded.value, avg_cost = excluded.avg_cost, total_cost = excluded.total_cost,
    pnl = excluded.pnl, pnl_pct = excluded.pnl_pct, cost_source = excluded.cost_source,
    price_date = excluded.price_date, as_of = excluded.as_of
WHERE excluded.as_of >= holdings.as_of
"""

ORDER_SQL = """
INSERT INTO orders (source, symbol, order_id, side, order_type, status, price, amount, filled, cost,
                    created_at, updated_at, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (origin, source, symbol, order_id) DO UPDATE SET
    side = excluded.side, order_type = excluded.order_type, status = excluded.status,
    price = excluded.price, amount = excluded.amount, filled = excluded.filled, cost = excluded.cost,
    created_at = excluded.created_at, updated_at = excluded.updated_at
WHERE excluded.updated_at >= orders.updated_at
"""

TRADE_SQL = """
INSERT INTO trades (source, symbol, trade_id, order_id, side, price, amount, cost, fee, fee_currency, ts,
                    origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (origin, source, symbol, trade_id) DO UPDATE SET
    order_id = excluded.order_id, side = excluded.side, price = excluded.price,
    amount = excluded.amount, cost = excluded.cost, fee = excluded.fee,
    fee_currency = excluded.fee_currency, ts = excluded.ts
"""

SNAPSHOT_SQL = """
INSERT INTO snapshots (date, base_currency, total_value, total_cost, total_pnl, pnl_pct, asset_count,
                       by_currency, taken_at, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (origin, date) DO UPDATE SET
    base_currency = excluded.base_currency, total_value = excluded.total_value,
    total_cost = excluded.total_cost, total_pnl = excluded.total_pnl, pnl_pct = excluded.pnl_pct,
    asset_count = excluded.asset_count, by_currency = excluded.by_currency, taken_at = excluded.taken_at
WHERE excluded.taken_at >= snapshots.taken_at
"""

SYNC_LOG_SQL = """
INSERT INTO sync_logs (command_id, task, source, status, started_at, finished_at, duration, records,
                       total, errors, message, data_as_of, origin)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (origin, command_id) DO UPDATE SET
    status = excluded.status, finished_at = excluded.finished_at, duration = excluded.duration,
    records = excluded.records, total = excluded.total, errors = excluded.errors,
    message = excluded.message, data_as_of = excluded.data_as_of
"""

BACKUP_SQL = """
INSERT INTO backups (command_id, ok, path, size_bytes, integrity, error, removed, started_at, finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (command_id) DO UPDATE SET
    ok = excluded.ok, path = excluded.path, size_bytes = excluded.size_bytes,
    integrity = excluded.integrity, error = excluded.error, removed = excluded.removed,
    finished_at = excluded.finished_at
"""


def holding_row(h: ev.Holding, origin: str = "") -> tuple[Any, ...]:
    """Derived numbers per CONTRACTS §6: no price → no value; no cost → empty cost/PnL."""
    value = h.quantity * h.price if h.price is not None else None
    total_cost = h.quantity * h.avg_cost if h.avg_cost is not None else None
    pnl = value - total_cost if value is not None and total_cost is not None else None
    pnl_pct = pnl / total_cost * 100.0 if pnl is not None and total_cost else None
    return (
        h.asset, h.source, h.name, h.asset_type, h.currency, h.quantity, h.price, value, h.avg_cost,
        total_cost, pnl, pnl_pct, h.cost_source, h.price_date, h.as_of, origin,
    )  # fmt: skip


def snapshot_row(s: ev.Snapshot, origin: str = "") -> tuple[Any, ...]:
    return (
        s.date, s.base_currency, s.total_value, s.total_cost, s.total_pnl, s.pnl_pct, s.asset_count,
        json.dumps(s.by_currency, sort_keys=True), s.taken_at, origin,
    )  # fmt: skip


def sync_log_row(r: ev.TaskResult, origin: str = "") -> tuple[Any, ...]:
    errors = json.dumps(
        [{"asset": e.asset, "reason": e.reason, "kind": e.kind} for e in r.errors], ensure_ascii=False
    )
    return (
        r.command_id, r.task, r.source, r.status, r.started_at, r.finished_at, r.duration, r.records,
        r.total, errors, r.message, r.data_as_of, origin,
    )  # fmt: skip


@dataclass
class Rows:
    """One batch's rows, grouped by statement, so each table gets one executemany.

    `site_id` is this site: its own events may carry it as their origin (relayed back), and are
    stored as this site's own (origin '').
    """

    site_id: str = ""

    prices: list[tuple[Any, ...]] = field(default_factory=list)
    klines: list[tuple[Any, ...]] = field(default_factory=list)
    holdings: list[tuple[Any, ...]] = field(default_factory=list)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    trades: list[tuple[Any, ...]] = field(default_factory=list)
    snapshots: list[tuple[Any, ...]] = field(default_factory=list)
    sync_logs: list[tuple[Any, ...]] = field(default_factory=list)
    backups: list[tuple[Any, ...]] = field(default_factory=list)
    # (origin, source, complete asset list, started_at) from task results: holdings no longer held
    # go — only that origin's: another site's run never prunes this site's holdings.
    prunes: list[tuple[str, str, list[str], int]] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)

    def origin(self, e: ev.Event) -> str:
        return "" if e.origin == self.site_id else e.origin

    def add(self, e: ev.Event) -> bool:
        """Add one event's rows; False if the store does not keep this kind of event."""
        match e:
            case ev.PriceTick():
                self.prices.append(
                    (
                        e.source,
                        e.asset,
                        e.ts,
                        e.price,
                        e.currency,
                        e.asset_type,
                        e.name,
                        e.via,
                        e.price_date,
                        e.origin,
                    )
                )
            case ev.KlineBatch():
                s, sym, iv = e.source, e.symbol, e.interval
                self.klines.extend(
                    (s, sym, iv, c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in e.candles
                )
            case ev.Holding():
                self.holdings.append(holding_row(e, self.origin(e)))
            case ev.Order():
                self.orders.append(
                    (e.source, e.symbol, e.order_id, e.side, e.order_type, e.status, e.price, e.amount, e.filled,
                     e.cost, e.created_at, e.updated_at, self.origin(e))
                )  # fmt: skip
            case ev.Trade():
                self.trades.append(
                    (e.source, e.symbol, e.trade_id, e.order_id, e.side, e.price, e.amount, e.cost, e.fee,
                     e.fee_currency, e.ts, self.origin(e))
                )  # fmt: skip
            case ev.Snapshot():
                self.snapshots.append(snapshot_row(e, self.origin(e)))
            case ev.TaskResult():
                origin = self.origin(e)
                self.sync_logs.append(sync_log_row(e, origin))
                if not origin:  # only this site's CLIs wait for their results
                    self.task_ids.append(e.command_id)
                if e.assets is not None and e.status != "failed" and e.task in ("crypto", "fund", "okx"):
                    self.prunes.append((origin, e.source, list(e.assets), e.started_at))
            case ev.BackupResult():
                self.backups.append(
                    (e.command_id, int(e.ok), e.path, e.size_bytes, e.integrity, e.error,
                     json.dumps(e.removed), e.started_at, e.finished_at)
                )  # fmt: skip
            case _:
                return False
        return True

    def count(self) -> int:
        return sum(
            len(x)
            for x in (self.prices, self.klines, self.holdings, self.orders, self.trades, self.snapshots,
                      self.sync_logs, self.backups)
        )  # fmt: skip


HOLDING_SET_SQL = """
INSERT INTO holding_sets (origin, source, started_at, assets) VALUES (?, ?, ?, ?)
ON CONFLICT (origin, source) DO UPDATE SET started_at = excluded.started_at, assets = excluded.assets
WHERE excluded.started_at >= holding_sets.started_at
"""


async def _drop_superseded(conn: aiosqlite.Connection, rows: Rows) -> None:
    """Leave out holdings older than their site's and source's last complete set that it did not list."""
    for origin, source, assets, started_at in rows.prunes:
        await conn.execute(HOLDING_SET_SQL, (origin, source, started_at, json.dumps(sorted(assets))))
    async with conn.execute("SELECT origin, source, started_at, assets FROM holding_sets") as cur:
        sets = {(str(r[0]), str(r[1])): (int(r[2]), set(json.loads(r[3]))) for r in await cur.fetchall()}
    if not sets:
        return
    # holding_row(): asset at 0, source at 1, as_of at 14, origin at 15.
    rows.holdings = [
        h for h in rows.holdings if (s := sets.get((h[15], h[1]))) is None or h[14] >= s[0] or h[0] in s[1]
    ]


async def write_rows(conn: aiosqlite.Connection, rows: Rows) -> None:
    """Execute a batch's statements (the caller owns the transaction)."""
    if rows.holdings or rows.prunes:
        await _drop_superseded(conn, rows)
    pairs: Iterable[tuple[str, Sequence[tuple[Any, ...]]]] = (
        (PRICE_SQL, rows.prices),
        (KLINE_SQL, rows.klines),
        (HOLDING_SQL, rows.holdings),
        (ORDER_SQL, rows.orders),
        (TRADE_SQL, rows.trades),
        (SNAPSHOT_SQL, rows.snapshots),
        (SYNC_LOG_SQL, rows.sync_logs),
        (BACKUP_SQL, rows.backups),
    )
    for sql, batch in pairs:
        if batch:
            await conn.executemany(sql, batch)
    for origin, source, assets, started_at in rows.prunes:
        # Holdings of this site and source that the last complete discovery did not see are no
        # longer held.
        marks = ",".join("?" * len(assets))
        where = f"origin = ? AND source = ? AND as_of < ?{f' AND asset NOT IN ({marks})' if assets else ''}"
        await conn.execute(f"DELETE FROM holdings WHERE {where}", (origin, source, started_at, *assets))

"""The SQLite schema and its forward migrations (PRAGMA user_version is the schema version)."""

from __future__ import annotations

import sqlite3

# Each entry upgrades the schema from version i to i+1. Never edit a released entry: append.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE price_history (
        source TEXT NOT NULL,
        asset TEXT NOT NULL,
        ts INTEGER NOT NULL,
        price REAL NOT NULL,
        currency TEXT NOT NULL,
        asset_type TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        via TEXT NOT NULL DEFAULT '',
        price_date TEXT NOT NULL DEFAULT '',
        origin TEXT NOT NULL DEFAULT '',
        -- Clustered by time: prices arrive in time order, so upserts append instead of landing on
        -- scattered pages (3.5x faster here); per-asset queries read a time range and filter.
        PRIMARY KEY (ts, source, asset)
    ) WITHOUT ROWID;

    CREATE TABLE klines (
        source TEXT NOT NULL,
        symbol TEXT NOT NULL,
        interval TEXT NOT NULL,
        open_time INTEGER NOT NULL,
        open REAL NOT NULL,
        high REAL NOT NULL,
        low REAL NOT NULL,
        close REAL NOT NULL,
        volume REAL NOT NULL,
        PRIMARY KEY (source, symbol, interval, open_time)
    ) WITHOUT ROWID;

    CREATE TABLE holdings (
        asset TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        asset_type TEXT NOT NULL,
        currency TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL,
        value REAL,
        avg_cost REAL,
        total_cost REAL,
        pnl REAL,
        pnl_pct REAL,
        cost_source TEXT NOT NULL DEFAULT '',
        price_date TEXT NOT NULL DEFAULT '',
        as_of INTEGER NOT NULL,
        origin TEXT NOT NULL DEFAULT ''
    );

    CREATE TABLE orders (
        source TEXT NOT NULL,
        symbol TEXT NOT NULL,
        order_id TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        price REAL,
        amount REAL NOT NULL DEFAULT 0,
        filled REAL NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (source, symbol, order_id)
    );

    CREATE TABLE trades (
        source TEXT NOT NULL,
        symbol TEXT NOT NULL,
        trade_id TEXT NOT NULL,
        order_id TEXT NOT NULL DEFAULT '',
        side TEXT NOT NULL,
        price REAL NOT NULL,
        amount REAL NOT NULL,
        cost REAL NOT NULL,
        fee REAL NOT NULL DEFAULT 0,
        fee_currency TEXT NOT NULL DEFAULT '',
        ts INTEGER NOT NULL,
        PRIMARY KEY (source, symbol, trade_id)
    );
    CREATE INDEX trades_order ON trades (source, symbol, order_id);

    CREATE TABLE snapshots (
        date TEXT PRIMARY KEY,
        base_currency TEXT NOT NULL,
        total_value REAL NOT NULL,
        total_cost REAL NOT NULL,
        total_pnl REAL NOT NULL,
        pnl_pct REAL,
        asset_count INTEGER NOT NULL,
        by_currency TEXT NOT NULL DEFAULT '{}',
        taken_at INTEGER NOT NULL
    );

    CREATE TABLE sync_logs (
        command_id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        duration REAL NOT NULL,
        records INTEGER NOT NULL,
        total INTEGER NOT NULL,
        errors TEXT NOT NULL DEFAULT '[]',
        message TEXT NOT NULL DEFAULT '',
        data_as_of TEXT NOT NULL DEFAULT '',
        origin TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX sync_logs_time ON sync_logs (started_at);

    CREATE TABLE backups (
        command_id TEXT PRIMARY KEY,
        ok INTEGER NOT NULL,
        path TEXT NOT NULL DEFAULT '',
        size_bytes INTEGER NOT NULL DEFAULT 0,
        integrity TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        removed TEXT NOT NULL DEFAULT '[]',
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL
    );
    """,
    # v2: the last complete asset set per source, so a late (older) holding of an asset that has
    # since been sold is not written back after the prune (the holdings and results consumers
    # run independently).
    """
    CREATE TABLE holding_sets (
        source TEXT PRIMARY KEY,
        started_at INTEGER NOT NULL,
        assets TEXT NOT NULL
    );
    """,
    # v3: per-site data (CONTRACTS §5.2). Records received from another site keep their `origin`
    # (its site id; '' = this site) in every key where they could meet this site's own: another
    # account's BTC, trade 1, order 1, the same day's snapshot or schedule slot. Prices and klines
    # are market facts, the same at every site, and keep their keys.
    """
    CREATE TABLE holdings_v3 (
        asset TEXT NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        asset_type TEXT NOT NULL,
        currency TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL,
        value REAL,
        avg_cost REAL,
        total_cost REAL,
        pnl REAL,
        pnl_pct REAL,
        cost_source TEXT NOT NULL DEFAULT '',
        price_date TEXT NOT NULL DEFAULT '',
        as_of INTEGER NOT NULL,
        origin TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (origin, source, asset)
    );
    INSERT INTO holdings_v3 SELECT asset, source, name, asset_type, currency, quantity, price, value,
        avg_cost, total_cost, pnl, pnl_pct, cost_source, price_date, as_of, origin FROM holdings;
    DROP TABLE holdings;
    ALTER TABLE holdings_v3 RENAME TO holdings;

    CREATE TABLE orders_v3 (
        source TEXT NOT NULL,
        symbol TEXT NOT NULL,
        order_id TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        price REAL,
        amount REAL NOT NULL DEFAULT 0,
        filled REAL NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        origin TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (origin, source, symbol, order_id)
    );
    INSERT INTO orders_v3 SELECT source, symbol, order_id, side, order_type, status, price, amount,
        filled, cost, created_at, updated_at, '' FROM orders;
    DROP TABLE orders;
    ALTER TABLE orders_v3 RENAME TO orders;

    CREATE TABLE trades_v3 (
        source TEXT NOT NULL,
        symbol TEXT NOT NULL,
        trade_id TEXT NOT NULL,
        order_id TEXT NOT NULL DEFAULT '',
        side TEXT NOT NULL,
        price REAL NOT NULL,
        amount REAL NOT NULL,
        cost REAL NOT NULL,
        fee REAL NOT NULL DEFAULT 0,
        fee_currency TEXT NOT NULL DEFAULT '',
        ts INTEGER NOT NULL,
        origin TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (origin, source, symbol, trade_id)
    );
    INSERT INTO trades_v3 SELECT source, symbol, trade_id, order_id, side, price, amount, cost, fee,
        fee_currency, ts, '' FROM trades;
    DROP TABLE trades;
    ALTER TABLE trades_v3 RENAME TO trades;
    CREATE INDEX trades_order ON trades (origin, source, symbol, order_id);

    CREATE TABLE snapshots_v3 (
        date TEXT NOT NULL,
        base_currency TEXT NOT NULL,
        total_value REAL NOT NULL,
        total_cost REAL NOT NULL,
        total_pnl REAL NOT NULL,
        pnl_pct REAL,
        asset_count INTEGER NOT NULL,
        by_currency TEXT NOT NULL DEFAULT '{}',
        taken_at INTEGER NOT NULL,
        origin TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (origin, date)
    );
    INSERT INTO snapshots_v3 SELECT date, base_currency, total_value, total_cost, total_pnl, pnl_pct,
        asset_count, by_currency, taken_at, '' FROM snapshots;
    DROP TABLE snapshots;
    ALTER TABLE snapshots_v3 RENAME TO snapshots;

    CREATE TABLE sync_logs_v3 (
        command_id TEXT NOT NULL,
        task TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        duration REAL NOT NULL,
        records INTEGER NOT NULL,
        total INTEGER NOT NULL,
        errors TEXT NOT NULL DEFAULT '[]',
        message TEXT NOT NULL DEFAULT '',
        data_as_of TEXT NOT NULL DEFAULT '',
        origin TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (origin, command_id)
    );
    INSERT INTO sync_logs_v3 SELECT command_id, task, source, status, started_at, finished_at,
        duration, records, total, errors, message, data_as_of, origin FROM sync_logs;
    DROP TABLE sync_logs;
    ALTER TABLE sync_logs_v3 RENAME TO sync_logs;
    CREATE INDEX sync_logs_time ON sync_logs (started_at);

    CREATE TABLE holding_sets_v3 (
        origin TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        assets TEXT NOT NULL,
        PRIMARY KEY (origin, source)
    );
    INSERT INTO holding_sets_v3 SELECT '', source, started_at, assets FROM holding_sets;
    DROP TABLE holding_sets;
    ALTER TABLE holding_sets_v3 RENAME TO holding_sets;
    """,
    # v4: FX (CONTRACTS §6) — the last rate fetched per currency pair (used up to
    # asset_sync.fx.max_age_days when the source is down), and the rates each snapshot used.
    """
    CREATE TABLE fx_rates (
        currency TEXT NOT NULL,
        base TEXT NOT NULL,
        rate REAL NOT NULL,
        rate_date TEXT NOT NULL,
        source TEXT NOT NULL,
        fetched_at INTEGER NOT NULL,
        PRIMARY KEY (currency, base)
    );

    CREATE TABLE snapshot_fx (
        date TEXT NOT NULL,
        currency TEXT NOT NULL,
        base TEXT NOT NULL,
        rate REAL NOT NULL,
        rate_date TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (date, currency)
    );
    """,
)

LATEST = len(MIGRATIONS)
TABLES = ("price_history", "klines", "holdings", "orders", "trades", "snapshots", "sync_logs", "backups")


class SchemaError(Exception):
    """The database file's schema cannot be used by this version."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to LATEST (each step in its own transaction); returns the version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > LATEST:
        raise SchemaError(f"database schema v{version} is newer than this assetsync understands (v{LATEST})")
    for target in range(version + 1, LATEST + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _statements(MIGRATIONS[target - 1]):
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return LATEST


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out

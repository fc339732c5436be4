"""The store: the single writer of SQLite — every fact on the bus, the daily snapshot and backups.

Modules, one concern each:
- service: bus wiring — durable consumers committing batches (one AckAll each), the snapshot and
  backup tasks
- db / schema: the aiosqlite connection (WAL, one transaction per batch) and forward migrations
- upserts: event → row on natural keys, so redelivery or replay never adds a second row
- snapshot: the daily totals in the base currency (CONTRACTS §6)
- backup: online backups (SQLite backup API), verification (of any file to restore too), retention, listing
- replay: `assetsync replay` — a fresh store rebuilt from the streams through the same writer
"""

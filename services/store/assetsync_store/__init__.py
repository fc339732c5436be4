"""The store: the single writer of SQLite — every fact on the bus, the daily snapshot and backups.

Modules, one concern each:
- service: bus wiring — durable consumers committing batches (one AckAll each); runs the tasks below
- db / schema: the aiosqlite connection (WAL, one transaction per batch) and forward migrations
- upserts: event → row on natural keys, so redelivery or replay never adds a second row
- snapshot: the snapshot task — the daily totals in the base currency (CONTRACTS §6)
- fx_rates: the FX rates last fetched and the ones each snapshot used
- backup: the backup task — online backups (SQLite backup API), verification (of any file to restore too), retention, listing
- replay: `assetsync replay` — a fresh store rebuilt from the streams through the same writer
- views / sites: read-only reads for the CLI, the portfolio page and the alerter (this site or another)

The public API — what the CLI and the other services use — is re-exported here; the rest is internal.
"""

from assetsync_store import views
from assetsync_store.backup import BackupError, list_backups, verify_backup
from assetsync_store.db import Database, StoreBroken, StoreUnavailable
from assetsync_store.replay import run_replay
from assetsync_store.sites import sites

__all__ = [
    "BackupError",
    "Database",
    "StoreBroken",
    "StoreUnavailable",
    "list_backups",
    "run_replay",
    "sites",
    "verify_backup",
    "views",
]

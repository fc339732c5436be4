"""The store's SQLite database: one aiosqlite connection, WAL, one transaction per batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
from assetsync.files import fsync_dir

from assetsync_store import schema
from assetsync_store.backup import verify_backup
from assetsync_store.upserts import Rows, write_rows

log = logging.getLogger("assetsync.store")


class StoreUnavailable(Exception):
    """The database cannot be written now (read-only directory, disk full, I/O error)."""


class StoreBroken(Exception):
    """The database file itself is damaged: retrying cannot help, a person must restore a backup."""


_BROKEN_MARKERS = ("malformed", "not a database", "corrupt", "encrypted")


def is_broken(exc: BaseException) -> bool:
    """SQLite errors that say the file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB)."""
    return isinstance(exc, sqlite3.DatabaseError) and any(m in str(exc).lower() for m in _BROKEN_MARKERS)


def broken_message(exc: BaseException, path: Path) -> str:
    return (
        f"database {path} is damaged ({exc}); writes stopped, nothing acknowledged — "
        "restore a backup with `assetsync backup restore PATH`"
    )


_TRANSIENT_MARKERS = (
    "readonly",
    "read-only",
    "disk is full",
    "disk i/o",
    "unable to open",
    "locked",
    "busy",
    "no such file",
)


def is_transient(exc: BaseException) -> bool:
    """SQLite errors that are about the environment, not the data: retry later."""
    if isinstance(exc, sqlite3.OperationalError | OSError):
        text = str(exc).lower()
        return any(m in text for m in _TRANSIENT_MARKERS) or isinstance(exc, OSError)
    return False


def explain(exc: BaseException, path: Path) -> str:
    """A sentence a user can act on for an environment error."""
    text = str(exc).lower()
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return f"cannot create the database {path}: {path.parent} is not a directory"
    if isinstance(exc, OSError) and not isinstance(exc, PermissionError):
        return f"cannot use the database directory {path.parent}: {exc.strerror or exc}"
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        return f"cannot write the database {path}: its file or directory is read-only ({exc})"
    if "disk is full" in text or "no space" in text:
        return f"cannot write the database {path}: the disk is full"
    if "unable to open" in text:
        return f"cannot open the database {path}: check that {path.parent} exists and is writable ({exc})"
    return f"database {path}: {exc}"


SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


async def _configure(conn: aiosqlite.Connection, synchronous: str) -> None:
    await conn.execute("PRAGMA journal_mode=WAL")
    # `asset_sync.database.synchronous`; checked against a fixed list, so it is safe to format in.
    await conn.execute(f"PRAGMA synchronous={synchronous if synchronous in SYNCHRONOUS else 'FULL'}")
    await conn.execute("PRAGMA busy_timeout=5000")
    await conn.execute("PRAGMA foreign_keys=ON")


class Database:
    """Owns the connection; writes go through `write()` (serialized); `restore_from` swaps the file."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.rows_written = 0

    async def open(self) -> None:
        """Open (creating the directory and schema); raises StoreUnavailable with a clear reason."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(_migrate_file, self.path)
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except (sqlite3.Error, OSError, schema.SchemaError) as exc:
            if is_broken(exc):
                raise StoreBroken(broken_message(exc, self.path)) from exc
            raise StoreUnavailable(explain(exc, self.path)) from exc
        try:
            await _configure(conn, self.synchronous)
        except (sqlite3.Error, OSError) as exc:
            await conn.close()
            if is_broken(exc):
                raise StoreBroken(broken_message(exc, self.path)) from exc
            raise StoreUnavailable(explain(exc, self.path)) from exc
        self._conn = conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.execute("PRAGMA optimize")
            await conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"database {self.path} is not open")
        return self._conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE .. COMMIT under the write lock; environment errors -> StoreUnavailable."""
        async with self._lock:
            if self._conn is None:
                await self.open()
            conn = self.conn
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                if is_broken(exc):
                    raise StoreBroken(broken_message(exc, self.path)) from exc
                raise StoreUnavailable(explain(exc, self.path)) from exc
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
                if is_broken(exc):
                    raise StoreBroken(broken_message(exc, self.path)) from exc
                if is_transient(exc):
                    raise StoreUnavailable(explain(exc, self.path)) from exc
                raise

    async def write(self, rows: Rows) -> int:
        """Commit one batch's rows in one transaction; returns the number of rows."""
        async with self.transaction() as conn:
            await write_rows(conn, rows)
        n = rows.count()
        self.rows_written += n
        return n

    async def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        async with self._lock:
            conn = self.conn
            conn.row_factory = sqlite3.Row
            try:
                async with conn.execute(sql, params) as cur:
                    return list(await cur.fetchall())
            finally:
                conn.row_factory = None

    async def restore_from(self, backup: Path) -> str:
        """Verify `backup`, stop writes, swap the file atomically, reopen; the live DB is untouched on error."""
        summary = await asyncio.to_thread(verify_backup, backup)
        async with self._lock:
            tmp = self.path.with_name(self.path.name + ".restore-tmp")
            try:
                await asyncio.to_thread(_copy_synced, backup, tmp)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise StoreUnavailable(explain(exc, self.path)) from exc
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.close()
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    self.path.with_name(self.path.name + suffix).unlink()
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            await self.open()
        log.info("restored %s from %s (%s)", self.path, backup, summary)
        return summary


def _migrate_file(path: Path) -> None:
    """Create or upgrade the schema with a short-lived plain connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
        schema.migrate(conn)
    finally:
        conn.close()


def _copy_synced(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

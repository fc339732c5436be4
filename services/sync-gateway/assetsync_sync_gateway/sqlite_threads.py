"""SQLite on worker threads: one writer thread, a few reader threads with their own connections (WAL).

Readers run on separate connections so page reads (and the page assembly and compression done in the
same hop, which release the GIL) proceed in parallel with writes instead of queueing behind them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection tuned for this workload: WAL, NORMAL sync, autocommit off by explicit BEGIN."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-32000")
    return conn


class SqliteThreads:
    """Runs callables against a writer connection or a per-thread reader connection."""

    def __init__(self, path: Path, *, readers: int = 2, name: str = "sqlite") -> None:
        self.path = path
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-w")
        self._reader_pool = ThreadPoolExecutor(readers, thread_name_prefix=f"{name}-r")
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def open(self, init: Callable[[sqlite3.Connection], None]) -> None:
        """Open the writer connection and run `init` (schema) on it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def _open() -> None:
            self._writer = connect(self.path)
            init(self._writer)

        await asyncio.get_running_loop().run_in_executor(self._writer_pool, _open)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer thread inside one transaction (rolled back on error)."""

        def _run() -> T:
            conn = self._writer
            if conn is None:
                raise RuntimeError(f"database {self.path} is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, _run)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the writer thread; `fn` manages its own transactions."""

        def _run() -> T:
            conn = self._writer
            if conn is None:
                raise RuntimeError(f"database {self.path} is closed")
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._writer_pool, _run)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on a reader thread with that thread's own connection."""

        def _run() -> T:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = connect(self.path)
                self._local.conn = conn
                with self._lock:
                    self._readers.append(conn)
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, _run)

    async def close(self) -> None:
        """Finish queued work and close every connection."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._reader_pool.shutdown, True)

        def _close_writer() -> None:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

        await loop.run_in_executor(self._writer_pool, _close_writer)
        self._writer_pool.shutdown(wait=True)
        with self._lock:
            for c in self._readers:
                c.close()
            self._readers.clear()

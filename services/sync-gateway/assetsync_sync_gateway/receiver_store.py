"""The receiver's store: pulled records and their cursor committed together, plus followers.

Records and the cursor go into one SQLite transaction, so a crash re-fetches at most one page and
never skips one; duplicates are dropped on (code, origin, origin sequence). Two followers replay
committed rows in local insertion order, each with its own position: the `synced_data/<code>.jsonl`
mirror (its position also records the file size, so a crash between the write and the position
update is repaired by truncating, never by writing a line twice) and the bus republisher.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from assetsync.secrets import mask_urls

from assetsync_sync_gateway.envelope import Record
from assetsync_sync_gateway.sqlite_threads import SqliteThreads
from assetsync_sync_gateway.stats import ReceiverStats

SCHEMA = """
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS received(
  id INTEGER PRIMARY KEY,
  code INTEGER NOT NULL REFERENCES names(id),
  origin INTEGER NOT NULL REFERENCES names(id),
  oseq INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS received_key ON received(code, origin, oseq);
CREATE TABLE IF NOT EXISTS cursors(
  code TEXT PRIMARY KEY,
  remote TEXT NOT NULL,
  cursor TEXT,
  etag TEXT,
  head INTEGER NOT NULL DEFAULT 0,
  position INTEGER NOT NULL DEFAULT 0,
  last_id INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS followers(
  name TEXT NOT NULL,
  code TEXT NOT NULL,
  last_id INTEGER NOT NULL,
  size INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(name, code)
);
CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sync_runs(
  id INTEGER PRIMARY KEY,
  at REAL NOT NULL,
  code TEXT NOT NULL,
  status TEXT NOT NULL,
  records INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  duration REAL NOT NULL,
  error TEXT NOT NULL
);
"""
MIRROR = "mirror"
BUS = "bus"
KEEP_RUNS = 5000
# Codes and origins are stored as small integers (ids in `names`): the dedupe index stays compact,
# which makes bulk inserts measurably faster than with repeated text keys.
NAME_ID = "(SELECT id FROM names WHERE name = ?)"


@dataclass(frozen=True)
class CursorState:
    """Where the receiver stands on one remote feed."""

    remote: str
    cursor: str | None
    etag: str | None
    head: int
    position: int


@dataclass(frozen=True)
class Committed:
    """What a page commit stored."""

    added: int
    duplicates: int


class ReceivedStore:
    """`<data dir>/gateway/received.db` plus the `<data dir>/synced_data/` mirror files."""

    def __init__(self, path: Path, mirror_dir: Path) -> None:
        self.path = path
        self.mirror_dir = mirror_dir
        self._db = SqliteThreads(path, readers=1, name="received")
        self._stats_enc = msgspec.json.Encoder()
        self._ids: dict[str, int] = {}  # name -> id; used on the writer thread only

    async def open(self) -> None:
        def init(conn: sqlite3.Connection) -> None:
            # Bulk replication writes pages of thousands of rows: checkpoint less often (fewer copies
            # of the same pages into the main file), and keep the WAL file from growing unbounded.
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            conn.execute("PRAGMA journal_size_limit=67108864")
            conn.executescript(SCHEMA)

        await self._db.open(init)
        self.mirror_dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        await self._db.close()

    def mirror_path(self, code: str) -> Path:
        return self.mirror_dir / f"{code}.jsonl"

    # --- cursors and stats ---------------------------------------------------------------------
    async def cursor(self, code: str) -> CursorState | None:
        def run(conn: sqlite3.Connection) -> CursorState | None:
            row = conn.execute(
                "SELECT remote, cursor, etag, head, position FROM cursors WHERE code = ?", (code,)
            ).fetchone()
            return CursorState(*row) if row else None

        return await self._db.run(run)

    async def cursors(self) -> dict[str, CursorState]:
        def run(conn: sqlite3.Connection) -> dict[str, CursorState]:
            rows = conn.execute("SELECT code, remote, cursor, etag, head, position FROM cursors").fetchall()
            return {r[0]: CursorState(*r[1:]) for r in rows}

        return await self._db.run(run)

    async def counts(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(
                conn.execute(
                    "SELECT n.name, count(*) FROM received r JOIN names n ON n.id = r.code GROUP BY r.code"
                ).fetchall()
            )

        return await self._db.read(run)

    async def load_stats(self) -> ReceiverStats:
        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT value FROM kv WHERE key = 'receiver_stats'").fetchone()
            return bytes(row[0]) if row else None

        raw = await self._db.run(run)
        if raw is None:
            return ReceiverStats()
        try:
            return msgspec.json.decode(raw, type=ReceiverStats)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return ReceiverStats()

    async def save_stats(self, stats: ReceiverStats) -> None:
        blob = self._stats_enc.encode(stats)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO kv(key, value) VALUES ('receiver_stats', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (blob,),
            )

        await self._db.write(run)

    async def set_etag(self, code: str, remote: str, cursor: str | None, etag: str | None, head: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO cursors(code, remote, cursor, etag, head, position) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(code) DO UPDATE SET etag = excluded.etag, head = excluded.head",
                (code, remote, cursor, etag, head, head),
            )

        await self._db.write(run)

    # --- commits -------------------------------------------------------------------------------
    async def commit_page(
        self,
        code: str,
        remote: str,
        records: Sequence[Record],
        next_cursor: str,
        etag: str | None,
        head: int,
        position: int,
        stats: ReceiverStats,
    ) -> Committed:
        """Store a page's records, its cursor and the statistics in one transaction, then mirror them."""
        # msgspec.Raw exposes the buffer protocol: SQLite and the mirror take it without a copy.
        pairs = [(r.origin, r.oseq or r.seq, r.data) for r in records]
        blob = self._stats_enc.encode(stats)
        mirror = self.mirror_path(code)

        def run(conn: sqlite3.Connection) -> Committed:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT last_id FROM cursors WHERE code = ?", (code,)).fetchone()
                code_last = int(row[0]) if row else 0
                ids = self._ids
                cid = _name_id(conn, ids, code)
                rows = [(cid, ids.get(o) or _name_id(conn, ids, o), q, d) for o, q, d in pairs]
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO received(code, origin, oseq, data) VALUES (?, ?, ?, ?)", rows
                )
                added = conn.total_changes - before
                if added:
                    new_last = int(conn.execute("SELECT max(id) FROM received").fetchone()[0])
                else:
                    new_last = code_last
                conn.execute(
                    "INSERT INTO cursors(code, remote, cursor, etag, head, position, last_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(code) DO UPDATE SET remote = excluded.remote, cursor = excluded.cursor,"
                    " etag = excluded.etag, head = excluded.head, position = excluded.position,"
                    " last_id = excluded.last_id",
                    (code, remote, next_cursor, etag, head, position, new_last),
                )
                conn.execute(
                    "INSERT INTO kv(key, value) VALUES ('receiver_stats', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (blob,),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._ids.clear()  # names created in the rolled-back transaction are gone
                raise
            if added:
                fresh = [p[2] for p in pairs] if added == len(pairs) else None
                _mirror_catch_up(conn, code, mirror, fresh, code_last, new_last)
            return Committed(added, len(pairs) - added)

        return await self._db.run(run)

    async def checkpoint(self) -> None:
        """Fold the WAL into the database after a bulk sync, so later small commits don't pay for it."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

        await self._db.run(run)

    async def reset_code(self, code: str) -> None:
        """Forget a feed's records and cursor (the remote feed was recreated: full resync)."""
        mirror = self.mirror_path(code)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"DELETE FROM received WHERE code = {NAME_ID}", (code,))
            conn.execute("DELETE FROM cursors WHERE code = ?", (code,))
            conn.execute("DELETE FROM followers WHERE name = ? AND code = ?", (BUS, code))
            conn.execute(
                "INSERT INTO followers(name, code, last_id, size) VALUES (?, ?, 0, 0)"
                " ON CONFLICT(name, code) DO UPDATE SET last_id = 0, size = 0",
                (MIRROR, code),
            )
            conn.execute("COMMIT")
            with open(mirror, "wb"):
                pass

        await self._db.run(run)

    async def recover_mirrors(self) -> None:
        """Bring every mirror file in line with the committed rows (after a crash or a lost file)."""

        def run(conn: sqlite3.Connection) -> None:
            codes = [r[0] for r in conn.execute("SELECT DISTINCT code FROM cursors")]
            for code in codes:
                _mirror_catch_up(conn, code, self.mirror_path(code), None, 0, 0)

        await self._db.run(run)

    # --- the bus follower ---------------------------------------------------------------------
    async def pending_for_bus(self, code: str, limit: int = 2000) -> tuple[list[tuple[int, Record]], int]:
        """Committed rows not yet confirmed on the bus (id order), and the position they start after."""

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[int, Record]], int]:
            row = conn.execute(
                "SELECT last_id FROM followers WHERE name = ? AND code = ?", (BUS, code)
            ).fetchone()
            last = int(row[0]) if row else 0
            cur = conn.execute(
                "SELECT r.id, n.name, r.oseq, r.data FROM received r JOIN names n ON n.id = r.origin"
                f" WHERE r.id > ? AND r.code = {NAME_ID} ORDER BY r.id LIMIT ?",
                (last, code, limit),
            )
            out = [
                (i, Record(seq=oseq, origin=origin, data=msgspec.Raw(bytes(data))))
                for i, origin, oseq, data in cur
            ]
            return out, last

        return await self._db.run(run)

    async def bus_done(self, code: str, last_id: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO followers(name, code, last_id, size) VALUES (?, ?, ?, 0)"
                " ON CONFLICT(name, code) DO UPDATE SET last_id = excluded.last_id",
                (BUS, code, last_id),
            )

        await self._db.write(run)

    # --- logs and reads ------------------------------------------------------------------------
    async def log_run(
        self, code: str, status: str, records: int, nbytes: int, duration: float, error: str
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "INSERT INTO sync_runs(at, code, status, records, bytes, duration, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), code, status, records, nbytes, duration, mask_urls(error)),
            )
            if cur.lastrowid and cur.lastrowid % 500 == 0:
                conn.execute("DELETE FROM sync_runs WHERE id <= ?", (cur.lastrowid - KEEP_RUNS,))

        await self._db.write(run)

    async def runs(self, limit: int = 200, errors_only: bool = False) -> list[dict[str, object]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, object]]:
            where = "WHERE status != 'success'" if errors_only else ""
            cur = conn.execute(
                f"SELECT at, code, status, records, bytes, duration, error FROM sync_runs {where}"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            keys = ("at", "code", "status", "records", "bytes", "duration", "error")
            return [dict(zip(keys, r, strict=True)) for r in cur]

        return await self._db.read(run)

    async def records(self, code: str) -> list[tuple[str, int, bytes]]:
        """(origin, origin seq, data) of every stored record of a feed, in insertion order (tests, tools)."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, int, bytes]]:
            cur = conn.execute(
                "SELECT n.name, r.oseq, r.data FROM received r JOIN names n ON n.id = r.origin"
                f" WHERE r.code = {NAME_ID} ORDER BY r.id",
                (code,),
            )
            return [(o, s, bytes(d)) for o, s, d in cur]

        return await self._db.read(run)


def _mirror_catch_up(
    conn: sqlite3.Connection,
    code: str,
    path: Path,
    fresh: Sequence[bytes | msgspec.Raw] | None,
    prev_last: int,
    new_last: int,
) -> None:
    """Append committed rows beyond the mirror's position to its file, then record the new position.

    `fresh` are the data of every row of `code` just inserted after the code's previous last row
    `prev_last`, ending with `new_last` (the fast path: no re-read when the mirror was caught up).
    """
    row = conn.execute(
        "SELECT last_id, size FROM followers WHERE name = ? AND code = ?", (MIRROR, code)
    ).fetchone()
    last_id, size = (int(row[0]), int(row[1])) if row else (0, 0)
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        actual = 0
    if actual < size:
        # The file lost lines we had written (deleted or damaged): rewrite it from the store.
        last_id, size = 0, 0
        fresh = None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if actual != size:
            os.ftruncate(fd, size)  # drop lines written after the last recorded position
        os.lseek(fd, size, os.SEEK_SET)
        if fresh is not None and last_id == prev_last:
            size += _write_lines(fd, fresh)
            last_id = new_last
        else:
            while True:
                batch = conn.execute(
                    f"SELECT id, data FROM received WHERE id > ? AND code = {NAME_ID} ORDER BY id LIMIT 5000",
                    (last_id, code),
                ).fetchall()
                if not batch:
                    break
                size += _write_lines(fd, [bytes(d) for _, d in batch])
                last_id = batch[-1][0]
    finally:
        os.close(fd)
    conn.execute(
        "INSERT INTO followers(name, code, last_id, size) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(name, code) DO UPDATE SET last_id = excluded.last_id, size = excluded.size",
        (MIRROR, code, last_id, size),
    )


def _name_id(conn: sqlite3.Connection, ids: dict[str, int], name: str) -> int:
    """The id of a code or origin name, created on first use (inside the caller's transaction)."""
    got = ids.get(name)
    if got is not None:
        return got
    conn.execute("INSERT OR IGNORE INTO names(name) VALUES (?)", (name,))
    got = int(conn.execute("SELECT id FROM names WHERE name = ?", (name,)).fetchone()[0])
    ids[name] = got
    return got


def _write_lines(fd: int, lines: Sequence[bytes | msgspec.Raw]) -> int:
    data = b"\n".join(lines) + b"\n"
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    return len(data)

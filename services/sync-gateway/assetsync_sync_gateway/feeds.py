"""The sender's feed store: per-endpoint append-only change feeds with sender-assigned sequences.

Each feed has an epoch (random, new whenever the feed is recreated or truncated) and a sequence that
only grows, also across epochs. Records keep their origin site; records relayed from another site
also keep the origin's own sequence, so receivers can dedupe on (origin, origin sequence).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from assetsync_sync_gateway.envelope import encode_cursor, page_bytes
from assetsync_sync_gateway.sqlite_threads import SqliteThreads, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds(
  code TEXT PRIMARY KEY,
  epoch TEXT NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records(
  code TEXT NOT NULL,
  seq INTEGER NOT NULL,
  origin TEXT NOT NULL,
  oseq INTEGER NOT NULL,
  dkey TEXT,
  data BLOB NOT NULL,
  PRIMARY KEY(code, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS records_dkey ON records(code, dkey) WHERE dkey IS NOT NULL;
CREATE TABLE IF NOT EXISTS source_state(code TEXT PRIMARY KEY, state TEXT NOT NULL);
"""


# Records with the same dedupe key are dropped; a sequence clash is a bug and must fail loudly.
INSERT_RECORD = (
    "INSERT INTO records(code, seq, origin, oseq, dkey, data) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(code, dkey) WHERE dkey IS NOT NULL DO NOTHING"
)


@dataclass(frozen=True)
class NewRecord:
    """A record to append: its origin site, the origin's sequence (0 = this site), a dedupe key, JSON."""

    origin: str
    data: bytes
    oseq: int = 0
    dkey: str | None = None


@dataclass
class FeedState:
    """In-memory mirror of a feed's head (this process is the feed's only writer)."""

    epoch: str
    last_seq: int
    count: int


@dataclass(frozen=True)
class PageResult:
    """An assembled page: the encoded body (maybe compressed) and what it covers."""

    body: bytes
    raw_size: int
    count: int
    next_seq: int
    has_more: bool


def new_epoch() -> str:
    return secrets.token_hex(8)


class FeedStore:
    """Feeds in `<data dir>/gateway/feeds.db`; one writer thread, parallel readers."""

    def __init__(self, path: Path, site_id: str) -> None:
        self.path = path
        self.site_id = site_id
        self._db = SqliteThreads(path, readers=2, name="feeds")
        self._feeds: dict[str, FeedState] = {}
        self._inline: sqlite3.Connection | None = None
        # Sequences are assigned from the in-memory head: appends must not interleave.
        self._append_lock = asyncio.Lock()

    async def open(self, codes: Iterable[str] = ()) -> None:
        """Open the database, load feed heads, and create a feed for each code that has none."""

        def init(conn: sqlite3.Connection) -> None:
            conn.executescript(SCHEMA)

        await self._db.open(init)

        def load(conn: sqlite3.Connection) -> dict[str, FeedState]:
            counts = dict(conn.execute("SELECT code, count(*) FROM records GROUP BY code").fetchall())
            return {
                code: FeedState(epoch, last_seq, counts.get(code, 0))
                for code, epoch, last_seq in conn.execute("SELECT code, epoch, last_seq FROM feeds")
            }

        self._feeds = await self._db.write(load)
        await self.ensure(codes)

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        await self._db.close()

    async def ensure(self, codes: Iterable[str]) -> None:
        """Create empty feeds for codes that have none yet."""
        missing = [c for c in codes if c not in self._feeds]
        if not missing:
            return
        made = {c: FeedState(new_epoch(), 0, 0) for c in missing}
        now = int(time.time() * 1000)

        def create(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO feeds(code, epoch, last_seq, created_at) VALUES (?, ?, 0, ?)",
                [(c, s.epoch, now) for c, s in made.items()],
            )

        await self._db.write(create)
        self._feeds.update(made)

    def has(self, code: str) -> bool:
        return code in self._feeds

    def state(self, code: str) -> FeedState:
        return self._feeds[code]

    def states(self) -> Mapping[str, FeedState]:
        return self._feeds

    async def append(self, batches: Mapping[str, Sequence[NewRecord]]) -> dict[str, int]:
        """Append records to feeds in one transaction; returns how many each feed gained (dupes dropped)."""
        async with self._append_lock:
            return await self._append(batches)

    async def _append(self, batches: Mapping[str, Sequence[NewRecord]]) -> dict[str, int]:
        work = {c: list(rs) for c, rs in batches.items() if rs}
        if not work:
            return {}
        for code in work:
            if code not in self._feeds:
                raise KeyError(code)
        heads = {c: self._feeds[c].last_seq for c in work}
        site = self.site_id

        def run(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
            out: dict[str, tuple[int, int]] = {}
            for code, recs in work.items():
                out[code] = _append(conn, code, heads[code], recs, site)
            return out

        done = await self._db.write(run)
        gained: dict[str, int] = {}
        for code, (seq, added) in done.items():
            st = self._feeds[code]
            st.last_seq = seq
            st.count += added
            gained[code] = added
        return gained

    async def reset(self, code: str, source_state: str | None = None) -> str:
        """Truncate a feed and give it a new epoch (cursors of the old epoch then get 409)."""
        async with self._append_lock:
            return await self._reset(code, source_state)

    async def _reset(self, code: str, source_state: str | None) -> str:
        epoch = new_epoch()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM records WHERE code = ?", (code,))
            conn.execute("UPDATE feeds SET epoch = ? WHERE code = ?", (epoch, code))
            if source_state is not None:
                conn.execute(
                    "INSERT INTO source_state(code, state) VALUES (?, ?)"
                    " ON CONFLICT(code) DO UPDATE SET state = excluded.state",
                    (code, source_state),
                )

        await self._db.write(run)
        st = self._feeds[code]
        st.epoch, st.count = epoch, 0
        return epoch

    async def page(
        self,
        code: str,
        since: int,
        *,
        limit: int,
        max_bytes: int,
        exclude_origin: str | None = None,
        encode: Callable[[bytes], bytes] | None = None,
        inline: bool = False,
    ) -> PageResult:
        """Records with seq > since (up to the current head), capped by count and bytes, as a page body.

        `inline` reads on the event loop's own connection: for small pages an indexed read of a few
        rows costs less than the hop to a reader thread.
        """
        st = self._feeds[code]
        hwm, epoch, site = st.last_seq, st.epoch, self.site_id

        def run(conn: sqlite3.Connection) -> PageResult:
            if exclude_origin:
                cur = conn.execute(
                    "SELECT seq, origin, oseq, data FROM records WHERE code = ? AND seq > ? AND seq <= ?"
                    " AND origin != ? ORDER BY seq LIMIT ?",
                    (code, since, hwm, exclude_origin, limit + 1),
                )
            else:
                cur = conn.execute(
                    "SELECT seq, origin, oseq, data FROM records WHERE code = ? AND seq > ? AND seq <= ?"
                    " ORDER BY seq LIMIT ?",
                    (code, since, hwm, limit + 1),
                )
            rows: list[tuple[int, str, int, bytes]] = []
            size = 0
            has_more = False
            for row in cur:
                if len(rows) >= limit or (rows and size + len(row[3]) > max_bytes):
                    has_more = True
                    break
                rows.append(row)
                size += len(row[3]) + 40
            cur.close()
            next_seq = rows[-1][0] if has_more else max(hwm, since)
            body = page_bytes(code, rows, encode_cursor(epoch, next_seq), has_more, site)
            raw = len(body)
            if encode is not None:
                body = encode(body)
            return PageResult(body, raw, len(rows), next_seq, has_more)

        if inline:
            if self._inline is None:
                self._inline = connect(self.path)
            return run(self._inline)
        return await self._db.read(run)

    async def load_source_state(self, code: str) -> str | None:
        """The saved position of an endpoint's source (e.g. a JSONL file offset), as JSON text."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT state FROM source_state WHERE code = ?", (code,)).fetchone()
            return str(row[0]) if row else None

        return await self._db.read(run)

    async def append_with_state(self, code: str, records: Sequence[NewRecord], state: str) -> int:
        """Append records and save the source position in the same transaction (no loss, no repeat)."""
        async with self._append_lock:
            return await self._append_with_state(code, records, state)

    async def _append_with_state(self, code: str, records: Sequence[NewRecord], state: str) -> int:
        st = self._feeds[code]
        head, site = st.last_seq, self.site_id

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            seq, added = _append(conn, code, head, records, site)
            conn.execute(
                "INSERT INTO source_state(code, state) VALUES (?, ?)"
                " ON CONFLICT(code) DO UPDATE SET state = excluded.state",
                (code, state),
            )
            return seq, added

        seq, added = await self._db.write(run)
        st.last_seq = seq
        st.count += added
        return added


def _append(
    conn: sqlite3.Connection, code: str, head: int, records: Iterable[NewRecord], site: str
) -> tuple[int, int]:
    """Append records after `head` with the next sequences; returns (new head, rows really added)."""
    seq = head
    rows = []
    for r in records:
        seq += 1
        rows.append((code, seq, r.origin or site, r.oseq, r.dkey, r.data))
    before = conn.total_changes
    conn.executemany(INSERT_RECORD, rows)
    added = conn.total_changes - before  # before the UPDATE below, which counts as a change too
    conn.execute("UPDATE feeds SET last_seq = ? WHERE code = ?", (seq, code))
    return seq, added

"""The sender's feed store: per-endpoint append-only change feeds with sender-assigned sequences.

Each feed has an epoch (random, new whenever the feed is recreated or truncated) and a sequence that
only grows, also across epochs. Records keep their origin site; records relayed from another site
also keep the origin's own sequence, so receivers can dedupe on (origin, origin sequence).

Feeds may be bounded (`max_records`, enforced in every append's transaction; `retention_days`,
applied periodically). What was pruned is remembered as the feed's low-water mark (`floor`): the
highest sequence removed. A cursor below it would silently skip records, so it is answered 409.
Retention needs each record's age: `marks` holds (sequence, time) pairs, at most one a minute per
feed with `retention_days`, and a record's age is that of the first mark at or after it (so it is
never pruned early).
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
CREATE TABLE IF NOT EXISTS marks(
  code TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY(code, seq)
) WITHOUT ROWID;
"""
MARK_EVERY_MS = 60_000
DAY_MS = 86_400_000


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
    floor: int = 0  # the highest sequence pruned: cursors below it are answered 409
    marked_at: int = 0  # ms of the feed's last retention mark
    appended_at: int = 0  # ms of the last append that added records (0: none since start)


@dataclass(frozen=True)
class Limits:
    """How much of a feed is kept (0 = no bound)."""

    retention_days: float = 0.0
    max_records: int = 0


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
        self.limits: dict[str, Limits] = {}
        # Sequences are assigned from the in-memory head: appends must not interleave.
        self._append_lock = asyncio.Lock()

    async def open(self, codes: Iterable[str] = ()) -> None:
        """Open the database, load feed heads, and create a feed for each code that has none."""

        def init(conn: sqlite3.Connection) -> None:
            conn.executescript(SCHEMA)
            cols = {r[1] for r in conn.execute("PRAGMA table_info(feeds)")}
            if "floor" not in cols:  # feeds.db from before bounded feeds
                conn.execute("ALTER TABLE feeds ADD COLUMN floor INTEGER NOT NULL DEFAULT 0")

        await self._db.open(init)
        now = _now_ms()

        def load(conn: sqlite3.Connection) -> dict[str, FeedState]:
            counts = dict(conn.execute("SELECT code, count(*) FROM records GROUP BY code").fetchall())
            # Records from before marks existed are dated now: they are kept a full retention period.
            conn.execute(
                "INSERT OR IGNORE INTO marks(code, seq, at) SELECT code, last_seq, ? FROM feeds f"
                " WHERE last_seq > 0 AND NOT EXISTS (SELECT 1 FROM marks m WHERE m.code = f.code)",
                (now,),
            )
            marked = dict(conn.execute("SELECT code, max(at) FROM marks GROUP BY code").fetchall())
            return {
                code: FeedState(epoch, last_seq, counts.get(code, 0), floor, int(marked.get(code) or 0))
                for code, epoch, last_seq, floor in conn.execute(
                    "SELECT code, epoch, last_seq, floor FROM feeds"
                )
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
        plans = {c: self._plan(c) for c in work}
        site = self.site_id

        def run(conn: sqlite3.Connection) -> dict[str, Appended]:
            return {code: _append(conn, code, plans[code], recs, site) for code, recs in work.items()}

        done = await self._db.write(run)
        gained: dict[str, int] = {}
        for code, res in done.items():
            self._applied(code, res)
            gained[code] = res.added
        return gained

    def _plan(self, code: str) -> AppendPlan:
        st = self._feeds[code]
        now = _now_ms()
        lim = self.limits.get(code) or Limits()
        dated = lim.retention_days > 0  # only feeds pruned by age need their records dated
        return AppendPlan(
            head=st.last_seq,
            count=st.count,
            max_records=lim.max_records,
            mark_at=now if dated and now - st.marked_at >= MARK_EVERY_MS else 0,
        )

    def _applied(self, code: str, res: Appended) -> None:
        st = self._feeds[code]
        st.last_seq = res.head
        st.count += res.added - res.removed
        st.floor = max(st.floor, res.floor)
        if res.marked_at:
            st.marked_at = res.marked_at
        if res.added:
            st.appended_at = _now_ms()

    async def reset(self, code: str, source_state: str | None = None) -> str:
        """Truncate a feed and give it a new epoch (cursors of the old epoch then get 409)."""
        async with self._append_lock:
            return await self._reset(code, source_state)

    async def _reset(self, code: str, source_state: str | None) -> str:
        epoch = new_epoch()

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM records WHERE code = ?", (code,))
            conn.execute("DELETE FROM marks WHERE code = ?", (code,))
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

    async def prune(self, now_ms: int | None = None) -> dict[str, int]:
        """Apply `retention_days` to every bounded feed; returns how many records each lost."""
        async with self._append_lock:
            now = _now_ms() if now_ms is None else now_ms
            # The head is dated by the last append (unknown since a restart: now, which keeps it longer).
            work = {
                code: (
                    now - int(lim.retention_days * DAY_MS),
                    self._feeds[code].last_seq,
                    self._feeds[code].appended_at or now,
                )
                for code, lim in self.limits.items()
                if lim.retention_days > 0 and code in self._feeds
            }
            if not work:
                return {}

            def run(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
                out: dict[str, tuple[int, int]] = {}
                for code, (cutoff, head, head_at) in work.items():
                    # A record is as old as the first mark at or after it; the head gets one, so records
                    # appended since the last mark are dated no earlier than they really are.
                    conn.execute(
                        "INSERT OR IGNORE INTO marks(code, seq, at) VALUES (?, ?, ?)", (code, head, head_at)
                    )
                    row = conn.execute(
                        "SELECT max(seq) FROM marks WHERE code = ? AND at < ?", (code, cutoff)
                    ).fetchone()
                    if row[0] is not None:
                        out[code] = _cut(conn, code, int(row[0]))
                return out

            done = await self._db.write(run)
            removed: dict[str, int] = {}
            for code, (floor, n) in done.items():
                st = self._feeds[code]
                st.floor = max(st.floor, floor)
                st.count -= n
                if n:
                    removed[code] = n
            return removed

    async def latest_since(self, code: str, n: int, exclude_origin: str | None = None) -> int:
        """The position just before the newest `n` records of a feed (its floor when it holds fewer)."""
        st = self._feeds[code]
        hwm, floor = st.last_seq, st.floor

        def run(conn: sqlite3.Connection) -> int:
            sql = "SELECT seq FROM records WHERE code = ? AND seq <= ?"
            args: tuple[object, ...] = (code, hwm)
            if exclude_origin:
                sql += " AND origin != ?"
                args = (*args, exclude_origin)
            row = conn.execute(f"{sql} ORDER BY seq DESC LIMIT 1 OFFSET ?", (*args, n - 1)).fetchone()
            return max(floor, int(row[0]) - 1) if row else floor

        return await self._db.read(run)

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
        more: bool = False,
    ) -> PageResult:
        """Records with seq > since (up to the current head), capped by count and bytes, as a page body.

        `inline` reads on the event loop's own connection: for small pages an indexed read of a few
        rows costs less than the hop to a reader thread. `more` says has_more even at the head (the
        feed is still catching up with its source).
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
            body = page_bytes(code, rows, encode_cursor(epoch, next_seq), has_more or more, site)
            raw = len(body)
            if encode is not None:
                body = encode(body)
            return PageResult(body, raw, len(rows), next_seq, has_more or more)

        if inline:
            if self._inline is None:
                self._inline = connect(self.path)
            return run(self._inline)
        return await self._db.read(run)

    async def latest(self, code: str, n: int, origin: str) -> list[bytes]:
        """The data of a feed's newest `n` records from one origin site, newest first."""

        def run(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT data FROM records WHERE code = ? AND origin = ? ORDER BY seq DESC LIMIT ?",
                (code, origin, n),
            ).fetchall()
            return [bytes(r[0]) for r in rows]

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
        plan, site = self._plan(code), self.site_id

        def run(conn: sqlite3.Connection) -> Appended:
            res = _append(conn, code, plan, records, site)
            conn.execute(
                "INSERT INTO source_state(code, state) VALUES (?, ?)"
                " ON CONFLICT(code) DO UPDATE SET state = excluded.state",
                (code, state),
            )
            return res

        res = await self._db.write(run)
        self._applied(code, res)
        return res.added


@dataclass(frozen=True)
class AppendPlan:
    """What an append needs to know of the feed's head (read under the append lock)."""

    head: int
    count: int
    max_records: int
    mark_at: int  # ms to record a retention mark at, or 0


@dataclass(frozen=True)
class Appended:
    """What an append did: the new head, rows added, rows pruned by max_records, the new floor."""

    head: int
    added: int
    removed: int = 0
    floor: int = 0
    marked_at: int = 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _append(
    conn: sqlite3.Connection, code: str, plan: AppendPlan, records: Iterable[NewRecord], site: str
) -> Appended:
    """Append records after the head with the next sequences, then hold `max_records` (one transaction)."""
    seq = plan.head
    rows = []
    for r in records:
        seq += 1
        rows.append((code, seq, r.origin or site, r.oseq, r.dkey, r.data))
    before = conn.total_changes
    conn.executemany(INSERT_RECORD, rows)
    added = conn.total_changes - before  # before the UPDATE below, which counts as a change too
    conn.execute("UPDATE feeds SET last_seq = ? WHERE code = ?", (seq, code))
    if plan.mark_at and added:
        conn.execute("INSERT OR IGNORE INTO marks(code, seq, at) VALUES (?, ?, ?)", (code, seq, plan.mark_at))
    excess = plan.count + added - plan.max_records if plan.max_records else 0
    if excess <= 0:
        return Appended(seq, added, marked_at=plan.mark_at if added else 0)
    row = conn.execute(
        "SELECT seq FROM records WHERE code = ? ORDER BY seq LIMIT 1 OFFSET ?", (code, excess - 1)
    ).fetchone()
    floor, removed = _cut(conn, code, int(row[0]))
    return Appended(seq, added, removed, floor, plan.mark_at if added else 0)


def _cut(conn: sqlite3.Connection, code: str, upto: int) -> tuple[int, int]:
    """Delete a feed's records up to sequence `upto` and raise its floor there; (floor, rows removed)."""
    removed = conn.execute("DELETE FROM records WHERE code = ? AND seq <= ?", (code, upto)).rowcount
    # Keep the mark at `upto` itself: it still dates the records just after it.
    conn.execute("DELETE FROM marks WHERE code = ? AND seq < ?", (code, upto))
    conn.execute("UPDATE feeds SET floor = max(floor, ?) WHERE code = ?", (upto, code))
    return upto, max(0, removed)

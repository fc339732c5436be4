"""`assetsync replay`: rebuild a fresh SQLite store from the streams, through the store's own writer.

Each stream is read by an ephemeral *ordered* push consumer (no acks, no durable left behind, flow
controlled), in the order MARKET, PORTFOLIO, then task/backup results from OPS: the upserts are
guarded by `as_of`/`updated_at`/`taken_at`, so only the prunes carried by task results depend on order,
and they must follow the holdings they prune — as they do live, since collectors publish the results last.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import msgspec
import nats.js.errors
from assetsync.config import Settings
from assetsync.events import Codec
from assetsync.progress import ProgressBar
from assetsync.subjects import Topology
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from assetsync_store.db import Database
from assetsync_store.upserts import Rows

BATCH = 2000


class ReplayError(Exception):
    """The replay cannot run (output exists, stream missing, …): the message says what to do."""


@dataclass
class ReplayStats:
    """What a replay read and wrote."""

    events: int = 0
    rows: int = 0
    skipped: int = 0  # events the store does not keep (e.g. lifecycle) or could not decode
    by_stream: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def parse_since(text: str, tz: str) -> datetime:
    """`YYYY-MM-DD` (local midnight in `tz`) or an ISO date-time (local in `tz` unless it has an offset)."""
    from zoneinfo import ZoneInfo

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(
            f"--since {text!r}: expected a date (2026-11-01) or date-time (2026-11-01T09:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment


def sources(topo: Topology) -> list[tuple[str, str]]:
    """(stream, subject filter) pairs in replay order."""
    return [
        (topo.market, topo.subject("market", ">")),
        (topo.portfolio, topo.subject("portfolio", ">")),
        (topo.ops, topo.result()),
        (topo.ops, topo.backup()),
    ]


async def replay(
    nc: NATS,
    js: JetStreamContext,
    topo: Topology,
    output: Path,
    *,
    since: datetime | None = None,
    progress: TextIO | None = None,
    on_batch: Callable[[int], None] | None = None,
    site_id: str = "",
) -> ReplayStats:
    """Write every stored event (since `since`) into a new database at `output`."""
    if await asyncio.to_thread(output.exists):
        raise ReplayError(
            f"{output} already exists: replay writes a fresh database (remove it or pass --output)"
        )
    plan: list[tuple[str, str, int, int]] = []  # stream, subject, first sequence, how many
    for stream, subject in sources(topo):
        try:
            await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            raise ReplayError(
                f"stream {stream} does not exist on this NATS server (is nats.prefix right?)"
            ) from None
        if since is None:
            plan.append((stream, subject, 1, await _count(js, stream, subject)))
        else:
            plan.append((stream, subject, *await _start_at(nc, js, stream, subject, since)))
    total = sum(n for *_, n in plan)
    bar = ProgressBar("replay", progress)
    stats = ReplayStats()
    started = time.monotonic()
    db = Database(output)
    await db.open()
    try:
        for stream, subject, start_seq, expected in plan:
            if expected == 0:
                continue
            n = await _replay_one(
                js, db, stream, subject, start_seq, since, stats, bar, total, on_batch, site_id
            )
            stats.by_stream[stream] = stats.by_stream.get(stream, 0) + n
    finally:
        await db.close()
    stats.seconds = time.monotonic() - started
    return stats


async def _count(js: JetStreamContext, stream: str, subject: str) -> int:
    """How many messages of `stream` match `subject` right now (for the progress bar)."""
    info = await js.stream_info(stream, subjects_filter=subject)
    subjects = info.state.subjects or {}
    return sum(subjects.values()) if subjects else 0


async def _replay_one(
    js: JetStreamContext,
    db: Database,
    stream: str,
    subject: str,
    start_seq: int,
    since: datetime | None,
    stats: ReplayStats,
    bar: ProgressBar,
    total: int,
    on_batch: Callable[[int], None] | None,
    site_id: str,
) -> int:
    codec = Codec()
    buf: list[Msg] = []
    wake = asyncio.Event()
    caught_up = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        meta = msg.metadata
        if meta.num_pending == 0:
            caught_up.set()
            wake.set()
        # nats-py's ordered consumer may restart from the stream's start after an idle heartbeat, and
        # a start time past the last message is not honoured by the server: filter here as well.
        if meta.sequence.stream < start_seq or (since is not None and meta.timestamp < since):
            return
        buf.append(msg)
        if len(buf) >= BATCH:
            wake.set()

    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE if since else api.DeliverPolicy.ALL,
        opt_start_seq=start_seq if since else None,
    )
    sub = await js.subscribe(
        subject,
        stream=stream,
        cb=on_msg,
        ordered_consumer=True,
        idle_heartbeat=2.0,
        config=config,
        pending_msgs_limit=4 * BATCH + 10_000,
        pending_bytes_limit=256 * 1024 * 1024,
    )
    done = 0
    try:
        while True:
            if not buf:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), 0.05)
                except TimeoutError:
                    if caught_up.is_set() and not buf:
                        break
                    continue
            batch, buf[:] = buf[:], []
            if not batch:
                continue
            rows = Rows(site_id=site_id)
            for msg in batch:
                try:
                    event = codec.decode(msg.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    stats.skipped += 1
                    continue
                if not rows.add(event):
                    stats.skipped += 1
            stats.rows += await db.write(rows)
            stats.events += len(batch)
            done += len(batch)
            bar.update({"done": stats.events, "total": total, "what": "events"})
            if on_batch is not None:
                on_batch(stats.events)
            if caught_up.is_set() and not buf:
                break
    finally:
        await sub.unsubscribe()
    return done


async def _start_at(
    nc: NATS, js: JetStreamContext, stream: str, subject: str, since: datetime
) -> tuple[int, int]:
    """The first stream sequence at or after `since` for `subject`, and how many messages follow."""
    # A push consumer (to an inbox nobody reads) is positioned at creation; a pull one is not.
    info = await js.add_consumer(
        stream,
        config=api.ConsumerConfig(
            deliver_subject=nc.new_inbox(),
            deliver_policy=api.DeliverPolicy.BY_START_TIME,
            opt_start_time=since,
            filter_subject=subject,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=30.0,
        ),
    )
    try:
        before = info.delivered.stream_seq if info.delivered is not None else 0
        return int(before or 0) + 1, int(info.num_pending or 0)
    finally:
        await js.delete_consumer(stream, info.name)


def default_output(data_dir: Path) -> Path:
    return data_dir / "replay" / "assets.db"


async def run_replay(
    settings: Settings,
    output: Path | None,
    since_text: str,
    *,
    force: bool = False,
    out: TextIO | None = None,
    progress: TextIO | None = None,
) -> int:
    """The `assetsync replay` command: 0 on success, 1 when the replay could not run, 2 on a bad --since."""
    from assetsync import bus
    from assetsync.stack import NatsOwner

    o = out or sys.stdout
    target = (output or default_output(settings.data_dir)).resolve()
    if target == settings.db_path.resolve():
        print(
            f"replay: refusing to write into the live database {target}; pass another --output",
            file=sys.stderr,
        )
        return 1
    try:
        since = parse_since(since_text, settings.timezone) if since_text else None
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if force:
        for suffix in ("", "-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
    owner = NatsOwner(settings)
    url = await owner.acquire()
    try:
        nc = await bus.connect(url, name="assetsync:replay")
        try:
            js = bus.jetstream(nc)
            topo = Topology(settings.config.nats.prefix)
            stats = await replay(
                nc, js, topo, target, since=since, progress=progress, site_id=settings.site_id
            )
        except ReplayError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return 1
        finally:
            await nc.close()
    finally:
        await asyncio.to_thread(owner.release)
    streams = ", ".join(f"{k} {v:,}" for k, v in stats.by_stream.items()) or "the streams are empty"
    o.write(
        f"replayed {stats.events:,} events ({streams}) into {target}: {stats.rows:,} rows written, "
        f"{stats.skipped:,} events not kept by the store, {stats.seconds:.1f}s\n"
    )
    return 0

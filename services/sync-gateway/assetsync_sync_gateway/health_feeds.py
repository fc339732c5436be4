"""SYS001 (data health) and SYS002 (collector status): feeds the gateway writes about the site itself.

Both are computed from what the gateway already holds: its feeds' heads and sources, and the task
results it consumes for AS007 (rebuilt from the AS007 feed at start, so a restart forgets nothing).
A record is appended only when its content changed, ignoring what moves by itself (`checked_at`,
ages and, for SYS001, record counts and the times of the last record and run): a quiet, healthy system appends SYS001
when a status changes and SYS002 when a task runs, plus one record an hour (`HEARTBEAT`) so a reader
can tell the gateway is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from assetsync.config import Settings
from assetsync.events import TaskResult
from assetsync.schedule import Cron

from assetsync_sync_gateway.feeds import FeedStore, NewRecord
from assetsync_sync_gateway.registry import Catalog
from assetsync_sync_gateway.sources import Sources
from assetsync_sync_gateway.stats import iso

log = logging.getLogger("assetsync.gateway.health")
DATA_HEALTH = "SYS001"
COLLECTORS = "SYS002"
STALE_AFTER = 3  # intervals without a record before a feed (or a run) is stale
HEARTBEAT = 3600.0  # seconds: an unchanged record is appended again after this long
HISTORY = 200  # task results kept per task (for consecutive failures)
_MOVING = {
    DATA_HEALTH: frozenset({"checked_at", "age_seconds", "last_record_at", "last_run_at", "records"}),
    COLLECTORS: frozenset({"checked_at", "age_seconds"}),
}
FeedStatus = Literal["ok", "stale", "empty", "error"]
RunStatus = Literal["ok", "stale", "failed", "never"]
_RESULT = msgspec.json.Decoder(TaskResult)
_enc = msgspec.json.Encoder()


class AssetProblem(msgspec.Struct, kw_only=True):
    asset: str
    reason: str


class LastRun(msgspec.Struct, kw_only=True):
    """One task run as SYS002 shows it."""

    started_at: str | None
    finished_at: str | None
    status: str
    duration_seconds: float
    records: int
    total: int
    errors: list[AssetProblem]
    message: str


class CollectorStatus(msgspec.Struct, kw_only=True):
    """SYS002's entry for one task: its schedule, last run, next run and failures in a row."""

    task: str
    schedule: str
    last_run: LastRun | None
    next_run: str | None
    consecutive_failures: int
    age_seconds: float | None


class CollectorStatusDoc(msgspec.Struct, kw_only=True):
    checked_at: str | None
    collectors: list[CollectorStatus]


class FeedHealth(msgspec.Struct, kw_only=True):
    """SYS001's entry for one catalog feed."""

    code: str
    name: str
    source: str
    records: int
    last_record_at: str | None
    age_seconds: float | None
    expected_interval_seconds: float | None
    status: FeedStatus
    error: str = ""


class CollectorHealth(msgspec.Struct, kw_only=True):
    """SYS001's entry for one collector: when it last ran and whether that is recent enough."""

    task: str
    last_run_at: str | None
    last_status: str | None
    age_seconds: float | None
    expected_every_seconds: float | None
    status: RunStatus


class DataHealthDoc(msgspec.Struct, kw_only=True):
    checked_at: str | None
    status: Literal["ok", "degraded"]
    feeds_ok: int
    feeds_stale: int
    feeds_empty: int
    feeds_error: int
    feeds: list[FeedHealth]
    collectors: list[CollectorHealth]


@dataclass(frozen=True)
class TaskPlan:
    """When a task is expected to run: cron slots (scheduled tasks) or every N seconds (pollers)."""

    task: str
    crons: tuple[Cron, ...] = ()
    every: float = 0.0
    text: str = ""  # the schedule as configured, e.g. "hour=* minute=0"

    def next_run(self, now: float, last: float | None) -> float | None:
        if self.crons:
            moment = datetime.fromtimestamp(now, UTC)
            return min(c.next_after(moment) for c in self.crons).timestamp()
        if self.every and last:
            return last + self.every  # a poller never seen running has no known next run
        return None

    def period(self, now: float) -> float | None:
        """The expected gap between runs (the gap between the next two cron slots)."""
        if self.every:
            return self.every
        if not self.crons:
            return None
        first = self.next_run(now, None)
        assert first is not None
        second = self.next_run(first, None)
        return (second or first) - first or None


def task_plans(settings: Settings) -> list[TaskPlan]:
    """The expected runs: the `asset_sync.scheduler` entries of the collectors that are on here."""
    # A schedule whose collector is off here publishes nothing: not expected to run (the okx task
    # needs the account keys; public OKX data is a feed, watched by SYS001's feed freshness).
    collectors = (
        ("crypto", settings.binance_on()),
        ("fund", settings.xueqiu_on()),
        ("okx", settings.okx_account_on()),
    )
    off = {task for task, on in collectors if not on}
    by_task: dict[str, list[tuple[str, str]]] = {}
    for s in settings.schedules:
        if s.task not in off:
            by_task.setdefault(s.task, []).append((s.hour, s.minute))
    plans = [
        TaskPlan(
            task,
            tuple(Cron.parse(h, m, settings.timezone) for h, m in slots),
            text="; ".join(f"hour={h} minute={m}" for h, m in slots),
        )
        for task, slots in by_task.items()
    ]
    return plans


@dataclass
class HealthFeeds:
    """Keeps the task history and appends SYS001/SYS002 records when they change."""

    catalog: Catalog
    feeds: FeedStore
    sources: Sources
    plans: Sequence[TaskPlan] = ()
    clock: Callable[[], float] = time.time
    runs: dict[str, deque[TaskResult]] = field(default_factory=dict)
    _last: dict[str, tuple[str, float]] = field(default_factory=dict)  # code -> (fingerprint, appended at)
    _task: asyncio.Task[None] | None = None

    def codes(self) -> list[str]:
        return [c for c in (DATA_HEALTH, COLLECTORS) if self.catalog.is_native(c) and self.feeds.has(c)]

    async def load(self) -> None:
        """Rebuild the task history from the AS007 feed, and the last records' fingerprints."""
        site = self.feeds.site_id
        if self.feeds.has("AS007"):
            for data in reversed(await self.feeds.latest("AS007", HISTORY * 4, site)):
                with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                    self.observe([_RESULT.decode(data)], site)
        for code in self.codes():
            last = await self.feeds.latest(code, 1, site)
            if last:
                with contextlib.suppress(msgspec.DecodeError):
                    # The appended time is unknown: now, so the heartbeat restarts its hour.
                    self._last[code] = (fingerprint(code, msgspec.json.decode(last[0])), self.clock())

    def observe(self, events: Iterable[object], site: str) -> None:
        """Note this site's task results (relayed results of other sites are theirs to report)."""
        for e in events:
            if isinstance(e, TaskResult) and e.origin in ("", site):
                q = self.runs.setdefault(e.task, deque(maxlen=HISTORY))
                if not any(r.command_id == e.command_id for r in q):
                    q.append(e)

    def collector_status(self, now: float) -> CollectorStatusDoc:
        plans = {p.task: p for p in self.plans}
        out: list[CollectorStatus] = []
        for task in [*plans, *sorted(t for t in self.runs if t not in plans)]:
            plan = plans.get(task, TaskPlan(task))
            runs = self.runs.get(task, deque())
            last = runs[-1] if runs else None
            failures = 0
            for r in reversed(runs):
                if r.status != "failed":
                    break
                failures += 1
            last_at = last.finished_at / 1000 if last else None
            out.append(
                CollectorStatus(
                    task=task,
                    schedule=plan.text or "not scheduled here",
                    last_run=_last_run(last) if last else None,
                    next_run=iso(plan.next_run(now, last_at)),
                    consecutive_failures=failures,
                    age_seconds=round(now - last_at, 1) if last_at else None,
                )
            )
        return CollectorStatusDoc(checked_at=iso(now), collectors=out)

    def data_health(self, now: float) -> DataHealthDoc:
        feeds: list[FeedHealth] = []
        for code, ep in self.catalog.endpoints.items():
            if code in (DATA_HEALTH, COLLECTORS) or not self.feeds.has(code):
                continue
            st = self.feeds.state(code)
            # The last append this run, else the feed's last retention mark (at most a minute older).
            at = (st.appended_at or st.marked_at) / 1000 or None
            error = self.sources.error(code)
            expected = ep.interval_seconds if ep.source == "native" else None
            status: FeedStatus
            if error:
                status = "error"
            elif not st.count:
                status = "empty"
            elif expected and at and now - at > STALE_AFTER * expected:
                status = "stale"
            else:
                # Built-in feeds follow their tasks (judged below), http feeds append only on change.
                status = "ok"
            feeds.append(
                FeedHealth(
                    code=code,
                    name=ep.name,
                    source=ep.source,
                    records=st.count,
                    last_record_at=iso(at),
                    age_seconds=round(now - at, 1) if at else None,
                    expected_interval_seconds=expected,
                    status=status,
                    error=error,
                )
            )
        collectors = [_collector_health(c, self.plans, now) for c in self.collector_status(now).collectors]
        counts = {s: sum(f.status == s for f in feeds) for s in ("ok", "stale", "empty", "error")}
        bad = counts["stale"] + counts["error"] + sum(c.status in ("stale", "failed") for c in collectors)
        return DataHealthDoc(
            checked_at=iso(now),
            status="degraded" if bad else "ok",
            feeds_ok=counts["ok"],
            feeds_stale=counts["stale"],
            feeds_empty=counts["empty"],
            feeds_error=counts["error"],
            feeds=feeds,
            collectors=collectors,
        )

    async def tick(self, code: str) -> bool:
        """Compute one of the two records and append it if it changed (or the heartbeat is due)."""
        now = self.clock()
        doc: msgspec.Struct = self.data_health(now) if code == DATA_HEALTH else self.collector_status(now)
        data = msgspec.to_builtins(doc)
        fp = fingerprint(code, data)
        prev = self._last.get(code)
        if prev is not None and prev[0] == fp and now - prev[1] < HEARTBEAT:
            return False
        await self.feeds.append({code: [NewRecord(origin="", data=_enc.encode(data))]})
        self._last[code] = (fp, now)
        return True

    def start(self) -> None:
        codes = self.codes()
        if codes:
            self._task = asyncio.create_task(self._loop(codes), name="gateway-health-feeds")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self, codes: Sequence[str]) -> None:
        due = dict.fromkeys(codes, 0.0)
        while True:
            now = time.monotonic()
            for code, at in due.items():
                if now < at:
                    continue
                ep = self.catalog.get(code)
                due[code] = now + (ep.interval_seconds if ep else 60.0)
                try:
                    await self.tick(code)
                except Exception as exc:  # retried at the next interval; the feed just has a gap
                    log.warning("%s: cannot append the health record (retrying): %s", code, exc)
            await asyncio.sleep(max(1.0, min(due.values()) - time.monotonic()))


def fingerprint(code: str, data: Any) -> str:
    """A hash of a record's content without the values that move by themselves."""
    return hashlib.sha256(_enc.encode(_strip(data, _MOVING.get(code, frozenset())))).hexdigest()


def _strip(value: Any, moving: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip(v, moving) for k, v in value.items() if k not in moving}
    if isinstance(value, list):
        return [_strip(v, moving) for v in value]
    return value


def _last_run(r: TaskResult) -> LastRun:
    return LastRun(
        started_at=iso(r.started_at / 1000),
        finished_at=iso(r.finished_at / 1000),
        status=r.status,
        duration_seconds=round(r.duration, 3),
        records=r.records,
        total=r.total,
        errors=[AssetProblem(asset=e.asset, reason=e.reason) for e in r.errors],
        message=r.message,
    )


def _collector_health(c: CollectorStatus, plans: Sequence[TaskPlan], now: float) -> CollectorHealth:
    plan = next((p for p in plans if p.task == c.task), None)
    every = plan.period(now) if plan else None
    last = c.last_run
    status: RunStatus
    if last is None:
        status = "never"
    elif last.status == "failed":
        status = "failed"
    elif every and c.age_seconds is not None and c.age_seconds > STALE_AFTER * every:
        status = "stale"
    else:
        status = "ok"
    return CollectorHealth(
        task=c.task,
        last_run_at=last.finished_at if last else None,
        last_status=last.status if last else None,
        age_seconds=c.age_seconds,
        expected_every_seconds=every,
        status=status,
    )

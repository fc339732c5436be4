"""Cron-like schedules (`hour`/`minute` as in the seed) that publish one task command per slot."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from assetsync.events import TaskCommand, TaskName, TaskResult
from assetsync.runtime import Runtime

log = logging.getLogger("assetsync.schedule")


def _parse_field(spec: str, lo: int, hi: int, what: str) -> tuple[int, ...]:
    """`*`, `n`, `a-b`, `a,b,c`, `*/n` -> sorted values in [lo, hi]."""
    s = str(spec).strip()
    if s == "*":
        return tuple(range(lo, hi + 1))
    m = re.fullmatch(r"\*/(\d+)", s)
    if m:
        step = int(m.group(1))
        if step <= 0:
            raise ValueError(f"{what}: step must be positive in {s!r}")
        return tuple(range(lo, hi + 1, step))
    out: set[int] = set()
    for part in s.split(","):
        r = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not r:
            raise ValueError(f"{what}: {s!r} is not a number, '*', 'a-b', 'a,b' or '*/n'")
        a = int(r.group(1))
        b = int(r.group(2)) if r.group(2) else a
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise ValueError(f"{what}: {part!r} is out of range {lo}-{hi}")
        out.update(range(a, b + 1))
    return tuple(sorted(out))


@dataclass(frozen=True)
class Cron:
    """A set of (hour, minute) slots each day, in a timezone."""

    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    tz: ZoneInfo

    @classmethod
    def parse(cls, hour: str | int, minute: str | int, tz: str | ZoneInfo = "Asia/Shanghai") -> Cron:
        zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        return cls(_parse_field(str(hour), 0, 23, "hour"), _parse_field(str(minute), 0, 59, "minute"), zone)

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after `moment` (aware), as an aware local datetime."""
        if moment.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        after_utc = moment.astimezone(UTC)
        local_day = moment.astimezone(self.tz).date()
        for offset in range(3):
            day = local_day + timedelta(days=offset)
            for h in self.hours:
                for m in self.minutes:
                    cand = self._at(day, h, m)
                    # Compare in UTC: same-tzinfo comparisons ignore DST offsets.
                    if cand.astimezone(UTC) > after_utc:
                        return cand
        raise ValueError("no slot within three days")  # unreachable: every day has a slot

    def _at(self, day: date, h: int, m: int) -> datetime:
        # Round-trip through UTC so a wall time skipped by DST lands on a real instant.
        naive = datetime.combine(day, time(h, m))
        return naive.replace(tzinfo=self.tz).astimezone(UTC).astimezone(self.tz)


SlotFilter = Callable[[datetime], bool | Awaitable[bool]]


class Scheduler:
    """Publishes a TaskCommand for each slot of its crons; replicas collapse into one by Nats-Msg-Id."""

    def __init__(
        self,
        rt: Runtime,
        task: TaskName,
        crons: Sequence[Cron],
        *,
        should_run: SlotFilter | None = None,
        expires_after: float = 3600.0,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._rt = rt
        self._task = task
        self._crons = list(crons)
        self._should_run = should_run
        self._expires_after = expires_after
        self._now = now or (lambda: datetime.now(UTC))
        self._loop_task: asyncio.Task[None] | None = None
        self.next_slot: datetime | None = None
        self.published: list[str] = []

    @classmethod
    def from_settings(cls, rt: Runtime, task: TaskName, **kw: object) -> Scheduler | None:
        """The scheduler for `task` from `asset_sync.scheduler`; None when off or in a one-shot run."""
        entries = rt.settings.schedule_for(task)
        if not entries or not rt.scheduling:
            return None
        crons = [Cron.parse(e.hour, e.minute, rt.settings.timezone) for e in entries]
        return cls(rt, task, crons, **kw)  # type: ignore[arg-type]

    async def start(self, stack: AsyncExitStack) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name=f"scheduler:{self._task}")

        async def stop() -> None:
            if self._loop_task is not None:
                self._loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop_task

        stack.push_async_callback(stop)

    def next_after(self, moment: datetime) -> datetime:
        return min(c.next_after(moment) for c in self._crons)

    async def _loop(self) -> None:
        last = self._now()
        while True:
            slot = self.next_after(last)
            self.next_slot = slot
            # Sleep in short steps so a suspended laptop or a clock jump does not skip a slot.
            while (wait := (slot - self._now()).total_seconds()) > 0:
                await asyncio.sleep(min(wait, 30.0))
            last = slot
            try:
                await self.fire(slot)
            except Exception:
                log.exception("scheduler %s: could not publish the command for %s", self._task, slot)

    async def fire(self, slot: datetime) -> bool:
        """Publish the command of one slot (unless filtered out); True if published."""
        if self._should_run is not None:
            ok = self._should_run(slot)
            if inspect.isawaitable(ok):
                ok = await ok
            if not ok:
                log.info("scheduler %s: skipping slot %s (not a run day)", self._task, slot.isoformat())
                return False
        slot_id = slot.isoformat(timespec="minutes")
        slot_ms = int(slot.timestamp() * 1000)
        cmd = TaskCommand(
            command_id=f"{self._task}@{slot_id}",
            task=self._task,
            requested_by="scheduler",
            requested_at=int(self._now().timestamp() * 1000),
            slot=slot_id,
            expires_at=slot_ms + int(self._expires_after * 1000),
        )
        await self._rt.publisher.publish_now(cmd)
        self.published.append(slot_id)
        log.info("scheduler %s: slot %s triggered", self._task, slot_id)
        return True


def run_health(scheduler: Scheduler | None, last: TaskResult | None) -> tuple[bool, str]:
    """A collector's health line: its next scheduled run and its last result (a failed run is not ill health)."""
    nxt = scheduler.next_slot if scheduler is not None else None
    parts = [f"next scheduled run {nxt.isoformat(timespec='minutes')}" if nxt else "no schedule"]
    if last is not None:
        parts.append(f"last run {last.status} ({last.records}/{last.total})")
    return True, "; ".join(parts)

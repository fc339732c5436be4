"""Scheduled commands: one per slot however many replicas trigger it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from assetsync.runtime import Runtime
from assetsync.schedule import Cron, Scheduler

TZ = ZoneInfo("Asia/Shanghai")


async def test_two_replicas_one_command_per_slot(runtime: Runtime) -> None:
    cron = Cron.parse(0, 0, TZ)
    a = Scheduler(runtime, "snapshot", [cron])
    b = Scheduler(runtime, "snapshot", [cron])
    slot = datetime(2026, 11, 23, 0, 0, tzinfo=TZ)
    assert await a.fire(slot) and await b.fire(slot)
    info = await runtime.js.stream_info(runtime.topo.tasks)
    assert info.state.messages == 1


def test_next_after_midnight_in_shanghai() -> None:
    cron = Cron.parse(0, 0, TZ)
    nxt = cron.next_after(datetime(2026, 11, 22, 15, 30, tzinfo=TZ))
    assert nxt == datetime(2026, 11, 23, 0, 0, tzinfo=TZ)

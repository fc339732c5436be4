"""Task commands: the work-queue consumer that runs a task once, and the client that requests one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from assetsync import bus
from assetsync.events import AssetError, TaskCommand, TaskName, TaskResult
from assetsync.outcome import headline
from assetsync.runtime import Runtime

log = logging.getLogger("assetsync.tasks")

# Which data source a task's results are filed under (日志 数据源).
TASK_SOURCE: dict[str, str] = {"crypto": "binance", "fund": "xueqiu", "okx": "okx"}
# Which service runs which task (for messages when none is running).
TASK_OWNER: dict[str, str] = {
    "crypto": "collector-crypto",
    "fund": "collector-fund",
    "okx": "collector-okx",
    "snapshot": "store",
    "backup": "store",
    "restore": "store",
}

RunTask = Callable[[TaskCommand], Awaitable[TaskResult]]


def now_ms() -> int:
    return int(time.time() * 1000)


def failed_result(
    cmd: TaskCommand, started: int, message: str, errors: Sequence[AssetError] = ()
) -> TaskResult:
    """A failed TaskResult for a command (the task could not run at all)."""
    return TaskResult(
        command_id=cmd.command_id,
        task=cmd.task,
        source=TASK_SOURCE.get(cmd.task, "system"),
        status="failed",
        started_at=started,
        finished_at=now_ms(),
        message=message,
        errors=list(errors),
    )


def task_consumer(rt: Runtime, task: TaskName, run: RunTask, *, ack_wait: float = 60.0) -> bus.Consumer:
    """The shared durable consumer of one task's commands: one replica takes each, one at a time."""

    async def handle(batch: Sequence[bus.Delivery]) -> None:
        for d in batch:
            cmd = d.event
            if not isinstance(cmd, TaskCommand):
                d.term(f"not a task command: {type(cmd).__name__}")
                continue
            if cmd.expires_at and now_ms() > cmd.expires_at:
                log.warning(
                    "task %s: dropping command %s (expired, slot %s)", task, cmd.command_id, cmd.slot or "-"
                )
                continue
            await _run_one(rt, d, cmd, run, ack_wait)

    for status in ("success", "partial", "failed"):
        # Zero-valued series from the start, so the first failure shows as an increase in Prometheus.
        rt.metrics.task_runs.labels(task, status)
    spec = bus.ConsumerSpec(
        durable=rt.durable(f"task-{task}"),
        stream=rt.topo.tasks,
        subjects=(rt.topo.command(task),),
        batch_size=1,
        linger=0.0,
        ack_wait=ack_wait,
        max_ack_pending=1,
        description=f"runs {task} commands",
    )
    return rt.consumer(spec, handle)


async def _run_one(rt: Runtime, d: bus.Delivery, cmd: TaskCommand, run: RunTask, ack_wait: float) -> None:
    started = now_ms()
    log.info("task %s: starting (command %s, by %s)", cmd.task, cmd.command_id, cmd.requested_by)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(max(1.0, ack_wait / 3))
            await d.in_progress()

    hb = asyncio.create_task(heartbeat())
    try:
        try:
            result = await run(cmd)
        except Exception as exc:  # a task never crashes the service: it reports a failed run
            log.exception("task %s: crashed", cmd.task)
            result = failed_result(cmd, started, f"{type(exc).__name__}: {exc}")
    finally:
        hb.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hb
    await rt.publisher.flush()
    await rt.publisher.publish_now(result)
    rt.metrics.task_runs.labels(cmd.task, result.status).inc()
    rt.metrics.task_seconds.labels(cmd.task).observe(result.duration)
    if result.status == "success":
        rt.metrics.last_success.labels(cmd.task).set(result.finished_at / 1000)
    log.info(
        "task %s: %s in %.2fs — %s",
        cmd.task,
        result.status,
        result.duration,
        headline(result),
    )


class TaskTimeout(Exception):
    """No result arrived in time (the service that runs the task may not be running)."""


async def request_task(
    rt: Runtime,
    task: TaskName,
    *,
    args: dict[str, str] | None = None,
    timeout: float = 600.0,
    stored_timeout: float = 30.0,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[TaskResult, bool]:
    """Publish a command, wait for its result and for the store to confirm it committed it."""
    command_id = f"{task}-{uuid.uuid4().hex[:12]}"
    loop = asyncio.get_running_loop()
    got: asyncio.Future[TaskResult] = loop.create_future()
    stored: asyncio.Future[bool] = loop.create_future()

    async def on_result(msg: object) -> None:
        data = getattr(msg, "data", b"")
        with contextlib.suppress(Exception):
            ev = rt.codec.decode(data)
            if isinstance(ev, TaskResult) and ev.command_id == command_id and not got.done():
                got.set_result(ev)

    async def on_stored(msg: object) -> None:
        with contextlib.suppress(Exception):
            ids = json.loads(getattr(msg, "data", b"[]"))
            if command_id in ids and not stored.done():
                stored.set_result(True)

    async def on_notice(msg: object) -> None:
        with contextlib.suppress(Exception):
            notice = json.loads(getattr(msg, "data", b"{}"))
            if notice.get("command_id") == command_id and on_progress is not None:
                on_progress(notice)

    sub_r = await rt.nc.subscribe(rt.topo.result(task), cb=on_result)
    sub_s = await rt.nc.subscribe(rt.topo.committed("task"), cb=on_stored)
    sub_p = await rt.nc.subscribe(rt.topo.subject("tasks", "progress", "v1", task), cb=on_notice)
    try:
        cmd = TaskCommand(
            command_id=command_id,
            task=task,
            requested_by="cli",
            requested_at=now_ms(),
            expires_at=now_ms() + int(timeout * 1000),
            args=args or {},
        )
        await rt.publisher.publish_now(cmd)
        try:
            result = await asyncio.wait_for(got, timeout)
        except TimeoutError as exc:
            owner = TASK_OWNER.get(task, task)
            raise TaskTimeout(
                f"no result for task {task} within {timeout:.0f}s — is {owner} running?"
            ) from exc
        try:
            ok = await asyncio.wait_for(stored, stored_timeout)
        except TimeoutError:
            ok = False
        return result, ok
    finally:
        for sub in (sub_r, sub_s, sub_p):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

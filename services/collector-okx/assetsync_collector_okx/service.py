"""The collector-okx service: OKX feeds (OKX001-005, LQ001) and, with keys, the scheduled `okx` task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from assetsync.config import Settings
from assetsync.events import TaskCommand, TaskResult
from assetsync.runtime import Runtime
from assetsync.schedule import Scheduler, run_health
from assetsync.service import Disabled, Service
from assetsync.tasks import task_consumer

from assetsync_collector_okx.exchange import make_exchange
from assetsync_collector_okx.poller import OkxFeeds, run_loop
from assetsync_collector_okx.sync import OkxSync, StateFile, state_path

log = logging.getLogger("assetsync.collector_okx")

PUBLIC_ONLY = (
    "public data only (OKX001, LQ001): set asset_sync.okx.api_key / api_secret / password "
    "for balances, positions, orders and fills"
)


class OkxCollector:
    """Polls the OKX feeds; with keys also consumes `okx` task commands and publishes its schedule."""

    name = "collector-okx"

    def __init__(self, rt: Runtime, sync: OkxSync) -> None:
        self.rt = rt
        self.sync = sync
        self.feeds = OkxFeeds(sync, rt.publisher.publish)
        self.scheduler: Scheduler | None = None
        self.last: TaskResult | None = None
        self._stop = asyncio.Event()
        self._stack: AsyncExitStack | None = None
        self._tasks_on = False

    @property
    def note(self) -> str:
        """What `up` prints beside `running`."""
        return "" if self.sync.settings.okx_account_on() else PUBLIC_ONLY

    async def start(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._close_exchange)  # unwinds last
        self._stack = stack
        if self.sync.settings.okx_account_on():
            await self._start_tasks(stack)
        else:
            log.info("collector-okx: %s", PUBLIC_ONLY)
        loop = asyncio.create_task(
            run_loop(self.feeds, account=self._account_on, interval=self._interval, stop=self._stop),
            name="collector-okx:feeds",
        )

        async def stop_loop() -> None:
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(loop, timeout=10)

        stack.push_async_callback(stop_loop)

    async def _start_tasks(self, stack: AsyncExitStack) -> None:
        """The `okx` task consumer and its schedule (only with keys: public-only has no okx task)."""
        consumer = task_consumer(self.rt, "okx", self.run)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        self.scheduler = Scheduler.from_settings(self.rt, "okx")
        if self.scheduler is not None:
            await self.scheduler.start(stack)
        self._tasks_on = True

    def _account_on(self) -> bool:
        return self.sync.settings.okx_account_on()  # read at each poll: a reload applies at once

    def _interval(self) -> float:
        return float(self.sync.settings.config.asset_sync.okx.interval_seconds)

    async def run(self, cmd: TaskCommand) -> TaskResult:
        """One okx sync for a command (scheduled, `assetsync task okx` or `run-once`)."""
        result = await self.sync.run(cmd.command_id, self.rt.publisher.publish)
        self.last = result
        return result

    async def reload(self, settings: Settings) -> None:
        """A new config from the next poll on; new OKX keys or URL get a new exchange client.

        Keys added to a public-only service start the `okx` task consumer and schedule at once;
        keys removed leave them running (their runs then fail naming the keys) until a restart.
        """
        conf = settings.config.asset_sync.okx
        changed = conf != self.sync.settings.config.asset_sync.okx
        await self.sync.reconfigure(settings, make_exchange(settings) if changed else None)
        if settings.okx_account_on() and not self._tasks_on and self._stack is not None:
            log.info("collector-okx: OKX keys set: starting the okx task")
            await self._start_tasks(self._stack)

    async def _close_exchange(self) -> None:
        await self.sync.exchange.close()

    def health(self) -> tuple[bool, str]:
        ok, line = run_health(self.scheduler, self.last)
        if not self.sync.settings.okx_account_on():
            line = "public feeds only"
        report = self.feeds.last_report
        if report is not None and report.failed:
            # A failing feed is the exchange's state, not this process's: reported, still healthy.
            line += f"; feeds failing: {', '.join(sorted(report.failed))}"
        return ok, line


def build(rt: Runtime) -> Service | Disabled:
    """The service, or Disabled when OKX is off (`enabled` not true and no API key/secret/password)."""
    settings = rt.settings
    conf = settings.config.asset_sync.okx
    if not settings.okx_on():
        if conf.enabled is False:
            return Disabled("asset_sync.okx.enabled is false")
        return Disabled(
            "asset_sync.okx.enabled is not true and asset_sync.okx.api_key / api_secret / password are not set"
        )
    metrics = rt.metrics

    def count_call(endpoint: str) -> None:
        metrics.api_calls.labels("okx", endpoint).inc()

    def count_error(endpoint: str, kind: str) -> None:
        metrics.api_errors.labels("okx", endpoint, kind).inc()

    sync = OkxSync(
        settings,
        make_exchange(settings),
        StateFile(state_path(settings)),
        on_call=count_call,
        on_error=count_error,
    )
    return OkxCollector(rt, sync)

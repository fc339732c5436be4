"""The collector-crypto service: runs `crypto` task commands (one replica each) and schedules them."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from assetsync.config import Settings
from assetsync.events import TaskCommand, TaskResult
from assetsync.progress import TaskProgress
from assetsync.runtime import Runtime
from assetsync.schedule import Scheduler, run_health
from assetsync.service import Disabled, Service
from assetsync.tasks import task_consumer

from assetsync_collector_crypto.exchange import make_exchange
from assetsync_collector_crypto.state import StateFile
from assetsync_collector_crypto.sync import CryptoSync, state_path

log = logging.getLogger("assetsync.collector_crypto")


class CryptoCollector:
    """Consumes `crypto` commands from the shared durable consumer and publishes the cron triggers."""

    name = "collector-crypto"

    def __init__(self, rt: Runtime, sync: CryptoSync) -> None:
        self.rt = rt
        self.sync = sync
        self.scheduler: Scheduler | None = None
        self.last: TaskResult | None = None

    async def start(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._close_exchange)  # unwinds last: after the consumer drained
        consumer = task_consumer(self.rt, "crypto", self.run)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        self.scheduler = Scheduler.from_settings(self.rt, "crypto")
        if self.scheduler is not None:
            await self.scheduler.start(stack)

    async def run(self, cmd: TaskCommand) -> TaskResult:
        """One crypto sync for a command (scheduled, `assetsync task crypto` or `run-once`)."""
        progress = TaskProgress(self.rt, "crypto", cmd.command_id)
        result = await self.sync.run(cmd.command_id, self.rt.publisher.publish, progress)
        self.last = result
        return result

    async def reload(self, settings: Settings) -> None:
        """A new config from the next run on; new Binance keys or URL get a new exchange client."""
        conf = settings.config.asset_sync.binance
        exchange = make_exchange(settings) if conf != self.sync.settings.config.asset_sync.binance else None
        await self.sync.reconfigure(settings, exchange)

    async def _close_exchange(self) -> None:
        await self.sync.exchange.close()

    def health(self) -> tuple[bool, str]:
        return run_health(self.scheduler, self.last)


def build(rt: Runtime) -> Service | Disabled:
    """The service, or Disabled when Binance is off (`enabled: false` or no API key/secret)."""
    settings = rt.settings
    conf = settings.config.asset_sync.binance
    if not settings.binance_on():
        if conf.enabled is False:
            return Disabled("asset_sync.binance.enabled is false")
        return Disabled("asset_sync.binance.api_key / api_secret are not set")
    metrics = rt.metrics

    def count_call(endpoint: str) -> None:
        metrics.api_calls.labels("binance", endpoint).inc()

    def count_error(endpoint: str, kind: str) -> None:
        metrics.api_errors.labels("binance", endpoint, kind).inc()

    sync = CryptoSync(
        settings,
        make_exchange(settings),
        StateFile(state_path(settings)),
        on_call=count_call,
        on_error=count_error,
    )
    return CryptoCollector(rt, sync)

"""The collector-crypto service: the account sync (`crypto` tasks, with keys) and public market data.

With Binance keys it runs `crypto` task commands (one replica each) and schedules them; whenever
`market.enabled` it also polls the watch list (keys or not), and fear & greed when that is on.
"""

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
from assetsync_collector_crypto.poller import HeldAssets, WatchPoller
from assetsync_collector_crypto.sentiment import FearGreedPoller
from assetsync_collector_crypto.state import StateFile
from assetsync_collector_crypto.sync import CryptoSync, state_path

log = logging.getLogger("assetsync.collector_crypto")


class CryptoCollector:
    """The account sync (when keyed) plus the watch-list and fear & greed pollers (when on)."""

    name = "collector-crypto"

    def __init__(
        self,
        rt: Runtime,
        sync: CryptoSync | None,
        watch: WatchPoller | None = None,
        fear_greed: FearGreedPoller | None = None,
        note: str = "",
    ) -> None:
        self.rt = rt
        self.sync = sync
        self.watch = watch
        self.fear_greed = fear_greed
        self.note = note  # shown by `up` next to "running" (e.g. public market data only)
        self.scheduler: Scheduler | None = None
        self.last: TaskResult | None = None

    async def start(self, stack: AsyncExitStack) -> None:
        if self.sync is not None:
            stack.push_async_callback(self._close_exchange)  # unwinds last: after the consumer drained
            consumer = task_consumer(self.rt, "crypto", self.run)
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            self.scheduler = Scheduler.from_settings(self.rt, "crypto")
            if self.scheduler is not None:
                await self.scheduler.start(stack)
        if self.watch is not None:
            await self.watch.start(stack)
        if self.fear_greed is not None:
            await self.fear_greed.start(stack)

    async def run(self, cmd: TaskCommand) -> TaskResult:
        """One crypto sync for a command (scheduled, `assetsync task crypto` or `run-once`)."""
        assert self.sync is not None  # the consumer runs only with a sync
        progress = TaskProgress(self.rt, "crypto", cmd.command_id)
        result = await self.sync.run(cmd.command_id, self.rt.publisher.publish, progress)
        self.last = result
        return result

    async def reload(self, settings: Settings) -> None:
        """A new config from the next run on; new Binance keys or URL get a new exchange client."""
        if self.sync is not None:
            conf = settings.config.asset_sync.binance
            exchange = (
                make_exchange(settings) if conf != self.sync.settings.config.asset_sync.binance else None
            )
            await self.sync.reconfigure(settings, exchange)
        if self.watch is not None:
            await self.watch.reconfigure(settings)
        if self.fear_greed is not None:
            await self.fear_greed.reconfigure(settings)

    async def _close_exchange(self) -> None:
        if self.sync is not None:
            await self.sync.exchange.close()

    def health(self) -> tuple[bool, str]:
        parts: list[tuple[bool, str]] = []
        if self.sync is not None:
            parts.append(run_health(self.scheduler, self.last))
        for poller in (self.watch, self.fear_greed):
            if poller is not None:
                parts.append(poller.health())
        return all(ok for ok, _ in parts), "; ".join(detail for _, detail in parts)


def build(rt: Runtime) -> Service | Disabled:
    """The service: account sync with keys, public market data when `market.enabled`; else Disabled."""
    settings = rt.settings
    conf = settings.config.asset_sync.binance
    keyed = settings.binance_on()
    # `asset_sync.binance.enabled: false` turns off every Binance call, the public ones too. The
    # pollers run like schedulers: in `up`, not in one-shot `task` / `run-once` stacks.
    watching = rt.scheduling and settings.market_on() and conf.enabled is not False
    sentiment = rt.scheduling and settings.fear_greed_on()
    if not (keyed or watching or sentiment):
        if conf.enabled is False:
            return Disabled("asset_sync.binance.enabled is false")
        return Disabled("asset_sync.binance.api_key / api_secret are not set")
    metrics = rt.metrics

    def count_call(endpoint: str) -> None:
        metrics.api_calls.labels("binance", endpoint).inc()

    def count_error(endpoint: str, kind: str) -> None:
        metrics.api_errors.labels("binance", endpoint, kind).inc()

    state = StateFile(state_path(settings))
    sync = (
        CryptoSync(settings, make_exchange(settings), state, on_call=count_call, on_error=count_error)
        if keyed
        else None
    )
    watch = (
        WatchPoller(
            settings,
            make_exchange(settings),
            rt.publisher.publish_many,
            held=HeldAssets(state),
            metrics=metrics,
        )
        if watching
        else None
    )
    fear_greed = FearGreedPoller(settings, rt.publisher.publish_many, metrics=metrics) if sentiment else None
    note = ""
    if not keyed:
        why = (
            "asset_sync.binance.enabled is false"
            if conf.enabled is False
            else "asset_sync.binance.api_key / api_secret not set"
        )
        what = "public market data only" if watching else "fear & greed only"
        note = f"{what} ({why})"
    return CryptoCollector(rt, sync, watch, fear_greed, note)

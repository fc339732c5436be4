"""The collector-fund service: runs `fund` task commands, and schedules them on Shanghai trading days."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from datetime import datetime

from assetsync.events import TaskCommand, TaskResult
from assetsync.feishu.client import FeishuClient
from assetsync.runtime import Runtime
from assetsync.schedule import Scheduler, run_health
from assetsync.service import Disabled, Service
from assetsync.tasks import task_consumer

from assetsync_collector_fund.discovery import FundSource, ManualFunds
from assetsync_collector_fund.feishu_source import FeishuFunds
from assetsync_collector_fund.snowball import SnowballClient
from assetsync_collector_fund.sync import MARKET_TZ, FundSync
from assetsync_collector_fund.trading_days import TradingCalendar

log = logging.getLogger("assetsync.collector_fund")


class FundCollector:
    """Consumes `fund` commands (one replica each) and publishes the 09:00 trigger on trading days."""

    name = "collector-fund"

    def __init__(
        self, rt: Runtime, sync: FundSync, calendar: TradingCalendar, feishu: FeishuClient | None = None
    ) -> None:
        self.rt = rt
        self.sync = sync
        self.calendar = calendar
        self.feishu = feishu
        self.scheduler: Scheduler | None = None
        self.last: TaskResult | None = None
        self._warm: asyncio.Task[None] | None = None

    async def start(self, stack: AsyncExitStack) -> None:
        if self.feishu is not None:
            stack.push_async_callback(self.feishu.aclose)  # unwinds last: after the consumer drained
        # Build the trading calendar in the background now, so the 09:00 check is instant.
        self._warm = asyncio.create_task(self.calendar.warm(), name="fund-calendar-warm")
        stack.push_async_callback(self._stop_warm)
        consumer = task_consumer(self.rt, "fund", self.run)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        self.scheduler = Scheduler.from_settings(self.rt, "fund", should_run=self.is_run_day)
        if self.scheduler is not None:
            await self.scheduler.start(stack)

    async def run(self, cmd: TaskCommand) -> TaskResult:
        """One fund sync for a command (scheduled or `assetsync task fund`, which runs any day)."""
        result = await self.sync.run(cmd.command_id, self.rt.publisher.publish)
        self.last = result
        return result

    async def is_run_day(self, slot: datetime) -> bool:
        """The scheduled job runs only on XSHG trading days (the slot's date in Shanghai)."""
        return await self.calendar.is_trading_day(slot.astimezone(MARKET_TZ).date())

    async def _stop_warm(self) -> None:
        if self._warm is not None and not self._warm.done():
            self._warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm

    def health(self) -> tuple[bool, str]:
        return run_health(self.scheduler, self.last)


def build(rt: Runtime) -> Service | Disabled:
    """The service, or Disabled when Xueqiu is off (`enabled: false` or no cookie)."""
    settings = rt.settings
    xq = settings.config.asset_sync.xueqiu
    if not settings.xueqiu_on():
        why = (
            "asset_sync.xueqiu.enabled is false"
            if xq.enabled is False
            else "asset_sync.xueqiu.cookies is not set"
        )
        return Disabled(why)
    funds = settings.config.asset_sync.assets.funds
    sources: list[FundSource] = []
    feishu: FeishuClient | None = None
    if funds.auto_discover and settings.feishu_on():
        feishu = FeishuClient.from_settings(settings, metrics=rt.metrics)
        sources.append(FeishuFunds(feishu, settings))
    # Manual entries come last so their quantity / avg_cost override the 持仓 row's.
    sources.append(ManualFunds(funds.manual))
    calendar = TradingCalendar()
    client = SnowballClient(xq, metrics=rt.metrics)
    sync = FundSync(client, sources, funds.ignore, calendar=calendar)
    return FundCollector(rt, sync, calendar, feishu)

"""The collector-fund service: runs `fund` task commands, and schedules them on Shanghai trading days."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from datetime import datetime

from assetsync.config import Settings
from assetsync.events import TaskCommand, TaskResult
from assetsync.feishu.client import FeishuClient
from assetsync.runtime import Runtime
from assetsync.schedule import Scheduler, run_health
from assetsync.service import Disabled, Service
from assetsync.tasks import task_consumer

from assetsync_collector_fund.discovery import FundSource, ManualFunds
from assetsync_collector_fund.feishu_source import FeishuFunds
from assetsync_collector_fund.seen import SeenFile
from assetsync_collector_fund.snowball import SnowballClient
from assetsync_collector_fund.sync import MARKET_TZ, FundSync
from assetsync_collector_fund.trading_days import TradingCalendar

log = logging.getLogger("assetsync.collector_fund")

# Said once at start-up when no fund can ever be found (Feishu off and no manual list).
NO_FUNDS_LINE = (
    "no funds to sync — they are discovered from the Feishu 持仓 table, which is off: set "
    "mcp_server.app_id, mcp_server.app_secret and asset_sync.feishu.app_token, or list them in "
    'asset_sync.assets.funds.manual ([{"code": "SH510300", "quantity": 1000, "avg_cost": 3.85}])'
)


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
        self._run_lock = asyncio.Lock()  # a reload waits for the run in progress

    async def start(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._close_feishu)  # unwinds last: after the consumer drained
        # Build the trading calendar in the background now, so the 09:00 check is instant.
        self._warm = asyncio.create_task(self._warm_calendar(), name="fund-calendar-warm")
        stack.push_async_callback(self._stop_warm)
        consumer = task_consumer(self.rt, "fund", self.run)
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        self.scheduler = Scheduler.from_settings(self.rt, "fund", should_run=self.is_run_day)
        if self.scheduler is not None:
            await self.scheduler.start(stack)

    async def run(self, cmd: TaskCommand) -> TaskResult:
        """One fund sync for a command (scheduled or `assetsync task fund`, which runs any day)."""
        async with self._run_lock:
            result = await self.sync.run(cmd.command_id, self.rt.publisher.publish)
        self.last = result
        return result

    async def reload(self, settings: Settings) -> None:
        """A new config from the next run on (a renewed cookie, other funds, holidays)."""
        async with self._run_lock:
            self.calendar.holidays = frozenset(settings.holidays)
            old = self.feishu
            self.sync, self.feishu = make_sync(self.rt, settings, calendar=self.calendar)
            if old is not None:
                await old.aclose()

    async def _close_feishu(self) -> None:
        if self.feishu is not None:
            await self.feishu.aclose()

    async def is_run_day(self, slot: datetime) -> bool:
        """The scheduled job runs only on XSHG trading days (the slot's date in Shanghai)."""
        return await self.calendar.is_trading_day(slot.astimezone(MARKET_TZ).date())

    async def _warm_calendar(self) -> None:
        await self.calendar.warm()
        # A month before exchange-calendars' holiday data ends, say how to keep the schedule right.
        self.calendar.warn_if_ending(datetime.now(MARKET_TZ).date())

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
    sync, feishu = make_sync(rt, settings)
    return FundCollector(rt, sync, sync.calendar or TradingCalendar(), feishu)


def make_sync(
    rt: Runtime, settings: Settings, *, calendar: TradingCalendar | None = None
) -> tuple[FundSync, FeishuClient | None]:
    """The FundSync for these settings (at start, and again on a config reload)."""
    funds = settings.config.asset_sync.assets.funds
    sources: list[FundSource] = []
    feishu: FeishuClient | None = None
    if funds.auto_discover and settings.feishu_on():
        feishu = FeishuClient.from_settings(settings, metrics=rt.metrics)
        sources.append(FeishuFunds(feishu, settings))
    elif not funds.manual:
        log.warning("collector-fund: %s", NO_FUNDS_LINE)
    elif funds.auto_discover:
        log.info(
            "collector-fund: syncing the %d funds of asset_sync.assets.funds.manual; discovery from the "
            "Feishu 持仓 table is off (set mcp_server.app_id, mcp_server.app_secret and "
            "asset_sync.feishu.app_token to turn it on)",
            len(funds.manual),
        )
    # Manual entries come last so their quantity / avg_cost override the 持仓 row's.
    sources.append(ManualFunds(funds.manual))
    calendar = calendar or TradingCalendar(holidays=settings.holidays)
    client = SnowballClient(settings.config.asset_sync.xueqiu, metrics=rt.metrics)
    seen = SeenFile(settings.data_dir / "state" / "collector-fund.json")
    return FundSync(client, sources, funds.ignore, calendar=calendar, seen=seen), feishu

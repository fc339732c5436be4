"""alerter wiring: task results, backups, lifecycle and sink rejections → Feishu group-bot cards."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from assetsync import bus
from assetsync.config import Settings
from assetsync.events import AnyEvent, BackupResult, PriceTick, ServiceLifecycle, SinkRejected, TaskResult
from assetsync.feishu.bot import BotError, GroupBot
from assetsync.runtime import Runtime
from assetsync.service import Disabled, Service

from assetsync_alerter import cards
from assetsync_alerter.policy import AlertPolicy, Decision, Level
from assetsync_alerter.prices import Move, PriceWatch

log = logging.getLogger("assetsync.alerter")

NAME = "alerter"
MAX_AGE_MS = 24 * 3600 * 1000  # results older than this are history, not news
LIFECYCLE_MAX_AGE_MS = 10 * 60 * 1000


def event_time(e: AnyEvent) -> int:
    """When the event happened (ms), 0 if it carries no time the alerter uses."""
    if isinstance(e, (TaskResult, BackupResult)):
        return e.finished_at or e.started_at
    if isinstance(e, (ServiceLifecycle, SinkRejected)):
        return e.at
    if isinstance(e, PriceTick):
        return e.ts
    return 0


def build(rt: Runtime) -> Service | Disabled:
    """The service, or Disabled when alerts are off or no webhook is configured."""
    a = rt.settings.config.asset_sync.alerts
    if not a.enabled:
        return Disabled("asset_sync.alerts.enabled is false")
    if not a.feishu_webhook:
        return Disabled("no asset_sync.alerts.feishu_webhook")
    return AlerterService(rt)


@dataclass(frozen=True)
class Outgoing:
    """A card to send, the decision to commit once it is delivered, and the events it covers."""

    card: cards.Card
    kind: str
    decision: Decision | None
    keys: tuple[str, ...]


class Alerter:
    """Turns events into cards under the dedupe policy (pure: sending is the service's job)."""

    def __init__(self, settings: Settings, *, instance: str = "") -> None:
        a = settings.config.asset_sync.alerts
        self.settings = settings
        self.conf = a
        self.tz = settings.timezone
        self.policy = AlertPolicy(a.reminder_minutes)
        self.footer = f"assetsync · {settings.site_id}" + (f" · {instance}" if instance else "")
        self.site_id = settings.site_id
        # Other sites' runs alert here only in the combined view (asset_sync.views.combined).
        self.combined = settings.config.asset_sync.views.combined
        self._done: OrderedDict[str, None] = OrderedDict()  # event keys already handled (redelivery)
        self.prices = PriceWatch(a.price_moves, a.stale_price_hours)

    def task_level(self, r: TaskResult) -> Level | None:
        if r.status == "failed":
            return "red"
        if r.status == "partial" and r.success_rate < self.conf.min_success_rate:
            return "orange"
        return None

    def _allowed(self, level: Level | None) -> bool:
        if level == "red":
            return self.conf.alert_on_failure
        if level == "orange":
            return self.conf.alert_on_partial_success
        return True

    def wanted(self, e: AnyEvent, now: int) -> bool:
        """Events this site should alert on now: its own, not handled yet, and not stale.

        A new durable consumer starts at the beginning of the stream: without the age limit a first
        deployment would announce a month of old failures.
        """
        foreign = e.origin not in ("", self.site_id)
        if (foreign and not (self.combined and isinstance(e, TaskResult))) or e.key() in self._done:
            return False
        at = event_time(e)
        limit = LIFECYCLE_MAX_AGE_MS if isinstance(e, ServiceLifecycle) else MAX_AGE_MS
        return not at or now - at <= limit

    def lifecycle(self, events: Sequence[ServiceLifecycle]) -> list[Outgoing]:
        """One blue card per state for the start/stop events of a batch."""
        by_state: dict[str, list[ServiceLifecycle]] = {}
        for e in events:
            by_state.setdefault(e.state, []).append(e)
        return [
            Outgoing(
                cards.lifecycle_card(evs, tz=self.tz, footer=self.footer),
                "lifecycle",
                None,
                tuple(e.key() for e in evs),
            )
            for evs in by_state.values()
        ]

    def plan_one(self, e: AnyEvent, now: int) -> Outgoing | None:
        """The card one event calls for under the policy (None: nothing to say)."""
        if isinstance(e, TaskResult):
            level = self.task_level(e)
            if not self._allowed(level):
                return None
            key = "backup" if e.task == "backup" else f"task:{e.task}"
            footer = self.footer
            if e.origin not in ("", self.site_id):  # combined view: another site's run, its own state
                key, footer = f"{key}@{e.origin}", f"assetsync · {e.origin} (seen at {self.site_id})"
            d = self.policy.decide(key, level, now)
            if d.kind in ("alert", "reminder"):
                color: cards.Color = "red" if d.level == "red" else "orange"
                card = cards.task_card(
                    e,
                    color,
                    tz=self.tz,
                    footer=footer,
                    reminder=d.reminder,
                    since=d.since,
                    min_rate=self.conf.min_success_rate,
                )
                return Outgoing(card, f"task_{e.status}", d, (e.key(),))
            if d.kind == "recovered":
                card = cards.recovered_card(
                    cards.task_name(e.task),
                    since=d.since,
                    now=e.finished_at or now,
                    tz=self.tz,
                    footer=footer,
                    detail=f"本次: {cards.STATUS_TEXT.get(e.status, e.status)}, 成功 {e.records}/{e.total}",
                )
                return Outgoing(card, "recovered", d, (e.key(),))
            return Outgoing({}, "suppressed", d, (e.key(),)) if level is not None else None
        if isinstance(e, BackupResult):
            level = None if e.ok else "red"
            if not self._allowed(level):
                return None
            d = self.policy.decide("backup", level, now)
            if d.kind in ("alert", "reminder"):
                card = cards.backup_card(e, tz=self.tz, footer=self.footer, reminder=d.reminder)
                return Outgoing(card, "backup_failed", d, (e.key(),))
            if d.kind == "recovered":
                card = cards.recovered_card(
                    cards.task_name("backup"),
                    since=d.since,
                    now=e.finished_at or now,
                    tz=self.tz,
                    footer=self.footer,
                )
                return Outgoing(card, "recovered", d, (e.key(),))
            return Outgoing({}, "suppressed", d, (e.key(),)) if level is not None else None
        if isinstance(e, SinkRejected):
            d = self.policy.decide(f"sink:{e.sink}:{e.target}", "red", now)
            if d.kind in ("alert", "reminder"):
                card = cards.sink_card(e, tz=self.tz, footer=self.footer, reminder=d.reminder)
                return Outgoing(card, "sink_rejected", d, (e.key(),))
            return Outgoing({}, "suppressed", d, (e.key(),))
        return None

    def move_level(self, m: Move) -> Level | None:
        if not m.triggered:
            return None
        return "red" if abs(m.change_pct) >= 2 * m.threshold else "orange"

    def plan_price(self, t: PriceTick, now: int) -> list[Outgoing]:
        """Cards for the price-move rules this tick trips; a move back under the limit closes quietly."""
        out = []
        for m in self.prices.observe(t):
            d = self.policy.decide(m.key, self.move_level(m), now)
            if d.kind in ("alert", "reminder"):
                color: cards.Color = "red" if d.level == "red" else "orange"
                card = cards.price_move_card(m, color, tz=self.tz, footer=self.footer, reminder=d.reminder)
                out.append(Outgoing(card, "price_move", d, ()))
            elif d.kind == "recovered" or (d.kind == "none" and d.level is not None):
                out.append(Outgoing({}, "suppressed", d, ()))
        return out

    def plan_stale(self, now: int) -> list[Outgoing]:
        """One card per source whose held assets have had no price for `stale_price_hours`; green when back."""
        out = []
        for s in self.prices.stale(now):
            d = self.policy.decide(s.key, "orange" if s.assets else None, now)
            if d.kind in ("alert", "reminder"):
                card = cards.stale_card(s, tz=self.tz, footer=self.footer, reminder=d.reminder)
                out.append(Outgoing(card, "stale_price", d, ()))
            elif d.kind == "recovered":
                card = cards.recovered_card(
                    f"价格更新 · {s.source}", since=d.since, now=now, tz=self.tz, footer=self.footer
                )
                out.append(Outgoing(card, "recovered", d, ()))
            elif d.kind == "none" and d.level is not None:
                out.append(Outgoing({}, "suppressed", d, ()))
        return out

    def wants_report(self, e: AnyEvent) -> bool:
        return (
            isinstance(e, TaskResult)
            and e.task == "snapshot"
            and e.status == "success"
            and self.conf.daily_report
        )

    def done(self, keys: Sequence[str]) -> None:
        for k in keys:
            self._done[k] = None
        while len(self._done) > 10_000:
            self._done.popitem(last=False)


class AlerterService:
    """One durable consumer of the OPS stream; cards go out through the rate-limited bot client."""

    name = NAME

    def __init__(self, rt: Runtime, *, bot: GroupBot | None = None, linger: float = 0.5) -> None:
        self.rt = rt
        self.linger = linger
        self._bot = bot
        self.alerter = Alerter(rt.settings, instance=rt.instance)
        self.consumer: bus.Consumer | None = None
        self.last_error = ""
        m = rt.metrics
        self._m_cards = m.counter(
            "assetsync_alert_cards_total", "Alert cards by kind and outcome", ("kind", "outcome")
        )
        self.price_consumer: bus.Consumer | None = None

    @property
    def bot(self) -> GroupBot:
        if self._bot is None:
            raise RuntimeError("alerter not started")
        return self._bot

    async def reload(self, settings: Settings) -> None:
        """New alert rules (which statuses alert, the threshold, the reminder interval) at once."""
        a = settings.config.asset_sync.alerts
        self.alerter.settings, self.alerter.conf = settings, a
        self.alerter.policy.reminder_ms = int(a.reminder_minutes * 60_000)

    async def start(self, stack: AsyncExitStack) -> None:
        if self._bot is None:
            a = self.rt.settings.config.asset_sync.alerts
            self._bot = GroupBot(a.feishu_webhook, a.secret, metrics=self.rt.metrics)
        stack.push_async_callback(self._bot.aclose)
        topo = self.rt.topo
        spec = bus.ConsumerSpec(
            durable=self.rt.durable("alerter"),
            stream=topo.ops,
            subjects=(topo.result(), topo.backup(), topo.lifecycle(), topo.sink_rejected()),
            batch_size=100,
            linger=self.linger,
            ack_wait=300.0,
            nak_delay=5.0,
            description="alerter: task/backup results, lifecycle and sink rejections to the group bot",
        )
        self.consumer = self.rt.consumer(spec, self.handle)
        await self.consumer.start()
        stack.push_async_callback(self.consumer.stop)
        a = self.rt.settings.config.asset_sync.alerts
        if a.price_moves or a.stale_price_hours > 0:
            prices = bus.ConsumerSpec(
                durable=self.rt.durable("alerter-prices"),
                stream=topo.market,
                subjects=(topo.price(),),
                batch_size=500,
                linger=self.linger,
                ack_wait=120.0,
                nak_delay=5.0,
                description="alerter: price ticks for price-move and stale-price alerts",
                deliver_new=True,
            )
            self.price_consumer = self.rt.consumer(prices, self.handle_prices)
            await self.price_consumer.start()
            stack.push_async_callback(self.price_consumer.stop)
        if a.stale_price_hours > 0:
            task = asyncio.create_task(self._stale_loop(a.stale_price_hours), name="alerter-stale-prices")
            stack.push_async_callback(_cancel, task)

    def health(self) -> tuple[bool, str]:
        return (not self.last_error, self.last_error or "ok")

    async def handle(self, batch: Sequence[bus.Delivery]) -> None:
        """Send what the batch calls for; an unreachable webhook naks it, a rejecting one is logged."""
        now = int(time.time() * 1000)
        events = [d.event for d in batch if self.alerter.wanted(d.event, now)]
        for e in events:
            if isinstance(e, ServiceLifecycle):
                continue
            og = self.alerter.plan_one(e, now)
            if og is not None:
                await self._deliver(og, now)
            if isinstance(e, TaskResult) and e.assets is not None and e.status != "failed":
                self.alerter.prices.held(e.source, e.assets, e.finished_at or now)
            if self.alerter.wants_report(e):
                assert isinstance(e, TaskResult)
                rep = await asyncio.to_thread(read_report, self.rt.settings, e.data_as_of)
                card = cards.report_card(rep, e, footer=self.alerter.footer)
                await self._deliver(Outgoing(card, "daily_report", None, (e.key(),)), now)
        for og in self.alerter.lifecycle([e for e in events if isinstance(e, ServiceLifecycle)]):
            await self._deliver(og, now)

    async def handle_prices(self, batch: Sequence[bus.Delivery]) -> None:
        """Price ticks: price-move cards under the dedupe policy; the stale clock moves on."""
        now = int(time.time() * 1000)
        for d in batch:
            e = d.event
            if isinstance(e, PriceTick) and not e.origin and now - e.ts <= MAX_AGE_MS:
                for og in self.alerter.plan_price(e, now):
                    await self._deliver(og, now)

    async def check_stale(self, now: int | None = None) -> None:
        """Send what the stale-price check calls for now."""
        t = now if now is not None else int(time.time() * 1000)
        for og in self.alerter.plan_stale(t):
            await self._deliver(og, t)

    async def _stale_loop(self, hours: float) -> None:
        every = min(300.0, max(0.2, hours * 3600 / 8))
        while True:
            await asyncio.sleep(every)
            try:
                await self.check_stale()
            except bus.TransientError as exc:  # the bot is unreachable: the next round tries again
                log.warning("alerter: stale-price card not delivered: %s", exc)

    async def _deliver(self, og: Outgoing, now: int) -> None:
        if og.kind == "suppressed":
            if og.decision is not None:
                self.alerter.policy.commit(og.decision, now)
            self._m_cards.labels("repeat", "suppressed").inc()
            self.alerter.done(og.keys)
            return
        try:
            await self.bot.send_card(og.card, kind=og.kind)
        except BotError as exc:
            self.last_error = f"alert not delivered: {exc}"
            self._m_cards.labels(og.kind, "failed").inc()
            if exc.transient:
                raise bus.TransientError(str(exc)) from exc
            # A webhook that refuses for good (404, bad signature) must not hold the pipeline.
            log.error("alerter: %s card dropped: %s", og.kind, exc)
            self.alerter.done(og.keys)
            return
        self.last_error = ""
        self._m_cards.labels(og.kind, "sent").inc()
        if og.decision is not None:
            self.alerter.policy.commit(og.decision, now)
        self.alerter.done(og.keys)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def read_report(settings: Settings, day: str) -> dict[str, Any] | None:
    """The store's report for `day` (read-only), or None when the database is not reachable from here."""
    from assetsync_store import views

    try:
        conn = views.open_readonly(settings.db_path)
    except views.StoreNotFound:
        return None
    try:
        rep = views.day_report(conn, day or None, views.valuation_for(conn, settings))
        return rep.to_dict() if rep is not None else None
    except sqlite3.Error as exc:
        log.warning("alerter: cannot read the day report from %s: %s", settings.db_path, exc)
        return None
    finally:
        conn.close()

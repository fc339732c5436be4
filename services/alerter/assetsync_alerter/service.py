"""alerter wiring: task results, backups, lifecycle and sink rejections → Feishu group-bot cards."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from assetsync import bus
from assetsync.config import Settings
from assetsync.events import AnyEvent, BackupResult, ServiceLifecycle, SinkRejected, TaskResult
from assetsync.feishu.bot import BotError, GroupBot
from assetsync.runtime import Runtime
from assetsync.service import Disabled, Service

from assetsync_alerter import cards
from assetsync_alerter.policy import AlertPolicy, Decision, Level

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
        for og in self.alerter.lifecycle([e for e in events if isinstance(e, ServiceLifecycle)]):
            await self._deliver(og, now)

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

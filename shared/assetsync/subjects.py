"""Stream and subject names, in one place. Subjects are `<domain>.<entity>.<version>[.<qualifier>]`.

A `Topology` applies an optional namespace prefix (config `nats.prefix`), so several stacks or
tests can share one NATS server without seeing each other's streams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from assetsync import events as ev

Retention = Literal["limits", "workqueue"]

DAY = 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    """What a stream holds and how long."""

    name: str
    subjects: tuple[str, ...]
    retention: Retention
    duplicate_window: float  # seconds
    max_age: float  # seconds, 0 = forever
    max_bytes: int  # -1 = unlimited
    description: str


@dataclass(frozen=True)
class Topology:
    """Names of every stream and subject, optionally namespaced."""

    prefix: str = ""
    # subject_for memo: (event class, qualifier) -> subject; a hot path for every publish.
    _memo: dict[tuple[type, str], str] = field(default_factory=dict, compare=False, repr=False, hash=False)

    # --- names -----------------------------------------------------------------------------
    def subject(self, *parts: str) -> str:
        body = ".".join(parts)
        return f"{self.prefix}.{body}" if self.prefix else body

    def stream(self, base: str) -> str:
        return f"{self.prefix.upper().replace('-', '_')}_{base}" if self.prefix else base

    def durable(self, base: str) -> str:
        return f"{self.prefix}-{base}" if self.prefix else base

    @property
    def market(self) -> str:
        return self.stream("MARKET")

    @property
    def portfolio(self) -> str:
        return self.stream("PORTFOLIO")

    @property
    def tasks(self) -> str:
        return self.stream("TASKS")

    @property
    def ops(self) -> str:
        return self.stream("OPS")

    # --- subjects --------------------------------------------------------------------------
    def price(self, source: str = "*") -> str:
        return self.subject("market", "price", "v1", source)

    def ticks(self, source: str = "*") -> str:
        return self.subject("market", "ticks", "v1", source)

    def feed(self, code: str = "*") -> str:
        """Native catalog records (FeedRecord), one subject per endpoint code; in MARKET."""
        return self.subject("market", "feed", "v1", code)

    def kline(self, source: str = "*") -> str:
        return self.subject("market", "kline", "v1", source)

    def holding(self, source: str = "*") -> str:
        return self.subject("portfolio", "holding", "v1", source)

    def trade(self, source: str = "*") -> str:
        return self.subject("portfolio", "trade", "v1", source)

    def order(self, source: str = "*") -> str:
        return self.subject("portfolio", "order", "v1", source)

    def snapshot(self) -> str:
        return self.subject("portfolio", "snapshot", "v1")

    def command(self, task: str = "*") -> str:
        return self.subject("tasks", "command", "v1", task)

    def result(self, task: str = "*") -> str:
        return self.subject("tasks", "result", "v1", task)

    def backup(self) -> str:
        return self.subject("ops", "backup", "v1")

    def lifecycle(self, service: str = "*") -> str:
        return self.subject("ops", "lifecycle", "v1", service)

    def sink_rejected(self, sink: str = "*") -> str:
        return self.subject("ops", "sink_rejected", "v1", sink)

    def external(self, code: str = "*") -> str:
        return self.subject("gateway", "record", "v1", code)

    def committed(self, kind: str = "*") -> str:
        """Core-NATS notifications the store sends after a commit (not in any stream)."""
        return self.subject("store", "committed", "v1", kind)

    def subject_for(self, event: ev.Event) -> str:
        """The subject an event is published on."""
        key = (type(event), _QUALIFIER.get(type(event), _no_qualifier)(event))
        got = self._memo.get(key)
        if got is None:
            got = self._subject_for(event)
            self._memo[key] = got
        return got

    def _subject_for(self, event: ev.Event) -> str:
        match event:
            case ev.PriceTick():
                return self.price(_token(event.source))
            case ev.MarketTicks():
                return self.ticks(_token(event.source))
            case ev.FeedRecord():
                return self.feed(_token(event.code))
            case ev.KlineBatch():
                return self.kline(_token(event.source))
            case ev.Holding():
                return self.holding(_token(event.source))
            case ev.Trade():
                return self.trade(_token(event.source))
            case ev.Order():
                return self.order(_token(event.source))
            case ev.Snapshot():
                return self.snapshot()
            case ev.TaskCommand():
                return self.command(event.task)
            case ev.TaskResult():
                return self.result(event.task)
            case ev.BackupResult():
                return self.backup()
            case ev.ServiceLifecycle():
                return self.lifecycle(_token(event.service))
            case ev.SinkRejected():
                return self.sink_rejected(_token(event.sink))
            case ev.ExternalRecord():
                return self.external(_token(event.code))
        raise TypeError(f"no subject for {type(event).__name__}")

    # --- streams ---------------------------------------------------------------------------
    def streams(self, *, duplicate_window: float = 3600.0, max_age_days: float = 30.0) -> list[StreamSpec]:
        age = max_age_days * DAY
        return [
            StreamSpec(
                name=self.market,
                subjects=(self.subject("market", ">"),),
                retention="limits",
                duplicate_window=duplicate_window,
                max_age=age,
                max_bytes=-1,
                description="price ticks, watch-list ticks, kline batches and native feed records",
            ),
            StreamSpec(
                name=self.portfolio,
                subjects=(self.subject("portfolio", ">"),),
                retention="limits",
                duplicate_window=duplicate_window,
                max_age=age,
                max_bytes=-1,
                description="holdings, trades, orders and daily snapshots",
            ),
            StreamSpec(
                name=self.tasks,
                subjects=(self.subject("tasks", "command", ">"),),
                retention="workqueue",
                # Longer than the longest schedule slot (a day), so every replica's trigger for
                # the same slot collapses into one message.
                duplicate_window=DAY + 3600.0,
                max_age=2 * DAY,
                max_bytes=-1,
                description="task commands (work queue: each taken by one replica)",
            ),
            StreamSpec(
                name=self.ops,
                subjects=(
                    self.subject("tasks", "result", ">"),
                    self.subject("ops", ">"),
                    self.subject("gateway", ">"),
                ),
                retention="limits",
                duplicate_window=duplicate_window,
                max_age=age,
                max_bytes=-1,
                description="task results, backup results, lifecycle, sink rejections, received records",
            ),
        ]


def _no_qualifier(event: ev.Event) -> str:
    return ""


# The field that picks the last subject token, per event type (what subject_for's memo keys on).
_QUALIFIER: dict[type, Callable[[ev.Event], str]] = {
    ev.PriceTick: lambda e: e.source,  # type: ignore[attr-defined]
    ev.KlineBatch: lambda e: e.source,  # type: ignore[attr-defined]
    ev.MarketTicks: lambda e: e.source,  # type: ignore[attr-defined]
    ev.FeedRecord: lambda e: e.code,  # type: ignore[attr-defined]
    ev.Holding: lambda e: e.source,  # type: ignore[attr-defined]
    ev.Trade: lambda e: e.source,  # type: ignore[attr-defined]
    ev.Order: lambda e: e.source,  # type: ignore[attr-defined]
    ev.TaskCommand: lambda e: e.task,  # type: ignore[attr-defined]
    ev.TaskResult: lambda e: e.task,  # type: ignore[attr-defined]
    ev.ServiceLifecycle: lambda e: e.service,  # type: ignore[attr-defined]
    ev.SinkRejected: lambda e: e.sink,  # type: ignore[attr-defined]
    ev.ExternalRecord: lambda e: e.code,  # type: ignore[attr-defined]
}


def _token(value: str) -> str:
    """A safe single subject token (no dots, spaces or wildcards)."""
    out = "".join(c if c.isalnum() or c in "-_" else "_" for c in value)
    return out or "_"

"""Prometheus metrics: one registry per process, get-or-create so services can be built twice."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """A process's metrics registry and the metrics every service shares."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._made: dict[str, MetricWrapperBase] = {}
        self._lock = threading.Lock()
        consumer = ("consumer",)
        self.events_in = self.counter("assetsync_events_in_total", "Events delivered to a consumer", consumer)
        self.events_acked = self.counter(
            "assetsync_events_acked_total", "Events acked after commit", consumer
        )
        self.events_naked = self.counter(
            "assetsync_events_naked_total", "Events nak'ed for redelivery (transient failure)", consumer
        )
        self.events_termed = self.counter(
            "assetsync_events_termed_total", "Events terminated as poison", (*consumer, "reason")
        )
        self.consumer_lag = self.gauge("assetsync_consumer_lag", "Messages pending for a consumer", consumer)
        self.batch_seconds = self.histogram(
            "assetsync_consumer_batch_seconds", "Time to handle and commit one batch", consumer
        )
        self.events_out = self.counter("assetsync_events_out_total", "Events published", ("kind",))
        self.publish_errors = self.counter(
            "assetsync_publish_errors_total", "Publishes that failed or were retried", ("kind",)
        )
        self.task_runs = self.counter("assetsync_task_runs_total", "Task runs by outcome", ("task", "status"))
        self.task_seconds = self.histogram(
            "assetsync_task_duration_seconds", "Task run duration", ("task",), buckets=DURATION_BUCKETS
        )
        self.last_success = self.gauge(
            "assetsync_last_success_timestamp_seconds", "Last successful task run (unix time)", ("task",)
        )
        self.api_calls = self.counter(
            "assetsync_external_api_calls_total", "Calls to external APIs", ("service", "endpoint")
        )
        self.api_errors = self.counter(
            "assetsync_external_api_errors_total",
            "Failed calls to external APIs",
            ("service", "endpoint", "kind"),
        )
        self.up = self.gauge("assetsync_service_up", "1 while a service runs healthy", ("service",))

    def _get(self, cls: type[M], name: str, doc: str, labels: Sequence[str], **kw: object) -> M:
        with self._lock:
            existing = self._made.get(name)
            if existing is not None:
                if not isinstance(existing, cls):
                    raise TypeError(f"metric {name} already registered as {type(existing).__name__}")
                return existing
            metric = cls(name, doc, labelnames=tuple(labels), registry=self.registry, **kw)  # type: ignore[arg-type]
            self._made[name] = metric
            return metric

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, doc, labels)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, doc, labels)

    def histogram(
        self, name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] | None = None
    ) -> Histogram:
        if buckets is None:
            return self._get(Histogram, name, doc, labels)
        return self._get(Histogram, name, doc, labels, buckets=tuple(buckets))

    def exposition(self) -> bytes:
        """The text format for a /metrics response."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of a sample (tests and status pages); 0 when absent."""
        got = self.registry.get_sample_value(name, labels or {})
        return float(got) if got is not None else 0.0

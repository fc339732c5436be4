"""The seed's 监控指标 for sender and receiver: kept in memory, persisted, exported to Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
from assetsync.files import atomic_write
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("assetsync.gateway.stats")


def iso(ts: float | None) -> str | None:
    """Unix time -> ISO 8601 UTC (the seed shows times as strings)."""
    if not ts:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class SenderEndpointStats(msgspec.Struct, kw_only=True):
    requests: int = 0
    successful: int = 0
    failed: int = 0
    bytes_sent: int = 0
    records_sent: int = 0
    not_modified: int = 0
    last_request_time: float = 0.0


class SenderStats(msgspec.Struct, kw_only=True):
    total_requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0
    total_bytes_sent: int = 0
    last_request_time: float = 0.0
    endpoint_stats: dict[str, SenderEndpointStats] = msgspec.field(default_factory=dict)

    def record(
        self, code: str | None, ok: bool, sent: int, records: int = 0, not_modified: bool = False
    ) -> None:
        now = time.time()
        self.total_requests += 1
        if ok:
            self.successful_requests += 1
        else:
            self.failed_requests += 1
        self.total_bytes_sent += sent
        self.last_request_time = now
        if code is None:
            return
        es = self.endpoint_stats.get(code)
        if es is None:
            es = self.endpoint_stats[code] = SenderEndpointStats()
        es.requests += 1
        if ok:
            es.successful += 1
        else:
            es.failed += 1
        es.bytes_sent += sent
        es.records_sent += records
        es.not_modified += int(not_modified)
        es.last_request_time = now


class ReceiverEndpointStats(msgspec.Struct, kw_only=True):
    syncs: int = 0
    successful: int = 0
    failed: int = 0
    records_received: int = 0
    bytes: int = 0  # on the wire
    bytes_raw: int = 0  # decompressed
    duplicates: int = 0
    retries: int = 0
    errors: int = 0
    resyncs: int = 0
    last_error: str = ""
    last_sync_time: float = 0.0
    last_success_time: float = 0.0
    remote_hwm: int = 0
    cursor_seq: int = 0


class ReceiverStats(msgspec.Struct, kw_only=True):
    total_syncs: int = 0
    successful_syncs: int = 0
    failed_syncs: int = 0
    total_bytes_received: int = 0
    total_bytes_raw: int = 0
    last_sync_time: float = 0.0
    last_error: str = ""
    endpoint_stats: dict[str, ReceiverEndpointStats] = msgspec.field(default_factory=dict)

    def endpoint(self, code: str) -> ReceiverEndpointStats:
        es = self.endpoint_stats.get(code)
        if es is None:
            es = self.endpoint_stats[code] = ReceiverEndpointStats()
        return es


class StatsFile:
    """A JSON-persisted SenderStats, flushed when dirty at most every `period` seconds."""

    def __init__(self, path: Path, period: float = 1.0) -> None:
        self.path = path
        self.period = period
        self.stats = SenderStats()
        self._task: asyncio.Task[None] | None = None
        self._saved_at = -1

    def load(self) -> None:
        try:
            self.stats = msgspec.json.decode(self.path.read_bytes(), type=SenderStats)
        except FileNotFoundError:
            self.stats = SenderStats()
        except (msgspec.DecodeError, msgspec.ValidationError, OSError) as exc:
            log.warning("sender statistics %s unreadable (%s); starting from zero", self.path, exc)
            self.stats = SenderStats()
        self._saved_at = self.stats.total_requests

    def save(self) -> None:
        if self.stats.total_requests == self._saved_at:
            return
        self._saved_at = self.stats.total_requests
        try:
            atomic_write(self.path, msgspec.json.encode(self.stats))
        except OSError as exc:
            log.warning("cannot save sender statistics to %s: %s", self.path, exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sender-stats")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await asyncio.to_thread(self.save)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.save()


class GatewayCollector(Collector):
    """Exports the persisted sender/receiver statistics (they survive restarts, unlike process counters)."""

    def __init__(
        self,
        sender: Callable[[], SenderStats],
        receiver: Callable[[], ReceiverStats],
        lag: Callable[[], dict[str, int]],
        syncing: Callable[[], bool],
    ) -> None:
        self._sender = sender
        self._receiver = receiver
        self._lag = lag
        self._syncing = syncing

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        s = self._sender()
        req = CounterMetricFamily(
            "assetsync_gateway_sender_requests",
            "Sender requests by endpoint and outcome",
            labels=["code", "outcome"],
        )
        sent = CounterMetricFamily(
            "assetsync_gateway_sender_bytes_sent", "Bytes sent on the wire by endpoint", labels=["code"]
        )
        recs = CounterMetricFamily(
            "assetsync_gateway_sender_records_sent", "Records sent by endpoint", labels=["code"]
        )
        for code, es in s.endpoint_stats.items():
            req.add_metric([code, "success"], es.successful)
            req.add_metric([code, "failure"], es.failed)
            sent.add_metric([code], es.bytes_sent)
            recs.add_metric([code], es.records_sent)
        yield req
        yield sent
        yield recs
        total = CounterMetricFamily(
            "assetsync_gateway_sender_requests_all", "All sender API requests", labels=["outcome"]
        )
        total.add_metric(["success"], s.successful_requests)
        total.add_metric(["failure"], s.failed_requests)
        yield total
        r = self._receiver()
        syncs = CounterMetricFamily(
            "assetsync_gateway_receiver_syncs",
            "Receiver syncs by endpoint and outcome",
            labels=["code", "outcome"],
        )
        wire = CounterMetricFamily(
            "assetsync_gateway_receiver_bytes", "Bytes received by endpoint", labels=["code", "kind"]
        )
        rrecs = CounterMetricFamily(
            "assetsync_gateway_receiver_records", "Records received (stored) by endpoint", labels=["code"]
        )
        dups = CounterMetricFamily(
            "assetsync_gateway_receiver_duplicates", "Received records dropped as duplicates", labels=["code"]
        )
        retries = CounterMetricFamily(
            "assetsync_gateway_receiver_retries", "Request retries by endpoint", labels=["code"]
        )
        errors = CounterMetricFamily(
            "assetsync_gateway_receiver_errors", "Failed requests by endpoint", labels=["code"]
        )
        last = GaugeMetricFamily(
            "assetsync_gateway_receiver_last_success_timestamp_seconds",
            "Last successful sync of an endpoint (unix time)",
            labels=["code"],
        )
        for code, rs in r.endpoint_stats.items():
            syncs.add_metric([code, "success"], rs.successful)
            syncs.add_metric([code, "failure"], rs.failed)
            wire.add_metric([code, "wire"], rs.bytes)
            wire.add_metric([code, "raw"], rs.bytes_raw)
            rrecs.add_metric([code], rs.records_received)
            dups.add_metric([code], rs.duplicates)
            retries.add_metric([code], rs.retries)
            errors.add_metric([code], rs.errors)
            last.add_metric([code], rs.last_success_time)
        yield from (syncs, wire, rrecs, dups, retries, errors, last)
        lag = GaugeMetricFamily(
            "assetsync_gateway_receiver_lag",
            "Remote high-water mark minus the receiver's cursor",
            labels=["code"],
        )
        for code, n in self._lag().items():
            lag.add_metric([code], n)
        yield lag
        yield GaugeMetricFamily(
            "assetsync_gateway_receiver_syncing", "1 while a sync runs", value=int(self._syncing())
        )

"""Publishing events with their natural key as Nats-Msg-Id: a bounded window of async acks, re-sent until acked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from assetsync.bus.errors import MSG_ID, PublishError, subject_kind
from assetsync.events import Codec, Event
from assetsync.metrics import Metrics
from assetsync.retry import Backoff
from assetsync.subjects import Topology

# Re-sends of a window whose acks were lost; one publish awaiting its ack (commands, results).
RESEND = Backoff(base=0.05, cap=2.0)
PUBLISH_NOW = Backoff(base=0.2, cap=3.0)


@dataclass
class _Pending:
    subject: str
    payload: bytes
    headers: dict[str, str]
    attempts: int = 1
    sent_at: float = 0.0


class Publisher:
    """Publishes events with their natural key as Nats-Msg-Id; bounded in flight, every ack checked.

    Acks come back roughly in publish order, so in-flight publishes are a FIFO window: when it is
    full, completed acks are collected from the front (no per-message callbacks, counters bumped
    once per sweep). A publish whose ack is overdue is re-sent; Nats-Msg-Id makes that harmless.
    """

    def __init__(
        self,
        js: JetStreamContext,
        topo: Topology,
        codec: Codec,
        metrics: Metrics,
        *,
        log: logging.Logger | None = None,
        max_in_flight: int = 4000,
        ack_timeout: float = 5.0,
        max_attempts: int = 6,
    ) -> None:
        self._js = js
        self._topo = topo
        self._codec = codec
        self._metrics = metrics
        self._log = log or logging.getLogger("assetsync.bus")
        self._max = max_in_flight
        self._ack_timeout = ack_timeout
        self._max_attempts = max_attempts
        self._window: deque[tuple[asyncio.Future[api.PubAck], _Pending]] = deque()
        self._failed: list[tuple[_Pending, BaseException]] = []
        self.published = 0

    @property
    def in_flight(self) -> int:
        return len(self._window)

    async def publish(self, event: Event, *, subject: str | None = None) -> None:
        """Queue one event for publishing; returns once it is on the wire (ack checked later)."""
        subj = subject or self._topo.subject_for(event)
        await self._send(_Pending(subj, self._codec.encode(event), {MSG_ID: event.key()}))

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Queue several events, then wait until every one is acknowledged."""
        for e in events:
            await self.publish(e)
        await self.flush()

    async def _send(self, p: _Pending) -> None:
        if len(self._window) >= self._max:
            await self._collect(self._max // 2)
        p.sent_at = time.monotonic()
        fut = await self._js.publish_async(p.subject, p.payload, headers=p.headers)
        self._window.append((fut, p))

    async def _collect(self, keep: int) -> None:
        """Settle acks from the front of the window until at most `keep` are in flight."""
        window = self._window
        done: dict[str, int] = {}
        while len(window) > keep:
            fut, p = window[0]
            if not fut.done():
                # Each publish has its own deadline: once one is overdue, those sent with it are
                # too, and are given up at once rather than after a timeout each.
                remaining = p.sent_at + self._ack_timeout - time.monotonic()
                if remaining > 0:
                    await asyncio.wait((fut,), timeout=remaining)
                if not fut.done():
                    fut.cancel()  # lost (e.g. in a reconnect): re-sent by flush()
                continue  # look again: another coroutine may have settled the front meanwhile
            window.popleft()
            if fut.cancelled():
                self._failed.append((p, TimeoutError("no ack from JetStream")))
            elif (exc := fut.exception()) is not None:
                self._failed.append((p, exc))
            else:
                done[p.subject] = done.get(p.subject, 0) + 1
        for subject, n in done.items():
            self.published += n
            self._metrics.events_out.labels(subject_kind(subject)).inc(n)

    async def flush(self, timeout: float = 120.0) -> None:
        """Wait until every queued event is acknowledged, re-sending lost ones (dedup makes it safe)."""
        deadline = time.monotonic() + timeout
        while True:
            await self._collect(0)
            if not self._failed:
                return
            if time.monotonic() > deadline:
                raise PublishError(f"{len(self._failed)} events not acknowledged")
            retry, self._failed = self._failed, []
            attempts = 0
            for p, exc in retry:
                self._metrics.publish_errors.labels(subject_kind(p.subject)).inc()
                if isinstance(exc, nats.js.errors.APIError) and not isinstance(
                    exc, nats.js.errors.ServiceUnavailableError
                ):
                    raise PublishError(f"JetStream refused an event on {p.subject}: {exc}") from exc
                # Lost acks, no responders and 503s are what a reconnect or a stream-leader election
                # looks like: those retry until flush()'s deadline; anything else has a few tries.
                if p.attempts >= self._max_attempts and not _riding_out(exc):
                    raise PublishError(
                        f"event on {p.subject} not acknowledged after {p.attempts} tries: {exc}"
                    )
                attempts = max(attempts, p.attempts)
            self._log.warning(
                "re-publishing %d events (attempt %d): %s", len(retry), attempts + 1, retry[0][1] or "timeout"
            )
            # One backoff for the whole lot, then re-send them all.
            await asyncio.sleep(RESEND.delay(attempts + 1))
            for p, _ in retry:
                p.attempts += 1
                await self._send(p)

    async def publish_now(self, event: Event, *, subject: str | None = None, attempts: int = 5) -> api.PubAck:
        """Publish one event and wait for its ack (commands, results), retrying transient failures."""
        subj = subject or self._topo.subject_for(event)
        payload = self._codec.encode(event)
        headers = {MSG_ID: event.key()}
        for attempt in range(1, attempts + 1):
            try:
                ack = await self._js.publish(subj, payload, headers=headers, timeout=self._ack_timeout)
                self._metrics.events_out.labels(subject_kind(subj)).inc()
                return ack
            except (
                nats.errors.TimeoutError,
                nats.js.errors.NoStreamResponseError,
                nats.errors.NoRespondersError,
            ) as exc:
                self._metrics.publish_errors.labels(subject_kind(subj)).inc()
                if attempt == attempts:
                    raise PublishError(f"event on {subj} not acknowledged: {exc!r}") from exc
                await asyncio.sleep(PUBLISH_NOW.delay(attempt))
        raise PublishError(f"event on {subj} not acknowledged")


def _riding_out(exc: BaseException) -> bool:
    """Errors of a cluster in transition (reconnect, leader election), worth waiting out."""
    return isinstance(
        exc,
        TimeoutError
        | nats.errors.TimeoutError
        | nats.errors.NoRespondersError
        | nats.js.errors.NoStreamResponseError
        | nats.js.errors.ServiceUnavailableError,
    )

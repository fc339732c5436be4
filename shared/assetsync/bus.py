"""JetStream plumbing: connect, declare streams, publish with Nats-Msg-Id, batched durable consumers.

Performance notes (see PERFORMANCE.md): nats-py's pull `fetch()` costs a task and a uuid per message,
so consumers here are durable *push* consumers with a deliver group (replicas share the work), feeding
a buffer that the handler commits in batches; acks go out only after the handler returns. Publishes
use `publish_async` with a bounded number in flight and check every ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from assetsync.events import AnyEvent, Codec, Event
from assetsync.metrics import Metrics
from assetsync.subjects import StreamSpec, Topology

MSG_ID = "Nats-Msg-Id"


class BusError(Exception):
    """The bus could not do what was asked (after retries)."""


class PublishError(BusError):
    """Some published events were not acknowledged by JetStream."""


class TransientError(Exception):
    """A handler failure worth retrying later: the batch is nak'ed with backoff."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class HaltError(Exception):
    """The sink itself is broken (e.g. a damaged database): stop consuming and settle nothing, so
    every event stays in the stream for after the repair — never terminated as poison."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _kind(subject: str) -> str:
    """`[prefix.]market.price.v1.binance` -> `market.price` (a low-cardinality metric label)."""
    parts = subject.split(".")
    for i, p in enumerate(parts):
        if p in ("market", "portfolio", "tasks", "ops", "gateway", "store") and i + 1 < len(parts):
            return f"{p}.{parts[i + 1]}"
    return parts[0]


# --- connection ------------------------------------------------------------------------------


async def connect(
    servers: str | Sequence[str],
    *,
    name: str,
    log: logging.Logger | None = None,
    connect_deadline: float = 10.0,
) -> NATS:
    """Connect with unlimited reconnects; retry the first connect until `connect_deadline`."""
    lg = log or logging.getLogger("assetsync.bus")
    urls = [servers] if isinstance(servers, str) else list(servers)
    urls = [u for s in urls for u in s.split(",") if u.strip()]

    async def on_error(exc: Exception) -> None:
        lg.warning("NATS error: %s", exc)

    async def on_disconnect() -> None:
        if nc.is_closed or nc.is_draining:
            return  # our own shutdown
        lg.warning("NATS disconnected; reconnecting")

    async def on_reconnect() -> None:
        lg.info("NATS reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    deadline = time.monotonic() + connect_deadline
    delay = 0.1
    while True:
        nc = NATS()
        try:
            # Unlimited reconnects make nats-py retry a first connect forever too: bound it here.
            await asyncio.wait_for(
                nc.connect(
                    servers=urls,
                    name=name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    connect_timeout=3,
                    ping_interval=10,
                    max_outstanding_pings=3,
                    pending_size=64 * 1024 * 1024,
                    drain_timeout=3,  # a stop must finish in seconds; anything undrained is redelivered
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                ),
                max(0.5, deadline - time.monotonic()),
            )
            return nc
        except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
            if time.monotonic() + delay > deadline:
                with contextlib.suppress(Exception):
                    await nc.close()
                raise BusError(f"cannot reach NATS at {', '.join(urls)}: {exc or 'timed out'}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def jetstream(nc: NATS, max_pending: int = 20000) -> JetStreamContext:
    """A JetStream context whose own async-publish bound is above the Publisher's."""
    return nc.jetstream(timeout=10.0, publish_async_max_pending=max_pending)


async def ensure_streams(js: JetStreamContext, specs: Sequence[StreamSpec], *, replicas: int = 1) -> None:
    """Create each stream, or update it when its limits changed (idempotent)."""
    for spec in specs:
        cfg = api.StreamConfig(
            name=spec.name,
            description=spec.description,
            subjects=list(spec.subjects),
            retention=api.RetentionPolicy.WORK_QUEUE
            if spec.retention == "workqueue"
            else api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            duplicate_window=spec.duplicate_window,
            max_age=spec.max_age,
            max_bytes=spec.max_bytes,
            max_msgs=-1,
            num_replicas=replicas,
            allow_direct=True,
        )
        try:
            info = await js.stream_info(spec.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(cfg)
            continue
        cur = info.config
        if (
            sorted(cur.subjects or []) != sorted(cfg.subjects or [])
            or cur.duplicate_window != cfg.duplicate_window
            or cur.max_age != cfg.max_age
            or cur.max_bytes != cfg.max_bytes
            or (cur.num_replicas or 1) != replicas
            or cur.description != cfg.description
        ):
            await js.update_stream(cfg)


# --- publishing ------------------------------------------------------------------------------


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
            self._metrics.events_out.labels(_kind(subject)).inc(n)

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
                self._metrics.publish_errors.labels(_kind(p.subject)).inc()
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
            await asyncio.sleep(min(2.0, 0.05 * 2**attempts) * random.uniform(0.5, 1.0))
            for p, _ in retry:
                p.attempts += 1
                await self._send(p)

    async def publish_now(self, event: Event, *, subject: str | None = None, attempts: int = 5) -> api.PubAck:
        """Publish one event and wait for its ack (commands, results), retrying transient failures."""
        subj = subject or self._topo.subject_for(event)
        payload = self._codec.encode(event)
        headers = {MSG_ID: event.key()}
        delay = 0.2
        for attempt in range(1, attempts + 1):
            try:
                ack = await self._js.publish(subj, payload, headers=headers, timeout=self._ack_timeout)
                self._metrics.events_out.labels(_kind(subj)).inc()
                return ack
            except (
                nats.errors.TimeoutError,
                nats.js.errors.NoStreamResponseError,
                nats.errors.NoRespondersError,
            ) as exc:
                self._metrics.publish_errors.labels(_kind(subj)).inc()
                if attempt == attempts:
                    raise PublishError(f"event on {subj} not acknowledged: {exc!r}") from exc
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 3.0)
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


# --- consuming -------------------------------------------------------------------------------


Outcome = Literal["ack", "nak", "term"]


@dataclass(eq=False)
class Delivery:
    """One decoded event handed to a handler; the handler may mark it nak or term."""

    event: AnyEvent
    msg: Msg
    outcome: Outcome = "ack"
    delay: float = 0.0
    reason: str = ""

    @property
    def subject(self) -> str:
        return self.msg.subject

    @property
    def stream_seq(self) -> int:
        return int(self.msg.metadata.sequence.stream)

    @property
    def num_delivered(self) -> int:
        return int(self.msg.metadata.num_delivered)

    def nak(self, delay: float, reason: str) -> None:
        self.outcome, self.delay, self.reason = "nak", delay, reason

    def term(self, reason: str) -> None:
        self.outcome, self.reason = "term", reason

    async def in_progress(self) -> None:
        """Tell JetStream the handler is still working (resets the ack timer)."""
        with contextlib.suppress(Exception):
            await self.msg.in_progress()


BatchHandler = Callable[[Sequence[Delivery]], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer: what it reads and how it batches."""

    durable: str
    stream: str
    subjects: tuple[str, ...]
    batch_size: int = 500
    linger: float = 0.005  # wait this long for a batch to fill once the first event is in
    ack_wait: float = 30.0
    max_ack_pending: int = 10000
    max_deliver: int = -1
    nak_delay: float = 1.0
    max_nak_delay: float = 120.0
    description: str = ""
    # A new durable starts with the messages published after it (live watchers, e.g. price alerts,
    # that must not replay a month of history); an existing one resumes where it left off either way.
    deliver_new: bool = False


@dataclass
class ConsumerStats:
    """Counts kept by a consumer (also exported as metrics)."""

    delivered: int = 0
    acked: int = 0
    naked: int = 0
    termed: int = 0
    batches: int = 0
    last_error: str = ""
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))


class Consumer:
    """A durable push consumer in a deliver group, handing decoded batches to a handler."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: BatchHandler,
        codec: Codec,
        metrics: Metrics,
        *,
        log: logging.Logger | None = None,
    ) -> None:
        self.spec = spec
        self._nc = nc
        self._js = js
        self._handler = handler
        self._codec = codec
        self._m = metrics
        self._log = log or logging.getLogger(f"assetsync.consumer.{spec.durable}")
        self._buf: deque[Msg] = deque()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._sub: Any = None
        self._worker: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.halted = ""  # why this consumer stopped on a HaltError ("" = running)
        self.stats = ConsumerStats()
        self.paused = asyncio.Event()  # set = paused (e.g. during a restore)
        self._idle = asyncio.Event()
        self._idle.set()
        d = spec.durable
        self._c_in = metrics.events_in.labels(d)
        self._c_ack = metrics.events_acked.labels(d)
        self._c_nak = metrics.events_naked.labels(d)
        self._h_batch = metrics.batch_seconds.labels(d)

    @property
    def deliver_subject(self) -> str:
        return f"deliver.{self.spec.stream}.{self.spec.durable}"

    def _config(self) -> api.ConsumerConfig:
        subjects = list(self.spec.subjects)
        return api.ConsumerConfig(
            durable_name=self.spec.durable,
            description=self.spec.description or None,
            deliver_subject=self.deliver_subject,
            deliver_group=self.spec.durable,
            deliver_policy=api.DeliverPolicy.NEW if self.spec.deliver_new else api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.spec.ack_wait,
            max_ack_pending=self.spec.max_ack_pending,
            max_deliver=self.spec.max_deliver,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
        )

    async def start(self) -> None:
        """Create or update the durable consumer and start receiving."""
        await self._js.add_consumer(self.spec.stream, config=self._config())
        self._sub = await self._nc.subscribe(
            self.deliver_subject,
            queue=self.spec.durable,
            cb=self._on_msg,
            pending_msgs_limit=self.spec.max_ack_pending * 2 + 1000,
            pending_bytes_limit=512 * 1024 * 1024,
        )
        self._worker = asyncio.create_task(self._run(), name=f"consumer:{self.spec.durable}")
        self._lag_task = asyncio.create_task(self._watch_lag(), name=f"lag:{self.spec.durable}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving, finish what is buffered (drain), then return; a batch still in its handler
        after `timeout` is cancelled unacked (JetStream redelivers it)."""
        self._stopping = True
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._wake.set()
        self._full.set()
        if self._worker is not None and not self._worker.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout)
            except TimeoutError:
                self._worker.cancel()
                self._log.warning(
                    "consumer %s: drain timed out; unacked events will be redelivered", self.spec.durable
                )
                with contextlib.suppress(asyncio.CancelledError):
                    await self._worker
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task

    async def wait_idle(self) -> None:
        """Wait until no batch is being handled (used to pause writes)."""
        await self._idle.wait()

    async def _on_msg(self, msg: Msg) -> None:
        self._buf.append(msg)
        self._wake.set()
        if len(self._buf) >= self.spec.batch_size:
            self._full.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            while self.paused.is_set() and not self._stopping:
                await asyncio.sleep(0.05)
            if self.halted:
                return
            if not self._buf:
                if self._stopping:
                    return
                self._wake.clear()
                continue
            if self.spec.linger and len(self._buf) < self.spec.batch_size and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.spec.linger)
            n = min(len(self._buf), self.spec.batch_size)
            batch = [self._buf.popleft() for _ in range(n)]
            if len(self._buf) < self.spec.batch_size:
                self._full.clear()
            self._idle.clear()
            try:
                await self._process(batch)
            except Exception:  # the loop must survive anything a handler or the network does
                self._log.exception(
                    "consumer %s: batch failed unexpectedly; it will be redelivered", self.spec.durable
                )
            finally:
                self._idle.set()

    async def _process(self, batch: list[Msg]) -> None:
        deliveries: list[Delivery] = []
        for msg in batch:
            try:
                event = self._codec.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                seq = _seq(msg)
                self._log.error(
                    "consumer %s: undecodable event on %s (stream seq %s) terminated: %s",
                    self.spec.durable,
                    msg.subject,
                    seq,
                    exc,
                )
                await self._settle(msg, "term", 0.0, f"decode: {exc}", reason_label="decode")
                continue
            deliveries.append(Delivery(event=event, msg=msg))
        n = len(batch)
        self.stats.delivered += n
        self._c_in.inc(n)
        if not deliveries:
            return
        started = time.perf_counter()
        try:
            await self._handler(deliveries)
        except TransientError as exc:
            self._note_error(exc.reason)
            self._log.warning(
                "consumer %s: %d events will be retried: %s", self.spec.durable, len(deliveries), exc.reason
            )
            for d in deliveries:
                await self._settle(
                    d.msg, "nak", exc.delay if exc.delay is not None else self._backoff(d), exc.reason
                )
            return
        except HaltError as exc:
            await self._halt(exc.reason)
            return
        except Exception as exc:
            self._note_error(f"{type(exc).__name__}: {exc}")
            if len(deliveries) == 1:
                await self._term_poison(deliveries[0], exc)
                return
            # Find the poison by handling one at a time; the rest still commit.
            for d in deliveries:
                if self.halted:
                    return
                await self._process_one(d)
            return
        finally:
            self._h_batch.observe(time.perf_counter() - started)
            self.stats.batches += 1
        if all(d.outcome == "ack" for d in deliveries):
            # The common case, kept lean: one ack each, counters bumped once per batch.
            n = 0
            try:
                for d in deliveries:
                    await d.msg.ack()
                    n += 1
            except Exception as exc:  # ack lost (e.g. reconnecting): JetStream redelivers, sinks upsert
                self._log.warning(
                    "consumer %s: could not ack %d events: %s", self.spec.durable, len(deliveries) - n, exc
                )
            self.stats.acked += n
            self._c_ack.inc(n)
            return
        for d in deliveries:
            await self._settle(d.msg, d.outcome, d.delay, d.reason, reason_label="handler")

    async def _process_one(self, d: Delivery) -> None:
        d.outcome = "ack"
        try:
            await self._handler([d])
        except TransientError as exc:
            await self._settle(
                d.msg, "nak", exc.delay if exc.delay is not None else self._backoff(d), exc.reason
            )
        except HaltError as exc:
            await self._halt(exc.reason)
        except Exception as exc:
            await self._term_poison(d, exc)
        else:
            await self._settle(d.msg, d.outcome, d.delay, d.reason, reason_label="handler")

    async def _halt(self, reason: str) -> None:
        """Stop receiving; what is buffered or in flight stays unacked (JetStream keeps it)."""
        self.halted = reason
        self._note_error(reason)
        self._log.error("consumer %s: stopped, nothing acknowledged: %s", self.spec.durable, reason)
        self._buf.clear()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _term_poison(self, d: Delivery, exc: Exception) -> None:
        self._log.error(
            "consumer %s: poison event on %s (stream seq %s) terminated: %s: %s",
            self.spec.durable, d.subject, _seq(d.msg), type(exc).__name__, exc,
        )  # fmt: skip
        await self._settle(d.msg, "term", 0.0, str(exc), reason_label="handler")

    def _backoff(self, d: Delivery) -> float:
        try:
            n = d.num_delivered
        except Exception:
            n = 1
        base = min(self.spec.max_nak_delay, self.spec.nak_delay * 2.0 ** max(0, n - 1))
        return float(base * random.uniform(0.75, 1.25))

    def _note_error(self, text: str) -> None:
        self.stats.last_error = text
        self.stats.errors.append(text)

    async def _settle(
        self, msg: Msg, outcome: Outcome, delay: float, reason: str, *, reason_label: str = ""
    ) -> None:
        try:
            if outcome == "ack":
                await msg.ack()
                self.stats.acked += 1
                self._c_ack.inc()
            elif outcome == "nak":
                await msg.nak(delay=delay if delay > 0 else None)
                self.stats.naked += 1
                self._c_nak.inc()
            else:
                await msg.term()
                self.stats.termed += 1
                self._m.events_termed.labels(self.spec.durable, reason_label or "handler").inc()
                if reason and reason_label != "decode":
                    self._log.error("consumer %s: terminated %s: %s", self.spec.durable, msg.subject, reason)
        except Exception as exc:  # ack lost (e.g. reconnecting): JetStream redelivers, sinks upsert
            self._log.warning("consumer %s: could not %s a message: %s", self.spec.durable, outcome, exc)

    async def _watch_lag(self) -> None:
        gauge = self._m.consumer_lag.labels(self.spec.durable)
        while True:
            try:
                info = await self._js.consumer_info(self.spec.stream, self.spec.durable)
                gauge.set((info.num_pending or 0) + (info.num_ack_pending or 0))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.debug("consumer %s: lag check failed: %s", self.spec.durable, exc)
            await asyncio.sleep(5.0)

    async def lag(self) -> int:
        """Events not yet acked by this consumer (pending + in flight)."""
        info = await self._js.consumer_info(self.spec.stream, self.spec.durable)
        return int((info.num_pending or 0) + (info.num_ack_pending or 0))


def _seq(msg: Msg) -> str:
    try:
        return str(msg.metadata.sequence.stream)
    except Exception:
        return "?"

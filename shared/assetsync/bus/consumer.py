"""Durable push consumers in a deliver group, batched handlers, ack after commit, nak/term/halt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from assetsync.bus.errors import HaltError, TransientError
from assetsync.events import AnyEvent, Codec
from assetsync.metrics import Metrics
from assetsync.retry import Backoff

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
    # A new durable starts with the messages stored since this time (a bounded replay, e.g. the
    # market service rebuilding a week of candles); overrides deliver_new. An existing durable must
    # be given the time it was created with (JetStream refuses to change it).
    start_time: datetime | None = None


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
        policy = api.DeliverPolicy.NEW if self.spec.deliver_new else api.DeliverPolicy.ALL
        return api.ConsumerConfig(
            durable_name=self.spec.durable,
            description=self.spec.description or None,
            deliver_subject=self.deliver_subject,
            deliver_group=self.spec.durable,
            deliver_policy=api.DeliverPolicy.BY_START_TIME if self.spec.start_time else policy,
            opt_start_time=self.spec.start_time,
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
        return Backoff(self.spec.nak_delay, self.spec.max_nak_delay, jitter=(0.75, 1.25)).delay(n)

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

"""market wiring: a durable consumer of the watch-list polls, klines and prices → the 12 market codes as FeedRecords."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import nats.js.errors
from assetsync import bus
from assetsync.config import Settings
from assetsync.endpoints import SEED_BY_CODE
from assetsync.events import FeedRecord, KlineBatch, MarketTicks
from assetsync.files import atomic_write
from assetsync.runtime import Runtime
from assetsync.service import Disabled, Service

from assetsync_market import records as r
from assetsync_market.feeds import Feeds, Out
from assetsync_market.state import MarketState, Saved

log = logging.getLogger("assetsync.market")

NAME = "market"
REPLAY = timedelta(days=8)  # what a new durable reads back: the 7-day windows plus a day
REFILL_MS = 60_000  # an incomplete record is retried at most this often within its slot
ROUND_SECONDS = 10.0  # a publish round at least this often (staleness shows without new polls)


def build(rt: Runtime) -> Service | Disabled:
    """The service, or Disabled when `market.enabled` is false."""
    if not rt.settings.market_on():
        return Disabled("market.enabled is false")
    if not rt.scheduling:
        # A one-shot `task`/`run-once` stack: its durable would take MARKET deliveries from the real one.
        return Disabled("the market service runs only in a long-running stack (not in one-shot runs)")
    return MarketService(rt)


def state_path(settings: Settings) -> Path:
    return settings.data_dir / "market" / "state.json"


class MarketService:
    """Folds MARKET events into the state, acks, and publishes each code's records when they change."""

    name = NAME

    def __init__(
        self,
        rt: Runtime,
        *,
        clock: Callable[[], float] = time.time,
        linger: float = 0.2,
        round_seconds: float = ROUND_SECONDS,
    ) -> None:
        self.rt = rt
        self.clock = clock
        self.linger = linger
        self.round_seconds = round_seconds
        m = rt.settings.config.market
        self.state = MarketState(
            quote=m.quote,
            timezone=rt.settings.timezone,
            poll_ms=int(m.interval_seconds * 1000),
            watchlist=m.watchlist,
        )
        self.feeds = Feeds(self.state)
        self.path = state_path(rt.settings)
        self._enc = msgspec.json.Encoder()
        self._dec = msgspec.json.Decoder(Saved)
        self.consumer: bus.Consumer | None = None
        self.caught_up = False
        self.last_error = ""
        self._wake = asyncio.Event()
        self._slot: dict[str, int] = {}  # change group -> the slot it last published in
        self._content: dict[str, bytes] = {}  # change group -> what it last published
        # Change groups whose last record had coins without enough data, and when it went out: they may
        # publish again within their slot (at most once a minute), so an hourly code does not say
        # "insufficient data" for an hour after the backfill it was waiting for has arrived.
        self._incomplete: dict[str, int] = {}
        self._pt002_since = 0
        self._rebuilding = False
        self._writing = asyncio.Lock()  # the consumer and the publish loop both save: one at a time
        met = rt.metrics
        self.m_records = met.counter(
            "assetsync_market_records_total", "Market feed records published", ("code",)
        )
        self.m_insufficient = met.counter(
            "assetsync_market_insufficient_total", "Coins published as insufficient_data", ("code",)
        )
        self.m_errors = met.counter(
            "assetsync_market_consume_errors_total", "Market events that could not be used", ("kind",)
        )

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self, stack: AsyncExitStack) -> None:
        had_state = await asyncio.to_thread(self._load)
        # Rebuilding from the stream (no state file): nothing is written until caught up, so a crash
        # mid-way leaves no file and the next start rebuilds again (rather than 1 MB per batch).
        self._rebuilding = not had_state
        topo = self.rt.topo
        durable = self.rt.durable("market")
        spec = bus.ConsumerSpec(
            durable=durable,
            stream=topo.market,
            subjects=(topo.ticks(), topo.kline(), topo.price()),
            batch_size=500,
            linger=self.linger,
            ack_wait=60.0,
            nak_delay=2.0,
            description="market: watch-list polls, klines and prices for the market analytics codes",
            start_time=await self._start_time(topo.market, durable, had_state),
        )
        self.consumer = self.rt.consumer(spec, self.handle)
        await self.consumer.start()
        stack.push_async_callback(self.consumer.stop)
        task = asyncio.create_task(self._loop(), name="market-publish")
        stack.push_async_callback(_cancel, task)

    async def _start_time(self, stream: str, durable: str, had_state: bool) -> datetime:
        """Where the durable starts: its own start time when it exists and the state file is there;
        otherwise (first start, or the state lost) a fresh durable replaying the last REPLAY."""
        try:
            info = await self.rt.js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None:
            started: datetime | None = info.config.opt_start_time
            if had_state and started is not None:
                return started
            log.info(
                "market: no state file at %s: rebuilding from the last %s of %s", self.path, REPLAY, stream
            )
            await self.rt.js.delete_consumer(stream, durable)
        return datetime.now(UTC) - REPLAY

    async def reload(self, settings: Settings) -> None:
        """A new watch list applies at once (quote, interval and timezone need a restart)."""
        self.state.configured = [a.upper() for a in settings.config.market.watchlist]
        self._wake.set()

    def health(self) -> tuple[bool, str]:
        if self.last_error:
            return False, self.last_error
        return True, "ok" if self.caught_up else "catching up with the MARKET stream"

    # --- state file -----------------------------------------------------------------------------
    def _load(self) -> bool:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            self.state.restore(self._dec.decode(raw))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("market: state file %s unreadable (%s): rebuilding from the stream", self.path, exc)
            return False
        return True

    # --- consuming ------------------------------------------------------------------------------
    async def handle(self, batch: Sequence[bus.Delivery]) -> None:
        """Fold the batch into the state; the state file is written before the batch is acked."""
        slow = False
        woke = False
        rejected = self.state.rejected
        for d in batch:
            try:
                slow |= self.state.apply(d.event, _stored_at(d))
            except Exception as exc:  # one bad event must not hold the others
                self.m_errors.labels("event").inc()
                log.error("market: cannot use %s: %s: %s", d.subject, type(exc).__name__, exc)
                d.term(f"{type(exc).__name__}: {exc}")
                continue
            woke |= isinstance(d.event, (MarketTicks, KlineBatch))
        if self.state.rejected > rejected:
            self.m_errors.labels("candle").inc(self.state.rejected - rejected)
            log.warning("market: %d impossible candles ignored", self.state.rejected - rejected)
        if slow and not self._rebuilding:
            await self._persist()
        if woke:
            self._wake.set()

    async def _persist(self) -> None:
        try:
            async with self._writing:
                # Encoded here, on the loop (a few ms): the state only changes on this thread.
                data = self._enc.encode(self.state.saved())
                await asyncio.to_thread(atomic_write, self.path, data)
        except OSError as exc:
            self.m_errors.labels("state_file").inc()
            self.last_error = f"cannot write {self.path}: {exc}"
            raise bus.TransientError(self.last_error) from exc
        if self.last_error.startswith("cannot write"):
            self.last_error = ""

    # --- publishing -------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.round_seconds)
            self._wake.clear()
            try:
                if not self.caught_up:
                    if self.consumer is None or await self.consumer.lag() > 0:
                        continue
                    self.caught_up = True
                    if self._rebuilding:
                        await self._persist()
                        self._rebuilding = False
                    # Republish the polls of the bus's duplicate window: those already out are dropped.
                    self._pt002_since = int(self.clock() * 1000) - 50 * 60_000
                await self.publish_round()
            except (bus.BusError, nats.errors.Error) as exc:
                self.m_errors.labels("publish").inc()
                self.last_error = f"publishing market records: {exc}"
                log.warning("market: %s (next round retries)", self.last_error)
            except bus.TransientError as exc:  # the state file: counted and named by _persist
                log.warning("market: %s (next round retries)", exc.reason)

    async def publish_round(self, now_ms: int | None = None) -> int:
        """Publish what changed in every code whose slot has not published yet; the number published."""
        now = now_ms if now_ms is not None else int(self.clock() * 1000)
        outs: list[Out] = list(self.feeds.pt002(self._pt002_since))
        for code, builder in self.feeds.builders().items():
            interval = SEED_BY_CODE[code].interval_seconds
            slot = now // int(interval * 1000)
            if self._slot.get(code) == slot and not self._may_refill(code, now):
                continue  # a code-wide record already went out in this slot
            got = builder(now, interval)
            for o in got if isinstance(got, list) else [got] if got is not None else []:
                if self._slot.get(o.group) != slot or self._may_refill(o.group, now):
                    outs.append(o)
        if self.feeds.index_changed:
            await self._persist()
            self.feeds.index_changed = False
        sent: list[tuple[Out, bytes]] = []
        for o in outs:
            content = self._enc.encode(o.rec)
            if o.code != "PT002" and self._content.get(o.group) == content:
                continue
            key = o.key
            if o.group in self._incomplete and self._slot.get(o.group) == now // int(
                SEED_BY_CODE[o.code].interval_seconds * 1000
            ):
                # A second record in the slot: its own key (the same content keeps the same key).
                key = f"{o.key}:{hashlib.sha256(content).hexdigest()[:12]}"
            await self.rt.publisher.publish(
                FeedRecord(code=o.code, record_key=key, ts=o.ts, data=r.to_data(o.rec))
            )
            sent.append((o, content))
        if not sent:
            return 0
        await self.rt.publisher.flush()
        for o, content in sent:
            self.m_records.labels(o.code).inc()
            if o.code == "PT002":  # one record per poll, never repeated: nothing to remember but the time
                self._pt002_since = max(self._pt002_since, o.ts)
                continue
            interval = SEED_BY_CODE[o.code].interval_seconds
            self._slot[o.group] = now // int(interval * 1000)
            self._content[o.group] = content
            if o.insufficient:
                self.m_insufficient.labels(o.code).inc(o.insufficient)
                self._incomplete[o.group] = now
            else:
                self._incomplete.pop(o.group, None)
        if self.last_error.startswith("publishing"):
            self.last_error = ""
        return len(sent)

    def _may_refill(self, group: str, now: int) -> bool:
        """A group whose last record lacked data, a minute or more ago: it may publish again in its slot."""
        at = self._incomplete.get(group)
        return at is not None and now - at >= REFILL_MS


def _stored_at(d: bus.Delivery) -> int | None:
    """When the event reached the stream (ms), None if the message does not say."""
    try:
        return int(d.msg.metadata.timestamp.timestamp() * 1000)
    except Exception:
        return None


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

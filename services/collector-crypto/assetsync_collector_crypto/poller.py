"""The watch-list poller: one tickers call per slot -> MarketTicks, then the klines whose candles closed.

Public Binance data only (no API key needed). Per `market.interval_seconds` slot: at most one
`exchangeInfo` (once an hour, or after Binance called a symbol invalid), one
`ticker/24hr?symbols=[...]` for the whole list, then `klines` calls for coins whose 1h/1d candle
closed (1m only when a coin joins), spread over the first half of the slot. A failed poll publishes
nothing; it is logged once per change of state, counted, and retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

from assetsync.config import MarketConf, Settings
from assetsync.events import Event, KlineBatch
from assetsync.metrics import Metrics
from assetsync.retry import Backoff, Streak

from assetsync_collector_crypto.calls import BINANCE, CallFailed, RetryPolicy, call
from assetsync_collector_crypto.ccxt_lite import ccxt
from assetsync_collector_crypto.exchange import AssetsyncBinance, RateLimited, make_exchange
from assetsync_collector_crypto.state import StateFile
from assetsync_collector_crypto.watch import (
    KLINE_PLANS,
    closed_candles,
    due_since,
    held_assets,
    slot_ms,
    split_markets,
    ticks_from,
    watch_assets,
)

log = logging.getLogger("assetsync.collector_crypto.watch")

PublishMany = Callable[[Sequence[Event]], Awaitable[None]]
SOURCE = "binance"
MARKETS_MAX_AGE = 3600.0  # exchangeInfo is reloaded hourly to notice delistings (and on "Invalid symbol")
# One try per call: the poll loop's own backoff retries (a slot missed is better than a late one).
ONE_TRY = RetryPolicy(attempts=1)


class PollFailed(Exception):
    """A poll that published nothing: why, and how long Binance asked us to wait (429/418)."""

    def __init__(self, message: str, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class HeldAssets:
    """The held crypto assets from the account sync's state file, re-read only when it changed."""

    def __init__(self, state: StateFile | None) -> None:
        self.state = state
        self._mtime: float | None = None
        self._held: list[str] = []

    def __call__(self) -> list[str]:
        if self.state is None:
            return []
        try:
            mtime = self.state.path.stat().st_mtime
        except FileNotFoundError:
            return []
        if mtime != self._mtime:
            self._held = held_assets(self.state.load())
            self._mtime = mtime
        return self._held


class WatchPoller:
    """Polls the watch list's tickers every slot and its closed klines; publishes MarketTicks/KlineBatch."""

    def __init__(
        self,
        settings: Settings,
        exchange: AssetsyncBinance,
        publish: PublishMany,
        *,
        held: Callable[[], list[str]] = list,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.exchange = exchange
        self.publish = publish
        self.held = held
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.failures = self.metrics.counter(
            "assetsync_market_poll_failures_total",
            "Watch-list polls (ticks or klines) that published nothing, by kind of failure",
            ("source", "what", "kind"),
        )
        interval = settings.config.market.interval_seconds
        self.streak = Streak(backoff or Backoff(base=2.0, cap=interval, attempts=1_000_000))
        self.published_slot: int | None = None
        self.last_ok: float | None = None
        self.failing: str = ""  # the reason while polls fail ("" = working)
        self.kline_failing: dict[str, str] = {}  # "BTC/USDT 1h" -> reason
        self.cursors: dict[tuple[str, str], int] = {}  # (symbol, interval) -> last closed open published
        self.watched: list[str] = []
        self.missing: list[str] = []
        self._markets_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def conf(self) -> MarketConf:
        return self.settings.config.market

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, stack: AsyncExitStack) -> None:
        self._task = asyncio.create_task(self.run(), name="market-watch")
        stack.push_async_callback(self.stop)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.exchange.close()

    async def reconfigure(self, settings: Settings) -> None:
        """A reloaded config: new watch list / interval from the next slot; a new client for a new URL."""
        changed = settings.config.asset_sync.binance != self.settings.config.asset_sync.binance
        self.settings = settings
        if changed:
            old, self.exchange = self.exchange, make_exchange(settings)
            self._markets_at = None
            await old.close()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(await self.step())

    # --- one round ---------------------------------------------------------------------------
    async def step(self) -> float:
        """The current slot's ticks (unless published), then due klines; seconds until the next round."""
        interval = float(self.conf.interval_seconds)
        if not self.settings.market_on():
            return interval  # switched off by a reload: idle until switched on again
        slot = slot_ms(self.clock(), interval)
        if slot != self.published_slot:
            try:
                await self.poll(slot)
            except PollFailed as exc:
                delay = self.streak.fail()
                self._fail(str(exc), exc.kind)
                return max(delay, exc.retry_after or 0.0)
            self.streak.succeed()
            self._recover()
            self.published_slot = slot
            await self.klines(spread=interval / 2)
        return max(slot / 1000 + interval - self.clock(), 0.0) + 0.05

    async def poll(self, slot: int) -> None:
        """One tickers call for the whole watch list -> one MarketTicks (raises PollFailed)."""
        quote = self.conf.quote.upper()
        assets = watch_assets(self.conf, self.held())
        markets = await self._markets()
        symbols, missing = split_markets(assets, quote, markets)
        self._note_missing(assets, missing)
        tickers: dict[str, Any] = {}
        if symbols:
            wanted = list(symbols.values())
            tickers = await self._call("GET /api/v3/ticker/24hr", lambda: self.exchange.fetch_tickers(wanted))
        ticks = ticks_from(tickers, symbols, missing, source=SOURCE, quote=quote, ts=slot)
        try:
            await self.publish([ticks])
        except Exception as exc:  # the bus is down: nothing was published, try again
            raise PollFailed(f"could not publish market ticks: {exc}", "publish") from exc
        self.last_ok = self.clock()

    async def _markets(self) -> dict[str, Any]:
        now = self.clock()
        if self._markets_at is None or now - self._markets_at > MARKETS_MAX_AGE:
            markets = await self._call(
                "GET /api/v3/exchangeInfo", lambda: self.exchange.load_markets(reload=True)
            )
            self._markets_at = now
            return dict(markets)
        return dict(self.exchange.markets or {})

    async def _call(self, endpoint: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        self.metrics.api_calls.labels("binance", endpoint).inc()
        try:
            return await call(self.exchange, endpoint, fn, ONE_TRY, BINANCE)
        except CallFailed as exc:
            cause = exc.__cause__ or exc
            kind = type(cause).__name__
            self.metrics.api_errors.labels("binance", endpoint, kind).inc()
            if isinstance(cause, ccxt.BadRequest):
                self._markets_at = None  # "Invalid symbol": a market went away, look again next try
            retry_after = cause.retry_after if isinstance(cause, RateLimited) else None
            raise PollFailed(str(exc), kind, retry_after) from exc

    # --- klines ------------------------------------------------------------------------------
    async def klines(self, spread: float) -> int:
        """Fetch and publish the closed candles due for every watched coin; returns calls made."""
        quote = self.conf.quote.upper()
        symbols = [f"{a}/{quote}" for a in self.watched if a not in self.missing]
        keep = set(symbols)
        # A coin that left the watch list is backfilled again should it come back.
        self.cursors = {k: v for k, v in self.cursors.items() if k[0] in keep}
        now = int(self.clock() * 1000)
        jobs = [
            (symbol, plan, due)
            for symbol in symbols
            for plan in KLINE_PLANS
            if (due := due_since(plan, self.cursors.get((symbol, plan.interval)), now)) is not None
        ]
        if not jobs:
            return 0
        # Spread the calls over half a slot (a first backfill is 3 calls a coin): no burst at the top
        # of every hour, and the next slot's ticker call is not queued behind them.
        gap = min(0.25, spread / len(jobs))
        batches: list[Event] = []
        failed: dict[str, str] = {}
        for i, (symbol, plan, (since, count)) in enumerate(jobs):
            if i:
                await asyncio.sleep(gap)
            try:
                rows = await self._call(
                    "GET /api/v3/klines",
                    partial(self.exchange.fetch_ohlcv, symbol, plan.interval, since=since, limit=count),
                )
            except PollFailed as exc:
                failed[f"{symbol} {plan.interval}"] = str(exc)
                self.failures.labels(SOURCE, "klines", exc.kind).inc()
                if exc.retry_after:
                    break  # rate-limited: the rest waits for the next round
                continue
            candles = closed_candles(rows, plan, since, now)
            if candles:
                batches.append(
                    KlineBatch(source=SOURCE, symbol=symbol, interval=plan.interval, candles=candles)
                )
        if batches:
            try:
                await self.publish(batches)
            except Exception as exc:
                log.warning("market klines: could not publish %d batches: %s", len(batches), exc)
                return len(jobs)
            for b in batches:
                assert isinstance(b, KlineBatch)
                self.cursors[(b.symbol, b.interval)] = b.candles[-1].open_time
        self._note_klines(failed)
        return len(jobs)

    # --- state changes, logged once each ---------------------------------------------------------
    def _fail(self, reason: str, kind: str) -> None:
        self.failures.labels(SOURCE, "ticks", kind).inc()
        if kind != self._kind_of(self.failing):
            log.warning("market ticks: poll failed, publishing nothing until it recovers: %s", reason)
        self.failing = f"{kind}: {reason}"

    @staticmethod
    def _kind_of(failing: str) -> str:
        return failing.split(":", 1)[0] if failing else ""

    def _recover(self) -> None:
        if self.failing:
            log.info("market ticks: polling works again (was %s)", self.failing)
            self.failing = ""

    def _note_missing(self, assets: list[str], missing: list[str]) -> None:
        if assets != self.watched:
            log.info("market watch list: %d coins (%s)", len(assets), ", ".join(assets))
        if missing != self.missing and missing:
            log.warning(
                "market watch list: no active %s market for %s (delisted or halted): left out of the "
                "ticks as missing",
                self.conf.quote.upper(),
                ", ".join(missing),
            )
        self.watched, self.missing = list(assets), list(missing)

    def _note_klines(self, failed: dict[str, str]) -> None:
        if set(failed) != set(self.kline_failing):
            if failed:
                first = next(iter(failed.items()))
                log.warning("market klines failed for %d (%s: %s); retried next round", len(failed), *first)
            else:
                log.info("market klines: fetching works again")
        self.kline_failing = failed

    def health(self) -> tuple[bool, str]:
        """Always ok (Binance being down is not this process's ill health, as for a failed sync); says how polls go."""
        coins = f"{len(self.watched)} coins"
        if self.failing:
            return True, f"market ticks failing ({coins}): {self.failing}"
        if self.last_ok is None:
            return True, "market ticks: first poll pending"
        missing = f", {len(self.missing)} without a market" if self.missing else ""
        return True, f"market ticks ok ({coins}{missing})"

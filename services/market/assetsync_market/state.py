"""What the market service knows: per coin, recent prices (a rolling window) and candles by interval.

Updated from MarketTicks, KlineBatch and PriceTick events in O(size of the event); the slow part
(1 h / 1 d candles, daily baselines, the index base) is what `saved()` returns for the state file,
the fast part (polls, 1 m candles) rebuilds itself within 15 minutes of a restart.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
from assetsync.events import Candle, KlineBatch, MarketTicks, PriceTick

M = 60_000
H = 3_600_000
D = 86_400_000
STEP_MS = {"1m": M, "1h": H, "1d": D}
# Candles kept per interval: 1 h covers the 7-day windows plus a day, 1 d the 7-day average with margin.
KEEP = {"1m": 30, "1h": 8 * 24, "1d": 40}
POINTS_MS = 20 * M  # price points kept per coin: enough for the 15-minute speed
POLLS_MS = H  # polls kept for PT002 (the bus's duplicate window: republishing them after a restart is free)


class Series:
    """The candles of one coin and interval, by open time (upserted: a re-sent candle replaces the old)."""

    def __init__(self, step: int, keep: int) -> None:
        self.step = step
        self.keep = keep
        self.by_open: dict[int, Candle] = {}
        self.opens: list[int] = []
        self.version = 0  # bumped on every change: what memoized results key on

    def put(self, c: Candle) -> bool:
        """Insert or replace one candle; True when something changed."""
        if c.open_time % self.step:
            return False  # not on this interval's grid (e.g. a 1 d candle of another timezone)
        old = self.by_open.get(c.open_time)
        if old == c:
            return False
        if old is None:
            if self.opens and c.open_time < self.opens[0] and len(self.opens) >= self.keep:
                return False  # older than everything kept
            bisect.insort(self.opens, c.open_time)
        self.by_open[c.open_time] = c
        while len(self.opens) > self.keep:
            del self.by_open[self.opens.pop(0)]
        self.version += 1
        return True

    def get(self, open_time: int) -> Candle | None:
        return self.by_open.get(open_time)

    def last_closed(self, now: int) -> Candle | None:
        """The newest candle whose interval has ended by `now`."""
        i = bisect.bisect_right(self.opens, now - self.step)
        return self.by_open[self.opens[i - 1]] if i else None

    def span(self, first: int, last: int) -> tuple[list[Candle], int | None]:
        """The candles opening at every slot from `first` to `last`, and the first missing slot (None: none)."""
        out: list[Candle] = []
        t = first
        while t <= last:
            c = self.by_open.get(t)
            if c is None:
                return out, t
            out.append(c)
            t += self.step
        return out, None

    def trailing(self, last: int) -> list[Candle]:
        """The contiguous run of candles ending at `last` (stops at the first gap)."""
        i = bisect.bisect_left(self.opens, last)
        if i >= len(self.opens) or self.opens[i] != last:
            return []
        j = i
        while j > 0 and self.opens[j - 1] == self.opens[j] - self.step:
            j -= 1
        return [self.by_open[t] for t in self.opens[j : i + 1]]


class Baseline(msgspec.Struct, frozen=True):
    """A coin's price at 00:00 local on `day`, and where it came from (1m / 1h candle open, or tick)."""

    price: float
    source: str
    ts: int


_RANK = {"1m": 0, "1h": 1, "tick": 2}  # a candle opening at midnight beats the first poll after it


@dataclass
class Coin:
    """One coin: its recent price points, last poll, candles and daily baselines."""

    name: str
    points: list[tuple[int, float]] = field(default_factory=list)  # (ms, price), sorted, last POINTS_MS
    tick_ts: int = 0  # ms of the last poll that priced it
    tick_price: float = 0.0
    series: dict[str, Series] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)

    def candles(self, interval: str) -> Series:
        s = self.series.get(interval)
        if s is None:
            s = self.series[interval] = Series(STEP_MS[interval], KEEP[interval])
        return s

    def add_point(self, ts: int, price: float) -> None:
        i = bisect.bisect_left(self.points, (ts, float("-inf")))
        if i < len(self.points) and self.points[i][0] == ts:
            self.points[i] = (ts, price)
        else:
            self.points.insert(i, (ts, price))
        cut = self.points[-1][0] - POINTS_MS
        while self.points and self.points[0][0] < cut:
            self.points.pop(0)

    def price_near(self, target: int, tolerance: int) -> tuple[int, float] | None:
        """The price point closest to `target`, if one is within `tolerance` ms of it."""
        i = bisect.bisect_left(self.points, (target, float("-inf")))
        best: tuple[int, float] | None = None
        for j in (i - 1, i):
            if 0 <= j < len(self.points):
                p = self.points[j]
                if abs(p[0] - target) <= tolerance and (
                    best is None or abs(p[0] - target) < abs(best[0] - target)
                ):
                    best = p
        return best

    def set_baseline(self, day: str, b: Baseline) -> bool:
        old = self.baselines.get(day)
        if old is not None and (_RANK[old.source] < _RANK[b.source] or old == b):
            return False
        if old is not None and old.source == b.source == "tick" and old.ts <= b.ts:
            return False  # the first poll after midnight stays the baseline (even if it came in late)
        self.baselines[day] = b
        for d in sorted(self.baselines)[:-3]:
            del self.baselines[d]
        return True


class Poll(msgspec.Struct, frozen=True):
    """One watch-list poll, as PT002 serves it."""

    ts: int
    source: str
    quote: str
    prices: dict[str, float]
    missing: list[str]
    unpriced: list[str] = msgspec.field(default_factory=list)  # in the poll with a price ≤ 0 (no price)


class IndexBase(msgspec.Struct):
    """CI001's base: the day it started at 1000 and each constituent's base price (divisor-adjusted),
    plus the last value and prices it was computed at (what a coin leaving is adjusted against)."""

    day: str
    bases: dict[str, float]
    last_value: float | None = None
    last_prices: dict[str, float] = msgspec.field(default_factory=dict)


class Saved(msgspec.Struct):
    """The state file: the slow part of the state (everything else rebuilds within 15 minutes)."""

    version: int = 1
    candles: dict[str, dict[str, list[Candle]]] = msgspec.field(default_factory=dict)
    baselines: dict[str, dict[str, Baseline]] = msgspec.field(default_factory=dict)
    index: IndexBase | None = None


class MarketState:
    """Every watched coin's state, updated event by event."""

    def __init__(self, *, quote: str, timezone: str, poll_ms: int, watchlist: list[str]) -> None:
        self.quote = quote.upper()
        self.tz = ZoneInfo(timezone)
        self.timezone = timezone
        self.poll_ms = poll_ms
        self.configured = [a.upper() for a in watchlist]
        self.coins: dict[str, Coin] = {}
        self.last_poll: Poll | None = None
        self.polls: deque[Poll] = deque()
        self.index: IndexBase | None = None
        self.rejected = 0  # candles refused as impossible (a price ≤ 0, a high below the low …)

    # --- what is watched --------------------------------------------------------------------
    def watchlist(self) -> list[str]:
        """The configured watch list, else the coins of the last poll (priced or missing)."""
        if self.configured:
            return list(self.configured)
        p = self.last_poll
        return sorted({*p.prices, *p.missing, *p.unpriced}) if p is not None else []

    def coin(self, name: str) -> Coin:
        c = self.coins.get(name)
        if c is None:
            c = self.coins[name] = Coin(name)
        return c

    # --- local days ---------------------------------------------------------------------------
    def day_start(self, ms: int) -> tuple[str, int]:
        """The local day holding `ms` (YYYY-MM-DD) and the ms of its 00:00."""
        local = datetime.fromtimestamp(ms / 1000, self.tz)
        midnight = datetime(local.year, local.month, local.day, tzinfo=self.tz)
        return local.date().isoformat(), int(midnight.timestamp() * 1000)

    def next_day_start(self, ms: int) -> int:
        local = datetime.fromtimestamp(ms / 1000, self.tz).date() + timedelta(days=1)
        return int(datetime(local.year, local.month, local.day, tzinfo=self.tz).timestamp() * 1000)

    # --- updates --------------------------------------------------------------------------------
    def apply(self, e: object, at: int | None = None) -> bool:
        """Fold one event in (`at`: ms it reached the stream, None: long ago); True when the slow (saved) part changed."""
        if isinstance(e, MarketTicks):
            self.on_ticks(e)
            return False
        if isinstance(e, KlineBatch):
            return self.on_klines(e, at)
        if isinstance(e, PriceTick):
            self.on_price(e)
        return False

    def on_ticks(self, t: MarketTicks) -> None:
        if t.quote.upper() != self.quote or t.origin:
            return
        prices = {a.upper(): p for a, p in t.prices.items() if p > 0}  # a price ≤ 0 is no price
        missing = [a.upper() for a in t.missing]
        unpriced = sorted(a.upper() for a, p in t.prices.items() if not p > 0)
        poll = Poll(
            ts=t.ts, source=t.source, quote=self.quote, prices=prices, missing=missing, unpriced=unpriced
        )
        if self.last_poll is None or t.ts >= self.last_poll.ts:
            self.last_poll = poll
        if not self.polls or t.ts > self.polls[-1].ts:
            self.polls.append(poll)
        while self.polls and self.polls[0].ts < self.polls[-1].ts - POLLS_MS:
            self.polls.popleft()
        day, midnight = self.day_start(t.ts)
        for asset, price in prices.items():
            c = self.coin(asset)
            c.add_point(t.ts, price)
            if t.ts >= c.tick_ts:
                c.tick_ts, c.tick_price = t.ts, price
            if t.ts - midnight < 3 * self.poll_ms:
                c.set_baseline(day, Baseline(price=price, source="tick", ts=t.ts))

    def on_klines(self, k: KlineBatch, at: int | None = None) -> bool:
        """Candles of one market; one still forming when it was sent (`at` before its close) is not kept
        (its high, low and close are not final: the closed one follows), only its open as a baseline."""
        base, _, quote = k.symbol.partition("/")
        step = STEP_MS.get(k.interval)
        if step is None or quote.upper() != self.quote or k.origin:
            return False
        c = self.coin(base.upper())
        series = c.candles(k.interval)
        changed = slow = False
        for candle in k.candles:
            if not sane(candle):
                self.rejected += 1
                continue
            if at is None or candle.open_time + step <= at:
                changed |= series.put(candle)
                if k.interval == "1m":  # a 1 m close is the price at its end: seeds the speed windows
                    c.add_point(candle.open_time + M, candle.close)
            if k.interval in ("1m", "1h"):
                day, midnight = self.day_start(candle.open_time)
                if candle.open_time == midnight:
                    slow |= c.set_baseline(day, Baseline(candle.open, k.interval, candle.open_time))
        # 1 m candles are not saved (they rebuild within minutes); baselines and 1 h / 1 d candles are.
        return slow or (changed and k.interval != "1m")

    def on_price(self, p: PriceTick) -> None:
        """Held coins' hourly prices: extra points in a watched coin's window (never its "last poll")."""
        if p.asset_type != "crypto" or p.currency.upper() != self.quote or p.origin or not p.price > 0:
            return
        c = self.coins.get(p.asset.upper())
        if c is not None:
            c.add_point(p.ts, p.price)

    # --- the state file ---------------------------------------------------------------------------
    def saved(self) -> Saved:
        return Saved(
            candles={
                n: {i: [s.by_open[t] for t in s.opens] for i, s in c.series.items() if i != "1m"}
                for n, c in self.coins.items()
            },
            baselines={n: dict(c.baselines) for n, c in self.coins.items() if c.baselines},
            index=self.index,
        )

    def restore(self, s: Saved) -> None:
        for name, by_interval in s.candles.items():
            c = self.coin(name)
            for interval, candles in by_interval.items():
                if interval in STEP_MS:
                    for candle in candles:
                        c.candles(interval).put(candle)
        for name, days in s.baselines.items():
            self.coin(name).baselines.update(days)
        self.index = s.index


def sane(c: Candle) -> bool:
    """A candle that can exist: every price positive, the high and low bracketing open and close."""
    return 0 < c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high


def iso(ms: int) -> str:
    """A UTC time for messages, e.g. 2026-12-06T05:00Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")

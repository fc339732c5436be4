"""Price moves within a window and prices gone stale, from the MARKET price ticks (pure: no I/O)."""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from assetsync.config import PriceMoveRule
from assetsync.events import PriceTick

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Move:
    """A price that moved by at least a rule's percent within its window (or the state under it)."""

    key: str
    asset: str
    source: str
    currency: str
    window_minutes: int
    threshold: float
    change_pct: float
    first_price: float
    first_ts: int
    last_price: float
    last_ts: int

    @property
    def triggered(self) -> bool:
        return abs(self.change_pct) >= self.threshold


@dataclass
class _Series:
    points: deque[tuple[int, float]] = field(default_factory=deque)
    currency: str = ""
    name: str = ""


@dataclass(frozen=True)
class Stale:
    """The assets of one source without a price for longer than the limit (empty: all fresh)."""

    key: str
    source: str
    assets: tuple[tuple[str, int], ...]  # (asset, last price ms or when it was first known held)
    hours: float


class PriceWatch:
    """Keeps each asset's recent prices (as long as the longest window) and the last price time per asset."""

    def __init__(self, rules: Sequence[PriceMoveRule], stale_hours: float) -> None:
        self.rules = list(rules)
        self.stale_ms = int(stale_hours * HOUR_MS)
        self.keep_ms = max((r.window_minutes for r in self.rules), default=0) * MINUTE_MS
        self._series: dict[tuple[str, str], _Series] = {}
        self.last_seen: dict[tuple[str, str], int] = {}  # (source, asset) -> last price ms
        self.held_since: dict[tuple[str, str], int] = {}  # (source, asset) -> first known held, ms

    def rules_for(self, asset: str) -> list[PriceMoveRule]:
        """Rules naming the asset win over wildcard rules with the same window."""
        exact = {r.window_minutes: r for r in self.rules if r.asset.upper() == asset.upper()}
        wild = [
            r
            for r in self.rules
            if r.asset.upper() != asset.upper()
            and fnmatch.fnmatchcase(asset.upper(), r.asset.upper())
            and r.window_minutes not in exact
        ]
        return [*exact.values(), *wild]

    def observe(self, t: PriceTick) -> list[Move]:
        """Record a tick; the state of every rule that applies to its asset (triggered or not)."""
        key = (t.source, t.asset)
        if t.ts > self.last_seen.get(key, 0):
            self.last_seen[key] = t.ts
        if not self.rules or t.price <= 0:
            return []
        s = self._series.setdefault(key, _Series())
        s.currency, s.name = t.currency, t.name
        if s.points and t.ts < s.points[-1][0]:
            return []  # late and out of order: the window has moved on
        if s.points and s.points[-1][0] == t.ts:
            s.points.pop()
        s.points.append((t.ts, t.price))
        while s.points and s.points[0][0] < t.ts - self.keep_ms:
            s.points.popleft()
        out = []
        for r in self.rules_for(t.asset):
            start = t.ts - r.window_minutes * MINUTE_MS
            first = next(((ts, p) for ts, p in s.points if ts >= start), None)
            if first is None or first[0] == t.ts:
                continue
            change = (t.price - first[1]) / first[1] * 100.0
            out.append(
                Move(
                    key=f"price_move:{t.source}:{t.asset}:{r.window_minutes}",
                    asset=t.asset,
                    source=t.source,
                    currency=t.currency,
                    window_minutes=r.window_minutes,
                    threshold=r.percent,
                    change_pct=round(change, 4),
                    first_price=first[1],
                    first_ts=first[0],
                    last_price=t.price,
                    last_ts=t.ts,
                )
            )
        return out

    def held(self, source: str, assets: Iterable[str], at: int) -> None:
        """The complete set of a source's assets (from a task result): forget sold ones, start clocks for new."""
        keep = set(assets)
        for key in [k for k in (*self.last_seen, *self.held_since) if k[0] == source and k[1] not in keep]:
            self.last_seen.pop(key, None)
            self.held_since.pop(key, None)
            self._series.pop(key, None)
        for a in keep:
            self.held_since.setdefault((source, a), at)

    def stale(self, now: int) -> list[Stale]:
        """Per source that has assets: the ones past the limit (an empty tuple means the source is fresh)."""
        if self.stale_ms <= 0:
            return []
        by_source: dict[str, list[tuple[str, int]]] = {}
        for key in {**self.held_since, **self.last_seen}:
            source, asset = key
            ts = self.last_seen.get(key) or self.held_since[key]
            lst = by_source.setdefault(source, [])
            if now - ts > self.stale_ms:
                lst.append((asset, ts))
        return [
            Stale(f"stale_price:{s}", s, tuple(sorted(lst)), self.stale_ms / HOUR_MS)
            for s, lst in sorted(by_source.items())
        ]

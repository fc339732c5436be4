"""Pure indicator arithmetic on prices and candles: percent changes, extremes, pivots, Parabolic SAR."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from assetsync.events import Candle

Direction = Literal["up", "down"]

SAR_STEP = 0.02
SAR_MAX = 0.2


def pct_change(now: float, ref: float) -> float:
    """Percent change from `ref` to `now` (callers never pass a non-positive reference)."""
    return (now - ref) / ref * 100.0


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass(frozen=True)
class Pivots:
    """Classic floor pivots of one candle: P = (H+L+C)/3, R1 = 2P−L, S1 = 2P−H, R2/S2 = P±(H−L), R3 = H+2(P−L), S3 = L−2(H−P)."""

    p: float
    r1: float
    r2: float
    r3: float
    s1: float
    s2: float
    s3: float


def floor_pivots(c: Candle) -> Pivots:
    """The floor pivot levels computed from one (closed) candle."""
    h, lo, cl = c.high, c.low, c.close
    p = (h + lo + cl) / 3.0
    return Pivots(
        p=p,
        r1=2 * p - lo,
        r2=p + (h - lo),
        r3=h + 2 * (p - lo),
        s1=2 * p - h,
        s2=p - (h - lo),
        s3=lo - 2 * (h - p),
    )


@dataclass(frozen=True)
class SarCycle:
    """Where the Parabolic SAR stands after the last candle, and the cycle (trend) it is in.

    `sar` is the SAR of the last candle (what TA-Lib's SAR outputs for it); `next_sar` the SAR the
    next candle starts with. `start` is the index of the candle the current cycle began on (its
    reversal), `start_sar` the SAR there; `from_data_start` says no reversal was seen, so the cycle
    began at or before the first candle given.
    """

    direction: Direction
    start: int
    start_sar: float
    bars: int
    af: float
    ep: float
    sar: float
    next_sar: float
    from_data_start: bool
    series: tuple[float, ...]  # the SAR of every candle from index 1 on (index 0 has none)


def parabolic_sar(candles: Sequence[Candle], step: float = SAR_STEP, maximum: float = SAR_MAX) -> SarCycle:
    """Wilder's Parabolic SAR, step for step as TA-Lib's `SAR` (same start rule, same clamps).

    The first trend is short when the second candle's minus-DM is positive (its low fell further
    than its high rose), else long; the SAR then follows Wilder: SAR += AF·(EP − SAR), AF grows by
    `step` at each new extreme up to `maximum`, the SAR never enters the two last candles' ranges,
    and a candle crossing it reverses the trend at the old extreme point. Needs at least 2 candles.
    """
    if len(candles) < 2:
        raise ValueError("the Parabolic SAR needs at least 2 candles")
    h0, l0, h1, l1 = candles[0].high, candles[0].low, candles[1].high, candles[1].low
    minus_dm = l0 - l1
    long = not (minus_dm > 0 and (h1 - h0) < minus_dm)
    af = min(step, maximum)
    if long:
        ep, sar = h1, l0
    else:
        ep, sar = l1, h0
    new_low, new_high = l1, h1
    out: list[float] = []
    start, start_sar, reversed_once = 1, sar, False
    for i in range(1, len(candles)):
        prev_low, prev_high = new_low, new_high
        new_low, new_high = candles[i].low, candles[i].high
        if long:
            if new_low <= sar:
                long = False
                sar = max(ep, prev_high, new_high)
                out.append(sar)
                start, start_sar, reversed_once = i, sar, True
                af, ep = step, new_low
                sar = max(sar + af * (ep - sar), prev_high, new_high)
            else:
                out.append(sar)
                if new_high > ep:
                    ep, af = new_high, min(af + step, maximum)
                sar = min(sar + af * (ep - sar), prev_low, new_low)
        else:
            if new_high >= sar:
                long = True
                sar = min(ep, prev_low, new_low)
                out.append(sar)
                start, start_sar, reversed_once = i, sar, True
                af, ep = step, new_high
                sar = min(sar + af * (ep - sar), prev_low, new_low)
            else:
                out.append(sar)
                if new_low < ep:
                    ep, af = new_low, min(af + step, maximum)
                sar = max(sar + af * (ep - sar), prev_high, new_high)
        if i == 1 and not reversed_once:
            start_sar = out[0]
    return SarCycle(
        direction="up" if long else "down",
        start=start,
        start_sar=start_sar,
        bars=len(candles) - start,
        af=af,
        ep=ep,
        sar=out[-1],
        next_sar=sar,
        from_data_start=not reversed_once,
        series=tuple(out),
    )


@dataclass(frozen=True)
class Slope:
    """The SAR's slope over the current cycle: price units per bar, and percent of the start SAR per hour."""

    per_bar: float
    pct_per_hour: float


def sar_slope(cycle: SarCycle, bar_hours: float) -> Slope | None:
    """The cycle's average slope from its first to its last SAR; None while the cycle has one bar."""
    if cycle.bars < 2:
        return None
    per_bar = (cycle.sar - cycle.start_sar) / (cycle.bars - 1)
    return Slope(per_bar=per_bar, pct_per_hour=per_bar / cycle.start_sar * 100.0 / bar_hours)


@dataclass(frozen=True)
class Range:
    """Highest high and lowest low over a window."""

    high: float
    low: float


def extremes(candles: Sequence[Candle], extra: Sequence[float] = ()) -> Range:
    """The high and low over candles plus extra prices (e.g. the current one)."""
    highs = [c.high for c in candles] + list(extra)
    lows = [c.low for c in candles] + list(extra)
    return Range(high=max(highs), low=min(lows))

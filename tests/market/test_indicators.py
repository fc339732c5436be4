"""The indicator arithmetic against independent computations: TA-Lib's SAR, pandas, and hand-checked fixtures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib
from assetsync.events import Candle
from assetsync_market import indicators as ind

from tests.market.support import walk

T0 = 1_764_547_200_000  # 2025-12-01T00:00Z


def talib_sar(candles: list[Candle], step: float = 0.02, maximum: float = 0.2) -> np.ndarray:
    high = np.array([c.high for c in candles], dtype=np.float64)
    low = np.array([c.low for c in candles], dtype=np.float64)
    return talib.SAR(high, low, acceleration=step, maximum=maximum)


@pytest.mark.parametrize("seed", [1, 2, 3, 7, 11, 42])
def test_sar_series_matches_talib(seed: int) -> None:
    candles = walk(200, start=T0, seed=seed)
    ours = ind.parabolic_sar(candles)
    theirs = talib_sar(candles)
    assert math.isnan(theirs[0])
    assert np.allclose(np.array(ours.series), theirs[1:], rtol=1e-12, atol=0)
    assert ours.sar == pytest.approx(theirs[-1], rel=1e-12)


@pytest.mark.parametrize("seed", [1, 5, 9, 13])
def test_sar_cycle_is_where_talib_last_flipped(seed: int) -> None:
    candles = walk(150, start=T0, seed=seed)
    cyc = ind.parabolic_sar(candles)
    sar = talib_sar(candles)
    # Independently: a long trend's SAR sits below the candle's low, a short one's above its high.
    side = ["up" if sar[i] < candles[i].low else "down" for i in range(1, len(candles))]
    flips = [i + 1 for i in range(1, len(side)) if side[i] != side[i - 1]]
    assert cyc.direction == side[-1]
    assert flips and cyc.start == flips[-1] and not cyc.from_data_start
    assert cyc.bars == len(candles) - flips[-1]
    assert cyc.start_sar == pytest.approx(sar[flips[-1]])
    # The extreme point: the highest high (lowest low) of the cycle so far.
    cycle = candles[cyc.start :]
    ep = max(c.high for c in cycle) if cyc.direction == "up" else min(c.low for c in cycle)
    assert cyc.ep == pytest.approx(ep)


def test_next_sar_is_talibs_sar_of_a_quiet_next_candle() -> None:
    candles = walk(120, start=T0, seed=4)
    cyc = ind.parabolic_sar(candles)
    # A candle at the extreme point neither crosses the SAR nor makes a new extreme.
    quiet = Candle(candles[-1].open_time + 3_600_000, cyc.ep, cyc.ep, cyc.ep, cyc.ep, 1.0)
    assert talib_sar([*candles, quiet])[-1] == pytest.approx(cyc.next_sar, rel=1e-12)


def test_sar_hand_checked_uptrend() -> None:
    # Highs 2,3,4,5 / lows 1,2,3,4: the low never falls (minus-DM 0) → long; SAR starts at low[0] = 1,
    # EP = high[1] = 3, AF 0.02.
    c = [Candle(T0 + i, 0, h, lo, h, 1) for i, (h, lo) in enumerate([(2, 1), (3, 2), (4, 3), (5, 4)])]
    cyc = ind.parabolic_sar(c)
    # bar1: SAR 1; next = 1 + .02·(3−1) = 1.04 (below lows 2, 2).
    # bar2: SAR 1.04; high 4 > EP → EP 4, AF .04; next = 1.04 + .04·(4−1.04) = 1.1584.
    # bar3: SAR 1.1584; high 5 → EP 5, AF .06; next = 1.1584 + .06·(5−1.1584) = 1.388896.
    assert cyc.series == pytest.approx((1.0, 1.04, 1.1584))
    assert cyc.direction == "up" and cyc.ep == 5
    assert cyc.af == pytest.approx(0.06) and cyc.next_sar == pytest.approx(1.388896)
    assert cyc.bars == 3 and cyc.from_data_start
    assert ind.parabolic_sar(c).series == pytest.approx(tuple(talib_sar(c)[1:]))


def test_sar_needs_two_candles() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ind.parabolic_sar(walk(1, start=T0))


def test_sar_af_is_capped() -> None:
    # A straight rally: every candle a new high, AF climbs by .02 to .2 and stays there.
    c = [Candle(T0 + i, 0, 10 + i, 9 + i, 10 + i, 1) for i in range(30)]
    assert ind.parabolic_sar(c).af == pytest.approx(0.2)


def test_slope_hand_checked() -> None:
    c = [Candle(T0 + i, 0, h, lo, h, 1) for i, (h, lo) in enumerate([(2, 1), (3, 2), (4, 3), (5, 4)])]
    cyc = ind.parabolic_sar(c)
    s = ind.sar_slope(cyc, bar_hours=1.0)
    assert s is not None
    # From 1.0 (bar 1) to 1.1584 (bar 3): 0.1584 over 2 bars = 0.0792 per bar = 7.92 % of 1.0 per hour.
    assert s.per_bar == pytest.approx(0.0792) and s.pct_per_hour == pytest.approx(7.92)
    per_4h = ind.sar_slope(cyc, bar_hours=4.0)
    assert per_4h is not None and per_4h.pct_per_hour == pytest.approx(1.98)


def test_floor_pivots_hand_checked() -> None:
    pv = ind.floor_pivots(Candle(T0, 100, 110, 90, 105, 1))
    # P = (110 + 90 + 105) / 3 = 101.6667; R1 = 2P − 90 = 113.3333; S1 = 2P − 110 = 93.3333;
    # R2 = P + 20 = 121.6667; S2 = P − 20 = 81.6667; R3 = 110 + 2(P − 90) = 133.3333; S3 = 90 − 2(110 − P) = 73.3333.
    assert pv.p == pytest.approx(101.666667)
    assert [pv.r1, pv.r2, pv.r3] == pytest.approx([113.333333, 121.666667, 133.333333])
    assert [pv.s1, pv.s2, pv.s3] == pytest.approx([93.333333, 81.666667, 73.333333])


def test_extremes_match_pandas_rolling() -> None:
    candles = walk(200, start=T0, seed=8)
    df = pd.DataFrame([(c.high, c.low) for c in candles], columns=["high", "low"])
    got = ind.extremes(candles[-24:])
    assert got.high == df["high"].rolling(24).max().iloc[-1]
    assert got.low == df["low"].rolling(24).min().iloc[-1]
    # The current price counts too: above every high, it is the high.
    assert ind.extremes(candles[-24:], (1e9,)).high == 1e9


def test_pct_change_mean_median() -> None:
    assert ind.pct_change(110, 100) == pytest.approx(10.0)
    assert ind.pct_change(90, 100) == pytest.approx(-10.0)
    assert ind.mean([1, 2, 6]) == 3.0
    assert ind.median([5, 1, 3, 100]) == 4.0

"""The data of each market code's FeedRecord, as typed Structs (`msgspec.to_builtins` gives the record)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class _Rec(msgspec.Struct, kw_only=True):
    pass


class Insufficient(_Rec, kw_only=True):
    """A coin the indicator cannot be computed for now, and why (never a made-up value)."""

    coin: str
    status: Literal["insufficient_data"] = "insufficient_data"
    reason: str


# --- PT001 / PT002 ------------------------------------------------------------------------------
class CoinPrice(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    price: float
    ts: int  # ms of the poll that saw it
    change_24h_pct: float | None  # vs the open of the 1 h candle holding now−24 h; None: no such candle
    ref_24h_ts: int | None


class LatestPrices(_Rec, kw_only=True):
    """PT001: the latest price of every watched coin."""

    ts: int
    quote: str
    source: str
    coins: list[CoinPrice | Insufficient]


class PricePoll(_Rec, kw_only=True):
    """PT002: one poll of the watch list (every coin's price)."""

    ts: int
    quote: str
    source: str
    prices: dict[str, float]
    missing: list[str]


# --- PS001 ----------------------------------------------------------------------------------------
class CoinSpeed(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    price: float
    ts: int
    change_1m_pct: float | None
    change_5m_pct: float | None
    change_15m_pct: float | None
    unavailable: dict[str, str]  # window ("5m") -> why it is None


class PriceSpeed(_Rec, kw_only=True):
    """PS001: % change over 1, 5 and 15 minutes per coin."""

    ts: int
    coins: list[CoinSpeed | Insufficient]


# --- PB001 / CC001 / CC002 -----------------------------------------------------------------------
class CoinBaselineCompare(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    price: float
    day_open: float | None
    vs_day_open_pct: float | None
    avg_7d: float | None
    avg_7d_from: str | None  # "1h" (168 closes) or "1d" (7 closes)
    vs_avg_7d_pct: float | None
    unavailable: dict[str, str]


class BaselineComparison(_Rec, kw_only=True):
    """PB001: the current price against the day open (00:00 local) and the 7-day average."""

    ts: int
    timezone: str
    day: str
    coins: list[CoinBaselineCompare | Insufficient]


class CoinChange(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    price: float
    baseline: float
    change: float
    change_pct: float


class ChangeSinceBaseline(_Rec, kw_only=True):
    """CC001: change of every coin since its daily baseline."""

    ts: int
    timezone: str
    day: str
    coins: list[CoinChange | Insufficient]


class CoinBaseline(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    price: float
    source: str  # 1m / 1h (the candle opening at 00:00) or tick (the first poll after it)
    ts: int


class Baselines(_Rec, kw_only=True):
    """CC002: the daily baselines (the price at 00:00 in `timezone`)."""

    day: str
    timezone: str
    baseline_ts: int
    coins: list[CoinBaseline | Insufficient]


# --- EX001 ----------------------------------------------------------------------------------------
class CoinExtremes(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    price: float
    high_24h: float | None
    low_24h: float | None
    from_high_24h_pct: float | None
    from_low_24h_pct: float | None
    high_7d: float | None
    low_7d: float | None
    from_high_7d_pct: float | None
    from_low_7d_pct: float | None
    unavailable: dict[str, str]


class Extremes(_Rec, kw_only=True):
    """EX001: 24 h and 7 d highs and lows and the current price's distance from them."""

    ts: int
    coins: list[CoinExtremes | Insufficient]


# --- SAR001 / SAR002 / SAR003 ---------------------------------------------------------------------
class SarCurrentCycle(_Rec, kw_only=True):
    """SAR001: one coin's Parabolic SAR cycle on closed candles of `interval`."""

    coin: str
    status: Literal["ok"] = "ok"
    interval: str
    direction: Literal["up", "down"]
    cycle_start: int  # open time (ms) of the candle the cycle began on
    cycle_start_price: float  # that candle's close
    cycle_start_sar: float
    cycle_from_data_start: bool  # no reversal in the candles held: the cycle began at or before them
    bars: int
    acceleration_factor: float
    extreme_point: float
    sar: float  # SAR of the last closed candle
    next_sar: float  # SAR the forming candle starts with
    last_candle: int  # open time (ms) of the last closed candle
    close: float


class SarSlope(_Rec, kw_only=True):
    """SAR003: the slope of one coin's SAR over its current cycle."""

    coin: str
    status: Literal["ok"] = "ok"
    interval: str
    direction: Literal["up", "down"]
    cycle_start: int
    bars: int
    start_sar: float
    sar: float
    slope_per_bar: float
    slope_pct_per_hour: float
    last_candle: int


class CoinSarBias(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    price: float
    sar: float
    direction: Literal["up", "down"]
    bias_pct: float  # (price − SAR) / SAR · 100
    side: Literal["above", "below"]


class SarBiasSummary(_Rec, kw_only=True):
    coins: int
    above: int
    below: int
    insufficient: int
    mean_bias_pct: float | None  # None: no coin has a SAR now
    median_bias_pct: float | None


class SarBias(_Rec, kw_only=True):
    """SAR002: the price's distance from its SAR per coin, and across the watch list."""

    ts: int
    interval: str
    coins: list[CoinSarBias | Insufficient]
    summary: SarBiasSummary


# --- SR001 ----------------------------------------------------------------------------------------
class PivotLevels(_Rec, kw_only=True):
    interval: str
    candle: int  # open time (ms) of the closed candle they come from
    high: float
    low: float
    close: float
    p: float
    r1: float
    r2: float
    r3: float
    s1: float
    s2: float
    s3: float


class CoinLevels(_Rec, kw_only=True):
    coin: str
    status: Literal["ok"] = "ok"
    h1: PivotLevels | None
    d1: PivotLevels | None
    unavailable: dict[str, str]


class SupportResistance(_Rec, kw_only=True):
    """SR001: classic floor pivots from the previous closed 1 h and 1 d candles."""

    ts: int
    coins: list[CoinLevels | Insufficient]


# --- CI001 ----------------------------------------------------------------------------------------
class Constituent(_Rec, kw_only=True):
    coin: str
    price: float
    base_price: float
    weight: float


class CryptoIndex(_Rec, kw_only=True):
    """CI001: an index of the watch list, base 1000 on its first day."""

    ts: int
    status: Literal["ok", "insufficient_data"] = "ok"
    reason: str = ""
    value: float | None
    base_value: float
    base_day: str
    weighting: Literal["equal", "cap"]
    weighting_note: str
    constituents: list[Constituent]
    excluded: list[Insufficient]


def to_data(rec: msgspec.Struct) -> dict[str, Any]:
    """The record as the endpoint serves it."""
    out = msgspec.to_builtins(rec)
    assert isinstance(out, dict)
    return out

"""The watch list's pure parts: which coins, which poll slot, ticks from tickers, which klines are due."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assetsync.config import MarketConf
from assetsync.events import Candle, MarketTicks

from assetsync_collector_crypto.state import CryptoState

# Watched whatever the account holds (the "plus BTC and ETH").
ALWAYS_WATCHED = ("BTC", "ETH")


@dataclass(frozen=True)
class KlinePlan:
    """One kline interval of the watch list: candle length, backfill depth, and refetch threshold."""

    interval: str
    step_ms: int
    backfill: int  # candles fetched when a coin joins
    min_new: int  # closed candles to wait for before fetching again
    refresh: bool = True  # False: fetched only when a coin joins (a warm start), never again


# 1m: the last hour, once when a coin joins — it warms the analytics' 1/5/15-minute windows; after
# that the minute ticks are the fresh prices. Fetched on, 50 coins' 1m candles would add 72,000 rows a
# day to the store and the AS003 feed for nothing they show. 1h: 7 days; 1d: 30 days.
KLINE_PLANS: tuple[KlinePlan, ...] = (
    KlinePlan("1m", 60_000, 60, 5, refresh=False),
    KlinePlan("1h", 3_600_000, 7 * 24, 1),
    KlinePlan("1d", 86_400_000, 30, 1),
)


def held_assets(state: CryptoState) -> list[str]:
    """The crypto assets the last account sync found with a balance."""
    return sorted(a for a, q in state.quantities.items() if q > 0)


def watch_assets(conf: MarketConf, held: Iterable[str]) -> list[str]:
    """`market.watchlist` (upper-cased, in order, once each) or, when empty, held + BTC + ETH."""
    quote = conf.quote.upper()
    wanted = conf.watchlist or [*ALWAYS_WATCHED, *sorted(held)]
    out: list[str] = []
    for raw in wanted:
        code = raw.strip().upper()
        if code and code != quote and code not in out:
            out.append(code)
    return out


def slot_ms(now: float, interval: float) -> int:
    """The poll slot `now` falls in (ms): every replica polling that slot publishes the same key."""
    return int(math.floor(now / interval) * interval * 1000)


def split_markets(
    assets: Sequence[str], quote: str, markets: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, str], list[str]]:
    """Watched asset -> its active `BASE/QUOTE` spot symbol, and the assets that have none."""
    symbols: dict[str, str] = {}
    missing: list[str] = []
    for asset in assets:
        symbol = f"{asset}/{quote}"
        m = markets.get(symbol)
        if m is not None and m.get("active") is not False and m.get("spot", True):
            symbols[asset] = symbol
        else:
            missing.append(asset)
    return symbols, missing


def _positive(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def ticks_from(
    tickers: Mapping[str, Mapping[str, Any]],
    symbols: Mapping[str, str],
    missing: Sequence[str],
    *,
    source: str,
    quote: str,
    ts: int,
) -> MarketTicks:
    """One MarketTicks from a tickers answer; a market the answer lacks a price for is `missing`."""
    prices: dict[str, float] = {}
    volumes: dict[str, float] = {}
    lost = list(missing)
    for asset, symbol in symbols.items():
        t = tickers.get(symbol) or {}
        last = _positive(t.get("last"))
        if last is None:
            lost.append(asset)
            continue
        prices[asset] = last
        vol = t.get("quoteVolume")
        if vol is not None and (v := _float(vol)) is not None and v >= 0:
            volumes[asset] = v
    return MarketTicks(
        source=source, quote=quote, ts=ts, prices=prices, volumes=volumes, missing=sorted(lost)
    )


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def due_since(plan: KlinePlan, last_open: int | None, now_ms: int) -> tuple[int, int] | None:
    """(since, count) of the closed candles to fetch now, or None when fewer than `min_new` closed.

    A coin seen for the first time (or after a gap longer than the backfill) gets the backfill
    window; otherwise the candles after the last one published.
    """
    step = plan.step_ms
    last_closed = now_ms // step * step - step
    window_start = last_closed - (plan.backfill - 1) * step
    if last_open is not None:
        if not plan.refresh or (last_closed - last_open) // step < plan.min_new:
            return None
        since = max(last_open + step, window_start)
    else:
        since = window_start
    return since, (last_closed - since) // step + 1


def closed_candles(rows: Iterable[Sequence[Any]], plan: KlinePlan, since: int, now_ms: int) -> list[Candle]:
    """ccxt OHLCV rows -> Candles, closed ones only (an open candle's close is not final), from `since`."""
    out: list[Candle] = []
    for r in rows:
        open_time = int(r[0])
        if open_time < since or open_time + plan.step_ms > now_ms:
            continue
        values = [_float(v) for v in r[1:6]]
        if any(v is None for v in values):
            continue  # a row with a hole is left out, never filled with 0
        o, h, lo, c, v = (float(x or 0.0) for x in values)
        out.append(Candle(open_time, o, h, lo, c, v))
    return out

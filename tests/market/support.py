"""Market test support: deterministic candles (a seeded random walk) and states built from them."""

from __future__ import annotations

import random

from assetsync.events import Candle, KlineBatch, MarketTicks
from assetsync_market.state import H, MarketState


def walk(n: int, *, start: int, step: int = H, price: float = 100.0, seed: int = 1) -> list[Candle]:
    """`n` consecutive candles from `start`, a random walk with real highs and lows around open/close."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        o = price
        c = max(0.01, o * (1 + rnd.gauss(0, 0.012)))
        h = max(o, c) * (1 + abs(rnd.gauss(0, 0.004)))
        lo = min(o, c) * (1 - abs(rnd.gauss(0, 0.004)))
        out.append(Candle(start + i * step, round(o, 6), round(h, 6), round(lo, 6), round(c, 6), 10.0 + i))
        price = c
    return out


def state(
    *, watchlist: list[str] | None = None, poll_ms: int = 60_000, tz: str = "Asia/Shanghai"
) -> MarketState:
    return MarketState(quote="USDT", timezone=tz, poll_ms=poll_ms, watchlist=watchlist or [])


def klines(coin: str, interval: str, candles: list[Candle]) -> KlineBatch:
    return KlineBatch(source="binance", symbol=f"{coin}/USDT", interval=interval, candles=candles)


def ticks(ts: int, prices: dict[str, float], missing: list[str] | None = None) -> MarketTicks:
    return MarketTicks(source="binance", quote="USDT", ts=ts, prices=prices, missing=missing or [])

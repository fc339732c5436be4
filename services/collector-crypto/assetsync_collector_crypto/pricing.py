"""Pricing routes in USDT: the `X/USDT` market, else through another quote (`X/BTC` × `BTC/USDT`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

USDT = "USDT"
# Quotes tried, in order, when an asset has no active USDT market.
BRIDGE_QUOTES = ("BTC", "ETH", "BNB", "FDUSD", "USDC")
# Quotes whose markets can hold an asset's fills (fetch_my_trades is per market).
TRADE_QUOTES = ("USDT", "BTC", "ETH", "BNB", "FDUSD", "USDC")


@dataclass(frozen=True)
class Route:
    """The markets whose last prices multiply to the asset's USDT price (empty: the asset is USDT)."""

    asset: str
    legs: tuple[str, ...]

    @property
    def via(self) -> str:
        return "*".join(self.legs) if self.legs else USDT

    @property
    def kline_symbol(self) -> str | None:
        """The market whose hourly klines describe the asset (its first leg)."""
        return self.legs[0] if self.legs else None


def _spot(markets: Mapping[str, Mapping[str, Any]], active_only: bool) -> set[str]:
    return {
        s for s, m in markets.items() if m.get("spot") and (not active_only or m.get("active") is not False)
    }


def route_for(
    asset: str, markets: Mapping[str, Mapping[str, Any]], *, active_only: bool = True
) -> Route | None:
    """The route pricing `asset` in USDT over (active) spot markets, or None (unpriced: no market).

    With `active_only=False` halted markets count too: for valuing amounts at a past fill's time.
    """
    if asset == USDT:
        return Route(asset, ())
    active = _spot(markets, active_only)
    direct = f"{asset}/{USDT}"
    if direct in active:
        return Route(asset, (direct,))
    for quote in BRIDGE_QUOTES:
        leg = f"{asset}/{quote}"
        bridge = f"{quote}/{USDT}"
        if quote != asset and leg in active and bridge in active:
            return Route(asset, (leg, bridge))
    return None


def ticker_symbols(routes: Iterable[Route]) -> list[str]:
    """Every market the routes need, once each, for a single fetch_tickers call."""
    return sorted({leg for r in routes for leg in r.legs})


def price_of(route: Route, last: Mapping[str, float | None]) -> float | None:
    """The route's USDT price from last prices; None if a leg has no (positive) price."""
    price = 1.0
    for leg in route.legs:
        p = last.get(leg)
        if p is None or p <= 0:
            return None
        price *= p
    return price


def trade_markets(asset: str, markets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Spot markets (listed, active or halted) where `asset` is the base and the quote is a usual one."""
    out = []
    for quote in TRADE_QUOTES:
        symbol = f"{asset}/{quote}"
        m = markets.get(symbol)
        if m is not None and m.get("spot"):
            out.append(symbol)
    return out

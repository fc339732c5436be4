"""Cost basis of a crypto asset from its fills, exactly as CONTRACTS §6 defines it (average or FIFO).

Used by collector-crypto (Binance) and collector-okx: one accounting for every exchange.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import msgspec

CostMethod = Literal["average", "fifo"]


class ValuedFill(msgspec.Struct, frozen=True, kw_only=True):
    """One fill of a market where the asset is the base, with its amounts valued in USDT."""

    ts: int  # ms
    trade_id: int
    symbol: str
    side: Literal["buy", "sell"]
    qty: float  # base quantity
    quote_usdt: float  # quote amount valued in USDT at the fill's minute
    fee_qty: float = 0.0
    fee_asset: str = ""
    fee_usdt: float = 0.0  # fee valued in USDT (0 when paid in the base asset itself)
    fee_in_base: bool = False
    order_id: str = ""
    quote_qty: float = 0.0  # quote amount in the quote currency (for orders derived from fills)


@dataclass(frozen=True)
class Basis:
    """What the fills leave: quantity and total cost (USDT); avg_cost is None when nothing is held."""

    quantity: float
    cost: float

    @property
    def avg_cost(self) -> float | None:
        return self.cost / self.quantity if self.quantity > 1e-12 else None


def _ordered(fills: Iterable[ValuedFill]) -> list[ValuedFill]:
    return sorted(fills, key=lambda f: (f.ts, f.trade_id))


def average_basis(fills: Iterable[ValuedFill]) -> Basis:
    """Moving weighted average: buys add quantity and cost; sells remove both in proportion."""
    qty = 0.0
    cost = 0.0
    for f in _ordered(fills):
        if f.side == "buy":
            qty += f.qty - (f.fee_qty if f.fee_in_base else 0.0)
            cost += f.quote_usdt + (0.0 if f.fee_in_base else f.fee_usdt)
        else:
            out = f.qty + (f.fee_qty if f.fee_in_base else 0.0)
            if qty <= 1e-12 or out >= qty:
                # Sold everything (or more than the fills explain: a deposit was sold): start over.
                qty, cost = 0.0, 0.0
            else:
                cost *= (qty - out) / qty
                qty -= out
    return Basis(qty, cost)


def fifo_basis(fills: Iterable[ValuedFill]) -> Basis:
    """First in, first out: each buy is a lot at its unit cost; sells consume the oldest lots first."""
    lots: deque[list[float]] = deque()  # [quantity, unit cost]
    for f in _ordered(fills):
        if f.side == "buy":
            q = f.qty - (f.fee_qty if f.fee_in_base else 0.0)
            if q > 1e-12:
                lots.append([q, (f.quote_usdt + (0.0 if f.fee_in_base else f.fee_usdt)) / q])
            continue
        out = f.qty + (f.fee_qty if f.fee_in_base else 0.0)
        while out > 1e-12 and lots:
            lot = lots[0]
            take = min(lot[0], out)
            lot[0] -= take
            out -= take
            if lot[0] <= 1e-12:
                lots.popleft()
    qty = sum(lot[0] for lot in lots)
    cost = sum(lot[0] * lot[1] for lot in lots)
    return Basis(qty, cost)


def avg_cost(fills: Iterable[ValuedFill], method: CostMethod = "average") -> float | None:
    """Cost per unit (USDT) of what the fills leave, by `method`; None when no position remains."""
    basis = fifo_basis(fills) if method == "fifo" else average_basis(fills)
    return basis.avg_cost

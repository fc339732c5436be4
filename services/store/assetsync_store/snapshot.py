"""The daily snapshot: totals of the holdings table in the base currency (CONTRACTS §6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from assetsync.events import FxRate, Snapshot


class SnapshotError(Exception):
    """The snapshot cannot be computed (e.g. a currency without a rate); says which key to fix."""


def compute_snapshot(
    holdings: Sequence[Mapping[str, Any]],
    *,
    base_currency: str,
    fx_rates: Mapping[str, float],
    day: str,
    taken_at: int,
    command_id: str = "",
    fx_used: Mapping[str, FxRate] | None = None,
) -> Snapshot:
    """Sum value, cost and PnL over holdings, converting each currency with `fx_rates`.

    An asset without a known cost adds its value to both totals (no gain is claimed for it), so
    总收益 = 总市值 − 总成本 holds; an unpriced asset adds nothing but still counts as a 持仓 row.
    """
    total_value = total_cost = 0.0
    by_currency: dict[str, float] = {}
    for h in holdings:
        cur = str(h["currency"]).upper()
        if cur == base_currency.upper():
            rate = 1.0
        elif cur in fx_rates:
            rate = float(fx_rates[cur])
        else:
            raise SnapshotError(
                f"no exchange rate from {cur} to {base_currency} (held: {h['asset']}): "
                f'add it to asset_sync.fx_rates, e.g. {{"{cur}": 7.1}}'
            )
        value = h["value"]
        if value is None:
            continue
        cost = h["total_cost"] if h["total_cost"] is not None else value
        by_currency[cur] = by_currency.get(cur, 0.0) + float(value)
        total_value += float(value) * rate
        total_cost += float(cost) * rate
    pnl = total_value - total_cost
    return Snapshot(
        date=day,
        base_currency=base_currency,
        total_value=round(total_value, 8),
        total_cost=round(total_cost, 8),
        total_pnl=round(pnl, 8),
        pnl_pct=round(pnl / total_cost * 100.0, 6) if total_cost else None,
        asset_count=len(holdings),
        taken_at=taken_at,
        command_id=command_id,
        by_currency={k: round(v, 8) for k, v in sorted(by_currency.items())},
        fx=dict(sorted((fx_used or {}).items())),
    )

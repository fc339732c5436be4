"""The daily snapshot task: totals of the holdings table in the base currency (CONTRACTS §6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from assetsync.config import Settings
from assetsync.events import FxRate, Snapshot, TaskCommand
from assetsync.fx import describe as fx_describe
from assetsync.fx import resolve as fx_resolve

from assetsync_store.db import Database
from assetsync_store.fx_rates import save_fetched, save_used, stored_rates
from assetsync_store.upserts import SNAPSHOT_SQL, snapshot_row


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


def snapshot_day(cmd: TaskCommand, tz: ZoneInfo) -> str:
    """A scheduled midnight snapshot closes the day that just ended; a manual one is today's."""
    if cmd.slot:
        slot = datetime.fromisoformat(cmd.slot).astimezone(tz)
        return (slot - timedelta(seconds=1)).date().isoformat()
    return datetime.now(tz).date().isoformat()


async def take_snapshot(
    db: Database, settings: Settings, cmd: TaskCommand, started: int, *, combined: bool = False
) -> Snapshot:
    """Compute and store the day's snapshot (with the FX rates it used); SnapshotError names the fix.

    This site's own holdings only, unless `asset_sync.views.combined` counts every site's.
    """
    a = settings.config.asset_sync
    tz = ZoneInfo(settings.timezone)
    base = a.base_currency.upper()
    day = snapshot_day(cmd, tz)
    where = "1" if combined else "origin = ''"
    rows = await db.fetchall(
        f"SELECT asset, currency, value, total_cost FROM holdings WHERE {where} ORDER BY origin, asset"
    )
    holdings = [dict(r) for r in rows]
    fx = await fx_resolve(
        {str(h["currency"]).upper() for h in holdings},
        base=base,
        manual={k.upper(): v for k, v in a.fx_rates.items()},
        conf=a.fx,
        stored=await stored_rates(db, base),
        today=datetime.now(tz).date(),
    )
    if fx.missing:
        raise SnapshotError(f"{day}: {_no_rate_message(fx.missing, holdings, base)}")
    snap = compute_snapshot(
        holdings,
        base_currency=base,
        fx_rates={cur: q.rate for cur, q in fx.rates.items()},
        day=day,
        taken_at=started,
        command_id=cmd.command_id,
        fx_used=fx.rates,
    )
    async with db.transaction() as conn:
        await conn.execute(SNAPSHOT_SQL, snapshot_row(snap))
        await save_fetched(conn, base, fx.fetched, started)
        await save_used(conn, snap.date, base, snap.fx)
    return snap


def snapshot_summary(snap: Snapshot) -> str:
    """The one line a snapshot's 日志 row and the CLI show: totals, and the FX rates used."""
    pct = f" ({snap.pnl_pct:+.2f}%)" if snap.pnl_pct is not None else ""
    rates = f"; FX {fx_describe(snap.fx, snap.base_currency)}" if snap.fx else ""
    return (
        f"{snap.date}: value {snap.total_value:,.2f} {snap.base_currency}, "
        f"PnL {snap.total_pnl:+,.2f}{pct}, {snap.asset_count} holdings{rates}"
    )


def _no_rate_message(missing: dict[str, str], holdings: list[dict[str, object]], base: str) -> str:
    """Which currency has no rate, what holds it, why — and the keys that fix it."""
    parts = []
    for cur, why in sorted(missing.items()):
        held = ", ".join(sorted(str(h["asset"]) for h in holdings if str(h["currency"]).upper() == cur))
        parts.append(f"no exchange rate from {cur} to {base} (held: {held}): {why}")
    example = ", ".join(f'"{cur}": 7.1' for cur in sorted(missing))
    return (
        "; ".join(parts)
        + f" — set asset_sync.fx_rates (e.g. {{{example}}}) or make asset_sync.fx.source reachable"
    )

"""The store's FX memory: the last rate fetched per currency pair, and the rates each snapshot used."""

from __future__ import annotations

from collections.abc import Mapping

import aiosqlite
from assetsync.events import FxRate

from assetsync_store.db import Database

SAVE_SQL = """
INSERT INTO fx_rates (currency, base, rate, rate_date, source, fetched_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (currency, base) DO UPDATE SET
    rate = excluded.rate, rate_date = excluded.rate_date, source = excluded.source,
    fetched_at = excluded.fetched_at
WHERE excluded.rate_date >= fx_rates.rate_date
"""

USED_SQL = """
INSERT INTO snapshot_fx (date, currency, base, rate, rate_date, source) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (date, currency) DO UPDATE SET
    base = excluded.base, rate = excluded.rate, rate_date = excluded.rate_date, source = excluded.source
"""


async def stored_rates(db: Database, base: str) -> dict[str, FxRate]:
    """The last fetched rate of each currency into `base`."""
    rows = await db.fetchall(
        "SELECT currency, rate, rate_date, source FROM fx_rates WHERE base = ?", (base.upper(),)
    )
    return {r["currency"]: FxRate(rate=r["rate"], date=r["rate_date"], source=r["source"]) for r in rows}


async def save_fetched(
    conn: aiosqlite.Connection, base: str, fetched: Mapping[str, FxRate], fetched_at: int
) -> None:
    """Remember freshly fetched rates (a rate never goes back to an older reference date)."""
    await conn.executemany(
        SAVE_SQL,
        [(cur, base.upper(), q.rate, q.date, q.source, fetched_at) for cur, q in sorted(fetched.items())],
    )


async def save_used(conn: aiosqlite.Connection, day: str, base: str, used: Mapping[str, FxRate]) -> None:
    """The rates one snapshot converted with (re-runs of the day replace them)."""
    await conn.execute("DELETE FROM snapshot_fx WHERE date = ?", (day,))
    await conn.executemany(
        USED_SQL, [(day, cur, base.upper(), q.rate, q.date, q.source) for cur, q in sorted(used.items())]
    )

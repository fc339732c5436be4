"""Reads of the store by site: this site's holdings, or another site's as replicated here (CONTRACTS §5.2)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assetsync_store import schema

HOLDING_COLUMNS = (
    "asset, source, name, asset_type, currency, quantity, price, value, avg_cost, total_cost, pnl, pnl_pct,"
    " cost_source, price_date, as_of, origin"
)


class SiteError(Exception):
    """The store cannot answer for that site; the message says what it does hold."""


@dataclass(frozen=True)
class SiteHoldings:
    """One site's holdings as this store holds them."""

    site: str  # the site id ('' never: this site is named by its own id)
    own: bool  # True: this site's own data
    rows: list[dict[str, Any]]


def _open(db_path: Path) -> sqlite3.Connection:
    if not db_path.exists():
        raise SiteError(f"no database at {db_path} yet (database.path; run `assetsync up` or a task first)")
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    schema.migrate(conn)  # a store of an older version is upgraded in place, as the store would
    conn.row_factory = sqlite3.Row
    return conn


def sites(db_path: Path, site_id: str) -> dict[str, int]:
    """Every site the store holds holdings of (this site under its own id) and how many each."""
    conn = _open(db_path)
    try:
        rows = conn.execute(
            "SELECT origin, count(*) FROM holdings GROUP BY origin ORDER BY origin"
        ).fetchall()
    finally:
        conn.close()
    return {(str(r[0]) or site_id): int(r[1]) for r in rows}


def site_holdings(db_path: Path, site_id: str, site: str = "") -> SiteHoldings:
    """The holdings of `site` (default: this site), ordered by type and asset; SiteError if none known."""
    own = site in ("", site_id)
    conn = _open(db_path)
    try:
        rows = conn.execute(
            f"SELECT {HOLDING_COLUMNS} FROM holdings WHERE origin = ? ORDER BY asset_type, asset, source",
            ("" if own else site,),
        ).fetchall()
        if not rows and not own:
            known = [
                str(r[0]) for r in conn.execute("SELECT DISTINCT origin FROM holdings WHERE origin != ''")
            ]
            hint = (
                f"sites with replicated holdings: {', '.join(sorted(known))}"
                if known
                else ("no other site's holdings have been received (sync_gateway.receiver)")
            )
            raise SiteError(f"no holdings of site {site!r} in {db_path}; {hint}")
    finally:
        conn.close()
    return SiteHoldings(site_id if own else site, own, [dict(r) for r in rows])


def _num(x: Any, digits: int = 8) -> str:
    if x is None:
        return "—"
    return f"{float(x):,.{digits}f}".rstrip("0").rstrip(".") if digits else f"{float(x):,.0f}"


def format_holdings(sh: SiteHoldings) -> str:
    """An aligned terminal table of one site's holdings (empty cells shown as —)."""
    head = ("资产代码", "类型", "币种", "数量", "当前价格", "当前市值", "成本价", "收益", "收益率%")
    body = [
        (
            r["asset"],
            "基金" if r["asset_type"] == "fund" else "加密货币",
            r["currency"],
            _num(r["quantity"]),
            _num(r["price"]),
            _num(r["value"], 2),
            _num(r["avg_cost"]),
            _num(r["pnl"], 2),
            _num(r["pnl_pct"], 2),
        )
        for r in sh.rows
    ]
    widths = [max(_width(c) for c in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(_pad(c, w, i >= 3) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in (head, *body)
    ]
    what = "this site" if sh.own else "replicated from that site"
    return "\n".join([f"site {sh.site} ({what}): {len(sh.rows)} holdings", *lines])


def _width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill

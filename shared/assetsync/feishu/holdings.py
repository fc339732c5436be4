"""Reading the fund rows of 持仓 (资产类型 = 基金): how collector-fund discovers funds, quantities and costs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assetsync.feishu import schema as fs
from assetsync.feishu.client import FeishuClient
from assetsync.feishu.tables import resolve_table

if TYPE_CHECKING:
    from assetsync.config import Settings


@dataclass(frozen=True)
class FundRow:
    """One fund row as the user keeps it in 持仓: code, and their quantity / average cost (None = empty)."""

    code: str
    name: str
    quantity: float | None
    avg_cost: float | None
    currency: str
    record_id: str


def number(value: Any) -> float | None:
    """A numeric cell (number, or text such as "1,234.5") as float; empty or unreadable → None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip().replace(",", "").replace("，", "")
    if not text:
        return None
    try:
        out = float(text)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


async def read_fund_holdings(
    client: FeishuClient, settings: Settings, *, table_id: str | None = None
) -> list[FundRow]:
    """Every 持仓 row whose 资产类型 is 基金 (one search, paged), codes upper-cased, blanks skipped.

    Rows of other sites' funds (`<code>@<site>`, asset_sync.views.combined) are theirs, not ours.
    """
    tid = table_id or await resolve_table(client, settings, fs.HOLDINGS)
    records = await client.search_records(
        tid,
        field_names=[fs.CODE, fs.NAME, fs.CURRENCY, fs.ASSET_TYPE, fs.QUANTITY, fs.AVG_COST],
        filter={
            "conjunction": "and",
            "conditions": [{"field_name": fs.ASSET_TYPE, "operator": "is", "value": [fs.TYPE_FUND]}],
        },
    )
    out: list[FundRow] = []
    seen: set[str] = set()
    for r in records:
        code = str(r.fields.get(fs.CODE) or "").strip().upper()
        if not code or code in seen or "@" in code:  # `<code>@<site>`: another site's row (combined view)
            continue
        seen.add(code)
        out.append(
            FundRow(
                code=code,
                name=str(r.fields.get(fs.NAME) or "").strip(),
                quantity=number(r.fields.get(fs.QUANTITY)),
                avg_cost=number(r.fields.get(fs.AVG_COST)),
                currency=str(r.fields.get(fs.CURRENCY) or "").strip() or "CNY",
                record_id=r.record_id,
            )
        )
    return out

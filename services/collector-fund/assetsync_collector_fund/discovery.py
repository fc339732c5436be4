"""Which funds to sync: positions from sources (Feishu 持仓 rows, config `manual`), minus `ignore` globs."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from assetsync.config import ManualFund
from assetsync.events import AssetError
from assetsync.ignore import ignored

log = logging.getLogger("assetsync.collector_fund.discovery")

FundKind = Literal["quote", "nav"]
_EXCHANGE_CODE = re.compile(r"^(SH|SZ)\d{6}$")
_SUFFIXED_CODE = re.compile(r"^(\d{6})\.(SH|SZ)$")
_OPEN_END_CODE = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class FundPosition:
    """One fund to price: its code, and the quantity/cost the source knows (None = unknown)."""

    code: str
    quantity: float | None = None
    avg_cost: float | None = None
    name: str = ""
    origin: str = "manual"  # manual / feishu: where quantity and cost came from


class FundSource(Protocol):
    """Anything that lists fund positions (the Feishu 持仓 table, config `manual` entries)."""

    name: str

    async def positions(self) -> list[FundPosition]: ...


def normalize_code(raw: str) -> str:
    """`sh510300` / `510300.SH` -> `SH510300`; 6-digit open-end codes stay as they are."""
    code = raw.strip().upper()
    m = _SUFFIXED_CODE.match(code)
    return f"{m.group(2)}{m.group(1)}" if m else code


def fund_kind(code: str) -> FundKind | None:
    """`quote` for exchange-traded codes (SH/SZ + 6 digits), `nav` for 6-digit open-end funds."""
    if _EXCHANGE_CODE.match(code):
        return "quote"
    if _OPEN_END_CODE.match(code):
        return "nav"
    return None


class ManualFunds:
    """`asset_sync.assets.funds.manual` entries as positions."""

    name = "asset_sync.assets.funds.manual"

    def __init__(self, entries: Sequence[ManualFund]) -> None:
        self._entries = list(entries)

    async def positions(self) -> list[FundPosition]:
        return [
            FundPosition(normalize_code(e.fund_code), e.quantity, e.avg_cost, e.name, "manual")
            for e in self._entries
        ]


@dataclass
class Discovery:
    """The outcome of discovery: positions to price, what was ignored, and what could not be read."""

    positions: list[FundPosition] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    errors: list[AssetError] = field(default_factory=list)
    # False when a source failed: the set of funds is then not known to be complete.
    complete: bool = True


async def discover(sources: Sequence[FundSource], ignore: Sequence[str]) -> Discovery:
    """Merge the sources in order (a later source's known quantity/cost override earlier ones)."""
    out = Discovery()
    merged: dict[str, FundPosition] = {}
    for source in sources:
        try:
            found = await source.positions()
        except Exception as exc:
            log.warning("fund discovery: %s failed: %s", source.name, exc)
            out.complete = False
            out.errors.append(AssetError(asset=f"({source.name})", reason=f"could not list funds: {exc}"))
            continue
        for pos in found:
            code = normalize_code(pos.code)
            if not code:
                continue
            if ignored(code, ignore):
                if code not in out.ignored:
                    out.ignored.append(code)
                continue
            if fund_kind(code) is None:
                out.errors.append(
                    AssetError(
                        asset=code,
                        reason=f"not a fund code (from {source.name}): expected SH/SZ + 6 digits "
                        "for exchange-traded funds or 6 digits for open-end funds",
                        quantity=pos.quantity,
                    )
                )
                continue
            prev = merged.get(code)
            merged[code] = replace(pos, code=code) if prev is None else _overlay(prev, pos)
    out.positions = list(merged.values())
    return out


def _overlay(base: FundPosition, top: FundPosition) -> FundPosition:
    return FundPosition(
        code=base.code,
        quantity=top.quantity if top.quantity is not None else base.quantity,
        avg_cost=top.avg_cost if top.avg_cost is not None else base.avg_cost,
        name=top.name or base.name,
        origin=top.origin if (top.quantity is not None or top.avg_cost is not None) else base.origin,
    )

"""Pure row logic: the cells each event means (CONTRACTS §4/§6) and the diff against what Feishu holds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from assetsync.events import TASK_LABEL, Event, Holding, PriceTick, Snapshot, TaskResult
from assetsync.feishu import schema as fs
from assetsync.feishu.holdings import number

Cells = dict[str, Any]

TASK_TYPES = TASK_LABEL
ERROR_TEXT_LIMIT = 2000
# Cells the writer derives or sets; anything else in a row belongs to the user and is never touched.
HOLDING_OWNED = (
    fs.CODE, fs.NAME, fs.CURRENCY, fs.ASSET_TYPE, fs.QUANTITY, fs.PRICE, fs.VALUE,
    fs.AVG_COST, fs.TOTAL_COST, fs.PNL, fs.PNL_PCT, fs.UPDATED,
)  # fmt: skip


def _r(x: float | None) -> float | None:
    """Round to 12 significant digits so recomputing the same inputs never looks like a change."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.12g}")


def derived(quantity: float | None, price: float | None, avg_cost: float | None) -> Cells:
    """当前市值/总成本/收益/收益率 (§6); anything that cannot be computed is None (an empty cell)."""
    value = quantity * price if quantity is not None and price is not None else None
    total_cost = quantity * avg_cost if quantity is not None and avg_cost is not None else None
    pnl = value - total_cost if value is not None and total_cost is not None else None
    pct = pnl / total_cost * 100 if pnl is not None and total_cost else None
    return {fs.VALUE: _r(value), fs.TOTAL_COST: _r(total_cost), fs.PNL: _r(pnl), fs.PNL_PCT: _r(pct)}


# Exchanges whose holdings get 持仓 rows of their own, `<资产代码>@<tag>` (BTC on OKX: `BTC@OKX`), beside
# Binance's rows, which keep the bare code: one row per exchange, so each row's 数量 and 成本价 are
# that account's and the table's 当前市值 column sums to the total. The tags are reserved: no site
# may be named OKX.
EXCHANGE_TAGS: dict[str, str] = {"okx": "OKX"}


def exchange_view(e: Event) -> Event:
    """A tagged exchange's holdings and prices under their 持仓 code (`BTC` from okx -> `BTC@OKX`)."""
    if isinstance(e, (Holding, PriceTick)):
        tag = EXCHANGE_TAGS.get(e.source)
        if tag:
            return msgspec.structs.replace(e, asset=f"{e.asset}@{tag}")
    return e


def site_view(e: Event, site_id: str, combined: bool) -> Event | None:
    """What this site's tables show of an event (CONTRACTS §5.2): its own data, None for the rest.

    With `asset_sync.views.combined`, another site's holdings also get 持仓 rows of their own,
    `<资产代码>@<site>`, which never replace this site's rows; its task results are kept only to
    remove its sold assets' rows. Other sites' prices, snapshots and 日志 rows are never written.
    """
    if e.origin in ("", site_id):
        return e
    if not combined:
        return None
    if isinstance(e, Holding):
        return msgspec.structs.replace(e, asset=f"{e.asset}@{e.origin}")
    if isinstance(e, TaskResult):
        return e
    return None


def _suffixes(key: str) -> tuple[str, str]:
    """(exchange tag, site) of a 持仓 key: `BTC@OKX@HOME` -> ("OKX", "HOME"), `BTC` -> ("", "")."""
    parts = key.split("@")[1:]
    tag = parts.pop(0) if parts and parts[0] in EXCHANGE_TAGS.values() else ""
    return tag, parts[-1] if parts else ""


def site_of(key: str) -> str:
    """The site suffix of a 持仓 key (`BTC@HOME` -> `HOME`; '' for this site's own rows, `BTC@OKX` too)."""
    return _suffixes(key)[1]


def exchange_of(key: str) -> str:
    """The exchange tag of a 持仓 key (`BTC@OKX` -> `OKX`; '' for Binance's and funds' rows)."""
    return _suffixes(key)[0]


def user_owned(existing: Mapping[str, Any] | None, h: Holding) -> bool:
    """A fund row the user keeps by hand: its 数量 and 成本价 are theirs, never overwritten.

    Another site's row (combined view) is written whole: its numbers come from that site.
    """
    return (
        "@" not in h.asset
        and existing is not None
        and existing.get(fs.ASSET_TYPE) == fs.TYPE_FUND
        and h.asset_type == "fund"
        and h.cost_source != "manual"
    )


def holding_cells(h: Holding, existing: Mapping[str, Any] | None, tick: PriceTick | None = None) -> Cells:
    """The 持仓 cells a Holding means (a newer PriceTick overrides its price); None = empty cell."""
    price = h.price
    as_of = h.as_of
    if tick is not None and tick.ts > h.as_of:
        price, as_of = tick.price, tick.ts
    cells: Cells = {
        fs.CODE: h.asset,
        fs.CURRENCY: h.currency,
        fs.ASSET_TYPE: fs.TYPE_FUND if h.asset_type == "fund" else fs.TYPE_CRYPTO,
        fs.PRICE: _r(price),
        fs.UPDATED: int(as_of),
    }
    if h.name:
        cells[fs.NAME] = h.name
    if not user_owned(existing, h):
        cells[fs.QUANTITY] = _r(h.quantity)
        cells[fs.AVG_COST] = _r(h.avg_cost)
    cells.update(derived(h.quantity, price, h.avg_cost))
    return cells


def is_stale(h: Holding, existing: Mapping[str, Any]) -> bool:
    """True when the row already shows newer data than this Holding (its 更新时间 is later)."""
    updated = number(existing.get(fs.UPDATED))
    return updated is not None and h.as_of < updated


def tick_cells(t: PriceTick, existing: Mapping[str, Any]) -> Cells | None:
    """A price tick applied to an existing row (its own 数量/成本价); None when older than the row."""
    updated = number(existing.get(fs.UPDATED))
    if updated is not None and t.ts <= updated:
        return None
    cells: Cells = {fs.PRICE: _r(t.price), fs.UPDATED: int(t.ts)}
    cells.update(derived(number(existing.get(fs.QUANTITY)), t.price, number(existing.get(fs.AVG_COST))))
    return cells


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-11, abs_tol=1e-12)
    if isinstance(b, str) and not isinstance(a, str):
        na = number(a)
        nb = number(b)
        return na is not None and nb is not None and math.isclose(na, nb, rel_tol=1e-11, abs_tol=1e-12)
    return bool(a == b)


def diff(desired: Mapping[str, Any], existing: Mapping[str, Any] | None, *, stamp: str = "") -> Cells:
    """Only the cells that change; None clears a filled cell. `stamp` (更新时间) is sent only with a change."""
    if existing is None:
        return {k: v for k, v in desired.items() if v is not None}
    out: Cells = {}
    for k, v in desired.items():
        if k == stamp:
            continue
        have = existing.get(k)
        if v is None:
            if have is not None and have != "":
                out[k] = None
        elif not _same(v, have):
            out[k] = v
    if out and stamp and desired.get(stamp) is not None:
        out[stamp] = desired[stamp]
    return out


def local_day_ms(day: str, tz: str) -> int:
    """Midnight of a YYYY-MM-DD local day, as the ms timestamp a Feishu date cell holds."""
    d = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=ZoneInfo(tz))
    return int(d.timestamp() * 1000)


def day_of(ms: Any, tz: str) -> str:
    """The local YYYY-MM-DD of a date cell (ms); '' when it is not a date."""
    n = number(ms)
    if n is None:
        return ""
    return datetime.fromtimestamp(n / 1000, tz=UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d")


def history_cells(s: Snapshot, tz: str) -> Cells:
    """One 历史 row: totals in the base currency (§6)."""
    return {
        fs.SNAP_DATE: local_day_ms(s.date, tz),
        fs.TOTAL_VALUE: _r(s.total_value),
        fs.SNAP_COST: _r(s.total_cost),
        fs.TOTAL_PNL: _r(s.total_pnl),
        fs.SNAP_PCT: _r(s.pnl_pct),
        fs.COUNT: s.asset_count,
        fs.SNAP_CURRENCY: s.base_currency,
    }


def error_text(r: TaskResult) -> str:
    """错误信息: the run's message plus each failing asset and why, capped for a Feishu cell."""
    parts = [r.message] if r.message else []
    if r.total > r.records and not r.message and not r.errors:
        parts.append(f"{r.total - r.records} of {r.total} not synced (no reason reported)")
    parts.extend(f"{e.asset}{f' [{e.part}]' if e.part else ''}: {e.reason}" for e in r.errors)
    if r.dust and not any("dust" in p for p in parts):
        parts.append(f"{len(r.dust)} dust hidden: {', '.join(r.dust)}")
    text = "; ".join(parts)
    return text if len(text) <= ERROR_TEXT_LIMIT else text[: ERROR_TEXT_LIMIT - 1] + "…"


def log_cells(r: TaskResult) -> Cells:
    """One 日志 row per task run."""
    cells: Cells = {
        fs.LOG_TIME: int(r.finished_at or r.started_at),
        fs.LOG_SOURCE: r.source,
        fs.LOG_TASK: TASK_TYPES.get(r.task, r.task),
        fs.LOG_STATUS: r.status,
        fs.LOG_RECORDS: r.records,
        fs.LOG_DURATION: round(r.duration, 3),
    }
    text = error_text(r)
    if text:
        cells[fs.LOG_ERROR] = text
    return cells


def asset_key(code: str) -> str:
    """The 持仓 row key: 资产代码 as typed by a user ("sh510300 ") matches the collector's SH510300."""
    return code.strip().upper()


def latest_by_asset(
    holdings: Iterable[Holding], ticks: Iterable[PriceTick]
) -> tuple[dict[str, Holding], dict[str, PriceTick]]:
    """Coalesce a batch: the newest Holding and the newest PriceTick per asset."""
    hs: dict[str, Holding] = {}
    for h in holdings:
        key = asset_key(h.asset)
        cur = hs.get(key)
        if cur is None or h.as_of >= cur.as_of:
            hs[key] = h
    ts: dict[str, PriceTick] = {}
    for t in ticks:
        key = asset_key(t.asset)
        cur_t = ts.get(key)
        if cur_t is None or t.ts >= cur_t.ts:
            ts[key] = t
    return hs, ts


def merged(existing: Mapping[str, Any] | None, change: Mapping[str, Any]) -> Cells:
    """A cached row after a successful write of `change`."""
    out = dict(existing or {})
    for k, v in change.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def keys_text(keys: Sequence[str], limit: int = 10) -> str:
    """A short list of record keys for messages."""
    shown = ", ".join(keys[:limit])
    return shown + (f" … (+{len(keys) - limit} more)" if len(keys) > limit else "")

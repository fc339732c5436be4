"""Pure feed logic: OKX v5 rows -> the typed records of OKX001-005 and LQ001, as FeedRecord events.

Each record is built from a msgspec Struct (the shape the gateway serves for its code). Numbers OKX
sends as "" (not applicable) become None, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from assetsync.events import FeedRecord

HOUR_MS = 3_600_000
TICKER_LIMIT = 50  # OKX001 without a watch list: the most traded USDT markets, at most this many


def num(value: Any) -> float | None:
    """An OKX decimal string as a float; None for "" / missing / not a number."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    n = num(value)
    return int(n) if n is not None else 0


class Ticker(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One spot market's last price and 24 h figures (OKX001)."""

    inst_id: str
    base: str
    quote: str
    last: float
    open_24h: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    change_pct_24h: float | None = None
    vol_24h: float | None = None  # base units
    vol_quote_24h: float | None = None  # quote units
    ts: int = 0


class Tickers(msgspec.Struct, kw_only=True):
    """OKX001: one poll of the watched spot markets."""

    ts: int
    quote: str
    tickers: list[Ticker]
    missing: list[str] = msgspec.field(default_factory=list)  # watched assets with no OKX market


def ticker_of(row: Mapping[str, Any]) -> Ticker | None:
    """A ticker from a `market/tickers` row; None without a usable last price."""
    inst = str(row.get("instId") or "")
    last = num(row.get("last"))
    if "-" not in inst or last is None or last <= 0:
        return None
    base, _, quote = inst.partition("-")
    open24 = num(row.get("open24h"))
    return Ticker(
        inst_id=inst,
        base=base,
        quote=quote,
        last=last,
        open_24h=open24,
        high_24h=num(row.get("high24h")),
        low_24h=num(row.get("low24h")),
        change_pct_24h=(last / open24 - 1) * 100 if open24 else None,
        vol_24h=num(row.get("vol24h")),
        vol_quote_24h=num(row.get("volCcy24h")),
        ts=_int(row.get("ts")),
    )


def select_tickers(
    rows: Iterable[Mapping[str, Any]], quote: str, watchlist: Sequence[str], limit: int = TICKER_LIMIT
) -> tuple[list[Ticker], list[str]]:
    """The watch list's `<asset>-<quote>` tickers (and the assets without one), else the `limit` most traded."""
    all_quote = [t for r in rows if (t := ticker_of(r)) is not None and t.quote == quote]
    if watchlist:
        by_base = {t.base: t for t in all_quote}
        wanted = [a.strip().upper() for a in watchlist]
        return [by_base[a] for a in wanted if a in by_base], [a for a in wanted if a not in by_base]
    ranked = sorted(all_quote, key=lambda t: -(t.vol_quote_24h or 0.0))
    return sorted(ranked[:limit], key=lambda t: t.inst_id), []


def tickers_record(ts: int, quote: str, tickers: list[Ticker], missing: list[str]) -> FeedRecord:
    data = Tickers(ts=ts, quote=quote, tickers=tickers, missing=missing)
    return FeedRecord(code="OKX001", record_key=str(ts), ts=ts, data=msgspec.to_builtins(data))


class Liquidation(msgspec.Struct, kw_only=True):
    """LQ001: one instrument and side's liquidations over one closed hour."""

    inst_id: str
    uly: str
    side: str  # the liquidation order's side: sell closes longs, buy closes shorts
    pos_side: str
    hour_start: int
    hour_end: int
    count: int
    total_contracts: float
    total_size: float  # base units (contracts x contract value)
    total_notional: float  # quote units at the bankruptcy price
    largest_notional: float
    largest_price: float
    largest_ts: int
    ct_val: float
    truncated: bool = False  # more liquidations than were paged through: totals are a lower bound


def liquidation_summaries(
    inst_id: str,
    uly: str,
    details: Iterable[Mapping[str, Any]],
    ct_val: float,
    hour_start: int,
    *,
    truncated: bool = False,
) -> list[Liquidation]:
    """Per side: count, total size and notional, and the largest, of the details inside the hour."""
    end = hour_start + HOUR_MS
    out: dict[str, Liquidation] = {}
    for d in details:
        ts = _int(d.get("ts"))
        sz = num(d.get("sz"))
        px = num(d.get("bkPx"))
        side = str(d.get("side") or "")
        if not (hour_start <= ts < end) or sz is None or px is None or side not in ("buy", "sell"):
            continue
        notional = sz * ct_val * px
        s = out.get(side)
        if s is None:
            s = out[side] = Liquidation(
                inst_id=inst_id,
                uly=uly,
                side=side,
                pos_side=str(d.get("posSide") or ("long" if side == "sell" else "short")),
                hour_start=hour_start,
                hour_end=end,
                count=0,
                total_contracts=0.0,
                total_size=0.0,
                total_notional=0.0,
                largest_notional=0.0,
                largest_price=px,
                largest_ts=ts,
                ct_val=ct_val,
                truncated=truncated,
            )
        s.count += 1
        s.total_contracts += sz
        s.total_size += sz * ct_val
        s.total_notional += notional
        if notional > s.largest_notional:
            s.largest_notional, s.largest_price, s.largest_ts = notional, px, ts
    return [out[k] for k in sorted(out)]


def liquidation_record(s: Liquidation) -> FeedRecord:
    return FeedRecord(
        code="LQ001",
        record_key=f"{s.inst_id}:{s.side}:{s.hour_start}",
        ts=s.hour_start,
        data=msgspec.to_builtins(s),
    )


class Position(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One open derivatives position."""

    inst_id: str
    inst_type: str
    pos_id: str
    pos_side: str
    mgn_mode: str
    pos: float
    avg_px: float | None = None
    mark_px: float | None = None
    liq_px: float | None = None
    lever: float | None = None
    upl: float | None = None
    upl_ratio: float | None = None
    notional_usd: float | None = None
    margin: float | None = None  # isolated margin, or the initial margin requirement (cross)
    ccy: str = ""
    created_at: int = 0
    updated_at: int = 0


class Positions(msgspec.Struct, kw_only=True):
    """OKX002: the account's open positions at one poll."""

    ts: int
    positions: list[Position]


def position_of(row: Mapping[str, Any]) -> Position:
    return Position(
        inst_id=str(row.get("instId") or ""),
        inst_type=str(row.get("instType") or ""),
        pos_id=str(row.get("posId") or ""),
        pos_side=str(row.get("posSide") or ""),
        mgn_mode=str(row.get("mgnMode") or ""),
        pos=num(row.get("pos")) or 0.0,
        avg_px=num(row.get("avgPx")),
        mark_px=num(row.get("markPx")),
        liq_px=num(row.get("liqPx")),
        lever=num(row.get("lever")),
        upl=num(row.get("upl")),
        upl_ratio=num(row.get("uplRatio")),
        notional_usd=num(row.get("notionalUsd")),
        margin=num(row.get("margin")) if row.get("mgnMode") == "isolated" else num(row.get("imr")),
        ccy=str(row.get("ccy") or ""),
        created_at=_int(row.get("cTime")),
        updated_at=_int(row.get("uTime")),
    )


class PendingOrder(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One unfilled (or partly filled) order."""

    ord_id: str
    inst_id: str
    inst_type: str
    side: str
    ord_type: str
    state: str
    sz: float
    price: float | None = None
    filled: float = 0.0
    avg_px: float | None = None
    td_mode: str = ""
    created_at: int = 0
    updated_at: int = 0


class PendingOrders(msgspec.Struct, kw_only=True):
    """OKX003: the account's pending orders at one poll."""

    ts: int
    orders: list[PendingOrder]


def order_of(row: Mapping[str, Any]) -> PendingOrder:
    return PendingOrder(
        ord_id=str(row.get("ordId") or ""),
        inst_id=str(row.get("instId") or ""),
        inst_type=str(row.get("instType") or ""),
        side=str(row.get("side") or ""),
        ord_type=str(row.get("ordType") or ""),
        state=str(row.get("state") or ""),
        sz=num(row.get("sz")) or 0.0,
        price=num(row.get("px")),
        filled=num(row.get("accFillSz")) or 0.0,
        avg_px=num(row.get("avgPx")),
        td_mode=str(row.get("tdMode") or ""),
        created_at=_int(row.get("cTime")),
        updated_at=_int(row.get("uTime")),
    )


class FillRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """OKX004: one fill of the account."""

    trade_id: str
    bill_id: str
    ord_id: str
    inst_id: str
    inst_type: str
    side: str
    price: float
    size: float
    fee: float | None = None  # what was charged (positive), in fee_ccy
    fee_ccy: str = ""
    exec_type: str = ""  # T taker / M maker
    ts: int = 0


def fill_of(row: Mapping[str, Any]) -> FillRecord | None:
    px = num(row.get("fillPx"))
    sz = num(row.get("fillSz"))
    if px is None or sz is None or not row.get("tradeId"):
        return None
    fee = num(row.get("fee"))
    return FillRecord(
        trade_id=str(row["tradeId"]),
        bill_id=str(row.get("billId") or ""),
        ord_id=str(row.get("ordId") or ""),
        inst_id=str(row.get("instId") or ""),
        inst_type=str(row.get("instType") or ""),
        side=str(row.get("side") or ""),
        price=px,
        size=sz,
        fee=-fee if fee is not None else None,  # OKX reports charges as negative amounts
        fee_ccy=str(row.get("feeCcy") or ""),
        exec_type=str(row.get("execType") or ""),
        ts=_int(row.get("ts")),
    )


def fill_record(f: FillRecord) -> FeedRecord:
    return FeedRecord(
        code="OKX004", record_key=f"{f.inst_id}:{f.trade_id}", ts=f.ts, data=msgspec.to_builtins(f)
    )


class FeeRate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Maker/taker rates of one instrument type (positive: charged)."""

    inst_type: str
    level: str
    maker: float | None = None
    taker: float | None = None


class AccountLimits(msgspec.Struct, kw_only=True, omit_defaults=True):
    """OKX005: account configuration, fee tier and limits."""

    ts: int
    uid: str
    acct_level: str  # acctLv: 1 spot, 2 spot and futures, 3 multi-currency margin, 4 portfolio margin
    pos_mode: str
    perm: str
    level: str  # fee tier, e.g. Lv1
    kyc_level: str = ""
    label: str = ""
    fees: list[FeeRate] = msgspec.field(default_factory=list)
    rate_limits: dict[str, str] = msgspec.field(default_factory=dict)  # endpoint -> OKX's documented limit


def account_limits(
    ts: int, config: Mapping[str, Any], fees: Iterable[Mapping[str, Any]], rate_limits: Mapping[str, str]
) -> AccountLimits:
    rates = []
    for f in fees:
        maker = num(f.get("maker")) if f.get("maker") not in (None, "") else num(f.get("makerU"))
        taker = num(f.get("taker")) if f.get("taker") not in (None, "") else num(f.get("takerU"))
        rates.append(
            FeeRate(
                inst_type=str(f.get("instType") or ""),
                level=str(f.get("level") or ""),
                maker=-maker if maker is not None else None,
                taker=-taker if taker is not None else None,
            )
        )
    return AccountLimits(
        ts=ts,
        uid=str(config.get("uid") or ""),
        acct_level=str(config.get("acctLv") or ""),
        pos_mode=str(config.get("posMode") or ""),
        perm=str(config.get("perm") or ""),
        level=str(config.get("level") or ""),
        kyc_level=str(config.get("kycLv") or ""),
        label=str(config.get("label") or ""),
        fees=rates,
        rate_limits=dict(rate_limits),
    )


def snapshot_record(code: str, ts: int, data: msgspec.Struct) -> FeedRecord:
    """A whole-list record (OKX002, OKX003, OKX005) keyed by its poll time."""
    return FeedRecord(code=code, record_key=str(ts), ts=ts, data=msgspec.to_builtins(data))


def content_key(data: Mapping[str, Any], volatile: Iterable[str] = ("ts",)) -> bytes:
    """The record's content without its poll time: equal keys mean nothing changed (not republished)."""
    drop = set(volatile)
    return msgspec.json.encode({k: v for k, v in sorted(data.items()) if k not in drop})

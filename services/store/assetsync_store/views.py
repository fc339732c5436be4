"""Read-only views of the store for people: 持仓 rows, net worth over time, allocation, price charts, a day's report.

The public read API of the store package: the gateway's /api/portfolio/… endpoints, `assetsync holdings`,
`assetsync report` and the alerter's daily card all read through here. Every function takes a connection
opened with `open_readonly` and never writes. Series are downsampled in SQL so a page stays fast with
years of history.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from assetsync.config import Settings

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# Fund NAVs are published once per trading day and markets close for weekends and holidays, so a fund
# price is stale only after this many hours whatever the crypto threshold.
FUND_STALE_FLOOR_HOURS = 96.0
MAX_POINTS = 1000
KLINE_INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")  # finest first
Range = Literal["1m", "3m", "1y", "all"]
RANGE_DAYS: dict[str, int | None] = {"1w": 7, "1m": 31, "3m": 92, "1y": 366, "all": None}
TYPE_LABEL = {"crypto": "加密货币", "fund": "基金"}


class StoreNotFound(Exception):
    """There is no store database at the configured path yet."""


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to the store's SQLite (it never creates the file nor takes a write lock)."""
    if not path.exists():
        raise StoreNotFound(
            f"no store database at {path} yet: run `assetsync up` (or `assetsync task crypto`) first, "
            "or point asset_sync.database.path at it"
        )
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    return conn


@dataclass(frozen=True)
class Valuation:
    """How to express amounts in the base currency: rates per currency (base itself is 1)."""

    base_currency: str
    rates: Mapping[str, float]
    stale_hours: float = 24.0
    timezone: str = "Asia/Shanghai"

    def rate(self, currency: str) -> float | None:
        cur = currency.upper()
        if cur == self.base_currency.upper():
            return 1.0
        r = self.rates.get(cur)
        return float(r) if r is not None else None

    def stale_after_ms(self, asset_type: str) -> int:
        hours = self.stale_hours if asset_type != "fund" else max(self.stale_hours, FUND_STALE_FLOOR_HOURS)
        return int(hours * HOUR_MS)


@dataclass
class HoldingRow:
    """One 持仓 row with what the views add: base-currency value, weight, and the unpriced/stale flags."""

    asset: str
    name: str
    source: str
    asset_type: str
    currency: str
    quantity: float
    price: float | None
    value: float | None
    avg_cost: float | None
    total_cost: float | None
    pnl: float | None
    pnl_pct: float | None
    price_date: str
    as_of: int
    origin: str
    value_base: float | None = None
    weight: float | None = None  # percent of the priced total in the base currency
    unpriced: bool = False
    stale: bool = False
    no_rate: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_HOLDING_COLS = (
    "asset, name, source, asset_type, currency, quantity, price, value, avg_cost, total_cost, pnl, "
    "pnl_pct, price_date, as_of, origin"
)


def holdings(
    conn: sqlite3.Connection, valuation: Valuation, *, now_ms: int, origin: str | None = ""
) -> list[HoldingRow]:
    """The 持仓 rows (this site's own by default; `origin=None`: every site's), largest value first."""
    if origin is None:
        cur = conn.execute(f"SELECT {_HOLDING_COLS} FROM holdings")
    else:
        cur = conn.execute(f"SELECT {_HOLDING_COLS} FROM holdings WHERE origin = ?", (origin,))
    rows = [HoldingRow(*r) for r in cur.fetchall()]
    total = 0.0
    for h in rows:
        h.unpriced = h.price is None or h.value is None
        h.stale = not h.unpriced and now_ms - h.as_of > valuation.stale_after_ms(h.asset_type)
        rate = valuation.rate(h.currency)
        h.no_rate = rate is None
        if h.value is not None and rate is not None:
            h.value_base = h.value * rate
            total += h.value_base
    for h in rows:
        if h.value_base is not None and total > 0:
            h.weight = h.value_base / total * 100.0
    rows.sort(key=lambda h: (h.value_base is None, -(h.value_base or 0.0), h.asset))
    return rows


@dataclass
class Totals:
    """Portfolio totals in the base currency over the rows that can be valued."""

    base_currency: str
    total_value: float
    total_cost: float
    total_pnl: float
    pnl_pct: float | None
    asset_count: int
    unpriced: int
    stale: int
    no_rate: list[str]


def totals(rows: Iterable[HoldingRow], valuation: Valuation) -> Totals:
    """Same rule as the snapshot (CONTRACTS §6): an asset without cost adds its value to both sides."""
    value = cost = 0.0
    n = unpriced = stale = 0
    no_rate: list[str] = []
    for h in rows:
        n += 1
        unpriced += h.unpriced
        stale += h.stale
        if h.no_rate:
            no_rate.append(h.currency.upper())
        if h.value_base is None:
            continue
        rate = valuation.rate(h.currency) or 0.0
        value += h.value_base
        cost += (h.total_cost * rate) if h.total_cost is not None else h.value_base
    pnl = value - cost
    return Totals(
        valuation.base_currency,
        round(value, 8),
        round(cost, 8),
        round(pnl, 8),
        round(pnl / cost * 100.0, 6) if cost else None,
        n,
        unpriced,
        stale,
        sorted(set(no_rate)),
    )


def allocation(rows: Iterable[HoldingRow], *, top: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Shares of the base-currency value by asset type and by asset (the smallest assets folded into 其他)."""
    by_type: dict[str, float] = {}
    assets: list[tuple[str, str, float]] = []
    for h in rows:
        if h.value_base is None or h.value_base <= 0:
            continue
        by_type[h.asset_type] = by_type.get(h.asset_type, 0.0) + h.value_base
        assets.append((h.asset, h.name, h.value_base))
    total = sum(by_type.values())

    def share(v: float) -> float:
        return round(v / total * 100.0, 4) if total else 0.0

    types = [
        {"key": k, "label": TYPE_LABEL.get(k, k), "value": round(v, 2), "percent": share(v)}
        for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])
    ]
    assets.sort(key=lambda a: -a[2])
    out = [
        {"key": a, "label": a if not n or n == a else f"{a} {n}", "value": round(v, 2), "percent": share(v)}
        for a, n, v in assets[:top]
    ]
    rest = sum(v for _, _, v in assets[top:])
    if rest > 0:
        out.append(
            {
                "key": "*",
                "label": f"其他 ({len(assets) - top})",
                "value": round(rest, 2),
                "percent": share(rest),
            }
        )
    return {"by_type": types, "by_asset": out}


def derived_rates(
    conn: sqlite3.Connection, base_currency: str, known: Mapping[str, float]
) -> dict[str, float]:
    """Rates implied by the latest snapshot for a single currency `known` lacks (the rate it was valued at)."""
    row = conn.execute(
        "SELECT total_value, by_currency, base_currency FROM snapshots WHERE origin = '' ORDER BY date DESC LIMIT 1"
    ).fetchone()
    if row is None or str(row[2]).upper() != base_currency.upper():
        return {}
    try:
        by_cur = {str(k).upper(): float(v) for k, v in json.loads(row[1] or "{}").items()}
    except (ValueError, TypeError, AttributeError):
        return {}
    base = base_currency.upper()
    rest = float(row[0])
    unknown = []
    for cur, v in by_cur.items():
        if cur == base:
            rest -= v
        elif cur in known:
            rest -= v * float(known[cur])
        else:
            unknown.append(cur)
    if len(unknown) == 1 and by_cur[unknown[0]] > 0 and rest > 0:
        return {unknown[0]: rest / by_cur[unknown[0]]}
    return {}


def stored_fx(conn: sqlite3.Connection, base_currency: str) -> dict[str, float]:
    """The last rate fetched into `base_currency` per currency (`asset_sync.fx.source`, kept by the store)."""
    try:
        rows = conn.execute(
            "SELECT currency, rate FROM fx_rates WHERE base = ? AND rate > 0", (base_currency.upper(),)
        ).fetchall()
    except sqlite3.OperationalError:  # a store from before the FX table: no fetched rates yet
        return {}
    return {str(r[0]).upper(): float(r[1]) for r in rows}


def make_valuation(
    conn: sqlite3.Connection,
    *,
    base_currency: str,
    fx_rates: Mapping[str, float],
    stale_hours: float = 24.0,
    timezone: str = "Asia/Shanghai",
) -> Valuation:
    """Rates into the base currency: asset_sync.fx_rates (manual) win, then the last rates fetched from
    the FX source (what the snapshot uses), then one implied by the latest snapshot if still missing."""
    rates = {**stored_fx(conn, base_currency), **{k.upper(): float(v) for k, v in fx_rates.items()}}
    rates = {**derived_rates(conn, base_currency, rates), **rates}
    return Valuation(base_currency, rates, stale_hours if stale_hours > 0 else 24.0, timezone)


def valuation_for(conn: sqlite3.Connection, settings: Settings) -> Valuation:
    """`make_valuation` from the settings (`asset_sync.base_currency|fx_rates|alerts.stale_price_hours`)."""
    a = settings.config.asset_sync
    return make_valuation(
        conn,
        base_currency=a.base_currency,
        fx_rates=a.fx_rates,
        stale_hours=a.alerts.stale_price_hours,
        timezone=settings.timezone,
    )


def _bucketed(n: int, span: int, max_points: int) -> int:
    """The bucket width that keeps `n` points over `span` under `max_points` (1: no downsampling)."""
    if n <= max_points or span <= 0:
        return 1
    return max(1, -(-span // max_points))


def range_start_day(rng: str, last_day: str | None) -> str | None:
    days = RANGE_DAYS.get(rng)
    if days is None or last_day is None:
        return None
    return (date.fromisoformat(last_day) - timedelta(days=days)).isoformat()


def net_worth(conn: sqlite3.Connection, rng: str = "all", *, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """Daily snapshot totals over a range (1m/3m/1y/all), at most `max_points` points (the last day of each bucket)."""
    if rng not in RANGE_DAYS:
        raise ValueError(f"range: expected one of {', '.join(RANGE_DAYS)}")
    last = conn.execute("SELECT max(date) FROM snapshots WHERE origin = ''").fetchone()[0]
    start = range_start_day(rng, last) or "0000-00-00"
    n, first = conn.execute(
        "SELECT count(*), min(date) FROM snapshots WHERE origin = '' AND date >= ?", (start,)
    ).fetchone()
    points: list[list[Any]] = []
    currency = ""
    if n:
        span = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
        width = _bucketed(n, span, max_points)
        # julianday() buckets keep one row per bucket: SQLite returns the bare columns of the max(date) row.
        sql = (
            "SELECT max(date), total_value, total_cost, total_pnl, pnl_pct, base_currency FROM snapshots "
            "WHERE origin = '' AND date >= ? GROUP BY CAST((julianday(date) - julianday(?)) / ? AS INTEGER) ORDER BY 1"
        )
        for d, v, c, p, pct, cur in conn.execute(sql, (start, first, width)):
            points.append([d, v, c, p, pct])
            currency = cur
    return {
        "range": rng,
        "base_currency": currency,
        "count": n,
        "columns": ["date", "total_value", "total_cost", "total_pnl", "pnl_pct"],
        "points": points,
    }


def kline_symbols(asset: str, currency: str) -> list[str]:
    """Markets whose klines chart this asset, in preference order."""
    out = [f"{asset}/{currency}"]
    out += [f"{asset}/{q}" for q in ("USDT", "USDC", "FDUSD", "BTC") if q != currency]
    return out


def price_series(
    conn: sqlite3.Connection,
    asset: str,
    rng: str = "3m",
    *,
    now_ms: int,
    origin: str = "",
    max_points: int = MAX_POINTS,
) -> dict[str, Any] | None:
    """The asset's closes over a range (klines, else observed prices) and its average cost; None: not held."""
    if rng not in RANGE_DAYS:
        raise ValueError(f"range: expected one of {', '.join(RANGE_DAYS)}")
    h = conn.execute(
        # Held on two exchanges: the one with klines (Binance's collector stores them; OKX's does not).
        "SELECT source, currency, avg_cost, price, name, asset_type FROM holdings WHERE asset = ? AND origin = ?"
        " ORDER BY source = 'okx'",
        (asset, origin),
    ).fetchone()
    if h is None:
        return None
    source, currency, avg_cost, price, name, asset_type = h
    days = RANGE_DAYS[rng]
    since = now_ms - days * DAY_MS if days is not None else 0
    out: dict[str, Any] = {
        "asset": asset,
        "name": name,
        "asset_type": asset_type,
        "currency": currency,
        "avg_cost": avg_cost,
        "price": price,
        "range": rng,
        "symbol": "",
        "interval": "",
        "points": [],
    }
    for symbol in kline_symbols(asset, currency):
        best = _kline_interval(conn, source, symbol, since)
        if best is None:
            continue
        interval, n, lo, hi = best
        width = _bucketed(n, hi - lo, max_points)
        if width == 1:
            sql = (
                "SELECT open_time, close FROM klines WHERE source = ? AND symbol = ? AND interval = ? "
                "AND open_time >= ? ORDER BY open_time"
            )
            rows = conn.execute(sql, (source, symbol, interval, since)).fetchall()
        else:
            sql = (
                "SELECT max(open_time), close FROM klines WHERE source = ? AND symbol = ? AND interval = ? "
                "AND open_time >= ? GROUP BY open_time / ? ORDER BY 1"
            )
            rows = conn.execute(sql, (source, symbol, interval, since, width)).fetchall()
        quote = symbol.split("/", 1)[1]
        out.update(symbol=symbol, interval=interval, quote=quote, points=[[t, c] for t, c in rows])
        if quote != currency:
            out["avg_cost"] = None  # the cost is in another currency than this market's
        return out
    # No klines (e.g. funds): the prices observed by the collectors, one per bucket.
    n, lo, hi = conn.execute(
        "SELECT count(*), min(ts), max(ts) FROM price_history WHERE ts >= ? AND source = ? AND asset = ?",
        (since, source, asset),
    ).fetchone()
    if n:
        width = _bucketed(n, hi - lo, max_points)
        rows = conn.execute(
            "SELECT max(ts), price FROM price_history WHERE ts >= ? AND source = ? AND asset = ? "
            "GROUP BY ts / ? ORDER BY 1",
            (since, source, asset, width),
        ).fetchall()
        out.update(symbol=asset, interval="price", quote=currency, points=[[t, p] for t, p in rows])
    return out


def _kline_interval(
    conn: sqlite3.Connection, source: str, symbol: str, since: int
) -> tuple[str, int, int, int] | None:
    """The interval that covers the range best: the earliest first candle, then the finest."""
    best: tuple[str, int, int, int] | None = None
    for interval in KLINE_INTERVALS:
        n, lo, hi = conn.execute(
            "SELECT count(*), min(open_time), max(open_time) FROM klines "
            "WHERE source = ? AND symbol = ? AND interval = ? AND open_time >= ?",
            (source, symbol, interval, since),
        ).fetchone()
        if n and (best is None or lo < best[2]):
            best = (interval, n, lo, hi)
    return best


@dataclass
class SourceFreshness:
    """One data source's last runs: when it last ran, last succeeded, and what it said."""

    source: str
    task: str
    last_run: int
    last_status: str
    last_success: int | None
    last_message: str
    data_as_of: str
    age_hours: float | None = None


def freshness(conn: sqlite3.Connection, *, now_ms: int, days: int = 31) -> list[SourceFreshness]:
    """Per (source, task): the latest run and the latest successful one within `days`."""
    out: dict[tuple[str, str], SourceFreshness] = {}
    rows = conn.execute(
        "SELECT source, task, status, started_at, finished_at, message, data_as_of FROM sync_logs "
        "WHERE started_at >= ? AND origin = '' ORDER BY started_at",
        (now_ms - days * DAY_MS,),
    )
    for source, task, status, started, finished, message, as_of in rows:
        f = out.get((source, task))
        if f is None:
            f = out[(source, task)] = SourceFreshness(source, task, 0, "", None, "", "")
        f.last_run, f.last_status, f.last_message = finished or started, status, message
        if status != "failed":
            f.last_success = finished or started
            f.data_as_of = as_of or f.data_as_of
    for f in out.values():
        if f.last_success is not None:
            f.age_hours = round((now_ms - f.last_success) / HOUR_MS, 2)
    return sorted(out.values(), key=lambda f: (f.source, f.task))


def latest_prices(
    conn: sqlite3.Connection, *, before_ms: int, lookback_ms: int
) -> dict[tuple[str, str], float]:
    """(source, asset) -> the last observed price in [before − lookback, before)."""
    rows = conn.execute(
        "SELECT source, asset, max(ts), price FROM price_history WHERE ts >= ? AND ts < ? GROUP BY source, asset",
        (before_ms - lookback_ms, before_ms),
    )
    return {(s, a): p for s, a, _, p in rows}


@dataclass
class DayReport:
    """A day's summary: the snapshot, its change vs the day before and a week before, movers, failures."""

    date: str
    base_currency: str
    total_value: float
    total_cost: float
    total_pnl: float
    pnl_pct: float | None
    asset_count: int
    change_day: float | None
    change_day_pct: float | None
    change_week: float | None
    change_week_pct: float | None
    movers: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _change(now: float, then: float | None) -> tuple[float | None, float | None]:
    if then is None:
        return None, None
    diff = now - then
    return round(diff, 8), (round(diff / then * 100.0, 4) if then else None)


def _day_bounds(day: str, tz: str) -> tuple[int, int]:
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), ZoneInfo(tz))
    return int(start.timestamp() * 1000), int((start + timedelta(days=1)).timestamp() * 1000)


def day_report(
    conn: sqlite3.Connection, day: str | None, valuation: Valuation, *, movers: int = 5
) -> DayReport | None:
    """The report for `day` (default: the latest snapshot's day); None when that day has no snapshot."""
    if day is None:
        row = conn.execute("SELECT max(date) FROM snapshots WHERE origin = ''").fetchone()
        day = row[0] if row else None
        if day is None:
            return None
    snap = conn.execute(
        "SELECT base_currency, total_value, total_cost, total_pnl, pnl_pct, asset_count FROM snapshots WHERE origin = '' AND date = ?",
        (day,),
    ).fetchone()
    if snap is None:
        return None
    d = date.fromisoformat(day)

    def value_on(target: date) -> float | None:
        r = conn.execute(
            "SELECT total_value FROM snapshots WHERE origin = '' AND date = ?", (target.isoformat(),)
        ).fetchone()
        return float(r[0]) if r else None

    base, value, cost, pnl, pct, count = snap
    cd, cdp = _change(value, value_on(d - timedelta(days=1)))
    cw, cwp = _change(value, value_on(d - timedelta(days=7)))
    start, end = _day_bounds(day, valuation.timezone)
    return DayReport(
        date=day,
        base_currency=base,
        total_value=value,
        total_cost=cost,
        total_pnl=pnl,
        pnl_pct=pct,
        asset_count=count,
        change_day=cd,
        change_day_pct=cdp,
        change_week=cw,
        change_week_pct=cwp,
        movers=_movers(conn, start, end, valuation, movers),
        failures=_failures(conn, start, end),
    )


def _movers(
    conn: sqlite3.Connection, start: int, end: int, valuation: Valuation, top: int
) -> list[dict[str, Any]]:
    """Held assets by their price change over the day (last price of the day vs the last before it)."""
    now = latest_prices(conn, before_ms=end, lookback_ms=DAY_MS)
    then = latest_prices(conn, before_ms=start, lookback_ms=3 * DAY_MS)
    held = conn.execute("SELECT asset, source, name, quantity, currency FROM holdings WHERE origin = ''")
    out = []
    for asset, source, name, qty, currency in held:
        p1 = now.get((source, asset)) or _kline_close(conn, source, asset, currency, end)
        p0 = then.get((source, asset)) or _kline_close(conn, source, asset, currency, start)
        if p1 is None or p0 is None or p0 <= 0:
            continue
        rate = valuation.rate(currency)
        out.append(
            {
                "asset": asset,
                "name": name,
                "price": p1,
                "currency": currency,
                "change_pct": round((p1 - p0) / p0 * 100.0, 4),
                "value_change": round((p1 - p0) * qty * rate, 2) if rate is not None else None,
            }
        )
    out.sort(key=lambda m: -abs(m["change_pct"]))
    return out[:top]


_INTERVAL_MS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": HOUR_MS,
    "4h": 4 * HOUR_MS,
}


def _kline_close(
    conn: sqlite3.Connection, source: str, asset: str, currency: str, before: int
) -> float | None:
    """The close of the last candle (1h, else finer) that ended by `before`, within a day before it."""
    symbol = f"{asset}/{currency}"
    for interval in ("1h", "15m", "5m", "1m", "30m", "4h"):
        step = _INTERVAL_MS[interval]
        row = conn.execute(
            "SELECT close FROM klines WHERE source = ? AND symbol = ? AND interval = ? "
            "AND open_time <= ? AND open_time > ? ORDER BY open_time DESC LIMIT 1",
            (source, symbol, interval, before - step, before - DAY_MS),
        ).fetchone()
        if row is not None:
            return float(row[0])
    return None


def _failures(conn: sqlite3.Connection, start: int, end: int) -> list[dict[str, Any]]:
    """Per (source, task): runs of the day that failed or were partial, with the last message."""
    rows = conn.execute(
        "SELECT source, task, status, message, finished_at FROM sync_logs "
        "WHERE started_at >= ? AND started_at < ? AND origin = '' AND status != 'success' ORDER BY started_at",
        (start, end),
    )
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for source, task, status, message, finished in rows:
        f = out.setdefault(
            (source, task), {"source": source, "task": task, "failed": 0, "partial": 0, "last_message": ""}
        )
        f[status] = f.get(status, 0) + 1
        f["last_message"], f["last_at"] = message, finished
    return list(out.values())

"""Exchange rates for base-currency totals (CONTRACTS §6): manual `fx_rates`, the ECB, the last stored rate.

The ECB daily reference rates give units of each currency per 1 EUR; X→B = (B per EUR) ÷ (X per EUR).
USD stablecoins are valued as USD unless `asset_sync.fx_rates` names them. A bad answer (HTML, a
truncated document, a rate of 0) is no rate, with the reason — never a total of 0.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

import httpx

from assetsync.config import FxConf
from assetsync.events import FxRate

log = logging.getLogger("assetsync.fx")

ECB_DAILY_PATH = "/stats/eurofxref/eurofxref-daily.xml"
ECB_NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"
STABLECOINS: Mapping[str, str] = {"USDT": "USD", "USDC": "USD", "FDUSD": "USD"}


class FxError(Exception):
    """The FX source gave no usable rates (unreachable, an error, or not the rates document)."""


@dataclass(frozen=True)
class EcbRates:
    """One day of ECB reference rates: units per 1 EUR, and the currencies answered unusably."""

    day: str
    per_eur: dict[str, float]
    rejected: dict[str, str] = field(default_factory=dict)


def parse_ecb(body: bytes) -> EcbRates:
    """The daily XML's rates; FxError when it is not that document (HTML, truncated, no date)."""
    head = body.lstrip()[:200].lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        raise FxError("answered an HTML page, not the ECB rates XML")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise FxError(f"malformed or truncated XML ({exc})") from exc
    if not root.tag.endswith("Envelope"):
        raise FxError(f"not the ECB rates XML (root element {root.tag!r})")
    day_cube = next((c for c in root.iter(f"{ECB_NS}Cube") if c.get("time")), None)
    if day_cube is None:
        raise FxError("the ECB XML holds no dated <Cube time=...> element")
    day = str(day_cube.get("time"))
    try:
        date.fromisoformat(day)
    except ValueError as exc:
        raise FxError(f"the ECB XML's date {day!r} is not YYYY-MM-DD") from exc
    rates: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for cube in day_cube.iter(f"{ECB_NS}Cube"):
        cur, raw = cube.get("currency"), cube.get("rate")
        if not cur:
            continue
        try:
            value = float(raw or "")
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            rejected[cur.upper()] = f"the ECB answered rate {raw!r} for {cur} (not a positive number)"
            continue
        rates[cur.upper()] = value
    if not rates:
        raise FxError("the ECB XML holds no usable rate")
    return EcbRates(day, rates, rejected)


def ecb_cross(currency: str, base: str, ecb: EcbRates) -> tuple[float | None, str]:
    """Units of `base` per unit of `currency` from the ECB rates, or None and why not."""
    cur = STABLECOINS.get(currency, currency)
    per = {"EUR": 1.0, **ecb.per_eur}
    for code in (cur, base):
        if code not in per:
            why = ecb.rejected.get(code) or f"the ECB publishes no {code} rate"
            return None, why
    return per[base] / per[cur], ""


async def fetch_ecb(base_url: str, timeout: float, *, client: httpx.AsyncClient | None = None) -> EcbRates:
    """GET the daily XML and parse it, within `timeout` seconds in all (one retry on a 5xx/transport error)."""
    url = base_url.rstrip("/") + ECB_DAILY_PATH
    deadline = time.monotonic() + timeout
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout, follow_redirects=True)
    try:
        last = ""
        for attempt in range(2):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                resp = await asyncio.wait_for(http.get(url, headers={"Accept": "text/xml"}), left)
            except (TimeoutError, httpx.TimeoutException):
                raise FxError(f"{url} did not answer within {timeout:g}s") from None
            except httpx.HTTPError as exc:
                last = f"{url} unreachable: {type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    ctype = resp.headers.get("content-type", "")
                    if "html" in ctype:
                        raise FxError(f"{url} answered an HTML page ({ctype}), not the rates XML")
                    try:
                        return parse_ecb(resp.content)
                    except FxError as exc:
                        raise FxError(f"{url}: {exc}") from None
                last = f"{url} answered HTTP {resp.status_code}"
                if resp.status_code < 500:
                    break
            if attempt == 0:
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        raise FxError(last or f"{url} did not answer within {timeout:g}s")
    finally:
        if own:
            await http.aclose()


@dataclass
class Resolution:
    """The rate per currency, the rates newly fetched (to store), and why any currency has none."""

    rates: dict[str, FxRate] = field(default_factory=dict)
    fetched: dict[str, FxRate] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


Fetch = Callable[[], Awaitable[EcbRates]]


async def resolve(
    currencies: Iterable[str],
    *,
    base: str,
    manual: Mapping[str, float],
    conf: FxConf,
    stored: Mapping[str, FxRate],
    today: date,
    fetch: Fetch | None = None,
) -> Resolution:
    """Rates for `currencies` into `base`: manual `fx_rates` win, then the source, then a stored rate."""
    out = Resolution()
    base = base.upper()
    todo: list[str] = []
    for cur in sorted({c.upper() for c in currencies}):
        if cur == base:
            continue
        if cur in manual:
            out.rates[cur] = FxRate(rate=float(manual[cur]), source="manual")
        else:
            todo.append(cur)
    if not todo:
        return out
    source_problem = ""
    if conf.source == "none":
        source_problem = "asset_sync.fx.source is none"
    else:
        try:
            ecb = await (fetch() if fetch is not None else fetch_ecb(conf.base_url, conf.timeout_seconds))
        except FxError as exc:
            source_problem = f"asset_sync.fx.source ecb: {exc}"
            log.warning("fx: no rates from the ECB: %s", exc)
        else:
            for cur in list(todo):
                rate, why = ecb_cross(cur, base, ecb)
                if rate is None:
                    log.warning("fx: no %s->%s rate from the ECB (%s)", cur, base, why)
                    continue
                q = FxRate(rate=rate, date=ecb.day, source="ecb")
                out.rates[cur] = out.fetched[cur] = q
                todo.remove(cur)
            if todo:
                source_problem = "; ".join(
                    f"asset_sync.fx.source ecb: {ecb_cross(c, base, ecb)[1]}" for c in todo
                )
    for cur in todo:
        prev = stored.get(cur)
        if prev is not None and prev.rate > 0 and _age_days(prev.date, today) <= conf.max_age_days:
            out.rates[cur] = FxRate(rate=prev.rate, date=prev.date, source=f"{prev.source} (stored)")
            continue
        why = source_problem
        if prev is not None:
            why += (
                f"; the stored rate {prev.rate:g} of {prev.date} is older than "
                f"asset_sync.fx.max_age_days ({conf.max_age_days:g})"
            )
        else:
            why += "; no stored rate"
        out.missing[cur] = why.lstrip("; ")
    return out


def _age_days(day: str, today: date) -> float:
    try:
        return float((today - date.fromisoformat(day)).days)
    except ValueError:
        return math.inf


def describe(rates: Mapping[str, FxRate], base: str) -> str:
    """`USDT→CNY 7.1706 (ecb 2026-12-04)` for each rate used, for the 日志 row and the summary."""
    parts = []
    for cur, q in sorted(rates.items()):
        when = f" {q.date}" if q.date else ""
        parts.append(f"{cur}→{base} {q.rate:.6g} ({q.source}{when})")
    return ", ".join(parts)

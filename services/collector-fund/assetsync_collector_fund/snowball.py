"""The one place that touches pysnowball: pointed at the configured hosts, bounded in time, off the loop.

pysnowball keeps its configuration in module globals: URL constants in `pysnowball.api_ref`, the
`Host` header as a default argument of `utls.fetch`, the token in `os.environ["XUEQIUTOKEN"]`, and
it calls `requests` with no timeout. We cannot pass any of that per call, so `configure()` rewrites
those globals once per process from explicit settings (always from the pristine originals, so it is
idempotent), and `SnowballClient` runs every call in a worker thread under a deadline. Because the
globals are process-wide, a process talks to one Xueqiu/Danjuan target at a time: the last
`configure()` wins (one config per process in production; tests reconfigure per emulator).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from assetsync.config import XueqiuConf
from assetsync.metrics import Metrics
from assetsync.retry import Backoff

log = logging.getLogger("assetsync.collector_fund.snowball")

T = TypeVar("T")

XUEQIU_ORIGIN = "https://stock.xueqiu.com"
# pysnowball's Danjuan constants use the old host; both are "the Danjuan host" of the contract.
DANJUAN_ORIGINS = ("https://danjuanapp.com", "https://danjuanfunds.com")
COOKIE_EXPIRED = "Xueqiu cookie expired — update asset_sync.xueqiu.cookies"
XUEQIU_COOKIE_ERROR = "400016"
DANJUAN_NOT_SOLD = 600001


class CookieExpired(Exception):
    """Xueqiu rejected the cookie (error 400016): the whole fund task fails with the fix named."""

    def __init__(self) -> None:
        super().__init__(COOKIE_EXPIRED)


class FetchError(Exception):
    """One call failed; `endpoint` names it, `transient` says whether retrying may help."""

    def __init__(self, endpoint: str, reason: str, *, transient: bool) -> None:
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason
        self.transient = transient


class UnknownFund(Exception):
    """Danjuan does not know (or sell) this fund code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class HttpStatusError(Exception):
    """A non-200 answer, raised by our requests stand-in before pysnowball sees the response."""

    def __init__(self, status: int, url: str, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.url = url
        self.body = body


@dataclass(frozen=True)
class Quote:
    """A real-time quote from `quotec.json` (prices in CNY)."""

    symbol: str
    current: float
    timestamp: int  # ms of the last trade
    is_trade: bool


@dataclass(frozen=True)
class FundNav:
    """An open-end fund's latest NAV, its date and name from Danjuan."""

    code: str
    name: str
    nav: float
    nav_date: date


# --- process-wide pysnowball configuration ------------------------------------------------------


class _BoundedRequests:
    """Stands in for `requests` inside `pysnowball.utls`: adds timeouts, raises on non-200 with the status."""

    def __init__(self, timeout: float) -> None:
        # (connect, read): requests' default is to wait forever on both.
        self.timeout = (min(timeout, 10.0), timeout)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        response = requests.request(method, url, **kwargs)
        if response.status_code != 200:
            raise HttpStatusError(response.status_code, url, response.content)
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Anything else pysnowball uses (`requests.packages...`) is the real module's.
        return getattr(requests, name)


@dataclass(frozen=True)
class _Target:
    base_url: str
    fund_base_url: str
    timeout: float


# Mirrors of pysnowball's own globals (see the module docstring): its pristine URL constants, and
# what we last applied. Guarded by a lock because configure() may run from several threads.
_lock = threading.Lock()
_pristine: dict[str, str] = {}
_pristine_defaults: dict[str, tuple[Any, ...] | None] = {}
_applied: _Target | None = None


def _origin(url: str) -> str:
    return url.rstrip("/")


def configure(conf: XueqiuConf) -> None:
    """Point pysnowball at `conf`'s base URLs, with `conf`'s timeout and cookie (idempotent)."""
    global _applied
    from pysnowball import api_ref, utls
    from pysnowball import token as pstoken

    target = _Target(_origin(conf.base_url), _origin(conf.fund_base_url), float(conf.timeout_seconds))
    with _lock:
        # The token lives in os.environ; set it every time in case the cookie was renewed.
        pstoken.set_token(cookie_header(conf.cookies.get()))
        if _applied == target:
            return
        if not _pristine:
            for name, value in vars(api_ref).items():
                if isinstance(value, str) and value.startswith("http"):
                    _pristine[name] = value
            for fn_name in ("fetch", "fetch_without_token"):
                _pristine_defaults[fn_name] = getattr(utls, fn_name).__defaults__
        for name, value in _pristine.items():
            setattr(api_ref, name, _rebase(value, target))
        # pysnowball sends `Host: stock.xueqiu.com` itself; a proxy or another server routes by Host,
        # so it must name the host we actually connect to.
        host = urlsplit(target.base_url).netloc
        for fn_name in ("fetch", "fetch_without_token"):
            fn = getattr(utls, fn_name)
            fn.__defaults__ = (host,) if _pristine_defaults[fn_name] else None
        utls.requests = _BoundedRequests(target.timeout)
        _applied = target
        log.info("pysnowball pointed at %s and %s", target.base_url, target.fund_base_url)


def cookie_header(cookies: str) -> str:
    """The Cookie header from `asset_sync.xueqiu.cookies`: as given, or a bare token as `xq_a_token=...`."""
    value = cookies.strip()
    return value if "=" in value else f"xq_a_token={value};"


def _rebase(url: str, target: _Target) -> str:
    if url.startswith(XUEQIU_ORIGIN):
        return target.base_url + url[len(XUEQIU_ORIGIN) :]
    for origin in DANJUAN_ORIGINS:
        if url.startswith(origin):
            return target.fund_base_url + url[len(origin) :]
    return url


# --- the client --------------------------------------------------------------------------------


class SnowballClient:
    """Async access to the Xueqiu quote and Danjuan NAV endpoints through pysnowball."""

    def __init__(
        self,
        conf: XueqiuConf,
        *,
        deadline: float | None = None,
        retries: int = 1,
        concurrency: int = 4,
        backoff: float = 0.5,
        metrics: Metrics | None = None,
    ) -> None:
        configure(conf)
        # requests' read timeout is per socket read, so a trickling server could exceed it: the
        # deadline bounds the whole call (the worker thread then ends at requests' own timeout).
        self.deadline = deadline if deadline is not None else conf.timeout_seconds * 2 + 1.0
        self.retries = retries
        self.backoff = backoff
        self._sem = asyncio.Semaphore(concurrency)
        self._metrics = metrics
        self.calls = 0

    async def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Quotes for all `symbols` in one batched request; unknown symbols are absent from the result."""
        if not symbols:
            return {}
        from pysnowball import realtime

        endpoint = "Xueqiu quotec (/v5/stock/realtime/quotec.json)"
        body = await self._call("quotec", endpoint, realtime.quotec, ",".join(symbols))
        items = _field(body, "data", endpoint)
        if _xueqiu_error(body) or not isinstance(items, list):
            raise FetchError(endpoint, f"unexpected answer: {_brief(body)}", transient=False)
        out: dict[str, Quote] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
                continue
            current = item.get("current")
            if not isinstance(current, int | float) or isinstance(current, bool) or current <= 0:
                continue  # suspended or no trade yet: reported by the caller as "no price"
            ts = item.get("timestamp")
            out[item["symbol"].upper()] = Quote(
                symbol=item["symbol"].upper(),
                current=float(current),
                timestamp=int(ts) if isinstance(ts, int | float) else 0,
                is_trade=bool(item.get("is_trade")),
            )
        return out

    async def quote_name(self, symbol: str) -> str | None:
        """The security's name from `quote.json?extend=detail` (needs the cookie); None if unknown."""
        from pysnowball import realtime

        endpoint = f"Xueqiu quote detail (/v5/stock/quote.json) for {symbol}"
        body = await self._call("quote_detail", endpoint, realtime.quote_detail, symbol)
        if _xueqiu_error(body):
            raise FetchError(endpoint, f"error {_xueqiu_error(body)}: {_brief(body)}", transient=False)
        data = _field(body, "data", endpoint)
        quote = data.get("quote") if isinstance(data, dict) else None
        if not isinstance(quote, dict):
            return None
        name = quote.get("name")
        return name if isinstance(name, str) and name else None

    async def fund_nav(self, code: str) -> FundNav:
        """Latest NAV and its date (Danjuan fund info, falling back to the NAV history)."""
        from pysnowball import fund

        endpoint = f"Danjuan fund info (/djapi/fund/{code})"
        body = await self._call("fund_info", endpoint, fund.fund_info, code)
        data = _danjuan_data(body, code, endpoint)
        name = data.get("fd_name") if isinstance(data.get("fd_name"), str) else ""
        derived = data.get("fund_derived")
        nav_text = derived.get("unit_nav") if isinstance(derived, dict) else None
        date_text = derived.get("end_date") if isinstance(derived, dict) else None
        if not nav_text or not date_text:
            # A fund whose derived block is missing (e.g. newly launched): ask the NAV history.
            endpoint = f"Danjuan NAV history (/djapi/fund/nav/history/{code})"
            hist = await self._call("fund_nav_history", endpoint, fund.fund_nav_history, code, 1, 1)
            items = _danjuan_data(hist, code, endpoint).get("items")
            if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                raise FetchError(endpoint, "no NAV published yet", transient=False)
            nav_text, date_text = items[0].get("nav"), items[0].get("date")
        try:
            nav = float(str(nav_text))
            nav_date = date.fromisoformat(str(date_text))
        except ValueError as exc:
            raise FetchError(
                endpoint, f"unreadable NAV {nav_text!r} / date {date_text!r}", transient=False
            ) from exc
        if nav <= 0:
            raise FetchError(endpoint, f"NAV {nav_text!r} is not positive", transient=False)
        return FundNav(code=code, name=str(name or ""), nav=nav, nav_date=nav_date)

    # --- plumbing ---------------------------------------------------------------------------
    async def _call(self, label: str, endpoint: str, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking pysnowball call in a thread under the deadline; retry transient failures."""
        service = "danjuan" if label.startswith("fund") else "xueqiu"
        attempt = 0
        while True:
            try:
                async with self._sem:
                    self.calls += 1
                    if self._metrics is not None:
                        self._metrics.api_calls.labels(service, label).inc()
                    return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.deadline)
            except Exception as exc:
                err = _classify(endpoint, exc, self.deadline)
                if self._metrics is not None:
                    kind = "cookie" if isinstance(err, CookieExpired) else type(exc).__name__
                    self._metrics.api_errors.labels(service, label, kind).inc()
                if isinstance(err, CookieExpired) or not err.transient or attempt >= self.retries:
                    raise err from None
            attempt += 1
            delay = Backoff(self.backoff, cap=30.0, jitter=(0.5, 1.5)).delay(attempt)
            log.warning("%s; retrying in %.1fs", err, delay)
            await asyncio.sleep(delay)


def _classify(endpoint: str, exc: Exception, deadline: float) -> FetchError | CookieExpired:
    """Map whatever pysnowball/requests raised to a clear error naming the endpoint."""
    if isinstance(exc, TimeoutError):
        return FetchError(endpoint, f"no answer within {deadline:g}s", transient=True)
    if isinstance(exc, HttpStatusError):
        if exc.status == 400 and XUEQIU_COOKIE_ERROR in _body_error_code(exc.body):
            return CookieExpired()
        text = _snippet(exc.body)
        transient = exc.status >= 500 or exc.status in (408, 429)
        return FetchError(endpoint, f"HTTP {exc.status}" + (f": {text}" if text else ""), transient=transient)
    if isinstance(exc, requests.Timeout):
        return FetchError(endpoint, "timed out waiting for the server", transient=True)
    if isinstance(exc, requests.ConnectionError):
        return FetchError(endpoint, f"cannot connect ({_root_cause(exc)})", transient=True)
    if isinstance(exc, ValueError):  # json.JSONDecodeError and requests' subclass of it
        doc = getattr(exc, "doc", "")
        looks_html = isinstance(doc, str) and doc.lstrip()[:1] == "<"
        what = "an HTML page" if looks_html else "a body that is not valid JSON"
        return FetchError(endpoint, f"answered with {what}: {_snippet(doc)}", transient=looks_html)
    if isinstance(exc, requests.RequestException):
        return FetchError(endpoint, f"request failed ({type(exc).__name__})", transient=True)
    return FetchError(endpoint, f"unexpected {type(exc).__name__}: {exc}", transient=False)


def _body_error_code(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    return str(parsed.get("error_code", "")) if isinstance(parsed, dict) else ""


def _xueqiu_error(body: Any) -> str:
    """Xueqiu's in-body error code ("" when none): `error_code` 0 / "0" / absent means fine."""
    if not isinstance(body, dict):
        return "not an object"
    code = body.get("error_code", 0)
    return "" if code in (0, "0", None, "") else str(code)


def _field(body: Any, key: str, endpoint: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise FetchError(endpoint, f"unexpected answer without {key!r}: {_brief(body)}", transient=False)
    return body[key]


def _danjuan_data(body: Any, code: str, endpoint: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise FetchError(endpoint, f"unexpected answer: {_brief(body)}", transient=False)
    result = body.get("result_code")
    if result == DANJUAN_NOT_SOLD:
        raise UnknownFund(code, str(body.get("message") or "unknown fund"))
    data = body.get("data")
    if result not in (0, "0") or not isinstance(data, dict):
        raise FetchError(endpoint, f"result_code {result}: {_brief(body)}", transient=False)
    return data


def _brief(body: Any) -> str:
    return _snippet(json.dumps(body, ensure_ascii=False) if not isinstance(body, str) else body)


def _snippet(text: bytes | str, limit: int = 120) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return type(exc).__name__

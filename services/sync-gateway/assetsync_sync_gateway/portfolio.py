"""The /portfolio page and its read-only JSON under /api/portfolio/…, from the store's SQLite (read-only).

Access is the manager's admin rule (`access.AccessControl` classifies /api/portfolio/ as admin); the
page HTML and the vendored chart library are open, like the manager page.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from assetsync_store import views
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

T = TypeVar("T")
JSON = "application/json"
CACHE_ENTRIES = 256
_enc = msgspec.json.Encoder()
_ASSET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
STATIC = {
    "uplot/uPlot.iife.min.js": "application/javascript; charset=utf-8",
    "uplot/uPlot.min.css": "text/css; charset=utf-8",
    "uplot/LICENSE": "text/plain; charset=utf-8",
}
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class PortfolioOptions:
    """Where the store's database is and how to value it (from `asset_sync.*`)."""

    store_db: Path
    base_currency: str = "CNY"
    fx_rates: dict[str, float] = field(default_factory=dict)
    stale_hours: float = 24.0
    timezone: str = "Asia/Shanghai"


class PortfolioError(Exception):
    """An error answered as `{"error": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StoreReader:
    """Read-only connections to the store's SQLite on a small thread pool (one connection per thread)."""

    def __init__(self, path: Path, *, threads: int = 2) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="portfolio-r")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = views.open_readonly(self.path)
                self._local.conn = conn
                with self._lock:
                    self._conns.append(conn)
            return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for c in self._conns:
                c.close()
            self._conns.clear()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(data: Any) -> Response:
    return Response(_enc.encode(data), 200, media_type=JSON, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> Response:
    return Response(_enc.encode({"error": message}), status, media_type=JSON)


def _range(request: Request, default: str) -> str:
    rng = request.query_params.get("range") or default
    if rng not in views.RANGE_DAYS:
        raise PortfolioError(400, f"range: expected one of {', '.join(views.RANGE_DAYS)}")
    return rng


class PortfolioApi:
    """Handlers bound to the store reader (callers are admins: the access middleware checked)."""

    def __init__(self, opts: PortfolioOptions | None) -> None:
        self.opts = opts
        self.reader = StoreReader(opts.store_db) if opts is not None else None
        # Answers by request, valid while the store's files are unchanged (same minute).
        self._cache: OrderedDict[tuple[str, ...], tuple[tuple[int, ...], bytes]] = OrderedDict()
        pkg = resources.files("assetsync_sync_gateway")
        self.page = pkg.joinpath("portfolio.html").read_bytes()
        self.static = {name: pkg.joinpath("static", *name.split("/")).read_bytes() for name in STATIC}

    def valuation(self, conn: sqlite3.Connection) -> views.Valuation:
        assert self.opts is not None
        o = self.opts
        return views.make_valuation(
            conn,
            base_currency=o.base_currency,
            fx_rates=o.fx_rates,
            stale_hours=o.stale_hours,
            timezone=o.timezone,
        )

    def _version(self) -> tuple[int, ...]:
        """Changes whenever the store commits (its file or WAL changes) and once a minute (stale flags, ages)."""
        assert self.opts is not None
        out = [int(time.time() // 60)]
        for p in (self.opts.store_db, self.opts.store_db.with_name(self.opts.store_db.name + "-wal")):
            try:
                st = p.stat()
                out += [st.st_mtime_ns, st.st_size]
            except OSError:
                out += [0, 0]
        return tuple(out)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any], key: tuple[str, ...] = ()) -> Response:
        try:
            if self.reader is None:
                raise PortfolioError(
                    503, "this gateway has no store database configured (asset_sync.database.path)"
                )
            try:
                if not key:
                    return _json(await self.reader.read(fn))
                version = self._version()
                body = self._cache.get(key)
                if body is None or body[0] != version:
                    body = (version, _enc.encode(await self.reader.read(fn)))
                    self._cache[key] = body
                    self._cache.move_to_end(key)
                    while len(self._cache) > CACHE_ENTRIES:
                        self._cache.popitem(last=False)
                return Response(body[1], 200, media_type=JSON, headers={"Cache-Control": "no-store"})
            except views.StoreNotFound as exc:
                raise PortfolioError(503, str(exc)) from exc
            except ValueError as exc:
                raise PortfolioError(400, str(exc)) from exc
            except sqlite3.Error as exc:
                raise PortfolioError(503, f"the store's database cannot be read now: {exc}") from exc
        except PortfolioError as exc:
            return _error(exc.status, exc.message)

    async def overview(self, request: Request) -> Response:
        """Totals, 持仓 rows, allocation and the sources' freshness in one answer (the page's first paint)."""

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            now = _now_ms()
            val = self.valuation(conn)
            rows = views.holdings(conn, val, now_ms=now)
            return {
                "generated_at": now,
                "base_currency": val.base_currency,
                "rates": dict(val.rates),
                "stale_hours": val.stale_hours,
                "totals": asdict(views.totals(rows, val)),
                "holdings": [r.to_dict() for r in rows],
                "allocation": views.allocation(rows),
                "sources": [asdict(f) for f in views.freshness(conn, now_ms=now)],
                "last_snapshot": (views.net_worth(conn, "1m")["points"] or [None])[-1],
            }

        return await self._read(run, ("overview",))

    async def networth(self, request: Request) -> Response:
        rng = _range(request, "all")
        return await self._read(lambda conn: views.net_worth(conn, rng), ("networth", rng))

    async def prices(self, request: Request) -> Response:
        asset = request.path_params["asset"]
        if not asset or len(asset) > 32 or not set(asset) <= _ASSET_CHARS:
            return _error(400, "asset: expected an asset code (letters, digits, . _ -)")
        rng = _range(request, "3m")

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            got = views.price_series(conn, asset, rng, now_ms=_now_ms())
            if got is None:
                raise PortfolioError(404, f"asset {asset} is not held")
            return got

        return await self._read(run, ("prices", asset, rng))

    async def report(self, request: Request) -> Response:
        day = request.query_params.get("date") or None
        if day is not None:
            try:
                date.fromisoformat(day)
            except ValueError:
                return _error(400, "date: expected YYYY-MM-DD")

        def run(conn: sqlite3.Connection) -> dict[str, Any]:
            rep = views.day_report(conn, day, self.valuation(conn))
            if rep is None:
                raise PortfolioError(404, f"no snapshot for {day or 'any day'} yet")
            return rep.to_dict()

        return await self._read(run)

    async def page_html(self, request: Request) -> Response:
        return Response(self.page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def static_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = self.static.get(name)
        if body is None:
            return _error(404, "not found")
        return Response(
            body,
            media_type=STATIC[name],
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def _catching(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        try:
            return await fn(request)
        except PortfolioError as exc:
            return _error(exc.status, exc.message)

    handler.__name__ = fn.__name__
    return handler


def portfolio_routes(
    api: PortfolioApi, wrap: Callable[[Callable[[Request], Awaitable[Response]]], Any]
) -> list[Route]:
    """`/portfolio` and `/api/portfolio/…`; `wrap` turns the app's access errors into answers."""
    p = "/api/portfolio"
    return [
        Route("/portfolio", api.page_html, methods=["GET"]),
        Route("/portfolio/static/{name:path}", api.static_file, methods=["GET"]),
        Route(f"{p}/overview", wrap(_catching(api.overview)), methods=["GET"]),
        Route(f"{p}/networth", wrap(_catching(api.networth)), methods=["GET"]),
        Route(f"{p}/prices/{{asset}}", wrap(_catching(api.prices)), methods=["GET"]),
        Route(f"{p}/report", wrap(_catching(api.report)), methods=["GET"]),
    ]

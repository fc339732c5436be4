"""The HTTP API (CONTRACTS §5): sender and receiver routes, manager page, /metrics, /healthz, /openapi.json."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope, Send

from assetsync_sync_gateway import compression
from assetsync_sync_gateway.access import DATA_PREFIX, MAX_BODY, AccessControl
from assetsync_sync_gateway.core import Gateway
from assetsync_sync_gateway.envelope import CursorError, batch_decoder, decode_cursor, json_str
from assetsync_sync_gateway.feeds import PageResult
from assetsync_sync_gateway.live_settings import ConfigPatchError
from assetsync_sync_gateway.openapi import openapi_document
from assetsync_sync_gateway.portfolio import PortfolioApi, portfolio_routes
from assetsync_sync_gateway.receiver import outcome_dict
from assetsync_sync_gateway.registry import CODE_RE
from assetsync_sync_gateway.stats import iso

log = logging.getLogger("assetsync.gateway.sender")

DEFAULT_LIMIT = 500
MAX_LIMIT = 10000
MAX_PAGE_BYTES = 4 * 1024 * 1024
MAX_BATCH_ITEMS = 50
MAX_BATCH_BYTES = 16 * 1024 * 1024
CACHE_BYTES = 64 * 1024 * 1024
INLINE_LIMIT = 64  # pages of at most this many records are read on the event loop (cheaper than a thread hop)
CATCH_UP_WAIT = 1.0  # seconds a page request waits for a feed still catching up with its source
_ORIGIN_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_enc = msgspec.json.Encoder()
JSON = "application/json"


class ApiError(Exception):
    """An error answered as `{"error": ...}` with a status code."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_enc.encode(data), status, headers=headers, media_type=JSON)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(b'{"error":%s}' % json_str(message), status, headers=headers, media_type=JSON)


class PageCache:
    """Recently served page bodies, bounded by bytes. Keys include the feed head, so entries never go stale."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._d: OrderedDict[tuple[Any, ...], PageResult] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> PageResult | None:
        got = self._d.get(key)
        if got is not None:
            self._d.move_to_end(key)
        return got

    def put(self, key: tuple[Any, ...], value: PageResult) -> None:
        if len(value.body) > self.max_bytes // 8 or key in self._d:
            return
        self._d[key] = value
        self.size += len(value.body)
        while self.size > self.max_bytes and self._d:
            _, old = self._d.popitem(last=False)
            self.size -= len(old.body)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes (413) even without a Content-Length."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    return _int_value(request.query_params.get(name), name, default, lo, hi)


def _int_value(raw: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise ApiError(400, f"{name}: expected a whole number {lo}-{hi}")
    v = int(raw)
    if not lo <= v <= hi:
        raise ApiError(400, f"{name}: expected a whole number {lo}-{hi}")
    return v


def _bool_param(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ApiError(400, f"{name}: expected true or false")


class Api:
    """Route handlers bound to one gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.cache = PageCache()
        self.manager_html = resources.files("assetsync_sync_gateway").joinpath("manager.html").read_bytes()
        self.openapi = _enc.encode(openapi_document())

    # --- sender ---------------------------------------------------------------------------------
    def _since(self, code: str, since: str | None) -> int:
        """The position a cursor names; no cursor = the oldest record still kept (the feed's floor)."""
        st = self.gw.feeds.state(code)
        if since is None or since == "":
            return st.floor
        try:
            epoch, seq = decode_cursor(since)
        except CursorError as exc:
            raise ApiError(400, str(exc)) from exc
        if epoch != st.epoch:
            raise ApiError(
                409,
                f"the feed {code} was recreated (cursor epoch {epoch}, now {st.epoch}); resync from the start",
            )
        if seq < st.floor:
            raise ApiError(
                409,
                f"records of {code} up to seq {st.floor} are no longer kept (retention_days/max_records);"
                " resync from the oldest retained record",
                {"X-Feed-Low-Water": str(st.floor)},
            )
        return seq

    async def _caught_up(self, code: str) -> bool:
        """Whether the feed holds what its source holds (waiting briefly); 503 if its source is failing."""
        gw = self.gw
        if not gw.behind(code) or await gw.catch_up(code, CATCH_UP_WAIT):
            return True
        err = gw.sources.error(code)
        if err:
            raise ApiError(
                503,
                f"endpoint {code}: its source has records this feed cannot read yet: {err}",
                {"Retry-After": "5"},
            )
        return False

    def _code(self, code: str) -> str:
        if not CODE_RE.match(code) or self.gw.catalog.get(code) is None or not self.gw.feeds.has(code):
            raise ApiError(404, f"unknown endpoint code {code[:60]!r}")
        return code

    async def data(
        self, scope: Scope, send: Send, headers: dict[bytes, bytes], extra: list[tuple[bytes, bytes]]
    ) -> None:
        """GET …/sender/data/{code}, served straight from ASGI: it is the hot path of replication."""
        gw = self.gw
        code: str | None = None
        try:
            code = self._code(scope["path"][len(DATA_PREFIX) :])
            q = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            since = self._since(code, q.get("since"))
            limit = _int_value(q.get("limit"), "limit", gw.opts.page_limit_default, 1, MAX_LIMIT)
            exclude = q.get("exclude_origin") or None
            if exclude is not None and not _ORIGIN_RE.match(exclude):
                raise ApiError(400, "exclude_origin: expected a site id (letters, digits, _.:-)")
            # Never claim the end of a feed that lacks records its source holds (CONTRACTS §5.2).
            more = gw.behind(code) and not await self._caught_up(code)
            latest = q.get("latest")
            if latest is not None:
                if q.get("since"):
                    raise ApiError(400, "latest: cannot be combined with since")
                limit = _int_value(latest, "latest", 1, 1, MAX_LIMIT)
                since = await gw.feeds.latest_since(code, limit, exclude)
            st = gw.feeds.state(code)
            head = st.last_seq
            # The ETag names the state *after* a response (position, head), so the next poll from that
            # position with nothing new matches it: an idle poll costs a 304 and no database read.
            tag = f"{code}|{limit}|{exclude}"
            ae = headers.get(b"accept-encoding")
            enc = compression.choose(ae.decode("latin-1") if ae is not None else None)
            out = [*extra, (b"vary", b"Accept-Encoding"), (b"x-feed-head", b"%d" % head)]
            inm = headers.get(b"if-none-match")
            if not more and inm is not None and inm.decode("latin-1") == _etag(st.epoch, since, head, tag):
                out += [(b"etag", inm), (b"x-feed-position", b"%d" % since)]
                gw.sender_stats.stats.record(code, True, 0, 0, not_modified=True)
                await send({"type": "http.response.start", "status": 304, "headers": out})
                await send({"type": "http.response.body", "body": b""})
                return
            page = await self._page(code, since, limit, exclude, enc, head, st.epoch, MAX_PAGE_BYTES, more)
            out += [
                (b"etag", _etag(st.epoch, page.next_seq, head, tag).encode()),
                (b"x-feed-position", b"%d" % page.next_seq),
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(page.body)),
            ]
            if enc is not None and compression.is_compressed(page.raw_size):
                out.append((b"content-encoding", enc.encode()))
            gw.sender_stats.stats.record(code, True, len(page.body), page.count)
            await send({"type": "http.response.start", "status": 200, "headers": out})
            await send({"type": "http.response.body", "body": page.body})
        except ApiError as exc:
            gw.sender_stats.stats.record(code, False, 0)
            body = b'{"error":%s}' % json_str(exc.message)
            hdrs = [
                *extra,
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                *((k.lower().encode(), v.encode()) for k, v in exc.headers.items()),
            ]
            await send({"type": "http.response.start", "status": exc.status, "headers": hdrs})
            await send({"type": "http.response.body", "body": body})

    async def _page(
        self,
        code: str,
        since: int,
        limit: int,
        exclude: str | None,
        enc: str | None,
        head: int,
        epoch: str,
        max_bytes: int,
        more: bool = False,
    ) -> PageResult:
        key = (code, epoch, since, limit, exclude, enc, max_bytes, more)
        page = self.cache.get((*key, None)) or self.cache.get((*key, head))
        if page is None:
            page = await self.gw.feeds.page(
                code,
                since,
                limit=limit,
                max_bytes=max_bytes,
                exclude_origin=exclude,
                encode=compression.encoder(enc),
                inline=limit <= INLINE_LIMIT,
                more=more,
            )
            # A full page never changes (feeds are append-only); a last page is valid for this head only.
            self.cache.put((*key, None if page.has_more else head), page)
        return page

    async def batch(self, request: Request) -> Response:
        gw = self.gw
        try:
            body = await read_body(request, MAX_BODY)
            try:
                req = batch_decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ApiError(400, f"batch: {exc}") from exc
            if len(req.requests) > MAX_BATCH_ITEMS:
                raise ApiError(413, f"batch: at most {MAX_BATCH_ITEMS} endpoints per request")
            exclude = req.exclude_origin or None
            if exclude is not None and not _ORIGIN_RE.match(exclude):
                raise ApiError(400, "exclude_origin: expected a site id (letters, digits, _.:-)")
            parts: list[bytes] = []
            budget = MAX_BATCH_BYTES
            total_records = 0
            for item in req.requests:
                try:
                    code = self._code(item.code)
                    since = self._since(code, item.since)
                    limit = item.limit if item.limit is not None else gw.opts.page_limit_default
                    if not 1 <= limit <= MAX_LIMIT:
                        raise ApiError(400, f"limit: expected a whole number 1-{MAX_LIMIT}")
                    if budget <= 0:
                        raise ApiError(413, "batch: byte budget of this response used up; ask again")
                    more = not await self._caught_up(code)
                    st = gw.feeds.state(code)
                    page = await self._page(
                        code,
                        since,
                        limit,
                        exclude,
                        None,
                        st.last_seq,
                        st.epoch,
                        min(MAX_PAGE_BYTES, budget),
                        more,
                    )
                    budget -= len(page.body)
                    total_records += page.count
                    parts.append(page.body)
                    gw.sender_stats.stats.record(code, True, len(page.body), page.count)
                except ApiError as exc:
                    gw.sender_stats.stats.record(None, False, 0)
                    parts.append(
                        b'{"code":%s,"status":%d,"error":%s}'
                        % (json_str(item.code[:60]), exc.status, json_str(exc.message))
                    )
            raw = b'{"results":[%s]}' % b",".join(parts)
            enc = compression.choose(request.headers.get("accept-encoding"))
            headers = {"Vary": "Accept-Encoding"}
            out = raw
            encode = compression.encoder(enc)
            if encode is not None and compression.is_compressed(len(raw)):
                out = encode(raw)
                headers["Content-Encoding"] = str(enc)
            gw.sender_stats.stats.record(None, True, len(out))
            return Response(out, 200, headers=headers, media_type=JSON)
        except ApiError as exc:
            gw.sender_stats.stats.record(None, False, 0)
            return error_response(exc.status, exc.message, exc.headers)

    async def catalog(self, request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip().lower()
        eps = [e.public() for e in self.gw.catalog.endpoints.values()]
        if q:
            eps = [
                e
                for e in eps
                if any(
                    q in str(e.get(k) or "").lower()
                    for k in ("code", "name", "api_path", "description", "category", "category_name")
                )
            ]
        for e in eps:
            if self.gw.feeds.has(e["code"]):
                st = self.gw.feeds.state(e["code"])
                e["records"] = st.count
                e["head"] = st.last_seq
        self.gw.sender_stats.stats.record(None, True, 0)
        return json_response(
            {
                "site_id": self.gw.site_id,
                "total": len(eps),
                "total_endpoints": len(self.gw.catalog.endpoints),
                "categories": self.gw.catalog.categories(),
                "endpoints": eps,
            }
        )

    async def sender_status(self, request: Request) -> Response:
        return json_response(self.sender_status_doc())

    def sender_status_doc(self) -> dict[str, Any]:
        gw = self.gw
        s = gw.sender_stats.stats
        eps: dict[str, Any] = {}
        for code, st in gw.feeds.states().items():
            es = s.endpoint_stats.get(code)
            d: dict[str, Any] = msgspec.structs.asdict(es) if es is not None else {}
            d["last_request_time"] = iso(es.last_request_time) if es else None
            d.update(records=st.count, head=st.last_seq, low_water=st.floor)
            src = gw.sources.status.get(code)
            if src is not None:
                d.update(source_last_poll=iso(src.last_poll), source_error=src.last_error)
            eps[code] = d
        return {
            "enabled": gw.config.sender.enabled,
            "site_id": gw.site_id,
            "auth_required": bool(gw.config.sender_tokens()),
            "total_endpoints": len(gw.catalog.endpoints),
            "total_categories": len(gw.catalog.categories()),
            "total_requests": s.total_requests,
            "successful_requests": s.successful_requests,
            "failed_requests": s.failed_requests,
            "total_bytes_sent": s.total_bytes_sent,
            "last_request_time": iso(s.last_request_time),
            "endpoint_stats": eps,
            # FeedRecords of codes this catalog does not take natively, by code (see README).
            "ignored_feed_records": dict(gw.ignored_records),
        }

    async def sender_config_get(self, request: Request) -> Response:
        return json_response(self.gw.config.public()["sender"])

    async def _patch_settings(
        self, request: Request, section: str, update: Callable[[bytes], None]
    ) -> Response:
        """Validate and persist a settings change (400 naming the key); answer the section as it is now."""
        body = await read_body(request, MAX_BODY)
        try:
            update(body)
        except ConfigPatchError as exc:
            raise ApiError(400, str(exc)) from exc
        logging.getLogger(f"assetsync.gateway.{section}").info("%s settings changed", section)
        return json_response({"ok": True, "config": self.gw.config.public()[section]})

    async def sender_config_post(self, request: Request) -> Response:
        return await self._patch_settings(request, "sender", self.gw.config.update_sender)

    # --- receiver -------------------------------------------------------------------------------
    def _receiver_on(self) -> None:
        if not self.gw.config.receiver.enabled:
            raise ApiError(409, "the receiver is disabled (sync_gateway.receiver.enabled)")

    async def receiver_status(self, request: Request) -> Response:
        return json_response(self.gw.receiver.status())

    async def receiver_config_get(self, request: Request) -> Response:
        return json_response(self.gw.config.public()["receiver"])

    async def receiver_config_post(self, request: Request) -> Response:
        resp = await self._patch_settings(request, "receiver", self.gw.config.update_receiver)
        self.gw.receiver.wake()  # a new remote or interval applies now, not after the old wait
        return resp

    async def sync_all(self, request: Request) -> Response:
        wait = _bool_param(request, "wait")
        self._receiver_on()
        task = self.gw.receiver.start_sync_all()
        if not wait:
            return json_response({"started": True, "syncing": True}, 202)
        results = await task
        return json_response({"results": [outcome_dict(r) for r in results]})

    async def sync_one(self, request: Request) -> Response:
        code = request.path_params["code"]
        wait = _bool_param(request, "wait")
        if not CODE_RE.match(code):
            raise ApiError(404, f"unknown endpoint code {code[:60]!r}")
        self._receiver_on()
        try:
            codes = await self.gw.receiver.remote_codes()
        except Exception as exc:
            raise ApiError(409, f"cannot check the code against the remote catalog: {exc}") from exc
        if code not in codes:
            raise ApiError(404, f"unknown endpoint code {code!r} (not in the remote catalog)")
        task, started = self.gw.receiver.start_sync(code)
        if not wait:
            return json_response({"started": started, "code": code, "already_running": not started}, 202)
        result = await task
        return json_response({"results": [outcome_dict(result)]})

    async def start_auto(self, request: Request) -> Response:
        self.gw.config.update_receiver(b'{"auto_sync": true, "enabled": true}')
        self.gw.receiver.wake()
        return json_response({"ok": True, "auto_sync": True})

    async def stop_auto(self, request: Request) -> Response:
        self.gw.config.update_receiver(b'{"auto_sync": false}')
        self.gw.receiver.wake()
        return json_response({"ok": True, "auto_sync": False})

    async def logs(self, request: Request) -> Response:
        kind = request.query_params.get("kind", "system")
        limit = _int_param(request, "limit", 200, 1, 1000)
        if kind == "system":
            items: list[dict[str, Any]] = self.gw.logs.recent(limit=limit)
        elif kind == "sync":
            items = await self.gw.received.runs(limit)
        elif kind == "error":
            items = self.gw.logs.recent(min_level=logging.WARNING, limit=limit)
        else:
            raise ApiError(400, "kind: expected system, sync or error")
        for it in items:
            if isinstance(it.get("at"), float):
                it["time"] = iso(it["at"])
        return json_response({"kind": kind, "items": items})

    # --- open routes ----------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        ok = self.gw.started and self.gw.ready()
        return json_response(
            {
                "ok": ok,
                "site_id": self.gw.site_id,
                "sender": self.gw.config.sender.enabled,
                "receiver": self.gw.config.receiver.enabled,
            },
            200 if ok else 503,
        )

    async def metrics(self, request: Request) -> Response:
        # The gateway's own series only: portfolio and per-asset values stay on metrics.port (§5.1).
        return Response(self.gw.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type=JSON)

    async def manager(self, request: Request) -> Response:
        return Response(
            self.manager_html,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
            },
        )


def _etag(epoch: str, position: int, head: int, tag: str) -> str:
    return f'W/"{epoch[:8]}.{position}.{head}.{tag}"'


def _wrap(fn: Any) -> Any:
    """Turn ApiError into its JSON answer (the data route handles its own for speed and statistics)."""

    async def handler(request: Request) -> Response:
        try:
            resp: Response = await fn(request)
            return resp
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)

    handler.__name__ = fn.__name__
    return handler


def create_app(gw: Gateway, *, manage: bool = True) -> Starlette:
    """The ASGI app; with `manage`, its lifespan starts and stops the gateway's resources."""
    api = Api(gw)
    p = "/api/data-sync"
    routes = [
        Route(f"{p}/sender/batch", _wrap(api.batch), methods=["POST"]),
        Route(f"{p}/sender/status", _wrap(api.sender_status), methods=["GET"]),
        Route(f"{p}/sender/catalog", _wrap(api.catalog), methods=["GET"]),
        Route(f"{p}/sender/config", _wrap(api.sender_config_get), methods=["GET"]),
        Route(f"{p}/sender/config", _wrap(api.sender_config_post), methods=["POST"]),
        Route(f"{p}/receiver/status", _wrap(api.receiver_status), methods=["GET"]),
        Route(f"{p}/receiver/config", _wrap(api.receiver_config_get), methods=["GET"]),
        Route(f"{p}/receiver/config", _wrap(api.receiver_config_post), methods=["POST"]),
        Route(f"{p}/receiver/sync-all", _wrap(api.sync_all), methods=["POST"]),
        Route(f"{p}/receiver/sync/{{code}}", _wrap(api.sync_one), methods=["POST"]),
        Route(f"{p}/receiver/start-auto-sync", _wrap(api.start_auto), methods=["POST"]),
        Route(f"{p}/receiver/stop-auto-sync", _wrap(api.stop_auto), methods=["POST"]),
        Route(f"{p}/logs", _wrap(api.logs), methods=["GET"]),
        Route("/data-sync-manager", api.manager, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi_json, methods=["GET"]),
    ]
    portfolio = PortfolioApi(gw.opts.portfolio)  # access: AccessControl (admin rights, like the manager)
    routes += portfolio_routes(portfolio, _wrap)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage:
            try:
                await gw.start()
            except Exception as exc:
                gw.start_error = exc
                raise
        try:
            yield
        finally:
            portfolio.close()
            if manage:
                await gw.stop()

    app = Starlette(routes=routes, lifespan=lifespan)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, "not found")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, "method not allowed")

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)
    app.add_exception_handler(Exception, server_error)
    # Access rules, then the data route straight from ASGI (the replication hot path).
    app.add_middleware(AccessControl, gw=gw, data_route=api.data)
    if gw.opts.conf.allowed_origins:
        # A deliberate cross-origin admin UI (sync_gateway.allowed_origins) needs CORS answers, preflights included.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.rstrip("/") for o in gw.opts.conf.allowed_origins],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.state.api = api
    app.state.started_at = time.time()
    return app

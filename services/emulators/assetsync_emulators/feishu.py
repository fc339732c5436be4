"""Feishu Open Platform emulator: tenant tokens and Bitable apps/tables/fields/records, with real shapes.

Faithful to what the client meets in production: tokens that expire, `code`/`msg`/`data` envelopes,
rich-text cells in search results, field-type validation (1254060-64), unknown field names (1254045),
batch limits, a per-second QPS limit (HTTP 429, code 99991400, `x-ogw-ratelimit-*` headers), concurrent
writes to one table refused with 1254291 (plus a switch forcing N of them), idempotent `client_token`
creates, and the shared FaultSwitch for 5xx, timeouts and garbage.
"""

from __future__ import annotations

import asyncio
import base64
import math
import secrets
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from assetsync.feishu import schema as fs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from assetsync_emulators.common import FaultMiddleware, FaultSwitch

_ALNUM = string.ascii_letters + string.digits
MAX_CREATE = 1000
MAX_UPDATE = 1000
MAX_DELETE = 500
MAX_PAGE = 500


def _id(prefix: str, n: int = 12) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(n))


class ApiError(Exception):
    """An Open Platform error envelope to answer with."""

    def __init__(
        self, code: int, msg: str, status: int = 400, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = dict(headers or {})


@dataclass
class EmuField:
    field_id: str
    name: str
    type: int
    property: dict[str, Any] | None = None
    is_primary: bool = False

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "field_id": self.field_id,
            "field_name": self.name,
            "type": self.type,
            "is_primary": self.is_primary,
            "ui_type": fs.UI_TYPES.get(self.type, "Text"),
            "property": self.property,
        }
        return out


@dataclass
class EmuTable:
    table_id: str
    name: str
    fields: list[EmuField] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    revision: int = 1
    writing: bool = False

    def field_by_name(self, name: str) -> EmuField | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass
class FeishuEmulator:
    """State and behaviour of one Feishu tenant with Bitable apps; `.app` is the ASGI app to serve."""

    app_id: str = "cli_emulator0000001"
    app_secret: str = "emulator-app-secret"
    app_token: str = "bascnEmulatorApp0001"
    token_ttl: float = 7200.0
    qps_limit: int | None = None  # requests per second to the Bitable API, None = unlimited
    write_latency: float = 0.0  # seconds a record write holds the table (makes 1254291 observable)
    switch: FaultSwitch = field(default_factory=FaultSwitch)
    conflicts: int = 0  # the next N record writes answer 1254291
    calls: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    apps: dict[str, dict[str, EmuTable]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    _window: tuple[int, int] = (0, 0)
    _client_tokens: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.apps.setdefault(self.app_token, {})

    # --- helpers for tests and the demo ---------------------------------------------------
    @property
    def app(self) -> ASGIApp:
        return FaultMiddleware(self._starlette(), self.switch)

    def tables(self, app_token: str | None = None) -> dict[str, EmuTable]:
        return self.apps[app_token or self.app_token]

    def table(self, name: str, app_token: str | None = None) -> EmuTable:
        for t in self.tables(app_token).values():
            if t.name == name:
                return t
        raise KeyError(f"no table named {name!r}")

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The plain cells of every row of a table, in creation order."""
        return [dict(r) for r in self.table(name).records.values()]

    def add_table(self, name: str, fields: list[tuple[str, int]] | None = None) -> EmuTable:
        t = EmuTable(_id("tbl", 12), name)
        for i, (fname, ftype) in enumerate(fields or [("多行文本", fs.TEXT)]):
            t.fields.append(EmuField(_id("fld", 10), fname, ftype, None, i == 0))
        self.tables()[t.table_id] = t
        return t

    def add_record(self, table_name: str, cells: Mapping[str, Any]) -> str:
        """A row typed in by hand in the Feishu UI."""
        t = self.table(table_name)
        rid = _id("rec", 10)
        t.records[rid] = self._validated(t, cells, {})
        return rid

    def rename_field(self, table_name: str, old: str, new: str) -> None:
        """What a user renaming a column in the UI does."""
        t = self.table(table_name)
        f = t.field_by_name(old)
        if f is None:
            raise KeyError(old)
        f.name = new
        for cells in t.records.values():
            if old in cells:
                cells[new] = cells.pop(old)

    def seed_demo(self, funds: Sequence[tuple[str, str, float, float]] = ()) -> None:
        """Create 持仓/历史/日志 as setup-tables would, plus hand-kept fund rows (code, name, quantity, cost)."""
        for spec in fs.TABLES:
            if any(t.name == spec.name for t in self.tables().values()):
                continue
            t = EmuTable(_id("tbl", 12), spec.name)
            for i, f in enumerate(spec.fields):
                t.fields.append(self._new_field(t, f.body(), primary=i == 0))
            self.tables()[t.table_id] = t
        for code, name, qty, cost in funds:
            self.add_record(
                fs.HOLDINGS.name,
                {fs.CODE: code, fs.NAME: name, fs.ASSET_TYPE: fs.TYPE_FUND, fs.CURRENCY: "CNY",
                 fs.QUANTITY: qty, fs.AVG_COST: cost},
            )  # fmt: skip

    def expire_tokens(self) -> None:
        """Invalidate every issued tenant token (the next call gets 99991663)."""
        self.tokens.clear()

    def reset_counts(self) -> None:
        self.calls.clear()
        self.rate_limited = 0
        self.switch.reset_log()

    # --- plumbing -------------------------------------------------------------------------
    def _starlette(self) -> Starlette:
        base = "/open-apis/bitable/v1/apps/{app_token}"
        table = base + "/tables/{table_id}"
        api = self._api
        routes = [
            Route("/open-apis/auth/v3/tenant_access_token/internal", self._token, methods=["POST"]),
            Route(f"{base}/tables", api("tables.list", self._list_tables), methods=["GET"]),
            Route(f"{base}/tables", api("tables.create", self._create_table), methods=["POST"]),
            Route(f"{table}/fields", api("fields.list", self._list_fields), methods=["GET"]),
            Route(f"{table}/fields", api("fields.create", self._create_field), methods=["POST"]),
            Route(f"{table}/records", api("records.list", self._list_records), methods=["GET"]),
            Route(f"{table}/records/search", api("records.search", self._search), methods=["POST"]),
            Route(
                f"{table}/records/batch_create",
                api("records.batch_create", self._batch_create),
                methods=["POST"],
            ),
            Route(
                f"{table}/records/batch_update",
                api("records.batch_update", self._batch_update),
                methods=["POST"],
            ),
            Route(
                f"{table}/records/batch_delete",
                api("records.batch_delete", self._batch_delete),
                methods=["POST"],
            ),
        ]
        return Starlette(routes=routes)

    def _api(
        self, kind: str, handler: Callable[[Request], Awaitable[dict[str, Any]]]
    ) -> Callable[[Request], Awaitable[JSONResponse]]:
        """An Open Platform endpoint: counted, authenticated, rate limited, errors as envelopes."""

        async def endpoint(request: Request) -> JSONResponse:
            self.calls[kind] += 1
            try:
                self._check_rate()  # the gateway limits before it looks at the token
                self._check_auth(request)
                return self._ok(await handler(request))
            except ApiError as e:
                return self._err(e)

        return endpoint

    @staticmethod
    def _ok(data: Any) -> JSONResponse:
        return JSONResponse({"code": 0, "msg": "success", "data": data})

    @staticmethod
    def _err(e: ApiError) -> JSONResponse:
        body = {"code": e.code, "msg": e.msg, "error": {"log_id": _id("", 20)}}
        return JSONResponse(body, status_code=e.status, headers=e.headers)

    def _check_rate(self) -> None:
        if self.qps_limit is None:
            return
        now = time.monotonic()
        second = int(now)
        window, count = self._window
        count = count + 1 if window == second else 1
        self._window = (second, count)
        if count > self.qps_limit:
            self.rate_limited += 1
            reset = max(1, math.ceil(second + 1 - now))
            raise ApiError(
                99991400,
                "request trigger frequency limit",
                429,
                {"x-ogw-ratelimit-limit": str(self.qps_limit), "x-ogw-ratelimit-reset": str(reset)},
            )

    def _check_auth(self, request: Request) -> None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(
                99991661, "Missing access token for authorization. Please make a request with token attached."
            )
        token = auth[7:].strip()
        expiry = self.tokens.get(token)
        if expiry is None or expiry <= time.monotonic():
            self.tokens.pop(token, None)
            raise ApiError(
                99991663, "Invalid access token for authorization. Please make a request with token attached."
            )

    def _app_tables(self, request: Request) -> dict[str, EmuTable]:
        app_token = request.path_params["app_token"]
        if app_token not in self.apps:
            raise ApiError(1254040, "BaseTokenNotFound")
        return self.apps[app_token]

    def _table(self, request: Request) -> EmuTable:
        tables = self._app_tables(request)
        t = tables.get(request.path_params["table_id"])
        if t is None:
            raise ApiError(1254041, "TableIdNotFound")
        return t

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError as exc:
            raise ApiError(1254000, "WrongRequestJson") from exc
        if not isinstance(data, dict):
            raise ApiError(1254001, "WrongRequestBody")
        return data

    # --- token ----------------------------------------------------------------------------
    async def _token(self, request: Request) -> JSONResponse:
        self.calls["token"] += 1
        try:
            body = await self._body(request)
        except ApiError as e:
            return self._err(e)
        if body.get("app_id") != self.app_id:
            return JSONResponse({"code": 10003, "msg": "invalid param: app_id"}, status_code=400)
        if body.get("app_secret") != self.app_secret:
            return JSONResponse({"code": 10014, "msg": "app secret invalid"}, status_code=400)
        now = time.monotonic()
        # Like Feishu: the same token until less than a quarter of its life (max 30 min) is left.
        fresh_for = min(1800.0, self.token_ttl / 4)
        live = [(t, exp) for t, exp in self.tokens.items() if exp - now > fresh_for]
        if live:
            token, exp = max(live, key=lambda p: p[1])
        else:
            token, exp = "t-" + secrets.token_hex(20), now + self.token_ttl
            self.tokens[token] = exp
        return JSONResponse(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": max(1, round(exp - now))}
        )

    # --- tables and fields ----------------------------------------------------------------
    async def _list_tables(self, request: Request) -> dict[str, Any]:
        items = [
            {"table_id": t.table_id, "revision": t.revision, "name": t.name}
            for t in self._app_tables(request).values()
        ]
        return self._page(items, request.query_params, 20, 100)

    async def _create_table(self, request: Request) -> dict[str, Any]:
        tables = self._app_tables(request)
        spec = (await self._body(request)).get("table") or {}
        name = str(spec.get("name", "")).strip()
        if not name:
            raise ApiError(1254001, "WrongRequestBody")
        if any(t.name == name for t in tables.values()):
            raise ApiError(1254013, "TableNameDuplicated")
        t = EmuTable(_id("tbl", 12), name)
        for i, f in enumerate(spec.get("fields") or [{"field_name": "多行文本", "type": fs.TEXT}]):
            t.fields.append(self._new_field(t, f, primary=i == 0))
        tables[t.table_id] = t
        return {
            "table_id": t.table_id,
            "default_view_id": _id("vew", 10),
            "field_id_list": [f.field_id for f in t.fields],
        }

    def _new_field(self, t: EmuTable, spec: Mapping[str, Any], *, primary: bool = False) -> EmuField:
        name = str(spec.get("field_name", "")).strip()
        ftype = spec.get("type")
        if not name or not isinstance(ftype, int):
            raise ApiError(1254001, "WrongRequestBody")
        if t.field_by_name(name) is not None:
            raise ApiError(1254014, "FieldNameDuplicated")
        prop = spec.get("property")
        if ftype in (fs.SINGLE_SELECT, fs.MULTI_SELECT):
            opts = [
                {"name": str(o.get("name")), "id": _id("opt", 8), "color": i % 54}
                for i, o in enumerate((prop or {}).get("options") or [])
            ]
            prop = {"options": opts}
        return EmuField(_id("fld", 10), name, ftype, prop, primary)

    async def _list_fields(self, request: Request) -> dict[str, Any]:
        return self._page([f.json() for f in self._table(request).fields], request.query_params, 20, 100)

    async def _create_field(self, request: Request) -> dict[str, Any]:
        t = self._table(request)
        async with self._writing(t):
            f = self._new_field(t, await self._body(request))
            t.fields.append(f)
            t.revision += 1
        return {"field": f.json()}

    # --- records --------------------------------------------------------------------------
    def _validated(self, t: EmuTable, cells: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(current)
        for name, value in cells.items():
            f = t.field_by_name(name)
            if f is None:
                raise ApiError(1254045, "FieldNameNotFound")
            if value is None:
                out.pop(name, None)
                continue
            out[name] = self._convert(f, value)
        return out

    @staticmethod
    def _convert(f: EmuField, value: Any) -> Any:
        if f.type == fs.TEXT:
            if isinstance(value, str):
                return value
            if isinstance(value, list) and all(isinstance(v, Mapping) and "text" in v for v in value):
                return "".join(str(v["text"]) for v in value)
            raise ApiError(1254060, "TextFieldConvFail")
        if f.type == fs.NUMBER:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return value
            raise ApiError(1254061, "NumberFieldConvFail")
        if f.type == fs.SINGLE_SELECT:
            if not isinstance(value, str):
                raise ApiError(1254062, "SingleSelectFieldConvFail")
            if f.property is None:
                f.property = {"options": []}
            opts = f.property.setdefault("options", [])
            if value not in [o.get("name") for o in opts]:
                # Feishu adds an unknown option to a single select on write.
                opts.append({"name": value, "id": _id("opt", 8), "color": len(opts) % 54})
            return value
        if f.type == fs.DATETIME:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise ApiError(1254064, "DatetimeFieldConvFail")
        if f.type == fs.CHECKBOX:
            if isinstance(value, bool):
                return value
            raise ApiError(1254065, "CheckboxFieldConvFail")
        return value

    @staticmethod
    def _rich(t: EmuTable, cells: Mapping[str, Any], names: list[str] | None) -> dict[str, Any]:
        """Cells as search returns them: text as a list of rich-text segments, empty cells omitted."""
        out: dict[str, Any] = {}
        for name, value in cells.items():
            if names is not None and name not in names:
                continue
            f = t.field_by_name(name)
            if f is not None and f.type == fs.TEXT:
                out[name] = [{"text": value, "type": "text"}]
            else:
                out[name] = value
        return out

    @staticmethod
    def _page(items: list[Any], query: Mapping[str, str], default: int, limit: int) -> dict[str, Any]:
        try:
            size = int(query.get("page_size", default))
        except ValueError as exc:
            raise ApiError(1254010, "ReqConvError") from exc
        if size <= 0:
            raise ApiError(1254011, "Page size must greater than 0.")
        size = min(size, limit)
        start = 0
        token = query.get("page_token")
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("pt:"))
            except ValueError as exc:
                raise ApiError(1254030, "InvalidPageToken") from exc
        chunk = items[start : start + size]
        more = start + size < len(items)
        out: dict[str, Any] = {"items": chunk, "has_more": more, "total": len(items)}
        if more:
            out["page_token"] = base64.urlsafe_b64encode(f"pt:{start + size}".encode()).decode()
        return out

    def _matches(self, t: EmuTable, cells: Mapping[str, Any], flt: Mapping[str, Any] | None) -> bool:
        if not flt:
            return True
        results = []
        for cond in flt.get("conditions") or []:
            name = str(cond.get("field_name", ""))
            if t.field_by_name(name) is None:
                raise ApiError(1254045, "FieldNameNotFound")
            op = cond.get("operator", "is")
            want = [str(v) for v in cond.get("value") or []]
            have = cells.get(name)
            text = "" if have is None else str(have)
            if op == "is":
                results.append(have is not None and text in want)
            elif op == "isNot":
                results.append(have is None or text not in want)
            elif op == "contains":
                results.append(have is not None and any(w in text for w in want))
            elif op == "isEmpty":
                results.append(have is None or text == "")
            elif op == "isNotEmpty":
                results.append(have is not None and text != "")
            else:
                raise ApiError(1254018, "InvalidFilter")
        if not results:
            return True
        return any(results) if flt.get("conjunction") == "or" else all(results)

    async def _search(self, request: Request) -> dict[str, Any]:
        t = self._table(request)
        body = await self._body(request)
        names = body.get("field_names")
        for n in names or []:
            if t.field_by_name(str(n)) is None:
                raise ApiError(1254045, "FieldNameNotFound")
        items = [
            {"record_id": rid, "fields": self._rich(t, cells, names)}
            for rid, cells in t.records.items()
            if self._matches(t, cells, body.get("filter"))
        ]
        return self._page(items, request.query_params, 20, MAX_PAGE)

    async def _list_records(self, request: Request) -> dict[str, Any]:
        t = self._table(request)
        items = [{"record_id": rid, "id": rid, "fields": dict(cells)} for rid, cells in t.records.items()]
        return self._page(items, request.query_params, 20, MAX_PAGE)

    class _Writing:
        def __init__(self, emu: FeishuEmulator, t: EmuTable) -> None:
            self.emu, self.t = emu, t

        async def __aenter__(self) -> None:
            if self.emu.conflicts > 0:
                self.emu.conflicts -= 1
                raise ApiError(1254291, "Write conflict")
            if self.t.writing:
                raise ApiError(1254291, "Write conflict")
            self.t.writing = True
            if self.emu.write_latency:
                await asyncio.sleep(self.emu.write_latency)

        async def __aexit__(self, *exc: object) -> None:
            self.t.writing = False

    def _writing(self, t: EmuTable) -> FeishuEmulator._Writing:
        return FeishuEmulator._Writing(self, t)

    async def _records_body(self, request: Request, limit: int) -> tuple[EmuTable, list[Any]]:
        t = self._table(request)
        recs = (await self._body(request)).get("records")
        if not isinstance(recs, list) or not recs:
            raise ApiError(1254001, "WrongRequestBody")
        if len(recs) > limit:
            raise ApiError(1254104, f"RecordAddOnceExceedLimit: at most {limit} records per request")
        return t, recs

    async def _batch_create(self, request: Request) -> dict[str, Any]:
        t, recs = await self._records_body(request, MAX_CREATE)
        ctoken = request.query_params.get("client_token")
        if ctoken and (t.table_id, ctoken) in self._client_tokens:
            return self._client_tokens[(t.table_id, ctoken)]  # idempotent retry: the same answer
        async with self._writing(t):
            staged = [self._validated(t, r.get("fields") or {}, {}) for r in recs]
            out = []
            for cells in staged:
                rid = _id("rec", 10)
                t.records[rid] = cells
                out.append({"record_id": rid, "id": rid, "fields": dict(cells)})
        data = {"records": out}
        if ctoken:
            self._client_tokens[(t.table_id, ctoken)] = data
        return data

    async def _batch_update(self, request: Request) -> dict[str, Any]:
        t, recs = await self._records_body(request, MAX_UPDATE)
        async with self._writing(t):
            staged = []
            for r in recs:
                rid = str(r.get("record_id", ""))
                if rid not in t.records:
                    raise ApiError(1254043, "RecordIdNotFound")
                staged.append((rid, self._validated(t, r.get("fields") or {}, t.records[rid])))
            out = []
            for rid, cells in staged:  # all or nothing, like Feishu
                t.records[rid] = cells
                out.append({"record_id": rid, "id": rid, "fields": dict(cells)})
        return {"records": out}

    async def _batch_delete(self, request: Request) -> dict[str, Any]:
        t, recs = await self._records_body(request, MAX_DELETE)
        async with self._writing(t):
            out = [
                {"deleted": t.records.pop(str(rid), None) is not None, "record_id": str(rid)} for rid in recs
            ]
        return {"records": out}

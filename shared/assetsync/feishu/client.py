"""A thin async client for the Feishu Open Platform Bitable API (token cache, paging, limits, retries)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx

from assetsync.feishu import errors as fe
from assetsync.feishu import schema
from assetsync.feishu.schema import FieldSpec
from assetsync.retry import Backoff
from assetsync.secrets import Secret

if TYPE_CHECKING:
    from assetsync.config import Settings
    from assetsync.metrics import Metrics

log = logging.getLogger("assetsync.feishu")

API: Final = "/open-apis"
TOKEN_PATH: Final = f"{API}/auth/v3/tenant_access_token/internal"
# Documented per-request limits of the Bitable record batch endpoints.
MAX_CREATE: Final = 1000
MAX_UPDATE: Final = 1000
MAX_DELETE: Final = 500
MAX_PAGE: Final = 500
WRITE_KINDS: Final = frozenset(
    {"records.batch_create", "records.batch_update", "records.batch_delete", "fields.create", "tables.create"}
)


@dataclass(frozen=True)
class TableInfo:
    """A table of the Bitable app."""

    table_id: str
    name: str
    revision: int = 0


@dataclass(frozen=True)
class FieldInfo:
    """A field of a table as Feishu reports it."""

    field_id: str
    name: str
    type: int
    property: Mapping[str, Any] | None = None
    is_primary: bool = False

    def option_names(self) -> list[str]:
        opts = (self.property or {}).get("options") or []
        return [str(o.get("name", "")) for o in opts if isinstance(o, Mapping)]


@dataclass(frozen=True)
class Record:
    """One row: its record id and its cells, normalized to plain values (see `plain`)."""

    record_id: str
    fields: dict[str, Any]


def plain(value: Any) -> Any:
    """A cell as a plain value: rich-text segment lists → str, url objects → text, else unchanged."""
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) and "text" in v for v in value):
            return "".join(str(v.get("text", "")) for v in value)
        return [plain(v) for v in value]
    if isinstance(value, Mapping) and "text" in value and ("link" in value or "type" in value):
        return str(value["text"])
    return value


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Pacer:
    """Client-side request pacing: a ceiling rate, a global pause after 99991400, and AIMD recovery."""

    def __init__(self, max_qps: float | None) -> None:
        self.ceiling = max_qps
        self.rate = max_qps
        self.hint: float | None = None  # the limit Feishu reported (x-ogw-ratelimit-limit)
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a slot; re-checked after every wait, so a pause that began meanwhile holds us too."""
        while True:
            async with self._lock:
                now = time.monotonic()
                start = max(now, self._next, self._paused_until)
                if start <= now:
                    if self.rate:
                        self._next = now + 1.0 / self.rate
                    return
            await asyncio.sleep(start - now)

    def limited(self, reset: float, limit_hint: float | None) -> None:
        """Feishu said slow down: everyone waits for the reset; the rate halves once per episode."""
        now = time.monotonic()
        if limit_hint:
            self.hint = limit_hint if self.hint is None else min(self.hint, limit_hint)
        if self._paused_until <= now:  # a new episode, not the rest of one burst
            known = [r for r in (self.rate, self.hint) if r]
            self.rate = max(1.0, (min(known) if known else 10.0) / 2.0)
        self._paused_until = max(self._paused_until, now + reset)
        self._next = max(self._next, self._paused_until)

    def success(self) -> None:
        """Additive increase, never above the configured ceiling or Feishu's stated limit."""
        if self.rate is None:
            return
        self.rate += 0.25
        caps = [c for c in (self.ceiling, self.hint) if c]
        if caps:
            self.rate = min(self.rate, min(caps))
        elif self.rate > 1000:
            self.rate = None


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a single call tries before giving up with a transient error."""

    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    budget: float = 120.0  # seconds a call may spend retrying in total

    def backoff(self, attempt: int) -> float:
        """Jittered exponential backoff ("full jitter" above a floor of half the base)."""
        return Backoff(self.backoff_base, self.backoff_cap, self.max_attempts).delay(attempt)


@dataclass
class CallStats:
    """Calls per endpoint kind, for tests and benchmarks."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    token_refreshes: int = 0

    def writes(self) -> int:
        return sum(n for k, n in self.calls.items() if k in WRITE_KINDS)

    def total(self, *, include_token: bool = False) -> int:
        return sum(n for k, n in self.calls.items() if include_token or k != "token")


class FeishuClient:
    """One Bitable app: tables, fields and records, with the Open Platform's limits handled."""

    def __init__(
        self,
        base_url: str,
        app_id: str,
        app_secret: Secret,
        app_token: str,
        *,
        timeout: float = 15.0,
        max_qps: float | None = 20.0,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self.app_token = app_token
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        self.table_names: dict[str, str] = {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._pacer = _Pacer(max_qps)
        self._token = ""
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._table_locks: dict[str, asyncio.Lock] = {}
        self._metrics = metrics
        if metrics is not None:
            self._m_calls = metrics.api_calls
            self._m_errors = metrics.api_errors

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: Metrics | None = None, **kw: Any) -> FeishuClient:
        """Built from `asset_sync.feishu.*` and `mcp_server.app_id/app_secret`."""
        cfg = settings.config
        return cls(
            cfg.asset_sync.feishu.base_url,
            cfg.mcp_server.app_id,
            cfg.mcp_server.app_secret,
            cfg.asset_sync.feishu.app_token,
            metrics=metrics,
            **kw,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> FeishuClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"FeishuClient({self.base_url!r}, app_id={self.app_id!r}, app_token={self.app_token!r})"

    def label(self, table_id: str) -> str:
        """`持仓 (tbl…)` when the name is known, else the table id alone."""
        name = self.table_names.get(table_id)
        return f"{name} ({table_id})" if name else table_id

    # --- token ----------------------------------------------------------------------------
    async def tenant_token(self, *, force: bool = False) -> str:
        """The cached tenant_access_token, fetched again shortly before it expires or when forced."""
        async with self._token_lock:
            now = time.monotonic()
            if not force and self._token and now < self._token_expires:
                return self._token
            self._count("token")
            body: dict[str, Any] = {}
            for attempt in range(1, self.retry.max_attempts + 1):
                try:
                    resp = await self._http.post(
                        TOKEN_PATH, json={"app_id": self.app_id, "app_secret": self._secret.get()}
                    )
                    body = _json(resp)
                except (httpx.TransportError, ValueError) as exc:
                    if attempt >= self.retry.max_attempts:
                        raise fe.FeishuUnavailable(
                            f"cannot get a tenant access token: {_describe(exc)}"
                        ) from exc
                    await asyncio.sleep(self.retry.backoff(attempt))
                    continue
                code = int(body.get("code", -1))
                if code == 0 and body.get("tenant_access_token"):
                    break
                if code in fe.BAD_CREDENTIALS:
                    raise fe.FeishuBadCredentials(
                        f"Feishu rejected mcp_server.app_id / mcp_server.app_secret: {body.get('msg', '')}",
                        code=code,
                    )
                if attempt >= self.retry.max_attempts:
                    raise fe.FeishuAuthError(
                        f"cannot get a tenant access token: {body.get('msg', '')}", code=code
                    )
                await asyncio.sleep(self.retry.backoff(attempt))
            expire = float(body.get("expire", 7200))
            # Refresh ahead of expiry: 5 minutes for real tokens, a tenth for short-lived ones.
            margin = min(300.0, expire * 0.1)
            self._token = str(body["tenant_access_token"])
            self._token_expires = time.monotonic() + max(0.0, expire - margin)
            self.stats.token_refreshes += 1
            return self._token

    def _drop_token(self, token: str) -> None:
        if self._token == token:
            self._token = ""
            self._token_expires = 0.0

    # --- the call loop --------------------------------------------------------------------
    def _count(self, kind: str) -> None:
        self.stats.calls[kind] += 1
        if self._metrics is not None:
            self._m_calls.labels("feishu", kind).inc()

    def _count_error(self, kind: str, what: str) -> None:
        self.stats.errors[f"{kind}:{what}"] += 1
        if self._metrics is not None:
            self._m_errors.labels("feishu", kind, what).inc()

    @contextlib.asynccontextmanager
    async def _serialized(self, table_id: str) -> AsyncIterator[None]:
        """Feishu refuses concurrent writes to one table (1254291): one writer per table here."""
        lock = self._table_locks.setdefault(table_id, asyncio.Lock())
        async with lock:
            yield

    async def _call(
        self,
        method: str,
        path: str,
        kind: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        table_id: str = "",
        field_names: Iterable[str] = (),
    ) -> dict[str, Any]:
        if kind in WRITE_KINDS and table_id:
            async with self._serialized(table_id):
                return await self._attempts(method, path, kind, json, params, table_id, field_names)
        return await self._attempts(method, path, kind, json, params, table_id, field_names)

    async def _attempts(
        self,
        method: str,
        path: str,
        kind: str,
        json: Any,
        params: Mapping[str, Any] | None,
        table_id: str,
        field_names: Iterable[str],
    ) -> dict[str, Any]:
        policy = self.retry
        deadline = time.monotonic() + policy.budget
        token_retried = False
        table = self.label(table_id) if table_id else ""
        attempt = 0
        while True:
            attempt += 1
            await self._pacer.acquire()
            token = await self.tenant_token()
            self._count(kind)
            err: fe.FeishuError
            delay: float
            try:
                resp = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json; charset=utf-8",
                    },
                )
            except httpx.TimeoutException as exc:
                self._count_error(kind, "timeout")
                err = fe.FeishuUnavailable(f"Feishu {kind} timed out", table=table)
                err.__cause__ = exc
                delay = policy.backoff(attempt)
            except httpx.TransportError as exc:
                self._count_error(kind, "network")
                err = fe.FeishuUnavailable(f"Feishu {kind} failed: {_describe(exc)}", table=table)
                err.__cause__ = exc
                delay = policy.backoff(attempt)
            else:
                try:
                    body = _json(resp)
                except ValueError:
                    body = {}
                code = _code(body)
                if resp.status_code == 200 and code == 0:
                    self._pacer.success()
                    data = body.get("data")
                    return data if isinstance(data, dict) else {}
                msg = str(body.get("msg", "")) or resp.reason_phrase
                what = str(code) if code > 0 else str(resp.status_code)
                if code == fe.RATE_LIMIT or resp.status_code == 429:
                    self._count_error(kind, "rate_limited")
                    reset = _header_float(resp, "x-ogw-ratelimit-reset") or _header_float(resp, "retry-after")
                    reset = reset if reset is not None else policy.backoff(attempt)
                    self._pacer.limited(reset, _header_float(resp, "x-ogw-ratelimit-limit"))
                    err = fe.FeishuRateLimited(
                        f"Feishu rate limit on {kind}: {msg}",
                        code=code if code > 0 else 429,
                        table=table,
                        retry_after=reset,
                    )
                    # The pacer holds this and every other request until the reset: no own sleep.
                    delay = 0.0
                elif code in fe.TOKEN_CODES:
                    self._count_error(kind, "token")
                    self._drop_token(token)
                    err = fe.FeishuAuthError(
                        f"Feishu refused the access token: {msg}", code=code, table=table
                    )
                    # The first refusal is an expired/revoked token: refresh and retry at once.
                    delay = 0.0 if not token_retried else policy.backoff(attempt)
                    token_retried = True
                elif code in fe.BUSY_CODES:
                    self._count_error(kind, what)
                    cls = fe.FeishuConflict if code == fe.WRITE_CONFLICT else fe.FeishuRateLimited
                    err = cls(f"Feishu busy on {kind}: {msg}", code=code, table=table)
                    delay = max(0.5, policy.backoff(attempt))
                elif code in fe.SERVER_CODES or resp.status_code >= 500 or not body:
                    self._count_error(kind, what)
                    err = fe.FeishuUnavailable(
                        f"Feishu {kind} answered HTTP {resp.status_code}: {msg}", code=code, table=table
                    )
                    delay = policy.backoff(attempt)
                else:
                    self._count_error(kind, what)
                    raise await self._permanent(
                        kind, code, msg, resp.status_code, table_id, field_names, json
                    )
            # Gateway rate limiting only costs time (the pacer waits out the reset), not attempts.
            paced = err.code in (fe.RATE_LIMIT, 429) and err.retry_after is not None
            wait = (err.retry_after or 0.0) if paced else delay
            over = time.monotonic() + wait > deadline
            if over or (attempt >= policy.max_attempts and not paced):
                log.warning("feishu %s giving up after %d attempts: %s", kind, attempt, err)
                raise err
            log.info("feishu %s attempt %d failed (%s); retrying in %.2fs", kind, attempt, err, delay)
            if delay > 0:
                await asyncio.sleep(delay)

    async def _permanent(
        self,
        kind: str,
        code: int,
        msg: str,
        status: int,
        table_id: str,
        field_names: Iterable[str],
        payload: Any,
    ) -> fe.FeishuError:
        table = self.label(table_id) if table_id else ""
        if code in fe.FIELD_CONV_CODES:
            culprits = await self._mistyped_fields(table_id, payload)
            return fe.FeishuRejected(
                f"Feishu {kind}: a value does not fit the field's type ({msg}); was a column's type changed?",
                code=code,
                table=table,
                field=", ".join(culprits),
            )
        if code == fe.FIELD_NAME_NOT_FOUND:
            missing = await self._missing_fields(table_id, field_names)
            name = ", ".join(missing)
            hint = " (renamed or deleted in Feishu? run `assetsync setup-tables` to add it back)"
            return fe.FeishuFieldNotFound(
                f"Feishu {kind}: field {name or '(unknown)'} does not exist{hint}",
                code=code,
                table=table,
                field=name,
            )
        if code in (fe.TABLE_NOT_FOUND, fe.APP_NOT_FOUND):
            what = "table" if code == fe.TABLE_NOT_FOUND else "app (asset_sync.feishu.app_token)"
            return fe.FeishuTableNotFound(f"Feishu {kind}: {what} not found: {msg}", code=code, table=table)
        if code in fe.BAD_CREDENTIALS:
            return fe.FeishuBadCredentials(f"Feishu rejected the app credentials: {msg}", code=code)
        return fe.FeishuRejected(f"Feishu {kind} rejected (HTTP {status}): {msg}", code=code, table=table)

    async def _missing_fields(self, table_id: str, used: Iterable[str]) -> list[str]:
        """Which of the field names a request used the table lacks (one extra call, only on error)."""
        names = sorted(set(used))
        if not table_id or not names:
            return []
        try:
            have = {f.name for f in await self.list_fields(table_id)}
        except fe.FeishuError:
            return []
        return [n for n in names if n not in have]

    async def _mistyped_fields(self, table_id: str, payload: Any) -> list[str]:
        """Fields whose sent values do not match their type in Feishu (one extra call, only on error)."""
        cells: dict[str, list[Any]] = {}
        records = payload.get("records") if isinstance(payload, Mapping) else None
        for rec in records or []:
            fields = rec.get("fields") if isinstance(rec, Mapping) else None
            for name, value in (fields or {}).items():
                cells.setdefault(str(name), []).append(value)
        if not table_id or not cells:
            return []
        try:
            types = {f.name: f.type for f in await self.list_fields(table_id)}
        except fe.FeishuError:
            return []
        return sorted(
            n for n, values in cells.items() if n in types and any(not _fits(types[n], v) for v in values)
        )

    # --- tables and fields ----------------------------------------------------------------
    def _app(self) -> str:
        return f"{API}/bitable/v1/apps/{self.app_token}"

    async def _pages(self, path: str, kind: str, table_id: str = "") -> AsyncIterator[dict[str, Any]]:
        """Every item of a paged GET listing (100 per page)."""
        page_token = ""
        while True:
            params: dict[str, Any] = {"page_size": 100}
            if page_token:
                params["page_token"] = page_token
            data = await self._call("GET", path, kind, params=params, table_id=table_id)
            for item in data.get("items") or []:
                yield item
            page_token = str(data.get("page_token") or "")
            if not data.get("has_more") or not page_token:
                return

    async def list_tables(self) -> list[TableInfo]:
        out: list[TableInfo] = []
        async for item in self._pages(f"{self._app()}/tables", "tables.list"):
            t = TableInfo(str(item["table_id"]), str(item.get("name", "")), int(item.get("revision", 0)))
            self.table_names[t.table_id] = t.name
            out.append(t)
        return out

    async def create_table(self, name: str, fields: Sequence[FieldSpec]) -> str:
        """Create a table whose first field is the primary one; returns its table_id."""
        body = {"table": {"name": name, "default_view_name": "表格", "fields": [f.body() for f in fields]}}
        data = await self._call("POST", f"{self._app()}/tables", "tables.create", json=body)
        table_id = str(data["table_id"])
        self.table_names[table_id] = name
        return table_id

    async def list_fields(self, table_id: str) -> list[FieldInfo]:
        path = f"{self._app()}/tables/{table_id}/fields"
        return [_field(item) async for item in self._pages(path, "fields.list", table_id)]

    async def create_field(self, table_id: str, spec: FieldSpec) -> FieldInfo:
        data = await self._call(
            "POST",
            f"{self._app()}/tables/{table_id}/fields",
            "fields.create",
            json=spec.body(),
            table_id=table_id,
        )
        return _field(data.get("field") or {"field_name": spec.name, "type": spec.type})

    # --- records --------------------------------------------------------------------------
    async def search_records(
        self,
        table_id: str,
        *,
        field_names: Sequence[str] | None = None,
        filter: Mapping[str, Any] | None = None,
        page_size: int = MAX_PAGE,
    ) -> list[Record]:
        """Every record matching `filter` (all pages), cells normalized with `plain`."""
        body: dict[str, Any] = {"automatic_fields": False}
        if field_names is not None:
            body["field_names"] = list(field_names)
        if filter is not None:
            body["filter"] = filter
        used = list(field_names or []) + [
            str(c.get("field_name", "")) for c in (filter or {}).get("conditions", [])
        ]
        out: list[Record] = []
        page_token = ""
        while True:
            params: dict[str, Any] = {"page_size": min(page_size, MAX_PAGE)}
            if page_token:
                params["page_token"] = page_token
            data = await self._call(
                "POST",
                f"{self._app()}/tables/{table_id}/records/search",
                "records.search",
                json=body,
                params=params,
                table_id=table_id,
                field_names=used,
            )
            for item in data.get("items") or []:
                cells = {str(k): plain(v) for k, v in (item.get("fields") or {}).items()}
                out.append(Record(str(item.get("record_id") or item.get("id")), cells))
            page_token = str(data.get("page_token") or "")
            if not data.get("has_more") or not page_token:
                return out

    async def batch_create(
        self, table_id: str, rows: Sequence[Mapping[str, Any]], *, client_token: str | None = None
    ) -> list[Record]:
        """Create rows, at most 1000 per request; `client_token` (uuid4) makes a retried chunk idempotent."""
        out: list[Record] = []
        for i, chunk in enumerate(chunked(rows, MAX_CREATE)):
            params = {"client_token": _chunk_token(client_token, i)} if client_token else None
            data = await self._call(
                "POST",
                f"{self._app()}/tables/{table_id}/records/batch_create",
                "records.batch_create",
                json={"records": [{"fields": dict(r)} for r in chunk]},
                params=params,
                table_id=table_id,
                field_names=_names(chunk),
            )
            out.extend(_records(data))
        return out

    async def batch_update(
        self, table_id: str, rows: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[Record]:
        """Update (record_id, fields) pairs, at most 1000 per request; a None cell clears it."""
        out: list[Record] = []
        for chunk in chunked(rows, MAX_UPDATE):
            data = await self._call(
                "POST",
                f"{self._app()}/tables/{table_id}/records/batch_update",
                "records.batch_update",
                json={"records": [{"record_id": rid, "fields": dict(f)} for rid, f in chunk]},
                table_id=table_id,
                field_names=_names([f for _, f in chunk]),
            )
            out.extend(_records(data))
        return out

    async def batch_delete(self, table_id: str, record_ids: Sequence[str]) -> int:
        """Delete records, at most 500 per request; returns how many Feishu reports deleted."""
        deleted = 0
        for chunk in chunked(record_ids, MAX_DELETE):
            data = await self._call(
                "POST",
                f"{self._app()}/tables/{table_id}/records/batch_delete",
                "records.batch_delete",
                json={"records": list(chunk)},
                table_id=table_id,
            )
            deleted += sum(1 for r in data.get("records") or [] if r.get("deleted"))
        return deleted


def _fits(field_type: int, value: Any) -> bool:
    """Whether a value we send has the shape Feishu wants for a field type."""
    if value is None:
        return True
    if field_type == schema.TEXT:
        return isinstance(value, str)
    if field_type == schema.NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if field_type == schema.SINGLE_SELECT:
        return isinstance(value, str)
    if field_type == schema.DATETIME:
        return isinstance(value, int) and not isinstance(value, bool)
    if field_type == schema.CHECKBOX:
        return isinstance(value, bool)
    return True


def _field(item: Mapping[str, Any]) -> FieldInfo:
    return FieldInfo(
        str(item.get("field_id", "")),
        str(item.get("field_name", "")),
        int(item.get("type", 0)),
        item.get("property"),
        bool(item.get("is_primary", False)),
    )


def _records(data: Mapping[str, Any]) -> list[Record]:
    return [
        Record(
            str(r.get("record_id") or r.get("id")),
            {str(k): plain(v) for k, v in (r.get("fields") or {}).items()},
        )
        for r in data.get("records") or []
    ]


def _names(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    out: set[str] = set()
    for r in rows:
        out.update(r.keys())
    return out


def stable_client_token(seed: str) -> str:
    """A deterministic uuid4-shaped `client_token` for `seed`: the same logical write gets the same token."""
    return str(uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=4))


def _chunk_token(token: str, index: int) -> str:
    """A distinct, stable client_token per chunk of one logical create."""
    return token if index == 0 else stable_client_token(f"{token}:{index}")


def _json(resp: httpx.Response) -> dict[str, Any]:
    data = resp.json()
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _code(body: Mapping[str, Any]) -> int:
    try:
        return int(body.get("code", -1))
    except (TypeError, ValueError):
        return -1


def _header_float(resp: httpx.Response, name: str) -> float | None:
    raw = resp.headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

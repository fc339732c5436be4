"""The receiver: pulls the remote sender's feeds page by page into the received store.

At most one sync per endpoint runs at a time and a semaphore bounds the endpoints synced together;
each request is retried with jittered exponential backoff; the next page is fetched while the current
one commits. A 409 makes that endpoint start over from the beginning: when the remote feed was
recreated, what was received of it is dropped first; when the remote no longer keeps the records
after our cursor (retention), what was received is kept and the pull restarts at the oldest record
still kept (duplicates are dropped on (origin, origin sequence)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx
import msgspec
from assetsync.events import Event
from assetsync.retry import Backoff
from assetsync.secrets import mask_urls

from assetsync_sync_gateway.compression import decompress
from assetsync_sync_gateway.envelope import Page, page_decoder
from assetsync_sync_gateway.ingest import to_event
from assetsync_sync_gateway.live_settings import RuntimeConfig
from assetsync_sync_gateway.receiver_store import ReceivedStore
from assetsync_sync_gateway.registry import CODE_RE
from assetsync_sync_gateway.stats import ReceiverStats, iso

log = logging.getLogger("assetsync.gateway.receiver")
MAX_PAGE_BYTES = 64 * 1024 * 1024
BULK_PAGES = 8  # a sync this many pages long checkpoints the WAL when done
EventSink = Callable[[Sequence[Event]], Awaitable[None]]


class RemoteError(Exception):
    """A request to the remote sender failed; `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int = 0,
        retry_after: float | None = None,
        low_water: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.low_water = low_water


class Resync(Exception):
    """The remote answered 409: start again from the beginning (`pruned`: keep what was received)."""

    def __init__(self, pruned: bool = False) -> None:
        super().__init__("pruned" if pruned else "recreated")
        self.pruned = pruned


@dataclass
class Reply:
    """A remote answer: status, headers, decoded body, bytes on the wire, and the page if one was asked."""

    status: int
    headers: httpx.Headers
    body: bytes
    wire: int
    page: Page | None = None


@dataclass
class Fetched:
    """One page response (or a 304)."""

    page: Page | None
    etag: str | None
    head: int
    position: int
    wire: int
    raw: int


@dataclass
class SyncOutcome:
    """The result of syncing one endpoint once."""

    code: str
    status: Literal["success", "failed", "already_running"]
    records: int = 0
    duplicates: int = 0
    bytes: int = 0
    pages: int = 0
    duration: float = 0.0
    error: str = ""


@dataclass
class Tuning:
    """Knobs of the receiver (defaults suit production; tests shrink the delays)."""

    page_limit: int = 10000
    max_concurrency: int = 4
    max_attempts: int = 6
    backoff_base: float = 0.25
    backoff_cap: float = 15.0
    request_timeout: float = 60.0
    failure_backoff_base: float = 1.0
    # Empty has_more pages in a row before a sync stops waiting for a remote still reading its
    # source (each such page already waited up to a second at the sender).
    catch_up_pages: int = 30


class Receiver:
    """Pulls every endpoint of the remote catalog; state and statistics persist in the received store."""

    def __init__(
        self,
        store: ReceivedStore,
        config: RuntimeConfig,
        site_id: str,
        *,
        sink: EventSink | None = None,
        tuning: Tuning | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.store = store
        self.config = config
        self.site_id = site_id
        self.sink = sink
        self.t = tuning or Tuning()
        self.stats = ReceiverStats()
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self.t.request_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=self.t.max_concurrency * 2 + 2, max_keepalive_connections=16),
            verify=verify,
        )
        self._sem = asyncio.Semaphore(self.t.max_concurrency)
        self._running: dict[str, asyncio.Task[SyncOutcome]] = {}
        self._all: asyncio.Task[list[SyncOutcome]] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._bus_task: asyncio.Task[None] | None = None
        self._bus_locks: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._save_lock = asyncio.Lock()
        self.consecutive_failures = 0
        self.next_sync_at: float | None = None
        self.remote_ok: bool | None = None
        self.remote_site: str = ""
        self.bus_error = ""
        self.cursor_text: dict[str, str | None] = {}
        self.counts: dict[str, int] = {}

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.stats = await self.store.load_stats()
        await self.store.recover_mirrors()
        self.counts = await self.store.counts()
        for code, cur in (await self.store.cursors()).items():
            self.cursor_text[code] = cur.cursor
        if self.sink is not None:
            # Records committed but not yet confirmed on the bus before a crash: republished in the
            # background (the bus may not be reachable yet; duplicates collapse on Nats-Msg-Id).
            self._bus_task = asyncio.create_task(self._flush_all(), name="receiver-republish")
        self._loop_task = asyncio.create_task(self._auto_loop(), name="receiver-auto-sync")

    async def _flush_all(self) -> None:
        for code in list(self.cursor_text):
            await self._flush_bus(code)

    async def stop(self) -> None:
        if self._bus_task is not None and not self._bus_task.done():
            self._bus_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bus_task
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        tasks = [t for t in (*self._running.values(), self._all) if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await self.store.save_stats(self.stats)
        await self._client.aclose()

    def wake(self) -> None:
        """Re-evaluate the auto-sync schedule now (after a settings change)."""
        self._wake.set()

    def sync_soon(self) -> None:
        """With auto-sync on, run the next cycle now instead of after the (back-off) delay."""
        if self.next_sync_at is not None:
            self.next_sync_at = time.monotonic()
        self._wake.set()

    @property
    def syncing(self) -> bool:
        return any(not t.done() for t in self._running.values()) or (
            self._all is not None and not self._all.done()
        )

    # --- public operations ---------------------------------------------------------------------
    def start_sync_all(self) -> asyncio.Task[list[SyncOutcome]]:
        """Start a sync of every remote endpoint (or return the one already running)."""
        if self._all is None or self._all.done():
            self._all = asyncio.create_task(self.sync_all(), name="receiver-sync-all")
        return self._all

    def start_sync(self, code: str) -> tuple[asyncio.Task[SyncOutcome], bool]:
        """Start syncing one endpoint; (task, started) where started is False if one was running."""
        t = self._running.get(code)
        if t is not None and not t.done():
            return t, False
        t = asyncio.create_task(self._sync_code(code), name=f"receiver-sync:{code}")
        self._running[code] = t
        return t, True

    async def sync_all(self) -> list[SyncOutcome]:
        """Sync every endpoint of the remote catalog (bounded concurrency); failures are per endpoint."""
        try:
            codes = await self.remote_codes()
        except RemoteError as exc:
            self._note_failure(None, str(exc))
            self.consecutive_failures += 1
            await self._save()
            return [SyncOutcome(code="*", status="failed", error=str(exc))]
        tasks = [self.start_sync(c)[0] for c in codes]
        results = list(await asyncio.gather(*tasks))
        failed = any(r.status == "failed" for r in results)
        self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
        return results

    async def remote_codes(self) -> list[str]:
        """Codes of the remote catalog (checked: safe names, and not our own site)."""
        conf = self.config.receiver
        if not conf.remote_url:
            raise RemoteError("no remote URL configured (sync_gateway.receiver.remote_url)", retryable=False)
        reply = await self._request("GET", f"{conf.remote_url}/api/data-sync/sender/catalog", None)
        try:
            body = msgspec.json.decode(reply.body)
            eps = body["endpoints"]
            codes = [e["code"] for e in eps]
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise RemoteError("the remote catalog is not a sync-gateway catalog", retryable=False) from exc
        site = str(body.get("site_id", ""))
        if site and site == self.site_id:
            raise RemoteError(
                f"the remote gateway has the same site id {site!r} as this one; give each site its own "
                "sync_gateway.site_id",
                retryable=False,
            )
        self.remote_site = site
        bad = [c for c in codes if not isinstance(c, str) or not CODE_RE.match(c)]
        if bad:
            raise RemoteError(f"the remote catalog has unsafe endpoint codes: {bad[:5]}", retryable=False)
        return list(codes)

    # --- one endpoint --------------------------------------------------------------------------
    async def _sync_code(self, code: str) -> SyncOutcome:
        async with self._sem:
            return await self._sync_code_now(code)

    async def _sync_code_now(self, code: str) -> SyncOutcome:
        started = time.monotonic()
        out = SyncOutcome(code=code, status="success")
        es = self.stats.endpoint(code)
        es.syncs += 1
        self.stats.total_syncs += 1
        es.last_sync_time = self.stats.last_sync_time = time.time()
        remote = self.config.receiver.remote_url
        try:
            if not CODE_RE.match(code):
                raise RemoteError(f"unsafe endpoint code {code!r}", retryable=False)
            if not remote:
                raise RemoteError(
                    "no remote URL configured (sync_gateway.receiver.remote_url)", retryable=False
                )
            await self._pull(code, remote, out)
        except asyncio.CancelledError:
            raise
        except (RemoteError, OSError, msgspec.DecodeError, ValueError) as exc:
            out.status, out.error = "failed", str(exc)
        except Exception as exc:  # a store failure must show in status, not kill the auto-sync loop
            log.exception("endpoint %s: sync failed unexpectedly", code)
            out.status, out.error = "failed", f"{type(exc).__name__}: {exc}"
        out.duration = time.monotonic() - started
        if out.status == "success":
            es.successful += 1
            self.stats.successful_syncs += 1
            es.last_success_time = time.time()
            es.last_error = ""
            self.remote_ok = True
        else:
            self._note_failure(code, out.error)
        if out.records or out.status != "success":
            log.info(
                "sync %s: %s, %d records, %d duplicates, %d bytes in %.2fs%s",
                code,
                out.status,
                out.records,
                out.duplicates,
                out.bytes,
                out.duration,
                f": {out.error}" if out.error else "",
            )
        with contextlib.suppress(Exception):
            await self.store.log_run(code, out.status, out.records, out.bytes, out.duration, out.error)
        await self._save()
        return out

    def _note_failure(self, code: str | None, error: str) -> None:
        error = mask_urls(error)
        self.stats.last_error = error
        self.remote_ok = False
        if code is None:
            self.stats.total_syncs += 1
            self.stats.failed_syncs += 1
            self.stats.last_sync_time = time.time()
            log.warning("sync failed: %s", error)
            return
        es = self.stats.endpoint(code)
        es.failed += 1
        es.last_error = error
        self.stats.failed_syncs += 1

    async def _save(self) -> None:
        async with self._save_lock:
            with contextlib.suppress(Exception):
                await self.store.save_stats(self.stats)

    async def _pull(self, code: str, remote: str, out: SyncOutcome) -> None:
        es = self.stats.endpoint(code)
        state = await self.store.cursor(code)
        cursor: str | None = None
        etag: str | None = None
        if state is not None and state.remote == remote:
            cursor, etag = state.cursor, state.etag
        fetch = asyncio.create_task(self._fetch(code, remote, cursor, etag))
        waiting = 0  # empty pages in a row that said has_more (the remote is catching up)
        try:
            while True:
                try:
                    got = await fetch
                except Resync as exc:
                    es.resyncs += 1
                    if exc.pruned:
                        log.warning(
                            "endpoint %s: the remote no longer keeps records after our cursor (retention);"
                            " resyncing from its oldest record",
                            code,
                        )
                    else:
                        log.warning(
                            "endpoint %s: the remote feed was recreated; resyncing from the start", code
                        )
                        await self.store.reset_code(code)
                        self.counts[code] = 0
                    cursor = None
                    fetch = asyncio.create_task(self._fetch(code, remote, None, None))
                    continue
                es.bytes += got.wire
                es.bytes_raw += got.raw
                self.stats.total_bytes_received += got.wire
                self.stats.total_bytes_raw += got.raw
                out.bytes += got.wire
                es.remote_hwm = got.head
                if got.page is None:  # 304: nothing new since the last final page
                    es.cursor_seq = max(es.cursor_seq, got.position)
                    return
                page = got.page
                waiting = waiting + 1 if page.has_more and not page.records else 0
                if waiting > self.t.catch_up_pages:
                    # The remote is still reading its source: what we have is committed; the next
                    # sync goes on from here rather than this one never ending.
                    raise RemoteError(
                        f"the remote feed {code} is still catching up with its source; resuming next sync",
                        retryable=False,
                    )
                if page.has_more:
                    fetch = asyncio.create_task(self._fetch(code, remote, page.next_cursor, None))
                es.cursor_seq = got.position
                done = await self.store.commit_page(
                    code,
                    remote,
                    page.records,
                    page.next_cursor,
                    None if page.has_more else got.etag,
                    got.head,
                    got.position,
                    self.stats,
                )
                out.pages += 1
                out.records += done.added
                out.duplicates += done.duplicates
                es.records_received += done.added
                es.duplicates += done.duplicates
                self.counts[code] = self.counts.get(code, 0) + done.added
                self.cursor_text[code] = page.next_cursor
                if done.added and self.sink is not None:
                    await self._flush_bus(code)
                if not page.has_more:
                    if out.pages >= BULK_PAGES:
                        await self.store.checkpoint()
                    return
        finally:
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetch

    async def _flush_bus(self, code: str) -> None:
        """Republish committed rows not yet on the bus; the position moves only after the acks."""
        if self.sink is None:
            return
        lock = self._bus_locks.setdefault(code, asyncio.Lock())
        async with lock:
            await self._flush_bus_locked(code)

    async def _flush_bus_locked(self, code: str) -> None:
        assert self.sink is not None
        try:
            while True:
                rows, _ = await self.store.pending_for_bus(code)
                if not rows:
                    break
                now = int(time.time() * 1000)
                events = [to_event(code, rec, bytes(rec.data), now) for _, rec in rows]
                await self.sink(events)
                await self.store.bus_done(code, rows[-1][0])
            self.bus_error = ""
        except Exception as exc:  # the bus being down must not stop storing; retried on the next sync
            self.bus_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "endpoint %s: republishing received records failed (will retry): %s", code, self.bus_error
            )

    async def _fetch(self, code: str, remote: str, cursor: str | None, etag: str | None) -> Fetched:
        params: dict[str, str] = {"limit": str(self.t.page_limit), "exclude_origin": self.site_id}
        if cursor:
            params["since"] = cursor
        headers = {"If-None-Match": etag} if etag and cursor else None
        url = f"{remote}/api/data-sync/sender/data/{code}"
        try:
            reply = await self._request("GET", url, params, headers=headers, code=code)
        except RemoteError as exc:
            if exc.status == 409:
                raise Resync(pruned=exc.low_water is not None) from exc
            raise
        head = _int_header(reply.headers, "x-feed-head")
        position = _int_header(reply.headers, "x-feed-position")
        if reply.status == 304:
            return Fetched(None, etag, head, position, reply.wire, 0)
        return Fetched(reply.page, reply.headers.get("etag"), head, position, reply.wire, len(reply.body))

    async def _request(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None,
        *,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> Reply:
        """One request with retries; pages (when `code` is given) are decoded and checked here."""
        conf = self.config.receiver
        hdrs = {"Accept-Encoding": "zstd, gzip", "Accept": "application/json"}
        if conf.auth_token:
            hdrs["Authorization"] = f"Bearer {conf.auth_token.get()}"
        if headers:
            hdrs.update(headers)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(method, url, params, hdrs, code)
            except RemoteError as exc:
                if not exc.retryable or attempt >= self.t.max_attempts:
                    if code is not None:
                        self.stats.endpoint(code).errors += 1
                    raise
                if code is not None:
                    es = self.stats.endpoint(code)
                    es.retries += 1
                    es.errors += 1
                delay = Backoff(self.t.backoff_base, self.t.backoff_cap).delay(attempt)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.t.backoff_cap))
                log.info("request to %s failed (%s); retry %d in %.2fs", url, exc, attempt, delay)
                await asyncio.sleep(delay)

    async def _once(
        self, method: str, url: str, params: dict[str, str] | None, hdrs: dict[str, str], code: str | None
    ) -> Reply:
        try:
            async with self._client.stream(method, url, params=params, headers=hdrs) as resp:
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_raw():
                    size += len(chunk)
                    if size > MAX_PAGE_BYTES:
                        raise RemoteError(
                            f"remote answer larger than {MAX_PAGE_BYTES} bytes", retryable=False
                        )
                    chunks.append(chunk)
                raw = b"".join(chunks)
        except httpx.InvalidURL as exc:  # e.g. a host name IDNA refuses: the setting, not the network
            raise RemoteError(
                f"sync_gateway.receiver.remote_url is not a usable URL: {exc}", retryable=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise RemoteError(f"remote timed out: {type(exc).__name__}", retryable=True) from exc
        except httpx.TransportError as exc:
            raise RemoteError(f"remote unreachable: {type(exc).__name__}: {exc}", retryable=True) from exc
        status = resp.status_code
        if status == 304:
            return Reply(status, resp.headers, b"", len(raw))
        if status != 200:
            retry_after = _float_header(resp.headers, "retry-after")
            detail = _error_text(raw)
            if status in (429, 500, 502, 503, 504):
                raise RemoteError(
                    f"remote answered {status}{detail}",
                    retryable=True,
                    status=status,
                    retry_after=retry_after,
                )
            what = {
                401: "the remote refused the token",
                403: "the remote refused this address",
                404: "not found",
            }
            low = resp.headers.get("x-feed-low-water")
            raise RemoteError(
                f"{what.get(status, 'remote error')} ({status}){detail}",
                retryable=False,
                status=status,
                low_water=int(low) if status == 409 and low is not None and low.isdigit() else None,
            )
        declared = resp.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) != len(raw):
            raise RemoteError("remote body truncated", retryable=True)
        try:
            body = decompress(resp.headers.get("content-encoding"), raw, MAX_PAGE_BYTES)
        except ValueError as exc:
            raise RemoteError(f"remote body unusable: {exc}", retryable=True) from exc
        if code is not None:
            try:
                page = page_decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise RemoteError(f"remote page unreadable: {exc}", retryable=True) from exc
            if page.code != code:
                raise RemoteError(f"remote answered with feed {page.code!r} for {code!r}", retryable=False)
            return Reply(status, resp.headers, body, len(raw), page)
        return Reply(status, resp.headers, body, len(raw))

    # --- auto sync -----------------------------------------------------------------------------
    async def _auto_loop(self) -> None:
        last_version = -1
        while True:
            conf = self.config.receiver
            if self.config.version != last_version:
                last_version = self.config.version
                self.next_sync_at = (
                    time.monotonic() if conf.enabled and conf.auto_sync and conf.remote_url else None
                )
            now = time.monotonic()
            if self.next_sync_at is not None and now >= self.next_sync_at:
                results = await self.start_sync_all()
                failed = any(r.status == "failed" for r in results)
                interval = conf.sync_interval
                if failed:
                    # Failing syncs retry sooner than the interval, backing off up to it.
                    retry = Backoff(self.t.failure_backoff_base, interval, jitter=(0.75, 1.25))
                    interval = retry.delay(self.consecutive_failures)
                still_on = self.config.receiver.enabled and self.config.receiver.auto_sync
                self.next_sync_at = time.monotonic() + interval if still_on else None
                continue
            timeout = None if self.next_sync_at is None else max(0.0, self.next_sync_at - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    # --- status --------------------------------------------------------------------------------
    def lag(self) -> dict[str, int]:
        return {c: max(0, es.remote_hwm - es.cursor_seq) for c, es in self.stats.endpoint_stats.items()}

    def status(self) -> dict[str, Any]:
        conf = self.config.receiver
        s = self.stats
        endpoints: dict[str, Any] = {}
        for code, es in s.endpoint_stats.items():
            d = asdict_struct(es)
            d.update(
                cursor=self.cursor_text.get(code),
                records=self.counts.get(code, 0),
                lag=max(0, es.remote_hwm - es.cursor_seq),
                running=code in self._running and not self._running[code].done(),
                last_sync_time=iso(es.last_sync_time),
                last_success_time=iso(es.last_success_time),
            )
            endpoints[code] = d
        nxt = None if self.next_sync_at is None else max(0.0, self.next_sync_at - time.monotonic())
        return {
            "enabled": conf.enabled,
            "site_id": self.site_id,
            "remote_url": mask_urls(conf.remote_url),
            "remote_site_id": self.remote_site,
            "remote_ok": self.remote_ok,
            "auto_sync": conf.auto_sync,
            "sync_interval": conf.sync_interval,
            "syncing": self.syncing,
            "next_sync_in": nxt,
            "consecutive_failures": self.consecutive_failures,
            "total_syncs": s.total_syncs,
            "successful_syncs": s.successful_syncs,
            "failed_syncs": s.failed_syncs,
            "total_bytes_received": s.total_bytes_received,
            "total_bytes_raw": s.total_bytes_raw,
            "total_records": sum(self.counts.values()),
            "last_sync_time": iso(s.last_sync_time),
            "last_error": s.last_error,
            "bus_error": self.bus_error,
            "endpoint_stats": endpoints,
        }


def asdict_struct(obj: msgspec.Struct) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.structs.asdict(obj)
    return out


def outcome_dict(o: SyncOutcome) -> dict[str, Any]:
    return asdict(o)


def _int_header(headers: httpx.Headers, name: str) -> int:
    v = headers.get(name)
    return int(v) if v is not None and v.isdigit() else 0


def _float_header(headers: httpx.Headers, name: str) -> float | None:
    v = headers.get(name)
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def _error_text(raw: bytes) -> str:
    try:
        err = msgspec.json.decode(raw[:2000])
    except msgspec.DecodeError:
        return ""
    if isinstance(err, dict) and isinstance(err.get("error"), str):
        return f": {err['error']}"
    return ""

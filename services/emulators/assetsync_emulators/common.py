"""Plumbing shared by the emulators: switchable faults, request log, and serving on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FaultKind = Literal["5xx", "429", "418", "timeout", "html", "garbage", "truncated", "drop", "error"]


@dataclass
class Fault:
    """One switched-on fault: which kind, on which paths, how many times (None = until cleared)."""

    kind: FaultKind
    path_prefix: str = ""
    times: int | None = None
    status: int = 503
    retry_after: float = 1.0
    delay: float = 30.0  # for "timeout": how long to stall before answering
    body: Any = None  # for "error": the JSON error body answered with `status` (e.g. a wrong-signature code)
    query_contains: str = ""  # only requests whose raw query string contains this (e.g. "symbol=SOLUSDT")
    # Set to end every stall of this fault now (tests release a long stall once the client gave up).
    released: threading.Event = field(default_factory=threading.Event, repr=False)


@dataclass
class RequestRecord:
    """What the emulator saw: for asserting call counts and rates in tests."""

    method: str
    path: str
    query: str
    at: float
    status: int = 0
    host: str = ""  # the Host header as sent (clients pointed at a new base URL must send the new host)


@dataclass
class FaultSwitch:
    """Faults, latency and a request log, shared by an emulator app and the test driving it."""

    faults: list[Fault] = field(default_factory=list)
    latency: float = 0.0  # seconds added to every request
    requests: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, path_prefix: str = "", method: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method)
            )

    def take(self, path: str, query: str = "") -> Fault | None:
        """The fault that applies to this path now (consuming one use), if any."""
        with self._lock:
            for f in self.faults:
                if path.startswith(f.path_prefix) and f.query_contains in query:
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self.faults.remove(f)
                    return f
        return None

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)


class FaultMiddleware:
    """ASGI middleware applying the switch's latency and faults before the real handler."""

    def __init__(self, app: ASGIApp, switch: FaultSwitch) -> None:
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        rec = RequestRecord(
            method=scope["method"],
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            at=time.monotonic(),
            host=_header(scope, b"host"),
        )
        self.switch.record(rec)
        status_box: list[int] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box.append(int(message["status"]))
                rec.status = int(message["status"])
            await send(message)

        if self.switch.latency:
            await asyncio.sleep(self.switch.latency)
        fault = self.switch.take(path, rec.query)
        if fault is None:
            await self.app(scope, receive, send_wrapper)
            return
        response = await _fault_response(fault)
        if response is None:  # "drop": close without answering
            return
        await response(scope, receive, send_wrapper)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


async def _fault_response(fault: Fault) -> Response | None:
    kind = fault.kind
    if kind == "5xx":
        return PlainTextResponse("Service Unavailable", status_code=fault.status)
    if kind in ("429", "418"):
        return JSONResponse(
            {"code": -1003, "msg": "Too many requests; current limit is exceeded."},
            status_code=int(kind),
            headers={"Retry-After": str(int(max(1, fault.retry_after)))},
        )
    if kind == "error":
        return JSONResponse(fault.body, status_code=fault.status)
    if kind == "timeout":
        until = time.monotonic() + fault.delay
        while not fault.released.is_set() and (left := until - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.02))
        return PlainTextResponse("late", status_code=504)
    if kind == "html":
        return Response(
            "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>",
            status_code=200,
            media_type="text/html",
        )
    if kind == "garbage":
        return Response(
            b'{"code": 0, "data": [\x00\x01 not json', status_code=200, media_type="application/json"
        )
    if kind == "truncated":
        return Response(
            b'{"code":0,"data":{"items":[{"a":1},{"a":', status_code=200, media_type="application/json"
        )
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def jitter(base: float, spread: float = 0.25) -> float:
    """`base` ± `spread` (fraction), for realistic generated data."""
    return base * (1.0 + random.uniform(-spread, spread))


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: without it every keep-alive response waits ~40 ms (Nagle +
    # delayed ACK), since uvicorn only sets TCP_NODELAY itself on its uvloop/httptools path.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
        sock.close()


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve an ASGI app in a background thread (for blocking clients such as pysnowball)."""
    started = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        async with serve(app, host, port) as url:
            box["url"] = url
            box["loop"] = asyncio.get_running_loop()
            stop = asyncio.Event()
            box["stop"] = stop
            started.set()
            await stop.wait()

    def runner() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surface start-up failures to the caller
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=runner, name="emulator", daemon=True)
    thread.start()
    started.wait(10)
    if "error" in box:
        raise RuntimeError(f"emulator failed to start: {box['error']}")
    try:
        yield str(box["url"])
    finally:
        loop = box["loop"]
        stop = box["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)

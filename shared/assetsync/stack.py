"""Run services: NATS (embedded unless `nats.url`, supervised), the runtime, each service; all-or-nothing
start, bounded drain and close on exit."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from assetsync import __version__, bus
from assetsync.config import ConfigError, Settings
from assetsync.embedded import EmbeddedNats, EmbeddedNatsError
from assetsync.events import ServiceLifecycle
from assetsync.files import atomic_write
from assetsync.health import HealthServer
from assetsync.metrics import Metrics
from assetsync.reload import ReloadOutcome, reload_into, reload_subject
from assetsync.retry import Backoff
from assetsync.runtime import Runtime, open_runtime
from assetsync.service import SERVICE_MODULES, Disabled, Service, factory

log = logging.getLogger("assetsync")
# Restarting a dead embedded nats-server: soon, but not in a tight loop if it keeps dying.
NATS_RESTART = Backoff(base=0.25, cap=5.0, jitter=(1.0, 1.0))


@dataclass
class Part:
    """One service's state in this process: running, off (and why) or absent from this build."""

    name: str
    state: str
    reason: str = ""
    service: Service | None = None


class StartError(Exception):
    """A part of the stack that could not start: which part, the config key to change, and why."""

    def __init__(self, part: str, key: str, reason: str) -> None:
        super().__init__(reason)
        self.part = part
        self.key = key
        self.reason = reason

    def line(self) -> str:
        """The one line `up` prints before exiting with 1."""
        fix = f" — change {self.key}" if self.key else ""
        return f"assetsync: {self.part} cannot start: {self.reason}{fix}"


def claim_port(part: str, key: str, host: str, port: int) -> None:
    """Fail fast (before anything starts) when a configured listening port is taken."""
    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise StartError(
                part, key, f"{host}:{port} is not available ({os.strerror(exc.errno) if exc.errno else exc})"
            ) from None


class NatsOwner:
    """Who serves NATS for a data dir: this process (embedded) or a stack already running there.

    The embedded server is supervised: if it dies it is restarted on the same store and port; after
    `nats.restart_limit` deaths in a row `failed` is set so the stack exits non-zero.
    """

    STABLE_AFTER = 10.0  # a server that ran this long resets the count of deaths in a row

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.data_dir / "run"
        self._lock_file: IO[str] | None = None
        self.server: EmbeddedNats | None = None
        self.url = ""
        self.shared = False  # True: another process on this data dir serves NATS
        self.restarting = False  # the embedded server died and is being restarted
        self.restarts = 0
        self.failed = asyncio.Event()  # set: the server kept dying (`fatal` says why)
        self.fatal = ""

    async def acquire(self) -> str:
        """The NATS URL to use, starting the embedded server when nobody serves this data dir."""
        if self.settings.config.nats.url:
            self.url = self.settings.config.nats.url
            return self.url
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = (self.run_dir / "nats.lock").open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            state = read_state(self.settings.data_dir)
            if not state or not state.get("nats_url"):
                raise RuntimeError(
                    f"another assetsync process is starting on {self.settings.data_dir}; try again in a moment"
                ) from None
            self.url = str(state["nats_url"])
            self.shared = True
            return self.url
        self._lock_file = f
        await asyncio.to_thread(self._clear_stale)
        nconf = self.settings.config.nats
        self.server = EmbeddedNats(
            self.settings.data_dir / "nats",
            log_file=self.run_dir / "nats-server.log",
            sync_interval=nconf.sync_interval,
        )
        # Spawned from the event loop's thread: PDEATHSIG follows the spawning thread.
        await self.server.astart()
        self.url = self.server.url
        self._write_state()
        return self.url

    def _write_state(self) -> None:
        assert self.server is not None and self.server.proc is not None
        write_state(
            self.settings.data_dir,
            {
                "nats_url": self.url,
                "pid": os.getpid(),
                "nats_pid": self.server.proc.pid,
                "started_at": time.time(),
            },
        )

    def _clear_stale(self) -> None:
        """We hold the lock, so any `run/stack.json` is from a stack that was killed: clean up after it."""
        state = read_state(self.settings.data_dir)
        if not state:
            return
        log.warning(
            "run/stack.json is stale (pid %s is gone; it was killed): starting afresh", state.get("pid", "?")
        )
        pid = state.get("nats_pid")
        store = str(self.settings.data_dir / "nats")
        if isinstance(pid, int) and store in _cmdline(pid) and "nats-server" in _cmdline(pid):
            # Its nats-server outlived it (it should not): it holds our store, so it must go first.
            log.warning("stopping nats-server pid %d left behind by the killed stack", pid)
            _terminate(pid)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / "stack.json").unlink()

    async def supervise(self) -> None:
        """Restart the embedded server whenever it dies, on the same store and port."""
        server = self.server
        if server is None:
            return
        limit = self.settings.config.nats.restart_limit
        in_a_row = 0
        started = time.monotonic()
        while True:
            await asyncio.sleep(0.2)
            if server.running():
                continue
            code = server.proc.returncode if server.proc is not None else None
            ran = time.monotonic() - started
            in_a_row = 1 if ran >= self.STABLE_AFTER else in_a_row + 1
            self.restarting = True
            if in_a_row > limit:
                self.fatal = (
                    f"the embedded nats-server died {in_a_row} times in a row (last exit status {code}); "
                    f"see {self.run_dir / 'nats-server.log'} (nats.restart_limit is {limit})"
                )
                log.error("%s", self.fatal)
                self.failed.set()
                return
            delay = NATS_RESTART.delay(in_a_row)
            log.error(
                "embedded nats-server exited (status %s) after %.1fs; restarting on %s in %.1fs (%d/%d)",
                code, ran, self.url, delay, in_a_row, limit,
            )  # fmt: skip
            await asyncio.sleep(delay)
            try:
                await server.astart()
            except EmbeddedNatsError as exc:
                log.error("embedded nats-server did not restart: %s", exc)
                started = time.monotonic()
                continue
            started = time.monotonic()
            self.restarts += 1
            self.restarting = False
            self._write_state()
            log.info("embedded nats-server restarted on %s (store %s)", self.url, server.store_dir)

    def release(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=5)
            self.server = None
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "stack.json").unlink()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or " Z " in _stat(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    """Runtime state (`run/stack.json`) so other commands on this data dir find the running stack."""
    current = read_state(data_dir) or {}
    current.update(state)
    atomic_write(data_dir / "run" / "stack.json", json.dumps(current, indent=2).encode())


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / "run" / "stack.json").read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


@dataclass
class Stack:
    """NATS + runtime + services in this process, started all-or-nothing and stopped in reverse.

    Entering raises StartError (everything already started torn down) when a part cannot start or the
    whole does not become ready within `start_timeout`; `health()` is ready only once every part is.
    """

    settings: Settings
    names: Sequence[str]
    metrics: Metrics = field(default_factory=Metrics)
    scheduling: bool = True
    health_port: int | None = None  # None: metrics.port from config; 0: off
    announce: bool = True  # publish lifecycle events
    start_timeout: float = 60.0
    drain_timeout: float = 3.0  # a batch still in its handler after this is cancelled, unacked
    parts: list[Part] = field(default_factory=list)
    rt: Runtime | None = None
    nats: NatsOwner | None = None
    health_server: HealthServer | None = None
    ready: bool = False
    _stack: AsyncExitStack | None = None
    _starting: str = "nats"
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def __aenter__(self) -> Stack:
        stack = AsyncExitStack()
        await stack.__aenter__()
        self._stack = stack
        try:
            await asyncio.wait_for(self._start(stack), self.start_timeout)
        except TimeoutError:
            await self._teardown(stack)
            raise StartError(
                self._starting,
                "",
                f"not ready within {self.start_timeout:.0f}s; everything started was stopped",
            ) from None
        except BaseException:
            await self._teardown(stack)
            raise
        return self

    async def _teardown(self, stack: AsyncExitStack) -> None:
        self.ready = False
        await self._stop_consumers()
        await stack.__aexit__(None, None, None)

    async def _start(self, stack: AsyncExitStack) -> None:
        conf = self.settings.config
        port = conf.metrics.port if self.health_port is None else self.health_port
        # Ports first: a taken port fails the start before anything else exists to tear down.
        if port:
            self._starting = "metrics"
            hs = HealthServer(self.metrics, self.health, conf.metrics.host, port)
            try:
                await hs.start()
            except OSError as exc:
                raise StartError(
                    "metrics",
                    "metrics.port",
                    f"{conf.metrics.host}:{port} is not available ({os.strerror(exc.errno) if exc.errno else exc})",
                ) from None
            self.health_server = hs  # answers 503 until every part is ready
            stack.push_async_callback(hs.stop)
        if "sync-gateway" in self.names and conf.sync_gateway.enabled:
            claim_port("sync-gateway", "sync_gateway.port", conf.sync_gateway.host, conf.sync_gateway.port)
        self._starting = "nats"
        owner = NatsOwner(self.settings)
        self.nats = owner
        key = "nats.url" if conf.nats.url else ""
        try:
            url = await owner.acquire()
        except (EmbeddedNatsError, RuntimeError, OSError) as exc:
            owner.release()
            raise StartError("nats", key, str(exc)) from None
        stack.callback(owner.release)
        try:
            rt = await stack.enter_async_context(
                open_runtime(
                    self.settings, url, name=f"assetsync:{','.join(self.names)}", metrics=self.metrics
                )
            )
        except bus.BusError as exc:
            raise StartError("nats", key or "nats.url", str(exc)) from None
        rt.scheduling = self.scheduling
        rt.ready = lambda: self.health()[0]
        self.rt = rt
        if owner.server is not None:
            watch = asyncio.create_task(owner.supervise(), name="supervise:nats-server")
            stack.push_async_callback(_cancel, watch)
        for name in self.names:
            if name not in SERVICE_MODULES:
                raise ValueError(f"unknown service {name!r} (expected one of {', '.join(SERVICE_MODULES)})")
            self._starting = name
            build = factory(name)
            if build is None:
                self.parts.append(Part(name, "absent", "not part of this build"))
                continue
            try:
                made = build(rt)
                if isinstance(made, Disabled):
                    self.parts.append(Part(name, "off", made.reason))
                    continue
                await made.start(stack)
            except StartError:
                raise
            except ConfigError as exc:
                raise StartError(name, exc.key, exc.problem) from None
            except Exception as exc:
                raise StartError(name, _key_for(name, exc), _reason(exc)) from exc
            self.parts.append(Part(name, "running", service=made))
            rt.metrics.up.labels(name).set(1)
        self._starting = "stack"
        if self.announce:
            await self._announce("started")
        self.ready = True

    @property
    def failed(self) -> asyncio.Event | None:
        """Set when the stack cannot go on (the embedded nats-server keeps dying)."""
        return self.nats.failed if self.nats is not None and self.nats.server is not None else None

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ready = False
        if self.announce and self.rt is not None and self.rt.nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._announce("stopping"), 2)
        await self._stop_consumers()
        if self._stack is not None:
            await self._stack.__aexit__(et, ev, tb)

    async def _stop_consumers(self) -> None:
        """Every consumer at once (each service's own stop then finds it done): prompt under load."""
        if self.rt is None or not self.rt.consumers:
            return
        stops = [asyncio.create_task(c.stop(timeout=self.drain_timeout)) for c in self.rt.consumers]
        await asyncio.wait(stops, timeout=self.drain_timeout + 1.0)

    async def _announce(self, state: str) -> None:
        assert self.rt is not None
        at = int(time.time() * 1000)
        for p in self.parts:
            if p.state == "running":
                await self.rt.publisher.publish_now(
                    ServiceLifecycle(
                        service=p.name,
                        instance=self.rt.instance,
                        state=state,  # type: ignore[arg-type]
                        at=at,
                        version=__version__,
                        host=os.uname().nodename,
                    )
                )

    # --- config reload (SIGHUP to `up`, `assetsync reload`) ------------------------------------
    async def reload(self) -> ReloadOutcome:
        """Re-read the config into the running services; an invalid config keeps the old one."""
        rt = self.rt
        assert rt is not None
        running: dict[str, object] = {p.name: p.service for p in self.parts if p.service is not None}

        def adopt(new: Settings) -> None:
            self.settings = new
            rt.settings = new

        async with self._reload_lock:
            return await reload_into(self.settings, running, adopt, instance=rt.instance)

    async def serve_reload(self) -> None:
        """Answer `assetsync reload` requests on this stack's control subject until the stack closes."""
        rt, stack = self.rt, self._stack
        assert rt is not None and stack is not None

        async def on_request(msg: Any) -> None:
            outcome = await self.reload()
            if msg.reply:
                with contextlib.suppress(Exception):
                    await rt.nc.publish(msg.reply, outcome.to_json())

        sub = await rt.nc.subscribe(reload_subject(rt.topo), cb=on_request)
        stack.push_async_callback(sub.unsubscribe)

    @property
    def running(self) -> list[Service]:
        return [p.service for p in self.parts if p.service is not None]

    def service(self, name: str) -> Service | None:
        return next((p.service for p in self.parts if p.name == name), None)

    def health(self) -> tuple[bool, dict[str, object]]:
        """Ready when every part started, NATS is connected and every running service says so."""
        detail: dict[str, object] = {}
        connected = self.rt is not None and self.rt.nc.is_connected
        restarting = self.nats is not None and self.nats.restarting
        ok = self.ready and connected and not restarting
        detail["state"] = "ready" if self.ready else f"starting ({self._starting})"
        if restarting:
            detail["nats"] = "embedded nats-server restarting"
        else:
            detail["nats"] = "connected" if connected else "disconnected"
        services: dict[str, object] = {}
        for p in self.parts:
            if p.service is not None:
                s_ok, msg = p.service.health()
                ok = ok and s_ok
                services[p.name] = {"ok": s_ok, "detail": msg}
                if self.rt is not None:
                    self.rt.metrics.up.labels(p.name).set(1 if s_ok else 0)
            else:
                services[p.name] = {"ok": True, "detail": f"{p.state}: {p.reason}"}
        detail["services"] = services
        return ok, detail


def _key_for(part: str, exc: BaseException) -> str:
    """The config key behind a start failure a user can fix."""
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
        return {"sync-gateway": "sync_gateway.port"}.get(part, "")
    cause = exc.__cause__
    if isinstance(cause, OSError) and part == "sync-gateway":
        return "sync_gateway.port" if cause.errno == errno.EADDRINUSE else "sync_gateway.tls_cert"
    if type(exc).__name__ in ("StoreBroken", "StoreUnavailable"):
        return "asset_sync.database.path"
    return ""


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if exc.__cause__ is not None and str(exc.__cause__) not in text:
        text = f"{text}: {exc.__cause__}"
    return " ".join(text.split())[:400]


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class StopGuard:
    """Bounds a stop: if draining overruns `budget` seconds (or a second signal arrives), the embedded
    server is stopped and the process exits at once. Safe: nothing is acknowledged before it is stored,
    so whatever was in flight is redelivered on the next start."""

    def __init__(self, budget: float = 9.0, code: int = 0) -> None:
        self.budget = budget
        self.code = code
        self.owner: NatsOwner | None = None
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(
                self.budget, self.force, args=(f"did not stop within {self.budget:.0f}s",)
            )
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def force(self, why: str = "second signal") -> None:
        # stderr may be a pipe to a parent that is gone (a supervisor killed outright): a failed write
        # must not keep the process from exiting.
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"assetsync: {why}; exiting now (unacknowledged events are redelivered on the next start)\n"
            )
            sys.stderr.flush()
        if self.owner is not None and self.owner.server is not None:
            with contextlib.suppress(Exception):
                self.owner.server.stop(timeout=1.0)
        os._exit(self.code)


def install_reload_handler(reload: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """SIGHUP runs `reload` (one at a time is the reload's own business; a failure is logged there)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[object]] = set()

    def on_hup() -> None:
        task: asyncio.Task[object] = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, on_hup)


def install_signal_handlers(stop: asyncio.Event, guard: StopGuard | None = None) -> None:
    """SIGINT/SIGTERM set `stop` (signal -> Event -> drain -> close); with a guard the stop is bounded
    and a second signal ends the process at once."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if guard is not None:
            if stop.is_set():
                guard.force()
            guard.arm()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)

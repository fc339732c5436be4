"""Run services: NATS (embedded unless `nats.url`), the runtime, each service; drain and close on exit."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from assetsync import __version__
from assetsync.config import Settings
from assetsync.embedded import EmbeddedNats
from assetsync.events import ServiceLifecycle
from assetsync.files import atomic_write
from assetsync.health import HealthServer
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.service import SERVICE_MODULES, Disabled, Service, factory

log = logging.getLogger("assetsync")


@dataclass
class Part:
    """One service's state in this process: running, off (and why) or absent from this build."""

    name: str
    state: str
    reason: str = ""
    service: Service | None = None


class NatsOwner:
    """Who serves NATS for a data dir: this process (embedded) or a stack already running there."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.data_dir / "run"
        self._lock_file: IO[str] | None = None
        self.server: EmbeddedNats | None = None
        self.url = ""
        self.shared = False  # True: another process on this data dir serves NATS

    def acquire(self) -> str:
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
        self.server = EmbeddedNats(
            self.settings.data_dir / "nats",
            log_file=self.settings.data_dir / "run" / "nats-server.log",
        )
        self.server.start()
        self.url = self.server.url
        write_state(
            self.settings.data_dir, {"nats_url": self.url, "pid": os.getpid(), "started_at": time.time()}
        )
        return self.url

    def release(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "stack.json").unlink()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


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
    """NATS + runtime + services in this process, started in order and stopped in reverse."""

    settings: Settings
    names: Sequence[str]
    metrics: Metrics = field(default_factory=Metrics)
    scheduling: bool = True
    health_port: int | None = None  # None: metrics.port from config; 0: off
    announce: bool = True  # publish lifecycle events
    parts: list[Part] = field(default_factory=list)
    rt: Runtime | None = None
    nats: NatsOwner | None = None
    health_server: HealthServer | None = None
    _stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Stack:
        stack = AsyncExitStack()
        await stack.__aenter__()
        self._stack = stack
        try:
            await self._start(stack)
        except BaseException:
            await stack.__aexit__(None, None, None)
            raise
        return self

    async def _start(self, stack: AsyncExitStack) -> None:
        owner = NatsOwner(self.settings)
        self.nats = owner
        url = await asyncio.to_thread(owner.acquire)
        stack.callback(owner.release)
        rt = await stack.enter_async_context(
            open_runtime(self.settings, url, name=f"assetsync:{','.join(self.names)}", metrics=self.metrics)
        )
        rt.scheduling = self.scheduling
        self.rt = rt
        for name in self.names:
            if name not in SERVICE_MODULES:
                raise ValueError(f"unknown service {name!r} (expected one of {', '.join(SERVICE_MODULES)})")
            build = factory(name)
            if build is None:
                self.parts.append(Part(name, "absent", "not part of this build"))
                continue
            made = build(rt)
            if isinstance(made, Disabled):
                self.parts.append(Part(name, "off", made.reason))
                continue
            await made.start(stack)
            self.parts.append(Part(name, "running", service=made))
            rt.metrics.up.labels(name).set(1)
        port = self.settings.config.metrics.port if self.health_port is None else self.health_port
        if port:
            hs = HealthServer(rt.metrics, self.health, self.settings.config.metrics.host, port)
            await hs.start()
            self.health_server = hs
            stack.push_async_callback(hs.stop)
        if self.announce:
            await self._announce("started")

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.announce and self.rt is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._announce("stopping"), 5)
        if self._stack is not None:
            await self._stack.__aexit__(et, ev, tb)

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

    @property
    def running(self) -> list[Service]:
        return [p.service for p in self.parts if p.service is not None]

    def service(self, name: str) -> Service | None:
        return next((p.service for p in self.parts if p.name == name), None)

    def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy when NATS is connected and every running service says so."""
        detail: dict[str, object] = {}
        ok = self.rt is not None and self.rt.nc.is_connected
        detail["nats"] = "connected" if ok else "disconnected"
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


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM set `stop` (the nats-py micro pattern: signal -> Event -> drain -> close)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

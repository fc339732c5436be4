"""Helpers for lifecycle tests: `assetsync up` as a real process, its output, ports and leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assetsync.embedded import free_port

from tests.support import OFFLINE_ENV, wait_for_sync


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `text`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if text in cmd and ") Z " not in stat:
            out.append(int(entry.name))
    return out


def healthz(port: int, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a health endpoint; (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, ValueError):
        return 0, {}


class Up:
    """One `assetsync up` process in its own directory, with free metrics and gateway ports."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        metrics_port: int | None = None,
        gateway_port: int | None = None,
    ) -> None:
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.dir / "data"
        self.metrics_port = metrics_port if metrics_port is not None else free_port()
        self.gateway_port = gateway_port if gateway_port is not None else free_port()
        self.env = {
            **os.environ,
            # (the demo points every client at its emulators itself; the environment would win over it)
            **({} if "--demo" in args else OFFLINE_ENV),
            "ASSETSYNC_METRICS__PORT": str(self.metrics_port),
            "ASSETSYNC_SYNC_GATEWAY__PORT": str(self.gateway_port),
            **(env or {}),
        }
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.out_path = self.dir / "out.txt"
        self.err_path = self.dir / "err.txt"

    def command(self, *words: str) -> list[str]:
        return [
            sys.executable, "-m", "assetsync", *words,
            "--data-dir", str(self.data_dir), "--log-dir", str(self.dir / "logs"),
        ]  # fmt: skip

    def start(self) -> Up:
        with self.out_path.open("ab") as out, self.err_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [*self.command("up"), *self.args], stdout=out, stderr=err, env=self.env, cwd=self.dir
            )
        return self

    def run(self, *words: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Another command on the same data dir and config, to completion."""
        return subprocess.run(
            self.command(*words), capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.dir
        )

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def wait_ready(self, timeout: float = 60.0, times: int = 1) -> Up:
        assert self.proc is not None
        wait_for_sync(
            lambda: self.out.count("ready in") >= times or self.proc.poll() is not None,  # type: ignore[union-attr]
            timeout,
            interval=0.05,
            what="`up` ready",
        )
        assert self.proc.poll() is None, f"`up` exited {self.proc.returncode}:\n{self.out}\n{self.err}"
        return self

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.data_dir / "run" / "stack.json").read_text())
        return data

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def nats_servers(self) -> list[int]:
        """nats-server processes serving this data dir's store."""
        return [p for p in processes_mentioning(str(self.data_dir / "nats")) if b"nats-server" in _exe(p)]

    def kill_all(self) -> None:
        """Test cleanup: nothing of this stack survives the test, whatever happened."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in processes_mentioning(str(self.data_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _exe(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return b""

"""The Docker engine of a deploy test: Debian packages when missing, a private dockerd, docker commands."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# Debian package -> a command it provides.
PACKAGES = {"docker.io": "dockerd", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}


class DeployTestError(Exception):
    """A stage of the deploy test failed; the message says which and why."""


def ensure_packages() -> None:
    """Install docker.io, docker-compose and debootstrap with apt when a command of theirs is missing."""
    missing = [pkg for pkg, cmd in PACKAGES.items() if shutil.which(cmd) is None]
    if not shutil.which("docker") and "docker.io" not in missing:
        missing.append("docker.io")
    if not missing:
        return
    print(f"deploy-test: installing Debian packages: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    check: bool = True,
    quiet: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise DeployTestError with its output (stdout + stderr tail)."""
    proc = subprocess.run(
        list(argv), env=env, cwd=cwd, input=input, text=True, capture_output=True, check=False
    )
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        raise DeployTestError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    if not quiet and proc.returncode != 0:
        print(f"deploy-test: `{' '.join(argv)}` exited {proc.returncode}", flush=True)
    return proc


class Dockerd:
    """A dockerd of our own: data root under the cache (images survive runs), state under a run dir."""

    def __init__(self, data_root: Path, run_dir: Path) -> None:
        self.data_root = data_root
        self.run_dir = run_dir
        self.socket = run_dir / "docker.sock"
        self.pidfile = run_dir / "docker.pid"
        self.log = data_root.parent / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for docker and docker-compose: our socket, the classic builder (no BuildKit)."""
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
        }

    def docker(self, *args: str, check: bool = True, input: str | None = None) -> str:
        return run(["docker", *args], env=self.env, check=check, input=input).stdout

    def start(self, timeout: float = 60.0) -> None:
        self._stop_stale()
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            "dockerd",
            f"--data-root={self.data_root}",
            f"--exec-root={self.run_dir / 'exec'}",
            f"--pidfile={self.pidfile}",
            f"--host=unix://{self.socket}",
            "--storage-driver=overlay2",
            # The host's uplink MTU is below 1500: larger packets from builds would be dropped.
            f"--mtu={_uplink_mtu()}",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeployTestError(f"dockerd exited {self.proc.returncode}; see {self.log}")
            if run(["docker", "info"], env=self.env, check=False, quiet=True).returncode == 0:
                return
            time.sleep(0.2)
        raise DeployTestError(f"dockerd did not answer within {timeout:.0f} s; see {self.log}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _stop_stale(self) -> None:
        """A dockerd a crashed earlier run left behind on our pidfile: stop it (it holds our data root)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if (
            not cmdline
            or not cmdline[0].endswith(b"dockerd")
            or f"--pidfile={self.pidfile}".encode() not in cmdline
        ):
            return
        print(f"deploy-test: stopping the dockerd (pid {pid}) an earlier run left behind", flush=True)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)


def _uplink_mtu() -> int:
    """The smallest MTU of the host's non-loopback interfaces that are up (1500 if none found)."""
    mtus = []
    for dev in Path("/sys/class/net").iterdir():
        if dev.name == "lo" or dev.name.startswith(("docker", "br-", "veth")):
            continue
        with contextlib.suppress(OSError, ValueError):
            if (dev / "operstate").read_text().strip() in ("up", "unknown"):
                mtus.append(int((dev / "mtu").read_text()))
    return min(mtus, default=1500)


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """One deploy test at a time (they share the dockerd run dir, its bridge and the data root)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("deploy-test: waiting for another deploy test to finish", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield

"""`assetsync up --processes`: the compose topology without Docker — one OS process per service replica.

The parent owns NATS (embedded unless `nats.url`), starts `python -m assetsync service NAME` per replica
with the NATS URL and its own metrics port in the environment, prefixes their output with
`[service.replica]`, restarts crashed children with exponential backoff (reset once a child has run
stably), and on SIGINT/SIGTERM stops every child with SIGTERM (drain) before releasing NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from assetsync.config import Settings
from assetsync.embedded import die_with_parent
from assetsync.retry import Backoff, Streak
from assetsync.service import SERVICE_MODULES

# Services that must run once per stack, and why (`--replicas NAME=2` is refused with this reason).
SINGLE_INSTANCE: dict[str, str] = {
    "store": "the store is SQLite's single writer (one process may write assets.db)",
    "feishu-writer": "the feishu-writer is Feishu's single writer (two could create the same 持仓 row twice)",
    "alerter": "the alerter keeps its de-duplication state in memory (two would send duplicate alerts)",
    "market": "the market service keeps its prices and candles in memory (two would each see half the events)",
    "collector-okx": "collector-okx publishes its feeds when they change since its own last poll "
    "(two would publish positions and orders twice)",
    "sync-gateway": "the sync gateway binds sync_gateway.port and owns its feed files in the data dir",
}
MAX_REPLICAS = 16


class ReplicasError(ValueError):
    """A `--replicas` value that cannot be run."""


def parse_replicas(text: str) -> dict[str, int]:
    """`collector-crypto=2,store=1` -> {name: count}; unknown names, bad counts and scaled singletons refused."""
    out: dict[str, int] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep:
            raise ReplicasError(f"--replicas: {item!r} is not NAME=COUNT (e.g. collector-crypto=2)")
        if name not in SERVICE_MODULES:
            raise ReplicasError(
                f"--replicas: unknown service {name!r} (expected one of {', '.join(SERVICE_MODULES)})"
            )
        try:
            n = int(count)
        except ValueError:
            raise ReplicasError(f"--replicas: {name}={count!r}: the count must be a whole number") from None
        if not 0 <= n <= MAX_REPLICAS:
            raise ReplicasError(f"--replicas: {name}={n}: the count must be 0-{MAX_REPLICAS}")
        if n > 1 and name in SINGLE_INSTANCE:
            raise ReplicasError(f"--replicas: {name}={n} refused: {SINGLE_INSTANCE[name]}; use {name}=1")
        out[name] = n
    return out


@dataclass(frozen=True)
class ProcSpec:
    """One child process: a service replica and its metrics port (0 = none)."""

    service: str
    replica: int
    metrics_port: int = 0

    @property
    def label(self) -> str:
        return f"{self.service}.{self.replica}"


def plan(replicas: Mapping[str, int], *, metrics_port: int = 0, names: Sequence[str] = ()) -> list[ProcSpec]:
    """Every service once (in start order) unless `replicas` says otherwise; ports metrics_port, +1, …"""
    out: list[ProcSpec] = []
    for name in names or list(SERVICE_MODULES):
        for i in range(1, replicas.get(name, 1) + 1):
            port = metrics_port + len(out) if metrics_port else 0
            out.append(ProcSpec(name, i, port))
    return out


# Restarting a crashed child: 0.5 s, doubling up to 30 s.
RESTART = Backoff(base=0.5, cap=30.0, jitter=(1.0, 1.0))


@dataclass
class Child:
    """A supervised child and its history."""

    spec: ProcSpec
    backoff: Streak
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    off: bool = False  # the child said its part is off (and exited 0)
    done: bool = False  # exited 0: not restarted

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None


class Supervisor:
    """Starts, watches and restarts the children; `run(stop)` returns 0 once they are stopped."""

    def __init__(
        self,
        specs: Sequence[ProcSpec],
        *,
        nats_url: str,
        cli_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        backoff: Backoff = RESTART,
        stop_timeout: float = 30.0,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.cli_args = list(cli_args)
        self.env = dict(os.environ if env is None else env)
        self.stop_timeout = stop_timeout
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        # Each child's restart delay grows while it keeps crashing, and resets once it ran 30 s.
        self.children = [Child(s, Streak(backoff, stable_after=30.0)) for s in specs]
        self._halting = asyncio.Event()  # set once stopping: no more (re)starts
        self._changed = asyncio.Event()

    def child(self, label: str) -> Child:
        return next(c for c in self.children if c.spec.label == label)

    def command(self, spec: ProcSpec) -> list[str]:
        return [sys.executable, "-m", "assetsync", "service", spec.service, "--exit-if-off", *self.cli_args]

    def child_env(self, spec: ProcSpec) -> dict[str, str]:
        env = dict(self.env)
        env["ASSETSYNC_NATS__URL"] = self.nats_url
        env["ASSETSYNC_METRICS__PORT"] = str(spec.metrics_port)
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the prefixer as they are written
        return env

    async def run(self, stop: asyncio.Event) -> int:
        """Supervise until `stop` is set, then SIGTERM every child, wait, and return 0."""
        watchers = [
            asyncio.create_task(self._watch(c), name=f"supervise:{c.spec.label}") for c in self.children
        ]
        try:
            await stop.wait()
        finally:
            self._halting.set()
            await self._stop_all()
            for w in watchers:
                w.cancel()
            for w in watchers:
                with contextlib.suppress(asyncio.CancelledError):
                    await w
        return 0

    async def _start(self, c: Child) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.command(c.spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.child_env(c.spec),
            # Own process group: a terminal's Ctrl+C reaches only the parent, which stops children in
            # order; PDEATHSIG: a parent killed outright takes its children with it.
            start_new_session=True,
            limit=1 << 20,  # a long traceback line still fits
            preexec_fn=die_with_parent(),
        )
        c.proc, c.started_at = proc, time.monotonic()
        c.starts += 1
        port = f", metrics :{c.spec.metrics_port}" if c.spec.metrics_port else ""
        verb = "started" if c.starts == 1 else f"restarted (#{c.starts - 1})"
        self._say(c, f"{verb} (pid {proc.pid}{port})")
        self._changed.set()
        return proc

    async def _watch(self, c: Child) -> None:
        while not self._halting.is_set():
            try:
                proc = await self._start(c)
            except OSError as exc:
                self._say(c, f"cannot start: {exc}", err=True)
                code, ran_for = -1, 0.0
            else:
                assert proc.stdout is not None and proc.stderr is not None
                pumps = [
                    asyncio.create_task(self._pump(c, proc.stdout, self.out)),
                    asyncio.create_task(self._pump(c, proc.stderr, self.err)),
                ]
                code = await proc.wait()
                await asyncio.gather(*pumps, return_exceptions=True)
                ran_for = time.monotonic() - c.started_at
            c.exit_codes.append(code)
            self._changed.set()
            if self._halting.is_set():
                return
            if code == 0:
                c.done = True
                if not c.off:
                    self._say(c, "exited normally; not restarted")
                return
            delay = c.backoff.fail(ran_for)
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
            self._say(c, f"{how} after {ran_for:.1f}s; restarting in {delay:.1f}s", err=True)
            await asyncio.sleep(delay)

    async def _pump(self, c: Child, stream: asyncio.StreamReader, to: TextIO) -> None:
        prefix = f"[{c.spec.label}] "
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the reader's limit: asyncio dropped it; keep reading
                line = b"(an over-long output line was dropped)\n"
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            if c.spec.service in text and (" off — " in text or " absent — " in text):
                c.off = True
            to.write(prefix + text + "\n")
            to.flush()

    def forward(self, sig: signal.Signals) -> None:
        """Pass a signal (SIGHUP: reload the config) on to every live child."""
        for c in self.children:
            if c.proc is not None and c.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.send_signal(sig)

    async def _stop_all(self) -> None:
        live = [c for c in self.children if c.proc is not None and c.proc.returncode is None]
        for c in live:
            assert c.proc is not None
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)
        if not live:
            return
        waits = [asyncio.create_task(c.proc.wait()) for c in live if c.proc is not None]
        _, pending = await asyncio.wait(waits, timeout=self.stop_timeout)
        for c in live:
            if c.proc is not None and c.proc.returncode is None:
                self._say(c, f"did not stop within {self.stop_timeout:.0f}s; killing it", err=True)
                with contextlib.suppress(ProcessLookupError):
                    c.proc.kill()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def wait_running(self, labels: Sequence[str] = (), timeout: float = 30.0) -> None:
        """Wait until the given children (default: all) have a live process."""
        want = [c for c in self.children if not labels or c.spec.label in labels]
        deadline = time.monotonic() + timeout
        while not all(c.pid is not None or c.done for c in want):
            if time.monotonic() > deadline:
                missing = ", ".join(c.spec.label for c in want if c.pid is None)
                raise TimeoutError(f"children not running after {timeout:.0f}s: {missing}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.2)

    def _say(self, c: Child, text: str, *, err: bool = False) -> None:
        to = self.err if err else self.out
        to.write(f"[{c.spec.label}] supervisor: {text}\n")
        to.flush()


def cli_args_for(
    config: Path | None, data_dir: Path | None, log_dir: Path | None, log_level: str
) -> list[str]:
    """The options every child gets so it loads the same configuration as the parent."""
    out: list[str] = []
    for flag, value in (("--config", config), ("--data-dir", data_dir), ("--log-dir", log_dir)):
        if value is not None:
            out += [flag, str(Path(value).resolve())]
    return [*out, "--log-level", log_level]


async def run_processes(
    settings: Settings,
    replicas: Mapping[str, int],
    cli_args: Sequence[str],
    *,
    out: TextIO | None = None,
) -> int:
    """`assetsync up --processes`: NATS in this process, each service replica a supervised child."""
    from assetsync.stack import NatsOwner, StartError, StopGuard, claim_port, install_signal_handlers

    o = out or sys.stdout
    conf = settings.config
    specs = plan(replicas, metrics_port=conf.metrics.port)
    try:  # every child's port, before anything starts: one line and exit 1, not a restart loop
        for spec in specs:
            claim_port(spec.label, "metrics.port", conf.metrics.host, spec.metrics_port)
        if conf.sync_gateway.enabled and any(s.service == "sync-gateway" for s in specs):
            claim_port("sync-gateway", "sync_gateway.port", conf.sync_gateway.host, conf.sync_gateway.port)
    except StartError as exc:
        print(exc.line(), file=sys.stderr)
        return 1
    stop = asyncio.Event()
    guard = StopGuard(9.5)
    install_signal_handlers(stop, guard)
    owner = NatsOwner(settings)
    guard.owner = owner
    try:
        url = await owner.acquire()
    except Exception as exc:
        owner.release()
        key = "nats.url" if settings.config.nats.url else ""
        print(StartError("nats", key, str(exc)).line(), file=sys.stderr)
        return 1
    watch: asyncio.Task[None] | None = None
    try:
        if owner.shared:
            print(
                f"assetsync: a stack is already running on {settings.data_dir} (NATS {url}); "
                "stop it first or use another --data-dir",
                file=sys.stderr,
            )
            return 1
        # Children stop themselves within 7s; the supervisor kills any that do not by 8s.
        sup = Supervisor(specs, nats_url=url, cli_args=cli_args, out=o, stop_timeout=8.0)
        if owner.server is not None:
            watch = asyncio.create_task(owner.supervise(), name="supervise:nats-server")
            # The server kept dying: stop everything and exit 1 so an outer supervisor acts.
            watch.add_done_callback(lambda _: stop.set() if owner.failed.is_set() else None)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, sup.forward, signal.SIGHUP)
        embedded = " (embedded)" if owner.server is not None else ""
        o.write(f"assetsync up --processes: {len(specs)} processes\n")
        o.write(
            f"  nats:      {url}{embedded}\n  data dir:  {settings.data_dir}\n  logs:      {settings.log_dir}\n"
        )
        o.write("press Ctrl+C (or send SIGTERM) to stop\n")
        o.flush()
        code = await sup.run(stop)
        if owner.failed.is_set():
            print(f"assetsync: nats cannot run: {owner.fatal}", file=sys.stderr)
            code = 1
        o.write("stopped\n")
        o.flush()
        return code
    finally:
        guard.arm()
        if watch is not None:
            watch.cancel()
        await asyncio.to_thread(owner.release)
        guard.disarm()

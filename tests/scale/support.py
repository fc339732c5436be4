"""Helpers for the scale-out tests: a fixed-offset time zone, a 3-node cluster, output capture."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
from assetsync.embedded import EmbeddedNats, free_port


def write_offset_zone(tzdir: Path, name: str, offset_seconds: int) -> None:
    """A TZif v2 zone `name` at a fixed UTC offset of `offset_seconds` (may be sub-minute).

    With `PYTHONTZPATH=tzdir`, child processes schedule in this zone: a minute slot can then be made
    to fall a few seconds from now, so a test sees a real cron slot without waiting up to a minute.
    """
    abbr = b"FST\x00"
    header = b"TZif2" + b"\x00" * 15 + struct.pack(">6l", 0, 0, 0, 0, 1, len(abbr))
    block = struct.pack(">lBB", offset_seconds, 0, 0) + abbr
    sign = "-" if offset_seconds >= 0 else "+"  # POSIX offsets are west-positive
    o = abs(offset_seconds)
    footer = f"\nFST{sign}{o // 3600}:{o % 3600 // 60:02d}:{o % 60:02d}\n".encode()
    path = tzdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + block + header + block + footer)


def offset_for_slot_in(seconds: float) -> int:
    """The zone offset (0-59 s) that puts a local minute boundary `seconds` from now."""
    target = int(time.time() + seconds)
    return (60 - target % 60) % 60


class Lines:
    """Collects a child's output lines (asyncio) so tests can wait on what it printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def pump(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def matching(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [ln for ln in self.lines if rx.search(ln)]

    def text(self) -> str:
        return "\n".join(self.lines)


class Cluster:
    """Three nats-server processes with JetStream, routed on loopback as one cluster."""

    def __init__(self, root: Path, size: int = 3) -> None:
        ports = [free_port() for _ in range(size)]
        routes = [f"nats://127.0.0.1:{p}" for p in ports]
        self.nodes = [
            EmbeddedNats(
                root / f"n{i}",
                server_name=f"n{i}",
                cluster="assetsync-test",
                cluster_port=ports[i],
                routes=[r for j, r in enumerate(routes) if j != i],
                log_file=root / f"n{i}.log",
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self) -> Cluster:
        for n in self.nodes:
            n.start()
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def node(self, name: str) -> EmbeddedNats:
        return next(n for n in self.nodes if n.server_name == name)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until JetStream has a meta leader and accepts an R3 stream (the cluster formed)."""
        nc = await nats.connect(self.urls)
        try:
            js = nc.jetstream(timeout=2.0)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await js.add_stream(
                        name="READY_PROBE", subjects=["ready.probe"], num_replicas=len(self.nodes)
                    )
                    await js.delete_stream("READY_PROBE")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()


@contextlib.contextmanager
def cluster(root: Path) -> Iterator[Cluster]:
    c = Cluster(root).start()
    try:
        yield c
    finally:
        c.stop()


@contextlib.asynccontextmanager
async def ready_cluster(root: Path) -> AsyncIterator[Cluster]:
    with cluster(root) as c:
        await c.wait_ready()
        yield c


def read_only(db: Path) -> contextlib.closing[sqlite3.Connection]:
    """A read-only connection to a live store's database, closed on exit."""
    return contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True))

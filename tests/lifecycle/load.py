"""Load for lifecycle tests: events streaming into a running stack, a stalling remote, idle clients."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from assetsync import events as ev
from assetsync.config import load_settings
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime

T0 = 1_790_000_000_000


class EventStream:
    """Publishes price ticks and rounds of holdings into a stack's NATS until stopped."""

    def __init__(self, url: str, data_dir: Path, env: Mapping[str, str], assets: int = 20) -> None:
        self.url = url
        self.settings = load_settings(None, data_dir=data_dir, environ=env)
        self.assets = [f"L{i:02d}" for i in range(assets)]
        self.ticks = 0
        self.rounds = 0
        self.running = True
        self.confirmed_ticks = 0  # ticks JetStream acknowledged (flushed)
        self.confirmed_rounds = 0

    async def run(self, burst: int = 200, pause: float = 0.1) -> None:
        async with open_runtime(self.settings, self.url, name="test-load", metrics=Metrics()) as rt:
            while self.running:
                for _ in range(burst):
                    await rt.publisher.publish(
                        ev.PriceTick(
                            source="binance",
                            asset=self.assets[self.ticks % len(self.assets)],
                            price=1.0,
                            currency="USDT",
                            ts=T0 + self.ticks,
                        )
                    )
                    self.ticks += 1
                self.rounds += 1
                for a in self.assets:
                    await rt.publisher.publish(
                        ev.Holding(
                            source="binance",
                            asset=a,
                            quantity=float(self.rounds),
                            currency="USDT",
                            as_of=T0 + self.rounds * 1000,
                            price=2.0,
                            avg_cost=1.0,
                        )
                    )
                await rt.publisher.flush()
                self.confirmed_ticks, self.confirmed_rounds = self.ticks, self.rounds
                await asyncio.sleep(pause)


@contextlib.contextmanager
def stalling_server() -> Iterator[str]:
    """An HTTP 'remote' that accepts connections and never answers (a replication in flight)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = srv.accept()
                held.append(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()


def idle_keepalive_clients(port: int, n: int = 3) -> list[http.client.HTTPConnection]:
    """Connections that made one request and stay open, idle."""
    conns = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/healthz")
        c.getresponse().read()
        conns.append(c)
    return conns

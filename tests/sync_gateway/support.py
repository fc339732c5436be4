"""Helpers for gateway tests: build a gateway from explicit options and serve it on a loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from assetsync import bus
from assetsync.config import Settings, SyncGatewayConf, load_settings
from assetsync.embedded import EmbeddedNats
from assetsync.events import Event, Holding, PriceTick
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync_sync_gateway.core import Gateway, GatewayOptions
from assetsync_sync_gateway.feeds import NewRecord
from assetsync_sync_gateway.http_api import create_app
from assetsync_sync_gateway.http_server import Running, server_config, start_server, stop_server
from assetsync_sync_gateway.portfolio import PortfolioOptions
from assetsync_sync_gateway.receiver import EventSink, Tuning
from assetsync_sync_gateway.registry import Endpoint

E = TypeVar("E", bound=Event)

FAST = Tuning(
    page_limit=500,
    max_concurrency=4,
    max_attempts=8,
    backoff_base=0.01,
    backoff_cap=0.2,
    failure_backoff_base=0.05,
)


def gw_conf(**sections: Any) -> SyncGatewayConf:
    """A SyncGatewayConf from plain dicts (secrets given as strings)."""
    from assetsync.config import _dec_hook

    return msgspec.convert(sections, SyncGatewayConf, dec_hook=_dec_hook)


def ext(code: str, **kw: Any) -> Endpoint:
    """An extra (registry) endpoint; these tests fill its feed directly."""
    base: dict[str, Any] = {
        "code": code,
        "category": "test_data",
        "name": f"测试{code}",
        "api_path": f"/api/test/{code.lower()}",
        "source": "http",
        "upstream_url": "http://127.0.0.1:9/unused",
        "interval_seconds": 3600,
    }
    base.update(kw)
    return msgspec.convert(base, Endpoint)


@dataclass
class Site:
    """A gateway served on loopback."""

    gw: Gateway
    running: Running

    @property
    def url(self) -> str:
        return self.running.url


def make_gateway(
    data_dir: Path,
    site_id: str,
    *,
    conf: SyncGatewayConf | None = None,
    extra: Sequence[Endpoint] = (),
    sink: EventSink | None = None,
    tuning: Tuning | None = FAST,
    run_sources: bool = False,
    builtin: bool = True,
    portfolio: PortfolioOptions | None = None,
    native: Sequence[Endpoint] = (),
) -> Gateway:
    return Gateway(
        GatewayOptions(
            data_dir=data_dir,
            site_id=site_id,
            conf=conf or SyncGatewayConf(),
            extra_endpoints=extra,
            sink=sink,
            tuning=tuning,
            run_sources=run_sources,
            builtin=builtin,
            portfolio=portfolio,
            native_endpoints=native,
        )
    )


@contextlib.asynccontextmanager
async def serve(gw: Gateway, host: str = "127.0.0.1", port: int = 0, **tls: str) -> AsyncIterator[Site]:
    running = await start_server(server_config(create_app(gw), host, port, **tls))
    try:
        yield Site(gw, running)
    finally:
        await stop_server(running)


async def fill(gw: Gateway, code: str, n: int, *, start: int = 0, origin: str = "") -> None:
    """Append n JSON records {"i": k, ...} to an extra endpoint's feed."""
    recs = [
        NewRecord(origin=origin, data=b'{"i":%d,"payload":"record number %d"}' % (k, k))
        for k in range(start, start + n)
    ]
    for i in range(0, len(recs), 5000):
        await gw.feeds.append({code: recs[i : i + 5000]})


def holding(asset: str, as_of: int, qty: float = 1.0) -> Holding:
    return Holding(source="binance", asset=asset, quantity=qty, currency="USDT", as_of=as_of, price=2.0)


def tick(asset: str, ts: int, price: float = 1.5) -> PriceTick:
    return PriceTick(source="binance", asset=asset, price=price, currency="USDT", ts=ts)


def receiver_conf(remote: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"enabled": True, "remote_url": remote, "sync_interval": 3600, "auto_sync": False}
    out.update(kw)
    return out


async def events_of(gw: Gateway, code: str) -> list[Event]:
    """Received records of a built-in endpoint, decoded back into events."""
    from assetsync.events import Codec

    c = Codec()
    return [c.decode(d) for _, _, d in await gw.received.records(code)]


class FlakyProxy:
    """A TCP proxy that drops connections, truncates responses and adds latency (seeded, so reproducible)."""

    def __init__(
        self,
        upstream_port: int,
        *,
        seed: int = 7,
        drop: float = 0.15,
        truncate: float = 0.15,
        delay: float = 0.01,
    ) -> None:
        import random

        self.upstream_port = upstream_port
        self.rnd = random.Random(seed)
        self.drop = drop
        self.truncate = truncate
        self.delay = delay
        self.faults = {"dropped": 0, "truncated": 0, "delayed": 0}
        self.server: Any = None
        self.port = 0
        self.flowing: Any = None  # asyncio.Event: cleared, no further response bytes reach the client

    async def start(self) -> None:
        import asyncio

        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _conn(self, reader: Any, writer: Any) -> None:
        import asyncio
        import contextlib

        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pump_up() -> None:
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    up_w.write(data)
                    await up_w.drain()
            with contextlib.suppress(Exception):
                up_w.close()

        async def pump_down() -> None:
            with contextlib.suppress(Exception):
                while data := await up_r.read(65536):
                    await self.flowing.wait()
                    roll = self.rnd.random()
                    if roll < self.drop:
                        self.faults["dropped"] += 1
                        break
                    if roll < self.drop + self.truncate and len(data) > 10:
                        self.faults["truncated"] += 1
                        writer.write(data[: self.rnd.randrange(1, len(data))])
                        await writer.drain()
                        break
                    if self.delay:
                        self.faults["delayed"] += 1
                        await asyncio.sleep(self.rnd.uniform(0, self.delay))
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(Exception):
                up_w.close()

        await asyncio.gather(pump_up(), pump_down())


def site_settings(tmp: Path, prefix: str, site: str, **gw: Any) -> Settings:
    """Settings of one site on a shared nats-server: its own prefix, data dir and any free ports."""
    conf: dict[str, Any] = {
        "nats": {"prefix": prefix},
        "metrics": {"port": 0},
        "sync_gateway": {"site_id": site, "port": 0, **gw},
    }
    return load_settings(
        None, data_dir=tmp / site / "data", log_dir=tmp / site / "logs", environ={}, overrides=conf
    )


async def runtime_for(stack: AsyncExitStack, nats_server: EmbeddedNats, settings: Settings) -> Runtime:
    """A runtime on the test's nats-server, closed with `stack`."""
    return await stack.enter_async_context(
        open_runtime(settings, nats_server.url, name=f"gw-{settings.site_id}", metrics=Metrics())
    )


async def collect_on_bus(
    stack: AsyncExitStack, rt: Runtime, stream: str, subject: str, kind: type[E]
) -> list[E]:
    """Every `kind` event delivered on `subject` from now on, gathered by a durable consumer of `stream`."""
    seen: list[E] = []

    async def watch(batch: Sequence[bus.Delivery]) -> None:
        seen.extend(d.event for d in batch if isinstance(d.event, kind))

    watcher = rt.consumer(
        bus.ConsumerSpec(durable=rt.durable("watch"), stream=stream, subjects=(subject,)), watch
    )
    await watcher.start()
    stack.push_async_callback(watcher.stop)
    return seen

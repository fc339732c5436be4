"""The sync-gateway service: bus events into feeds, received records onto the bus, the HTTP API served."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from contextlib import AsyncExitStack

from assetsync import bus
from assetsync.config import ConfigError
from assetsync.events import Event
from assetsync.runtime import Runtime
from assetsync.service import Disabled, Service

from assetsync_sync_gateway.core import Gateway
from assetsync_sync_gateway.http_api import create_app
from assetsync_sync_gateway.http_server import Running, server_config, start_server, stop_server
from assetsync_sync_gateway.registry import RegistryError

NAME = "sync-gateway"
CATCH_UP_POLL = 0.1
log = logging.getLogger("assetsync.gateway")


def consumer_specs(rt: Runtime) -> list[bus.ConsumerSpec]:
    """What the gateway reads: what its built-in and native feeds export, and records relayed by receivers."""
    t = rt.topo
    return [
        bus.ConsumerSpec(
            durable=rt.durable("sync-gateway-market"),
            stream=t.market,
            subjects=(t.price(), t.kline()),
            description="sync gateway: prices and klines into feeds",
        ),
        # Its own durable (not a new filter on sync-gateway-market): a new durable delivers every
        # FeedRecord the stream holds, also on a site upgraded from before native feeds.
        bus.ConsumerSpec(
            durable=rt.durable("sync-gateway-feed"),
            stream=t.market,
            subjects=(t.feed(">"),),
            description="sync gateway: native endpoint records (FeedRecord) into feeds",
        ),
        bus.ConsumerSpec(
            durable=rt.durable("sync-gateway-portfolio"),
            stream=t.portfolio,
            subjects=(t.holding(), t.trade(), t.order(), t.snapshot()),
            description="sync gateway: holdings, trades, orders, snapshots into feeds",
        ),
        bus.ConsumerSpec(
            durable=rt.durable("sync-gateway-ops"),
            stream=t.ops,
            subjects=(t.result(), t.external()),
            description="sync gateway: task logs and relayed records into feeds",
        ),
    ]


class GatewayService:
    """Serves the gateway API and keeps its feeds fed from the bus."""

    name = NAME

    def __init__(self, rt: Runtime, gw: Gateway) -> None:
        self.rt = rt
        self.gw = gw
        self.running: Running | None = None

    @property
    def url(self) -> str:
        return self.running.url if self.running else ""

    async def start(self, stack: AsyncExitStack) -> None:
        conf = self.rt.settings.config.sync_gateway
        self.gw.ready = lambda: self.rt.ready()
        app = create_app(self.gw)
        self.running = await start_server(
            server_config(
                app,
                conf.host,
                conf.port,
                tls_cert=self._path(conf.tls_cert),
                tls_key=self._path(conf.tls_key),
            )
        )
        stack.push_async_callback(stop_server, self.running, 4.0)
        # Until the consumers have read what the bus already holds, built-in feeds answer has_more.
        self.gw.builtin_ready.clear()
        specs = consumer_specs(self.rt)
        for spec in specs:
            c = self.rt.consumer(spec, self._handle)
            await c.start()
            stack.push_async_callback(c.stop)
        watch = asyncio.create_task(self._watch_catch_up(specs), name="gateway-catch-up")
        stack.callback(watch.cancel)
        self.rt.log.info("sync gateway serving on %s", self.url)

    async def _watch_catch_up(self, specs: Sequence[bus.ConsumerSpec]) -> None:
        """Set `builtin_ready` once every consumer has handled what its stream held at the start."""
        targets: dict[str, int] = {}
        while True:
            done = 0
            for spec in specs:
                try:
                    info = await self.rt.js.consumer_info(spec.stream, spec.durable)
                except Exception as exc:  # the bus may be reconnecting: ask again
                    log.debug("gateway: catch-up check of %s failed: %s", spec.durable, exc)
                    continue
                if spec.durable not in targets and not info.num_pending:
                    targets[spec.durable] = int(info.delivered.stream_seq or 0)
                target = targets.get(spec.durable)
                if target is not None and (
                    not info.num_ack_pending or int(info.ack_floor.stream_seq or 0) >= target
                ):
                    done += 1
            if done == len(specs):
                self.gw.builtin_ready.set()
                log.info("gateway: built-in feeds caught up with the bus")
                return
            await asyncio.sleep(CATCH_UP_POLL)

    def _path(self, p: str) -> str:
        if not p:
            return ""
        path = self.rt.settings.config_dir / p
        return str(path)

    async def _handle(self, batch: Sequence[bus.Delivery]) -> None:
        try:
            await self.gw.ingest(d.event for d in batch)
        except sqlite3.OperationalError as exc:  # disk full, locked: retry later, nothing acked
            raise bus.TransientError(f"gateway feed store: {exc}") from exc

    def health(self) -> tuple[bool, str]:
        if not self.gw.started or self.running is None or self.running.task.done():
            return False, "sync gateway not serving"
        return True, f"serving on {self.url}"


def build(rt: Runtime) -> Service | Disabled:
    """The gateway service, or Disabled when `sync_gateway.enabled` is false."""
    conf = rt.settings.config.sync_gateway
    if not conf.enabled:
        return Disabled("sync_gateway.enabled is false")
    publisher = rt.publisher

    async def republish(events: Sequence[Event]) -> None:
        for e in events:
            await publisher.publish(e)
        await publisher.flush()

    try:
        gw = Gateway.from_settings(rt.settings, metrics=rt.metrics, sink=republish)
    except RegistryError as exc:
        key = exc.source if exc.source == "sync_gateway.feeds" else "sync_gateway.registry"
        raise ConfigError(key, str(exc)) from exc
    return GatewayService(rt, gw)

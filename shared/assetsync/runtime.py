"""What a running service gets: settings, the NATS connection, names, publisher and metrics."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from assetsync import bus
from assetsync.config import Settings
from assetsync.events import Codec
from assetsync.metrics import Metrics
from assetsync.subjects import Topology


@dataclass
class Runtime:
    """Shared resources handed to every service (built once per process, passed in)."""

    settings: Settings
    nc: NATS
    js: JetStreamContext
    topo: Topology
    codec: Codec
    publisher: bus.Publisher
    metrics: Metrics
    instance: str
    log: logging.Logger
    consumers: list[bus.Consumer] = field(default_factory=list)
    # False in one-shot runs (`assetsync task ...`): services start no schedulers.
    scheduling: bool = True
    # Whether the whole stack in this process is ready (set by the Stack; served by every /healthz).
    ready: Callable[[], bool] = field(default=lambda: True)

    def consumer(self, spec: bus.ConsumerSpec, handler: bus.BatchHandler) -> bus.Consumer:
        """A durable consumer bound to this runtime (start it in the service's `start`)."""
        c = bus.Consumer(
            self.nc,
            self.js,
            spec,
            handler,
            self.codec,
            self.metrics,
            log=logging.getLogger(f"assetsync.consumer.{spec.durable}"),
        )
        self.consumers.append(c)
        return c

    def durable(self, base: str) -> str:
        """A durable consumer name in this stack's namespace."""
        return self.topo.durable(base)


def instance_id() -> str:
    """host-pid: tells replicas apart in logs and lifecycle events."""
    return f"{socket.gethostname()}-{os.getpid()}"


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    servers: str | Sequence[str],
    *,
    name: str,
    metrics: Metrics | None = None,
    topo: Topology | None = None,
) -> AsyncIterator[Runtime]:
    """Connect, declare the streams, and on exit flush publishes then drain the connection."""
    log = logging.getLogger("assetsync")
    nc = await bus.connect(servers, name=name, log=log)
    try:
        js = bus.jetstream(nc)
        nconf = settings.config.nats
        tp = topo or Topology(nconf.prefix)
        await bus.ensure_streams(
            js,
            tp.streams(duplicate_window=nconf.duplicate_window, max_age_days=nconf.max_age_days),
            replicas=nconf.stream_replicas,
        )
        codec = Codec()
        m = metrics or Metrics()
        pub = bus.Publisher(js, tp, codec, m, log=log)
        rt = Runtime(settings, nc, js, tp, codec, pub, m, instance_id(), log)
        try:
            yield rt
        finally:
            with contextlib.suppress(Exception):
                await pub.flush(timeout=10)
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
        with contextlib.suppress(Exception):
            await nc.close()

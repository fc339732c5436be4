"""Connecting to NATS (bounded first connect, endless reconnects) and declaring the streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api

from assetsync.bus.errors import BusError
from assetsync.retry import Backoff
from assetsync.subjects import StreamSpec

# Waiting for a server that is starting (the first connect; later reconnects are nats-py's own).
FIRST_CONNECT = Backoff(base=0.1, cap=2.0, jitter=(1.0, 1.0))


async def connect(
    servers: str | Sequence[str],
    *,
    name: str,
    log: logging.Logger | None = None,
    connect_deadline: float = 10.0,
) -> NATS:
    """Connect with unlimited reconnects; retry the first connect until `connect_deadline`."""
    lg = log or logging.getLogger("assetsync.bus")
    urls = [servers] if isinstance(servers, str) else list(servers)
    urls = [u for s in urls for u in s.split(",") if u.strip()]

    async def on_error(exc: Exception) -> None:
        lg.warning("NATS error: %s", exc)

    async def on_disconnect() -> None:
        if nc.is_closed or nc.is_draining:
            return  # our own shutdown
        lg.warning("NATS disconnected; reconnecting")

    async def on_reconnect() -> None:
        lg.info("NATS reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    deadline = time.monotonic() + connect_deadline
    attempt = 0
    while True:
        attempt += 1
        nc = NATS()
        try:
            # Unlimited reconnects make nats-py retry a first connect forever too: bound it here.
            await asyncio.wait_for(
                nc.connect(
                    servers=urls,
                    name=name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    connect_timeout=3,
                    ping_interval=10,
                    max_outstanding_pings=3,
                    pending_size=64 * 1024 * 1024,
                    drain_timeout=3,  # a stop must finish in seconds; anything undrained is redelivered
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                ),
                max(0.5, deadline - time.monotonic()),
            )
            return nc
        except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
            delay = FIRST_CONNECT.delay(attempt)
            if time.monotonic() + delay > deadline:
                with contextlib.suppress(Exception):
                    await nc.close()
                raise BusError(f"cannot reach NATS at {', '.join(urls)}: {exc or 'timed out'}") from exc
            await asyncio.sleep(delay)


def jetstream(nc: NATS, max_pending: int = 20000) -> JetStreamContext:
    """A JetStream context whose own async-publish bound is above the Publisher's."""
    return nc.jetstream(timeout=10.0, publish_async_max_pending=max_pending)


async def ensure_streams(js: JetStreamContext, specs: Sequence[StreamSpec], *, replicas: int = 1) -> None:
    """Create each stream, or update it when its limits changed (idempotent)."""
    for spec in specs:
        cfg = api.StreamConfig(
            name=spec.name,
            description=spec.description,
            subjects=list(spec.subjects),
            retention=api.RetentionPolicy.WORK_QUEUE
            if spec.retention == "workqueue"
            else api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            discard=api.DiscardPolicy.OLD,
            duplicate_window=spec.duplicate_window,
            max_age=spec.max_age,
            max_bytes=spec.max_bytes,
            max_msgs=-1,
            num_replicas=replicas,
            allow_direct=True,
        )
        try:
            info = await js.stream_info(spec.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(cfg)
            continue
        cur = info.config
        if (
            sorted(cur.subjects or []) != sorted(cfg.subjects or [])
            or cur.duplicate_window != cfg.duplicate_window
            or cur.max_age != cfg.max_age
            or cur.max_bytes != cfg.max_bytes
            or (cur.num_replicas or 1) != replicas
            or cur.description != cfg.description
        ):
            await js.update_stream(cfg)

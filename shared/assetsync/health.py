"""A tiny HTTP endpoint for `/healthz` and `/metrics` (probes and Prometheus), no framework needed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from assetsync.metrics import Metrics

log = logging.getLogger("assetsync.health")

HealthFn = Callable[[], tuple[bool, dict[str, object]]]


class HealthServer:
    """Serves GET /healthz (200/503 + JSON) and GET /metrics on one port."""

    def __init__(self, metrics: Metrics, health: HealthFn, host: str, port: int) -> None:
        self._metrics = metrics
        self._health = health
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            parts = head.split(b" ", 2)
            method, path = parts[0], (parts[1] if len(parts) > 1 else b"/").split(b"?")[0]
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"method not allowed\n"
            elif path == b"/metrics":
                # Health checks set assetsync_service_up: run them so a scrape never reads a stale value.
                with contextlib.suppress(Exception):
                    self._health()
                status, ctype, body = "200 OK", "text/plain; version=0.0.4", self._metrics.exposition()
            elif path in (b"/healthz", b"/readyz", b"/"):
                ok, detail = self._health()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps({"ok": ok, **detail}).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + (body if method != b"HEAD" else b"")
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

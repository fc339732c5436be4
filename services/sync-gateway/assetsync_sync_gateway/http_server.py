"""Serving the app with uvicorn (httptools; uvloop when uvicorn owns the loop), optionally over TLS."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside someone else's event loop: signals stay the host's business."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def server_config(
    app: ASGIApp, host: str, port: int, *, tls_cert: str = "", tls_key: str = "", log_level: str = "warning"
) -> uvicorn.Config:
    """uvicorn settings: httptools, no proxy-header rewriting (XFF is judged by the gateway itself)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=30,
        # On stop, requests still running (a `?wait=true` sync) get this long before they are cancelled.
        timeout_graceful_shutdown=2,
        ssl_certfile=tls_cert or None,
        ssl_keyfile=tls_key or None,
    )


@dataclass
class Running:
    """A started server: its URL and the task serving it."""

    url: str
    server: EmbeddedServer
    task: asyncio.Task[None]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 = any free port), made here so the real port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _serve(server: EmbeddedServer, sock: socket.socket) -> None:
    # uvicorn exits with SystemExit when the app's startup fails; in a shared event loop that would
    # end the whole process, so it becomes an ordinary error of this task.
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        raise RuntimeError(f"the server stopped (exit status {exc.code})") from None
    finally:
        sock.close()


async def start_server(config: uvicorn.Config, *, startup_timeout: float = 30.0) -> Running:
    """Start serving in a task; returns once the app's lifespan has started (raises if it failed)."""
    server = EmbeddedServer(config)
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    scheme = "https" if config.ssl_certfile else "http"
    host = f"[{config.host}]" if ":" in config.host else config.host
    task = asyncio.create_task(_serve(server, sock), name=f"uvicorn:{port}")
    deadline = asyncio.get_running_loop().time() + startup_timeout
    while not server.started:
        if task.done():
            exc = task.exception()
            raise RuntimeError(f"the sync gateway could not start on {config.host}:{port}") from exc
        if asyncio.get_running_loop().time() > deadline:
            task.cancel()
            raise RuntimeError(f"the sync gateway did not start within {startup_timeout}s")
        await asyncio.sleep(0.01)
    return Running(f"{scheme}://{host}:{port}", server, task)


async def stop_server(running: Running, timeout: float = 10.0) -> None:
    """Stop accepting, finish in-flight requests, run the lifespan shutdown."""
    running.server.should_exit = True
    try:
        await asyncio.wait_for(asyncio.shield(running.task), timeout)
    except TimeoutError:
        running.server.force_exit = True
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[Running]:
    """Serve for the duration of the block."""
    running = await start_server(config)
    try:
        yield running
    finally:
        await stop_server(running)

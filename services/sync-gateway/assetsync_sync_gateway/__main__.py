"""`python -m assetsync_sync_gateway`: the gateway alone, without the bus (a pure replication site)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop
from assetsync.config import ConfigError, load_settings

from assetsync_sync_gateway.core import Gateway
from assetsync_sync_gateway.http_api import create_app
from assetsync_sync_gateway.http_server import server_config, start_server, stop_server
from assetsync_sync_gateway.registry import RegistryError


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m assetsync_sync_gateway", description=__doc__)
    p.add_argument("--config", type=Path, default=None, help="config.json / config.toml")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--set", default="{}", help="JSON object merged over the config (e.g. sync_gateway keys)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, data_dir=args.data_dir, overrides=json.loads(args.set))
        gw = Gateway.from_settings(settings)
    except (ConfigError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    conf = settings.config.sync_gateway
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cert = str(settings.config_dir / conf.tls_cert) if conf.tls_cert else ""
    key = str(settings.config_dir / conf.tls_key) if conf.tls_key else ""
    running = await start_server(
        server_config(create_app(gw), conf.host, conf.port, tls_cert=cert, tls_key=key)
    )
    print(f"sync gateway {settings.site_id} serving on {running.url}", flush=True)
    await stop.wait()
    await stop_server(running)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return uvloop.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())

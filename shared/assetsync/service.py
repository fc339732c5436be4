"""The service contract and where each service lives."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol, cast

from assetsync.runtime import Runtime

# Service name -> module exposing `build(rt) -> Service | Disabled`. Order is start order.
SERVICE_MODULES: dict[str, str] = {
    "store": "assetsync_store.service",
    "collector-crypto": "assetsync_collector_crypto.service",
    "collector-okx": "assetsync_collector_okx.service",
    "collector-fund": "assetsync_collector_fund.service",
    "market": "assetsync_market.service",
    "feishu-writer": "assetsync_feishu_writer.service",
    "alerter": "assetsync_alerter.service",
    "sync-gateway": "assetsync_sync_gateway.service",
}


class Service(Protocol):
    """A running part of the system; `start` pushes its cleanup onto the stack (drain, then close)."""

    name: str

    async def start(self, stack: AsyncExitStack) -> None: ...

    def health(self) -> tuple[bool, str]: ...


@dataclass(frozen=True)
class Disabled:
    """A service that is off, and why (credentials absent, `enabled: false`)."""

    reason: str


Factory = Callable[[Runtime], "Service | Disabled"]


def available() -> list[str]:
    """Names of the services whose code is present in this installation."""
    out = []
    for name, module in SERVICE_MODULES.items():
        try:
            if importlib.util.find_spec(module) is not None:
                out.append(name)
        except ModuleNotFoundError:
            continue
    return out


def factory(name: str) -> Factory | None:
    """The `build` function of a service, or None when that service is not part of this build."""
    module = SERVICE_MODULES[name]
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return None
    if spec is None:
        return None
    mod = importlib.import_module(module)
    return cast(Factory, mod.build)

"""collector-okx fixtures: the OKX emulator on loopback and OkxSync instances pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from assetsync.config import Settings
from assetsync.events import Event
from assetsync_collector_okx.calls import RetryPolicy
from assetsync_collector_okx.exchange import make_exchange
from assetsync_collector_okx.sync import OkxSync, StateFile, state_path
from assetsync_emulators.common import serve
from assetsync_emulators.okx import DEMO_API_KEY, DEMO_API_SECRET, DEMO_PASSPHRASE, OkxEmulator, create_app

FAST = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, max_retry_after=5.0)


def okx_conf(url: str, *, keys: bool = True, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"base_url": url, "timeout_seconds": 3, "enabled": True}
    if keys:
        conf.update(api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET, password=DEMO_PASSPHRASE)
    conf.update(extra)
    return conf


@dataclass
class Harness:
    emu: OkxEmulator
    url: str
    make: Callable[..., OkxSync]
    events: list[Event] = field(default_factory=list)

    async def publish(self, ev: Event) -> None:
        self.events.append(ev)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def harness(make_settings: Any) -> AsyncIterator[Harness]:
    emu = OkxEmulator(seed=13)
    made: list[OkxSync] = []
    async with serve(create_app(emu)) as url:

        def make(keys: bool = True, overrides: dict[str, Any] | None = None, **okx: Any) -> OkxSync:
            conf: dict[str, Any] = {"asset_sync": {"okx": okx_conf(url, keys=keys, **okx)}}
            if overrides:
                for k, v in overrides.items():
                    conf.setdefault(k, {}).update(v)
            settings: Settings = make_settings(conf)
            sync = OkxSync(settings, make_exchange(settings), StateFile(state_path(settings)), retry=FAST)
            made.append(sync)
            return sync

        try:
            yield Harness(emu, url, make)
        finally:
            for s in made:
                await s.exchange.close()

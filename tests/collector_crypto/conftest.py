"""Crypto sync fixtures: the Binance emulator on loopback and CryptoSync instances pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from assetsync.config import Settings
from assetsync.events import Event, Holding, TaskResult
from assetsync_collector_crypto.calls import RetryPolicy
from assetsync_collector_crypto.exchange import make_exchange
from assetsync_collector_crypto.state import StateFile
from assetsync_collector_crypto.sync import CryptoSync, state_path
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, BinanceEmulator, create_app
from assetsync_emulators.common import serve

FAST = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, max_retry_after=5.0)


@dataclass
class Harness:
    emu: BinanceEmulator
    url: str
    make: Callable[..., CryptoSync]
    events: list[Event] = field(default_factory=list)

    async def run(self, sync: CryptoSync, command_id: str = "c1") -> TaskResult:
        self.events.clear()
        self.emu.switch.reset_log()

        async def publish(ev: Event) -> None:
            self.events.append(ev)

        return await sync.run(command_id, publish)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def holdings(self) -> dict[str, Holding]:
        return {h.asset: h for h in self.of(Holding)}


@pytest.fixture
async def harness(make_settings: Any) -> AsyncIterator[Harness]:
    emu = BinanceEmulator(seed=11)
    made: list[CryptoSync] = []
    async with serve(create_app(emu)) as url:

        def make(crypto: dict[str, Any] | None = None, **binance: Any) -> CryptoSync:
            conf = {
                "api_key": DEMO_API_KEY,
                "api_secret": DEMO_API_SECRET,
                "base_url": url,
                "timeout_seconds": 3,
            }
            conf.update(binance)
            assets = {"ignore": ["USDT", "LD*"], "kline_backfill_hours": 24}
            assets.update(crypto or {})
            settings: Settings = make_settings(
                {"asset_sync": {"binance": conf, "assets": {"crypto": assets}}}
            )
            sync = CryptoSync(settings, make_exchange(settings), StateFile(state_path(settings)), retry=FAST)
            made.append(sync)
            return sync

        try:
            yield Harness(emu, url, make)
        finally:
            for s in made:
                await s.exchange.close()

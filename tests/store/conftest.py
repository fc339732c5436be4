"""Store fixtures: a runtime with the store service running in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from assetsync.embedded import EmbeddedNats
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync_store.service import StoreService, build


@dataclass
class StoreHarness:
    rt: Runtime
    store: StoreService

    async def count(self, table: str, where: str = "1=1", params: tuple[Any, ...] = ()) -> int:
        rows = await self.store.db.fetchall(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}", params)
        return int(rows[0]["n"])

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.store.db.fetchall(sql, params)]


@pytest.fixture
async def harness(nats_server: EmbeddedNats, make_settings: Any) -> AsyncIterator[StoreHarness]:
    settings = make_settings({"asset_sync": {"fx_rates": {"USDT": 7.0}}})
    async with open_runtime(settings, nats_server.url, name="store-test", metrics=Metrics()) as rt:
        rt.scheduling = False
        svc = build(rt)
        assert isinstance(svc, StoreService)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            yield StoreHarness(rt, svc)

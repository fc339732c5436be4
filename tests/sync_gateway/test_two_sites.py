"""Two sites with different Binance accounts back each other up (CONTRACTS §5.2, seed scenario 3).

Each site runs collector-crypto (its own emulated Binance account), the store, the feishu-writer (its
own emulated Feishu) and the sync gateway; the gateways pull from each other. Afterwards each site's
持仓, 历史, holdings and snapshot totals are exactly what they were, and each store holds a full copy
of the other site's holdings under that site's id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from assetsync.config import Settings, load_settings
from assetsync.embedded import EmbeddedNats
from assetsync.feishu import schema as fs
from assetsync.feishu.setup import setup_tables
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.tasks import request_task
from assetsync_collector_crypto.service import build as build_crypto
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, BinanceEmulator, create_app
from assetsync_emulators.common import serve
from assetsync_emulators.feishu import FeishuEmulator
from assetsync_feishu_writer.service import FeishuWriterService
from assetsync_store.service import StoreService
from assetsync_store.service import build as build_store
from assetsync_store.sites import SiteError, format_holdings, site_holdings, sites
from assetsync_sync_gateway.service import GatewayService
from assetsync_sync_gateway.service import build as build_gateway

from tests.feishu.support import client_for
from tests.support import wait_for


@dataclass
class SiteStack:
    """One site's running services and its emulators."""

    name: str
    settings: Settings
    rt: Runtime
    store: StoreService
    writer: FeishuWriterService
    gateway: GatewayService
    feishu: FeishuEmulator
    binance: BinanceEmulator

    async def own(self) -> dict[str, float]:
        rows = await self.store.db.fetchall("SELECT asset, quantity FROM holdings WHERE origin = ''")
        return {r["asset"]: r["quantity"] for r in rows}

    async def copy_of(self, other: str) -> dict[str, float]:
        rows = await self.store.db.fetchall("SELECT asset, quantity FROM holdings WHERE origin = ?", (other,))
        return {r["asset"]: r["quantity"] for r in rows}

    def feishu_holdings(self) -> dict[str, Any]:
        return {r[fs.CODE]: r[fs.QUANTITY] for r in self.feishu.rows("持仓")}

    def feishu_history(self) -> list[tuple[Any, Any]]:
        return sorted((r[fs.SNAP_DATE], r[fs.TOTAL_VALUE]) for r in self.feishu.rows("历史"))

    async def settled(self) -> bool:
        """Every consumer of this site has acked everything on its bus."""
        for c in self.rt.consumers:
            if await c.lag():
                return False
        return True


@asynccontextmanager
async def site(
    tmp: Path, nats: EmbeddedNats, prefix: str, name: str, binance: BinanceEmulator
) -> AsyncIterator[SiteStack]:
    feishu = FeishuEmulator()
    async with AsyncExitStack() as stack:
        binance_url = await stack.enter_async_context(serve(create_app(binance)))
        feishu_url = await stack.enter_async_context(serve(feishu.app))
        settings = load_settings(
            None,
            data_dir=tmp / name / "data",
            log_dir=tmp / name / "logs",
            environ={},
            overrides={
                "nats": {"prefix": f"{prefix}{name.lower()}"},
                "metrics": {"port": 0},
                "mcp_server": {"app_id": feishu.app_id, "app_secret": feishu.app_secret},
                "asset_sync": {
                    "binance": {
                        "api_key": DEMO_API_KEY,
                        "api_secret": DEMO_API_SECRET,
                        "base_url": binance_url,
                    },
                    "feishu": {"base_url": feishu_url, "app_token": feishu.app_token},
                    "assets": {"crypto": {"ignore": ["USDT", "LD*"], "kline_backfill_hours": 2}},
                    "alerts": {"enabled": False},
                    "fx_rates": {"USDT": 7.0},
                },
                "sync_gateway": {"site_id": name, "port": 0},
            },
        )
        async with client_for(settings) as c:
            await setup_tables(settings, c)
        rt = await stack.enter_async_context(open_runtime(settings, nats.url, name=name, metrics=Metrics()))
        rt.scheduling = False
        crypto = build_crypto(rt)
        store = build_store(rt)
        client = client_for(settings)
        stack.push_async_callback(client.aclose)
        writer = FeishuWriterService(rt, linger=0.05, client=client)
        gateway = build_gateway(rt)
        assert isinstance(store, StoreService) and isinstance(gateway, GatewayService)
        for svc in (store, crypto, writer, gateway):
            await svc.start(stack)  # type: ignore[union-attr]
        yield SiteStack(name, settings, rt, store, writer, gateway, feishu, binance)


async def test_two_sites_back_each_other_up_without_touching_each_others_views(
    tmp_path: Path, nats_server: EmbeddedNats, prefix: str
) -> None:
    binance_b = BinanceEmulator(seed=7)
    binance_b.set_balance("BTC", 3.25)  # the other account holds more BTC than A's, and no ETHW
    binance_b.set_balance("ETHW", 0.0)
    async with (
        site(tmp_path, nats_server, prefix, "A", BinanceEmulator(seed=21)) as a,
        site(tmp_path, nats_server, prefix, "B", binance_b) as b,
    ):
        for s in (a, b):
            result, stored = await request_task(s.rt, "crypto", timeout=60)
            assert result.status in ("success", "partial") and stored, result.message
            snap, _ = await request_task(s.rt, "snapshot", timeout=30)
            assert snap.status == "success", snap.message
        await wait_for(lambda: a.settled(), 30, what="site A settled")
        await wait_for(lambda: b.settled(), 30, what="site B settled")
        before = {
            s.name: (
                await s.own(),
                s.feishu_holdings(),
                s.feishu_history(),
                [dict(r) for r in await s.store.db.fetchall("SELECT * FROM snapshots")],
            )
            for s in (a, b)
        }
        assert before["A"][0] != before["B"][0] and before["B"][0]["BTC"] == 3.25
        assert before["A"][1] and before["A"][1] == {k: v for k, v in before["A"][1].items()}

        # Two-way sync: each gateway pulls the other's feeds; the records go onto its own bus.
        a.gateway.gw.config.update_receiver(
            json.dumps({"enabled": True, "remote_url": b.gateway.url}).encode()
        )
        b.gateway.gw.config.update_receiver(
            json.dumps({"enabled": True, "remote_url": a.gateway.url}).encode()
        )
        for s in (a, b):
            async with httpx.AsyncClient(base_url=s.gateway.url, timeout=60) as c:
                r = await c.post("/api/data-sync/receiver/sync-all", params={"wait": "true"}, json={})
                assert r.status_code == 200 and all(x["status"] == "success" for x in r.json()["results"])

        # Each store holds a full copy of the other's holdings, under the other's site id.
        for s, other in ((a, b), (b, a)):
            want = before[other.name][0]

            async def full_copy(
                s: SiteStack = s, other: SiteStack = other, want: dict[str, float] = want
            ) -> bool:
                return await s.copy_of(other.name) == want

            await wait_for(full_copy, 30, what=f"{s.name} holds {other.name}'s holdings")
        await wait_for(lambda: a.settled(), 30, what="site A settled after sync")
        await wait_for(lambda: b.settled(), 30, what="site B settled after sync")

        for s, other in ((a, b), (b, a)):
            own, feishu_rows, history, snaps = before[s.name]
            # This site's own data, its 持仓 and its 历史 are exactly what they were.
            assert await s.own() == own
            assert s.feishu_holdings() == feishu_rows
            assert s.feishu_history() == history
            rows = await s.store.db.fetchall("SELECT * FROM snapshots WHERE origin = ''")
            assert [dict(r) | {"origin": ""} for r in rows] == snaps
            # The other site's snapshot and trades are kept beside this site's, under its id.
            assert await s.store.db.fetchall("SELECT * FROM snapshots WHERE origin = ?", (other.name,))
            theirs = await s.store.db.fetchall(
                "SELECT count(*) AS n FROM trades WHERE origin = ?", (other.name,)
            )
            mine = await other.store.db.fetchall("SELECT count(*) AS n FROM trades WHERE origin = ''")
            assert theirs[0]["n"] == mine[0]["n"] > 0
            # A new snapshot here counts this site's holdings only.
            again, _ = await request_task(s.rt, "snapshot", timeout=30)
            assert again.status == "success"
            now = await s.store.db.fetchall(
                "SELECT total_value, asset_count FROM snapshots WHERE origin = ''"
            )
            assert [(r["total_value"], r["asset_count"]) for r in now] == [
                (x["total_value"], x["asset_count"]) for x in snaps
            ]
            # "What does the other site hold" is answered from this site's store.
            copy = site_holdings(s.settings.db_path, s.settings.site_id, other.name)
            assert {r["asset"]: r["quantity"] for r in copy.rows} == before[other.name][0]
            assert not copy.own and f"site {other.name}" in format_holdings(copy)
            assert sites(s.settings.db_path, s.settings.site_id) == {
                s.name: len(own),
                other.name: len(before[other.name][0]),
            }
        try:
            site_holdings(a.settings.db_path, "A", "C")
        except SiteError as exc:
            assert "'C'" in str(exc) and "B" in str(exc)
        else:
            raise AssertionError("an unknown site must be an error naming the known ones")

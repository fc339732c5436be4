"""Site B of `up --demo`: a real second gateway with live feeds, pulled by a receiver set up as the demo does."""

from __future__ import annotations

import asyncio
import stat
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from assetsync.config import deep_merge
from assetsync.embedded import EmbeddedNats
from assetsync.endpoints import SEED_ENDPOINTS
from assetsync.events import Holding, Snapshot
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync_emulators.demo import catalog_line, site_b_line, site_b_overrides
from assetsync_emulators.demo_site import ACCOUNT, SITE_B_ID, Generator, run_site_b
from assetsync_store.service import StoreService
from assetsync_store.service import build as build_store
from assetsync_sync_gateway.service import GatewayService
from assetsync_sync_gateway.service import build as build_gateway

from tests.support import wait_for

EVERY, HOLDINGS_EVERY = 0.1, 0.3  # seconds: the demo's 5 s and 30 s, shortened


async def _catalog(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/api/data-sync/sender/catalog")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_site_b_serves_live_feeds_behind_its_sender_token(tmp_path: Path) -> None:
    async with run_site_b(tmp_path / "site-b", every=EVERY, holdings_every=HOLDINGS_EVERY) as b:
        assert b.site_id == SITE_B_ID and b.url.startswith("http://127.0.0.1:")
        token_file = tmp_path / "site-b" / "sender_token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as anon:
            r = await anon.get("/api/data-sync/sender/data/AS001", params={"latest": "1"})
            assert r.status_code == 401  # the sender wants site B's token
        auth = {"Authorization": f"Bearer {b.token}"}
        async with httpx.AsyncClient(base_url=b.url, headers=auth, timeout=10) as c:
            first = {e["code"]: e for e in (await _catalog(c))["endpoints"]}
            assert {"AS001", "AS002", "AS004", "AS006", "BPT001", "BFG001"} <= set(first)
            assert first["BPT001"]["category_name"] == "价格追踪" and first["BPT001"]["source"] == "jsonl"

            async def grown() -> bool:
                now = {e["code"]: e.get("records", 0) for e in (await _catalog(c))["endpoints"]}
                return all(now[k] > first[k].get("records", 0) + 1 for k in ("BPT001", "BFG001", "AS001"))

            await wait_for(grown, 15, interval=0.1, what="site B's feeds growing")
            page = (await c.get("/api/data-sync/sender/data/BPT001", params={"latest": "1"})).json()
            coins = page["records"][0]["data"]["coins"]
            assert {x["symbol"] for x in coins} == set(ACCOUNT) and all(x["price"] > 0 for x in coins)
            fg = (await c.get("/api/data-sync/sender/data/BFG001", params={"latest": "1"})).json()
            assert 0 < int(fg["records"][0]["data"]["value"]) <= 100
            snaps = (await c.get("/api/data-sync/sender/data/AS006")).json()["records"]
            assert len(snaps) >= 30  # its 历史: a month of daily snapshots plus today's
    # A second start on the same data dir keeps the token, and adds no second copy of the history.
    async with run_site_b(tmp_path / "site-b", every=EVERY, holdings_every=HOLDINGS_EVERY) as again:
        assert again.token == b.token
        async with httpx.AsyncClient(base_url=again.url, headers=auth, timeout=10) as c:
            trades = (await c.get("/api/data-sync/sender/data/AS004")).json()["records"]
            assert len(trades) == len(ACCOUNT)


async def test_site_b_stops_promptly_and_frees_its_port(tmp_path: Path) -> None:
    async with run_site_b(tmp_path / "b", every=EVERY, holdings_every=HOLDINGS_EVERY) as b:
        url = b.url
        feeder = next(t for t in asyncio.all_tasks() if t.get_name() == "demo-site-b")
        started = time.monotonic()
    took = time.monotonic() - started
    assert took < 5.0, took
    assert feeder.done() and not b.gateway.started
    async with httpx.AsyncClient(timeout=2) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"{url}/healthz")


def test_generator_prices_walk_and_lines_are_json() -> None:
    import msgspec

    gen = Generator(seed=3)
    before = dict(gen.prices)
    for _ in range(20):
        gen.walk()
    assert gen.prices != before and all(0.5 < gen.prices[a] / before[a] < 2.0 for a in before)
    lines = gen.lines(1_700_000_000_000)
    assert set(lines) == {"BPT001", "BFG001"} and all(v.endswith(b"\n") for v in lines.values())
    assert msgspec.json.decode(lines["BFG001"])["value_classification"] in (
        "Extreme Fear",
        "Fear",
        "Neutral",
        "Greed",
        "Extreme Greed",
    )
    history = gen.history(1_700_000_000_000, days=5)
    snaps = [e for e in history if isinstance(e, Snapshot)]
    assert len(snaps) == 5 and len({s.date for s in snaps}) == 5
    # The same past on every start: the snapshots' keys (and so the feed's dedup) do not change.
    assert [s.key() for s in snaps] == [
        s.key() for s in Generator(seed=9).history(1_700_000_000_000, days=5) if isinstance(s, Snapshot)
    ]


def test_catalog_line_counts_seed_codes_and_names_what_is_missing() -> None:
    seed = [e.code for e in SEED_ENDPOINTS]
    eps = [{"code": c, "records": 1} for c in seed] + [
        {"code": f"AS00{i}", "records": 0} for i in range(1, 8)
    ]
    assert (
        catalog_line({"endpoints": eps}) == "  catalog: 37 endpoints (30 seed codes, 30 with data; 7 others)"
    )
    eps[0]["records"] = 0
    line = catalog_line({"endpoints": eps[:-8] + eps[-7:]})
    assert "29 of 30 seed codes" in line and "28 with data" in line
    assert f"no records yet: {seed[0]}" in line and f"not in the catalog: {seed[-1]}" in line
    status = {"remote_site_id": "demo-b", "total_records": 85, "successful_syncs": 36, "sync_interval": 30.0}
    assert site_b_line(status) == "  site demo-b: 85 records pulled in 36 endpoint syncs (every 30s)"
    assert site_b_line(status | {"last_error": "remote unreachable"}).endswith(
        ", last error: remote unreachable"
    )


async def test_demo_receiver_pulls_site_b_into_its_own_store_beside_its_holdings(
    tmp_path: Path, nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with AsyncExitStack() as stack:
        b = await stack.enter_async_context(
            run_site_b(tmp_path / "data" / "site-b", every=EVERY, holdings_every=HOLDINGS_EVERY)
        )
        overrides: dict[str, Any] = {"sync_gateway": {"site_id": "demo", "port": 0}}
        deep_merge(overrides, site_b_overrides(b))
        assert overrides["sync_gateway"]["receiver"]["auto_sync"] is True
        overrides["sync_gateway"]["receiver"]["sync_interval"] = 1.0  # the demo's 30 s, shortened
        settings = make_settings(overrides)
        rt = await stack.enter_async_context(
            open_runtime(settings, nats_server.url, name="demo", metrics=Metrics())
        )
        rt.scheduling = False
        store = build_store(rt)
        assert isinstance(store, StoreService)
        await store.start(stack)
        # The demo's own holdings, stored before the receiver runs.
        now = int(time.time() * 1000)
        own = {"ETH": 1.5, "DOGE": 1200.0}
        for asset, qty in own.items():
            await rt.publisher.publish(
                Holding(source="binance", asset=asset, quantity=qty, currency="USDT", as_of=now, price=2.0)
            )
        await rt.publisher.flush()

        async def holdings(origin: str) -> dict[str, float]:
            rows = await store.db.fetchall("SELECT asset, quantity FROM holdings WHERE origin = ?", (origin,))
            return {r["asset"]: r["quantity"] for r in rows}

        await wait_for(lambda: _equal(holdings(""), own), 20, interval=0.1, what="the demo's own holdings")
        gateway = build_gateway(rt)
        assert isinstance(gateway, GatewayService)
        await gateway.start(stack)

        want = {a: qty for a, (qty, _, _) in ACCOUNT.items()}
        await wait_for(lambda: _equal(holdings(SITE_B_ID), want), 30, interval=0.1, what="site B's holdings")
        synced = settings.data_dir / "synced_data"
        assert (synced / "AS001.jsonl").stat().st_size > 0
        lines = len((synced / "BPT001.jsonl").read_bytes().splitlines())
        assert lines >= 1
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as c:
            first = (await c.get("/api/data-sync/receiver/status")).json()
            assert first["remote_site_id"] == SITE_B_ID and first["enabled"] and first["auto_sync"]
            assert first["total_records"] > 0 and first["last_error"] == ""

            async def moved() -> bool:
                now = (await c.get("/api/data-sync/receiver/status")).json()
                return bool(
                    now["successful_syncs"] > first["successful_syncs"]
                    and now["total_records"] > first["total_records"]
                )

            await wait_for(moved, 30, interval=0.2, what="the receiver's counters moving")
        await wait_for(
            lambda: len((synced / "BPT001.jsonl").read_bytes().splitlines()) > lines,
            30,
            interval=0.2,
            what="synced_data/BPT001.jsonl growing",
        )
        # Site B's records are kept beside the demo's, under its site id; the demo's own are untouched.
        assert await holdings("") == own
        theirs = await store.db.fetchall("SELECT count(*) AS n FROM snapshots WHERE origin = ?", (SITE_B_ID,))
        assert theirs[0]["n"] >= 30
        mine = await store.db.fetchall("SELECT count(*) AS n FROM snapshots WHERE origin = ''")
        assert mine[0]["n"] == 0
        trades = await store.db.fetchall("SELECT count(*) AS n FROM trades WHERE origin = ?", (SITE_B_ID,))
        assert trades[0]["n"] == len(ACCOUNT)


async def _equal(got: Any, want: dict[str, float]) -> bool:
    return bool(await got == want)

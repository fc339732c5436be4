"""Native catalog entries: the seed's codes whose producers run here, fed by FeedRecord events."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from assetsync.config import load_settings
from assetsync.embedded import EmbeddedNats
from assetsync.endpoints import SEED_BY_CODE, codes_of
from assetsync.events import ExternalRecord, FeedRecord
from assetsync_sync_gateway.core import Gateway, native_parts
from assetsync_sync_gateway.registry import BUILTIN, Catalog, RegistryError, native_endpoints, validate
from assetsync_sync_gateway.service import GatewayService, build

from tests.support import wait_for
from tests.sync_gateway.support import collect_on_bus, runtime_for, site_settings

OKX_KEYS = {"api_key": "k", "api_secret": "s", "password": "p"}


def settings_with(tmp: Path, **conf: Any) -> Any:
    return load_settings(None, data_dir=tmp / "data", log_dir=tmp / "logs", environ={}, overrides=conf)


def native_codes(gw: Gateway) -> set[str]:
    return {c for c, ep in gw.catalog.endpoints.items() if ep.source == "native"}


@pytest.mark.parametrize(
    ("conf", "parts"),
    [
        ({}, ("market", "sentiment", "system")),
        ({"market": {"fear_greed": {"enabled": False}}}, ("market", "system")),
        ({"market": {"enabled": False}}, ("system",)),
        ({"asset_sync": {"okx": {"enabled": True}}}, ("market", "okx_public", "sentiment", "system")),
        ({"asset_sync": {"okx": OKX_KEYS}}, ("market", "okx_public", "okx", "sentiment", "system")),
        ({"asset_sync": {"okx": {**OKX_KEYS, "enabled": False}}}, ("market", "sentiment", "system")),
    ],
)
def test_native_catalog_follows_the_settings(
    tmp_path: Path, conf: dict[str, Any], parts: Sequence[Any]
) -> None:
    settings = settings_with(tmp_path, **conf)
    assert native_parts(settings) == tuple(parts)
    gw = Gateway.from_settings(settings)
    assert native_codes(gw) == set(codes_of(*parts))
    assert {e.code for e in BUILTIN} <= set(gw.catalog.codes())  # AS001–AS007 stay
    assert not set(codes_of("upstream")) & set(gw.catalog.codes())  # those need a registry


def test_native_entries_carry_the_seeds_fields_and_bounded_retention() -> None:
    cat = Catalog(native=native_endpoints(["market", "okx_public", "sentiment", "system"]))
    sar = cat.endpoints["SAR001"].public()
    seed = SEED_BY_CODE["SAR001"]
    assert sar["api_path"] == "/api/sar/current-cycle/{coin}" and sar["source"] == "native"
    assert (sar["name"], sar["category"], sar["category_name"], sar["interval_seconds"]) == (
        seed.name, seed.category, seed.category_name, seed.interval_seconds,
    )  # fmt: skip
    assert sar["method"] == "GET" and sar["description"] == seed.description
    assert cat.endpoints["PT002"].limits() == (30.0, 0)
    assert cat.endpoints["SYS001"].limits() == (30.0, 0) and cat.endpoints["FG001"].limits() == (30.0, 0)
    assert cat.endpoints["OKX001"].limits() == (7.0, 0)  # a ticker set every 5 s
    # sync_gateway.feeds.<CODE> overrides a native default like any other.
    tuned = Catalog(native=native_endpoints(["market"]), limits={"PT002": (2.0, 1000)})
    assert tuned.endpoints["PT002"].limits() == (2.0, 1000)


def test_registry_may_not_claim_native_source(tmp_path: Path) -> None:
    raw = [{"code": "PS001", "category": "price_speed", "name": "x", "api_path": "/x", "source": "native"}]
    with pytest.raises(RegistryError, match=r"field source: .*native is reserved"):
        validate(raw, tmp_path)


async def test_a_registry_entry_wins_over_the_native_feed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "assetsync.gateway")
    entry = {
        "code": "PS001",
        "category": "price_speed",
        "name": "最新价格速度",
        "api_path": "/api/price-speed/latest",
        "source": "http",
        "upstream_url": "http://127.0.0.1:9/api/price-speed/latest",
    }
    (tmp_path / "registry.json").write_text(json.dumps([entry]))
    settings = settings_with(tmp_path, sync_gateway={"registry": str(tmp_path / "registry.json")})
    gw = Gateway.from_settings(settings)
    gw.opts.run_sources = False
    assert gw.catalog.endpoints["PS001"].source == "http" and gw.catalog.is_native("PT001")
    lines = [r.getMessage() for r in caplog.records if "PS001" in r.getMessage()]
    assert lines == ["endpoint PS001: the registry entry replaces the native feed"]
    await gw.start()  # no sources run: the upstream above is never called
    try:
        # The market service's PS001 records are not mixed into the registry's feed.
        rec = FeedRecord(code="PS001", record_key="BTC:1", ts=1, data={"coin": "BTC"})
        assert await gw.ingest([rec]) == {} and gw.ignored_records == {"PS001": 1}
        said = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
        assert said == ["feed records of PS001 are ignored: its registry entry provides it"]
    finally:
        await gw.stop()


async def test_feed_records_of_codes_outside_the_catalog_are_ignored_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "assetsync.gateway")
    gw = Gateway.from_settings(settings_with(tmp_path, market={"enabled": False}))
    await gw.start()
    try:
        recs = [FeedRecord(code="PS001", record_key=f"BTC:{i}", ts=i, data={"coin": "BTC"}) for i in range(3)]
        gained = await gw.ingest([*recs, FeedRecord(code="SYS001", record_key="x", ts=1, data={"ok": 1})])
        assert gained == {"SYS001": 1} and gw.ignored_records == {"PS001": 3}
        said = [r.getMessage() for r in caplog.records if "PS001" in r.getMessage()]
        assert said == ["feed records of PS001 are ignored: not in the catalog"]
    finally:
        await gw.stop()


# --- over a real bus ----------------------------------------------------------------------------------


async def test_feed_records_on_the_bus_are_served_and_relayed_to_another_site(
    tmp_path: Path, nats_server: EmbeddedNats, prefix: str, stack: AsyncExitStack
) -> None:
    rt_a = await runtime_for(stack, nats_server, site_settings(tmp_path, f"{prefix}a", "A"))
    # Published before the gateway starts: its new durable reads what MARKET already holds.
    speed = {"coin": "BTC", "ts": 1_765_000_800_000, "change_pct": {"1m": 0.12, "5m": -0.4, "15m": 1.05}}
    early = FeedRecord(code="PS001", record_key="BTC:1765000800000", ts=1_765_000_800_000, data=speed)
    await rt_a.publisher.publish_many([early, early])  # a republished record is one record
    await rt_a.publisher.flush()
    svc_a = build(rt_a)
    assert isinstance(svc_a, GatewayService)
    await svc_a.start(stack)
    gw_a = svc_a.gw
    sar = {"coin": "ETH", "direction": "up", "bars": 7, "af": 0.06}
    await rt_a.publisher.publish_many(
        [
            FeedRecord(code="SAR001", record_key="ETH:1", ts=1, data=sar),
            FeedRecord(code="NOPE01", record_key="x", ts=1, data={"x": 1}),
        ]
    )
    await wait_for(lambda: [gw_a.feeds.state(c).count for c in ("PS001", "SAR001")] == [1, 1], 20)
    await wait_for(lambda: gw_a.ignored_records["NOPE01"] == 1, 20, what="unknown code counted")
    # The running gateway writes its own health feeds from the start.
    await wait_for(lambda: gw_a.feeds.state("SYS002").count >= 1, 20, what="SYS002 written")
    await wait_for(lambda: gw_a.feeds.state("SYS001").count >= 1, 20, what="SYS001 written")
    async with httpx.AsyncClient(base_url=svc_a.url) as c:
        page = (await c.get("/api/data-sync/sender/data/PS001")).json()
        assert [r["data"] for r in page["records"]] == [speed] and page["records"][0]["origin"] == "A"
        assert (await c.get("/api/data-sync/sender/status")).json()["ignored_feed_records"] == {"NOPE01": 1}
        catalog = (await c.get("/api/data-sync/sender/catalog")).json()
        entries = {e["code"]: e for e in catalog["endpoints"]}
        assert entries["SAR001"]["source"] == "native" and "{coin}" in entries["SAR001"]["api_path"]

    # Site B (market on too) pulls A's PS001: A's record reaches B's bus as an ExternalRecord and B's
    # PS001 feed, origin A kept.
    rt_b = await runtime_for(
        stack,
        nats_server,
        site_settings(tmp_path, f"{prefix}b", "B", receiver={"enabled": True, "remote_url": svc_a.url}),
    )
    seen = await collect_on_bus(stack, rt_b, rt_b.topo.ops, rt_b.topo.external(), ExternalRecord)
    svc_b = build(rt_b)
    assert isinstance(svc_b, GatewayService)
    await svc_b.start(stack)
    out, _ = svc_b.gw.receiver.start_sync("PS001")
    assert (await out).status == "success"
    await wait_for(lambda: any(e.code == "PS001" for e in seen), 20, what="A's PS001 on B's bus")
    got = next(e for e in seen if e.code == "PS001")
    assert got.origin == "A" and got.data == speed
    await wait_for(lambda: svc_b.gw.feeds.state("PS001").count == 1, 20, what="B's PS001 feed")
    page_b = await svc_b.gw.feeds.page("PS001", 0, limit=10, max_bytes=1 << 20)
    assert b'"origin":"A"' in page_b.body and b'"change_pct"' in page_b.body

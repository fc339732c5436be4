"""One asset held on Binance and on OKX: two store rows, two 持仓 rows (`BTC`, `BTC@OKX`), counted once each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from assetsync.config import ConfigError
from assetsync.embedded import EmbeddedNats
from assetsync.events import Event, Holding, PriceTick, TaskResult
from assetsync.feishu import schema as fs
from assetsync.feishu.setup import setup_tables
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync.tasks import request_task
from assetsync_feishu_writer import rows
from assetsync_feishu_writer.writer import FeishuWriter
from assetsync_store.service import StoreService
from assetsync_store.service import build as build_store

from tests.feishu.support import client_for, feishu_site
from tests.support import wait_for

T0 = 1_790_000_000_000


def hold(source: str, asset: str, qty: float, price: float, cost: float | None, as_of: int = T0) -> Holding:
    return Holding(
        source=source, asset=asset, quantity=qty, currency="USDT", as_of=as_of, price=price, avg_cost=cost
    )


def result(task: str, source: str, assets: list[str], at: int) -> TaskResult:
    return TaskResult(
        command_id=f"{task}-{at}", task=task, source=source, status="success",  # type: ignore[arg-type]
        started_at=at, finished_at=at + 1, records=len(assets), total=len(assets), assets=assets,
    )  # fmt: skip


def test_row_keys_and_their_owners() -> None:
    assert rows.exchange_view(hold("okx", "BTC", 1, 1, None)).asset == "BTC@OKX"  # type: ignore[attr-defined]
    assert rows.exchange_view(hold("binance", "BTC", 1, 1, None)).asset == "BTC"  # type: ignore[attr-defined]
    assert (rows.site_of("BTC@OKX"), rows.exchange_of("BTC@OKX")) == ("", "OKX")
    assert (rows.site_of("BTC@OKX@HOME"), rows.exchange_of("BTC@OKX@HOME")) == ("HOME", "OKX")
    assert (rows.site_of("BTC@HOME"), rows.exchange_of("BTC@HOME")) == ("HOME", "")


@pytest.fixture
async def store(nats_server: EmbeddedNats, make_settings: Any) -> AsyncIterator[StoreService]:
    settings = make_settings({"asset_sync": {"fx_rates": {"USDT": 7.0}}})
    async with open_runtime(settings, nats_server.url, name="store-two", metrics=Metrics()) as rt:
        rt.scheduling = False
        svc = build_store(rt)
        assert isinstance(svc, StoreService)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            yield svc


async def test_store_keeps_both_and_the_snapshot_counts_each_once(store: StoreService) -> None:
    rt = store.rt
    await rt.publisher.publish_many(
        [hold("binance", "BTC", 2, 100.0, 80.0), hold("okx", "BTC", 1, 101.0, 90.0)]
    )
    await wait_for(lambda: store.db.rows_written >= 2, what="both holdings")
    got = await store.db.fetchall("SELECT source, quantity FROM holdings WHERE asset = 'BTC' ORDER BY source")
    assert [(r["source"], r["quantity"]) for r in got] == [("binance", 2.0), ("okx", 1.0)]
    res, stored = await request_task(rt, "snapshot", timeout=30)
    assert res.status == "success" and stored
    snap = (await store.db.fetchall("SELECT * FROM snapshots"))[0]
    assert snap["total_value"] == pytest.approx((2 * 100.0 + 101.0) * 7.0)
    assert snap["total_cost"] == pytest.approx((2 * 80.0 + 90.0) * 7.0)
    assert snap["asset_count"] == 2
    # The per-asset value gauge is the sum over exchanges (one series per asset).
    assert rt.metrics.value("assetsync_holding_value", {"asset": "BTC", "currency": "USDT"}) == pytest.approx(
        301.0
    )
    # An okx run that no longer lists BTC prunes OKX's row only.
    await rt.publisher.publish(result("okx", "okx", [], T0 + 10))

    async def okx_pruned() -> bool:
        left = await store.db.fetchall("SELECT source FROM holdings WHERE asset = 'BTC'")
        return [r["source"] for r in left] == ["binance"]

    await wait_for(okx_pruned, what="OKX's BTC pruned, Binance's kept")


async def test_feishu_shows_one_row_per_exchange_and_prunes_per_exchange(make_settings: Any) -> None:
    async with feishu_site() as site:
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            await setup_tables(settings, c)
            w = FeishuWriter(c, settings)
            await w.start()
            batch: list[Event] = [
                hold("binance", "BTC", 2, 100.0, 80.0),
                hold("okx", "BTC", 1, 101.0, 90.0),
                hold("okx", "ETH", 3, 10.0, None),
            ]
            await w.apply(batch)
            by = {r[fs.CODE]: r for r in site.emu.rows("持仓")}
            assert set(by) == {"BTC", "BTC@OKX", "ETH@OKX"}
            assert by["BTC"][fs.QUANTITY] == 2 and by["BTC"][fs.VALUE] == 200.0
            assert by["BTC@OKX"][fs.QUANTITY] == 1 and by["BTC@OKX"][fs.VALUE] == 101.0
            assert by["BTC@OKX"][fs.AVG_COST] == 90.0
            # An OKX price moves only OKX's row.
            await w.apply([PriceTick(source="okx", asset="BTC", price=110.0, currency="USDT", ts=T0 + 5)])
            by = {r[fs.CODE]: r for r in site.emu.rows("持仓")}
            assert by["BTC@OKX"][fs.PRICE] == 110.0 and by["BTC"][fs.PRICE] == 100.0
            # Binance's complete list leaves OKX's rows alone; OKX's list prunes only OKX's rows.
            await w.apply([result("crypto", "binance", ["BTC"], T0 + 6)])
            assert {r[fs.CODE] for r in site.emu.rows("持仓")} == {"BTC", "BTC@OKX", "ETH@OKX"}
            await w.apply([result("okx", "okx", ["ETH"], T0 + 7)])
            assert {r[fs.CODE] for r in site.emu.rows("持仓")} == {"BTC", "ETH@OKX"}
            logs = site.emu.rows("日志")
            assert [(r[fs.LOG_SOURCE], r[fs.LOG_TASK]) for r in logs][-1] == ("okx", "okx_sync")


def test_a_site_named_okx_is_refused_naming_the_key(make_settings: Any) -> None:
    with pytest.raises(ConfigError) as err:
        make_settings({"sync_gateway": {"site_id": "okx"}})
    assert err.value.key == "sync_gateway.site_id" and "reserved" in err.value.problem

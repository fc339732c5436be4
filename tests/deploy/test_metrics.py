"""The metrics the dashboard and alerts read, produced by the real services on a real NATS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, Literal

import httpx
import pytest
from assetsync import events as ev
from assetsync.config import Settings
from assetsync.embedded import EmbeddedNats
from assetsync.health import HealthServer
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.tasks import request_task
from assetsync_collector_crypto.service import CryptoCollector
from assetsync_collector_crypto.service import build as build_crypto
from assetsync_emulators.binance import DEMO_API_KEY, BinanceEmulator, create_app
from assetsync_emulators.common import serve
from assetsync_store.service import StoreService, build

from tests.support import wait_for


def holding(asset: str, qty: float, price: float, as_of: int, currency: str = "USDT") -> ev.Holding:
    kind: Literal["crypto", "fund"]
    source, kind = ("binance", "crypto") if currency == "USDT" else ("xueqiu", "fund")
    return ev.Holding(
        source=source, asset=asset, quantity=qty, currency=currency, as_of=as_of, price=price, asset_type=kind
    )


def value(m: Metrics, asset: str, currency: str = "USDT") -> float | None:
    return m.registry.get_sample_value("assetsync_holding_value", {"asset": asset, "currency": currency})


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    s: Settings = make_settings({"asset_sync": {"fx_rates": {"USDT": 7.0}}})
    return s


async def start_store(settings: Settings, url: str, stack: AsyncExitStack) -> tuple[Runtime, StoreService]:
    rt = await stack.enter_async_context(open_runtime(settings, url, name="metrics-test", metrics=Metrics()))
    rt.scheduling = False
    svc = build(rt)
    assert isinstance(svc, StoreService)
    await svc.start(stack)
    return rt, svc


@pytest.fixture
async def store(nats_server: EmbeddedNats, settings: Settings) -> AsyncIterator[tuple[Runtime, StoreService]]:
    async with AsyncExitStack() as stack:
        yield await start_store(settings, nats_server.url, stack)


async def test_store_exports_a_value_per_held_asset_and_drops_sold_ones(
    store: tuple[Runtime, StoreService],
) -> None:
    rt, _ = store
    t0 = int(time.time() * 1000)
    await rt.publisher.publish_many([holding("BTC", 0.5, 60000.0, t0), holding("ETH", 2.0, 3000.0, t0)])
    await rt.publisher.publish_now(holding("510300", 1000.0, 4.1, t0, currency="CNY"))
    await wait_for(lambda: value(rt.metrics, "510300", "CNY") is not None, timeout=15, what="holding gauges")
    assert value(rt.metrics, "BTC") == pytest.approx(30000.0)
    assert value(rt.metrics, "ETH") == pytest.approx(6000.0)
    assert value(rt.metrics, "510300", "CNY") == pytest.approx(4100.0)
    # A complete crypto run that no longer sees BTC: the store prunes it, and so does the gauge.
    t1 = t0 + 1000
    await rt.publisher.publish_now(holding("ETH", 2.0, 3100.0, t1))
    await rt.publisher.publish_now(
        ev.TaskResult(
            command_id="crypto-metrics-test",
            task="crypto",
            source="binance",
            status="success",
            started_at=t1,
            finished_at=t1 + 10,
            records=1,
            total=1,
            assets=["ETH"],
        )
    )
    # The new ETH holding and the run's result reach the store through separate consumers.
    await wait_for(
        lambda: value(rt.metrics, "BTC") is None and value(rt.metrics, "ETH") == pytest.approx(6200.0),
        timeout=15,
        what="BTC gone from the gauge, ETH at its new value",
    )
    assert value(rt.metrics, "510300", "CNY") == pytest.approx(4100.0)  # another source: untouched


async def test_a_restarted_store_reports_the_last_snapshot_and_backup(
    nats_server: EmbeddedNats, settings: Settings
) -> None:
    async with AsyncExitStack() as stack:
        rt, _ = await start_store(settings, nats_server.url, stack)
        await rt.publisher.publish_now(holding("BTC", 1.0, 50000.0, int(time.time() * 1000)))
        await wait_for(lambda: value(rt.metrics, "BTC") is not None, timeout=15, what="holding stored")
        snap, _ = await request_task(rt, "snapshot", timeout=30)
        assert snap.status == "success", snap.message
        backup, _ = await request_task(rt, "backup", timeout=30)
        assert backup.status == "success", backup.message
        taken = rt.metrics.value("assetsync_backup_last_success_timestamp_seconds")
        assert taken == pytest.approx(time.time(), abs=60)
    async with AsyncExitStack() as stack:
        rt2, _ = await start_store(settings, nats_server.url, stack)
        m = rt2.metrics
        assert m.value("assetsync_portfolio_value", {"metric": "total_value"}) == pytest.approx(350000.0)
        assert m.value("assetsync_backup_last_success_timestamp_seconds") == pytest.approx(taken, abs=0.01)
        assert value(m, "BTC") == pytest.approx(50000.0)


async def test_every_scrape_refreshes_service_health() -> None:
    m = Metrics()
    healthy = {"store": True}

    def health() -> tuple[bool, dict[str, object]]:
        for name, ok in healthy.items():
            m.up.labels(name).set(1 if ok else 0)
        return all(healthy.values()), {}

    hs = HealthServer(m, health, "127.0.0.1", 0)
    await hs.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hs.port}") as client:
            body = (await client.get("/metrics")).text
            assert 'assetsync_service_up{service="store"} 1.0' in body
            healthy["store"] = False
            body = (await client.get("/metrics")).text
            assert 'assetsync_service_up{service="store"} 0.0' in body
            assert (await client.get("/healthz")).status_code == 503
    finally:
        await hs.stop()


async def test_binance_calls_and_errors_are_counted_by_endpoint(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with serve(create_app(BinanceEmulator(seed=3))) as url:
        settings = make_settings(
            {
                "asset_sync": {
                    "binance": {"api_key": DEMO_API_KEY, "api_secret": "not-the-secret", "base_url": url}
                }
            }
        )
        async with open_runtime(settings, nats_server.url, name="crypto-metrics", metrics=Metrics()) as rt:
            rt.scheduling = False
            svc = build_crypto(rt)
            assert isinstance(svc, CryptoCollector)
            async with AsyncExitStack() as stack:
                await svc.start(stack)
                # Zero-valued series exist before any run, so Prometheus sees the first failure as an increase.
                assert (
                    rt.metrics.registry.get_sample_value(
                        "assetsync_task_runs_total", {"task": "crypto", "status": "failed"}
                    )
                    == 0.0
                )
                result, _ = await request_task(rt, "crypto", timeout=30, stored_timeout=0.05)
            assert result.status == "failed"
            m = rt.metrics
            account = {"service": "binance", "endpoint": "GET /api/v3/account"}
            assert m.value("assetsync_external_api_calls_total", account) >= 1
            assert (
                m.value("assetsync_external_api_errors_total", {**account, "kind": "AuthenticationError"})
                == 1
            )
            assert m.value("assetsync_task_runs_total", {"task": "crypto", "status": "failed"}) == 1

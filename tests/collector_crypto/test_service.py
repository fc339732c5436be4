"""collector-crypto as a service on a real NATS server: commands in, events and one result out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from assetsync.config import Settings
from assetsync.embedded import EmbeddedNats
from assetsync.events import Event, FeedRecord, Holding, KlineBatch, MarketTicks, TaskResult
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync.service import Disabled
from assetsync.tasks import request_task
from assetsync_collector_crypto.service import CryptoCollector, build
from assetsync_emulators.alternative_me import AlternativeMeEmulator
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, BinanceEmulator, create_app
from assetsync_emulators.common import serve
from nats.aio.msg import Msg

from tests.support import wait_for


@pytest.fixture
async def binance_url() -> AsyncIterator[str]:
    async with serve(create_app(BinanceEmulator(seed=21))) as url:
        yield url


def crypto_overrides(url: str) -> dict[str, Any]:
    return {
        "asset_sync": {
            "binance": {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": url},
            "assets": {"crypto": {"ignore": ["USDT", "LD*"], "kline_backfill_hours": 12}},
        },
        "market": {"fear_greed": {"enabled": False}},  # no internet in tests
    }


class _Publisher:
    async def publish_many(self, events: Sequence[Event]) -> None:
        raise AssertionError("build() must not publish")


class _Rt:
    """What build() reads of a Runtime (it starts nothing)."""

    def __init__(self, settings: Settings, scheduling: bool = True) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.scheduling = scheduling
        self.publisher = _Publisher()


def test_disabled_without_credentials_and_market_data(make_settings: Any) -> None:
    off = {"market": {"enabled": False}}
    out = build(_Rt(make_settings(off)))  # type: ignore[arg-type]
    assert out == Disabled("asset_sync.binance.api_key / api_secret are not set")
    disabled = make_settings({"asset_sync": {"binance": {"enabled": False}}, **off})
    assert build(_Rt(disabled)) == Disabled("asset_sync.binance.enabled is false")  # type: ignore[arg-type]
    # One-shot stacks (`task`, `run-once`) run no pollers: without keys the part is off, as before.
    keyless = make_settings()
    assert build(_Rt(keyless, scheduling=False)) == Disabled(  # type: ignore[arg-type]
        "asset_sync.binance.api_key / api_secret are not set"
    )


async def test_keyless_site_runs_public_market_data_only(
    nats_server: EmbeddedNats, make_settings: Any, binance_url: str
) -> None:
    fng = AlternativeMeEmulator()
    async with serve(fng.app) as fng_url:
        settings = make_settings(
            {
                "asset_sync": {"binance": {"base_url": binance_url}},
                "market": {"watchlist": ["BTC", "ETH", "LUNA"], "fear_greed": {"base_url": fng_url}},
            }
        )
        async with open_runtime(settings, nats_server.url, name="test-keyless", metrics=Metrics()) as rt:
            svc = build(rt)
            assert isinstance(svc, CryptoCollector) and svc.sync is None
            assert svc.watch is not None and svc.fear_greed is not None
            assert svc.note == "public market data only (asset_sync.binance.api_key / api_secret not set)"
            seen: list[Any] = []

            async def collect(msg: Msg) -> None:
                seen.append(rt.codec.decode(msg.data))

            await rt.nc.subscribe(rt.topo.ticks("binance"), cb=collect)
            await rt.nc.subscribe(rt.topo.feed("FG001"), cb=collect)
            async with AsyncExitStack() as stack:
                await svc.start(stack)
                ticks = await wait_for(lambda: [e for e in seen if isinstance(e, MarketTicks)], timeout=20)
                assert set(ticks[0].prices) == {"BTC", "ETH"} and ticks[0].missing == ["LUNA"]
                await wait_for(lambda: any(isinstance(e, FeedRecord) for e in seen), what="FG001")
                ok, detail = svc.health()
                assert ok and "market ticks ok" in detail and "fear & greed" in detail
            # No `crypto` consumer without keys: the account sync is not pretending to run.
            assert (
                not any(c.spec.durable.endswith("task-crypto") for c in rt.consumers) and rt.consumers == []
            )


async def test_crypto_task_over_the_bus(
    nats_server: EmbeddedNats, make_settings: Any, binance_url: str
) -> None:
    settings = make_settings(crypto_overrides(binance_url))
    async with open_runtime(settings, nats_server.url, name="test-crypto", metrics=Metrics()) as rt:
        svc = build(rt)
        assert isinstance(svc, CryptoCollector)
        seen: list[Any] = []

        async def collect(msg: Msg) -> None:
            seen.append(rt.codec.decode(msg.data))

        await rt.nc.subscribe(rt.topo.holding("binance"), cb=collect)
        await rt.nc.subscribe(rt.topo.kline("binance"), cb=collect)
        await rt.nc.subscribe(rt.topo.ticks("binance"), cb=collect)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            notices: list[dict[str, Any]] = []
            result, _ = await request_task(
                rt, "crypto", timeout=30, stored_timeout=0.05, on_progress=notices.append
            )
            assert result.status == "success", result.message
            assert svc.sync is not None and svc.watch is not None and svc.note == ""
            # The kline backfill reports progress for the CLI's bar, ending at done == total.
            assert notices and notices[-1]["what"] == "klines"
            assert notices[-1]["done"] == notices[-1]["total"] > 0
            assert result.source == "binance" and result.assets is not None and "ETHW" in result.assets
            await wait_for(
                lambda: {e.asset for e in seen if isinstance(e, Holding)} == set(result.assets or []),
                what="one holding per reported asset",
            )
            assert any(isinstance(e, KlineBatch) and e.symbol == "BTC/USDT" for e in seen)
            assert rt.metrics.value("assetsync_task_runs_total", {"task": "crypto", "status": "success"}) == 1
            # With keys the watch-list poller runs beside the account sync.
            await wait_for(lambda: any(isinstance(e, MarketTicks) for e in seen), what="MarketTicks")
            ok, detail = svc.health()
            assert ok and "last run success" in detail


async def test_scheduled_slot_runs_once_across_two_replicas(
    nats_server: EmbeddedNats, make_settings: Any, binance_url: str, tmp_path: Path
) -> None:
    results: list[TaskResult] = []
    replicas: list[CryptoCollector] = []
    async with AsyncExitStack() as stack:
        for i in range(2):
            settings = make_settings(crypto_overrides(binance_url), data_dir=tmp_path / f"replica{i}")
            rt = await stack.enter_async_context(
                open_runtime(settings, nats_server.url, name=f"replica{i}", metrics=Metrics())
            )
            svc = build(rt)
            assert isinstance(svc, CryptoCollector)
            await svc.start(stack)
            replicas.append(svc)
        rt0 = replicas[0].rt

        async def on_result(msg: Msg) -> None:
            ev = rt0.codec.decode(msg.data)
            if isinstance(ev, TaskResult):
                results.append(ev)

        await rt0.nc.subscribe(rt0.topo.result("crypto"), cb=on_result)
        slot = datetime.now(UTC).replace(second=0, microsecond=0)
        later = slot + timedelta(minutes=1)
        for svc in replicas:  # both replicas' schedulers publish the same slot, twice
            assert svc.scheduler is not None
            await svc.scheduler.fire(slot)
            await svc.scheduler.fire(slot)
        for svc in replicas:
            assert svc.scheduler is not None
            await svc.scheduler.fire(later)
        # Commands run one at a time in order: once the later slot's result is in, any duplicate
        # of the first slot would have run before it.
        second_id = f"crypto@{later.isoformat(timespec='minutes')}"
        await wait_for(lambda: any(r.command_id == second_id for r in results), timeout=60, what=second_id)
        first_id = f"crypto@{slot.isoformat(timespec='minutes')}"
        assert [r.command_id for r in results].count(first_id) == 1
        assert [r.command_id for r in results].count(second_id) == 1
        assert all(r.status == "success" for r in results)
        runs = [
            svc.rt.metrics.value("assetsync_task_runs_total", {"task": "crypto", "status": "success"}) or 0
            for svc in replicas
        ]
        assert sum(runs) == 2  # two slots, each run by exactly one replica


def test_up_prints_the_keyless_mode_in_one_line(
    make_settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from assetsync.cli import _print_parts
    from assetsync.stack import Part

    svc = build(_Rt(make_settings({"market": {"fear_greed": {"enabled": False}}})))  # type: ignore[arg-type]
    assert isinstance(svc, CryptoCollector)

    parts = [Part("collector-crypto", "running", service=svc), Part("alerter", "off", "no webhook")]

    class _Stack:
        def __init__(self) -> None:
            self.parts = parts

    _print_parts(_Stack())  # type: ignore[arg-type]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  collector-crypto  running — public market data only "
        "(asset_sync.binance.api_key / api_secret not set)",
        "  alerter           off — no webhook",
    ]

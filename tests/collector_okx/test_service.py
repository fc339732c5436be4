"""collector-okx as a service on a real NATS server: feeds out, okx commands in, one result out."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
from assetsync.cli import _print_parts
from assetsync.embedded import EmbeddedNats
from assetsync.events import FeedRecord, Holding, Trade
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync.service import Disabled
from assetsync.stack import Part
from assetsync.tasks import request_task
from assetsync_collector_okx.service import PUBLIC_ONLY, OkxCollector, build
from nats.aio.msg import Msg

from tests.collector_okx.conftest import Harness, okx_conf
from tests.support import wait_for


def test_disabled_unless_enabled_or_keys(make_settings: Any) -> None:
    class _Rt:
        settings = make_settings()
        metrics = Metrics()

    off = build(_Rt())  # type: ignore[arg-type]
    assert isinstance(off, Disabled) and "asset_sync.okx.enabled" in off.reason
    _Rt.settings = make_settings(
        {"asset_sync": {"okx": {"enabled": False, "api_key": "k", "api_secret": "s", "password": "p"}}}
    )
    assert build(_Rt()) == Disabled("asset_sync.okx.enabled is false")  # type: ignore[arg-type]


async def _collect(rt: Any, subjects: list[str]) -> list[Any]:
    seen: list[Any] = []

    async def cb(msg: Msg) -> None:
        seen.append(rt.codec.decode(msg.data))

    for s in subjects:
        await rt.nc.subscribe(s, cb=cb)
    return seen


async def test_public_only_mode_publishes_okx001_and_lq001(
    nats_server: EmbeddedNats, make_settings: Any, harness: Harness
) -> None:
    settings = make_settings({"asset_sync": {"okx": okx_conf(harness.url, keys=False)}})
    async with open_runtime(settings, nats_server.url, name="test-okx-public", metrics=Metrics()) as rt:
        svc = build(rt)
        assert isinstance(svc, OkxCollector)
        assert "public data only" in svc.note and "asset_sync.okx.api_key" in svc.note
        seen = await _collect(rt, [rt.topo.feed("*")])
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            await wait_for(
                lambda: {"OKX001", "LQ001"} <= {e.code for e in seen if isinstance(e, FeedRecord)},
                timeout=20,
                what="OKX001 and LQ001 records",
            )
            assert {e.code for e in seen} <= {"OKX001", "LQ001"}
            assert svc.scheduler is None and svc.health() == (True, "public feeds only")
            calls = rt.metrics.value(
                "assetsync_external_api_calls_total",
                {"service": "okx", "endpoint": "GET /api/v5/market/tickers"},
            )
            assert calls is not None and calls >= 1
            assert harness.emu.switch.count("/api/v5/account/") == 0
            # Keys added by a reload: a new client, and the okx task runs without a restart.
            await svc.reload(make_settings({"asset_sync": {"okx": okx_conf(harness.url)}}))
            assert svc.note == ""
            result, _ = await request_task(rt, "okx", timeout=30, stored_timeout=0.05)
            assert result.status == "success", result.message


async def test_okx_task_over_the_bus_and_reload_with_new_keys(
    nats_server: EmbeddedNats, make_settings: Any, harness: Harness
) -> None:
    settings = make_settings({"asset_sync": {"okx": okx_conf(harness.url)}})
    async with open_runtime(settings, nats_server.url, name="test-okx", metrics=Metrics()) as rt:
        svc = build(rt)
        assert isinstance(svc, OkxCollector) and svc.note == ""
        seen = await _collect(rt, [rt.topo.holding("okx"), rt.topo.trade("okx"), rt.topo.feed("*")])
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            result, _ = await request_task(rt, "okx", timeout=30, stored_timeout=0.05)
            assert result.status == "success", result.message
            assert result.source == "okx" and result.assets is not None and "BTC" in result.assets
            await wait_for(
                lambda: {e.asset for e in seen if isinstance(e, Holding)} == set(result.assets or []),
                what="one holding per reported asset",
            )
            await wait_for(
                lambda: (
                    {"OKX001", "OKX002", "OKX003", "OKX004", "OKX005"}
                    <= {e.code for e in seen if isinstance(e, FeedRecord)}
                ),
                timeout=20,
                what="the account feeds",
            )
            await wait_for(lambda: any(isinstance(e, Trade) for e in seen), what="trades")
            assert rt.metrics.value("assetsync_task_runs_total", {"task": "okx", "status": "success"}) == 1
            # A reload with a wrong passphrase builds a new client: the next run fails naming the key.
            bad = make_settings({"asset_sync": {"okx": okx_conf(harness.url, password="typo")}})
            old = svc.sync.exchange
            await svc.reload(bad)
            assert svc.sync.exchange is not old
            failed, _ = await request_task(rt, "okx", timeout=30, stored_timeout=0.05)
            assert failed.status == "failed" and "asset_sync.okx.password" in failed.message
            assert "typo" not in failed.message
            errors = rt.metrics.value(
                "assetsync_external_api_errors_total",
                {"service": "okx", "endpoint": "GET /api/v5/account/balance", "kind": "AuthenticationError"},
            )
            assert errors is not None and errors >= 1


def test_up_prints_the_public_only_line(capsys: pytest.CaptureFixture[str]) -> None:
    class _Svc:
        name = "collector-okx"
        note = PUBLIC_ONLY

    class _Stack:
        def __init__(self) -> None:
            self.parts = [Part("collector-okx", "running", service=_Svc()), Part("store", "running")]  # type: ignore[arg-type]

    _print_parts(_Stack())  # type: ignore[arg-type]
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["collector-okx", "running", "—"]
    assert "asset_sync.okx.api_key / api_secret / password" in out[0]
    assert out[1].split() == ["store", "running"]

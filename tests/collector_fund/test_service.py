"""collector-fund as a service on a real NATS server: commands in, prices/holdings/results out."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from assetsync.embedded import EmbeddedNats
from assetsync.events import Holding, PriceTick
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.service import Disabled
from assetsync.tasks import request_task
from assetsync_collector_fund.service import FundCollector, build
from assetsync_emulators.xueqiu import SHANGHAI, XueqiuEmulator
from nats.aio.msg import Msg

from tests.support import wait_for


def fund_overrides(emu: XueqiuEmulator, url: str) -> dict[str, Any]:
    out = emu.config_overrides(url, with_funds=False)
    out["asset_sync"]["xueqiu"]["timeout_seconds"] = 0.5
    out["asset_sync"]["assets"] = {
        "funds": {
            "manual": [
                {"symbol": "SH510300", "quantity": 1000, "avg_cost": 3.5},
                {"symbol": "SZ159915", "quantity": 2000},
                {"symbol": "110011", "quantity": 300, "avg_cost": 3.9},
                {"symbol": "999999", "quantity": 1},
            ]
        }
    }
    return out


async def test_fund_task_over_the_bus(
    nats_server: EmbeddedNats, make_settings: Any, emu: XueqiuEmulator, xq_url: str
) -> None:
    settings = make_settings(fund_overrides(emu, xq_url))
    async with open_runtime(settings, nats_server.url, name="test-fund", metrics=Metrics()) as rt:
        svc = build(rt)
        assert isinstance(svc, FundCollector)
        seen: list[Any] = []

        async def collect(msg: Msg) -> None:
            seen.append(rt.codec.decode(msg.data))

        await rt.nc.subscribe(rt.topo.price("xueqiu"), cb=collect)
        await rt.nc.subscribe(rt.topo.holding("xueqiu"), cb=collect)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            result, _ = await request_task(rt, "fund", timeout=20, stored_timeout=0.05)
            assert result.status == "partial", result
            assert (result.records, result.total) == (3, 4)
            assert [e.asset for e in result.errors] == ["999999"]
            assert result.data_as_of == "2026-11-19..2026-11-20"
            await wait_for(lambda: len(seen) == 6, what="3 ticks and 3 holdings")
            assert {e.asset for e in seen if isinstance(e, Holding)} == {"SH510300", "SZ159915", "110011"}
            assert all(e.currency == "CNY" for e in seen if isinstance(e, PriceTick))
            assert rt.metrics.value("assetsync_task_runs_total", {"task": "fund", "status": "partial"}) == 1

            emu.expire_cookie()
            failed, _ = await request_task(rt, "fund", timeout=20, stored_timeout=0.05)
            assert failed.status == "failed"
            assert failed.message == "Xueqiu cookie expired — update asset_sync.xueqiu.cookies"
            ok, detail = svc.health()
            assert ok and "last run failed" in detail


async def test_schedule_fires_only_on_trading_days(
    nats_server: EmbeddedNats, make_settings: Any, emu: XueqiuEmulator, xq_url: str
) -> None:
    settings = make_settings(fund_overrides(emu, xq_url))
    async with open_runtime(settings, nats_server.url, name="test-fund-sched", metrics=Metrics()) as rt:
        svc = build(rt)
        assert isinstance(svc, FundCollector)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            sched = svc.scheduler
            assert sched is not None
            # The next 09:00 slot after Friday noon is Saturday's: the scheduler computes it, then skips it.
            assert sched.next_after(datetime(2026, 11, 20, 12, 0, tzinfo=SHANGHAI)) == datetime(
                2026, 11, 21, 9, 0, tzinfo=SHANGHAI
            )
            assert await sched.fire(datetime(2026, 10, 1, 9, 0, tzinfo=SHANGHAI)) is False  # National Day
            assert await sched.fire(datetime(2026, 11, 21, 9, 0, tzinfo=SHANGHAI)) is False  # Saturday
            assert await sched.fire(datetime(2026, 11, 20, 9, 0, tzinfo=SHANGHAI)) is True  # Friday
            assert sched.published == ["2026-11-20T09:00+08:00"]


async def test_off_without_a_cookie(runtime: Runtime) -> None:
    svc = build(runtime)
    assert isinstance(svc, Disabled)
    assert "asset_sync.xueqiu.cookies" in svc.reason


async def test_demo_settings_sync_every_demo_fund(
    nats_server: EmbeddedNats, make_settings: Any, emu: XueqiuEmulator, xq_url: str
) -> None:
    settings = make_settings(emu.config_overrides(xq_url))
    async with open_runtime(settings, nats_server.url, name="test-fund-demo", metrics=Metrics()) as rt:
        svc = build(rt)
        assert isinstance(svc, FundCollector)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            result, _ = await request_task(rt, "fund", timeout=20, stored_timeout=0.05)
    assert result.status == "success", result
    assert result.records == result.total == 4

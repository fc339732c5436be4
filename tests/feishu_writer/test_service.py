"""feishu-writer as a service on a real NATS server: ack after Feishu accepted, nak while down, term on rejection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from assetsync.embedded import EmbeddedNats
from assetsync.events import Holding, SinkRejected, TaskResult
from assetsync.feishu import schema as fs
from assetsync.feishu.setup import setup_tables
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.service import Disabled
from assetsync_emulators.common import Fault
from assetsync_feishu_writer.service import FeishuWriterService, build

from tests.feishu.support import FeishuSite, client_for, feishu_site
from tests.support import wait_for

T0 = 1_790_000_000_000


def holding(asset: str, price: float = 10.0, as_of: int = T0) -> Holding:
    return Holding(
        source="binance", asset=asset, quantity=2.0, currency="USDT", as_of=as_of, price=price, avg_cost=8.0
    )


@asynccontextmanager
async def running(
    nats_server: EmbeddedNats, make_settings: Any
) -> AsyncIterator[tuple[FeishuSite, Runtime, FeishuWriterService]]:
    async with feishu_site() as site:
        settings = make_settings(site.overrides())
        async with client_for(settings) as c:
            await setup_tables(settings, c)
        async with open_runtime(settings, nats_server.url, name="test-fw", metrics=Metrics()) as rt:
            client = client_for(settings)
            svc = FeishuWriterService(rt, linger=0.05, client=client)
            async with AsyncExitStack() as stack:
                stack.push_async_callback(client.aclose)
                await svc.start(stack)
                yield site, rt, svc


def acked(svc: FeishuWriterService) -> int:
    return sum(c.stats.acked for c in svc.consumers)


async def test_build_is_disabled_without_credentials(nats_server: EmbeddedNats, make_settings: Any) -> None:
    async with open_runtime(make_settings(), nats_server.url, name="t", metrics=Metrics()) as rt:
        out = build(rt)
    assert isinstance(out, Disabled) and "mcp_server.app_id" in out.reason


async def test_events_become_rows_and_are_acked(nats_server: EmbeddedNats, make_settings: Any) -> None:
    async with running(nats_server, make_settings) as (site, rt, svc):
        for i in range(50):
            await rt.publisher.publish(holding(f"C{i}"))
        await rt.publisher.publish(TaskResult(command_id="r1", task="crypto", source="binance", status="success",
                                              started_at=T0, finished_at=T0 + 2000, records=50, total=50))  # fmt: skip
        await rt.publisher.flush()
        await wait_for(lambda: acked(svc) == 51, timeout=15, what="all events acked")
        assert len(site.emu.rows("持仓")) == 50 and len(site.emu.rows("日志")) == 1
        assert site.emu.calls["records.batch_create"] <= 3  # coalesced: one per table (+1 if split)
        assert svc.health() == (True, "ok")


async def test_feishu_down_then_back_events_wait_and_land_once(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with running(nats_server, make_settings) as (site, rt, svc):
        site.emu.switch.add(Fault("5xx", path_prefix="/open-apis/bitable"))
        for i in range(30):
            await rt.publisher.publish(holding(f"C{i}"))
        await rt.publisher.flush()
        await wait_for(lambda: sum(c.stats.naked for c in svc.consumers) >= 30, timeout=15, what="nak'ed")
        assert acked(svc) == 0 and not svc.health()[0]
        site.emu.switch.clear()
        await wait_for(lambda: acked(svc) == 30, timeout=20, what="redelivered and acked")
        codes = [r[fs.CODE] for r in site.emu.rows("持仓")]
        assert sorted(codes) == sorted(f"C{i}" for i in range(30))


async def test_renamed_field_terms_holdings_publishes_rejection(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with running(nats_server, make_settings) as (site, rt, svc):
        got: list[SinkRejected] = []

        async def on_msg(msg: Any) -> None:
            ev = rt.codec.decode(msg.data)
            if isinstance(ev, SinkRejected):
                got.append(ev)

        sub = await rt.nc.subscribe(rt.topo.sink_rejected(), cb=on_msg)
        site.emu.rename_field("持仓", fs.QUANTITY, "持有数量")
        await rt.publisher.publish(holding("BTC"))
        await rt.publisher.publish(TaskResult(command_id="r2", task="crypto", source="binance", status="success",
                                              started_at=T0, finished_at=T0 + 1000))  # fmt: skip
        await rt.publisher.flush()
        await wait_for(
            lambda: got and len(site.emu.rows("日志")) == 1, timeout=15, what="rejection and log row"
        )
        await sub.unsubscribe()
        assert got[0].target == "持仓" and fs.QUANTITY in got[0].reason and "BTC" in got[0].record_key
        await wait_for(lambda: sum(c.stats.termed for c in svc.consumers) == 1, what="holding termed")
        assert site.emu.rows("持仓") == []
        assert rt.metrics.value("assetsync_feishu_rejected_total", {"table": "持仓"}) == 1

"""The gateway as a bus service: events into feeds, received records back onto the other site's bus."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from assetsync.config import ConfigError
from assetsync.embedded import EmbeddedNats
from assetsync.events import AssetError, Holding, TaskResult
from assetsync.metrics import Metrics
from assetsync.service import Disabled
from assetsync_sync_gateway.service import GatewayService, build

from tests.support import wait_for
from tests.sync_gateway.support import collect_on_bus, holding, runtime_for, site_settings, tick


async def test_bus_events_feed_the_gateway_and_reach_the_other_sites_bus(
    tmp_path: Path, nats_server: EmbeddedNats, prefix: str, stack: AsyncExitStack
) -> None:
    rt_a = await runtime_for(stack, nats_server, site_settings(tmp_path, f"{prefix}a", "A"))
    svc_a = build(rt_a)
    assert isinstance(svc_a, GatewayService)
    await svc_a.start(stack)
    result = TaskResult(
        command_id="c1", task="crypto", source="binance", status="partial", started_at=1, finished_at=2,
        records=1, total=2, errors=[AssetError(asset="XYZ", reason="no market", kind="unpriced")],
    )  # fmt: skip
    await rt_a.publisher.publish_many([holding("BTC", 1000), holding("BTC", 1000), tick("ETH", 5), result])
    gw_a = svc_a.gw
    # Holdings, prices and results arrive through separate consumers, in any order.
    await wait_for(lambda: [gw_a.feeds.state(c).count for c in ("AS001", "AS002", "AS007")] == [1, 1, 1], 20)
    assert svc_a.health()[0] is True

    rt_b = await runtime_for(
        stack,
        nats_server,
        site_settings(tmp_path, f"{prefix}b", "B", receiver={"enabled": True, "remote_url": svc_a.url}),
    )
    seen = await collect_on_bus(stack, rt_b, rt_b.topo.portfolio, rt_b.topo.holding(), Holding)
    svc_b = build(rt_b)
    assert isinstance(svc_b, GatewayService)
    await svc_b.start(stack)
    async with httpx.AsyncClient(base_url=svc_b.url) as c:
        r = await c.post("/api/data-sync/receiver/sync-all", params={"wait": "true"}, json={})
        assert r.status_code == 200 and all(x["status"] == "success" for x in r.json()["results"])
    # B's own bus now carries A's holding (origin kept), so B's store and B's gateway fill in.
    await wait_for(lambda: len(seen) == 1, 20, what="holding republished on B's bus")
    assert seen[0].origin == "A" and seen[0].asset == "BTC" and seen[0].origin_seq == 1
    gw_b = svc_b.gw
    await wait_for(lambda: gw_b.feeds.state("AS001").count == 1, 20, what="B's feed has A's holding")
    page = await gw_b.feeds.page("AS001", 0, limit=10, max_bytes=1 << 20)
    assert b'"origin":"A","data"' in page.body
    # Going back, A pulls from B and gets nothing of A's: B's copy of A's records is never sent back to
    # A. (B's own health feeds, SYS001/SYS002, are B's records and do come.)
    gw_a.config.update_receiver(f'{{"enabled": true, "remote_url": "{svc_b.url}"}}'.encode())
    results = await gw_a.receiver.start_sync_all()
    assert all(r.status == "success" for r in results)
    assert sum(r.records for r in results if not r.code.startswith("SYS")) == 0


def test_disabled_gateway_and_bad_registry(tmp_path: Path) -> None:
    class FakeRt:
        def __init__(self, settings: Any) -> None:
            self.settings = settings
            self.publisher = None
            self.metrics = Metrics()

    off = site_settings(tmp_path, "p", "A", enabled=False)
    assert isinstance(build(FakeRt(off)), Disabled)  # type: ignore[arg-type]
    reg = tmp_path / "reg.json"
    reg.write_text(
        '[{"code": "X1", "category": "c", "name": "n", "api_path": "/a", "source": "jsonl", "data_file": "../../x"}]'
    )
    bad = site_settings(tmp_path, "p", "A", registry=str(reg))
    with pytest.raises(ConfigError, match=r"sync_gateway.registry: .*X1.*outside the data directory"):
        build(FakeRt(bad))  # type: ignore[arg-type]

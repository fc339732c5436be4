"""A real 3-node JetStream cluster on loopback: kill the stream leader mid-stream, lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from assetsync import events as ev
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync_store.service import StoreService

from tests.scale.support import read_only, ready_cluster
from tests.support import wait_for

N = 20_000
T0 = 1_790_000_000_000


async def publish_stream(rt: Runtime, n: int, progress: list[int]) -> None:
    """A collector's side: prices published steadily (bounded in flight, acks checked, re-sent on loss)."""
    for i in range(n):
        await rt.publisher.publish(
            ev.PriceTick(source="binance", asset=f"C{i % 100}", price=1.0 + i, currency="USDT", ts=T0 + i)
        )
        progress[0] = i + 1
        if i % 500 == 499:
            await asyncio.sleep(0.01)  # a steady stream, not one burst
    await rt.publisher.flush()


def stored(db: Path) -> tuple[int, int]:
    with read_only(db) as conn:
        total, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT source || ':' || asset || ':' || ts) FROM price_history"
        ).fetchone()
    return int(total), int(distinct)


async def test_killing_the_stream_leader_loses_and_duplicates_nothing(
    tmp_path: Path, make_settings: Any
) -> None:
    async with ready_cluster(tmp_path / "cluster") as cluster:
        urls = ",".join(cluster.urls)
        settings = make_settings({"nats": {"url": urls, "stream_replicas": 3}})
        async with open_runtime(settings, urls, name="test-setup", metrics=Metrics()) as setup:
            info = await setup.js.stream_info(setup.topo.market)
        assert info.config.num_replicas == 3 and info.cluster is not None and info.cluster.leader
        assert len(info.cluster.replicas or []) == 2
        leader = info.cluster.leader
        # Both clients start on the leader's node (they learn the others from the cluster), so its
        # death costs them their connection as well as the stream's leader.
        on_leader = cluster.node(leader).url
        async with (
            open_runtime(settings, on_leader, name="test-store", metrics=Metrics()) as store_rt,
            open_runtime(settings, on_leader, name="test-collector", metrics=Metrics()) as pub_rt,
        ):
            # The default publisher rides out the election (a few seconds of "no responders").
            store = StoreService(store_rt)
            async with AsyncExitStack() as stack:
                await store.start(stack)
                progress = [0]
                publishing = asyncio.create_task(publish_stream(pub_rt, N, progress))
                await wait_for(lambda: progress[0] >= N // 3, 30, what="a third published")
                assert (await store_rt.js.stream_info(store_rt.topo.market)).cluster.leader == leader  # type: ignore[union-attr]
                cluster.node(leader).kill()

                async def new_leader() -> bool:
                    try:
                        i = await store_rt.js.stream_info(store_rt.topo.market)
                    except Exception:
                        return False
                    return bool(i.cluster and i.cluster.leader and i.cluster.leader != leader)

                await wait_for(new_leader, 30, interval=0.2, what="a new stream leader")
                await asyncio.wait_for(publishing, 90)
                db = settings.db_path
                # Deliveries lost with the node come back after the consumer's ack_wait (30 s).
                with contextlib.suppress(AssertionError):
                    await wait_for(lambda: stored(db)[0] >= N, 45, interval=0.2, what="every event stored")
                ci = await store_rt.js.consumer_info(store_rt.topo.market, store_rt.durable("store-market"))
                assert stored(db) == (N, N), (
                    f"stored {stored(db)} of {N}; consumer: pending {ci.num_pending}, ack pending "
                    f"{ci.num_ack_pending}, ack floor {ci.ack_floor}, delivered {ci.delivered}"
                )
                state = (await store_rt.js.stream_info(store_rt.topo.market)).state
                assert state.messages == N  # re-sent publishes were de-duplicated by Nats-Msg-Id

"""The bus: publish with natural keys, batched consumers, ack/nak/term and their counters."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from assetsync import bus
from assetsync.events import PriceTick
from assetsync.runtime import Runtime

from tests.support import wait_for


def tick(i: int, asset: str = "BTC") -> PriceTick:
    return PriceTick(
        source="binance", asset=asset, price=100.0 + i, currency="USDT", ts=1_700_000_000_000 + i
    )


def spec(rt: Runtime, name: str, **kw: object) -> bus.ConsumerSpec:
    return bus.ConsumerSpec(
        durable=rt.durable(name),
        stream=rt.topo.market,
        subjects=(rt.topo.price(),),
        **kw,  # type: ignore[arg-type]
    )


async def test_publish_dedupes_on_natural_key(runtime: Runtime) -> None:
    for _ in range(3):
        await runtime.publisher.publish(tick(1))
    await runtime.publisher.publish(tick(2))
    await runtime.publisher.flush()
    info = await runtime.js.stream_info(runtime.topo.market)
    assert info.state.messages == 2


async def test_consumer_batches_and_acks_after_handler(runtime: Runtime) -> None:
    seen: list[int] = []
    sizes: list[int] = []

    async def handler(batch: Sequence[bus.Delivery]) -> None:
        sizes.append(len(batch))
        seen.extend(d.event.ts for d in batch if isinstance(d.event, PriceTick))

    for i in range(2000):
        await runtime.publisher.publish(tick(i))
    await runtime.publisher.flush()
    c = runtime.consumer(spec(runtime, "batches", batch_size=500), handler)
    await c.start()
    await wait_for(lambda: c.stats.acked == 2000, timeout=20, what="all acked")

    async def drained() -> bool:
        return await c.lag() == 0

    await wait_for(drained, what="server saw every ack")
    await c.stop()
    assert sorted(seen) == [1_700_000_000_000 + i for i in range(2000)]
    assert max(sizes) > 1, "events should arrive in batches"


async def test_undecodable_event_is_termed_and_counted(runtime: Runtime) -> None:
    got: list[float] = []

    async def handler(batch: Sequence[bus.Delivery]) -> None:
        got.extend(d.event.price for d in batch if isinstance(d.event, PriceTick))

    await runtime.js.publish(runtime.topo.price("binance"), b"{not json")
    await runtime.publisher.publish(tick(7))
    await runtime.publisher.flush()
    c = runtime.consumer(spec(runtime, "poison"), handler)
    await c.start()
    await wait_for(lambda: c.stats.acked == 1 and c.stats.termed == 1, what="one acked, one termed")
    await c.stop()
    assert got == [107.0]
    assert (
        runtime.metrics.value(
            "assetsync_events_termed_total", {"consumer": c.spec.durable, "reason": "decode"}
        )
        == 1
    )


async def test_poison_event_isolated_rest_committed(runtime: Runtime) -> None:
    committed: list[int] = []

    async def handler(batch: Sequence[bus.Delivery]) -> None:
        if any(isinstance(d.event, PriceTick) and d.event.asset == "BAD" for d in batch):
            raise ValueError("cannot store BAD")
        committed.extend(d.event.ts for d in batch if isinstance(d.event, PriceTick))

    for i in range(10):
        await runtime.publisher.publish(tick(i, "BAD" if i == 5 else "BTC"))
    await runtime.publisher.flush()
    c = runtime.consumer(spec(runtime, "isolate", batch_size=100, linger=0.05), handler)
    await c.start()
    await wait_for(lambda: c.stats.acked == 9 and c.stats.termed == 1, what="9 acked + 1 termed")
    await c.stop()
    assert len(committed) == 9


@pytest.mark.parametrize("delay", [0.05])
async def test_transient_error_naks_then_redelivers(runtime: Runtime, delay: float) -> None:
    attempts = 0

    async def handler(batch: Sequence[bus.Delivery]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise bus.TransientError("disk busy", delay=delay)

    await runtime.publisher.publish(tick(1))
    await runtime.publisher.flush()
    c = runtime.consumer(spec(runtime, "transient"), handler)
    await c.start()
    await wait_for(lambda: c.stats.acked == 1, what="acked after retries")
    await c.stop()
    assert c.stats.naked == 2
    assert attempts == 3


def test_subject_for_keys_on_the_right_field() -> None:
    from assetsync.events import TaskName, TaskResult
    from assetsync.subjects import Topology

    topo = Topology("p")

    def mk(task: TaskName) -> TaskResult:
        return TaskResult(
            command_id="c", task=task, source="system", status="success", started_at=0, finished_at=0
        )

    assert topo.subject_for(mk("backup")) == "p.tasks.result.v1.backup"
    assert topo.subject_for(mk("restore")) == "p.tasks.result.v1.restore"
    assert topo.subject_for(tick(1)) == "p.market.price.v1.binance"

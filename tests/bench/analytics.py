"""`./run bench analytics`: the market service alone (simulated time) — its CPU for a 50-coin watch list.

Simulated time: each minute brings one watch-list poll (50 prices) and 50 one-minute KlineBatches,
each hour 50 one-hour KlineBatches (a SAR recomputation per coin); after every minute the service
publishes what changed. The same events are published once without the service (the baseline) and
once with it consuming: the difference in this process's CPU time is the service's (decoding, state,
records, publishing), reported per simulated minute as a share of one core. nats-server's own CPU is
not counted (the stack runs it anyway).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from assetsync.config import load_settings
from assetsync.embedded import EmbeddedNats
from assetsync.events import Event
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync_market.service import MarketService
from assetsync_market.state import D, H, M

from tests.market.support import klines, ticks, walk

TARGET = 0.10


def minute_events(coins: list[str], t: int, i: int) -> list[Event]:
    prices = {c: 100.0 + k + 0.01 * ((i * 7 + k) % 13) for k, c in enumerate(coins)}
    out: list[Event] = [ticks(t, prices)]
    for k, c in enumerate(coins):
        out.append(klines(c, "1m", walk(1, start=t - M, step=M, price=prices[c], seed=i * 100 + k)))
        if t % H == 0:
            out.append(klines(c, "1h", walk(1, start=t - H, price=prices[c], seed=i * 100 + k)))
    return out


async def simulate(rt: Runtime, coins: list[str], minutes: int, start: int, *, service: bool) -> float:
    """CPU seconds this process spent publishing `minutes` of events (and, with `service`, handling them)."""
    now = [start]
    svc = MarketService(rt, clock=lambda: now[0] / 1000, linger=0.05, round_seconds=3600.0)
    history: list[Event] = []
    for k, c in enumerate(coins):
        history.append(klines(c, "1h", walk(200, start=start - 200 * H, seed=k)))
        history.append(klines(c, "1d", walk(40, start=start // D * D - 40 * D, step=D, seed=k + 99)))
    async with AsyncExitStack() as stack:
        if service:
            await svc.start(stack)
        for e in history:
            await rt.publisher.publish(e)
        await rt.publisher.flush()
        sent = len(history)
        if service:
            await _settled(svc, sent)
        cpu = time.process_time()
        for i in range(minutes):
            now[0] = start + (i + 1) * M
            events = minute_events(coins, now[0], i)
            for e in events:
                await rt.publisher.publish(e)
            await rt.publisher.flush()
            sent += len(events)
            if service:
                await _settled(svc, sent)
                await svc.publish_round()
        return time.process_time() - cpu


async def _settled(svc: MarketService, n: int) -> None:
    assert svc.consumer is not None
    while svc.consumer.stats.acked < n:
        await asyncio.sleep(0.002)


async def run(args: argparse.Namespace, tmp: Path) -> int:
    srv = EmbeddedNats(tmp / "nats", log_file=tmp / "nats.log").start()
    coins = [f"C{i:02d}" for i in range(args.coins)]
    start = (int(time.time() * 1000) // H - 2) * H
    try:
        results = {}
        for service in (False, True):
            prefix = f"bench{int(service)}"
            settings = load_settings(
                None,
                data_dir=tmp / prefix,
                log_dir=tmp / "logs",
                environ={},
                overrides={
                    "nats": {"prefix": prefix},
                    "metrics": {"port": 0},
                    "asset_sync": {"fx": {"source": "none"}},
                },
            )
            async with open_runtime(settings, srv.url, name="bench-market", metrics=Metrics()) as rt:
                results[service] = await simulate(rt, coins, args.minutes, start, service=service)
    finally:
        srv.stop()
    base, ours = results[False], results[True]
    per_min = (ours - base) / args.minutes
    share = per_min / 60.0
    print(
        f"market service, {args.coins} coins, {args.minutes} simulated minutes ({args.minutes // 60} hourly SAR rounds)"
    )
    print(
        f"  CPU publishing the events alone: {base:.2f} s; with the service consuming and publishing: {ours:.2f} s"
    )
    print(
        f"  the service: {per_min * 1000:.1f} ms CPU per minute = {share * 100:.2f} % of one core (target ≤ {TARGET * 100:.0f} %)"
    )
    return 0 if share <= TARGET else 1


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="./run bench analytics")
    ap.add_argument("--coins", type=int, default=50)
    ap.add_argument("--minutes", type=int, default=120)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetsync-bench-") as td:
        return asyncio.run(run(args, Path(td)))

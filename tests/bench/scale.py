"""Scale benchmark: end-to-end events/s (publishing processes -> JetStream -> store commit).

One NATS node with 1-replica streams against a 3-node cluster with 3-replica streams, with 1 and 2
publishing processes (as collector replicas are), side by side in one run. Target: the cluster keeps
at least 0.7x the single node's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from assetsync import events as ev
from assetsync.config import Settings, load_settings
from assetsync.embedded import EmbeddedNats
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync_store.service import StoreService

from tests.scale.support import Cluster

T0 = 1_700_000_000_000
TARGET = 0.7
ROOT = Path(__file__).resolve().parents[2]


def settings_for(tmp: Path, prefix: str, url: str, replicas: int) -> Settings:
    return load_settings(
        None,
        data_dir=tmp / prefix,
        log_dir=tmp / "logs",
        environ={},
        overrides={
            "nats": {"prefix": prefix, "url": url, "stream_replicas": replicas},
            "metrics": {"port": 0},
        },
    )


async def worker(args: argparse.Namespace) -> int:
    """A publishing process: prints its start time, then publishes its share of prices."""
    events = [
        ev.PriceTick(source="binance", asset=f"C{i % 200}", price=100.0 + i % 977, currency="USDT", ts=T0 + i)
        for i in range(args.offset, args.offset + args.events)
    ]
    settings = settings_for(Path(args.tmp), args.prefix, args.url, args.replicas)
    async with open_runtime(settings, args.url, name="bench-collector", metrics=Metrics()) as rt:
        print(f"start {time.time()}", flush=True)
        for e in events:
            await rt.publisher.publish(e)
        await rt.publisher.flush()
    return 0


def spawn(url: str, tmp: Path, prefix: str, replicas: int, events: int, offset: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bench", "scale", "--worker", "--url", url, "--tmp", str(tmp),
         "--prefix", prefix, "--replicas", str(replicas), "--events", str(events), "--offset", str(offset)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def started_at(proc: subprocess.Popen[str]) -> float:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("start "):
        raise RuntimeError(f"publisher failed to start (exit {proc.wait()})")
    return float(line.split()[1])


async def one_run(url: str, tmp: Path, prefix: str, replicas: int, publishers: int, total: int) -> float:
    """Events/s from the first publisher's start to the store's commit of the last event."""
    settings = settings_for(tmp, prefix, url, replicas)
    async with open_runtime(settings, url, name="bench-store", metrics=Metrics()) as rt:
        rt.scheduling = False
        store = StoreService(rt)
        async with AsyncExitStack() as stack:
            await store.start(stack)
            share = total // publishers
            procs = [spawn(url, tmp, prefix, replicas, share, i * share) for i in range(publishers)]
            starts = [await asyncio.to_thread(started_at, p) for p in procs]
            want = share * publishers
            while store.db.rows_written < want:
                await asyncio.sleep(0.002)
            end = time.time()
            for p in procs:
                await asyncio.to_thread(p.wait)
        # Drop this run's streams: idle replicated streams left behind would tax the next runs.
        for spec in rt.topo.streams():
            with contextlib.suppress(Exception):
                await rt.js.delete_stream(spec.name)
    return want / (end - min(starts))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="./run bench scale", description=__doc__)
    ap.add_argument("--events", type=int, default=40_000, help="events per run (split across publishers)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell (the median is shown)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    ap.add_argument("--replicas", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return asyncio.run(worker(args))
    with tempfile.TemporaryDirectory(prefix="assetsync-bench-scale-") as td:
        return asyncio.run(_run(Path(td), args))


async def _run(tmp: Path, args: argparse.Namespace) -> int:
    print(f"scale benchmark: {args.events:,} price events per run, median of {args.repeat} runs per cell")
    single = EmbeddedNats(tmp / "single", server_name="single", log_file=tmp / "single.log").start()
    cluster = Cluster(tmp / "cluster").start()
    rates: dict[tuple[str, int], list[float]] = {}
    try:
        await cluster.wait_ready()
        setups = (("single", single.url, 1), ("cluster", ",".join(cluster.urls), 3))
        # Interleaved, so load from elsewhere on the machine hits both setups alike.
        for i in range(args.repeat):
            for pubs in (1, 2):
                for tag, url, replicas in setups:
                    rate = await one_run(url, tmp, f"{tag}{pubs}r{i}", replicas, pubs, args.events)
                    rates.setdefault((tag, pubs), []).append(rate)
    finally:
        cluster.stop()
        single.stop()
    results = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"{'publishing processes':<24}{'1 node, R1 (ev/s)':>20}{'3 nodes, R3 (ev/s)':>20}{'ratio':>8}{'target':>9}"
    )
    ok = True
    for pubs in (1, 2):
        s, c = results[("single", pubs)], results[("cluster", pubs)]
        ratio = c / s
        ok = ok and ratio >= TARGET
        print(f"{pubs:<24}{s:>20,.0f}{c:>20,.0f}{ratio:>8.2f}{'>= ' + str(TARGET):>9}")
    print("end to end: publish (own process, Publisher) -> JetStream -> store consumer -> SQLite commit")
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1

"""Ingest benchmark: JetStream -> store -> SQLite against raw nats-py and raw sqlite3 baselines."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import nats
from assetsync import events as ev
from assetsync.config import load_settings
from assetsync.embedded import EmbeddedNats, free_port
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync_store import schema
from assetsync_store.service import StoreService
from assetsync_store.upserts import KLINE_SQL
from nats.js import api

T0 = 1_700_000_000_000


def price_events(n: int) -> list[ev.PriceTick]:
    return [
        ev.PriceTick(
            source="binance", asset=f"C{i % 200}", price=100.0 + (i % 977) * 0.01, currency="USDT", ts=T0 + i
        )
        for i in range(n)
    ]


def kline_batches(batches: int, per: int) -> list[ev.KlineBatch]:
    out = []
    for b in range(batches):
        sym = f"C{b % 500}/USDT"
        base = T0 + (b // 500) * per * 3_600_000
        candles = [ev.Candle(base + i * 3_600_000, 1.0, 2.0, 0.5, 1.5, 100.0 + i) for i in range(per)]
        out.append(ev.KlineBatch(source="binance", symbol=sym, interval="1h", candles=candles))
    return out


def spawn_publisher(
    url: str, mode: str, n: int, prefix: str, kline_batches: int = 0, candles: int = 0
) -> subprocess.Popen[str]:
    """A separate publishing process (the collector side); prints its start time, then publishes."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bench", "ingest", "--worker", mode, "--url", url, "--events", str(n),
         "--prefix", prefix, "--kline-batches", str(kline_batches), "--candles", str(candles)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


def started_at(proc: subprocess.Popen[str]) -> float:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return float(line.split()[1])


async def worker(args: argparse.Namespace) -> int:
    """Publisher process: `raw` = nats-py publish_async of pre-encoded payloads; `ours` = Publisher."""
    if args.worker == "raw":
        payloads = [ev.Codec().encode(e) for e in price_events(args.events)]
        nc = await nats.connect(args.url)
        js = nc.jetstream(publish_async_max_pending=4000)
        print(f"start {time.time()}", flush=True)
        for i, p in enumerate(payloads):
            await js.publish_async("rawbench.price", p, headers={"Nats-Msg-Id": f"raw-{i}"})
        await js.publish_async_completed()
        await nc.close()
        return 0
    events: list[ev.Event] = (
        list(price_events(args.events))
        if args.worker == "prices"
        else list(kline_batches(args.kline_batches, args.candles))
    )
    settings = load_settings(None, environ={}, overrides={"nats": {"prefix": args.prefix}})
    async with open_runtime(settings, args.url, name="bench-pub", metrics=Metrics()) as rt:
        print(f"start {time.time()}", flush=True)
        for e in events:
            await rt.publisher.publish(e)
        await rt.publisher.flush()
    return 0


async def raw_jetstream(url: str, n: int) -> float:
    """Baseline: another process publishes (publish_async, 4000 in flight); here a push consumer acks each."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="RAWBENCH", subjects=["rawbench.price"], storage=api.StorageType.FILE)
    done = asyncio.Event()
    got = 0
    end = 0.0

    async def cb(msg: object) -> None:
        nonlocal got, end
        await msg.ack()  # type: ignore[attr-defined]
        got += 1
        if got == n:
            end = time.time()
            done.set()

    await js.subscribe(
        "rawbench.price",
        durable="raw",
        cb=cb,
        manual_ack=True,
        config=api.ConsumerConfig(max_ack_pending=20000),
    )
    proc = spawn_publisher(url, "raw", n, "")
    start = await asyncio.to_thread(started_at, proc)
    await done.wait()
    await asyncio.to_thread(proc.wait)
    await js.delete_stream("RAWBENCH")  # the next round starts from an empty stream
    await nc.close()
    return end - start


def raw_sqlite(db: Path, rows: Sequence[tuple[object, ...]]) -> float:
    """Baseline: sqlite3 executemany upserts, 1000 rows per commit, WAL, synchronous=NORMAL."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    schema.migrate(conn)
    start = time.perf_counter()
    for i in range(0, len(rows), 1000):
        conn.execute("BEGIN")
        conn.executemany(KLINE_SQL, rows[i : i + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def pipeline(
    url: str,
    tmp: Path,
    mode: str,
    n: int,
    rows_expected: int,
    args: argparse.Namespace,
    tag: str,
    synchronous: str = "FULL",
) -> float:
    """Our path: a publisher process -> JetStream -> store consumer -> one SQLite transaction per batch."""
    overrides = {"nats": {"prefix": tag}, "asset_sync": {"database": {"synchronous": synchronous}}}
    settings = load_settings(None, data_dir=tmp / tag, log_dir=tmp / "logs", environ={}, overrides=overrides)
    async with open_runtime(settings, url, name="bench", metrics=Metrics()) as rt:
        rt.scheduling = False
        store = StoreService(rt)
        async with AsyncExitStack() as stack:
            await store.start(stack)
            proc = spawn_publisher(url, mode, n, tag, args.kline_batches, args.candles)
            start = await asyncio.to_thread(started_at, proc)
            while store.db.rows_written < rows_expected:
                await asyncio.sleep(0.002)
            end = time.time()
            await asyncio.to_thread(proc.wait)
            return end - start


async def publish_rate(url: str, n: int, tag: str) -> float:
    """Events/s our Publisher gets acknowledged by JetStream (each ack means "stored per the fsync policy")."""
    settings = load_settings(None, environ={}, overrides={"nats": {"prefix": tag}})
    events = price_events(n)
    async with open_runtime(settings, url, name="bench-durability", metrics=Metrics()) as rt:
        start = time.perf_counter()
        for e in events:
            await rt.publisher.publish(e)
        await rt.publisher.flush()
        return n / (time.perf_counter() - start)


async def durability_costs(tmp: Path, args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """What "loses nothing acknowledged on power loss" costs, per setting: (setting, figure, cost)."""
    n = args.durability_events
    burst = 1000  # a large scheduled sync: ~200 assets' holdings, prices and kline batches
    rows: list[tuple[str, str, str]] = []
    rates: dict[str, float] = {}
    bursts: dict[str, float] = {}
    for interval in ("always", "1s", "2m"):
        srv = EmbeddedNats(
            tmp / f"nats-{interval}", log_file=tmp / f"nats-{interval}.log", sync_interval=interval
        ).start()
        try:
            tag = interval.replace("always", "a")
            rates[interval] = statistics.median(
                [await publish_rate(srv.url, n, f"dur{tag}{r}") for r in range(args.rounds)]
            )
            bursts[interval] = statistics.median(
                [burst / await publish_rate(srv.url, burst, f"burst{tag}{r}") for r in range(args.rounds)]
            )
        finally:
            srv.stop()
    for interval in ("always", "1s", "2m"):
        cost = 1 - rates[interval] / rates["2m"]
        rows.append(
            (
                f'nats.sync_interval "{interval}": JetStream acks/s; a {burst:,}-event sync',
                f"{rates[interval]:,.0f}/s; {bursts[interval]:.2f}s",
                f"{cost:.0%}",
            )
        )
    srv = EmbeddedNats(tmp / "nats-store", log_file=tmp / "nats-store.log").start()
    try:
        k = args.kline_batches * args.candles
        krates: dict[str, float] = {}
        for sync in ("FULL", "NORMAL"):
            krates[sync] = statistics.median(
                [
                    k / await pipeline(srv.url, tmp, "klines", 0, k, args, f"sync{sync}{r}", synchronous=sync)
                    for r in range(args.rounds)
                ]
            )
    finally:
        srv.stop()
    for sync in ("FULL", "NORMAL"):
        rows.append(
            (
                f"asset_sync.database.synchronous {sync}: kline rows/s into SQLite",
                f"{krates[sync]:,.0f}/s",
                f"{1 - krates[sync] / krates['NORMAL']:.0%}",
            )
        )
    return rows


def measure_up(tmp: Path) -> tuple[float, float]:
    """`assetsync up` with every service configured: seconds to a healthy /healthz, idle RSS (MB)."""
    port, gw = free_port(), free_port()
    cfg = tmp / "up" / "config.json"
    cfg.parent.mkdir(parents=True)
    dead = "http://127.0.0.1:9"  # nothing listens: the stack idles, no task is due during the measurement
    cfg.write_text(json.dumps({
        "mcp_server": {"app_id": "cli_x", "app_secret": "s"},
        "asset_sync": {
            "binance": {"api_key": "k", "api_secret": "s", "base_url": dead},
            "xueqiu": {"cookies": "xq_a_token=x", "base_url": dead, "fund_base_url": dead},
            "feishu": {"app_token": "bascn", "base_url": dead},
            "alerts": {"feishu_webhook": f"{dead}/hook"},
            "fx_rates": {"USDT": 7.1},
        },
        "metrics": {"port": port},
        "sync_gateway": {"port": gw},
    }))  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "assetsync", "up", "--config", str(cfg), "--data-dir", str(tmp / "up" / "data"),
         "--log-dir", str(tmp / "up" / "logs")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
    )  # fmt: skip
    healthy = float("nan")
    try:
        deadline = start + 30
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        healthy = time.perf_counter() - start
                        break
            except OSError:
                time.sleep(0.02)
        time.sleep(3.0)  # idle: let start-up garbage settle before reading RSS
        rss_kb = 0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
        return healthy, rss_kb / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="./run bench ingest")
    ap.add_argument("--events", type=int, default=200_000, help="price events (>= 200000 for the target)")
    ap.add_argument("--kline-batches", type=int, default=2000)
    ap.add_argument("--candles", type=int, default=100, help="candles per kline batch")
    ap.add_argument("--rounds", type=int, default=3, help="alternating baseline/ours rounds (median)")
    ap.add_argument("--durability-events", type=int, default=10_000, help="events per fsync-policy round")
    ap.add_argument("--durability-only", action="store_true", help="only measure the fsync settings' cost")
    ap.add_argument("--worker", choices=["raw", "prices", "klines"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return asyncio.run(worker(args))
    with tempfile.TemporaryDirectory(prefix="assetsync-bench-") as td:
        tmp = Path(td)
        if args.durability_only:
            return asyncio.run(_durability(tmp, args))
        # Our overhead against raw nats-py on the same server (nats-server's own fsync policy); what
        # `up`'s default `nats.sync_interval: "always"` costs on top is measured separately below.
        srv = EmbeddedNats(tmp / "nats", log_file=tmp / "nats.log").start()
        try:
            code = asyncio.run(_run(srv.url, tmp, args))
        finally:
            srv.stop()
        return max(code, asyncio.run(_durability(tmp, args)))


async def _durability(tmp: Path, args: argparse.Namespace) -> int:
    print()
    print(f"{'durability setting (the default first)':<64}{'measured':>20}{'cost':>8}")
    for label, figure, cost in await durability_costs(tmp, args):
        print(f"{label:<64}{figure:>20}{cost:>8}")
    print(
        '"always"/FULL: an acknowledged event survives power loss; "1s"/"2m"/NORMAL: up to that long\n'
        "before a power cut may be lost (never on a crash); cost = throughput given up vs the most relaxed"
    )
    return 0


async def _run(url: str, tmp: Path, args: argparse.Namespace) -> int:
    klines = kline_batches(args.kline_batches, args.candles)
    krows = [
        (b.source, b.symbol, b.interval, c.open_time, c.open, c.high, c.low, c.close, c.volume)
        for b in klines
        for c in b.candles
    ]
    n, k = args.events, len(krows)
    print(
        f"ingest benchmark: {n:,} price events, {len(klines):,} kline batches = {k:,} rows (pid {os.getpid()})"
    )

    # Baseline and ours alternate, `--rounds` times; medians (this machine is noisy, ±25 %).
    raw_js_t, ours_p_t, raw_db_t, ours_k_t = [], [], [], []
    for r in range(args.rounds):
        raw_js_t.append(await raw_jetstream(url, n))
        ours_p_t.append(await pipeline(url, tmp, "prices", n, n, args, f"prices{r}"))
        raw_db_t.append(raw_sqlite(tmp / f"raw{r}.db", krows))
        ours_k_t.append(await pipeline(url, tmp, "klines", 0, k, args, f"klines{r}"))
        print(
            f"  round {r + 1}: prices {raw_js_t[-1] / ours_p_t[-1]:.2f}x, klines {raw_db_t[-1] / ours_k_t[-1]:.2f}x"
        )
    raw_js, ours_p = statistics.median(raw_js_t), statistics.median(ours_p_t)
    raw_db, ours_k = statistics.median(raw_db_t), statistics.median(ours_k_t)
    healthy, rss = measure_up(tmp)

    ratio_p = statistics.median(a / b for a, b in zip(raw_js_t, ours_p_t, strict=True))
    ratio_k = statistics.median(a / b for a, b in zip(raw_db_t, ours_k_t, strict=True))
    print()
    print(f"{'measure':<44}{'ours':>14}{'baseline':>14}{'ratio':>8}{'target':>9}")
    print(
        f"{'price events/s (JetStream -> SQLite)':<44}{n / ours_p:>14,.0f}{n / raw_js:>14,.0f}{ratio_p:>8.2f}{'>= 0.80':>9}"
    )
    print(
        f"{'kline rows/s (JetStream -> SQLite)':<44}{k / ours_k:>14,.0f}{k / raw_db:>14,.0f}{ratio_k:>8.2f}{'>= 0.50':>9}"
    )
    print(f"{'price rows/s':<44}{n / ours_p:>14,.0f}")
    print(f"{'assetsync up: start to healthy (s)':<44}{healthy:>14.2f}{'':>14}{'':>8}{'<= 3':>9}")
    print(f"{'assetsync up: idle RSS without nats (MB)':<44}{rss:>14.1f}{'':>14}{'':>8}{'<= 150':>9}")
    print("publishers run in their own process (as collectors do); baselines: nats-py publish_async +"
          " a push consumer acking each, no processing; sqlite3 executemany upserts, 1000 rows/commit, WAL")  # fmt: skip
    ok = ratio_p >= 0.8 and ratio_k >= 0.5 and healthy <= 3 and rss <= 150
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1

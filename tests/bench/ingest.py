"""Ingest benchmark: JetStream -> store -> SQLite against raw nats-py and raw sqlite3 baselines."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import nats
from nats.js import api

from assetsync import events as ev
from assetsync.config import load_settings
from assetsync.embedded import EmbeddedNats, free_port
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync_store import schema
from assetsync_store.service import StoreService
from assetsync_store.upserts import KLINE_SQL

T0 = 1_700_000_000_000


def price_events(n: int) -> list[ev.PriceTick]:
    return [
        ev.PriceTick(source="binance", asset=f"C{i % 200}", price=100.0 + (i % 977) * 0.01, currency="USDT", ts=T0 + i)
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


async def raw_jetstream(url: str, payloads: Sequence[bytes], subject: str) -> float:
    """Baseline: nats-py publish_async (4000 in flight) + push consumer acking each, no processing."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await js.add_stream(name="RAWBENCH", subjects=[subject], storage=api.StorageType.FILE)
    done = asyncio.Event()
    got = 0
    n = len(payloads)

    async def cb(msg: object) -> None:
        nonlocal got
        await msg.ack()  # type: ignore[attr-defined]
        got += 1
        if got == n:
            done.set()

    await js.subscribe(subject, durable="raw", cb=cb, manual_ack=True, config=api.ConsumerConfig(max_ack_pending=20000))
    start = time.perf_counter()
    for i, p in enumerate(payloads):
        await js.publish_async(subject, p, headers={"Nats-Msg-Id": f"raw-{i}"})
    await js.publish_async_completed()
    await done.wait()
    elapsed = time.perf_counter() - start
    await js.delete_stream("RAWBENCH")
    await nc.close()
    return elapsed


def raw_sqlite(db: Path, rows: list[tuple[object, ...]]) -> float:
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


async def pipeline(url: str, tmp: Path, events: Sequence[ev.Event], rows_expected: int, name: str) -> float:
    """Our path: Publisher -> JetStream -> store consumer -> one SQLite transaction per batch."""
    settings = load_settings(
        None, data_dir=tmp / name, log_dir=tmp / "logs", environ={}, overrides={"nats": {"prefix": name}}
    )
    async with open_runtime(settings, url, name="bench", metrics=Metrics()) as rt:
        rt.scheduling = False
        store = StoreService(rt)
        async with AsyncExitStack() as stack:
            await store.start(stack)
            start = time.perf_counter()
            for e in events:
                await rt.publisher.publish(e)
            await rt.publisher.flush()
            while store.db.rows_written < rows_expected:
                await asyncio.sleep(0.005)
            return time.perf_counter() - start


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
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetsync-bench-") as td:
        tmp = Path(td)
        srv = EmbeddedNats(tmp / "nats", log_file=tmp / "nats.log").start()
        try:
            return asyncio.run(_run(srv.url, tmp, args))
        finally:
            srv.stop()


async def _run(url: str, tmp: Path, args: argparse.Namespace) -> int:
    codec = ev.Codec()
    prices = price_events(args.events)
    payloads = [codec.encode(e) for e in prices]
    klines = kline_batches(args.kline_batches, args.candles)
    krows = [
        (b.source, b.symbol, b.interval, c.open_time, c.open, c.high, c.low, c.close, c.volume)
        for b in klines
        for c in b.candles
    ]
    n, k = len(prices), len(krows)
    print(f"ingest benchmark: {n:,} price events, {len(klines):,} kline batches = {k:,} rows (pid {os.getpid()})")

    raw_js = await raw_jetstream(url, payloads, "rawbench.price")
    ours_p = await pipeline(url, tmp, prices, n, "prices")
    raw_db = raw_sqlite(tmp / "raw.db", krows)
    ours_k = await pipeline(url, tmp, klines, k, "klines")
    healthy, rss = measure_up(tmp)

    ratio_p = raw_js / ours_p
    ratio_k = raw_db / ours_k
    print()
    print(f"{'measure':<44}{'ours':>14}{'baseline':>14}{'ratio':>8}{'target':>9}")
    print(f"{'price events/s (JetStream -> SQLite)':<44}{n / ours_p:>14,.0f}{n / raw_js:>14,.0f}{ratio_p:>8.2f}{'>= 0.80':>9}")
    print(f"{'kline rows/s (JetStream -> SQLite)':<44}{k / ours_k:>14,.0f}{k / raw_db:>14,.0f}{ratio_k:>8.2f}{'>= 0.50':>9}")
    print(f"{'price rows/s':<44}{n / ours_p:>14,.0f}")
    print(f"{'assetsync up: start to healthy (s)':<44}{healthy:>14.2f}{'':>14}{'':>8}{'<= 3':>9}")
    print(f"{'assetsync up: idle RSS without nats (MB)':<44}{rss:>14.1f}{'':>14}{'':>8}{'<= 150':>9}")
    print("baselines: raw = nats-py publish_async + push consumer acking each, no processing;"
          " sqlite3 executemany upserts, 1000 rows/commit, WAL")  # fmt: skip
    ok = ratio_p >= 0.8 and ratio_k >= 0.5 and healthy <= 3 and rss <= 150
    print("all targets met" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1

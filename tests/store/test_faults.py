"""Store faults: disk full, unusable database directory, kill -9 mid-stream, NATS restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import nats
from assetsync import events as ev
from assetsync.embedded import EmbeddedNats
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync_store.service import StoreService

from tests.store.conftest import StoreHarness
from tests.support import wait_for, wait_for_sync

T0 = 1_763_800_000_000


def ticks(n: int, start: int = 0) -> list[ev.PriceTick]:
    return [
        ev.PriceTick(source="binance", asset=f"A{i % 50}", price=1.0 + i, currency="USDT", ts=T0 + i)
        for i in range(start, start + n)
    ]


async def test_disk_full_naks_reports_and_recovers(harness: StoreHarness) -> None:
    results: list[ev.TaskResult] = []

    async def on_result(msg: Any) -> None:
        e = harness.rt.codec.decode(msg.data)
        if isinstance(e, ev.TaskResult) and e.task == "store":
            results.append(e)

    await harness.rt.nc.subscribe(harness.rt.topo.result("store"), cb=on_result)
    # SQLITE_FULL for real: cap the file at its current size.
    conn = harness.store.db.conn
    async with conn.execute("PRAGMA page_count") as cur:
        row = await cur.fetchone()
    assert row is not None
    await conn.execute(f"PRAGMA max_page_count={int(row[0])}")
    await harness.rt.publisher.publish_many(ticks(3000))
    await wait_for(lambda: results, timeout=15, what="failed store result")
    assert results[0].status == "failed" and "disk is full" in results[0].message
    assert not harness.store.health()[0]
    await conn.execute("PRAGMA max_page_count=1073741823")

    async def all_in() -> bool:
        return await harness.count("price_history") == 3000

    await wait_for(all_in, timeout=30, what="stored after space came back")
    assert harness.store.health()[0]


async def test_unusable_database_dir_is_a_clear_error_not_a_crash(
    nats_server: EmbeddedNats, make_settings: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "notadir"
    blocker.write_text("x")
    settings = make_settings({"asset_sync": {"database": {"path": str(blocker / "assets.db")}}})
    async with open_runtime(settings, nats_server.url, name="t", metrics=Metrics()) as rt:
        rt.scheduling = False
        seen: list[ev.TaskResult] = []

        async def on_result(msg: Any) -> None:
            e = rt.codec.decode(msg.data)
            if isinstance(e, ev.TaskResult):
                seen.append(e)

        await rt.nc.subscribe(rt.topo.result("store"), cb=on_result)
        svc = StoreService(rt)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            ok, why = svc.health()
            assert not ok and str(blocker) in why
            await wait_for(lambda: seen, what="failed task result")
            assert seen[0].status == "failed" and "cannot" in seen[0].message


def _config(tmp: Path, url: str, prefix: str) -> Path:
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps({"nats": {"url": url, "prefix": prefix}, "metrics": {"port": 0}}))
    return cfg


def _start_store(cfg: Path, data: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "assetsync", "service", "store", "--config", str(cfg), "--data-dir", str(data),
         "--log-dir", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM price_history").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


async def test_kill_9_mid_stream_then_restart_exactly_once(
    nats_server: EmbeddedNats, prefix: str, tmp_path: Path, make_settings: Any
) -> None:
    n = 30000
    cfg = _config(tmp_path, nats_server.url, prefix)
    data = tmp_path / "data"
    proc = _start_store(cfg, data, tmp_path / "logs")
    try:
        settings = make_settings()
        async with open_runtime(settings, nats_server.url, name="pub", metrics=Metrics()) as rt:
            publishing = asyncio.create_task(rt.publisher.publish_many(ticks(n)))
            db = data / "assets.db"
            await wait_for(lambda: _count(db) > 2000, timeout=60, what="store mid-stream")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at = _count(db)
            assert killed_at < n, "the kill must land mid-stream"
            proc = _start_store(cfg, data, tmp_path / "logs")
            await publishing
            await wait_for(lambda: _count(db) == n, timeout=90, what="every event stored")
        conn = sqlite3.connect(db)
        distinct = conn.execute("SELECT COUNT(DISTINCT ts) FROM price_history").fetchone()[0]
        conn.close()
        assert distinct == n
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "SIGTERM drains and exits 0"


async def test_nats_restart_under_running_store(tmp_path: Path, make_settings: Any) -> None:
    srv = EmbeddedNats(tmp_path / "js")
    srv.start()
    port = srv.port
    try:
        settings = make_settings()
        async with open_runtime(settings, srv.url, name="t", metrics=Metrics()) as rt:
            rt.scheduling = False
            store = StoreService(rt)
            async with AsyncExitStack() as stack:
                await store.start(stack)
                await rt.publisher.publish_many(ticks(1000))
                await wait_for(lambda: store.db.rows_written >= 1000, timeout=30)
                srv.stop()
                srv = EmbeddedNats(tmp_path / "js", port=port)
                srv.start()
                await wait_for(lambda: rt.nc.is_connected, timeout=30, what="reconnected")
                await rt.publisher.publish_many(ticks(1000, start=1000))

                async def all_in() -> bool:
                    rows = await store.db.fetchall("SELECT COUNT(*) AS n FROM price_history")
                    return int(rows[0]["n"]) == 2000

                await wait_for(all_in, timeout=60, what="events after restart stored")
    finally:
        srv.stop()


def test_up_sigterm_exits_0_and_second_up_finds_data(tmp_path: Path) -> None:
    env = {**os.environ, "ASSETSYNC_METRICS__PORT": "0", "ASSETSYNC_SYNC_GATEWAY__PORT": "0"}
    data = tmp_path / "data"

    def up() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "assetsync", "up", "--data-dir", str(data), "--log-dir", str(tmp_path / "logs")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
        )  # fmt: skip

    def run_until_ready(p: subprocess.Popen[str]) -> list[str]:
        lines: list[str] = []
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            if line.startswith("ready in"):
                return lines
        raise AssertionError("".join(lines))

    with up() as p:  # closes its pipe on the way out
        out = run_until_ready(p)
        assert any("store" in line and "running" in line for line in out)
        url = next(line.split()[1] for line in out if line.strip().startswith("nats:"))
        asyncio.run(_publish_one(url))
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    assert not (data / "run" / "stack.json").exists()

    with up() as p:
        out = run_until_ready(p)
        url = next(line.split()[1] for line in out if line.strip().startswith("nats:"))
        assert asyncio.run(_stream_messages(url)) >= 1, "second up finds the stream data where it was"
        wait_for_sync(lambda: _count(data / "assets.db") == 1, timeout=20)
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0


async def _publish_one(url: str) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.publish("market.price.v1.binance", ev.Codec().encode(ticks(1)[0]), headers={"Nats-Msg-Id": "x1"})
    await nc.close()


async def _stream_messages(url: str) -> int:
    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info("MARKET")
    await nc.close()
    return int(info.state.messages)

"""Durability: the fsync settings are applied as configured, and a damaged database stops the store's
consumer without acknowledging anything (no event terminated as poison) and raises an alert."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path

from assetsync import events as ev
from assetsync.config import load_settings
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync_emulators.common import serve_in_thread
from assetsync_emulators.feishu_bot import BotEmulator
from assetsync_store.db import Database

from tests.lifecycle.support import Up, healthz
from tests.support import wait_for, wait_for_sync


def damaged_database(path: Path) -> None:
    """A store whose price_history b-tree page is overwritten: SQLite says 'malformed' on writing it."""
    path.parent.mkdir(parents=True, exist_ok=True)

    async def create() -> None:
        db = Database(path)
        await db.open()
        await db.close()

    asyncio.run(create())
    with sqlite3.connect(path) as conn:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'price_history'").fetchone()
        (page,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page : root * page] = b"\xff" * page
    path.write_bytes(bytes(data))


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name))


async def test_a_malformed_database_halts_the_store_without_acking(make_up: Callable[..., Up]) -> None:
    bot = BotEmulator()
    with serve_in_thread(bot.app) as bot_base:
        up = make_up(env={"ASSETSYNC_ASSET_SYNC__ALERTS__FEISHU_WEBHOOK": bot.url(bot_base)})
        await asyncio.to_thread(damaged_database, up.data_dir / "assets.db")
        up.start().wait_ready()
        settings = load_settings(None, data_dir=up.data_dir, environ=up.env)
        async with open_runtime(settings, up.state()["nats_url"], name="test", metrics=Metrics()) as rt:
            for i in range(50):
                await rt.publisher.publish(
                    ev.PriceTick(
                        source="binance",
                        asset="BTC",
                        price=1.0 + i,
                        currency="USDT",
                        ts=1_790_000_000_000 + i,
                    )
                )
            await rt.publisher.flush()
            await wait_for(lambda: healthz(up.metrics_port)[0] == 503, 30, what="store not healthy")
            _, body = healthz(up.metrics_port)
            assert "damaged" in body["services"]["store"]["detail"], body
            assert "malformed" in body["services"]["store"]["detail"], body
            # Nothing acknowledged and nothing terminated: all 50 stay in the stream for after the repair.
            info = await rt.js.consumer_info(rt.topo.market, rt.durable("store-market"))
            assert (info.num_pending or 0) + (info.num_ack_pending or 0) == 50
            assert metric(up.metrics_port, "assetsync_events_termed_total") == 0
        wait_for_sync(lambda: bot.cards(), 30, what="an alert about the damaged database")
        assert "damaged" in str(bot.cards()[0])
        up.signal(signal.SIGTERM)
        assert await asyncio.to_thread(up.wait, 10) == 0


def test_fsync_settings_reach_sqlite_and_nats_server(make_up: Callable[..., Up]) -> None:
    up = make_up(env={"ASSETSYNC_NATS__SYNC_INTERVAL": "30s"}).start().wait_ready()
    conf = (up.data_dir / "nats-server.conf").read_text()
    assert 'sync_interval: "30s"' in conf
    pid = up.state()["nats_pid"]
    assert str(up.data_dir / "nats-server.conf") in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
        errors="replace"
    ).replace("\0", " ")
    up.signal(signal.SIGTERM)
    assert up.wait(10) == 0
    done = up.run("task", "snapshot")
    assert done.returncode == 0, done.stderr


def test_sqlite_synchronous_follows_the_config(tmp_path: Path) -> None:
    async def level(setting: str) -> int:
        db = Database(tmp_path / f"{setting}.db", synchronous=setting)
        await db.open()
        try:
            (row,) = await db.fetchall("PRAGMA synchronous")
            return int(row[0])
        finally:
            await db.close()

    assert asyncio.run(level("FULL")) == 2
    assert asyncio.run(level("NORMAL")) == 1

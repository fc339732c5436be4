"""The receiver killed with SIGKILL at random points, many times: the copy ends equal, nothing twice."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
from functools import partial
from pathlib import Path

from tests.support import wait_for
from tests.sync_gateway.support import FlakyProxy, ext, fill, make_gateway, serve

TOTAL_FIRST = 40_000
KILLS = 10
BYTES_PER_RECORD = 35  # the shortest mirror line: targets below total * 35 are always reached


def start_receiver(data_dir: Path, remote: str, log: Path) -> subprocess.Popen[bytes]:
    conf = {
        "sync_gateway": {
            "site_id": "B",
            "port": 0,
            "receiver": {"enabled": True, "remote_url": remote, "auto_sync": True, "sync_interval": 0.2},
        }
    }
    with log.open("ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "assetsync_sync_gateway",
                "--data-dir",
                str(data_dir),
                "--set",
                json.dumps(conf),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def mirror_size(data_dir: Path) -> int:
    try:
        return (data_dir / "synced_data" / "PB001.jsonl").stat().st_size
    except FileNotFoundError:
        return 0


async def test_sigkill_at_random_points_leaves_an_exact_copy(tmp_path: Path) -> None:
    rnd = random.Random(20261122)
    src = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
    rx_dir = tmp_path / "b"
    log = tmp_path / "receiver.log"
    async with serve(src) as site:
        # The receiver reaches the source through a proxy the test can stop: a kill then lands at a
        # point of the sync the test chose, however fast or slow the machine is.
        proxy = FlakyProxy(int(site.url.rsplit(":", 1)[1]), drop=0, truncate=0, delay=0)
        await proxy.start()
        via = f"http://127.0.0.1:{proxy.port}"
        await fill(src, "PB001", TOTAL_FIRST)
        total = TOTAL_FIRST
        kills_mid_sync = 0
        for k in range(KILLS):
            proxy.flowing.set()
            proc = start_receiver(rx_dir, via, log)
            try:
                # Kill once the mirror passed a random point of what is left (0: as it starts).
                have = mirror_size(rx_dir)
                target = have + int(rnd.choice([0, rnd.uniform(0, 0.4)]) * (total * BYTES_PER_RECORD - have))
                await wait_for(partial(_reached, rx_dir, target), 60, interval=0.003, what="sync progress")
                proxy.flowing.clear()  # nothing more reaches the receiver: it dies where it stands
                lines = _count_lines(rx_dir)
                kills_mid_sync += int(0 < lines < total)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            if k % 3 == 2:  # the source keeps growing between crashes
                await fill(src, "PB001", 500, start=total)
                total += 500
        assert kills_mid_sync >= 3, f"only {kills_mid_sync} kills landed mid-sync"
        # The last run completes.
        proxy.flowing.set()
        proc = start_receiver(rx_dir, via, log)
        try:
            await wait_for(lambda: _count_lines(rx_dir) >= total, 60, what="final convergence")
            await wait_for(lambda: _stored(rx_dir) == total, 30, what="store complete")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            await proxy.stop()
    mirror = (rx_dir / "synced_data" / "PB001.jsonl").read_bytes().splitlines()
    got = [json.loads(x)["i"] for x in mirror]
    assert len(got) == len(set(got)) == total, (len(got), len(set(got)), total)
    assert sorted(got) == list(range(total))
    with sqlite3.connect(rx_dir / "gateway" / "received.db") as db:
        rows = db.execute(
            "SELECT o.name, r.oseq FROM received r JOIN names o ON o.id = r.origin"
            " WHERE r.code = (SELECT id FROM names WHERE name = 'PB001')"
        ).fetchall()
    assert len(rows) == len(set(rows)) == total
    assert {o for o, _ in rows} == {"A"} and sorted(s for _, s in rows) == list(range(1, total + 1))


def _reached(rx_dir: Path, size: int) -> bool:
    return mirror_size(rx_dir) >= size


def _count_lines(rx_dir: Path) -> int:
    p = rx_dir / "synced_data" / "PB001.jsonl"
    return p.read_bytes().count(b"\n") if p.exists() else 0


def _stored(rx_dir: Path) -> int:
    try:
        with sqlite3.connect(rx_dir / "gateway" / "received.db", timeout=5) as db:
            sql = "SELECT count(*) FROM received WHERE code = (SELECT id FROM names WHERE name = 'PB001')"
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0

"""`assetsync up --processes`: one OS process per replica, supervised; a scheduled run happens once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from assetsync.retry import Backoff, Streak
from assetsync.supervisor import ReplicasError, parse_replicas, plan
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, BinanceEmulator, create_app
from assetsync_emulators.common import serve

from tests.scale.support import Lines, offset_for_slot_in, read_only, write_offset_zone
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]


def test_replicas_parse_and_refuse_a_second_store() -> None:
    assert parse_replicas("collector-crypto=2, collector-fund=0,store=1") == {
        "collector-crypto": 2,
        "collector-fund": 0,
        "store": 1,
    }
    with pytest.raises(ReplicasError, match=r"store=2 refused: the store is SQLite's single writer"):
        parse_replicas("store=2")
    with pytest.raises(ReplicasError, match="unknown service 'collectr'"):
        parse_replicas("collectr=2")
    with pytest.raises(ReplicasError, match="is not NAME=COUNT"):
        parse_replicas("collector-crypto")
    with pytest.raises(ReplicasError, match="whole number"):
        parse_replicas("collector-crypto=two")
    specs = plan({"collector-crypto": 2, "collector-fund": 0}, metrics_port=9500)
    labels = [s.label for s in specs]
    assert labels[:3] == ["store.1", "collector-crypto.1", "collector-crypto.2"]
    assert "collector-fund.1" not in labels
    assert [s.metrics_port for s in specs] == list(range(9500, 9500 + len(specs)))
    assert {s.metrics_port for s in plan({}, metrics_port=0)} == {0}


def test_restart_delay_grows_and_resets_after_a_stable_run() -> None:
    b = Streak(Backoff(base=0.5, cap=4.0, jitter=(1.0, 1.0)), stable_after=30.0)
    assert [b.fail(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert b.fail(31.0) == 0.5


def test_cli_refuses_two_stores(tmp_path: Path) -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "assetsync", "up", "--processes", "--replicas", "store=2",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "store=2 refused" in out.stderr and "single writer" in out.stderr


@pytest.fixture
async def binance() -> AsyncIterator[tuple[BinanceEmulator, str]]:
    emu = BinanceEmulator(seed=5)
    async with serve(create_app(emu)) as url:
        yield emu, url


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_collector_replicas_run_a_scheduled_slot_once(
    tmp_path: Path, prefix: str, binance: tuple[BinanceEmulator, str]
) -> None:
    emu, url = binance
    tzdir = tmp_path / "zones"
    # The first minute slot falls ~14 s from now in this zone: time for the processes to start.
    write_offset_zone(tzdir, "Fast/Minute", offset_for_slot_in(14))
    config = {
        "asset_sync": {
            "binance": {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": url},
            "assets": {"crypto": {"ignore": ["USDT", "LD*"], "kline_backfill_hours": 2}},
            "scheduler": {"timezone": "Fast/Minute", "crypto_sync": {"hour": "*", "minute": "*"}},
        },
        "nats": {"prefix": prefix},
        "metrics": {"port": 0},
        "sync_gateway": {"enabled": False},
        "market": {"fear_greed": {"enabled": False}},  # no internet in tests
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONTZPATH": str(tzdir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assetsync", "up", "--processes", "--replicas", "collector-crypto=2",
        "--config", str(tmp_path / "config.json"), "--data-dir", str(tmp_path / "data"),
        "--log-dir", str(tmp_path / "logs"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path,
    )  # fmt: skip
    out = Lines()
    assert proc.stdout is not None
    pump = asyncio.create_task(out.pump(proc.stdout))
    try:
        store_started = await wait_for(lambda: out.matching(r"^\[store\.1\] supervisor: started \(pid"), 30)
        store_pid = int(store_started[0].split("pid ")[1].rstrip(")"))
        await wait_for(lambda: len(out.matching(r"^\[store\.1\] ready in")) == 1, 30, what="store ready")
        # Parts that are off say so once and are not restarted.
        await wait_for(lambda: out.matching(r"^\[alerter\.1\]\s+alerter\s+off — "), 30)
        # A crashed child is restarted.
        os.kill(store_pid, signal.SIGKILL)
        await wait_for(lambda: out.matching(r"^\[store\.1\] supervisor: killed by SIGKILL"), 10)
        await wait_for(lambda: out.matching(r"^\[store\.1\] supervisor: restarted \(#1\)"), 10)
        assert not out.matching(r"^\[alerter\.1\] supervisor: restarted")

        # Both replicas fire the slot; only one runs it.
        def slot_fired_by_both() -> str:
            by_slot: dict[str, set[str]] = {}
            for ln in out.matching(r"scheduler crypto: slot \S+ triggered"):
                by_slot.setdefault(ln.split("slot ")[1].split(" ")[0], set()).add(ln.split("]")[0])
            both = [s for s, who in by_slot.items() if who == {"[collector-crypto.1", "[collector-crypto.2"}]
            return both[0] if both else ""

        slot = await wait_for(slot_fired_by_both, 75, what="both schedulers fired one slot")
        db = tmp_path / "data" / "assets.db"

        def stored() -> list[tuple[str, str]]:
            with read_only(db) as conn:
                return list(conn.execute("SELECT command_id, status FROM sync_logs WHERE task = 'crypto'"))

        rows = await wait_for(
            lambda: [r for r in stored() if r[0] == f"crypto@{slot}"], 60, what="the slot's result stored"
        )
        assert rows == [(f"crypto@{slot}", "success")]
        runs = out.matching(r"task crypto: starting \(command crypto@" + re.escape(slot))
        assert len(runs) == 1, runs
        # One Binance account read per run started: nobody ran a slot twice.
        assert emu.switch.count("/api/v3/account") == len(out.matching(r"task crypto: starting"))
        pids = [
            int(ln.split("pid ")[1].split(")")[0].split(",")[0])
            for ln in out.matching(r"supervisor: (re)?started")
        ]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 40)
        await pump
    assert code == 0, out.text()[-3000:]
    assert out.lines[-1] == "stopped"
    assert not [p for p in pids if _alive(p)]

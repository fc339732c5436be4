"""The `assetsync` command end to end: help, standalone tasks, backups, and `up --demo`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from assetsync.cli import build_parser
from assetsync.embedded import free_port
from assetsync.endpoints import codes_of
from assetsync.feishu.client import FeishuClient, Record
from assetsync.secrets import Secret
from assetsync_emulators.feishu import FeishuEmulator

from tests.support import wait_for_sync

COMMANDS = [
    [],
    ["up"],
    ["service"],
    ["task"],
    ["run-once"],
    ["setup-tables"],
    ["backup"],
    ["backup", "create"],
    ["backup", "list"],
    ["backup", "restore"],
    ["check-config"],
    ["reload"],
]


def cli(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSETSYNC_METRICS__PORT": "0"}
    return subprocess.run(
        [sys.executable, "-m", "assetsync", *args, "--data-dir", str(tmp / "data"), "--log-dir", str(tmp / "logs")],
        capture_output=True, text=True, timeout=timeout, cwd=tmp, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "assetsync")
def test_help_on_every_command(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*words, "--help"])
    assert exit_.value.code == 0
    assert "usage: assetsync" in capsys.readouterr().out


def test_task_snapshot_and_backups_standalone(tmp_path: Path) -> None:
    snap = cli(tmp_path, "task", "snapshot")
    assert snap.returncode == 0, snap.stderr
    assert "snapshot: success" in snap.stdout and "stored: yes" in snap.stdout
    db = tmp_path / "data" / "assets.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM sync_logs WHERE task='snapshot'").fetchone()[0] == 1

    made = cli(tmp_path, "backup", "create")
    assert made.returncode == 0, made.stderr
    listed = cli(tmp_path, "backup", "list")
    names = re.findall(r"assets_\d{8}_\d{6}\.db", listed.stdout)
    assert len(names) == 1, listed.stdout

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database at all" * 100)
    refused = cli(tmp_path, "backup", "restore", str(corrupt))
    assert refused.returncode == 1 and "restore refused" in refused.stderr
    ok = cli(tmp_path, "backup", "restore", str(tmp_path / "data" / "backups" / names[0]))
    assert ok.returncode == 0, ok.stderr
    assert "restored" in ok.stdout


def test_task_for_a_part_that_is_off_says_why(tmp_path: Path) -> None:
    out = cli(tmp_path, "task", "crypto")
    assert out.returncode == 1
    assert "collector-crypto" in out.stderr and "off" in out.stderr


def test_up_demo_fills_store_feishu_and_gateway(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "ASSETSYNC_METRICS__PORT": "0", "ASSETSYNC_SYNC_GATEWAY__PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assetsync", "up", "--demo", "--data-dir", str(tmp_path / "demo"),
         "--log-dir", str(tmp_path / "logs")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "demo data is in" in line:
                break
        text = "".join(lines)
        assert "demo crypto: success" in text and "demo fund: success" in text, text
        assert "demo okx: success" in text, text
        assert "demo snapshot: success" in text, text
        assert f"http://127.0.0.1:{port}/data-sync-manager" in text
        assert f"http://127.0.0.1:{port}/portfolio" in text
        assert "demo history: 90 daily snapshots" in text, text
        assert re.search(r"emulators: .* site demo-b http://127\.0\.0\.1:\d+", text), text
        feishu_url = re.search(r"feishu (http://\S+)", text)
        assert feishu_url is not None
        with sqlite3.connect(tmp_path / "demo" / "assets.db") as conn:
            # The demo's own holdings (origin ''): site demo-b's, pulled by the receiver, are kept apart.
            held = conn.execute("SELECT COUNT(*) FROM holdings WHERE origin = ''").fetchone()[0]
            assert held >= 8
            priced = conn.execute(
                "SELECT COUNT(*) FROM holdings WHERE origin = '' AND price IS NOT NULL"
            ).fetchone()[0]
            assert conn.execute("SELECT COUNT(*) FROM price_history").fetchone()[0] >= priced

        def feishu_filled() -> bool:
            rows = asyncio.run(_holdings_rows(feishu_url.group(1)))
            priced = [r for r in rows if r.fields.get("当前价格") is not None]
            # Every priced holding lands in 持仓 (dust may be left out), hand-kept funds get prices.
            codes = {r.fields.get("资产代码") for r in rows}
            # BTC on Binance and on OKX: one row each (README: 持仓 and two exchanges).
            return (
                len(priced) >= held - 2
                and {"BTC", "BTC@OKX"} <= codes
                and all(r.fields.get("当前市值") for r in rows if r.fields.get("资产类型") == "基金")
            )

        wait_for_sync(feishu_filled, timeout=30, interval=0.5, what="the emulated 持仓 table filled")
        status = httpx.get(f"http://127.0.0.1:{port}/api/data-sync/sender/catalog", timeout=10)
        assert status.status_code == 200
        sources = {e["code"]: e["source"] for e in status.json()["endpoints"]}
        # The original host's 9 codes come from its emulator through the demo's registry.
        assert all(sources.get(c) == "http" for c in codes_of("upstream")), sources
        assert sources.get("SYS002") == "native"

        def upstream_flowing() -> bool:
            stats = httpx.get(f"http://127.0.0.1:{port}/api/data-sync/sender/status", timeout=10).json()
            return all(stats["endpoint_stats"][c]["records"] >= 1 for c in codes_of("upstream"))

        wait_for_sync(upstream_flowing, timeout=30, interval=0.5, what="records of the 9 upstream codes")
        # /portfolio's charts are full: 90 days of snapshots and of hourly klines.
        api = f"http://127.0.0.1:{port}/api/portfolio"

        def history() -> bool:
            return len(httpx.get(f"{api}/networth?range=all", timeout=10).json()["points"]) >= 91

        wait_for_sync(history, timeout=30, interval=0.5, what="90 days of snapshots stored")
        btc = httpx.get(f"{api}/prices/BTC?range=3m", timeout=10).json()
        assert btc["interval"] == "1h" and btc["avg_cost"] is not None
        assert btc["points"][-1][0] - btc["points"][0][0] >= 88 * 86_400_000
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        if proc.stdout is not None:
            proc.stdout.close()


async def _holdings_rows(url: str) -> list[Record]:
    emu = FeishuEmulator()  # the demo's emulator uses these default credentials
    async with FeishuClient(url, emu.app_id, Secret(emu.app_secret), emu.app_token) as client:
        tables = {t.name: t.table_id for t in await client.list_tables()}
        return list(await client.search_records(tables["持仓"]))


def test_progress_bar_lines_without_a_terminal() -> None:
    import io

    from assetsync.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar("crypto_sync", stream=out, width=10)
    for done in range(1, 41):
        bar.update({"done": done, "total": 40, "what": "klines"})
    lines = out.getvalue().splitlines()
    assert 3 <= len(lines) <= 6, lines  # a few milestones, not 40 lines
    assert lines[-1] == "crypto_sync: klines [##########] 40/40 100%"

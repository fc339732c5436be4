"""Config reload: `assetsync reload` and SIGHUP re-read the config into a running `up`, keeping events."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from assetsync.reload import changed_keys, classify
from assetsync_emulators.common import serve_in_thread
from assetsync_emulators.xueqiu import XueqiuEmulator

from tests.support import wait_for_sync


def run_cli(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSETSYNC_METRICS__PORT": "0"}
    return subprocess.run(
        [sys.executable, "-m", "assetsync", *args, "--config", str(tmp / "config.json"),
         "--data-dir", str(tmp / "data"), "--log-dir", str(tmp / "logs")],
        capture_output=True, text=True, timeout=timeout, cwd=tmp, env=env,
    )  # fmt: skip


def write_config(tmp: Path, url: str, cookie: str, **extra: Any) -> None:
    conf: dict[str, Any] = {
        "asset_sync": {
            "xueqiu": {"cookies": cookie, "base_url": url, "fund_base_url": url, "timeout_seconds": 2},
            "assets": {"funds": {"manual": [{"code": "SH510300", "quantity": 100, "avg_cost": 3.5}]}},
            "alerts": {"enabled": False},
            "fx": {"source": "none"},
        },
        "sync_gateway": {"enabled": False},
        "metrics": {"port": 0},
        "market": {"enabled": False},  # no internet in tests (a keyless site polls public market data)
    }
    conf["asset_sync"].update(extra)
    (tmp / "config.json").write_text(json.dumps(conf))


@pytest.fixture
def xueqiu() -> Iterator[tuple[XueqiuEmulator, str]]:
    emu = XueqiuEmulator.with_defaults()
    with serve_in_thread(emu.app) as url:
        yield emu, url


def test_changed_keys_and_what_applies_live() -> None:
    from assetsync.config import load_settings

    a = load_settings(None, environ={}, overrides={"asset_sync": {"xueqiu": {"cookies": "xq_a_token=a"}}})
    b = load_settings(
        None,
        environ={},
        overrides={"asset_sync": {"xueqiu": {"cookies": "xq_a_token=b"}}, "nats": {"url": "nats://x:1"}},
    )
    keys = changed_keys(a.config, b.config)
    assert keys == ["asset_sync.xueqiu.cookies", "nats.url"]
    assert classify(keys, {"collector-fund"}) == (["asset_sync.xueqiu.cookies"], ["nats.url"])
    assert classify(keys, set()) == ([], ["asset_sync.xueqiu.cookies", "nats.url"])


def test_renewed_cookie_takes_effect_after_reload_and_bad_config_is_refused(
    tmp_path: Path, xueqiu: tuple[XueqiuEmulator, str]
) -> None:
    emu, url = xueqiu
    write_config(tmp_path, url, emu.cookie())
    env = {**os.environ, "ASSETSYNC_METRICS__PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "assetsync", "up", "--config", str(tmp_path / "config.json"),
         "--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "logs")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ready in"):
                break
        ok = run_cli(tmp_path, "task", "fund")
        assert ok.returncode == 0, ok.stdout + ok.stderr

        # The session expires; the user pastes a renewed cookie into config.json.
        emu.expire_cookie()
        renewed = emu.renew_cookie()
        write_config(tmp_path, url, renewed)
        stale = run_cli(tmp_path, "task", "fund")
        assert stale.returncode == 1 and "asset_sync.xueqiu.cookies" in stale.stdout, stale.stdout

        reloaded = run_cli(tmp_path, "reload")
        assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
        assert "reloaded" in reloaded.stdout and "applied: asset_sync.xueqiu.cookies" in reloaded.stdout
        assert renewed not in reloaded.stdout  # a secret is named, never shown
        fresh = run_cli(tmp_path, "task", "fund")
        assert fresh.returncode == 0, fresh.stdout + fresh.stderr

        # A broken config: `reload` refuses to send it, SIGHUP keeps the running one and logs why.
        (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text().replace('"fx"', '"fxx"'))
        refused = run_cli(tmp_path, "reload")
        assert refused.returncode == 2 and "asset_sync.fxx: unknown key" in refused.stderr
        assert "keeps its current config" in refused.stderr
        proc.send_signal(signal.SIGHUP)
        logs = tmp_path / "logs"

        def logged() -> str:
            text = "".join(p.read_text(errors="replace") for p in logs.glob("sync_*.log"))
            return text if "reload refused" in text else ""

        text = wait_for_sync(logged, timeout=20, what="the refused reload logged")
        assert "asset_sync.fxx: unknown key" in text and "the running config is kept" in text
        write_config(tmp_path, url, renewed)
        still = run_cli(tmp_path, "task", "fund")
        assert still.returncode == 0, still.stdout + still.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)  # reads what `up` still prints while it stops, then closes the pipe
        assert proc.returncode == 0
    # No event lost across the reloads: every run's result is in the store.
    with sqlite3.connect(tmp_path / "data" / "assets.db") as conn:
        runs = conn.execute("SELECT status FROM sync_logs WHERE task='fund' ORDER BY started_at").fetchall()
    assert [r[0] for r in runs] == ["success", "failed", "success", "success"]


async def test_stack_reload_applies_live_keys_and_names_the_rest(
    tmp_path: Path, nats_server: Any, prefix: str
) -> None:
    from assetsync.config import load_settings
    from assetsync.stack import Stack
    from assetsync_alerter.service import AlerterService

    conf: dict[str, Any] = {
        "asset_sync": {
            "alerts": {"feishu_webhook": "http://127.0.0.1:9/hook", "min_success_rate": 0.8},
            "fx": {"source": "none", "max_age_days": 7},
        },
        "sync_gateway": {"enabled": False, "port": 5000},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(conf))
    overrides = {"nats": {"url": nats_server.url, "prefix": prefix}, "metrics": {"port": 0}}
    settings = load_settings(path, data_dir=tmp_path / "data", environ={}, overrides=overrides)
    async with Stack(
        settings, ["store", "alerter"], scheduling=False, health_port=0, announce=False
    ) as stack:
        await stack.serve_reload()
        conf["asset_sync"]["alerts"]["min_success_rate"] = 0.5
        conf["asset_sync"]["fx"]["max_age_days"] = 3
        conf["sync_gateway"]["port"] = 5055
        path.write_text(json.dumps(conf))
        outcome = await stack.reload()
        assert outcome.ok, outcome.message
        assert outcome.applied == ["asset_sync.alerts.min_success_rate", "asset_sync.fx.max_age_days"]
        assert outcome.restart == ["sync_gateway.port"]
        assert stack.rt is not None and stack.rt.settings.config.asset_sync.fx.max_age_days == 3
        alerter = stack.service("alerter")
        assert isinstance(alerter, AlerterService) and alerter.alerter.conf.min_success_rate == 0.5

        # Invalid: the running config stays, and the answer names the key (also over NATS).
        path.write_text(
            json.dumps({**conf, "asset_sync": {**conf["asset_sync"], "fx": {"max_age_days": -1}}})
        )
        from assetsync.reload import reload_subject, request_reload

        (answer,) = await request_reload(stack.rt.nc, reload_subject(stack.rt.topo), wait=10)
        assert not answer.ok and "asset_sync.fx.max_age_days" in answer.message
        assert stack.rt.settings.config.asset_sync.fx.max_age_days == 3

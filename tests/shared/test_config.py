"""Configuration: the original layout as-is, TOML, env secrets, and errors that name the key."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from assetsync.config import ConfigError, load_settings, redacted

# The seed's 完整配置示例, verbatim.
SEED_CONFIG = {
    "asset_sync": {
        "binance": {
            "enabled": True,
            "api_key": "your_api_key",
            "api_secret": "your_api_secret",
            "testnet": False,
        },
        "xueqiu": {"enabled": True, "cookies": "xq_a_token=xxx;"},
        "assets": {
            "crypto": {"auto_discover": True, "ignore": ["USDT", "BNB", "*DOWN*", "*UP*"]},
            "funds": {"auto_discover": True, "ignore": []},
        },
        "scheduler": {
            "crypto_sync": {"enabled": True, "hour": "*", "minute": 0},
            "fund_sync": {"enabled": True, "hour": 9, "minute": 0},
            "snapshot": {"enabled": True, "hour": 0, "minute": 0},
        },
        "database": {
            "path": "data/assets.db",
            "backup": {"enabled": True, "path": "data/backups/", "keep_days": 30},
        },
        "alerts": {
            "enabled": True,
            "feishu_webhook": "https://open.feishu.cn/...",
            "alert_on_failure": True,
            "alert_on_partial_success": False,
            "min_success_rate": 0.8,
        },
    }
}

SEED_TOML = """
[asset_sync.binance]
enabled = true
api_key = "your_api_key"
api_secret = "your_api_secret"

[asset_sync.scheduler.crypto_sync_15min]
hour = "*"
minute = "*/15"

[asset_sync.database]
path = "db/x.db"
"""


def write(tmp: Path, name: str, content: str | Mapping[str, object]) -> Path:
    p = tmp / name
    p.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return p


def test_seed_config_accepted_as_is(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "config.json", SEED_CONFIG), environ={})
    assert s.binance_on() and s.xueqiu_on() and s.alerts_on()
    assert s.db_path == (tmp_path / "data" / "assets.db").resolve()
    assert s.backup_dir == (tmp_path / "data" / "backups").resolve()
    assert [(x.task, x.hour, x.minute) for x in s.schedule_for("crypto")] == [("crypto", "*", "0")]
    assert s.config.asset_sync.assets.crypto.ignore == ["USDT", "BNB", "*DOWN*", "*UP*"]


def test_toml_with_extra_schedule_entry(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "config.toml", SEED_TOML), environ={})
    crons = {x.key: x.minute for x in s.schedule_for("crypto")}
    assert crons == {"crypto_sync": "0", "crypto_sync_15min": "*/15"}
    assert s.db_path == (tmp_path / "db" / "x.db").resolve()


def test_env_overrides_secret_and_never_prints_it(tmp_path: Path) -> None:
    env = {"ASSETSYNC_ASSET_SYNC__BINANCE__API_SECRET": "12345", "ASSETSYNC_NATS__URL": "nats://x:4222"}
    s = load_settings(write(tmp_path, "config.json", SEED_CONFIG), environ=env)
    assert s.config.asset_sync.binance.api_secret.get() == "12345"
    assert s.config.nats.url == "nats://x:4222"
    text = repr(s) + json.dumps(redacted(s.config)) + f"{s.config.asset_sync.binance.api_secret}"
    assert "12345" not in text and "your_api_key" not in text and "xq_a_token" not in text


@pytest.mark.parametrize(
    ("content", "key", "problem"),
    [
        ('{"asset_sync": {', "", "malformed JSON"),
        ({"asset_sync": {"binanse": {}}}, "asset_sync.binanse", "unknown key"),
        (
            {"asset_sync": {"alerts": {"min_success_rate": "high"}}},
            "asset_sync.alerts.min_success_rate",
            "expected",
        ),
        ({"asset_sync": {"binance": {"enabled": True}}}, "asset_sync.binance.api_key", "required"),
        ({"asset_sync": {"xueqiu": {"enabled": True}}}, "asset_sync.xueqiu.cookies", "required"),
        (
            {"asset_sync": {"scheduler": {"fund_sync": {"hour": 25}}}},
            "asset_sync.scheduler.fund_sync.hour",
            "range",
        ),
        ({"asset_sync": {"scheduler": {"nightly": {}}}}, "asset_sync.scheduler.nightly", "unknown key"),
        (
            {"asset_sync": {"scheduler": {"timezone": "Mars/Base"}}},
            "asset_sync.scheduler.timezone",
            "unknown timezone",
        ),
        ({"sync_gateway": {"port": 99999}}, "sync_gateway.port", "TCP port"),
    ],
)
def test_bad_config_names_key(
    tmp_path: Path, content: str | dict[str, object], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "config.json", content), environ={})
    assert err.value.key == key
    assert problem in err.value.problem


def test_malformed_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_settings(write(tmp_path, "config.toml", "[asset_sync\nx=1"), environ={})


def test_cli_bad_config_one_line_exit_2_nothing_started(tmp_path: Path) -> None:
    cfg = write(tmp_path, "config.json", {"asset_sync": {"binance": {"enabled": True, "api_key": "k"}}})
    proc = subprocess.run(
        [sys.executable, "-m", "assetsync", "up", "--config", str(cfg), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "asset_sync.binance.api_secret" in lines[0]
    assert not (tmp_path / "d").exists(), "nothing may start on a bad config"

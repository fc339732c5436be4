"""deploy/config.example.json with deploy/.env.example passes `assetsync check-config`, as compose runs it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from assetsync.cli import main

from tests.deploy.manifests import DEPLOY, K8S, env_file


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("ASSETSYNC_"):
            monkeypatch.delenv(name)
    return monkeypatch


def compose_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """The environment docker-compose.yml gives a container: .env (from the example) plus its own."""
    for key, value in env_file(DEPLOY / ".env.example").items():
        monkeypatch.setenv(key, values.get(key, value))
    monkeypatch.setenv("ASSETSYNC_NATS__URL", "nats://nats:4222")
    monkeypatch.setenv("ASSETSYNC_METRICS__HOST", "0.0.0.0")
    monkeypatch.setenv("ASSETSYNC_METRICS__PORT", "9464")


def mounted(tmp_path: Path, source: Path) -> Path:
    """The config where the containers see it: config.json in the working directory."""
    (tmp_path / "app").mkdir()
    target = tmp_path / "app" / "config.json"
    shutil.copy(source, target)
    return target


GATEWAY_TOKENS = {
    "ASSETSYNC_SYNC_GATEWAY__ADMIN_TOKEN": "adm-0123456789",
    "ASSETSYNC_SYNC_GATEWAY__SENDER__AUTH_TOKEN": "snd-0123456789",
}


def test_the_example_env_as_shipped_is_refused_naming_the_token(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No usable empty-token setup: the gateway listens on all interfaces in its container.
    compose_env(clean_env)
    cfg = mounted(tmp_path, DEPLOY / "config.example.json")
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "sync_gateway.sender.auth_token" in capsys.readouterr().err
    compose = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    for key in GATEWAY_TOKENS:
        assert f"{key}: ${{{key}:?" in compose, key


def test_example_config_with_the_example_env_passes_check_config(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compose_env(clean_env, **GATEWAY_TOKENS)
    cfg = mounted(tmp_path, DEPLOY / "config.example.json")
    assert main(["check-config", "--config", str(cfg), "--data-dir", str(tmp_path / "app" / "data")]) == 0
    out = capsys.readouterr().out
    assert "config OK" in out
    # Without credentials each source is off rather than an error; the store and gateway run.
    assert "binance: off, xueqiu: off, feishu: off, alerts: off, sync-gateway: on, okx: off" in out
    assert f"database: {tmp_path / 'app' / 'data' / 'assets.db'}" in out
    assert "nats: nats://nats:4222" in out


def test_filled_in_env_turns_every_part_on(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    filled = {k: "secret-value" for k in env_file(DEPLOY / ".env.example")}
    filled["ASSETSYNC_ASSET_SYNC__ALERTS__FEISHU_WEBHOOK"] = "https://open.feishu.cn/open-apis/bot/v2/hook/x"
    compose_env(clean_env, **filled)
    clean_env.setenv("ASSETSYNC_MCP_SERVER__APP_ID", "cli_a1b2c3")
    clean_env.setenv("ASSETSYNC_ASSET_SYNC__FEISHU__APP_TOKEN", "bascnA1b2C3")
    cfg = mounted(tmp_path, DEPLOY / "config.example.json")
    assert main(["check-config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "binance: on, xueqiu: on, feishu: on, alerts: on, sync-gateway: on, okx: account" in out
    assert "secret-value" not in out


def test_kubernetes_config_passes_check_config(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = mounted(tmp_path, K8S / "config.json")
    # The Secret as shipped (empty values) is refused: its gateway tokens are required.
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "sync_gateway.sender.auth_token" in capsys.readouterr().err
    for key, value in GATEWAY_TOKENS.items():
        clean_env.setenv(key, value)
    assert main(["check-config", "--config", str(cfg)]) == 0
    assert "nats: nats://nats:4222" in capsys.readouterr().out


def test_a_typo_in_the_example_config_would_be_caught(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = mounted(tmp_path, DEPLOY / "config.example.json")
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('"keep_days"', '"keep_day"'), encoding="utf-8")
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "asset_sync.database.backup.keep_day: unknown key" in capsys.readouterr().err

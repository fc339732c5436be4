"""deploy/docker-compose.yml: valid against the compose-spec schema, with the topology the issue asks for."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from assetsync.config import SECRET_PATHS

from tests.deploy.manifests import DEPLOY, SERVICES, env_file, yaml_docs

# compose-spec/compose-spec schema/compose-spec.json, vendored (CI runs offline).
SCHEMA = Path(__file__).with_name("compose-spec.json")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = yaml_docs(DEPLOY / "docker-compose.yml")
    return doc


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_compose_file_matches_the_compose_spec(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_rejects_a_broken_compose_file(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["store"]["restart_policy"] = "always"  # not a service key
    assert not validator.is_valid(broken)


def test_nats_runs_jetstream_on_a_persistent_volume(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    assert nats["image"].startswith("${NATS_IMAGE:-nats:")
    cmd = nats["command"]
    assert "-js" in cmd and cmd[cmd.index("-sd") + 1] == "/data"
    assert any(v.split(":")[:2] == ["nats-data", "/data"] for v in nats["volumes"])
    assert "nats-data" in compose["volumes"]
    assert "healthz" in " ".join(nats["healthcheck"]["test"])


def test_every_service_runs_from_the_one_image_against_nats(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["service", name]
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert svc["image"] == services["store"]["image"]
        assert svc["restart"] == "unless-stopped"
        assert svc["depends_on"]["nats"]["condition"] == "service_healthy"
        env = svc["environment"]
        assert env["ASSETSYNC_NATS__URL"] == "nats://nats:4222"
        assert env["ASSETSYNC_METRICS__HOST"] == "0.0.0.0"
        assert env["ASSETSYNC_LOG_DIR"] == f"/var/lib/assetsync/logs/{name}"
        assert svc["env_file"] == ["${ASSETSYNC_ENV_FILE:-.env}"]
        assert svc["init"] is True, f"{name}: tini as PID 1 forwards SIGTERM and reaps children"
        assert svc["healthcheck"]["interval"] == "10s"
        targets = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in svc.get("volumes", [])}
        targets |= {t.split(":")[0] for t in svc.get("tmpfs", [])}
        assert "/var/lib/assetsync/data" in targets, f"{name}: data dir must be writable (read-only root)"
        assert "/var/lib/assetsync/logs" in targets
    assert (DEPLOY / "Dockerfile").is_file()


def test_store_and_gateway_keep_their_data_on_named_volumes(compose: dict[str, Any]) -> None:
    for name, volume in (("store", "store-data"), ("sync-gateway", "gateway-data")):
        mounts = {v["target"]: v["source"] for v in compose["services"][name]["volumes"]}
        assert mounts["/var/lib/assetsync/data"] == volume
        assert volume in compose["volumes"]
    assert "5000" in compose["services"]["sync-gateway"]["ports"][0]


def test_config_is_mounted_from_the_example_config(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        mounts = [
            v for v in compose["services"][name]["volumes"] if v["target"] == "/var/lib/assetsync/config.json"
        ]
        (m,) = mounts
        assert m["read_only"] is True
        assert m["source"].endswith(":-./config.example.json}")
        assert (DEPLOY / "config.example.json").is_file()


def test_env_example_names_every_secret() -> None:
    env = env_file(DEPLOY / ".env.example")
    for path in SECRET_PATHS - {"sync_gateway.sender.next_auth_token"}:
        assert "ASSETSYNC_" + path.upper().replace(".", "__") in env, path
    # Compose's own settings are not secrets: the project name keeps volumes named assetsync_*.
    assert env.pop("COMPOSE_PROJECT_NAME") == "assetsync"
    assert all(v == "" for v in env.values()), ".env.example must not carry values"


def test_prometheus_and_grafana_are_provisioned_from_files(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    mounted = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in prom["volumes"] if v.startswith("./")}
    assert mounted["/etc/prometheus/prometheus.yml"].is_file()
    assert mounted["/etc/prometheus/alerts.yml"].is_file()
    graf = compose["services"]["grafana"]
    gmounted = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in graf["volumes"] if v.startswith("./")}
    ds = gmounted["/etc/grafana/provisioning/datasources"]
    assert any("url: http://prometheus:9090" in p.read_text() for p in ds.glob("*.yml"))
    providers = yaml_docs(next(gmounted["/etc/grafana/provisioning/dashboards"].glob("*.yml")))[0]
    path = providers["providers"][0]["options"]["path"]
    assert (gmounted[path] / "assetsync.json").is_file()
    assert graf["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_every_image_is_overridable_with_the_official_one_by_default(compose: dict[str, Any]) -> None:
    images = {name: svc["image"] for name, svc in compose["services"].items()}
    assert images["nats"].startswith("${NATS_IMAGE:-nats:")
    assert images["prometheus"].startswith("${PROMETHEUS_IMAGE:-prom/prometheus:")
    assert images["grafana"].startswith("${GRAFANA_IMAGE:-grafana/grafana:")
    for name in SERVICES:
        assert images[name] == "${ASSETSYNC_IMAGE:-assetsync:latest}"


def test_docker_compose_v1_accepts_the_file(tmp_path: Path) -> None:
    """Debian's docker-compose 1.29 (no `name:`, no `env_file` objects) parses it, as `./run deploy-test` needs."""
    env_path = tmp_path / "assetsync.env"
    env_path.write_text("")
    env = {
        **os.environ,
        "ASSETSYNC_ENV_FILE": str(env_path),
        "GRAFANA_ADMIN_PASSWORD": "x",
        "NATS_IMAGE": "local/nats:test",
        # Required (`${…:?}`): compose refuses to start the gateway without its tokens.
        "ASSETSYNC_SYNC_GATEWAY__SENDER__AUTH_TOKEN": "s" * 43,
        "ASSETSYNC_SYNC_GATEWAY__ADMIN_TOKEN": "a" * 43,
    }
    proc = subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / "docker-compose.yml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "image: local/nats:test" in proc.stdout

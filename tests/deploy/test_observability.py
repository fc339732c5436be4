"""Prometheus config and alert rules (promtool), the Grafana dashboard, and the metric names they use."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, ROOT, SERVICES, yaml_docs

PROM = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "assetsync.json"
METRIC = re.compile(r"\bassetsync_[a-z0-9_]+")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool missing: install the Debian package `prometheus`"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def exported_names() -> set[str]:
    """Every metric name the code defines: string literals `assetsync_*` in shared/ and services/."""
    names: set[str] = set()
    for base in (ROOT / "shared" / "assetsync", ROOT / "services"):
        for f in base.rglob("*.py"):
            names.update(re.findall(r"[\"'](assetsync_[a-z0-9_]+)[\"']", f.read_text(encoding="utf-8")))
    return names


def is_exported(name: str, known: set[str]) -> bool:
    if name in known:
        return True
    # Histogram series, and counters whose family name prometheus_client suffixes with _total.
    return any(
        name.endswith(sfx) and name[: -len(sfx)] in known for sfx in ("_bucket", "_sum", "_count", "_total")
    )


def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(PROM / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_alert_rules_fire_on_failures_and_stay_quiet_when_healthy() -> None:
    done = promtool("test", "rules", "alerts_test.yml", cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(assetsync_x[5m]\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


def test_the_rules_cover_what_the_issue_asks_for() -> None:
    (doc,) = yaml_docs(PROM / "alerts.yml")
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    wanted = {
        "AssetsyncTaskFailing": 'assetsync_task_runs_total{status="failed"}',
        "AssetsyncPricesStale": 'assetsync_last_success_timestamp_seconds{task="crypto"}',
        "AssetsyncConsumerLagGrowing": "assetsync_consumer_lag",
        "AssetsyncBackupTooOld": "assetsync_backup_last_success_timestamp_seconds",
        "AssetsyncServiceDown": "up{",
        "AssetsyncServiceUnhealthy": "assetsync_service_up == 0",
    }
    for alert, needle in wanted.items():
        assert needle in rules[alert]["expr"], alert
        assert rules[alert]["labels"]["severity"] in ("warning", "critical")
        assert rules[alert]["annotations"]["summary"]


def test_prometheus_config_is_valid_and_scrapes_every_service() -> None:
    done = promtool("check", "config", "--syntax-only", str(PROM / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    (cfg,) = yaml_docs(PROM / "prometheus.yml")
    assert cfg["rule_files"] == ["alerts.yml"]
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "assetsync")
    (sd,) = job["dns_sd_configs"]
    assert set(sd["names"]) == set(SERVICES) and sd["port"] == 9464


def test_every_metric_in_rules_and_dashboard_is_exported_by_the_code(dashboard: dict[str, Any]) -> None:
    known = exported_names()
    used = set(METRIC.findall((PROM / "alerts.yml").read_text(encoding="utf-8")))
    used |= {m for e in exprs(dashboard) for m in METRIC.findall(e)}
    missing = sorted(m for m in used if not is_exported(m, known))
    assert not missing, f"not exported anywhere: {missing}"
    assert len(used) > 20


def test_dashboard_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs(dashboard))]
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(f))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_has_the_expected_panels(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "assetsync" and dashboard["title"]
    panels = {p["title"]: p for p in dashboard["panels"]}
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Portfolio", "Sync health", "Bus (NATS JetStream)", "Sync gateway"]
    wanted = {
        "Portfolio value": "assetsync_portfolio_value",
        "Per-asset values": "assetsync_holding_value",
        "Task runs by status": "assetsync_task_runs_total",
        "Time since last successful sync": "assetsync_last_success_timestamp_seconds",
        "Backup age": "assetsync_backup_last_success_timestamp_seconds",
        "Consumer lag": "assetsync_consumer_lag",
        "Gateway requests": "assetsync_gateway_sender_requests_total",
        "Gateway traffic": "assetsync_gateway_sender_bytes_sent_total",
    }
    for title, metric in wanted.items():
        assert title in panels, title
        assert any(metric in t["expr"] for t in panels[title]["targets"]), title
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
            assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    (ds,) = yaml_docs(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    (prov,) = yaml_docs(DEPLOY / "grafana" / "provisioning" / "dashboards" / "assetsync.yml")
    assert prov["providers"][0]["type"] == "file"
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    var = next(v for v in data["templating"]["list"] if v["name"] == "datasource")
    assert var["current"]["value"] == source["uid"]

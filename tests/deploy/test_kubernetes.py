"""deploy/k8s: every manifest valid against the Kubernetes schemas, and the topology the issue asks for."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
from assetsync.config import SECRET_PATHS, load_settings
from assetsync.service import SERVICE_MODULES
from assetsync.supervisor import SINGLE_INSTANCE

from tests.deploy.manifests import K8S, SERVICES, by_kind, kustomize_build, pod_specs

# The oldest Kubernetes still supported upstream when this was written, and the newest schemas shipped.
K8S_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def objs() -> list[dict[str, Any]]:
    return kustomize_build()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_matches_the_kubernetes_schema_strictly(
    objs: list[dict[str, Any]], version: str
) -> None:
    failures = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)


def test_a_broken_manifest_is_caught_by_the_validator(objs: list[dict[str, Any]]) -> None:
    bad = json.loads(json.dumps(by_kind(objs, "StatefulSet")["store"]))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_nats_is_a_three_node_jetstream_cluster_on_volumes(objs: list[dict[str, Any]]) -> None:
    sts = by_kind(objs, "StatefulSet")["nats"]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "nats-headless"
    headless = by_kind(objs, "Service")["nats-headless"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    claims = sts["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    mounts = {
        m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    conf = by_kind(objs, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert f"store_dir: {mounts['data']}" in conf
    for i in range(3):
        assert f"nats://nats-{i}.nats-headless:6222" in conf
    assert "jetstream {" in conf and "cluster {" in conf


def test_store_and_gateway_are_single_writer_statefulsets_with_volumes(objs: list[dict[str, Any]]) -> None:
    sets = by_kind(objs, "StatefulSet")
    for name in ("store", "sync-gateway"):
        sts = sets[name]
        assert sts["spec"]["replicas"] == 1, name
        claim = sts["spec"]["volumeClaimTemplates"][0]
        assert claim["metadata"]["name"] == "data"
        mounts = {
            m["name"]: m["mountPath"]
            for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        }
        assert mounts["data"] == "/var/lib/assetsync/data"
        assert sts["spec"]["serviceName"] in by_kind(objs, "Service")


def test_stateless_services_are_deployments_and_collectors_are_replicated(objs: list[dict[str, Any]]) -> None:
    deps = by_kind(objs, "Deployment")
    assert set(deps) == set(SERVICE_MODULES) - {"store", "sync-gateway"}  # those two are StatefulSets
    assert deps["collector-crypto"]["spec"]["replicas"] >= 2
    assert deps["collector-fund"]["spec"]["replicas"] >= 2
    # Single writers of a sink (and single-instance state holders) never overlap during a rollout.
    for name in set(SINGLE_INSTANCE) & set(deps):
        assert deps[name]["spec"]["replicas"] == 1
        assert deps[name]["spec"]["strategy"]["type"] == "Recreate"


def test_every_service_runs_its_command_with_probes_resources_and_scrape_annotations(
    objs: list[dict[str, Any]],
) -> None:
    workloads = {**by_kind(objs, "Deployment"), **by_kind(objs, "StatefulSet")}
    config_maps = by_kind(objs, "ConfigMap")
    for name in SERVICES:
        obj = workloads[name]
        pod = pod_specs(obj)[0]
        (c,) = pod["containers"]
        assert c["args"] == ["service", name]
        assert c["image"] == "assetsync:latest"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert str(ports["metrics"]) == env["ASSETSYNC_METRICS__PORT"]
        assert env["ASSETSYNC_METRICS__HOST"] == "0.0.0.0"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, (name, probe)
        res = c["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
        ann = obj["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        assert ann["prometheus.io/port"] == str(ports["metrics"]) and ann["prometheus.io/path"] == "/metrics"
        assert c["envFrom"] == [{"secretRef": {"name": "assetsync-secrets"}}]
        sec = c["securityContext"]
        assert sec["readOnlyRootFilesystem"] and not sec["allowPrivilegeEscalation"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        # Writable paths the image needs under a read-only root: data, logs, /tmp.
        mounted = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/var/lib/assetsync/data", "/var/lib/assetsync/logs", "/tmp"} <= mounted
        config_vol = next(v for v in pod["volumes"] if v["name"] == "config")
        assert config_vol["configMap"]["name"] in config_maps, (
            "config volume must name the generated ConfigMap"
        )


def test_every_workload_has_a_disruption_budget_selecting_its_pods(objs: list[dict[str, Any]]) -> None:
    pdbs = by_kind(objs, "PodDisruptionBudget")
    workloads = {**by_kind(objs, "Deployment"), **by_kind(objs, "StatefulSet")}
    assert set(pdbs) == set(workloads)
    for name, pdb in pdbs.items():
        labels = workloads[name]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    assert pdbs["nats"]["spec"]["minAvailable"] == 2  # JetStream quorum of 3


def test_services_select_pods_that_expose_the_named_ports(objs: list[dict[str, Any]]) -> None:
    workloads = {**by_kind(objs, "Deployment"), **by_kind(objs, "StatefulSet")}
    for name, svc in by_kind(objs, "Service").items():
        sel = svc["spec"]["selector"]
        targets = [
            w
            for w in workloads.values()
            if sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} workloads"
        ports = {p["name"] for c in pod_specs(targets[0])[0]["containers"] for p in c["ports"]}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, f"Service {name} targets missing port {p['targetPort']}"


def test_the_configmap_config_is_valid_and_replicates_streams_three_times(objs: list[dict[str, Any]]) -> None:
    (cm,) = [
        o
        for o in by_kind(objs, "ConfigMap").values()
        if o["metadata"]["name"].startswith("assetsync-config-")
    ]
    # The Secret must carry the gateway's sender token (the pod binds all interfaces): given here.
    s = load_settings(K8S / "config.json", environ={"ASSETSYNC_SYNC_GATEWAY__SENDER__AUTH_TOKEN": "t" * 43})
    assert s.config.nats.stream_replicas == 3
    assert s.config.nats.url.startswith("nats://nats:")
    assert json.loads(cm["data"]["config.json"]) == json.loads((K8S / "config.json").read_text())


def test_the_secret_names_every_secret_and_holds_no_value(objs: list[dict[str, Any]]) -> None:
    secret = by_kind(objs, "Secret")["assetsync-secrets"]
    wanted = {"ASSETSYNC_" + p.upper().replace(".", "__") for p in SECRET_PATHS} - {
        "ASSETSYNC_SYNC_GATEWAY__SENDER__NEXT_AUTH_TOKEN"  # only while rotating tokens
    }
    assert wanted <= set(secret["stringData"])
    assert all(v == "" for v in secret["stringData"].values())
    # The env names really reach the config: each one sets its key.
    env = {k: "x" for k in secret["stringData"]}
    s = load_settings(K8S / "config.json", environ=env)
    assert s.config.asset_sync.binance.api_secret.get() == "x"
    assert s.config.sync_gateway.receiver.auth_token.get() == "x"

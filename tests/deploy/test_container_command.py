"""The compose/Kubernetes invocation for real, without Docker: `assetsync service NAME` in a working
directory holding config.example.json, with the containers' environment, probed by the image's
own HEALTHCHECK command."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from assetsync.embedded import EmbeddedNats, free_port

from tests.deploy.manifests import DEPLOY, env_file
from tests.deploy.test_dockerfile import instructions
from tests.support import OFFLINE_ENV, wait_for

ASSETSYNC = Path(sys.executable).parent / "assetsync"


def healthcheck_argv() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, run with this environment's python."""
    (hc,) = [a for i, a in instructions() if i == "HEALTHCHECK"]
    argv: list[str] = json.loads(hc[hc.index("CMD") + 3 :].strip())
    return [sys.executable, *argv[1:]]


class Container:
    """One `assetsync service NAME` process as a container would run it."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.port = int(env["ASSETSYNC_METRICS__PORT"])
        self.log = workdir / f"{name}.out"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(ASSETSYNC), "service", name],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def healthcheck(self) -> int:
        return subprocess.run(healthcheck_argv(), env=self.env, capture_output=True, timeout=10).returncode

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """/var/lib/assetsync: config.json mounted in, data/ and logs/ beside it."""
    shutil.copy(DEPLOY / "config.example.json", tmp_path / "config.json")
    return tmp_path


@pytest.fixture
def containers(workdir: Path, nats_server: EmbeddedNats, prefix: str) -> Iterator[list[Container]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASSETSYNC_")}
    base.update(env_file(DEPLOY / ".env.example"))
    base.update(
        {
            **OFFLINE_ENV,
            "HOME": str(workdir / "no-home"),  # nothing may rely on a writable home directory
            "ASSETSYNC_NATS__URL": nats_server.url,
            "ASSETSYNC_NATS__PREFIX": prefix,
            "ASSETSYNC_METRICS__HOST": "127.0.0.1",
            "ASSETSYNC_SYNC_GATEWAY__HOST": "127.0.0.1",
            "ASSETSYNC_SYNC_GATEWAY__PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
    )
    running: list[Container] = []
    for name in ("store", "sync-gateway", "collector-crypto"):
        env = dict(
            base, ASSETSYNC_METRICS__PORT=str(free_port()), ASSETSYNC_LOG_DIR=str(workdir / "logs" / name)
        )
        running.append(Container(name, workdir, env))
    try:
        yield running
    finally:
        for c in running:
            c.stop()


async def test_services_start_from_the_example_config_and_pass_the_image_healthcheck(
    containers: list[Container], workdir: Path
) -> None:
    async def healthy(c: Container) -> bool:
        assert c.proc.poll() is None, f"{c.name} exited:\n{c.log.read_text()}"
        return await asyncio.to_thread(c.healthcheck) == 0

    for c in containers:
        await wait_for(partial(healthy, c), timeout=60, interval=0.2, what=f"{c.name} healthy")
    async with httpx.AsyncClient() as client:
        store = containers[0]
        body = (await client.get(f"http://127.0.0.1:{store.port}/metrics")).text
        assert 'assetsync_service_up{service="store"} 1.0' in body
        assert "assetsync_consumer_lag" in body
        # Without Binance keys collector-crypto runs the public market data only; here it cannot reach
        # Binance (no internet), yet its container is healthy (no restart loop) and says why.
        crypto = containers[2]
        health = (await client.get(f"http://127.0.0.1:{crypto.port}/healthz")).json()
        assert health["ok"] is True
        assert "market ticks" in health["services"]["collector-crypto"]["detail"]
        gw = containers[1]
        gw_port = gw.env["ASSETSYNC_SYNC_GATEWAY__PORT"]
        assert (await client.get(f"http://127.0.0.1:{gw_port}/healthz")).status_code == 200
    # The original layout under the working directory: data/assets.db, logs/<service>/sync_*.log.
    assert (workdir / "data" / "assets.db").is_file()
    assert list((workdir / "logs" / "sync-gateway").glob("sync_*.log"))
    assert {p.name for p in (workdir / "logs").iterdir()} <= {"store", "sync-gateway", "collector-crypto"}
    assert not (workdir / "no-home").exists()
    # SIGTERM (docker stop) drains and exits 0.
    for c in containers:
        assert c.stop() == 0, f"{c.name}:\n{c.log.read_text()}"
    assert containers[0].healthcheck() != 0  # and the healthcheck notices a dead service

"""`./run deploy-test`: build the images here, run deploy/docker-compose.yml for real, check it, tear down."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.deploystack import checks
from tests.deploystack.engine import DeployTestError, Dockerd, ensure_packages, exclusive, run
from tests.deploystack.images import build_all
from tests.deploystack.stack import SERVICES, Stack

TIMES: list[tuple[str, float]] = []


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    print(f"== {name}", flush=True)
    t0 = time.monotonic()
    try:
        yield
    finally:
        took = time.monotonic() - t0
        TIMES.append((name, took))
        print(f"== {name}: {took:.1f} s", flush=True)


def cache_dir() -> Path:
    root = os.environ.get("ASSETSYNC_DEPLOY_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "assetsync", "deploy-test"
    )
    return Path(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run deploy-test", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the stack and dockerd running (debugging)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "deploy-test: needs root (it installs Debian packages and starts its own dockerd)",
            file=sys.stderr,
        )
        return 2
    cache = cache_dir()
    started = time.monotonic()
    ok = False
    # One at a time per machine, whatever the cache: the run dir and the docker0 bridge are shared.
    with exclusive(Path("/run/assetsync-deploy-test.lock")):
        tmp = tempfile.mkdtemp(prefix="assetsync-deploy-test-")
        engine = Dockerd(cache / "docker", Path("/run/assetsync-deploy-test"))
        stack: Stack | None = None
        try:
            with stage("install packages"):
                ensure_packages()
            with stage("start dockerd"):
                engine.start()
            with stage("build images"):
                images = build_all(engine, cache)
                print(f"  {images}", flush=True)
            stack = Stack(engine, images, Path(tmp))
            with stage("compose up (every healthcheck)"):
                stack.compose("up", "-d", *SERVICES)
                stack.check_loopback_only()
                stack.wait_healthy()
            with stage("crypto + fund sync, store killed mid-stream"):
                checks.run_tasks_killing_store(stack)
            with stage("SQLite rows, nothing lost"):
                checks.check_sqlite(stack)
                checks.check_nothing_lost(stack)
            with stage("Feishu 持仓 rows"):
                checks.check_feishu(stack)
            with stage("Prometheus targets up"):
                checks.check_prometheus(stack)
            with stage("gateway with a token"):
                checks.check_gateway(stack)
            with stage("scale collector-crypto=2, slot runs once"):
                checks.check_scaled_slot_runs_once(stack, "Asia/Shanghai")
            ok = True
        except (DeployTestError, OSError) as exc:
            print(f"deploy-test: FAILED: {exc}", file=sys.stderr, flush=True)
            if stack is not None:
                with contextlib.suppress(Exception):
                    checks.dump_state(stack)
        finally:
            if not args.keep:
                with stage("tear down"):
                    if stack is not None:
                        stack.down()
                        leftovers = _leftovers(engine)
                        if leftovers:
                            print(f"deploy-test: left behind: {leftovers}", file=sys.stderr)
                            ok = False
                    engine.stop()
                    shutil.rmtree(tmp, ignore_errors=True)
            else:
                print(f"deploy-test: kept running; DOCKER_HOST={engine.env['DOCKER_HOST']}, files in {tmp}")
    for name, took in TIMES:
        print(f"  {took:7.1f} s  {name}")
    print(f"deploy-test: {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s", flush=True)
    return 0 if ok else 1


def _leftovers(engine: Dockerd) -> str:
    """Containers, volumes and networks of the test still present after `down`."""
    label = "label=com.docker.compose.project=assetsync-deploy-test"
    out = []
    for kind, cmd in (
        ("containers", ["ps", "-aq", "--filter", label]),
        ("volumes", ["volume", "ls", "-q", "--filter", label]),
        ("networks", ["network", "ls", "-q", "--filter", label]),
    ):
        ids = run(["docker", *cmd], env=engine.env, check=False).stdout.split()
        if ids:
            out.append(f"{len(ids)} {kind}")
    return ", ".join(out)


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures: a real nats-server from the wheel, unique names per test, settings in a temp dir."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from assetsync.config import Settings, deep_merge, load_settings
from assetsync.embedded import EmbeddedNats
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.subjects import Topology

_counter = itertools.count()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real JetStream server for the session (or the external one in ASSETSYNC_TEST_NATS_URL)."""
    external = os.environ.get("ASSETSYNC_TEST_NATS_URL")
    if external:
        srv = EmbeddedNats(tmp_path_factory.mktemp("unused"))
        host_port = external.split("://", 1)[-1]
        srv.host, _, port = host_port.rpartition(":")
        srv.port = int(port)
        yield srv
        return
    srv = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def prefix() -> str:
    """A namespace unique to this test: its own streams and subjects."""
    return f"t{os.getpid()}x{next(_counter)}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def topo(prefix: str) -> Topology:
    return Topology(prefix)


@pytest.fixture
def make_settings(tmp_path: Path, prefix: str) -> Any:
    """Build Settings in a temp data dir, with this test's NATS prefix; pass overrides as nested dicts."""

    def make(overrides: dict[str, Any] | None = None, **kw: Any) -> Settings:
        # No internet in tests: the FX source is off unless a test points it at the ECB emulator.
        base: dict[str, Any] = {
            "nats": {"prefix": prefix},
            "metrics": {"port": 0},
            "asset_sync": {"fx": {"source": "none"}},
        }
        if overrides:
            deep_merge(base, overrides)
        return load_settings(
            None,
            data_dir=kw.pop("data_dir", tmp_path / "data"),
            log_dir=tmp_path / "logs",
            environ={},
            overrides=base,
            **kw,
        )

    return make


@pytest.fixture
async def runtime(nats_server: EmbeddedNats, make_settings: Any) -> AsyncIterator[Runtime]:
    """A connected Runtime with this test's streams declared."""
    settings = make_settings()
    async with open_runtime(settings, nats_server.url, name="test", metrics=Metrics()) as rt:
        yield rt

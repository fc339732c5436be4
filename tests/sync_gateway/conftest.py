"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from assetsync.embedded import EmbeddedNats


@pytest.fixture
async def stack(nats_server: EmbeddedNats) -> AsyncIterator[AsyncExitStack]:
    """An exit stack closed before the test's nats-server stops (runtimes and services enter it)."""
    async with AsyncExitStack() as s:
        yield s

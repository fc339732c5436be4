"""Fixtures for collector-fund tests: a Xueqiu/Danjuan emulator on loopback, on a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from assetsync.config import XueqiuConf
from assetsync.secrets import Secret
from assetsync_emulators.common import serve_in_thread
from assetsync_emulators.xueqiu import SHANGHAI, XueqiuEmulator

FRIDAY_MORNING = datetime(2026, 11, 20, 10, 30, tzinfo=SHANGHAI)


@pytest.fixture
def emu() -> XueqiuEmulator:
    """The emulator on Friday morning (set `emu.clock` to move it; tests share it as their clock)."""
    return XueqiuEmulator.with_defaults(clock=lambda: FRIDAY_MORNING)


@pytest.fixture
def xq_url(emu: XueqiuEmulator) -> Iterator[str]:
    with serve_in_thread(emu.app) as url:
        yield url


@pytest.fixture
def xq_conf(emu: XueqiuEmulator, xq_url: str) -> XueqiuConf:
    """Settings pointing pysnowball at the emulator, with test-speed timeouts."""
    return XueqiuConf(
        cookies=Secret(emu.cookie()), base_url=xq_url, fund_base_url=xq_url, timeout_seconds=0.5
    )

"""Shared test support: wait on conditions instead of sleeping (area-specific support lives in each `support.py`)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

# For a whole stack started with a default config (no emulator URLs): every outside service such a
# config reaches without keys — Binance's public market data, fear & greed, OKX, the ECB — pointed at
# a closed loopback port, so no test ever reaches the internet (they fail fast and say so instead).
CLOSED = "http://127.0.0.1:9"
OFFLINE_ENV: dict[str, str] = {
    "ASSETSYNC_ASSET_SYNC__BINANCE__BASE_URL": CLOSED,
    "ASSETSYNC_ASSET_SYNC__OKX__BASE_URL": CLOSED,
    "ASSETSYNC_ASSET_SYNC__FX__BASE_URL": CLOSED,
    "ASSETSYNC_MARKET__FEAR_GREED__BASE_URL": CLOSED,
}


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T], timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        got = predicate()
        if inspect.isawaitable(got):
            got = await got
        last = got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate!r}; last={last!r}"
            )
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Blocking variant of `wait_for` for threads and subprocess checks."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate!r}; last={got!r}"
            )
        time.sleep(interval)

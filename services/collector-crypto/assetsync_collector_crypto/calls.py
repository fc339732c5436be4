"""Calling Binance through ccxt: retries with jittered backoff, Retry-After, and clear failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from assetsync.exchange_calls import RetryPolicy

from assetsync_collector_crypto.ccxt_lite import ccxt
from assetsync_collector_crypto.exchange import AssetsyncBinance, InvalidResponse, RateLimited, redact

T = TypeVar("T")
__all__ = ["AuthFailed", "CallFailed", "RetryPolicy", "call"]


class CallFailed(Exception):
    """One Binance call failed for good (after retries); the message names the endpoint and why."""


class AuthFailed(CallFailed):
    """Binance refused the credentials: retrying cannot help, the whole task fails at once."""


def _binance_msg(exc: Exception) -> str:
    """`binance {"code":-2015,"msg":"..."}` -> `-2015 ...`; other texts without query strings."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict) and "msg" in body:
            return f"code {body.get('code')}: {body['msg']}"
    return redact(text)


async def call(
    exchange: AssetsyncBinance,
    endpoint: str,
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Run one ccxt call, retrying NetworkErrors and rate limits; raise CallFailed / AuthFailed."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except ccxt.AuthenticationError as exc:
            raise AuthFailed(
                f"Binance rejected the API credentials on {endpoint} ({_binance_msg(exc)}) — check "
                "asset_sync.binance.api_key / api_secret and the key's permissions and IP whitelist"
            ) from exc
        except InvalidResponse as exc:
            raise CallFailed(str(exc)) from exc
        except RateLimited as exc:
            if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
                raise CallFailed(f"{exc} — more than {policy.max_retry_after:g}s, not waiting") from exc
            if attempt >= policy.attempts:
                raise CallFailed(f"{exc} (gave up after {attempt} attempts)") from exc
            await sleep(max(exc.retry_after or 0.0, policy.backoff(attempt)))
        except ccxt.InvalidNonce as exc:
            # Our clock is off Binance's: measure the difference once and sign with it from now on.
            if attempt >= policy.attempts:
                raise CallFailed(f"Binance {endpoint}: {_binance_msg(exc)} (check the system clock)") from exc
            await exchange.load_time_difference()
            exchange.options["adjustForTimeDifference"] = True
        except ccxt.NetworkError as exc:
            if attempt >= policy.attempts:
                kind = "timed out" if isinstance(exc, ccxt.RequestTimeout) else "is unavailable"
                raise CallFailed(
                    f"Binance {endpoint} {kind}: {type(exc).__name__} {_binance_msg(exc)} "
                    f"(gave up after {attempt} attempts)"
                ) from exc
            await sleep(policy.backoff(attempt))
        except ccxt.BaseError as exc:
            raise CallFailed(f"Binance {endpoint}: {type(exc).__name__} {_binance_msg(exc)}") from exc

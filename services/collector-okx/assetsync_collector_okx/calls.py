"""Calling OKX through ccxt: retries with jittered backoff, Retry-After, and failures naming the key to fix."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from assetsync.exchange_calls import RetryPolicy

from assetsync_collector_okx.exchange import AssetsyncOkx, InvalidResponse, RateLimited, ccxt, redact

T = TypeVar("T")
__all__ = ["AuthFailed", "CallFailed", "RetryPolicy", "call", "describe"]

# OKX's authentication codes -> the config key a user fixes.
AUTH_FIX: dict[str, str] = {
    "50105": "asset_sync.okx.password (the API key's passphrase)",
    "50104": "asset_sync.okx.password (the API key's passphrase)",
    "50111": "asset_sync.okx.api_key",
    "50103": "asset_sync.okx.api_key",
    "50113": "asset_sync.okx.api_secret",
    "50106": "asset_sync.okx.api_secret",
    "50114": "asset_sync.okx.api_key (its permissions and IP whitelist)",
    "50110": "the IP whitelist of asset_sync.okx.api_key",
}


class CallFailed(Exception):
    """One OKX call failed for good (after retries); the message names the endpoint and why."""


class AuthFailed(CallFailed):
    """OKX refused the credentials: retrying cannot help, the whole run fails at once."""


def okx_code(exc: Exception) -> tuple[str, str]:
    """`okx {"code":"50105","msg":"..."}` -> ("50105", "..."); ("", redacted text) otherwise."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict) and "code" in body:
            return str(body.get("code")), str(body.get("msg") or "")
    return "", redact(text)


def describe(exc: Exception) -> str:
    code, msg = okx_code(exc)
    return f"code {code}: {msg}" if code else msg


async def call(
    exchange: AssetsyncOkx,
    endpoint: str,
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Run one ccxt call, retrying network errors and rate limits; raise CallFailed / AuthFailed."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except ccxt.AuthenticationError as exc:
            code, _ = okx_code(exc)
            fix = AUTH_FIX.get(code, "asset_sync.okx.api_key / api_secret / password")
            raise AuthFailed(
                f"OKX rejected the API credentials on {endpoint} ({describe(exc)}) — check {fix}"
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
            # 50102: our clock is more than 30 s off OKX's; measure the difference and sign with it.
            if attempt >= policy.attempts:
                raise CallFailed(f"OKX {endpoint}: {describe(exc)} (check the system clock)") from exc
            await exchange.load_time_difference()
        except (ccxt.NetworkError, ccxt.RateLimitExceeded) as exc:
            if attempt >= policy.attempts:
                kind = "timed out" if isinstance(exc, ccxt.RequestTimeout) else "is unavailable"
                raise CallFailed(
                    f"OKX {endpoint} {kind}: {type(exc).__name__} {describe(exc)} (gave up after {attempt} attempts)"
                ) from exc
            await sleep(policy.backoff(attempt))
        except ccxt.BaseError as exc:
            raise CallFailed(f"OKX {endpoint}: {type(exc).__name__} {describe(exc)}") from exc

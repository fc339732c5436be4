"""What the ccxt collectors (Binance, OKX) share about calling an exchange, without importing ccxt.

Endpoint names and redaction for messages, the Retry-After header, the retry policy, and the one
retrying `call` both clients go through (each passes its `Venue`: the ccxt package it loaded, its
own error classes and how its errors read).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from assetsync.retry import Backoff

T = TypeVar("T")

_QUERY = re.compile(r"\?\S*")


def endpoint_of(url: str) -> str:
    """`https://host/api/v3/myTrades?...&signature=...` -> `/api/v3/myTrades` (no query: it may be signed)."""
    path = _QUERY.sub("", url)
    m = re.match(r"^[a-z]+://[^/]+(/.*)?$", path)
    return (m.group(1) or "/") if m else path


def redact(message: str) -> str:
    """An exception text without query strings (timestamps, signatures) for logs and task results."""
    return _QUERY.sub("", message)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A response header by case-insensitive name."""
    for k, v in (headers or {}).items():
        if k.lower() == name.lower():
            return v
    return None


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The Retry-After header in seconds; None when absent or not a number."""
    value = header(headers, "Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0  # a longer Retry-After (an IP ban) fails the call instead of waiting

    def backoff(self, attempt: int) -> float:
        """Equal-jitter exponential backoff for retry number `attempt` (1-based)."""
        return Backoff(self.base_delay, self.max_delay, self.attempts).delay(attempt)


class CallFailed(Exception):
    """One exchange call failed for good (after retries); the message names the endpoint and why."""


class AuthFailed(CallFailed):
    """The exchange refused the credentials: retrying cannot help, the whole run fails at once."""


@dataclass(frozen=True)
class Venue:
    """What differs between exchanges when `call` runs one of their ccxt calls."""

    name: str  # as users read it: Binance, OKX
    ccxt: Any  # the ccxt package the client was loaded from (ccxt_lite): its error classes
    rate_limited: type[Exception]  # the client's HTTP 429 error, with `retry_after` (seconds or None)
    invalid_response: type[Exception]  # the client's error for a 2xx answer that is not JSON
    describe: Callable[[Exception], str]  # an exchange error as a user reads it (no signed queries)
    auth_fix: Callable[[Exception], str]  # the config key(s) to check when credentials are refused


async def call(
    exchange: Any,
    endpoint: str,
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    venue: Venue,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_call: Callable[[str], None] | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> T:
    """Run one ccxt call, retrying network errors and rate limits; raise CallFailed / AuthFailed.

    `on_call(endpoint)` counts the call; `on_error(endpoint, kind)` a failure, its kind being the
    underlying ccxt error (AuthenticationError, RequestTimeout, ...).
    """
    if on_call is not None:
        on_call(endpoint)
    try:
        return await _retrying(exchange, endpoint, fn, policy, venue, sleep)
    except CallFailed as exc:
        if on_error is not None:
            on_error(endpoint, type(exc.__cause__ or exc).__name__)
        raise


async def _retrying(
    exchange: Any,
    endpoint: str,
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    venue: Venue,
    sleep: Callable[[float], Awaitable[Any]],
) -> T:
    errors, name, describe = venue.ccxt, venue.name, venue.describe
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except errors.AuthenticationError as exc:
            raise AuthFailed(
                f"{name} rejected the API credentials on {endpoint} ({describe(exc)}) — check {venue.auth_fix(exc)}"
            ) from exc
        except venue.invalid_response as exc:
            raise CallFailed(str(exc)) from exc
        except venue.rate_limited as exc:
            wait: float | None = getattr(exc, "retry_after", None)
            if wait is not None and wait > policy.max_retry_after:
                raise CallFailed(f"{exc} — more than {policy.max_retry_after:g}s, not waiting") from exc
            if attempt >= policy.attempts:
                raise CallFailed(f"{exc} (gave up after {attempt} attempts)") from exc
            await sleep(max(wait or 0.0, policy.backoff(attempt)))
        except errors.InvalidNonce as exc:
            # Our clock is off the exchange's: measure the difference and sign with it from now on.
            if attempt >= policy.attempts:
                raise CallFailed(f"{name} {endpoint}: {describe(exc)} (check the system clock)") from exc
            await exchange.load_time_difference()
            exchange.options["adjustForTimeDifference"] = True
        except errors.NetworkError as exc:  # ccxt's own rate-limit errors are NetworkErrors too
            if attempt >= policy.attempts:
                kind = "timed out" if isinstance(exc, errors.RequestTimeout) else "is unavailable"
                raise CallFailed(
                    f"{name} {endpoint} {kind}: {type(exc).__name__} {describe(exc)} "
                    f"(gave up after {attempt} attempts)"
                ) from exc
            await sleep(policy.backoff(attempt))
        except errors.BaseError as exc:
            raise CallFailed(f"{name} {endpoint}: {type(exc).__name__} {describe(exc)}") from exc

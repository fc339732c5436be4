"""What the ccxt collectors (Binance, OKX) share about calling an exchange, without importing ccxt.

Endpoint names and redaction for messages, the Retry-After header, and the retry policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from assetsync.retry import Backoff

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

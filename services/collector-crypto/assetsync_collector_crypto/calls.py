"""How Binance's errors read, and the venue the shared retrying `call` needs for Binance."""

from __future__ import annotations

import json

from assetsync.exchange_calls import AuthFailed, CallFailed, RetryPolicy, Venue, call

from assetsync_collector_crypto.ccxt_lite import ccxt
from assetsync_collector_crypto.exchange import InvalidResponse, RateLimited, redact

__all__ = ["BINANCE", "AuthFailed", "CallFailed", "RetryPolicy", "call"]


def binance_msg(exc: Exception) -> str:
    """`binance {"code":-2015,"msg":"..."}` -> `code -2015: ...`; other texts without query strings."""
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


BINANCE = Venue(
    name="Binance",
    ccxt=ccxt,
    rate_limited=RateLimited,
    invalid_response=InvalidResponse,
    describe=binance_msg,
    auth_fix=lambda exc: "asset_sync.binance.api_key / api_secret and the key's permissions and IP whitelist",
)

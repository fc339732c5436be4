"""How OKX's errors read, the key each authentication code names, and the venue for the shared `call`."""

from __future__ import annotations

import json

from assetsync.exchange_calls import AuthFailed, CallFailed, RetryPolicy, Venue, call

from assetsync_collector_okx.exchange import InvalidResponse, RateLimited, ccxt, redact

__all__ = ["OKX", "AuthFailed", "CallFailed", "RetryPolicy", "call", "describe"]

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


def auth_fix(exc: Exception) -> str:
    return AUTH_FIX.get(okx_code(exc)[0], "asset_sync.okx.api_key / api_secret / password")


OKX = Venue(
    name="OKX",
    ccxt=ccxt,
    rate_limited=RateLimited,
    invalid_response=InvalidResponse,
    describe=describe,
    auth_fix=auth_fix,
)

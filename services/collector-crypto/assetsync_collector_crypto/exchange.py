"""The ccxt Binance client: spot-only options, base-URL rewrite, and errors a user can act on.

`make_exchange(settings)` is the one place a ccxt exchange is built. Every REST URL that would go to
`https://api.binance.com` goes to `asset_sync.binance.base_url` instead (ccxt keeps one URL per API
group in `urls['api']`: public, private, sapi, v1 ...). The subclass only adds error classification
(Retry-After on 429/418, non-JSON bodies named by endpoint); requests and signing are ccxt's own.
"""

from __future__ import annotations

from typing import Any

from assetsync.config import Settings
from assetsync.exchange_calls import endpoint_of, redact, retry_after

from assetsync_collector_crypto.ccxt_lite import AsyncBinance, ccxt

BINANCE_REST = "https://api.binance.com"
__all__ = ["AssetsyncBinance", "InvalidResponse", "RateLimited", "endpoint_of", "make_exchange", "redact"]


class RateLimited(ccxt.DDoSProtection):  # type: ignore[misc]
    """HTTP 429/418 from Binance, with the server's Retry-After (seconds) when it sent one."""

    def __init__(self, message: str, status: int, retry_after: float | None, endpoint: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.endpoint = endpoint


class InvalidResponse(ccxt.BadResponse):  # type: ignore[misc]
    """A 2xx answer whose body is not JSON (an HTML error page, a truncated document)."""

    def __init__(self, message: str, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class AssetsyncBinance(AsyncBinance):  # type: ignore[misc]
    """ccxt's async Binance with error classification for rate limits and non-JSON answers."""

    def handle_errors(
        self,
        code: int,
        reason: str,
        url: str,
        method: str,
        headers: dict[str, str],
        body: str,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        endpoint = endpoint_of(url)
        if code in (418, 429):
            wait_s = retry_after(headers)
            what = "banned this IP (HTTP 418)" if code == 418 else "rate-limited this client (HTTP 429)"
            wait = f"; Retry-After {wait_s:g}s" if wait_s is not None else ""
            raise RateLimited(f"Binance {what} on {method} {endpoint}{wait}", code, wait_s, endpoint)
        if 200 <= code < 300 and response is None:
            text = (body or "").strip()
            kind = "an HTML page" if text[:1] == "<" else "an empty body" if not text else "malformed JSON"
            raise InvalidResponse(
                f"Binance {method} {endpoint} answered HTTP {code} with {kind} instead of JSON: {text[:80]!r}",
                endpoint,
            )
        return super().handle_errors(
            code, reason, url, method, headers, body, response, request_headers, request_body
        )


def rewrite_urls(api_urls: dict[str, Any], base_url: str) -> dict[str, Any]:
    """ccxt's `urls['api']` with every `https://api.binance.com` prefix replaced by `base_url`."""
    base = base_url.rstrip("/")
    out: dict[str, Any] = {}
    for key, value in api_urls.items():
        if isinstance(value, str) and value.startswith(BINANCE_REST):
            out[key] = base + value[len(BINANCE_REST) :]
        elif isinstance(value, dict):
            out[key] = rewrite_urls(value, base_url)
        else:
            out[key] = value
    return out


def make_exchange(settings: Settings) -> AssetsyncBinance:
    """The configured exchange: spot markets only, no currency/margin look-ups, rolling-window limiter."""
    conf = settings.config.asset_sync.binance
    exchange = AssetsyncBinance(
        {
            "apiKey": conf.api_key.get(),
            "secret": conf.api_secret.get(),
            "enableRateLimit": True,
            # Binance's real limit is 6000 weight per rolling minute; ccxt's costs are weight / 5 against
            # its 50 ms rateLimit, so a 60 s rolling window honours exactly that budget while letting a
            # sync burst its few hundred calls instead of spacing every call out by its cost.
            "rateLimiterAlgorithm": "rollingWindow",
            "rollingWindowSize": 60_000.0,
            "timeout": int(conf.timeout_seconds * 1000),
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "recvWindow": 10_000,
            },
        }
    )
    if conf.testnet and not conf.base_url:
        exchange.set_sandbox_mode(True)
    if conf.base_url:
        exchange.urls["api"] = rewrite_urls(exchange.urls["api"], conf.base_url)
    return exchange

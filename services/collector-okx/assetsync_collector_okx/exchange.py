"""The ccxt OKX client: spot-only markets, base-URL rewrite, rate limiter, and errors a user can act on.

`make_exchange(settings)` is the one place the client is built. ccxt keeps OKX's REST root as
`https://{hostname}` (hostname `www.okx.com`) in `urls['api']`; `asset_sync.okx.base_url` replaces it.
The subclass only adds error classification (HTTP 429 with OKX's code 50011, non-JSON bodies named by
endpoint); requests and signing are ccxt's own.
"""

from __future__ import annotations

from typing import Any

from assetsync.ccxt_lite import load
from assetsync.config import Settings
from assetsync.exchange_calls import endpoint_of, redact, retry_after

ccxt: Any
AsyncOkx: Any
ccxt, AsyncOkx = load("okx")

OKX_REST = "https://www.okx.com"
__all__ = ["AssetsyncOkx", "InvalidResponse", "RateLimited", "ccxt", "endpoint_of", "make_exchange", "redact"]


class RateLimited(ccxt.DDoSProtection):  # type: ignore[misc]
    """HTTP 429 (OKX code 50011) with the server's Retry-After (seconds) when it sent one."""

    def __init__(self, message: str, retry_after: float | None, endpoint: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.endpoint = endpoint


class InvalidResponse(ccxt.BadResponse):  # type: ignore[misc]
    """A 2xx answer whose body is not OKX's JSON envelope (an HTML error page, a truncated document)."""

    def __init__(self, message: str, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class AssetsyncOkx(AsyncOkx):  # type: ignore[misc]
    """ccxt's async OKX with error classification for rate limits and non-JSON answers."""

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
        if code == 429:
            wait_s = retry_after(headers)
            wait = f"; Retry-After {wait_s:g}s" if wait_s is not None else ""
            raise RateLimited(
                f"OKX rate-limited this client (HTTP 429) on {method} {endpoint}{wait}", wait_s, endpoint
            )
        if 200 <= code < 300 and not isinstance(response, dict):
            text = (body or "").strip()
            kind = "an HTML page" if text[:1] == "<" else "an empty body" if not text else "malformed JSON"
            raise InvalidResponse(
                f"OKX {method} {endpoint} answered HTTP {code} with {kind} instead of JSON: {text[:80]!r}",
                endpoint,
            )
        if 200 <= code < 300 and "data" not in response:
            raise InvalidResponse(
                f"OKX {method} {endpoint} answered without a `data` list: {body[:80]!r}", endpoint
            )
        return super().handle_errors(
            code, reason, url, method, headers, body, response, request_headers, request_body
        )


def rewrite_urls(api_urls: dict[str, Any], base_url: str) -> dict[str, Any]:
    """ccxt's `urls['api']` with OKX's REST root (`https://{hostname}` or www.okx.com) replaced by `base_url`."""
    base = base_url.rstrip("/")
    out: dict[str, Any] = {}
    for key, value in api_urls.items():
        if isinstance(value, str) and value.startswith(("https://{hostname}", OKX_REST)):
            root = "https://{hostname}" if value.startswith("https://{hostname}") else OKX_REST
            out[key] = base + value[len(root) :]
        elif isinstance(value, dict):
            out[key] = rewrite_urls(value, base_url)
        else:
            out[key] = value
    return out


def make_exchange(settings: Settings) -> AssetsyncOkx:
    """The configured client: SPOT instruments only, no currency look-up, ccxt's rate limiter on."""
    conf = settings.config.asset_sync.okx
    account = settings.okx_account_on()
    exchange = AssetsyncOkx(
        {
            "apiKey": conf.api_key.get() if account else "",
            "secret": conf.api_secret.get() if account else "",
            "password": conf.password.get() if account else "",
            "enableRateLimit": True,
            "timeout": int(conf.timeout_seconds * 1000),
            # `asset/currencies` needs keys and a funding permission; nothing here uses currencies.
            "has": {"fetchCurrencies": False},
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    )
    if conf.base_url:
        exchange.urls["api"] = rewrite_urls(exchange.urls["api"], conf.base_url)
    return exchange

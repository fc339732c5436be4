"""Shared exchange-call helpers: endpoint names without signed queries, Retry-After, retry policy."""

from __future__ import annotations

from assetsync.exchange_calls import RetryPolicy, endpoint_of, header, redact, retry_after


def test_endpoint_and_redaction_drop_the_signed_query() -> None:
    url = "https://www.okx.com/api/v5/trade/fills-history?instType=SPOT&sign=abc"
    assert endpoint_of(url) == "/api/v5/trade/fills-history"
    assert endpoint_of("http://127.0.0.1:9") == "/"
    assert redact(f"okx GET {url} 401") == "okx GET https://www.okx.com/api/v5/trade/fills-history 401"


def test_retry_after_reads_seconds_or_nothing() -> None:
    assert header({"retry-after": "3"}, "Retry-After") == "3"
    assert retry_after({"Retry-After": "2.5"}) == 2.5
    assert retry_after({"Retry-After": "soon"}) is None and retry_after(None) is None


def test_backoff_grows_and_is_bounded() -> None:
    p = RetryPolicy(attempts=5, base_delay=0.5, max_delay=2.0)
    delays = [p.backoff(a) for a in range(1, 6)]
    assert all(0 < d <= 2.0 for d in delays)

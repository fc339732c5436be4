"""The records' shapes as the endpoints serve them: what an insufficient coin says, and nothing more."""

from __future__ import annotations

import msgspec
import pytest
from assetsync_market import records as r


def test_insufficient_is_coin_status_reason_only() -> None:
    got = r.to_data(r.Insufficient(coin="LUNA", reason="delisted"))
    assert got == {"coin": "LUNA", "status": "insufficient_data", "reason": "delisted"}


def test_a_record_mixes_ok_and_insufficient_coins() -> None:
    rec = r.LatestPrices(
        ts=1,
        quote="USDT",
        source="binance",
        coins=[
            r.CoinPrice(coin="BTC", price=90_000.0, ts=1, change_24h_pct=None, ref_24h_ts=None),
            r.Insufficient(coin="LUNA", reason="no market"),
        ],
    )
    data = r.to_data(rec)
    assert data["coins"][0] == {"coin": "BTC", "status": "ok", "price": 90_000.0, "ts": 1,
                                "change_24h_pct": None, "ref_24h_ts": None}  # fmt: skip
    assert data["coins"][1]["status"] == "insufficient_data"
    # What the gateway serves is plain JSON.
    assert msgspec.json.decode(msgspec.json.encode(data)) == data


def test_records_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        r.Insufficient("LUNA", "insufficient_data", "x")  # type: ignore[call-arg]


def test_index_record_says_its_weighting() -> None:
    rec = r.CryptoIndex(ts=1, value=1000.0, base_value=1000.0, base_day="2026-12-06", weighting="equal",
                        weighting_note="no caps", constituents=[], excluded=[])  # fmt: skip
    assert r.to_data(rec)["status"] == "ok" and r.to_data(rec)["weighting"] == "equal"

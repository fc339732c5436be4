"""Pure feed logic: OKX rows -> typed records, with missing numbers left out, never 0."""

from __future__ import annotations

from assetsync_collector_okx import feeds

HOUR = feeds.HOUR_MS


def _tick(inst: str, last: str, vol: str = "100", open24: str = "") -> dict[str, str]:
    return {"instId": inst, "last": last, "open24h": open24, "volCcy24h": vol, "ts": "5"}


def test_num_leaves_empty_and_bad_values_out() -> None:
    assert feeds.num("") is None and feeds.num(None) is None and feeds.num("x") is None
    assert feeds.num("0.5") == 0.5


def test_watchlist_tickers_and_missing_assets() -> None:
    rows = [_tick("BTC-USDT", "100", open24="80"), _tick("ETH-BTC", "0.05"), _tick("SOL-USDT", "")]
    chosen, missing = feeds.select_tickers(rows, "USDT", ["btc", "SOL", "PEPE"])
    assert [t.inst_id for t in chosen] == ["BTC-USDT"]
    assert chosen[0].change_pct_24h == 25.0
    assert missing == ["SOL", "PEPE"]  # SOL's row has no last price: not a made-up 0


def test_without_watchlist_the_most_traded_are_kept() -> None:
    rows = [_tick(f"A{i}-USDT", "1", vol=str(i)) for i in range(60)]
    chosen, missing = feeds.select_tickers(rows, "USDT", [], limit=3)
    assert sorted(t.base for t in chosen) == ["A57", "A58", "A59"] and missing == []


def test_liquidation_summary_per_side_within_the_hour() -> None:
    start = 10 * HOUR
    details = [
        {"side": "sell", "posSide": "long", "sz": "2", "bkPx": "100", "ts": str(start + 5)},
        {"side": "sell", "posSide": "long", "sz": "10", "bkPx": "90", "ts": str(start + 9)},
        {"side": "buy", "posSide": "short", "sz": "1", "bkPx": "110", "ts": str(start + HOUR - 1)},
        {"side": "buy", "posSide": "short", "sz": "50", "bkPx": "110", "ts": str(start + HOUR)},  # next hour
        {"side": "buy", "posSide": "short", "sz": "", "bkPx": "110", "ts": str(start + 7)},  # no size
    ]
    out = feeds.liquidation_summaries("BTC-USDT-SWAP", "BTC-USDT", details, 0.01, start)
    assert [(s.side, s.count) for s in out] == [("buy", 1), ("sell", 2)]
    sell = out[1]
    assert sell.total_contracts == 12 and abs(sell.total_size - 0.12) < 1e-12
    assert abs(sell.total_notional - (2 * 0.01 * 100 + 10 * 0.01 * 90)) < 1e-9
    assert abs(sell.largest_notional - 9.0) < 1e-9 and sell.largest_ts == start + 9
    rec = feeds.liquidation_record(sell)
    assert rec.code == "LQ001" and rec.record_key == f"BTC-USDT-SWAP:sell:{start}" and rec.ts == start


def test_fill_fee_is_positive_and_keyed_by_fill() -> None:
    row = {
        "tradeId": "7",
        "instId": "BTC-USDT",
        "fillPx": "100",
        "fillSz": "0.5",
        "fee": "-0.0005",
        "feeCcy": "BTC",
    }
    f = feeds.fill_of(row)
    assert f is not None and f.fee == 0.0005 and f.fee_ccy == "BTC"
    assert feeds.fill_record(f).record_key == "BTC-USDT:7"
    assert feeds.fill_of({**row, "fillPx": ""}) is None


def test_account_limits_fee_rates_are_charges() -> None:
    out = feeds.account_limits(
        1,
        {"uid": "9", "acctLv": "2", "level": "Lv1"},
        [{"instType": "SPOT", "maker": "-0.0008", "taker": "-0.001"}],
        {},
    )
    assert out.fees[0].maker == 0.0008 and out.fees[0].taker == 0.001 and out.level == "Lv1"


def test_content_key_ignores_the_poll_time() -> None:
    assert feeds.content_key({"ts": 1, "x": [1]}) == feeds.content_key({"ts": 2, "x": [1]})
    assert feeds.content_key({"ts": 1, "x": [1]}) != feeds.content_key({"ts": 1, "x": [2]})

"""The watch list's pure parts: which coins, slots, ticks from a tickers answer, due and closed klines."""

from __future__ import annotations

from typing import Any

from assetsync.config import MarketConf
from assetsync.events import Candle
from assetsync_collector_crypto.state import CryptoState
from assetsync_collector_crypto.watch import (
    KLINE_PLANS,
    closed_candles,
    due_since,
    held_assets,
    slot_ms,
    split_markets,
    ticks_from,
    watch_assets,
)

M1, H1, D1 = KLINE_PLANS
HOUR = 3_600_000


def test_watch_list_from_config_or_holdings() -> None:
    assert watch_assets(MarketConf(watchlist=["sol", " BTC", "SOL", "usdt"]), ["DOGE"]) == ["SOL", "BTC"]
    state = CryptoState(quantities={"SOL": 2.0, "DOGE": 0.0, "ETH": 1.0, "PIVX": 3.0})
    assert held_assets(state) == ["ETH", "PIVX", "SOL"]
    assert watch_assets(MarketConf(), held_assets(state)) == ["BTC", "ETH", "PIVX", "SOL"]
    assert watch_assets(MarketConf(), []) == ["BTC", "ETH"]


def test_slots_are_the_same_for_every_replica() -> None:
    assert slot_ms(1_700_000_039.9, 60) == slot_ms(1_699_999_980.2, 60) == 1_699_999_980_000
    assert slot_ms(1_700_000_040.0, 60) == 1_700_000_040_000
    assert slot_ms(1_700_000_010.0, 15) == 1_700_000_010_000


def test_ticks_name_missing_markets_and_never_invent_prices() -> None:
    markets = {
        "BTC/USDT": {"active": True, "spot": True},
        "ETH/USDT": {"active": True, "spot": True},
        "LUNA/USDT": {"active": False, "spot": True},
        "SOL/USDT": {"active": True, "spot": True},
    }
    symbols, missing = split_markets(["BTC", "ETH", "LUNA", "NOPE", "SOL"], "USDT", markets)
    assert symbols == {"BTC": "BTC/USDT", "ETH": "ETH/USDT", "SOL": "SOL/USDT"}
    assert missing == ["LUNA", "NOPE"]
    tickers: dict[str, dict[str, Any]] = {
        "BTC/USDT": {"last": 68000.5, "quoteVolume": 1.5e9},
        "ETH/USDT": {"last": 3400.0, "quoteVolume": None},
        "SOL/USDT": {"last": 0.0, "quoteVolume": 3.0},  # no trade: no price (not 0)
    }
    ticks = ticks_from(tickers, symbols, missing, source="binance", quote="USDT", ts=1_000)
    assert ticks.prices == {"BTC": 68000.5, "ETH": 3400.0}
    assert ticks.volumes == {"BTC": 1.5e9}
    assert ticks.missing == ["LUNA", "NOPE", "SOL"]
    assert ticks.key() == "ticks:binance:USDT:1000"


def test_klines_due_backfill_then_only_after_new_closes() -> None:
    now = 1_733_400_000_000 + 10 * 60_000 + 5_000  # 10 min 5 s into an hour
    last_h = now // HOUR * HOUR - HOUR
    assert due_since(H1, None, now) == (last_h - 167 * HOUR, 168)
    assert due_since(H1, last_h, now) is None  # nothing new has closed
    assert due_since(H1, last_h - HOUR, now) == (last_h, 1)
    assert due_since(H1, last_h - 1000 * HOUR, now) == (last_h - 167 * HOUR, 168)  # gap: backfill only
    last_m = now // 60_000 * 60_000 - 60_000
    assert due_since(M1, None, now) == (last_m - 59 * 60_000, 60)
    assert due_since(M1, last_m - 5 * 60_000, now) is None  # 1m: a warm start when a coin joins, no more
    assert due_since(M1, last_m - 500 * 60_000, now) is None
    assert due_since(D1, None, now) is not None and due_since(D1, None, now)[1] == 30  # type: ignore[index]


def test_closed_candles_only() -> None:
    now = 10 * HOUR + 30 * 60_000
    rows: list[list[Any]] = [
        [8 * HOUR, "1", "2", "0.5", "1.5", "10"],
        [9 * HOUR, 1.5, 2.5, 1.0, 2.0, 12.0],
        [10 * HOUR, 2.0, 2.1, 1.9, 2.05, 3.0],  # still open at `now`
        [7 * HOUR, 1, 1, 1, 1, 1],  # before `since`
    ]
    got = closed_candles(rows, H1, 8 * HOUR, now)
    assert got == [Candle(8 * HOUR, 1.0, 2.0, 0.5, 1.5, 10.0), Candle(9 * HOUR, 1.5, 2.5, 1.0, 2.0, 12.0)]
    assert closed_candles([[8 * HOUR, 1, None, 1, 1, 1]], H1, 0, now) == []  # a hole: left out

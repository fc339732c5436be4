"""The Binance emulator against real ccxt (only its URLs pointed at the emulator) and raw HTTP."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import ccxt
import httpx
import pytest
from assetsync.config import Settings
from assetsync_collector_crypto.exchange import (
    BINANCE_REST,
    AssetsyncBinance,
    InvalidResponse,
    RateLimited,
    make_exchange,
    rewrite_urls,
)
from assetsync_emulators.binance import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    HOUR_MS,
    MINUTE_MS,
    BinanceEmulator,
    create_app,
    signed_query,
    wrong_signature_fault,
)
from assetsync_emulators.common import Fault, serve


@pytest.fixture
async def emu_url() -> AsyncIterator[tuple[BinanceEmulator, str]]:
    emu = BinanceEmulator(seed=3)
    async with serve(create_app(emu)) as url:
        yield emu, url


def _settings(make_settings: Any, url: str, **binance: Any) -> Settings:
    conf = {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": url, "timeout_seconds": 5}
    conf.update(binance)
    settings: Settings = make_settings({"asset_sync": {"binance": conf}})
    return settings


@pytest.fixture
async def exchange(
    emu_url: tuple[BinanceEmulator, str], make_settings: Any
) -> AsyncIterator[AssetsyncBinance]:
    ex = make_exchange(_settings(make_settings, emu_url[1]))
    try:
        yield ex
    finally:
        await ex.close()


def test_rewrite_urls_replaces_only_the_spot_host() -> None:
    urls = {
        "public": f"{BINANCE_REST}/api/v3",
        "sapi": f"{BINANCE_REST}/sapi/v1",
        "fapiPublic": "https://fapi.binance.com/fapi/v1",
        "nested": {"v1": f"{BINANCE_REST}/api/v1"},
    }
    out = rewrite_urls(urls, "http://127.0.0.1:9/")
    assert out["public"] == "http://127.0.0.1:9/api/v3"
    assert out["sapi"] == "http://127.0.0.1:9/sapi/v1"
    assert out["nested"] == {"v1": "http://127.0.0.1:9/api/v1"}
    assert out["fapiPublic"] == "https://fapi.binance.com/fapi/v1"


def test_make_exchange_points_every_spot_group_at_base_url(make_settings: Any) -> None:
    ex = make_exchange(_settings(make_settings, "http://127.0.0.1:1"))
    api = ex.urls["api"]
    for group in ("public", "private", "sapi", "v1"):
        assert api[group].startswith("http://127.0.0.1:1/"), group
    assert not any(isinstance(v, str) and v.startswith(BINANCE_REST) for v in api.values())
    assert ex.options["fetchMarkets"]["types"] == ["spot"]
    assert ex.options["fetchCurrencies"] is False and ex.options["fetchMargins"] is False


async def test_ccxt_spot_calls_against_emulator(
    emu_url: tuple[BinanceEmulator, str], exchange: AssetsyncBinance
) -> None:
    emu, _ = emu_url
    markets = await exchange.load_markets()
    # Spot only: one exchangeInfo call, no sapi/fapi/dapi look-ups.
    assert [r.path for r in emu.switch.requests] == ["/api/v3/exchangeInfo"]
    assert markets["PIVX/BTC"]["active"] is True and "PIVX/USDT" not in markets
    assert markets["BTC/USDT"]["precision"]["price"] == pytest.approx(emu.markets["BTCUSDT"].tick)

    balance = await exchange.fetch_balance()
    for asset, (free, locked) in emu.balances.items():
        assert balance["total"][asset] == pytest.approx(free + locked), asset
    assert balance["used"]["BTC"] > 0  # an open sell order locks part of it

    emu.switch.reset_log()
    tickers = await exchange.fetch_tickers(["BTC/USDT", "ETH/USDT", "ETH/BTC"])
    assert emu.switch.count("/api/v3/ticker/24hr") == 1
    assert "symbols=" in emu.switch.requests[0].query
    eth_btc = tickers["ETH/USDT"]["last"] / tickers["BTC/USDT"]["last"]
    assert tickers["ETH/BTC"]["last"] == pytest.approx(eth_btc, rel=0.005)

    # Klines agree with each other and with the ticker.
    now = emu.now_ms()
    hourly = await exchange.fetch_ohlcv("BTC/USDT", "1h", since=now - 6 * HOUR_MS, limit=10)
    assert all(b[0] - a[0] == HOUR_MS for a, b in itertools.pairwise(hourly))
    closed = hourly[-2]
    minutes = await exchange.fetch_ohlcv("BTC/USDT", "1m", since=closed[0], limit=60)
    assert len(minutes) == 60
    assert minutes[-1][4] == pytest.approx(closed[4])
    assert minutes[0][1] == pytest.approx(closed[1])
    assert max(m[2] for m in minutes) <= closed[2] and min(m[3] for m in minutes) >= closed[3]
    assert hourly[-1][4] == pytest.approx(tickers["BTC/USDT"]["last"], rel=0.002)


async def test_my_trades_incremental_and_orders(
    emu_url: tuple[BinanceEmulator, str], exchange: AssetsyncBinance
) -> None:
    emu, _ = emu_url
    await exchange.load_markets()
    all_trades = await exchange.fetch_my_trades("ETH/USDT", limit=1000, params={"fromId": 0})
    assert len(all_trades) == len(emu.fills["ETHUSDT"]) > 0
    ids = [int(t["id"]) for t in all_trades]
    assert ids == sorted(ids)
    later = await exchange.fetch_my_trades("ETH/USDT", limit=1000, params={"fromId": ids[-1] + 1})
    assert later == []
    fill = emu.trade("ETHUSDT", "BUY", 0.5, fee_asset="BNB")
    later = await exchange.fetch_my_trades("ETH/USDT", limit=1000, params={"fromId": ids[-1] + 1})
    assert [t["id"] for t in later] == [str(fill.id)]
    assert later[0]["fee"]["currency"] == "BNB" and later[0]["side"] == "buy"
    orders = await exchange.fetch_orders("ETH/USDT")
    assert str(fill.order_id) in {o["id"] for o in orders}
    assert {o["status"] for o in orders} <= {"closed", "open"}


async def test_signed_requests_checked_like_binance(emu_url: tuple[BinanceEmulator, str]) -> None:
    emu, url = emu_url
    ts = emu.now_ms()
    async with httpx.AsyncClient(base_url=url) as http:
        good = signed_query({"timestamp": ts}, DEMO_API_SECRET)
        ok = await http.get(f"/api/v3/account?{good}", headers={"X-MBX-APIKEY": DEMO_API_KEY})
        assert ok.status_code == 200 and ok.json()["accountType"] == "SPOT"
        assert int(ok.headers["x-mbx-used-weight-1m"]) >= 20

        missing = await http.get(f"/api/v3/account?{good}")
        assert (missing.status_code, missing.json()["code"]) == (401, -2014)
        unknown = await http.get(f"/api/v3/account?{good}", headers={"X-MBX-APIKEY": "A" * 64})
        assert (unknown.status_code, unknown.json()["code"]) == (401, -2015)
        bad = signed_query({"timestamp": ts}, "not-the-secret")
        wrong = await http.get(f"/api/v3/account?{bad}", headers={"X-MBX-APIKEY": DEMO_API_KEY})
        assert (wrong.status_code, wrong.json()) == (
            400,
            {"code": -1022, "msg": "Signature for this request is not valid."},
        )
        stale = signed_query({"timestamp": ts - 60_000}, DEMO_API_SECRET)
        old = await http.get(f"/api/v3/account?{stale}", headers={"X-MBX-APIKEY": DEMO_API_KEY})
        assert (old.status_code, old.json()["code"]) == (400, -1021)
        big = signed_query({"timestamp": ts, "recvWindow": 70_000}, DEMO_API_SECRET)
        too_big = await http.get(f"/api/v3/account?{big}", headers={"X-MBX-APIKEY": DEMO_API_KEY})
        assert (too_big.status_code, too_big.json()["code"]) == (400, -1131)
        unsigned = await http.get(f"/api/v3/account?timestamp={ts}", headers={"X-MBX-APIKEY": DEMO_API_KEY})
        assert (unsigned.status_code, unsigned.json()["code"]) == (400, -1102)
        invalid = await http.get("/api/v3/klines?symbol=NOPEUSDT&interval=1h")
        assert (invalid.status_code, invalid.json()["code"]) == (400, -1121)


async def test_wrong_secret_and_switched_signature_fault_fail_auth(
    emu_url: tuple[BinanceEmulator, str], make_settings: Any
) -> None:
    emu, url = emu_url
    ex = make_exchange(_settings(make_settings, url, api_secret="x" * 64))
    try:
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await ex.fetch_balance()
    finally:
        await ex.close()
    ex = make_exchange(_settings(make_settings, url))
    emu.switch.add(wrong_signature_fault("/api/v3/account", times=1))
    try:
        with pytest.raises(ccxt.AuthenticationError, match="Signature for this request is not valid"):
            await ex.fetch_balance()
        assert (await ex.fetch_balance())["total"]["ETH"] > 0  # the fault was used up
    finally:
        await ex.close()


async def test_weight_limit_429_then_ban_418() -> None:
    emu = BinanceEmulator(weight_limit=50, ban_after=2, ban_seconds=90)
    async with serve(create_app(emu)) as url, httpx.AsyncClient(base_url=url) as http:
        used = []
        for _ in range(2):
            r = await http.get("/api/v3/exchangeInfo")
            assert r.status_code == 200
            used.append(int(r.headers["x-mbx-used-weight-1m"]))
        assert used == [20, 40]
        statuses = []
        for _ in range(4):
            r = await http.get("/api/v3/exchangeInfo")
            statuses.append(r.status_code)
            assert r.json()["code"] == -1003
            assert 1 <= int(r.headers["Retry-After"]) <= 90
        assert statuses == [429, 429, 429, 418]
        banned = await http.get("/api/v3/ping")
        assert banned.status_code == 418 and int(banned.headers["Retry-After"]) > 60


@pytest.mark.parametrize(("kind", "expected"), [("html", "an HTML page"), ("truncated", "malformed JSON")])
async def test_non_json_bodies_raise_naming_the_endpoint(
    emu_url: tuple[BinanceEmulator, str], exchange: AssetsyncBinance, kind: str, expected: str
) -> None:
    emu, _ = emu_url
    await exchange.load_markets()
    emu.switch.add(Fault(kind, "/api/v3/ticker/24hr", times=1))  # type: ignore[arg-type]
    with pytest.raises(InvalidResponse, match=expected) as info:
        await exchange.fetch_tickers(["BTC/USDT"])
    assert info.value.endpoint == "/api/v3/ticker/24hr"
    assert "signature" not in str(info.value)


async def test_429_fault_carries_retry_after(
    emu_url: tuple[BinanceEmulator, str], exchange: AssetsyncBinance
) -> None:
    emu, _ = emu_url
    emu.switch.add(Fault("429", "/api/v3/exchangeInfo", times=1, retry_after=7))
    with pytest.raises(RateLimited) as info:
        await exchange.load_markets()
    assert info.value.retry_after == 7 and info.value.status == 429
    assert isinstance(info.value, ccxt.NetworkError)  # retried like any network error


async def test_delist_halts_markets_and_size_generates_assets() -> None:
    emu = BinanceEmulator(seed=5, size=40)
    held = [a for a, (f, lk) in emu.balances.items() if f + lk > 0]
    assert len(held) == 40
    assert all(emu.fills[f"{a}USDT"] for a in held if a.startswith("Z"))
    emu.delist("SOL")
    assert emu.markets["SOLUSDT"].status == "BREAK"
    async with serve(create_app(emu)) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.get('/api/v3/ticker/24hr?symbols=["SOLUSDT","BTCUSDT"]')
        assert (r.status_code, r.json()["code"]) == (400, -1121)
        info = (await http.get("/api/v3/exchangeInfo?symbol=SOLUSDT")).json()
        assert info["symbols"][0]["status"] == "BREAK"
        every = (await http.get("/api/v3/ticker/24hr")).json()
        assert "SOLUSDT" not in {t["symbol"] for t in every}


def test_price_paths_are_deterministic() -> None:
    a, b = BinanceEmulator(seed=9), BinanceEmulator(seed=9)
    t = (int(time.time() * 1000) // MINUTE_MS - 5) * MINUTE_MS
    m1, m2 = a.markets["DOGEUSDT"], b.markets["DOGEUSDT"]
    assert a.prices.candle(m1, t, MINUTE_MS, t + HOUR_MS) == b.prices.candle(m2, t, MINUTE_MS, t + HOUR_MS)
    assert BinanceEmulator(seed=10).prices.at(m1, t) != a.prices.at(m1, t)


async def test_fifty_usdt_markets_and_one_delisted(
    emu_url: tuple[BinanceEmulator, str], exchange: AssetsyncBinance
) -> None:
    emu, url = emu_url
    markets = await exchange.load_markets()
    trading = sorted(m["base"] for m in markets.values() if m["quote"] == "USDT" and m["active"])
    assert len(trading) >= 50 and {"BTC", "ETH", "AVAX", "PEPE"} <= set(trading)
    assert markets["LUNA/USDT"]["active"] is False  # status BREAK: listed, not trading
    symbols = [f"{b}/USDT" for b in trading[:50]]
    tickers = await exchange.fetch_tickers(symbols)  # one ticker/24hr?symbols=[...] call
    assert sorted(tickers) == sorted(symbols)
    assert all(t["last"] > 0 and t["quoteVolume"] > 0 for t in tickers.values())
    assert emu.switch.count("/api/v3/ticker/24hr") == 1
    async with httpx.AsyncClient(base_url=url) as http:
        ids = '["BTCUSDT","AVAXUSDT"]'
        prices = (await http.get("/api/v3/ticker/price", params={"symbols": ids})).json()
        assert [p["symbol"] for p in prices] == ["BTCUSDT", "AVAXUSDT"] and float(prices[1]["price"]) > 0
        gone = await http.get("/api/v3/klines", params={"symbol": "LUNAUSDT", "interval": "1h"})
        assert (gone.status_code, gone.json()["code"]) == (400, -1121)
    now = emu.now_ms()
    for interval, step, count in (("1m", MINUTE_MS, 60), ("1h", HOUR_MS, 168), ("1d", 24 * HOUR_MS, 30)):
        since = (now // step - count) * step
        rows = await exchange.fetch_ohlcv("AVAX/USDT", interval, since=since, limit=count)
        assert [r[0] for r in rows] == [since + i * step for i in range(count)]
        assert all(r[3] <= min(r[1], r[4]) <= max(r[1], r[4]) <= r[2] for r in rows)
        again = await exchange.fetch_ohlcv("AVAX/USDT", interval, since=since, limit=count)
        assert again[:-1] == rows[:-1]  # a deterministic walk (the newest candle may still be open)

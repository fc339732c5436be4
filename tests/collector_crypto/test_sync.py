"""Crypto syncs against the Binance emulator through real ccxt: results, call counts and every fault."""

from __future__ import annotations

import time
from typing import Any

import pytest
from assetsync.events import Event, Holding, KlineBatch, Order, PriceTick, Trade
from assetsync_collector_crypto.costbasis import ValuedFill, avg_cost
from assetsync_collector_crypto.exchange import make_exchange
from assetsync_collector_crypto.state import StateFile
from assetsync_collector_crypto.sync import CryptoSync, state_path
from assetsync_emulators.binance import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    MINUTE_MS,
    BinanceEmulator,
    create_app,
    wrong_signature_fault,
)
from assetsync_emulators.common import Fault, serve

from tests.collector_crypto.conftest import FAST, Harness


def _expected_avg(emu: BinanceEmulator, asset: str) -> float | None:
    """The §6 average cost computed straight from the emulator's fills and its 1m closes."""
    fills = []
    for m in emu.markets.values():
        if m.base != asset:
            continue
        for f in emu.fills[m.symbol]:
            minute_close = (f.time // MINUTE_MS + 1) * MINUTE_MS

            def usd(a: str, t: int = minute_close) -> float:
                return 1.0 if a == "USDT" else emu.prices.at(emu.markets[f"{a}USDT"], t)

            in_base = f.commission_asset == asset
            fills.append(
                ValuedFill(
                    ts=f.time,
                    trade_id=f.id,
                    symbol=m.symbol,
                    side="buy" if f.is_buyer else "sell",
                    qty=f.qty,
                    quote_usdt=f.quote_qty * usd(m.quote),
                    fee_qty=f.commission,
                    fee_asset=f.commission_asset,
                    fee_usdt=0.0 if in_base else f.commission * usd(f.commission_asset),
                    fee_in_base=in_base,
                )
            )
    return avg_cost(fills)


async def test_full_sync_then_incremental(harness: Harness) -> None:
    sync = harness.make()
    result = await harness.run(sync)
    emu = harness.emu
    assert result.status == "success", result.message
    holdings = harness.holdings()
    # Discovery: non-zero balances minus USDT / LD*; dust (SHIB) left out; ETHW has no market.
    assert sorted(holdings) == ["BNB", "BTC", "BTCDOWN", "DOGE", "ETH", "ETHW", "PIVX", "SOL"]
    assert result.assets == sorted(holdings)
    assert holdings["BTC"].quantity == pytest.approx(sum(emu.balances["BTC"]))
    assert (holdings["BTC"].name, holdings["DOGE"].name, holdings["BTCDOWN"].name) == (
        "比特币",
        "狗狗币",
        "BTCDOWN",
    )
    # Unpriced, never priced 0: no price tick, Holding.price None, named in the result with its quantity.
    assert holdings["ETHW"].price is None
    (unpriced,) = [e for e in result.errors if e.kind == "unpriced"]
    assert (unpriced.asset, unpriced.quantity) == ("ETHW", 4.21)
    ticks = {t.asset: t for t in harness.of(PriceTick)}
    assert "ETHW" not in ticks and all(t.price > 0 for t in ticks.values())
    # PIVX has only a BTC market: priced through it.
    assert ticks["PIVX"].via == "PIVX/BTC*BTC/USDT"
    now = emu.now_ms()
    pivx = emu.prices.at(emu.markets["PIVXBTC"], now) * emu.prices.at(emu.markets["BTCUSDT"], now)
    assert ticks["PIVX"].price == pytest.approx(pivx, rel=0.01)
    # One ticker call for everything; klines for each priced market; trades per market of each asset.
    log = emu.switch
    assert log.count("/api/v3/ticker/24hr") == 1 and log.count("/api/v3/account") == 1
    assert log.count("/api/v3/exchangeInfo") == 1
    batches = {b.symbol: b for b in harness.of(KlineBatch)}
    assert set(batches) == {
        "BTC/USDT",
        "ETH/USDT",
        "SOL/USDT",
        "DOGE/USDT",
        "BNB/USDT",
        "BTCDOWN/USDT",
        "PIVX/BTC",
    }
    assert all(23 <= len(b.candles) <= 24 for b in batches.values())
    # Cost basis from the fills, valued at 1m closes (fees in BNB, ETH/BTC quotes) — CONTRACTS §6.
    for asset in ("ETH", "BTC", "BNB", "DOGE", "PIVX"):
        assert holdings[asset].avg_cost == pytest.approx(_expected_avg(emu, asset), rel=1e-6), asset
        assert holdings[asset].cost_source == "trades"
    trades = harness.of(Trade)
    assert len(trades) == sum(len(emu.fills[s]) for s in emu.fills if emu.markets[s].base in holdings)
    assert {o.order_id for o in harness.of(Order)} == {t.order_id for t in trades}

    # Nothing changed: only the 3 fixed calls (no new closed candle within the same hour, no trades).
    second = await harness.run(sync, "c2")
    assert second.status == "success"
    paths = [r.path for r in emu.switch.requests]
    assert sorted(paths) == ["/api/v3/account", "/api/v3/exchangeInfo", "/api/v3/ticker/24hr"] or (
        set(paths) - {"/api/v3/account", "/api/v3/exchangeInfo", "/api/v3/ticker/24hr"} == {"/api/v3/klines"}
    )
    assert harness.of(Trade) == []
    assert harness.holdings()["ETH"].avg_cost == holdings["ETH"].avg_cost

    # A new ETH fill paying its fee in BNB: only ETH's and BNB's (balance moved) markets are asked.
    fill = emu.trade("ETHUSDT", "BUY", 2.0, fee_asset="BNB")
    third = await harness.run(sync, "c3")
    assert third.status == "success"
    asked = sorted(
        dict(p.split("=", 1) for p in r.query.split("&"))["symbol"]
        for r in emu.switch.requests
        if r.path == "/api/v3/myTrades"
    )
    assert asked == ["BNBBTC", "BNBUSDT", "ETHBTC", "ETHFDUSD", "ETHUSDT"]
    assert [t.trade_id for t in harness.of(Trade)] == [str(fill.id)]
    assert harness.holdings()["ETH"].avg_cost == pytest.approx(_expected_avg(emu, "ETH"), rel=1e-6)
    assert harness.holdings()["ETH"].avg_cost != holdings["ETH"].avg_cost


async def test_manual_cost_wins_and_fifo_option(harness: Harness) -> None:
    manual = harness.make(
        {"manual": [{"symbol": "ETH", "avg_cost": 1234.5}, {"symbol": "DOT", "quantity": 3, "avg_cost": 6.0}]}
    )
    result = await harness.run(manual)
    holdings = harness.holdings()
    assert holdings["ETH"].avg_cost == 1234.5 and holdings["ETH"].cost_source == "manual"
    assert holdings["DOT"].quantity == 3 and holdings["DOT"].price is None and holdings["DOT"].name == "波卡"
    assert {e.asset for e in result.errors if e.kind == "unpriced"} == {"DOT", "ETHW"}
    fifo = harness.make({"cost_method": "fifo"}, base_url=harness.url)
    await harness.run(fifo)
    assert harness.holdings()["BTC"].avg_cost is not None


@pytest.mark.parametrize("kind", ["5xx", "timeout"])
async def test_ticker_outage_fails_the_task(harness: Harness, kind: str) -> None:
    sync = harness.make(timeout_seconds=0.5)
    harness.emu.switch.add(Fault(kind, "/api/v3/ticker/24hr", delay=1.0))  # type: ignore[arg-type]
    result = await harness.run(sync)
    assert result.status == "failed"
    assert "/api/v3/ticker/24hr" in result.message
    assert ("timed out" if kind == "timeout" else "unavailable") in result.message
    assert harness.emu.switch.count("/api/v3/ticker/24hr") == FAST.attempts  # retried, then gave up
    assert harness.of(Holding) == [] and result.assets is None
    assert {e.asset for e in result.errors} >= {"BTC", "ETH"}


async def test_429_backs_off_for_retry_after(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("429", "/api/v3/account", times=1, retry_after=1))
    result = await harness.run(sync)
    assert result.status == "success"
    tries = [r for r in harness.emu.switch.requests if r.path == "/api/v3/account"]
    assert [r.status for r in tries] == [429, 200]
    assert tries[1].at - tries[0].at >= 0.95  # waited for Retry-After, not just the short backoff


async def test_ip_ban_longer_than_we_wait_fails_clearly(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("418", "/api/v3/account", retry_after=600))
    result = await harness.run(sync)
    assert result.status == "failed" and "banned this IP (HTTP 418)" in result.message
    assert "Retry-After 600s" in result.message
    # Gave up at once: one request, no retry after (or during) the ban.
    assert [r.status for r in harness.emu.switch.requests if r.path == "/api/v3/account"] == [418]


async def test_one_assets_klines_failing_is_partial(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("5xx", "/api/v3/klines", query_contains="symbol=SOLUSDT"))
    result = await harness.run(sync)
    assert result.status == "partial"
    (failure,) = [e for e in result.errors if e.kind == "failed"]
    assert failure.asset == "SOL" and "klines SOL/USDT" in failure.reason
    assert "SOL" in result.message
    batches = {b.symbol for b in harness.of(KlineBatch)}
    assert "SOL/USDT" not in batches and {"BTC/USDT", "ETH/USDT"} <= batches
    assert "SOL" in harness.holdings()  # its price and holding are still reported
    assert result.records == result.total - 2  # SOL failed, ETHW unpriced


@pytest.mark.parametrize(
    ("kind", "path", "what"),
    [
        ("html", "/api/v3/ticker/24hr", "an HTML page"),
        ("truncated", "/api/v3/account", "malformed JSON"),
    ],
)
async def test_non_json_answer_names_the_endpoint(harness: Harness, kind: str, path: str, what: str) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault(kind, path))  # type: ignore[arg-type]
    result = await harness.run(sync)
    assert result.status == "failed"
    assert f"GET {path} answered HTTP 200 with {what}" in result.message
    assert "Traceback" not in result.message and "signature" not in result.message


@pytest.mark.parametrize("bad", ["key", "secret", "switched"])
async def test_wrong_credentials_fail_at_once(harness: Harness, bad: str) -> None:
    if bad == "key":
        sync = harness.make(api_key="B" * 64)
    elif bad == "secret":
        sync = harness.make(api_secret="s" * 64)
    else:
        sync = harness.make()
        harness.emu.switch.add(wrong_signature_fault("/api/v3/account"))
    result = await harness.run(sync)
    assert result.status == "failed"
    assert "asset_sync.binance.api_key" in result.message
    assert harness.emu.switch.count("/api/v3/account") == 1  # no retries
    assert DEMO_API_SECRET not in result.message


async def test_delisted_asset_is_unpriced_not_zero(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.delist("SOL")
    result = await harness.run(sync)
    assert result.status == "success"
    sol = harness.holdings()["SOL"]
    assert sol.price is None and sol.quantity > 0
    assert {e.asset for e in result.errors if e.kind == "unpriced"} == {"ETHW", "SOL"}
    assert "SOLUSDT" not in next(
        r.query for r in harness.emu.switch.requests if r.path == "/api/v3/ticker/24hr"
    )
    assert all(t.asset != "SOL" for t in harness.of(PriceTick))


async def test_credentials_refused_mid_sync_fail_at_once(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(wrong_signature_fault("/api/v3/myTrades"))
    result = await harness.run(sync)
    assert result.status == "failed"
    assert "GET /api/v3/myTrades" in result.message and "code -1022" in result.message
    assert harness.events == []  # nothing half-done is published
    state = sync.state_file.load()
    assert state.trade_cursor == {} and state.kline_last_open == {}


async def test_clock_skew_is_measured_and_corrected(make_settings: Any) -> None:
    # Binance's clock 40 s ahead of ours: signed calls fail with -1021 until ccxt measures the offset.
    emu = BinanceEmulator(seed=2, clock=lambda: time.time() + 40)
    async with serve(create_app(emu)) as url:
        conf = {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": url}
        settings = make_settings(
            {"asset_sync": {"binance": conf, "assets": {"crypto": {"ignore": ["USDT"]}}}}
        )
        sync = CryptoSync(settings, make_exchange(settings), StateFile(state_path(settings)), retry=FAST)
        events: list[Event] = []

        async def publish(ev: Event) -> None:
            events.append(ev)

        try:
            result = await sync.run("skew", publish)
        finally:
            await sync.exchange.close()
    assert result.status == "success", result.message
    account = [r.status for r in emu.switch.requests if r.path == "/api/v3/account"]
    assert account == [400, 200]
    assert emu.switch.count("/api/v3/time") == 1
    assert any(isinstance(e, Holding) for e in events)

"""The watch-list poller against the Binance emulator and a real nats-server: ticks, klines and faults."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from assetsync.embedded import EmbeddedNats
from assetsync.events import KlineBatch, MarketTicks
from assetsync.metrics import Metrics
from assetsync.retry import Backoff
from assetsync.runtime import Runtime, open_runtime
from assetsync_collector_crypto.exchange import make_exchange
from assetsync_collector_crypto.poller import WatchPoller
from assetsync_emulators.binance import HOUR_MS, MINUTE_MS, BinanceEmulator, create_app
from assetsync_emulators.common import Fault, serve
from nats.aio.msg import Msg

from tests.support import wait_for

# 10 min 5 s into an hour: advancing a few minutes closes 1m candles but no 1h one.
START = (1_765_000_000_000 // HOUR_MS * HOUR_MS + 10 * MINUTE_MS + 5_000) / 1000
WATCH = ["BTC", "ETH", "AVAX", "LUNA", "NOPE"]
FAST = Backoff(base=0.01, cap=0.05, attempts=1000)


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Bench:
    rt: Runtime
    emu: BinanceEmulator
    poller: WatchPoller
    clock: Clock
    ticks: list[MarketTicks] = field(default_factory=list)
    klines: list[KlineBatch] = field(default_factory=list)


@pytest.fixture
async def bench(nats_server: EmbeddedNats, make_settings: Any) -> AsyncIterator[Bench]:
    clock = Clock()
    emu = BinanceEmulator(seed=7, clock=clock)
    async with serve(create_app(emu)) as url:
        settings = make_settings(
            {
                "asset_sync": {"binance": {"base_url": url, "timeout_seconds": 3}},
                "market": {"watchlist": WATCH, "interval_seconds": 60},
            }
        )
        async with open_runtime(settings, nats_server.url, name="test-watch", metrics=Metrics()) as rt:
            poller = WatchPoller(
                settings,
                make_exchange(settings),
                rt.publisher.publish_many,
                metrics=rt.metrics,
                clock=clock,
                backoff=FAST,
            )
            b = Bench(rt, emu, poller, clock)

            async def collect(msg: Msg) -> None:
                ev = rt.codec.decode(msg.data)
                if isinstance(ev, MarketTicks):
                    b.ticks.append(ev)
                elif isinstance(ev, KlineBatch):
                    b.klines.append(ev)

            await rt.nc.subscribe(rt.topo.ticks("binance"), cb=collect)
            await rt.nc.subscribe(rt.topo.kline("binance"), cb=collect)
            try:
                yield b
            finally:
                await poller.exchange.close()


async def test_ticks_missing_and_klines_over_nats(bench: Bench) -> None:
    emu, poller = bench.emu, bench.poller
    await poller.step()
    (ticks,) = await wait_for(lambda: bench.ticks, what="the first MarketTicks")
    assert ticks.ts == int(START // 60 * 60 * 1000) and ticks.quote == "USDT" and ticks.source == "binance"
    assert set(ticks.prices) == {"BTC", "ETH", "AVAX"} and set(ticks.volumes) == set(ticks.prices)
    avax = emu.prices.at(emu.markets["AVAXUSDT"], int(START * 1000))
    assert ticks.prices["AVAX"] == pytest.approx(avax, rel=1e-3)
    assert ticks.missing == ["LUNA", "NOPE"]  # LUNAUSDT is halted (BREAK), NOPE has no market
    assert emu.switch.count("/api/v3/ticker/24hr") == 1 and emu.switch.count("/api/v3/exchangeInfo") == 1
    # The backfill: 1m (60), 1h (7 days), 1d (30 days) for each coin with a market, closed only.
    await wait_for(lambda: len(bench.klines) == 9, what="9 kline batches")
    got = {(k.symbol, k.interval): k.candles for k in bench.klines}
    now_ms = int(START * 1000)
    for symbol in ("BTC/USDT", "ETH/USDT", "AVAX/USDT"):
        for interval, step, count in (("1m", MINUTE_MS, 60), ("1h", HOUR_MS, 168), ("1d", 24 * HOUR_MS, 30)):
            candles = got[(symbol, interval)]
            assert len(candles) == count and candles[-1].open_time + step <= now_ms
            assert candles[-1].open_time + 2 * step > now_ms  # up to the last closed one
    assert emu.switch.count("/api/v3/klines") == 9

    # The same slot again: nothing; the next minute: ticks, no klines (1m candles are a warm start only).
    await poller.step()
    bench.clock.now += 60
    emu.switch.reset_log()
    await poller.step()
    await wait_for(lambda: len(bench.ticks) == 2, what="the second MarketTicks")
    assert bench.ticks[1].ts == ticks.ts + 60_000
    assert emu.switch.count("/api/v3/klines") == 0 and emu.switch.count("/api/v3/exchangeInfo") == 0
    # Five minutes on: still no 1m refetch (the ticks are the fresh prices; no 72,000 rows a day).
    bench.clock.now += 4 * 60
    await poller.step()
    await wait_for(lambda: len(bench.ticks) == 3, what="the third MarketTicks")
    assert len(bench.klines) == 9
    assert emu.switch.count("/api/v3/klines") == 0
    ok, detail = poller.health()
    assert ok and "3 coins" not in detail and "5 coins" in detail and "2 without a market" in detail


async def test_html_answer_publishes_nothing_and_is_logged_once(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    emu, poller, rt = bench.emu, bench.poller, bench.rt
    emu.switch.add(Fault("html", "/api/v3/ticker/24hr", times=2))
    with caplog.at_level(logging.INFO, logger="assetsync.collector_crypto.watch"):
        assert await poller.step() < 1.0  # retried soon, with backoff, within the slot
        await poller.step()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "poll failed" in r.message]
        assert len(warnings) == 1 and "HTML" in warnings[0].getMessage()
        assert "GET /api/v3/ticker/24hr" in warnings[0].getMessage()
        ok, detail = poller.health()
        assert ok and "failing" in detail and "InvalidResponse" in detail
        failures = {"source": "binance", "what": "ticks", "kind": "InvalidResponse"}
        assert rt.metrics.value("assetsync_market_poll_failures_total", failures) == 2
        await poller.step()  # the fault is used up: this poll works
        await wait_for(lambda: bench.ticks, what="ticks after recovery")
        assert any("works again" in r.getMessage() for r in caplog.records)
    assert len(bench.ticks) == 1 and bench.ticks[0].prices  # nothing made up while it failed
    assert "market ticks ok" in poller.health()[1]


async def test_rate_limit_waits_and_a_delisting_becomes_missing(bench: Bench) -> None:
    emu, poller = bench.emu, bench.poller
    emu.switch.add(Fault("429", "/api/v3/ticker/24hr", times=1, retry_after=7))
    assert await poller.step() >= 7.0  # Binance's Retry-After is honoured
    await poller.step()
    await wait_for(lambda: bench.ticks, what="ticks after the 429")
    emu.delist("AVAX")  # under the running poller: Binance answers "Invalid symbol" for AVAXUSDT
    bench.clock.now += 60
    await poller.step()
    assert "Invalid symbol" in poller.health()[1]
    await poller.step()  # exchangeInfo again: AVAX is now missing, not an error
    await wait_for(lambda: len(bench.ticks) == 2, what="ticks after the delisting")
    assert bench.ticks[1].missing == ["AVAX", "LUNA", "NOPE"] and set(bench.ticks[1].prices) == {"BTC", "ETH"}


async def test_reloaded_watch_list_applies_from_the_next_slot(bench: Bench, make_settings: Any) -> None:
    await bench.poller.step()
    await wait_for(lambda: bench.ticks, what="the first MarketTicks")
    old = bench.poller.settings
    url = old.config.asset_sync.binance.base_url
    await bench.poller.reconfigure(
        make_settings(
            {
                "asset_sync": {"binance": {"base_url": url, "timeout_seconds": 3}},
                "market": {"watchlist": ["SOL", "TON"], "interval_seconds": 60},
            }
        )
    )
    bench.clock.now += 60
    await bench.poller.step()
    await wait_for(lambda: len(bench.ticks) == 2, what="ticks of the new list")
    assert set(bench.ticks[1].prices) == {"SOL", "TON"} and bench.ticks[1].missing == []
    # The new coins are backfilled; the old ones' cursors are dropped.
    assert {s for s, _ in bench.poller.cursors} == {"SOL/USDT", "TON/USDT"}

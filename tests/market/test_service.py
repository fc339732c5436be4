"""The market service on a real nats-server: polls and klines in, the 12 codes' FeedRecords out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
import numpy as np
import pytest
import talib
from assetsync.embedded import EmbeddedNats
from assetsync.endpoints import codes_of
from assetsync.events import AnyEvent, Candle, Codec, FeedRecord
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.service import Disabled
from assetsync_market.service import MarketService, build, state_path
from assetsync_market.state import D, H, M, Saved
from nats.aio.msg import Msg

from tests.market.support import klines, ticks, walk
from tests.support import wait_for


class Feed:
    """Every FeedRecord published on this test's `market.feed.v1.>`, by code."""

    def __init__(self) -> None:
        self.codec = Codec()
        self.by_code: dict[str, list[FeedRecord]] = {}

    async def on_msg(self, msg: Msg) -> None:
        e = self.codec.decode(msg.data)
        assert isinstance(e, FeedRecord)
        self.by_code.setdefault(e.code, []).append(e)

    def last(self, code: str, coin: str | None = None) -> dict[str, Any] | None:
        for rec in reversed(self.by_code.get(code, [])):
            if coin is None or rec.data.get("coin") == coin:
                return rec.data
        return None

    def coin(self, code: str, coin: str) -> dict[str, Any] | None:
        data = self.last(code)
        return next((c for c in data["coins"] if c["coin"] == coin), None) if data else None


@asynccontextmanager
async def market(
    nats_server: EmbeddedNats, make_settings: Any, clock: Callable[[], float] = time.time, **market_conf: Any
) -> AsyncIterator[tuple[Runtime, MarketService, Feed]]:
    settings = make_settings({"market": market_conf})
    async with open_runtime(settings, nats_server.url, name="test-market", metrics=Metrics()) as rt:
        feed = Feed()
        sub = await rt.nc.subscribe(rt.topo.feed(">"), cb=feed.on_msg)
        svc = MarketService(rt, clock=clock, linger=0.02, round_seconds=0.1)
        try:
            async with AsyncExitStack() as stack:
                await svc.start(stack)
                yield rt, svc, feed
        finally:
            await sub.unsubscribe()


async def publish(rt: Runtime, *events: AnyEvent) -> None:
    for e in events:
        await rt.publisher.publish(e)
    await rt.publisher.flush()


def history(coin: str, seed: int, *, now: int, drop: tuple[int, ...] = ()) -> list[AnyEvent]:
    last_h = now // H * H - H
    hours = [c for c in walk(200, start=last_h - 199 * H, seed=seed) if c.open_time not in drop]
    days = walk(40, start=now // D * D - 40 * D, step=D, seed=seed + 50)
    return [klines(coin, "1h", hours), klines(coin, "1d", days)]


def polls(
    now: int, prices: dict[str, float], n: int = 16, missing: list[str] | None = None
) -> list[AnyEvent]:
    return [
        ticks(now - (n - 1 - i) * M, {c: p * (1 + 0.001 * i) for c, p in prices.items()}, missing)
        for i in range(n)
    ]


async def test_disabled_when_market_is_off(nats_server: EmbeddedNats, make_settings: Any) -> None:
    settings = make_settings({"market": {"enabled": False}})
    async with open_runtime(settings, nats_server.url, name="t", metrics=Metrics()) as rt:
        out = build(rt)
    assert isinstance(out, Disabled) and "market.enabled is false" in out.reason


async def test_polls_and_klines_become_all_twelve_codes(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    now = int(time.time() * 1000)
    async with market(nats_server, make_settings) as (rt, svc, feed):
        await publish(rt, *history("BTC", 1, now=now), *history("ETH", 2, now=now))
        await publish(rt, *polls(now, {"BTC": 90_000.0, "ETH": 3_000.0}))
        await wait_for(
            lambda: set(feed.by_code) >= set(codes_of("market")), timeout=20, what="every market code"
        )
        btc = feed.coin("PT001", "BTC")
        assert btc is not None and btc["status"] == "ok" and btc["price"] == pytest.approx(90_000 * 1.015)
        assert len(feed.by_code["PT002"]) == 16  # one record per poll
        speed = feed.coin("PS001", "ETH")
        assert speed is not None and speed["change_15m_pct"] == pytest.approx((1.015 / 1.0 - 1) * 100)
        # SAR001 for BTC against TA-Lib on the same closed 1 h candles.
        hours = history("BTC", 1, now=now)[0].candles[-192:]  # type: ignore[union-attr]
        sar = talib.SAR(np.array([c.high for c in hours]), np.array([c.low for c in hours]), 0.02, 0.2)
        got = feed.last("SAR001", "BTC")
        assert (
            got is not None
            and got["sar"] == pytest.approx(sar[-1])
            and got["last_candle"] == hours[-1].open_time
        )
        rec = next(r for r in feed.by_code["SAR001"] if r.data["coin"] == "BTC")
        assert rec.record_key == f"BTC:{hours[-1].open_time}"
        index = feed.last("CI001")
        assert index is not None and index["value"] == 1000.0 and index["weighting"] == "equal"
        assert {c["coin"] for c in index["constituents"]} == {"BTC", "ETH"}
        assert rt.metrics.value("assetsync_market_records_total", {"code": "SAR001"}) == 2
        # Nothing changed: a later round publishes nothing new.
        n = sum(len(v) for v in feed.by_code.values())
        assert await svc.publish_round() == 0 and sum(len(v) for v in feed.by_code.values()) == n
        assert state_path(rt.settings).exists()


async def test_candle_gap_says_insufficient_for_that_coin(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    now = int(time.time() * 1000)
    gap = now // H * H - 4 * H
    async with market(nats_server, make_settings) as (rt, _svc, feed):
        await publish(rt, *history("BTC", 1, now=now, drop=(gap,)), *history("ETH", 2, now=now))
        await publish(rt, *polls(now, {"BTC": 90_000.0, "ETH": 3_000.0}))
        await wait_for(
            lambda: feed.last("SAR001", "BTC") and feed.last("SAR001", "ETH"), timeout=20, what="SAR001"
        )
        btc, eth = feed.last("SAR001", "BTC"), feed.last("SAR001", "ETH")
        assert btc is not None and btc["status"] == "insufficient_data" and "gap" in btc["reason"]
        assert set(btc) == {"coin", "status", "reason"}  # no value made up
        assert eth is not None and eth["status"] == "ok"
        await wait_for(lambda: feed.last("SAR002"), timeout=20, what="SAR002")
        summary = feed.last("SAR002")["summary"]  # type: ignore[index]
        assert summary["insufficient"] == 1 and summary["above"] + summary["below"] == 1
        assert rt.metrics.value("assetsync_market_insufficient_total", {"code": "SAR001"}) >= 1


async def test_missing_coin_says_insufficient(nats_server: EmbeddedNats, make_settings: Any) -> None:
    now = int(time.time() * 1000)
    async with market(nats_server, make_settings, watchlist=["BTC", "LUNA", "DOGE"]) as (rt, svc, feed):
        await publish(rt, *history("BTC", 1, now=now))
        await publish(rt, *polls(now, {"BTC": 90_000.0}, missing=["LUNA"]))
        await wait_for(lambda: feed.last("PT001") and feed.last("EX001"), timeout=20, what="PT001 and EX001")
        luna, doge = feed.coin("PT001", "LUNA"), feed.coin("PT001", "DOGE")
        assert luna is not None and luna["status"] == "insufficient_data" and "delisted" in luna["reason"]
        assert doge is not None and doge["reason"].startswith("DOGE has no price in the last poll")
        assert feed.coin("EX001", "LUNA")["status"] == "insufficient_data"  # type: ignore[index]
        assert feed.coin("PT001", "BTC")["status"] == "ok"  # type: ignore[index]
        index = feed.last("CI001")
        assert index is not None and [c["coin"] for c in index["excluded"]] == ["LUNA", "DOGE"]
        # An exchange answering garbage candles: refused and counted, never used.
        await publish(rt, klines("DOGE", "1h", [Candle(now // H * H - H, -1.0, 0.0, -2.0, -1.0, 0.0)]))
        await wait_for(lambda: rt.metrics.value("assetsync_market_consume_errors_total", {"kind": "candle"}) == 1,
                       what="candle refused")  # fmt: skip
        assert "DOGE" not in svc.state.coins or svc.state.coins["DOGE"].candles("1h").opens == []


async def test_restart_resumes_from_state_file_and_republishes_same_keys(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    now = int(time.time() * 1000)
    async with market(nats_server, make_settings) as (rt, _svc, feed):
        await publish(rt, *history("BTC", 1, now=now))
        await publish(rt, *polls(now, {"BTC": 90_000.0}))
        await wait_for(lambda: feed.last("SAR001", "BTC"), timeout=20, what="SAR001")
        first = feed.by_code["SAR001"][0]
    async with market(nats_server, make_settings) as (rt2, svc2, feed2):
        # Nothing new on the stream: the candles come from the state file, the polls are new.
        await publish(rt2, *polls(now + M, {"BTC": 91_000.0}, n=1))
        await wait_for(lambda: feed2.last("SAR001", "BTC"), timeout=20, what="SAR001 after restart")
        again = feed2.by_code["SAR001"][0]
        assert again.record_key == first.record_key and again.data == first.data
        assert svc2.consumer is not None and svc2.consumer.stats.delivered == 1


async def test_one_shot_stacks_leave_the_market_durable_alone(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with open_runtime(make_settings(), nats_server.url, name="t", metrics=Metrics()) as rt:
        rt.scheduling = False
        out = build(rt)
    assert isinstance(out, Disabled) and "one-shot" in out.reason


async def test_reload_applies_a_new_watch_list(nats_server: EmbeddedNats, make_settings: Any) -> None:
    now = int(time.time() * 1000)
    async with market(nats_server, make_settings) as (rt, svc, feed):
        await publish(rt, *polls(now, {"BTC": 90_000.0, "ETH": 3_000.0}, n=1))
        await wait_for(lambda: feed.last("PT001"), timeout=20, what="PT001")
        await svc.reload(make_settings({"market": {"watchlist": ["btc", "sol"]}}))
        assert svc.state.watchlist() == ["BTC", "SOL"]
        await svc.publish_round(now + 60_000)  # the next minute's slot (this one's PT001 is out)
        sol = await wait_for(lambda: feed.coin("PT001", "SOL"), timeout=20, what="SOL in PT001")
        assert (
            sol is not None
            and sol["status"] == "insufficient_data"
            and "SOL has no price in the last poll" in sol["reason"]
        )


async def test_lost_state_file_rebuilds_from_the_stream(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    now = int(time.time() * 1000)
    async with market(nats_server, make_settings) as (rt, _svc, feed):
        await publish(rt, *history("BTC", 1, now=now), *polls(now, {"BTC": 90_000.0}))
        await wait_for(lambda: feed.last("SAR001", "BTC"), timeout=20, what="SAR001")
        first = feed.last("SAR001", "BTC")
        path = state_path(rt.settings)
    path.unlink()
    async with market(nats_server, make_settings) as (_rt2, svc2, feed2):
        # The durable is recreated to replay the last 8 days: the candles come back from the stream.
        await wait_for(lambda: svc2.caught_up, timeout=20, what="caught up")
        assert svc2.consumer is not None and svc2.consumer.stats.delivered == 18  # 2 kline batches + 16 polls
        assert path.exists()
        await svc2.publish_round(now + 30_000)
        await wait_for(lambda: feed2.last("SAR001", "BTC"), timeout=20, what="SAR001 after the rebuild")
        assert feed2.last("SAR001", "BTC") == first


async def test_concurrent_saves_take_turns(nats_server: EmbeddedNats, make_settings: Any) -> None:
    # The consumer (new candles) and the publish loop (the index base) both save the state file.
    now = int(time.time() * 1000)
    async with market(nats_server, make_settings) as (rt, svc, _feed):
        await publish(rt, *history("BTC", 1, now=now))
        await wait_for(lambda: "BTC" in svc.state.coins, what="candles in")
        await asyncio.gather(*(svc._persist() for _ in range(8)))
        saved = msgspec.json.decode(state_path(rt.settings).read_bytes(), type=Saved)
        assert len(saved.candles["BTC"]["1h"]) == 192


async def test_an_hourly_code_fills_in_once_its_candles_arrive(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    """SR001 (hourly) first published without candles says insufficient; a minute after they arrive it is ok."""
    now = int(time.time() * 1000) // H * H + 10 * M  # every round below falls in one hourly slot
    async with market(nats_server, make_settings, clock=lambda: now / 1000, watchlist=["BTC"]) as (
        rt,
        svc,
        feed,
    ):
        await publish(rt, *polls(now, {"BTC": 90_000.0}, n=2))
        await wait_for(lambda: feed.coin("SR001", "BTC"), timeout=20, what="the first SR001")
        first = feed.by_code["SR001"][-1]
        assert feed.coin("SR001", "BTC")["status"] == "insufficient_data"  # type: ignore[index]
        await publish(rt, *history("BTC", 1, now=now))
        await wait_for(lambda: "BTC" in svc.state.coins and svc.state.coins["BTC"].candles("1d").opens,
                       what="the candles folded in")  # fmt: skip
        # Within the same hour: not before a minute has passed, then once, under its own key.
        assert await svc.publish_round(now + 30_000) >= 0
        assert feed.coin("SR001", "BTC")["status"] == "insufficient_data"  # type: ignore[index]
        await svc.publish_round(now + 61_000)
        await wait_for(lambda: feed.coin("SR001", "BTC")["status"] == "ok", what="SR001 filled in")  # type: ignore[index]
        second = feed.by_code["SR001"][-1]
        assert second.record_key != first.record_key and second.record_key.startswith(first.record_key)
        n = len(feed.by_code["SR001"])
        await svc.publish_round(now + 125_000)  # complete now: the hourly slot holds
        assert len(feed.by_code["SR001"]) == n

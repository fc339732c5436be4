"""FG001: parsing alternative.me's answer, and the poller against its emulator and a real nats-server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from assetsync.embedded import EmbeddedNats
from assetsync.events import FeedRecord
from assetsync.metrics import Metrics
from assetsync.retry import Backoff
from assetsync.runtime import Runtime, open_runtime
from assetsync_collector_crypto.sentiment import BadAnswer, FearGreedPoller, parse, record_of
from assetsync_emulators.alternative_me import FNG_PATH, AlternativeMeEmulator
from assetsync_emulators.common import Fault, serve
from nats.aio.msg import Msg

from tests.support import wait_for

REAL = (
    b'{"name":"Fear and Greed Index","data":[{"value":"40","value_classification":"Fear",'
    b'"timestamp":"1551157133","time_until_update":"68499"}],"metadata":{"error":null}}'
)
NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC).timestamp()
FAST = Backoff(base=0.01, cap=0.05, attempts=1000)


def test_parse_the_real_answer() -> None:
    fg = parse(REAL)
    assert (fg.value, fg.classification, fg.timestamp, fg.time_until_update) == (
        40,
        "Fear",
        1551157133,
        68499,
    )
    rec = record_of(fg)
    assert (rec.code, rec.record_key, rec.ts) == ("FG001", "1551157133", 1551157133000)
    assert rec.data == {
        "value": 40,
        "classification": "Fear",
        "timestamp": 1551157133,
        "time_until_update": 68499,
        "source": "alternative.me",
    }
    assert rec.key() == "feed:FG001:1551157133"


@pytest.mark.parametrize(
    ("body", "kind", "says"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "html", "HTML"),
        (b'{"data": [\x00 not json', "garbage", "not the index's JSON"),
        (b'{"name":"x","data":[],"metadata":{"error":"Rate limit"}}', "error", "Rate limit"),
        (b'{"name":"x","data":[],"metadata":{"error":null}}', "empty", "no data"),
        (
            b'{"data":[{"value":"140","value_classification":"Greed","timestamp":"1"}]}',
            "garbage",
            "not an index value",
        ),
        (
            b'{"data":[{"value":"n/a","value_classification":"Greed","timestamp":"1"}]}',
            "garbage",
            "not an index value",
        ),
    ],
)
def test_bad_answers_are_named(body: bytes, kind: str, says: str) -> None:
    with pytest.raises(BadAnswer) as info:
        parse(body)
    assert info.value.kind == kind and says in str(info.value)


@dataclass
class Bench:
    rt: Runtime
    emu: AlternativeMeEmulator
    poller: FearGreedPoller
    records: list[FeedRecord] = field(default_factory=list)


@pytest.fixture
async def bench(nats_server: EmbeddedNats, make_settings: Any) -> AsyncIterator[Bench]:
    emu = AlternativeMeEmulator(clock=lambda: NOW)
    async with serve(emu.app) as url:
        settings = make_settings({"market": {"fear_greed": {"base_url": url, "timeout_seconds": 2}}})
        async with open_runtime(settings, nats_server.url, name="test-fng", metrics=Metrics()) as rt:
            poller = FearGreedPoller(settings, rt.publisher.publish_many, metrics=rt.metrics, backoff=FAST)
            b = Bench(rt, emu, poller)

            async def collect(msg: Msg) -> None:
                ev = rt.codec.decode(msg.data)
                if isinstance(ev, FeedRecord):
                    b.records.append(ev)

            await rt.nc.subscribe(rt.topo.feed("FG001"), cb=collect)
            try:
                yield b
            finally:
                await poller.stop()


async def test_one_record_per_new_value(bench: Bench) -> None:
    bench.emu.set_value(63)
    assert await bench.poller.step() == 3600.0
    (rec,) = await wait_for(lambda: bench.records, what="the FG001 record")
    today = int(NOW) // 86400 * 86400
    assert rec.record_key == str(today) and rec.ts == today * 1000
    assert rec.data["value"] == 63 and rec.data["classification"] == "Greed"
    assert rec.data["time_until_update"] == 17 * 3600 and rec.data["source"] == "alternative.me"
    await bench.poller.step()  # the same day's value again: nothing new
    await bench.rt.publisher.flush()
    assert len(bench.records) == 1 and bench.emu.switch.count(FNG_PATH) == 2
    assert bench.poller.health() == (True, "fear & greed 63 (Greed)")


async def test_garbage_html_and_api_errors_publish_nothing(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    emu, poller = bench.emu, bench.poller
    with caplog.at_level(logging.INFO, logger="assetsync.collector_crypto.sentiment"):
        emu.switch.add(Fault("garbage", FNG_PATH, times=2))
        assert await poller.step() < 1.0  # retried with backoff, not an hour later
        await poller.step()
        emu.switch.add(Fault("html", FNG_PATH, times=1))
        await poller.step()
        emu.error = "Service temporarily unavailable."
        await poller.step()
        emu.switch.add(Fault("5xx", FNG_PATH, times=1))
        await poller.step()
        emu.error = None
        assert "failing: http_503" in poller.health()[1]
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        # One line per change of state (the repeated garbage is not logged twice), each with its reason.
        assert len(lines) == 4
        assert "not the index's JSON" in lines[0] and "HTML" in lines[1]
        assert "Service temporarily unavailable." in lines[2] and "HTTP 503" in lines[3]
        m = bench.rt.metrics
        assert m.value("assetsync_fear_greed_failures_total", {"kind": "garbage"}) == 2
        assert bench.records == []
        await poller.step()
        await wait_for(lambda: bench.records, what="a record once it works again")
        assert any("works again" in r.getMessage() for r in caplog.records)
    assert "failing" not in poller.health()[1]

"""The feed poller against the emulator: which codes it publishes, only on change, LQ001 per hour."""

from __future__ import annotations

import time
from typing import Any

from assetsync.events import FeedRecord
from assetsync_collector_okx.poller import OkxFeeds
from assetsync_emulators.common import Fault

from tests.collector_okx.conftest import Harness

HOUR = 3_600_000


def codes(h: Harness) -> list[str]:
    return [e.code for e in h.of(FeedRecord)]


async def test_public_only_publishes_tickers_and_liquidations(harness: Harness) -> None:
    sync = harness.make(keys=False)
    assert not sync.settings.okx_account_on()
    feeds = OkxFeeds(sync, harness.publish)
    report = await feeds.poll(account=False)
    assert report.failed == {} and codes(harness) == ["OKX001"]
    tick = harness.of(FeedRecord)[0]
    assert tick.data["quote"] == "USDT" and len(tick.data["tickers"]) == 7  # every USDT market (< 50)
    assert harness.emu.switch.count("/api/v5/account/") == harness.emu.switch.count("/api/v5/trade/") == 0
    harness.events.clear()
    await feeds.poll_liquidations()
    lq = harness.of(FeedRecord)
    assert lq and {e.code for e in lq} == {"LQ001"}
    assert {e.data["uly"] for e in lq} == {"BTC-USDT", "ETH-USDT"}
    hour = int(time.time() * 1000) // HOUR * HOUR - HOUR
    assert all(e.data["hour_start"] == hour and e.data["count"] > 0 for e in lq)
    # The counts are exactly the emulator's liquidations of that hour (paged through with `after`).
    want = 0
    after = hour + HOUR
    while True:
        page = harness.emu.liquidations(
            {"instType": "SWAP", "uly": "BTC-USDT", "after": str(after)}, harness.emu.now_ms()
        )
        got = page[0]["details"]
        want += sum(1 for d in got if hour <= int(d["ts"]) < hour + HOUR)
        if len(got) < 100 or int(got[-1]["ts"]) < hour:
            break
        after = int(got[-1]["ts"])
    assert sum(e.data["count"] for e in lq if e.data["uly"] == "BTC-USDT") == want
    harness.events.clear()
    await feeds.poll_liquidations()
    assert harness.of(FeedRecord) == []  # once per closed hour


async def test_account_feeds_publish_only_on_change(make_settings: Any, harness: Harness) -> None:
    now = [time.time()]
    harness.emu.clock = lambda: now[0]
    sync = harness.make(overrides={"market": {"watchlist": ["BTC", "ETH", "PEPE"]}})
    feeds = OkxFeeds(sync, harness.publish, clock=lambda: now[0])
    await feeds.poll(account=True)
    got = codes(harness)
    assert sorted(set(got)) == ["OKX001", "OKX002", "OKX003", "OKX004", "OKX005"]
    fills = [e for e in harness.of(FeedRecord) if e.code == "OKX004"]
    assert sorted(f.record_key for f in fills) == sorted(
        f"{f.inst_id}:{f.trade_id}" for f in harness.emu.fills
    )
    tickers = next(e for e in harness.of(FeedRecord) if e.code == "OKX001")
    assert [t["base"] for t in tickers.data["tickers"]] == ["BTC", "ETH"] and tickers.data["missing"] == [
        "PEPE"
    ]
    positions = next(e for e in harness.of(FeedRecord) if e.code == "OKX002")
    assert {p["inst_id"] for p in positions.data["positions"]} == {"BTC-USDT-SWAP", "ETH-USDT-SWAP"}
    orders = next(e for e in harness.of(FeedRecord) if e.code == "OKX003")
    assert len(orders.data["orders"]) == 3
    limits = next(e for e in harness.of(FeedRecord) if e.code == "OKX005")
    assert limits.data["level"] == "Lv1" and limits.data["fees"][0]["taker"] == 0.001
    # Nothing changed (same instant at the exchange): nothing is published again.
    harness.events.clear()
    await feeds.poll(account=True)
    assert codes(harness) == []
    # A new fill: one OKX004 record, keyed by the fill.
    fill = harness.emu.trade("BTC-USDT", "buy", 0.002)
    await feeds.poll(account=True)
    assert [(e.code, e.record_key) for e in harness.of(FeedRecord)] == [
        ("OKX004", f"BTC-USDT:{fill.trade_id}")
    ]


async def test_a_failing_endpoint_does_not_stop_the_others(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("html", path_prefix="/api/v5/account/positions"))
    feeds = OkxFeeds(sync, harness.publish)
    report = await feeds.poll(account=True)
    assert set(report.failed) == {"OKX002"} and "HTML page" in report.failed["OKX002"]
    assert "OKX002" not in codes(harness) and {"OKX001", "OKX003"} <= set(codes(harness))

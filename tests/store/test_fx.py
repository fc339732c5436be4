"""FX for the snapshot (CONTRACTS §6): the ECB emulator's real XML, manual rates, the stored rate, bad input."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from assetsync import events as ev
from assetsync.embedded import EmbeddedNats
from assetsync.fx import FxError, ecb_cross, parse_ecb
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.tasks import request_task
from assetsync_emulators.common import Fault, serve
from assetsync_emulators.ecb import DAILY_PATH, EcbEmulator
from assetsync_feishu_writer.rows import log_cells
from assetsync_store.service import StoreService, build
from nats.aio.msg import Msg

from tests.support import wait_for

T0 = 1_763_800_000_000
FRIDAY_EVENING = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)


@dataclass
class FxHarness:
    rt: Runtime
    store: StoreService
    ecb: EcbEmulator

    async def rows(self, sql: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.store.db.fetchall(sql)]

    async def hold(self, *holdings: ev.Holding) -> None:
        await self.rt.publisher.publish_many(list(holdings))
        want = self.store.db.rows_written + len(holdings)
        await wait_for(lambda: self.store.db.rows_written >= want, what="holdings stored")


Factory = Callable[..., Any]


@pytest.fixture
async def fx_store(nats_server: EmbeddedNats, make_settings: Any) -> AsyncIterator[Factory]:
    """Start a store whose FX source is an ECB emulator; `await fx_store(fx={...}, fx_rates={...})`."""
    async with AsyncExitStack() as stack:

        async def start(**asset_sync: Any) -> FxHarness:
            ecb = EcbEmulator(clock=lambda: FRIDAY_EVENING)
            url = await stack.enter_async_context(serve(ecb.app))
            conf = {"asset_sync": {"fx": {"source": "ecb", "base_url": url, "timeout_seconds": 1.0}}}
            for k, v in asset_sync.items():
                if isinstance(v, dict) and isinstance(conf["asset_sync"].get(k), dict):
                    conf["asset_sync"][k].update(v)
                else:
                    conf["asset_sync"][k] = v
            settings = make_settings(conf)
            rt = await stack.enter_async_context(
                open_runtime(settings, nats_server.url, name="fx-test", metrics=Metrics())
            )
            rt.scheduling = False
            svc = build(rt)
            assert isinstance(svc, StoreService)
            await svc.start(stack)
            return FxHarness(rt, svc, ecb)

        yield start


def usdt(asset: str, qty: float, price: float, cost: float | None = None) -> ev.Holding:
    return ev.Holding(
        source="binance", asset=asset, quantity=qty, price=price, avg_cost=cost, currency="USDT", as_of=T0
    )


def fund(code: str, qty: float, price: float) -> ev.Holding:
    return ev.Holding(
        source="xueqiu", asset=code, quantity=qty, price=price, avg_cost=None, currency="CNY",
        as_of=T0, asset_type="fund",
    )  # fmt: skip


def test_the_emulators_document_parses_like_the_real_one() -> None:
    ecb = EcbEmulator(clock=lambda: FRIDAY_EVENING)
    doc = ecb.document()
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>') and b"gesmes:Envelope" in doc
    rates = parse_ecb(doc)
    assert rates.day == "2026-12-04" and len(rates.per_eur) == 29
    rate, why = ecb_cross("USDT", "CNY", rates)
    assert rate == pytest.approx(rates.per_eur["CNY"] / rates.per_eur["USD"]) and not why
    # Saturday morning and the Monday before 16:00 CET still serve Friday's rates.
    assert ecb.reference_day(FRIDAY_EVENING + timedelta(hours=15)) == FRIDAY_EVENING.date()
    assert ecb.reference_day(datetime(2026, 12, 7, 14, 0, tzinfo=UTC)).isoformat() == "2026-12-04"
    # Christmas and Boxing Day are TARGET holidays: no rates on them.
    assert ecb.reference_day(datetime(2026, 12, 28, 12, 0, tzinfo=UTC)).isoformat() == "2026-12-24"


def test_bad_documents_are_no_rate_with_a_reason() -> None:
    ecb = EcbEmulator(clock=lambda: FRIDAY_EVENING)
    with pytest.raises(FxError, match="HTML"):
        parse_ecb(b"<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(FxError, match="truncated"):
        doc = ecb.document()
        parse_ecb(doc[: len(doc) // 2])
    ecb.zero.add("USD")
    rates = parse_ecb(ecb.document())
    rate, why = ecb_cross("USDT", "CNY", rates)
    assert rate is None and "'0'" in why


async def test_snapshot_converts_with_the_ecb_rate_and_records_it(fx_store: Factory) -> None:
    h: FxHarness = await fx_store()
    await h.hold(usdt("BTC", 1, 1000.0, 800.0), fund("SH510300", 100, 4.0))
    published: list[ev.Snapshot] = []

    async def on_snapshot(msg: Msg) -> None:
        got = h.rt.codec.decode(msg.data)
        if isinstance(got, ev.Snapshot):
            published.append(got)

    await h.rt.nc.subscribe(h.rt.topo.snapshot(), cb=on_snapshot)
    result, stored = await request_task(h.rt, "snapshot", timeout=30)
    assert result.status == "success" and stored, result.message
    rate = h.ecb.rate_on("CNY", FRIDAY_EVENING.date()) / h.ecb.rate_on("USD", FRIDAY_EVENING.date())
    snap = (await h.rows("SELECT * FROM snapshots"))[0]
    assert snap["total_value"] == pytest.approx(1000 * rate + 400)
    assert snap["total_cost"] == pytest.approx(800 * rate + 400)
    # The rate and its date are recorded with the snapshot, in the 日志 message and kept for later.
    assert f"USDT→CNY {rate:.6g} (ecb 2026-12-04)" in result.message
    used = await h.rows("SELECT currency, rate, rate_date, source FROM snapshot_fx")
    assert used == [
        {"currency": "USDT", "rate": pytest.approx(rate), "rate_date": "2026-12-04", "source": "ecb"}
    ]
    kept = await h.rows("SELECT currency, base, rate_date FROM fx_rates")
    assert kept == [{"currency": "USDT", "base": "CNY", "rate_date": "2026-12-04"}]
    assert h.ecb.switch.count(DAILY_PATH) == 1
    # The Snapshot event carries it too (additive field), and the 日志 row shows it.
    (snap_event,) = await wait_for(lambda: published, what="the snapshot event")
    ((currency, fx_used),) = snap_event.fx.items()
    assert currency == "USDT" and (fx_used.date, fx_used.source) == ("2026-12-04", "ecb")
    assert fx_used.rate == pytest.approx(rate)
    assert "USDT→CNY" in log_cells(result)["错误信息"] and "2026-12-04" in log_cells(result)["错误信息"]


async def test_manual_rate_wins_and_source_is_not_asked(fx_store: Factory) -> None:
    h: FxHarness = await fx_store(fx_rates={"USDT": 7.0})
    await h.hold(usdt("BTC", 1, 1000.0))
    result, _ = await request_task(h.rt, "snapshot", timeout=30)
    assert result.status == "success"
    assert (await h.rows("SELECT total_value FROM snapshots"))[0]["total_value"] == 7000.0
    assert "USDT→CNY 7 (manual)" in result.message
    assert h.ecb.switch.count(DAILY_PATH) == 0


async def test_source_down_uses_the_stored_rate(fx_store: Factory) -> None:
    h: FxHarness = await fx_store()
    await h.hold(usdt("BTC", 1, 1000.0))
    first, _ = await request_task(h.rt, "snapshot", timeout=30)
    assert first.status == "success"
    h.ecb.switch.add(Fault("5xx"))
    result, _ = await request_task(h.rt, "snapshot", timeout=30)
    assert result.status == "success", result.message
    assert "(ecb (stored) 2026-12-04)" in result.message


async def test_stored_rate_older_than_max_age_is_not_used(fx_store: Factory) -> None:
    h: FxHarness = await fx_store(fx={"max_age_days": 0})
    await h.hold(usdt("BTC", 1, 1000.0))
    assert (await request_task(h.rt, "snapshot", timeout=30))[0].status == "success"
    h.ecb.switch.add(Fault("html"))
    result, _ = await request_task(h.rt, "snapshot", timeout=30)
    assert result.status == "failed"
    assert "asset_sync.fx.max_age_days" in result.message and "HTML" in result.message


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("5xx", "HTTP 503"),
        ("html", "HTML"),
        ("truncate", "truncated"),
        ("zero", "'0'"),
        ("timeout", "did not answer within 1s"),
    ],
)
async def test_no_rate_at_all_fails_naming_the_keys(fx_store: Factory, fault: str, reason: str) -> None:
    h: FxHarness = await fx_store()
    if fault == "truncate":
        h.ecb.truncate = True
    elif fault == "zero":
        h.ecb.zero.add("USD")
    else:
        # The stall outlasts the 1 s FX timeout but ends before the emulator shuts down.
        h.ecb.switch.add(Fault(fault, delay=2.5))  # type: ignore[arg-type]
    await h.hold(usdt("BTC", 1, 1000.0), fund("SH510300", 100, 4.0))
    started = time.monotonic()
    result, _ = await request_task(h.rt, "snapshot", timeout=30)
    took = time.monotonic() - started
    assert result.status == "failed"
    msg = result.message
    assert "asset_sync.fx_rates" in msg and "asset_sync.fx.source" in msg and "USDT" in msg, msg
    assert reason in msg and "BTC" in msg, msg
    # Never a total of 0: no snapshot row at all.
    assert await h.rows("SELECT * FROM snapshots") == []
    assert took < 15, f"the FX failure took {took:.1f}s"

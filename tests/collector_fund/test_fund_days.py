"""Funds without Feishu, no duplicate writes on days without new data, holidays and the calendar's end."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from datetime import date, datetime
from typing import Any

import pytest
from assetsync.config import ConfigError
from assetsync.embedded import EmbeddedNats
from assetsync.events import Holding, PriceTick
from assetsync.metrics import Metrics
from assetsync.runtime import open_runtime
from assetsync.tasks import request_task
from assetsync_collector_fund.service import FundCollector, build
from assetsync_collector_fund.trading_days import TradingCalendar
from assetsync_emulators.xueqiu import SHANGHAI, XueqiuEmulator
from nats.aio.msg import Msg

from tests.support import wait_for

SATURDAY = datetime(2026, 11, 21, 11, 0, tzinfo=SHANGHAI)


def manual_only(emu: XueqiuEmulator, url: str, manual: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = emu.config_overrides(url, with_funds=False)
    out["asset_sync"]["xueqiu"]["timeout_seconds"] = 0.5
    out["asset_sync"]["assets"] = {"funds": {"manual": manual or []}}
    return out


async def test_without_feishu_a_startup_line_names_the_keys(
    nats_server: EmbeddedNats,
    make_settings: Any,
    emu: XueqiuEmulator,
    xq_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(manual_only(emu, xq_url))
    async with open_runtime(settings, nats_server.url, name="t-nofeishu", metrics=Metrics()) as rt:
        with caplog.at_level(logging.WARNING, logger="assetsync.collector_fund"):
            svc = build(rt)
        assert isinstance(svc, FundCollector)
    lines = [r.getMessage() for r in caplog.records if "no funds to sync" in r.getMessage()]
    assert len(lines) == 1
    for key in ("mcp_server.app_id", "asset_sync.feishu.app_token", "asset_sync.assets.funds.manual"):
        assert key in lines[0]
    caplog.clear()
    settings = make_settings(manual_only(emu, xq_url, [{"code": "110011", "quantity": 1}]))
    async with open_runtime(settings, nats_server.url, name="t-nofeishu2", metrics=Metrics()) as rt:
        with caplog.at_level(logging.INFO, logger="assetsync.collector_fund"):
            build(rt)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "assetsync.collector_fund"]
    assert "1 funds of asset_sync.assets.funds.manual" in line and "asset_sync.feishu.app_token" in line


async def test_manual_funds_by_code_then_no_new_data_writes_nothing(
    nats_server: EmbeddedNats, make_settings: Any, emu: XueqiuEmulator, xq_url: str
) -> None:
    emu.clock = lambda: SATURDAY  # the market is closed: the quote and NAV stay Friday's
    manual = [
        {"code": "SH510300", "quantity": 1000, "avg_cost": 3.5},
        {"code": "110011", "quantity": 300, "avg_cost": 3.9},
    ]
    settings = make_settings(manual_only(emu, xq_url, manual))
    async with open_runtime(settings, nats_server.url, name="t-nonew", metrics=Metrics()) as rt:
        svc = build(rt)
        assert isinstance(svc, FundCollector)
        seen: list[Any] = []

        async def collect(msg: Msg) -> None:
            seen.append(rt.codec.decode(msg.data))

        await rt.nc.subscribe(rt.topo.holding("xueqiu"), cb=collect)
        await rt.nc.subscribe(rt.topo.price("xueqiu"), cb=collect)
        async with AsyncExitStack() as stack:
            await svc.start(stack)
            first, _ = await request_task(rt, "fund", timeout=20, stored_timeout=0.05)
            assert first.status == "success" and (first.records, first.total) == (2, 2), first
            await wait_for(lambda: len(seen) == 4, what="2 ticks and 2 holdings")
            assert "no new data" not in first.message

            again, _ = await request_task(rt, "fund", timeout=20, stored_timeout=0.05)
            assert again.status == "success"
            assert again.message.startswith("2/2 funds priced") and "no new data" in again.message
            assert "2026-11-20" in again.message
            # Give a stray publish the chance to arrive: a third run with a change must be the next event.
            emu.set_price("SH510300", 4.321)
            third, _ = await request_task(rt, "fund", timeout=20, stored_timeout=0.05)
            assert "1 unchanged" in third.message
            await wait_for(lambda: len(seen) == 6, what="one new tick and holding")
            assert {e.asset for e in seen[4:]} == {"SH510300"}
            assert [e.price for e in seen[4:] if isinstance(e, (Holding, PriceTick))] == [4.321, 4.321]


async def test_holidays_override_the_calendar_and_cover_unknown_years(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cal = TradingCalendar(holidays=[date(2027, 2, 8), date(2026, 11, 20)])
    assert await cal.is_trading_day(date(2026, 11, 20)) is False  # a user-declared closure
    assert await cal.is_trading_day(date(2026, 11, 19)) is True
    assert cal.known_until() == date(2026, 12, 31)
    with caplog.at_level(logging.WARNING, logger="assetsync.collector_fund.trading_days"):
        assert cal.is_trading_day_blocking(date(2027, 2, 8)) is False  # Spring Festival 2027, listed
        assert cal.is_trading_day_blocking(date(2027, 2, 5)) is True
    # 2027 has holidays listed: no "unknown year" warning and no coverage warning.
    assert not caplog.records
    assert cal.coverage_warning(date(2026, 12, 6)) == ""


def test_a_month_before_the_data_ends_it_says_how_to_fix_it(caplog: pytest.LogCaptureFixture) -> None:
    cal = TradingCalendar()
    assert cal.coverage_warning(date(2026, 11, 20)) == ""
    with caplog.at_level(logging.WARNING, logger="assetsync.collector_fund.trading_days"):
        text = cal.warn_if_ending(date(2026, 12, 6))
        cal.warn_if_ending(date(2026, 12, 6))
    assert text == "XSHG holidays known only until 2026-12-31: list 2027's in asset_sync.scheduler.holidays"
    (logged,) = caplog.records
    assert "every weekday counts as a trading day" in logged.getMessage()
    assert "upgrade exchange-calendars" in logged.getMessage()
    assert cal.is_trading_day_blocking(date(2027, 10, 1)) is True  # unknown: weekday, with a warning


def test_holidays_key_is_validated(make_settings: Any) -> None:
    s = make_settings({"asset_sync": {"scheduler": {"holidays": ["2027-02-08", "2027-02-09"]}}})
    assert s.holidays == (date(2027, 2, 8), date(2027, 2, 9))
    with pytest.raises(ConfigError, match=r"asset_sync\.scheduler\.holidays\[1\]"):
        make_settings({"asset_sync": {"scheduler": {"holidays": ["2027-02-08", "Feb 9"]}}})
    with pytest.raises(ConfigError, match=r"asset_sync\.assets\.funds\.manual\[0\]\.code"):
        make_settings({"asset_sync": {"assets": {"funds": {"manual": [{"quantity": 1}]}}}})

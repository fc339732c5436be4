"""XSHG trading days: holidays, weekends, beyond the library's data, and building only once."""

from __future__ import annotations

import logging
from datetime import date

import pytest
from assetsync_collector_fund.trading_days import TradingCalendar


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar()


@pytest.mark.parametrize(
    ("day", "trading"),
    [
        (date(2026, 10, 1), False),  # National Day holiday (a Thursday)
        (date(2026, 10, 7), False),  # still in the Golden Week closure (a Wednesday)
        (date(2026, 10, 9), True),  # back to trading
        (date(2026, 11, 20), True),  # an ordinary Friday
        (date(2026, 11, 21), False),  # Saturday
        (date(2026, 11, 22), False),  # Sunday
        (date(2026, 2, 17), False),  # Spring Festival
    ],
)
async def test_known_days(cal: TradingCalendar, day: date, trading: bool) -> None:
    assert await cal.is_trading_day(day) is trading


async def test_built_once_and_reused(cal: TradingCalendar) -> None:
    await cal.warm()
    await cal.is_trading_day(date(2026, 11, 20))
    assert cal.is_trading_day_blocking(date(2026, 11, 23)) is True
    assert cal.builds == 1


def test_beyond_the_holiday_data_falls_back_to_weekdays(
    cal: TradingCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="assetsync.collector_fund.trading_days"):
        assert cal.is_trading_day_blocking(date(2031, 3, 5)) is True  # a Wednesday
        assert cal.is_trading_day_blocking(date(2031, 3, 8)) is False  # a Saturday
    warnings = [r for r in caplog.records if "upgrade exchange-calendars" in r.getMessage()]
    assert len(warnings) == 1  # once per year, not per check

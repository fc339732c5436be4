"""Shanghai Stock Exchange trading days (exchange-calendars XSHG), built once, lazily, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from dataclasses import dataclass
from datetime import date

log = logging.getLogger("assetsync.collector_fund.trading_days")


@dataclass(frozen=True)
class _Sessions:
    first: date
    last: date
    days: frozenset[date]


class TradingCalendar:
    """Answers "is this a trading day?"; the calendar (about 1 s to import and build) is made once."""

    def __init__(self, exchange: str = "XSHG") -> None:
        self.exchange = exchange
        self._sessions: _Sessions | None = None
        self._lock = threading.Lock()
        self._warned_years: set[int] = set()
        self.builds = 0

    def _load(self) -> _Sessions:
        """The sessions as plain dates (blocking: pandas import and calendar build; run in a thread)."""
        with self._lock:
            if self._sessions is None:
                import exchange_calendars

                with warnings.catch_warnings():
                    # exchange-calendars trips a pandas deprecation warning while building; not ours to fix.
                    warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
                    cal = exchange_calendars.get_calendar(self.exchange)
                    days = frozenset(ts.date() for ts in cal.sessions)
                self._sessions = _Sessions(min(days), max(days), days)
                self.builds += 1
            return self._sessions

    async def warm(self) -> None:
        """Build the calendar now, in a worker thread (so the first scheduled check is instant)."""
        await asyncio.to_thread(self._load)

    async def is_trading_day(self, day: date) -> bool:
        """True on XSHG sessions; outside the library's holiday data, Monday-Friday (with a warning)."""
        if self._sessions is None:
            await asyncio.to_thread(self._load)
        return self.is_trading_day_blocking(day)

    def is_trading_day_blocking(self, day: date) -> bool:
        """Same answer, computed in this thread (builds the calendar here if needed)."""
        s = self._sessions or self._load()
        if s.first <= day <= s.last:
            return day in s.days
        # exchange-calendars records Chinese holidays only up to a year it knows (e.g. 2026):
        # assume weekdays trade rather than stop the fund job, and say how to fix it.
        if day.year not in self._warned_years:
            self._warned_years.add(day.year)
            log.warning(
                "%s holidays are known from %s to %s only; deciding %s by weekday — "
                "upgrade exchange-calendars for the %d holiday list",
                self.exchange,
                s.first,
                s.last,
                day,
                day.year,
            )
        return day.weekday() < 5

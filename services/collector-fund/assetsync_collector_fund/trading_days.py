"""Shanghai Stock Exchange trading days: exchange-calendars XSHG where it knows the year, plus user holidays.

exchange-calendars hard-codes Chinese holidays up to a year (4.13.2: 2026). Past that it would count
Spring Festival and National Day as trading days, so beyond its data we decide by weekday minus
`asset_sync.scheduler.holidays`, and say so a month before its data ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

log = logging.getLogger("assetsync.collector_fund.trading_days")

HOLIDAYS_KEY = "asset_sync.scheduler.holidays"
WARN_AHEAD = timedelta(days=31)


@dataclass(frozen=True)
class _Sessions:
    first: date
    known_until: date  # the last day whose holidays the library records
    days: frozenset[date]


class TradingCalendar:
    """Answers "is this a trading day?"; the calendar (about 1 s to import and build) is made once."""

    def __init__(self, exchange: str = "XSHG", *, holidays: Iterable[date] = ()) -> None:
        self.exchange = exchange
        self.holidays = frozenset(holidays)
        self._sessions: _Sessions | None = None
        self._lock = threading.Lock()
        self._warned: set[object] = set()
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
                # Precomputed calendars (XSHG) end where their holiday list ends; others at their last session.
                bound = type(cal).bound_max()
                known = bound.date() if bound is not None else max(days)
                self._sessions = _Sessions(min(days), min(known, max(days)), days)
                self.builds += 1
            return self._sessions

    async def warm(self) -> None:
        """Build the calendar now, in a worker thread (so the first scheduled check is instant)."""
        await asyncio.to_thread(self._load)

    async def is_trading_day(self, day: date) -> bool:
        """True on XSHG sessions not listed as holidays; beyond the library's data, weekdays."""
        if self._sessions is None:
            await asyncio.to_thread(self._load)
        return self.is_trading_day_blocking(day)

    def known_until(self) -> date:
        """The last day whose holidays exchange-calendars records."""
        return (self._sessions or self._load()).known_until

    def is_trading_day_blocking(self, day: date) -> bool:
        """Same answer, computed in this thread (builds the calendar here if needed)."""
        s = self._sessions or self._load()
        if day in self.holidays:
            return False
        if s.first <= day <= s.known_until:
            return day in s.days
        if not any(h.year == day.year for h in self.holidays) and day.year not in self._warned:
            self._warned.add(day.year)
            log.warning(
                "%s holidays for %d are unknown (exchange-calendars knows them until %s): deciding %s by "
                "weekday — list %d's market holidays in %s or upgrade exchange-calendars",
                self.exchange,
                day.year,
                s.known_until,
                day,
                day.year,
                HOLIDAYS_KEY,
            )
        return day.weekday() < 5

    def coverage_warning(self, today: date) -> str:
        """A warning when the library's holiday data ends within a month and nothing covers the gap."""
        end = self.known_until()
        next_year = end.year + 1
        if today < end - WARN_AHEAD or any(h.year == next_year for h in self.holidays):
            return ""
        return (
            f"{self.exchange} holidays are known only until {end} (exchange-calendars); from "
            f"{end + timedelta(days=1)} every weekday counts as a trading day — list {next_year}'s market "
            f'holidays in {HOLIDAYS_KEY} (e.g. ["{next_year}-01-01"]) or upgrade exchange-calendars'
        )

    def warn_if_ending(self, today: date) -> str:
        """Log the coverage warning once per day it applies; returns a short form for a run's message."""
        text = self.coverage_warning(today)
        if not text:
            return ""
        if ("coverage", today) not in self._warned:
            self._warned.add(("coverage", today))
            log.warning("%s", text)
        end = self.known_until()
        return f"{self.exchange} holidays known only until {end}: list {end.year + 1}'s in {HOLIDAYS_KEY}"

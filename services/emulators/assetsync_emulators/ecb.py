"""ECB euro foreign exchange reference rates emulator (www.ecb.europa.eu).

Serves `GET /stats/eurofxref/eurofxref-daily.xml` exactly as the ECB does: the gesmes envelope, one
`<Cube time='YYYY-MM-DD'>` holding `<Cube currency='XXX' rate='n.nnnn'/>` per currency (foreign
units per 1 EUR), published on TARGET working days around 16:00 CET; before that, and on weekends
and TARGET holidays, the previous working day's rates are served. `text/xml`, with `Last-Modified`.

Rates are generated deterministically from the currency and the day (a small daily wave around a
realistic level), so a test sees the same numbers on every run; `set_rate` pins exact values.
Switchable faults: the shared ones (`5xx`, `html`, `timeout`, `drop` via `switch`), plus
`truncate` (the XML cut off mid-document) and `zero` (a currency answered with rate 0).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from assetsync_emulators.common import FaultMiddleware, FaultSwitch

FRANKFURT = ZoneInfo("Europe/Berlin")
DAILY_PATH = "/stats/eurofxref/eurofxref-daily.xml"
PUBLISHED_AT = time(16, 0)

# The currencies of the daily reference rates (as published in 2026) and typical levels per EUR.
DEFAULT_RATES: dict[str, float] = {
    "USD": 1.0812,
    "JPY": 162.47,
    "CZK": 24.963,
    "DKK": 7.4604,
    "GBP": 0.85423,
    "HUF": 391.25,
    "PLN": 4.2618,
    "RON": 4.9771,
    "SEK": 11.2375,
    "CHF": 0.9417,
    "ISK": 148.90,
    "NOK": 11.6205,
    "TRY": 36.842,
    "AUD": 1.6458,
    "BRL": 6.1732,
    "CAD": 1.4892,
    "CNY": 7.7531,
    "HKD": 8.4277,
    "IDR": 17214.73,
    "ILS": 4.0118,
    "INR": 90.3345,
    "KRW": 1497.52,
    "MXN": 20.7312,
    "MYR": 4.8216,
    "NZD": 1.8112,
    "PHP": 62.891,
    "SGD": 1.4537,
    "THB": 37.514,
    "ZAR": 19.6638,
}


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stable across runs and processes)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def target_holidays(year: int) -> set[date]:
    """TARGET2 closing days: New Year, Good Friday, Easter Monday, 1 May, 25 and 26 December."""
    # Anonymous Gregorian algorithm for Easter Sunday.
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ll = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ll) // 451
    month = (h + ll - 7 * m + 114) // 31
    day = (h + ll - 7 * m + 114) % 31 + 1
    easter = date(year, month, day)
    return {
        date(year, 1, 1),
        easter - timedelta(days=2),
        easter + timedelta(days=1),
        date(year, 5, 1),
        date(year, 12, 25),
        date(year, 12, 26),
    }


def is_target_day(d: date) -> bool:
    return d.weekday() < 5 and d not in target_holidays(d.year)


@dataclass
class EcbEmulator:
    """State of the emulated ECB: rate levels, pinned rates, the clock and the faults."""

    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    switch: FaultSwitch = field(default_factory=FaultSwitch)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    pinned: dict[str, float] = field(default_factory=dict)
    truncate: bool = False  # answer the XML cut off mid-document (a broken proxy or connection)
    zero: set[str] = field(default_factory=set)  # currencies answered with rate='0'
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_rate(self, currency: str, rate: float) -> None:
        """Pin the rate (units per EUR) of a currency on every day."""
        with self._lock:
            self.pinned[currency.upper()] = rate

    def reference_day(self, now: datetime | None = None) -> date:
        """The date of the rates served now: today after 16:00 CET on a TARGET day, else the last one."""
        local = (now or self.clock()).astimezone(FRANKFURT)
        day = local.date()
        if not (is_target_day(day) and local.time() >= PUBLISHED_AT):
            day -= timedelta(days=1)
            while not is_target_day(day):
                day -= timedelta(days=1)
        return day

    def rate_on(self, currency: str, day: date) -> float:
        """Units of `currency` per EUR on `day` (the pinned value, or the generated one)."""
        with self._lock:
            if currency in self.pinned:
                return self.pinned[currency]
            base = self.rates[currency]
        wave = 0.01 * math.sin(day.toordinal() / 9.0 + _unit(currency, "phase") * 6.0)
        digits = 4 if base < 100 else 2
        return round(base * (1 + wave), digits)

    def config_overrides(self, url: str) -> dict[str, object]:
        """Settings pointing the stack's FX source at this emulator served at `url`."""
        return {"asset_sync": {"fx": {"source": "ecb", "base_url": url}}}

    def document(self, now: datetime | None = None) -> bytes:
        """The daily XML as the ECB publishes it (tabs, single-quoted attributes)."""
        day = self.reference_day(now)
        with self._lock:
            currencies = list(self.rates)
            zero = set(self.zero)
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
            'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">',
            "\t<gesmes:subject>Reference rates</gesmes:subject>",
            "\t<gesmes:Sender>",
            "\t\t<gesmes:name>European Central Bank</gesmes:name>",
            "\t</gesmes:Sender>",
            "\t<Cube>",
            f"\t\t<Cube time='{day.isoformat()}'>",
        ]
        for cur in currencies:
            rate = "0" if cur in zero else f"{self.rate_on(cur, day):g}"
            lines.append(f"\t\t\t<Cube currency='{cur}' rate='{rate}'/>")
        lines += ["\t\t</Cube>", "\t</Cube>", "</gesmes:Envelope>", ""]
        return "\n".join(lines).encode()

    @property
    def app(self) -> ASGIApp:
        """The ASGI app, behind the fault switch."""
        return FaultMiddleware(Starlette(routes=[Route(DAILY_PATH, self._daily)]), self.switch)

    async def _daily(self, request: Request) -> Response:
        now = self.clock()
        body = self.document(now)
        if self.truncate:
            body = body[: len(body) * 2 // 3]
        published = datetime.combine(self.reference_day(now), PUBLISHED_AT, FRANKFURT)
        return Response(
            body,
            media_type="text/xml",
            headers={"Last-Modified": format_datetime(published.astimezone(UTC), usegmt=True)},
        )

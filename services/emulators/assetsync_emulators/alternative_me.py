"""alternative.me's Crypto Fear & Greed Index API emulator (`https://api.alternative.me/fng/`).

`GET /fng/` as the real API serves it: `limit` (default 1; 0 = the whole history, which starts on
2018-02-01), `format` (`json`, the default, or `csv`), `date_format` (`us` MM-DD-YYYY, `cn`/`kr`
YYYY-MM-DD, `world` DD-MM-YYYY; default: unix seconds). One value a day, stamped at 00:00 UTC,
newest first, every number a string; the newest entry alone carries `time_until_update` (seconds
to the next 00:00 UTC). Errors are answered the way the API does: HTTP 200 with `metadata.error`.

Values follow a deterministic bounded random walk per seed (a test sees the same numbers on every
run); `set_value` pins today's. Switchable faults: the shared `FaultSwitch` (`5xx`, `429`, `timeout`,
`html`, `garbage`, `drop`) plus `error` (a `metadata.error` answer, e.g. the API's own outage text).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from assetsync_emulators.common import FaultMiddleware, FaultSwitch

FNG_PATH = "/fng/"
DAY_S = 86_400
FIRST_DAY = int(datetime(2018, 2, 1, tzinfo=UTC).timestamp())
NAME = "Fear and Greed Index"
DATE_FORMATS = {"us": "%m-%d-%Y", "cn": "%Y-%m-%d", "kr": "%Y-%m-%d", "world": "%d-%m-%Y"}


def classify(value: int) -> str:
    """alternative.me's class of an index value."""
    if value <= 24:
        return "Extreme Fear"
    if value <= 46:
        return "Fear"
    if value <= 54:
        return "Neutral"
    if value <= 75:
        return "Greed"
    return "Extreme Greed"


def _mix(*ints: int) -> float:
    """A deterministic number in [0, 1) from integers (splitmix64 finaliser)."""
    mask = (1 << 64) - 1
    x = 0x9E3779B97F4A7C15
    for i in ints:
        x = ((x ^ i) * 0xBF58476D1CE4E5B9) & mask
        x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & mask
    x ^= x >> 29
    return x / 18446744073709551616.0


@dataclass
class AlternativeMeEmulator:
    """The emulated index: its seed, pinned values, the clock and the faults."""

    seed: int = 1
    switch: FaultSwitch = field(default_factory=FaultSwitch)
    clock: Callable[[], float] = time.time
    error: str | None = None  # answer with this `metadata.error` and no data
    pinned: dict[int, int] = field(default_factory=dict)  # day start (unix s) -> value
    _walk: list[int] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def today(self) -> int:
        """Unix seconds of the current day's value (00:00 UTC)."""
        return int(self.clock()) // DAY_S * DAY_S

    def set_value(self, value: int, day: int | None = None) -> None:
        """Pin the value of a day (default today)."""
        with self._lock:
            self.pinned[self.today() if day is None else day] = value

    def value_on(self, day: int) -> int:
        """The index on the day starting at `day`: a walk from 50 with steps of up to ±8, kept in 5..95."""
        with self._lock:
            if day in self.pinned:
                return self.pinned[day]
            n = (day - FIRST_DAY) // DAY_S
            walk = self._walk
            while len(walk) <= n:
                prev = walk[-1] if walk else 50
                step = round((_mix(self.seed, len(walk)) * 2 - 1) * 8)
                nxt = prev + step
                walk.append(min(95, max(5, nxt if 5 <= nxt <= 95 else prev - step)))
            return walk[n]

    def entries(self, limit: int, date_format: str | None) -> list[dict[str, str]]:
        """The newest `limit` daily entries (0 = all), newest first, as the API lists them."""
        today = self.today()
        count = (today - FIRST_DAY) // DAY_S + 1
        n = count if limit <= 0 else min(limit, count)
        out: list[dict[str, str]] = []
        for i in range(n):
            day = today - i * DAY_S
            value = self.value_on(day)
            stamp = (
                datetime.fromtimestamp(day, UTC).strftime(DATE_FORMATS[date_format])
                if date_format
                else str(day)
            )
            entry = {"value": str(value), "value_classification": classify(value), "timestamp": stamp}
            if i == 0:
                entry["time_until_update"] = str(today + DAY_S - int(self.clock()))
            out.append(entry)
        return out

    @property
    def app(self) -> ASGIApp:
        """The ASGI app, behind the fault switch."""
        return FaultMiddleware(Starlette(routes=[Route(FNG_PATH, self._fng)]), self.switch)

    async def _fng(self, request: Request) -> Response:
        q = request.query_params
        raw_limit = q.get("limit", "1")
        fmt = q.get("format", "json").lower()
        date_format = q.get("date_format") or None
        problem = self.error
        if problem is None:
            try:
                limit = int(raw_limit)
            except ValueError:
                problem = "Limit must be an integer."
                limit = 0
            if date_format is not None and date_format not in DATE_FORMATS:
                problem = "Date format must be one of: us, cn, kr, world."
            if fmt not in ("json", "csv"):
                problem = "Format must be json or csv."
        if problem is not None:
            return _json({"name": NAME, "data": [], "metadata": {"error": problem}})
        data = self.entries(limit, date_format)
        if fmt == "csv":
            rows = "\n".join(f"{e['timestamp']},{e['value']},{e['value_classification']}" for e in data)
            return Response(f"date,fng_value,fng_classification\n{rows}\n", media_type="text/csv")
        return _json({"name": NAME, "data": data, "metadata": {"error": None}})


def _json(body: Any) -> Response:
    # alternative.me pretty-prints its JSON with tabs.
    return Response(json.dumps(body, indent="\t"), media_type="application/json")

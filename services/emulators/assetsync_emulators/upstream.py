"""The original host's strategy endpoints (the seed's 9 `upstream` codes), as its Flask app serves them.

Every answer is `{"success": true, "data": …, "timestamp": <unix s>}` (errors: `{"success": false,
"error": …}` with a 4xx). The data evolves once a minute (the host's collectors run every minute)
and is generated deterministically from the coin and the minute, so two polls within a minute get
the same body (a content-hash dedupe sees no news) and a test sees the same numbers on every run.

- AN001 `GET /api/anchor-profit/latest`: the anchor strategy's profit distribution now.
- AN002 `GET|POST /api/anchor-profit/history`: the last `limit` minutes (query, or JSON body on POST).
- AN003 `GET /api/anchor-system/status`: the strategy's monitor state.
- AN004 `GET /api/anchor-system/current-positions[/{coin}]`: open positions (all, or one coin's).
- ES001 `GET /api/escape-signal/latest[/{coin}]`: the escape-the-top signal (market, or one coin).
- ES002 `GET /api/escape-signal/stats`: signal counts over the last 24 h.
- PI001 `GET /api/panic/latest`: the panic index with the hour's liquidations.
- V1V2001 `GET /api/v1v2/latest[/{coin}]`: V1/V2 volume levels per coin.
- ME001 `GET /api/major-events/latest`: major market events of the last day.

Optional HTTP basic auth (`auth`), as when the host sits behind a proxy; switchable faults through
the shared `switch` (5xx, 429, timeout, HTML, garbage).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from assetsync_emulators.common import FaultMiddleware, FaultSwitch

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_COINS: dict[str, float] = {  # coin -> a realistic price level in USDT
    "BTC": 97000.0,
    "ETH": 3600.0,
    "SOL": 210.0,
    "BNB": 690.0,
    "XRP": 2.3,
    "DOGE": 0.39,
}
# The 9 upstream codes and their paths on the host (the seed's api_path; `{coin}` variants above).
PATHS: dict[str, str] = {
    "AN001": "/api/anchor-profit/latest",
    "AN002": "/api/anchor-profit/history",
    "AN003": "/api/anchor-system/status",
    "AN004": "/api/anchor-system/current-positions",
    "ES001": "/api/escape-signal/latest",
    "ES002": "/api/escape-signal/stats",
    "PI001": "/api/panic/latest",
    "V1V2001": "/api/v1v2/latest",
    "ME001": "/api/major-events/latest",
}
MAX_HISTORY = 1440


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stable across runs and processes)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class UpstreamEmulator:
    """State of the emulated host: its coins, clock, optional basic-auth credentials and faults."""

    coins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_COINS))
    switch: FaultSwitch = field(default_factory=FaultSwitch)
    clock: Callable[[], float] = time.time
    auth: tuple[str, str] | None = None  # (user, password) required as HTTP basic auth when set
    started: float = field(default_factory=time.time)

    # --- generated data ------------------------------------------------------------------
    def minute(self, now: float | None = None) -> int:
        return int((self.clock() if now is None else now) // 60)

    def price(self, coin: str, minute: int) -> float:
        """The coin's price at a minute: a slow wave plus a per-minute wiggle around its level."""
        base = self.coins[coin]
        wave = 0.03 * math.sin(minute / 240.0 + _unit(coin, "phase") * 6.3)
        wiggle = 0.002 * (_unit(coin, minute) - 0.5)
        return round(base * (1 + wave + wiggle), 6 if base < 10 else 2)

    def positions(self, minute: int, coin: str | None = None) -> list[dict[str, Any]]:
        out = []
        for c in [coin] if coin else list(self.coins):
            side = "short" if _unit(c, "side") < 0.7 else "long"  # the anchor strategy is mostly short
            entry = round(self.coins[c] * (1 + 0.08 * (_unit(c, "entry") - 0.5)), 6)
            mark = self.price(c, minute)
            lev = 5 if c in ("BTC", "ETH") else 3
            ratio = (entry - mark) / entry if side == "short" else (mark - entry) / entry
            size = round(1000.0 / entry, 6)
            out.append(
                {
                    "symbol": f"{c}-USDT-SWAP",
                    "coin": c,
                    "side": side,
                    "entry_price": entry,
                    "mark_price": mark,
                    "size": size,
                    "leverage": lev,
                    "unrealized_pnl": round(ratio * size * entry, 4),
                    "unrealized_pnl_ratio": round(ratio * lev * 100, 2),
                    "liquidation_price": round(
                        entry * (1 + 1 / lev) if side == "short" else entry * (1 - 1 / lev), 6
                    ),
                }
            )
        return out

    def profit_stats(self, minute: int) -> dict[str, Any]:
        """AN001's record: the positions' profit distribution at a minute (as the host's JSONL holds)."""
        pos = self.positions(minute)
        stats: dict[str, dict[str, int]] = {}
        for side in ("short", "long"):
            ratios = [p["unrealized_pnl_ratio"] for p in pos if p["side"] == side]
            stats[side] = {
                "total": len(ratios),
                "loss": sum(r < 0 for r in ratios),
                "lte_40": sum(0 <= r <= 40 for r in ratios),
                "gte_80": sum(r >= 80 for r in ratios),
                "gte_120": sum(r >= 120 for r in ratios),
            }
        return {
            "timestamp": minute * 60,
            "datetime": _local(minute * 60),
            "stats": stats,
            "total_pnl": round(sum(p["unrealized_pnl"] for p in pos), 4),
        }

    def escape_signal(self, minute: int, coin: str | None = None) -> dict[str, Any]:
        coins = [coin] if coin else list(self.coins)
        # How far each coin is above its 24 h mean: a top is near when most are stretched.
        stretch = {c: self.price(c, minute) / self.price(c, minute - 720) - 1 for c in coins}
        score = round(50 + 1000 * sum(stretch.values()) / len(coins), 2)
        level = "danger" if score >= 80 else "warning" if score >= 65 else "normal"
        return {
            "datetime": _local(minute * 60),
            "score": score,
            "level": level,
            "coins": {c: {"stretch_pct": round(s * 100, 3), "peak_2h": s > 0.02} for c, s in stretch.items()},
        }

    def escape_stats(self, minute: int) -> dict[str, Any]:
        # Counts change once an hour: the host aggregates hourly.
        hour = minute // 60
        return {
            "window": "24h",
            "updated_at": _local(hour * 3600),
            "short_profit_gte_120": int(_unit("s120", hour) * 6),
            "short_loss": int(_unit("sloss", hour) * 5),
            "peak_2h": int(_unit("p2", hour) * 8),
            "peak_24h": int(_unit("p24", hour) * 3),
        }

    def panic(self, minute: int) -> dict[str, Any]:
        hour = minute // 60
        liq = round(2e7 + 1.8e8 * _unit("liq", hour), 2)
        oi = round(9.5e10 * (1 + 0.05 * math.sin(hour / 24)), 2)
        index = round(liq / oi * 1000, 3)
        return {
            "datetime": _local(hour * 3600),
            "panic_index": index,
            "level": "high" if index > 1.5 else "medium" if index > 0.8 else "low",
            "liquidation_1h_usd": liq,
            "open_interest_usd": oi,
        }

    def v1v2(self, minute: int, coin: str) -> dict[str, Any]:
        vol = 1e6 * (1 + 9 * _unit(coin, "vol")) * (1 + 0.3 * _unit(coin, minute // 5))
        v1, v2 = round(vol * 1.5, 2), round(vol * 3.0, 2)
        now = round(vol * (0.5 + 3 * _unit(coin, minute)), 2)
        return {
            "coin": coin,
            "volume_5m": now,
            "v1": v1,
            "v2": v2,
            "level": "v2" if now >= v2 else "v1" if now >= v1 else "normal",
        }

    def major_events(self, minute: int) -> list[dict[str, Any]]:
        hour = minute // 60
        events = []
        for k in range(int(_unit("events", hour // 6) * 4)):
            coin = list(self.coins)[int(_unit("ev-coin", hour // 6, k) * len(self.coins))]
            at = (hour - int(_unit("ev-at", hour // 6, k) * 24)) * 3600
            kind = ["liquidation_spike", "funding_flip", "volume_surge", "price_gap"][
                int(_unit("ev-kind", hour // 6, k) * 4)
            ]
            events.append({"coin": coin, "type": kind, "datetime": _local(at), "severity": 1 + k % 3})
        return sorted(events, key=lambda e: e["datetime"], reverse=True)

    # --- HTTP ----------------------------------------------------------------------------
    @property
    def app(self) -> ASGIApp:
        """The ASGI app, behind the fault switch."""
        routes = [
            Route(PATHS["AN001"], self._an001),
            Route(PATHS["AN002"], self._an002, methods=["GET", "POST"]),
            Route(PATHS["AN003"], self._an003),
            Route(PATHS["AN004"], self._an004),
            Route(PATHS["AN004"] + "/{coin}", self._an004),
            Route(PATHS["ES001"], self._es001),
            Route(PATHS["ES001"] + "/{coin}", self._es001),
            Route(PATHS["ES002"], self._es002),
            Route(PATHS["PI001"], self._pi001),
            Route(PATHS["V1V2001"], self._v1v2),
            Route(PATHS["V1V2001"] + "/{coin}", self._v1v2),
            Route(PATHS["ME001"], self._me001),
        ]
        return FaultMiddleware(Starlette(routes=routes), self.switch)

    def _answer(self, request: Request, data: Callable[[int], Any]) -> Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        coin = request.path_params.get("coin") or request.query_params.get("coin")
        if coin is not None and coin.upper() not in self.coins:
            return JSONResponse({"success": False, "error": f"unknown coin {coin}"}, status_code=404)
        now = self.clock()
        return JSONResponse({"success": True, "data": data(self.minute(now)), "timestamp": int(now)})

    def _denied(self, request: Request) -> Response | None:
        if self.auth is None:
            return None
        want = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        if request.headers.get("authorization") == want:
            return None
        return JSONResponse(
            {"success": False, "error": "unauthorized"},
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="upstream"'},
        )

    @staticmethod
    def _coin(request: Request) -> str | None:
        coin = request.path_params.get("coin") or request.query_params.get("coin")
        return coin.upper() if coin else None

    async def _an001(self, request: Request) -> Response:
        return self._answer(request, self.profit_stats)

    async def _an002(self, request: Request) -> Response:
        raw: Any = request.query_params.get("limit", "60")
        if request.method == "POST":
            body = await request.body()
            try:
                raw = json.loads(body or b"{}").get("limit", 60)
            except (ValueError, AttributeError):
                return JSONResponse(
                    {"success": False, "error": "expected a JSON object body"}, status_code=400
                )
        try:
            limit = max(1, min(MAX_HISTORY, int(raw)))
        except (TypeError, ValueError):
            return JSONResponse({"success": False, "error": "limit must be a number"}, status_code=400)
        return self._answer(request, lambda m: [self.profit_stats(m - k) for k in range(limit)][::-1])

    async def _an003(self, request: Request) -> Response:
        def status(m: int) -> dict[str, Any]:
            return {
                "running": True,
                "mode": "real",
                "monitors": len(self.coins),
                "last_check": _local(m * 60),
                "uptime_seconds": int(m * 60 - self.started) if m * 60 > self.started else 0,
                "positions": len(self.positions(m)),
            }

        return self._answer(request, status)

    async def _an004(self, request: Request) -> Response:
        coin = self._coin(request)
        return self._answer(request, lambda m: self.positions(m, coin if coin in self.coins else None))

    async def _es001(self, request: Request) -> Response:
        coin = self._coin(request)
        return self._answer(request, lambda m: self.escape_signal(m, coin if coin in self.coins else None))

    async def _es002(self, request: Request) -> Response:
        return self._answer(request, self.escape_stats)

    async def _pi001(self, request: Request) -> Response:
        return self._answer(request, self.panic)

    async def _v1v2(self, request: Request) -> Response:
        coin = self._coin(request)
        if coin in self.coins:
            return self._answer(request, lambda m: self.v1v2(m, str(coin)))
        return self._answer(request, lambda m: [self.v1v2(m, c) for c in self.coins])

    async def _me001(self, request: Request) -> Response:
        return self._answer(request, self.major_events)


def _local(ts: float) -> str:
    """The host's time format: Asia/Shanghai wall time."""
    return datetime.fromtimestamp(ts, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def registry_entries(base_url: str, coins: list[str] | None = None) -> list[dict[str, Any]]:
    """Registry entries for the 9 upstream codes pointing at a host served at `base_url`."""
    from assetsync.endpoints import SEED_BY_CODE

    out: list[dict[str, Any]] = []
    for code, path in PATHS.items():
        seed = SEED_BY_CODE[code]
        entry: dict[str, Any] = {
            "code": code,
            "name": seed.name,
            "category": seed.category,
            "category_name": seed.category_name,
            "api_path": seed.api_path,
            "method": "GET",
            "description": seed.description,
            "interval_seconds": seed.interval_seconds,
            "source": "http",
            "upstream_url": base_url.rstrip("/") + path,
        }
        if code == "AN002":
            entry["params"] = {"limit": 60}
        if code == "V1V2001" and coins:
            entry["upstream_url"] += "/{coin}"
            entry["coins"] = coins
        out.append(entry)
    return out

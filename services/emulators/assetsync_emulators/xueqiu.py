"""Xueqiu (stock.xueqiu.com) and Danjuan (danjuanfunds.com) emulator: the quote and fund-NAV endpoints.

Serves, on one loopback port, exactly the paths pysnowball calls for real-time quotes and fund NAVs:

- `GET /v5/stock/realtime/quotec.json?symbol=A,B,...` — batched quotes; public (no cookie), unknown
  symbols are left out of `data`.
- `GET /v5/stock/quote.json?extend=detail&symbol=X` — one quote with its name; needs a valid
  `xq_a_token` cookie, else HTTP 400 with Xueqiu's `error_code` "400016"; unknown symbol: `quote: null`.
- `GET /djapi/fund/{code}`, `/djapi/fund/derived/{code}`, `/djapi/fund/nav/history/{code}?page=&size=`
  — Danjuan fund info / latest NAV / NAV history; an unknown code answers `result_code` 600001.

Prices and NAVs are generated deterministically from the symbol and the time, so a test sees the
same numbers on every run; `set_price` / `set_nav` pin exact values.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from assetsync_emulators.common import FaultMiddleware, FaultSwitch

SHANGHAI = ZoneInfo("Asia/Shanghai")

COOKIE_ERROR_DESCRIPTION = "遇到错误，请刷新页面或者重新登录帐号后再试"
COOKIE_ERROR_CODE = "400016"
FUND_NOT_FOUND_CODE = 600001

# Realistic exchange-traded funds: symbol -> (name, typical price in CNY).
DEFAULT_ETFS: dict[str, tuple[str, float]] = {
    "SH510300": ("沪深300ETF华泰柏瑞", 3.952),
    "SZ159915": ("创业板ETF易方达", 2.214),
    "SH510500": ("中证500ETF南方", 5.823),
    "SH512880": ("证券ETF国泰", 1.024),
    "SH588000": ("科创50ETF华夏", 1.052),
    "SZ159919": ("沪深300ETF嘉实", 4.081),
    "SH513100": ("纳指ETF国泰", 1.628),
    "SH518880": ("黄金ETF华安", 6.315),
    "SZ159920": ("恒生ETF华夏", 1.281),
}

# Realistic open-end funds: code -> (name, typical NAV, Danjuan fd_type, type_desc).
DEFAULT_FUNDS: dict[str, tuple[str, float, str, str]] = {
    "110011": ("易方达优质精选混合(QDII)", 4.1235, "3", "混合型"),
    "161725": ("招商中证白酒指数(LOF)A", 0.8342, "5", "指数型"),
    "005827": ("易方达蓝筹精选混合", 1.8617, "3", "混合型"),
    "008975": ("富国中证消费50ETF联接A", 1.2113, "5", "指数型"),
    "000001": ("华夏成长混合", 1.0520, "3", "混合型"),
    "003095": ("中欧医疗健康混合A", 1.7803, "3", "混合型"),
    "519674": ("银河创新成长混合A", 5.6127, "3", "混合型"),
}

# A small fund portfolio for the demo (as `asset_sync.assets.funds.manual` entries).
DEMO_FUND_HOLDINGS: tuple[dict[str, Any], ...] = (
    {"symbol": "SH510300", "quantity": 10000, "avg_cost": 3.85},
    {"symbol": "SZ159915", "quantity": 20000, "avg_cost": 2.05},
    {"symbol": "110011", "quantity": 3000, "avg_cost": 3.70},
    {"symbol": "161725", "quantity": 8000, "avg_cost": 1.02},
)


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stable across runs and processes)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _wave(key: str, day_number: int, amplitude: float) -> float:
    """A smooth, key-specific relative deviation for a day (a slow cycle plus daily noise)."""
    phase = _unit(key, "phase") * 2 * math.pi
    return amplitude * math.sin(day_number / 37.0 + phase) + amplitude * 0.25 * (_unit(key, day_number) - 0.5)


def _prev_weekday(d: date) -> date:
    d -= timedelta(days=1)
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@dataclass
class Etf:
    """One exchange-traded fund the emulator quotes."""

    symbol: str
    name: str
    base_price: float
    pinned: float | None = None


@dataclass
class Fund:
    """One open-end fund the emulator publishes NAVs for."""

    code: str
    name: str
    base_nav: float
    fd_type: str = "3"
    type_desc: str = "混合型"
    pinned: tuple[date, float] | None = None  # (NAV date, NAV) overriding the generated latest


@dataclass
class XueqiuEmulator:
    """State of the emulated services: instruments, accepted cookie token, clock and faults."""

    etfs: dict[str, Etf] = field(default_factory=dict)
    funds: dict[str, Fund] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_hex(20))
    switch: FaultSwitch = field(default_factory=FaultSwitch)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(SHANGHAI))
    expired: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def with_defaults(cls, **kwargs: Any) -> XueqiuEmulator:
        """An emulator pre-loaded with the realistic ETFs and open-end funds above."""
        emu = cls(**kwargs)
        for symbol, (name, price) in DEFAULT_ETFS.items():
            emu.add_etf(symbol, name, price)
        for code, (name, nav, fd_type, desc) in DEFAULT_FUNDS.items():
            emu.add_fund(code, name, nav, fd_type=fd_type, type_desc=desc)
        return emu

    # --- set-up and switches ----------------------------------------------------------------
    def add_etf(self, symbol: str, name: str, price: float) -> None:
        with self._lock:
            self.etfs[symbol.upper()] = Etf(symbol.upper(), name, price)

    def add_fund(
        self, code: str, name: str, nav: float, *, fd_type: str = "3", type_desc: str = "混合型"
    ) -> None:
        with self._lock:
            self.funds[code] = Fund(code, name, nav, fd_type, type_desc)

    def set_price(self, symbol: str, price: float) -> None:
        """Pin the current price of an ETF (the quote's `current`)."""
        with self._lock:
            self.etfs[symbol.upper()].pinned = price

    def set_nav(self, code: str, nav_date: date, nav: float) -> None:
        """Pin the latest NAV of an open-end fund and its date."""
        with self._lock:
            self.funds[code].pinned = (nav_date, nav)

    def cookie(self) -> str:
        """A cookie string as a user would paste it into `asset_sync.xueqiu.cookies`."""
        return f"xq_a_token={self.token}; u=8612345678;"

    def expire_cookie(self) -> None:
        """The current token stops working (as when the Xueqiu session expires)."""
        with self._lock:
            self.expired.add(self.token)

    def renew_cookie(self) -> str:
        """Issue a new valid token; returns the new cookie string."""
        with self._lock:
            self.token = secrets.token_hex(20)
        return self.cookie()

    def config_overrides(self, url: str, *, with_funds: bool = True) -> dict[str, Any]:
        """Settings pointing the stack at this emulator served at `url` (for `up --demo` and tests)."""
        out: dict[str, Any] = {
            "asset_sync": {"xueqiu": {"cookies": self.cookie(), "base_url": url, "fund_base_url": url}}
        }
        if with_funds:
            out["asset_sync"]["assets"] = {"funds": {"manual": [dict(h) for h in DEMO_FUND_HOLDINGS]}}
        return out

    @property
    def app(self) -> ASGIApp:
        """The ASGI app (Xueqiu and Danjuan paths), behind the fault switch."""
        routes = [
            Route("/v5/stock/realtime/quotec.json", self._quotec),
            Route("/v5/stock/quote.json", self._quote_detail),
            Route("/djapi/fund/derived/{code}", self._fund_derived),
            Route("/djapi/fund/nav/history/{code}", self._fund_nav_history),
            Route("/djapi/fund/{code}", self._fund_info),
        ]
        return FaultMiddleware(Starlette(routes=routes), self.switch)

    # --- market model -----------------------------------------------------------------------
    def _now(self) -> datetime:
        return self.clock().astimezone(SHANGHAI)

    def _session(self, now: datetime) -> tuple[date, datetime, bool]:
        """(session day, time of the last trade, trading right now) for A-share hours on weekdays."""
        today = now.date()
        open_at = datetime.combine(today, time(9, 30), SHANGHAI)
        if today.weekday() >= 5 or now < open_at:
            day = today if today.weekday() < 5 and now >= open_at else _prev_weekday(today)
            return day, datetime.combine(day, time(15, 0), SHANGHAI), False
        morning_end = datetime.combine(today, time(11, 30), SHANGHAI)
        afternoon = datetime.combine(today, time(13, 0), SHANGHAI)
        close = datetime.combine(today, time(15, 0), SHANGHAI)
        if now >= close:
            return today, close, False
        if morning_end <= now < afternoon:
            return today, morning_end, False
        return today, now.replace(second=now.second - now.second % 3, microsecond=0), True

    def _etf_price(self, etf: Etf, at: datetime) -> float:
        day_number = at.date().toordinal()
        minute = at.hour * 60 + at.minute
        intraday = 0.006 * math.sin(minute / 23.0 + _unit(etf.symbol, "intraday") * 6.0)
        return round(etf.base_price * (1 + _wave(etf.symbol, day_number, 0.06) + intraday), 3)

    def _quote_fields(self, etf: Etf, now: datetime) -> dict[str, Any]:
        day, last_trade, trading = self._session(now)
        current = etf.pinned if etf.pinned is not None else self._etf_price(etf, last_trade)
        prev_close_at = datetime.combine(_prev_weekday(day), time(15, 0), SHANGHAI)
        last_close = self._etf_price(etf, prev_close_at)
        open_ = self._etf_price(etf, datetime.combine(day, time(9, 30), SHANGHAI))
        high = round(max(current, open_, last_close * 1.004), 3)
        low = round(min(current, open_, last_close * 0.996), 3)
        chg = round(current - last_close, 3)
        volume = int(4e8 * (0.5 + _unit(etf.symbol, day)))
        year_start = self._etf_price(etf, datetime.combine(date(day.year, 1, 2), time(15, 0), SHANGHAI))
        shares = 9.1e10 * (0.2 + _unit(etf.symbol, "shares"))
        return {
            "symbol": etf.symbol,
            "current": current,
            "percent": round(chg / last_close * 100, 2),
            "chg": chg,
            "timestamp": _ms(last_trade),
            "volume": volume,
            "amount": round(volume * (current + last_close) / 2, 2),
            "market_capital": round(shares * current, 2),
            "float_market_capital": round(shares * current, 2),
            "turnover_rate": round(volume / shares * 100, 2),
            "amplitude": round((high - low) / last_close * 100, 2),
            "open": open_,
            "last_close": last_close,
            "high": high,
            "low": low,
            "avg_price": round((high + low + current) / 3, 3),
            "trade_volume": 100 * (1 + int(_unit(etf.symbol, last_trade) * 500)),
            "side": 1 if chg >= 0 else -1,
            "is_trade": trading,
            "level": 1,
            "trade_session": None,
            "trade_type": None,
            "current_year_percent": round((current / year_start - 1) * 100, 2),
            "trade_unique_id": None,
            "type": 13,
            "bid_appl_seq_num": None,
            "offer_appl_seq_num": None,
            "volume_ext": None,
            "traded_amount_ext": None,
            "trade_type_v2": None,
            "yield_to_maturity": None,
        }

    def _nav_dates(self, now: datetime) -> list[date]:
        """NAV dates, newest first: weekdays; a day's NAV appears from 20:00 that evening."""
        latest = now.date() if now.time() >= time(20, 0) and now.weekday() < 5 else _prev_weekday(now.date())
        out = [latest]
        for _ in range(249):
            out.append(_prev_weekday(out[-1]))
        return out

    def _nav_on(self, fund: Fund, day: date) -> float:
        if fund.pinned is not None and fund.pinned[0] == day:
            return fund.pinned[1]
        return round(fund.base_nav * (1 + _wave(fund.code, day.toordinal(), 0.05)), 4)

    def _nav_history(self, fund: Fund, now: datetime) -> list[tuple[date, float]]:
        dates = self._nav_dates(now)
        if fund.pinned is not None and fund.pinned[0] not in dates:
            dates = [d for d in dates if d < fund.pinned[0]]
            dates.insert(0, fund.pinned[0])
        return [(d, self._nav_on(fund, d)) for d in dates]

    # --- Xueqiu handlers --------------------------------------------------------------------
    async def _quotec(self, request: Request) -> JSONResponse:
        # Public endpoint: pysnowball's quotec sends no cookie at all, and Xueqiu answers anyway.
        now = self._now()
        wanted = [s.strip().upper() for s in request.query_params.get("symbol", "").split(",") if s.strip()]
        with self._lock:
            data = [self._quote_fields(self.etfs[s], now) for s in wanted if s in self.etfs]
        return JSONResponse({"data": data, "error_code": 0, "error_description": None})

    def _cookie_ok(self, request: Request) -> bool:
        token = request.cookies.get("xq_a_token", "")
        if not token:
            # requests sends the Cookie header verbatim; parse it leniently (`a=b; c=d;`).
            m = re.search(r"(?:^|;)\s*xq_a_token=([^;\s]+)", request.headers.get("cookie", ""))
            token = m.group(1) if m else ""
        with self._lock:
            return bool(token) and token == self.token and token not in self.expired

    async def _quote_detail(self, request: Request) -> JSONResponse:
        if not self._cookie_ok(request):
            return JSONResponse(
                {
                    "error_description": COOKIE_ERROR_DESCRIPTION,
                    "error_uri": request.url.path,
                    "error_data": None,
                    "error_code": COOKIE_ERROR_CODE,
                },
                status_code=400,
            )
        now = self._now()
        symbol = request.query_params.get("symbol", "").strip().upper()
        _, _, trading = self._session(now)
        market = {
            "status_id": 5 if trading else 7,
            "region": "CN",
            "status": "交易中" if trading else "已收盘",
            "time_zone": "Asia/Shanghai",
            "time_zone_desc": None,
            "delay_tag": 0,
        }
        with self._lock:
            etf = self.etfs.get(symbol)
            quote = None if etf is None else self._detail_fields(etf, now)
        body = {
            "data": {
                "market": market,
                "quote": quote,
                "others": {"pankou_ratio": None, "cyb_switch": True} if quote else {},
                "tags": [] if quote else None,
            },
            "error_code": 0,
            "error_description": "",
        }
        return JSONResponse(body)

    def _detail_fields(self, etf: Etf, now: datetime) -> dict[str, Any]:
        q = self._quote_fields(etf, now)
        nav = round(q["last_close"] * (1 + 0.002 * (_unit(etf.symbol, "premium") - 0.5)), 4)
        found = date(2012, 5, 4) + timedelta(days=int(_unit(etf.symbol, "found") * 2500))
        return {
            "symbol": etf.symbol,
            "code": etf.symbol[2:],
            "name": etf.name,
            "exchange": etf.symbol[:2],
            "currency": "CNY",
            "current": q["current"],
            "percent": q["percent"],
            "chg": q["chg"],
            "last_close": q["last_close"],
            "open": q["open"],
            "high": q["high"],
            "low": q["low"],
            "avg_price": q["avg_price"],
            "volume": q["volume"],
            "amount": q["amount"],
            "amplitude": q["amplitude"],
            "turnover_rate": q["turnover_rate"],
            "market_capital": q["market_capital"],
            "float_market_capital": q["float_market_capital"],
            "current_year_percent": q["current_year_percent"],
            "timestamp": q["timestamp"],
            "time": q["timestamp"],
            "type": 13,
            "sub_type": "EBS",
            "status": 1,
            "lot_size": 100,
            "tick_size": 0.001,
            "limit_up": round(q["last_close"] * 1.1, 3),
            "limit_down": round(q["last_close"] * 0.9, 3),
            "high52w": round(q["high"] * 1.18, 3),
            "low52w": round(q["low"] * 0.86, 3),
            "unit_nav": nav,
            "acc_unit_nav": round(nav * 1.31, 4),
            "iopv": q["current"],
            "premium_rate": round((q["current"] / nav - 1) * 100, 2),
            "found_date": _ms(datetime.combine(found, time(0, 0), SHANGHAI)),
            "expiration_date": None,
            "delayed": 0,
            "current_ext": None,
            "volume_ext": None,
            "traded_amount_ext": None,
            "timestamp_ext": None,
            "security_status": None,
        }

    # --- Danjuan handlers -------------------------------------------------------------------
    def _fund_or_error(self, code: str) -> Fund | JSONResponse:
        fund = self.funds.get(code)
        if fund is None:
            # Danjuan answers HTTP 200 with a business error and no `data` for codes it does not sell.
            return JSONResponse(
                {"result_code": FUND_NOT_FOUND_CODE, "message": f"该基金暂不销售,基金代码：{code}"}
            )
        return fund

    def _derived(self, fund: Fund, now: datetime) -> dict[str, Any]:
        history = self._nav_history(fund, now)
        (end_date, nav), (_, prev) = history[0], history[1]

        def growth(days: int) -> str:
            old = history[min(days, len(history) - 1)][1]
            return f"{(nav / old - 1) * 100:.10f}"

        return {
            "fd_code": fund.code,
            "end_date": end_date.isoformat(),
            "unit_nav": f"{nav:.4f}",
            "unit_acc_nav": f"{nav * 1.27:.4f}",
            "nav_grtd": f"{(nav / prev - 1) * 100:.4f}",
            "nav_grl1w": growth(5),
            "nav_grl1m": growth(21),
            "nav_grl3m": growth(63),
            "nav_grl6m": growth(126),
            "nav_grl1y": growth(249),
            "nav_grbase": f"{(nav / 1.0 - 1) * 100:.2f}",
            "nav_growth": f"{nav - prev:.4f}",
            "fd_type": fund.fd_type,
            "first_nav": False,
        }

    async def _fund_info(self, request: Request) -> JSONResponse:
        code = request.path_params["code"]
        now = self._now()
        with self._lock:
            fund = self._fund_or_error(code)
            if isinstance(fund, JSONResponse):
                return fund
            derived = self._derived(fund, now)
        found = date(2010, 1, 1) + timedelta(days=int(_unit(code, "found") * 4000))
        data = {
            "fd_code": fund.code,
            "fd_type": fund.fd_type,
            "fd_name": fund.name,
            "fd_full_name": fund.name,
            "found_date": found.isoformat(),
            "fd_status": "1",
            "declare_status": "1",
            "subscribe_status": "0",
            "withdraw_status": "1",
            "auto_invest_status": "1",
            "totshare": f"{int(5 + _unit(code, 'size') * 200)}亿",
            "keeper_name": "基金管理有限公司",
            "sale_status": "1",
            "risk_level": "3",
            "fund_derived": derived,
            "fund_rates": {"subscribe_rate": "1.5", "declare_rate": "1.5", "discount": "0.1"},
            "type_desc": fund.type_desc,
            "sec_header_base_data": [
                {
                    "data_name": "最新净值",
                    "data_value_str": derived["unit_nav"],
                    "data_value_number": float(derived["unit_nav"]),
                    "data_have_colour": False,
                    "data_extend": derived["end_date"][5:],
                }
            ],
        }
        return JSONResponse({"data": data, "result_code": 0})

    async def _fund_derived(self, request: Request) -> JSONResponse:
        now = self._now()
        with self._lock:
            fund = self._fund_or_error(request.path_params["code"])
            if isinstance(fund, JSONResponse):
                return fund
            derived = self._derived(fund, now)
        return JSONResponse({"data": derived, "result_code": 0})

    async def _fund_nav_history(self, request: Request) -> JSONResponse:
        now = self._now()
        try:
            page = max(1, int(request.query_params.get("page", "1")))
            size = max(1, min(200, int(request.query_params.get("size", "10"))))
        except ValueError:
            return JSONResponse({"result_code": 100001, "message": "参数错误"})
        with self._lock:
            fund = self._fund_or_error(request.path_params["code"])
            if isinstance(fund, JSONResponse):
                return fund
            history = self._nav_history(fund, now)
        items = []
        chunk = history[(page - 1) * size : page * size + 1]
        for i, (d, nav) in enumerate(chunk[:size]):
            prev = chunk[i + 1][1] if i + 1 < len(chunk) else nav
            items.append(
                {
                    "date": d.isoformat(),
                    "nav": f"{nav:.4f}",
                    "percentage": f"{(nav / prev - 1) * 100:.2f}",
                    "value": f"{nav:.4f}",
                }
            )
        data = {
            "items": items,
            "current_page": page,
            "size": size,
            "total_items": len(history),
            "total_pages": math.ceil(len(history) / size),
        }
        return JSONResponse({"data": data, "result_code": 0})

"""Binance spot REST emulator: the `/api/v3` endpoints ccxt's async `binance` calls for a spot account.

Serves on one loopback port, with the real JSON shapes, string-encoded decimals and error codes:

- public: `ping`, `time`, `exchangeInfo` (spot symbols with PRICE_FILTER / LOT_SIZE / NOTIONAL filters),
  `ticker/24hr` (one `symbol`, a JSON array in `symbols`, or all), `ticker/price`, `klines`.
- signed (HMAC-SHA256 over the query string, `X-MBX-APIKEY` header, `timestamp` within `recvWindow`):
  `account`, `myTrades` (`fromId` / `startTime` / `endTime` / `limit`), `allOrders`, `openOrders`.
- request weight per minute, reported in `x-mbx-used-weight` / `x-mbx-used-weight-1m`; over the limit
  → 429 (-1003) with `Retry-After`, and clients that keep going are banned → 418 with `Retry-After`.

Prices follow a deterministic path per asset (smooth cycles plus hourly noise, seeded), so hourly and
1-minute klines, tickers and fill prices agree with each other: a 1h candle's close is the close of its
last 1m candle, the ticker's `lastPrice` is the current 1m close, and `ETHBTC` ≈ `ETHUSDT / BTCUSDT`.
The account (`BinanceEmulator(seed=, size=)`) holds BTC, ETH, SOL, DOGE, BNB, a leveraged token,
an asset quoted only in BTC, one with no market at all, dust and USDT, each with a coherent fill history
(buys and sells, fees in the base asset, the quote asset or BNB); `size=N` adds generated assets up to N.
Besides the account's markets it lists 42 more USDT markets of real coins (`LISTED_ASSETS`: with the
core ones, 54 bases trade against USDT) and one halted market, `LUNAUSDT` (status BREAK, as Binance
marks a delisted pair), so a watch list of 50 coins has markets to poll and one to find missing.
Faults: the shared `FaultSwitch` (5xx, 429/418, timeouts, HTML, truncated JSON) plus `delist()`,
`trade()` and `set_balance()` to change the exchange under a running client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assetsync_emulators.common import Fault, FaultMiddleware, FaultSwitch

# Credentials the emulator accepts unless told otherwise (the demo stack uses them too).
DEMO_API_KEY = "AsSyNcDeMoKeY".ljust(63, "0") + "1"  # Binance keys are 64 alphanumerics
DEMO_API_SECRET = "AsSyNcDeMoSeCrEt".ljust(63, "0") + "1"

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEIGHT_LIMIT_1M = 6000
MAX_RECV_WINDOW = 60_000

INTERVALS_MS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
}

# Stable quotes are pinned near 1 USD; everything else wanders.
STABLE = frozenset({"USDT", "USDC", "FDUSD", "TUSD"})


@dataclass(frozen=True)
class AssetModel:
    """An asset's typical USD price and how much it moves per hour."""

    code: str
    usd: float
    vol: float = 0.01  # hourly noise (fraction)
    daily_volume_usd: float = 5e7


# The realistic core account: code -> (typical USD price, hourly vol).
CORE_ASSETS: dict[str, AssetModel] = {
    a.code: a
    for a in (
        AssetModel("USDT", 1.0, 0.0),
        AssetModel("USDC", 1.0, 0.0002),
        AssetModel("FDUSD", 1.0, 0.0002),
        AssetModel("BTC", 68250.0, 0.006, 2e9),
        AssetModel("ETH", 3420.0, 0.008, 1e9),
        AssetModel("SOL", 162.0, 0.012, 4e8),
        AssetModel("DOGE", 0.163, 0.015, 2e8),
        AssetModel("BNB", 592.0, 0.007, 2e8),
        AssetModel("BTCDOWN", 0.00452, 0.02, 2e6),
        AssetModel("PIVX", 0.352, 0.015, 3e5),
        AssetModel("ETHW", 3.12, 0.02, 0.0),
        AssetModel("SHIB", 0.0000182, 0.015, 1e8),
        AssetModel("XRP", 0.552, 0.01, 3e8),
        AssetModel("ADA", 0.451, 0.01, 1e8),
        AssetModel("LINK", 14.2, 0.012, 8e7),
    )
}

# More liquid spot coins quoted in USDT (a 50-coin watch list has real markets to poll):
# code, typical USD price, hourly vol, daily quote volume.
LISTED_ASSETS: tuple[tuple[str, float, float, float], ...] = (
    ("AVAX", 28.4, 0.014, 2e8), ("TON", 5.43, 0.012, 1e8), ("TRX", 0.121, 0.008, 1e8),
    ("POL", 0.41, 0.014, 5e7), ("LTC", 71.3, 0.011, 2e8), ("BCH", 382.0, 0.012, 1e8),
    ("ATOM", 6.95, 0.012, 6e7), ("NEAR", 5.21, 0.015, 1e8), ("APT", 8.74, 0.015, 8e7),
    ("ARB", 0.81, 0.016, 9e7), ("OP", 1.72, 0.016, 7e7), ("FIL", 4.63, 0.014, 6e7),
    ("ICP", 9.35, 0.015, 4e7), ("ETC", 22.1, 0.012, 6e7), ("XLM", 0.094, 0.010, 3e7),
    ("UNI", 7.42, 0.013, 6e7), ("AAVE", 128.0, 0.014, 5e7), ("INJ", 21.5, 0.017, 5e7),
    ("SUI", 1.08, 0.018, 1e8), ("SEI", 0.34, 0.018, 4e7), ("TIA", 5.87, 0.018, 4e7),
    ("RUNE", 4.12, 0.017, 3e7), ("ALGO", 0.142, 0.012, 2e7), ("HBAR", 0.071, 0.012, 2e7),
    ("VET", 0.0231, 0.012, 1.5e7), ("SAND", 0.284, 0.014, 2e7), ("MANA", 0.302, 0.014, 1.5e7),
    ("AXS", 5.36, 0.014, 1.2e7), ("GRT", 0.168, 0.014, 2e7), ("CRV", 0.297, 0.016, 2e7),
    ("MKR", 2210.0, 0.013, 2e7), ("LDO", 1.31, 0.016, 2.5e7), ("PEPE", 0.0000089, 0.022, 3e8),
    ("WIF", 1.93, 0.025, 2e8), ("FET", 1.21, 0.02, 8e7), ("STX", 1.62, 0.017, 2e7),
    ("IMX", 1.38, 0.016, 1.5e7), ("EGLD", 27.9, 0.013, 1e7), ("THETA", 1.19, 0.014, 1e7),
    ("KSM", 31.4, 0.013, 1.5e7), ("DASH", 24.6, 0.013, 1e7), ("XTZ", 0.68, 0.012, 8e6),
)  # fmt: skip

# A coin whose only market is halted (status BREAK, as Binance marks delisted pairs): in
# exchangeInfo, absent from tickers and klines.
DELISTED_ASSET = "LUNA"

# Spot markets (base, quote) of the core set; PIVX trades only against BTC, ETHW has no market.
CORE_MARKETS: tuple[tuple[str, str], ...] = (
    ("BTC", "USDT"),
    ("ETH", "USDT"),
    ("ETH", "BTC"),
    ("SOL", "USDT"),
    ("SOL", "BTC"),
    ("DOGE", "USDT"),
    ("BNB", "USDT"),
    ("BNB", "BTC"),
    ("BTCDOWN", "USDT"),
    ("PIVX", "BTC"),
    ("SHIB", "USDT"),
    ("XRP", "USDT"),
    ("XRP", "BTC"),
    ("ADA", "USDT"),
    ("LINK", "USDT"),
    ("BTC", "FDUSD"),
    ("ETH", "FDUSD"),
    ("BTC", "USDC"),
    ("USDC", "USDT"),
    ("FDUSD", "USDT"),
)


@dataclass
class Market:
    """One spot symbol as exchangeInfo describes it."""

    symbol: str
    base: str
    quote: str
    status: str = "TRADING"
    tick: float = 0.01
    step: float = 0.00001

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "amendAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": self.quote in ("USDT", "BTC"),
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _fmt(self.tick),
                    "maxPrice": _fmt(max(1e6 * self.tick, 1000.0)),
                    "tickSize": _fmt(self.tick),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _fmt(self.step),
                    "maxQty": "9000000.00000000",
                    "stepSize": _fmt(self.step),
                },
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.00000000",
                    "maxQty": "100000.00000000",
                    "stepSize": "0.00000000",
                },
                {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000},
                {
                    "filterType": "PERCENT_PRICE_BY_SIDE",
                    "bidMultiplierUp": "5",
                    "bidMultiplierDown": "0.2",
                    "askMultiplierUp": "5",
                    "askMultiplierDown": "0.2",
                    "avgPriceMins": 5,
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000" if self.quote in STABLE else "0.00010000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT", "MARGIN"] if self.quote in ("USDT", "BTC") else ["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


@dataclass
class Fill:
    """One fill of the account (a `myTrades` row)."""

    id: int
    order_id: int
    symbol: str
    price: float
    qty: float
    quote_qty: float
    commission: float
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool

    def row(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "id": self.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": _fmt(self.price),
            "qty": _fmt(self.qty),
            "quoteQty": _fmt(self.quote_qty),
            "commission": _fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.is_buyer,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass
class OrderRow:
    """One order of the account (an `allOrders` row)."""

    order_id: int
    symbol: str
    side: str
    type: str
    price: float
    orig_qty: float
    executed_qty: float
    cum_quote: float
    status: str
    time: int
    update_time: int

    def row(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": f"web_{self.order_id:x}",
            "price": _fmt(self.price if self.type == "LIMIT" else 0.0),
            "origQty": _fmt(self.orig_qty),
            "executedQty": _fmt(self.executed_qty),
            "cummulativeQuoteQty": _fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": "GTC",
            "type": self.type,
            "side": self.side,
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


class BinanceError(Exception):
    """An error answer in Binance's shape: HTTP status plus {"code", "msg"}."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


def _fmt(x: float) -> str:
    return f"{x:.8f}"


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stable across runs and processes)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


_MASK = (1 << 64) - 1


def _mix(*ints: int) -> float:
    """A fast deterministic number in [0, 1) from integers (splitmix64 finaliser), for per-candle noise."""
    x = 0x9E3779B97F4A7C15
    for i in ints:
        x = ((x ^ i) * 0xBF58476D1CE4E5B9) & _MASK
        x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & _MASK
    x ^= x >> 29
    return x / 18446744073709551616.0


def _key(*parts: object) -> int:
    """A stable 63-bit integer for a name (what `_mix` hashes instead of strings)."""
    return int(_unit(*parts) * (1 << 63))


def _tick_for(price: float) -> float:
    """A tick size giving ~5 significant digits, as Binance's filters do."""
    if price <= 0:
        return 1e-8
    exp = math.floor(math.log10(price)) - 4
    return float(min(max(10.0**exp, 1e-8), 0.01))


def _step_for(price: float) -> float:
    """A lot step worth roughly 0.01-0.1 USD."""
    if price <= 0:
        return 1.0
    exp = math.floor(math.log10(0.05 / price))
    return float(min(max(10.0**exp, 1e-5), 1.0))


def _round_to(x: float, step: float) -> float:
    return round(round(x / step) * step, 8)


class PriceModel:
    """Deterministic USD price paths: hourly anchors joined by noisy minute steps."""

    def __init__(self, seed: int, assets: dict[str, AssetModel]) -> None:
        self.seed = seed
        self.assets = assets
        self._anchors: dict[tuple[str, int], float] = {}
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()

    def _key(self, name: str) -> int:
        got = self._keys.get(name)
        if got is None:
            got = self._keys[name] = _key(self.seed, name)
        return got

    def usd_anchor(self, asset: str, hour: int) -> float:
        """The asset's USD price at the start of `hour` (hours since the epoch)."""
        key = (asset, hour)
        got = self._anchors.get(key)
        if got is not None:
            return got
        model = self.assets[asset]
        if model.code == "USDT":
            value = 1.0
        else:
            akey = self._key(asset)
            p1, p2, p3 = (_mix(akey, i) * 2 * math.pi for i in (1, 2, 3))
            swing = 0.0 if model.code in STABLE else 1.0
            x = swing * (
                0.22 * math.sin(2 * math.pi * hour / (24 * 61) + p1)
                + 0.07 * math.sin(2 * math.pi * hour / (24 * 7.3) + p2)
                + 0.015 * math.sin(2 * math.pi * hour / 24 + p3)
            ) + model.vol * (2 * _mix(akey, hour) - 1)
            value = model.usd * math.exp(x)
        with self._lock:
            if len(self._anchors) > 400_000:
                self._anchors.clear()
            self._anchors[key] = value
        return value

    def anchor(self, m: Market, hour: int) -> float:
        return self.usd_anchor(m.base, hour) / self.usd_anchor(m.quote, hour)

    def at_minute(self, m: Market, minute: int) -> float:
        """The market price at a minute boundary (minutes since the epoch)."""
        hour, k = divmod(minute, 60)
        a0 = self.anchor(m, hour)
        if k == 0:
            return a0
        a1 = self.anchor(m, hour + 1)
        base = a0 + (a1 - a0) * k / 60.0
        noise = 0.0015 * math.sin(math.pi * k / 60.0) * (2 * _mix(self._key(m.symbol), minute) - 1)
        return base * (1.0 + noise)

    def at(self, m: Market, t_ms: int) -> float:
        """The market price at any instant (linear within the minute)."""
        minute, rem = divmod(t_ms, MINUTE_MS)
        v0 = self.at_minute(m, minute)
        if rem == 0:
            return v0
        v1 = self.at_minute(m, minute + 1)
        return v0 + (v1 - v0) * rem / MINUTE_MS

    def candle(self, m: Market, open_ms: int, interval_ms: int, now_ms: int) -> tuple[float, ...]:
        """(open, high, low, close, volume) of one candle; an open candle ends at `now_ms`."""
        end = open_ms + interval_ms
        o = self.at(m, open_ms)
        closed = end <= now_ms
        c = self.at(m, end if closed else now_ms)
        key = self._key(m.symbol)
        u1 = _mix(key, open_ms, interval_ms, 1)
        u2 = _mix(key, open_ms, interval_ms, 2)
        if interval_ms <= MINUTE_MS:
            hi = max(o, c) * (1 + 0.0004 * u1)
            lo = min(o, c) * (1 - 0.0004 * u2)
        elif closed and interval_ms % HOUR_MS == 0:
            # Bounds every minute path inside the candle (minute noise is at most 0.15 %).
            anchors = [self.anchor(m, h) for h in range(open_ms // HOUR_MS, end // HOUR_MS + 1)]
            hi = max(anchors) * (1.0015 + 0.0004 + 0.003 * u1)
            lo = min(anchors) * (1 - 0.0015 - 0.0004 - 0.003 * u2)
        else:
            stop = min(end, now_ms)
            pts = [self.at_minute(m, k) for k in range(open_ms // MINUTE_MS, stop // MINUTE_MS + 1)]
            pts.append(c)
            hi = max(pts) * (1 + 0.0004 * u1)
            lo = min(pts) * (1 - 0.0004 * u2)
        model = self.assets[m.base]
        base_price = max(self.usd_anchor(m.base, open_ms // HOUR_MS), 1e-12)
        per_ms = model.daily_volume_usd / base_price / DAY_MS
        span = (end if closed else now_ms) - open_ms
        vol = per_ms * span * (0.5 + _mix(key, open_ms, interval_ms, 3))
        return o, hi, lo, c, vol


@dataclass
class _Weight:
    window: int = -1
    used: int = 0
    rejected: int = 0
    banned_until: float = 0.0


@dataclass
class _OrderPlan:
    side: str
    qty: float
    fee_mode: str  # base / quote / bnb


class BinanceEmulator:
    """One emulated exchange: markets, price paths, an account with history, auth and rate limits."""

    def __init__(
        self,
        *,
        seed: int = 1,
        size: int | None = None,
        api_key: str = DEMO_API_KEY,
        api_secret: str = DEMO_API_SECRET,
        weight_limit: int = WEIGHT_LIMIT_1M,
        ban_after: int = 20,
        ban_seconds: float = 120.0,
        history_days: int = 90,
        switch: FaultSwitch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.api_key = api_key
        self.api_secret = api_secret
        self.weight_limit = weight_limit
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.switch = switch or FaultSwitch()
        self.clock = clock
        self.lock = threading.RLock()
        self.assets: dict[str, AssetModel] = dict(CORE_ASSETS)
        self.markets: dict[str, Market] = {}
        self.balances: dict[str, tuple[float, float]] = {}
        self.fills: dict[str, list[Fill]] = {}
        self.orders: dict[str, list[OrderRow]] = {}
        self.weights: dict[str, _Weight] = {}
        self._trade_ids: dict[str, int] = {}
        self._order_ids: dict[str, int] = {}
        self.prices = PriceModel(seed, self.assets)
        self._build(size, history_days)

    # --- construction ------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _add_market(self, base: str, quote: str) -> Market:
        price = self.assets[base].usd / self.assets[quote].usd
        m = Market(symbol=base + quote, base=base, quote=quote, tick=_tick_for(price), step=_step_for(price))
        self.markets[m.symbol] = m
        self.fills.setdefault(m.symbol, [])
        self.orders.setdefault(m.symbol, [])
        # Ids look like Binance's: large, increasing per symbol.
        self._trade_ids[m.symbol] = 10_000_000 + int(_unit(self.seed, m.symbol, "tid") * 9e8)
        self._order_ids[m.symbol] = 100_000_000 + int(_unit(self.seed, m.symbol, "oid") * 9e9)
        return m

    def _build(self, size: int | None, history_days: int) -> None:
        for base, quote in CORE_MARKETS:
            self._add_market(base, quote)
        for code, usd, vol, volume in LISTED_ASSETS:
            self.assets[code] = AssetModel(code, usd, vol, volume)
            self._add_market(code, "USDT")
        self.assets[DELISTED_ASSET] = AssetModel(DELISTED_ASSET, 0.000123, 0.03, 0.0)
        self._add_market(DELISTED_ASSET, "USDT").status = "BREAK"
        held = ["BTC", "ETH", "SOL", "DOGE", "BNB", "BTCDOWN", "PIVX", "SHIB"]
        extra = max(0, (size or 0) - len(held) - 2)  # + ETHW and USDT
        rng = random.Random(self.seed * 7919 + 17)
        for i in range(extra):
            code = "Z" + _letters(i)
            usd = math.exp(rng.uniform(math.log(0.02), math.log(400.0)))
            self.assets[code] = AssetModel(code, usd, rng.uniform(0.008, 0.02), rng.uniform(1e6, 5e7))
            self._add_market(code, "USDT")
            held.append(code)
        now = self.now_ms()
        start = now - history_days * DAY_MS
        bnb_fees = 0.0
        for asset in held:
            qty = 0.0
            timeline: list[tuple[int, str, _OrderPlan]] = []
            for symbol, orders in self._plan(asset, rng):
                times = sorted(rng.randint(start, now - 2 * HOUR_MS) for _ in orders)
                timeline.extend((t, symbol, plan) for plan, t in zip(orders, times, strict=True))
            # Every market of the asset in time order, so a sell never exceeds what was held then.
            for t, symbol, plan in sorted(timeline, key=lambda x: x[0]):
                qty, fee_bnb = self._fill_order(symbol, plan, t, qty, rng)
                bnb_fees += fee_bnb
            self._set_held(asset, qty)
        # BNB's balance is what its own fills left minus the BNB spent on the other assets' fees.
        self._set_held("BNB", max(self._trade_qty("BNB") - bnb_fees, 0.5))
        # A deposit the trades don't explain, an open sell order locking BTC, an asset with no market, USDT.
        sol_free, sol_locked = self.balances["SOL"]
        self.balances["SOL"] = (round(sol_free + 12.5, 8), sol_locked)
        btc_free, _ = self.balances["BTC"]
        locked = round(btc_free * 0.2, 5)
        self.balances["BTC"] = (round(btc_free - locked, 8), locked)
        oid = self._next_order_id("BTCUSDT")
        limit_price = _round_to(self.prices.at(self.markets["BTCUSDT"], now) * 1.15, 0.01)
        self.orders["BTCUSDT"].append(
            OrderRow(
                oid,
                "BTCUSDT",
                "SELL",
                "LIMIT",
                limit_price,
                locked,
                0.0,
                0.0,
                "NEW",
                now - HOUR_MS,
                now - HOUR_MS,
            )
        )
        # SHIB was mostly sold: what is left is dust (worth well under 1 USDT).
        self.balances["SHIB"] = (21034.0, 0.0)
        self.balances["ETHW"] = (4.21, 0.0)
        self.balances["USDT"] = (1523.42051, 0.0)
        self.balances["LDUSDT"] = (0.0, 0.0)  # zero balances are listed too (omitZeroBalances=false)
        self.balances["XRP"] = (0.0, 0.0)

    def _plan(self, asset: str, rng: random.Random) -> list[tuple[str, list[_OrderPlan]]]:
        """Which markets an asset traded on and its orders: buys first, sells never below zero."""
        symbols = [s for s, m in self.markets.items() if m.base == asset and m.quote in ("USDT", "BTC")]
        usd = self.assets[asset].usd
        budget = rng.uniform(300.0, 6000.0) if asset.startswith("Z") else rng.uniform(2000.0, 30000.0)
        out: list[tuple[str, list[_OrderPlan]]] = []
        for symbol in symbols:
            count = rng.randint(2, 5) if asset.startswith("Z") else rng.randint(3, 9)
            share = budget / len(symbols) / usd
            held = 0.0
            orders: list[_OrderPlan] = []
            for i in range(count):
                sell = i > 0 and held > 0 and rng.random() < 0.3
                qty = (held * rng.uniform(0.1, 0.5)) if sell else share * rng.uniform(0.2, 0.6)
                held += -qty if sell else qty
                if asset.startswith("Z"):
                    fee_mode = "base" if not sell else "quote"
                elif asset == "BNB":
                    fee_mode = "base"
                else:
                    fee_mode = "bnb" if rng.random() < 0.4 else ("quote" if sell else "base")
                orders.append(_OrderPlan("SELL" if sell else "BUY", qty, fee_mode))
            out.append((symbol, orders))
        return out

    def _fill_order(
        self, symbol: str, plan: _OrderPlan, t: int, held: float, rng: random.Random
    ) -> tuple[float, float]:
        """Record one order of 1-3 fills at time t; returns (base quantity held after it, BNB fees)."""
        m = self.markets[symbol]
        qty = _round_to(plan.qty, m.step)
        if plan.side == "SELL":
            qty = min(qty, _round_to(held * 0.98, m.step))
        if qty <= 0:
            return held, 0.0
        parts = rng.randint(1, 3)
        oid = self._next_order_id(symbol)
        maker = rng.random() < 0.5
        otype = "LIMIT" if maker else "MARKET"
        remaining = qty
        cum_quote = 0.0
        bnb = 0.0
        last_t = t
        for p in range(parts):
            q = remaining if p == parts - 1 else _round_to(qty / parts, m.step)
            if q <= 0:
                continue
            remaining = round(remaining - q, 8)
            ft = last_t + (rng.randint(50, 4000) if p else 0)
            last_t = ft
            price = _round_to(self.prices.at(m, ft), m.tick)
            quote_qty = round(price * q, 8)
            cum_quote += quote_qty
            buy = plan.side == "BUY"
            if plan.fee_mode == "bnb" and m.base != "BNB":
                quote_usd = (
                    quote_qty * self.prices.usd_anchor(m.quote, ft // HOUR_MS)
                    if m.quote != "USDT"
                    else quote_qty
                )
                bnb_price = self.prices.at(self.markets["BNBUSDT"], (ft // MINUTE_MS + 1) * MINUTE_MS)
                fee, fee_asset = round(quote_usd * 0.00075 / bnb_price, 8), "BNB"
                bnb += fee
            elif plan.fee_mode == "base" and (buy or m.base == "BNB"):
                fee, fee_asset = round(q * 0.001, 8), m.base
            else:
                fee, fee_asset = round(quote_qty * 0.001, 8), m.quote
            fill = Fill(
                self._next_trade_id(symbol), oid, symbol, price, q, quote_qty, fee, fee_asset, ft, buy, maker
            )
            self.fills[symbol].append(fill)
            if buy:
                held += q - (fee if fee_asset == m.base else 0.0)
            else:
                held -= q + (fee if fee_asset == m.base else 0.0)
        avg = cum_quote / qty if qty else 0.0
        self.orders[symbol].append(
            OrderRow(
                oid,
                symbol,
                plan.side,
                otype,
                _round_to(avg, m.tick),
                qty,
                qty,
                round(cum_quote, 8),
                "FILLED",
                t,
                last_t,
            )
        )
        return held, bnb

    def _trade_qty(self, asset: str) -> float:
        qty = 0.0
        for symbol, m in self.markets.items():
            if m.base != asset:
                continue
            for f in self.fills[symbol]:
                fee_base = f.commission if f.commission_asset == asset else 0.0
                qty += (f.qty - fee_base) if f.is_buyer else -(f.qty + fee_base)
        return qty

    def _set_held(self, asset: str, qty: float) -> None:
        self.balances[asset] = (round(max(qty, 0.0), 8), 0.0)

    def _next_trade_id(self, symbol: str) -> int:
        self._trade_ids[symbol] += int(1 + _unit(self.seed, symbol, self._trade_ids[symbol]) * 40)
        return self._trade_ids[symbol]

    def _next_order_id(self, symbol: str) -> int:
        self._order_ids[symbol] += int(1 + _unit(self.seed, symbol, self._order_ids[symbol]) * 900)
        return self._order_ids[symbol]

    # --- mutations for tests and the demo -----------------------------------------------------
    def delist(self, asset: str) -> None:
        """Halt every market of `asset` (status BREAK): gone from tickers, klines and new trading."""
        with self.lock:
            for m in self.markets.values():
                if m.base == asset or m.quote == asset:
                    m.status = "BREAK"

    def set_balance(self, asset: str, free: float, locked: float = 0.0) -> None:
        with self.lock:
            if asset not in self.assets:
                self.assets[asset] = AssetModel(asset, 1.0)
            self.balances[asset] = (free, locked)

    def trade(self, symbol: str, side: str, qty: float, fee_asset: str | None = None) -> Fill:
        """Fill a market order now: records the order and fill and moves both balances."""
        with self.lock:
            m = self.markets[symbol]
            now = self.now_ms()
            price = _round_to(self.prices.at(m, now), m.tick)
            q = _round_to(qty, m.step)
            quote_qty = round(price * q, 8)
            buy = side.upper() == "BUY"
            fee_asset = fee_asset or (m.base if buy else m.quote)
            if fee_asset == "BNB" and m.base != "BNB":
                bnb_price = self.prices.at(self.markets["BNBUSDT"], (now // MINUTE_MS + 1) * MINUTE_MS)
                quote_usd = quote_qty * (
                    self.prices.at(self.markets[m.quote + "USDT"], now) if m.quote != "USDT" else 1.0
                )
                fee = round(quote_usd * 0.00075 / bnb_price, 8)
            elif fee_asset == m.base:
                fee = round(q * 0.001, 8)
            else:
                fee = round(quote_qty * 0.001, 8)
            oid = self._next_order_id(symbol)
            fill = Fill(
                self._next_trade_id(symbol), oid, symbol, price, q, quote_qty, fee, fee_asset, now, buy, False
            )
            self.fills[symbol].append(fill)
            self.orders[symbol].append(
                OrderRow(oid, symbol, side.upper(), "MARKET", 0.0, q, q, quote_qty, "FILLED", now, now)
            )
            sign = 1 if buy else -1
            self._move(m.base, sign * q)
            self._move(m.quote, -sign * quote_qty)
            self._move(fee_asset, -fee)
            return fill

    def _move(self, asset: str, delta: float) -> None:
        free, locked = self.balances.get(asset, (0.0, 0.0))
        self.balances[asset] = (round(max(free + delta, 0.0), 8), locked)

    # --- request plumbing ------------------------------------------------------------------
    def charge(self, client: str, weight: int) -> dict[str, str]:
        """Count request weight for a client (per calendar minute, as Binance does); raise when over."""
        now = self.clock()
        window = int(now // 60)
        with self.lock:
            w = self.weights.setdefault(client, _Weight())
            if w.banned_until > now:
                until_ms = int(w.banned_until * 1000)
                raise BinanceError(
                    418,
                    -1003,
                    f"Way too much request weight used; IP banned until {until_ms}. "
                    "Please use WebSocket Streams for live updates to avoid bans.",
                    {"Retry-After": str(max(1, math.ceil(w.banned_until - now)))},
                )
            if w.window != window:
                w.window, w.used, w.rejected = window, 0, 0
            retry = str(max(1, math.ceil((window + 1) * 60 - now)))
            if w.used + weight > self.weight_limit:
                w.rejected += 1
                if w.rejected > self.ban_after:
                    w.banned_until = now + self.ban_seconds
                headers = {
                    "Retry-After": retry,
                    "x-mbx-used-weight": str(w.used),
                    "x-mbx-used-weight-1m": str(w.used),
                }
                raise BinanceError(
                    429,
                    -1003,
                    f"Too much request weight used; current limit is {self.weight_limit} request weight "
                    "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                    headers,
                )
            w.used += weight
            return {"x-mbx-used-weight": str(w.used), "x-mbx-used-weight-1m": str(w.used)}

    def used_weight(self, client: str = "127.0.0.1") -> int:
        with self.lock:
            w = self.weights.get(client)
            return w.used if w and w.window == int(self.clock() // 60) else 0

    def verify(self, request: Request, params: dict[str, str]) -> None:
        """Binance's checks for a SIGNED endpoint, in its order, with its codes and HTTP statuses."""
        key = request.headers.get("x-mbx-apikey")
        if not key or len(key) != 64 or not key.isalnum():
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            client = request.client.host if request.client else "unknown"
            raise BinanceError(
                401, -2015, f"Invalid API-key, IP, or permissions for action, request ip: {client}"
            )
        ts_raw = params.get("timestamp")
        if not ts_raw or not ts_raw.isdigit():
            raise BinanceError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )
        recv_raw = params.get("recvWindow", "5000")
        try:
            recv_window = float(recv_raw)
        except ValueError:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'recvWindow'.") from None
        if recv_window > MAX_RECV_WINDOW or recv_window <= 0:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        ts = int(ts_raw)
        now = self.now_ms()
        if ts > now + 1000:
            raise BinanceError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - ts > recv_window:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        raw_query = request.url.query
        parts = raw_query.split("&") if raw_query else []
        signature = next((p.split("=", 1)[1] for p in parts if p.startswith("signature=")), "")
        if not signature:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        payload = "&".join(p for p in parts if not p.startswith("signature="))
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")

    def market_or_error(self, symbol: str | None, *, trading: bool = False) -> Market:
        if not symbol:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        m = self.markets.get(symbol.upper())
        if m is None or (trading and m.status != "TRADING"):
            raise BinanceError(400, -1121, "Invalid symbol.")
        return m

    # --- endpoint bodies -------------------------------------------------------------------
    def exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        wanted: list[str] | None = None
        if "symbol" in params:
            wanted = [params["symbol"]]
        elif "symbols" in params:
            wanted = _json_list(params["symbols"], "symbols")
        with self.lock:
            if wanted is not None:
                symbols = [self.market_or_error(s).info() for s in wanted]
            else:
                symbols = [m.info() for m in self.markets.values()]
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.weight_limit,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def ticker(self, m: Market, now: int, full: bool = True) -> dict[str, Any]:
        open_t = now - DAY_MS
        first_hour = open_t // HOUR_MS
        o = self.prices.at(m, open_t)
        last = self.prices.at(m, now)
        hi, lo, vol, qvol = max(o, last), min(o, last), 0.0, 0.0
        for h in range(first_hour, now // HOUR_MS + 1):
            start = max(h * HOUR_MS, open_t)
            _, ch, cl, cc, cv = self.prices.candle(m, h * HOUR_MS, HOUR_MS, now)
            if start > h * HOUR_MS:
                continue  # the partial first hour only contributes its open
            hi, lo = max(hi, ch), min(lo, cl)
            vol += cv
            qvol += cv * cc
        tick = m.tick

        def r(x: float) -> str:
            return _fmt(_round_to(x, tick))

        count = int(vol / max(m.step * 50, 1e-8)) % 900_000 + 1000
        last_id = self._trade_ids[m.symbol] + 5_000_000
        row: dict[str, Any] = {
            "symbol": m.symbol,
            "priceChange": r(last - o) if last >= o else "-" + r(o - last),
            "priceChangePercent": f"{(last - o) / o * 100:.3f}",
            "weightedAvgPrice": r(qvol / vol if vol else last),
            "prevClosePrice": r(self.prices.at(m, open_t - 1)),
            "lastPrice": r(last),
            "lastQty": _fmt(_round_to(max(m.step, 3 * m.step * (1 + _unit(m.symbol, now // 1000))), m.step)),
            "bidPrice": r(last - tick),
            "bidQty": _fmt(m.step * 137),
            "askPrice": r(last),
            "askQty": _fmt(m.step * 89),
            "openPrice": r(o),
            "highPrice": r(hi),
            "lowPrice": r(lo),
            "volume": _fmt(vol),
            "quoteVolume": _fmt(qvol),
            "openTime": open_t,
            "closeTime": now,
            "firstId": last_id - count,
            "lastId": last_id,
            "count": count,
        }
        if not full:
            keep = ("symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume")
            row = {k: row[k] for k in (*keep, "openTime", "closeTime", "firstId", "lastId", "count")}
        return row

    def klines(self, params: dict[str, str]) -> list[list[Any]]:
        m = self.market_or_error(params.get("symbol"), trading=True)
        interval = params.get("interval", "")
        step = INTERVALS_MS.get(interval)
        if step is None:
            raise BinanceError(400, -1120, "Invalid interval.")
        limit = _int_param(params, "limit", 500)
        if not 1 <= limit <= 1000:
            limit = 1000 if limit > 1000 else 500
        now = self.now_ms()
        end_param = params.get("endTime")
        end = min(int(end_param), now) if end_param else now
        start_param = params.get("startTime")
        if start_param:
            first = -(-int(start_param) // step) * step
            opens = range(first, end + 1, step)
            opens = opens[:limit]
        else:
            last_open = end // step * step
            opens = range(max(last_open - (limit - 1) * step, 0), last_open + 1, step)
        rows: list[list[Any]] = []

        def r(x: float) -> str:
            return _fmt(_round_to(x, m.tick))

        for t in opens:
            if t > now:
                break
            o, h, lo, c, v = self.prices.candle(m, t, step, now)
            trades = int(v / max(m.step * 40, 1e-8)) % 50_000 + 10
            rows.append(
                [
                    t,
                    r(o),
                    r(h),
                    r(lo),
                    r(c),
                    _fmt(v),
                    t + step - 1,
                    _fmt(v * c),
                    trades,
                    _fmt(v * 0.48),
                    _fmt(v * 0.48 * c),
                    "0",
                ]
            )
        return rows

    def account(self, params: dict[str, str]) -> dict[str, Any]:
        omit_zero = params.get("omitZeroBalances", "false").lower() == "true"
        with self.lock:
            balances = [
                {"asset": a, "free": _fmt(f), "locked": _fmt(lk)}
                for a, (f, lk) in self.balances.items()
                if not (omit_zero and f == 0 and lk == 0)
            ]
        now = self.now_ms()
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": now - 1234,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 354937868,
        }

    def my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        m = self.market_or_error(params.get("symbol"))
        limit = _int_param(params, "limit", 500)
        if limit > 1000:
            raise BinanceError(
                400, -1100, "Illegal characters found in parameter 'limit'; legal range is '1-1000'."
            )
        from_id = params.get("fromId")
        start = params.get("startTime")
        end = params.get("endTime")
        order_id = params.get("orderId")
        if from_id is not None and (start is not None or end is not None):
            raise BinanceError(400, -1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and int(end) - int(start) > DAY_MS:
            raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
        with self.lock:
            rows = list(self.fills[m.symbol])
        if order_id is not None:
            rows = [f for f in rows if f.order_id == int(order_id)]
        if from_id is not None:
            rows = [f for f in rows if f.id >= int(from_id)][:limit]
        elif start is not None or end is not None:
            lo = int(start) if start is not None else int(end or 0) - DAY_MS
            hi = int(end) if end is not None else lo + DAY_MS
            rows = [f for f in rows if lo <= f.time <= hi][:limit]
        else:
            rows = rows[-limit:]
        return [f.row() for f in sorted(rows, key=lambda f: f.id)]

    def all_orders(self, params: dict[str, str], open_only: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            if open_only:
                symbols = [params["symbol"].upper()] if params.get("symbol") else list(self.orders)
                if params.get("symbol"):
                    self.market_or_error(params.get("symbol"))
                return [
                    o.row()
                    for s in symbols
                    for o in self.orders.get(s, [])
                    if o.status in ("NEW", "PARTIALLY_FILLED")
                ]
            m = self.market_or_error(params.get("symbol"))
            rows = sorted(self.orders[m.symbol], key=lambda o: o.order_id)
        limit = _int_param(params, "limit", 500)
        if limit > 1000:
            raise BinanceError(
                400, -1100, "Illegal characters found in parameter 'limit'; legal range is '1-1000'."
            )
        if params.get("orderId") is not None:
            rows = [o for o in rows if o.order_id >= int(params["orderId"])][:limit]
        elif params.get("startTime") or params.get("endTime"):
            lo = int(params.get("startTime") or 0)
            hi = int(params.get("endTime") or 2**62)
            if params.get("startTime") and params.get("endTime") and hi - lo > DAY_MS:
                raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
            rows = [o for o in rows if lo <= o.time <= hi][:limit]
        else:
            rows = rows[-limit:]
        return [o.row() for o in rows]


def _letters(i: int) -> str:
    """0 -> 'AAA', 1 -> 'AAB' ...: generated asset codes that no ccxt alias rewrites."""
    out = ""
    for _ in range(3):
        i, r = divmod(i, 26)
        out = chr(65 + r) + out
    return out


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _json_list(raw: str, name: str) -> list[str]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return value


_ENCODER = msgspec.json.Encoder()


def _json(body: Any, headers: dict[str, str], status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json", headers=headers)


SIGNED_PATHS = frozenset({"/api/v3/account", "/api/v3/myTrades", "/api/v3/allOrders", "/api/v3/openOrders"})
PUBLIC_PATHS = frozenset(
    {
        "/api/v3/ping",
        "/api/v3/time",
        "/api/v3/exchangeInfo",
        "/api/v3/ticker/24hr",
        "/api/v3/ticker/price",
        "/api/v3/klines",
    }
)


def request_weight(path: str, params: dict[str, str]) -> int:
    """The request weight Binance charges for a call (its documented table)."""
    if path == "/api/v3/ticker/24hr":
        if "symbol" in params:
            return 2
        if "symbols" in params:
            n = params["symbols"].count(",") + 1
            return 2 if n <= 20 else 40 if n <= 100 else 80
        return 80
    if path == "/api/v3/ticker/price":
        return 2 if "symbol" in params else 4
    if path == "/api/v3/myTrades":
        return 5 if "orderId" in params else 20
    if path == "/api/v3/openOrders":
        return 6 if "symbol" in params else 80
    return {
        "/api/v3/exchangeInfo": 20,
        "/api/v3/klines": 2,
        "/api/v3/account": 20,
        "/api/v3/allOrders": 20,
    }.get(path, 1)


def _dispatch(emu: BinanceEmulator, path: str, p: dict[str, str], now: int) -> Any:
    """The body of a successful answer for `path` (raises BinanceError otherwise)."""
    if path == "/api/v3/ping":
        return {}
    if path == "/api/v3/time":
        return {"serverTime": now}
    if path == "/api/v3/exchangeInfo":
        return emu.exchange_info(p)
    if path == "/api/v3/klines":
        return emu.klines(p)
    if path == "/api/v3/account":
        return emu.account(p)
    if path == "/api/v3/myTrades":
        return emu.my_trades(p)
    if path == "/api/v3/allOrders":
        return emu.all_orders(p)
    if path == "/api/v3/openOrders":
        return emu.all_orders(p, open_only=True)
    # ticker/24hr and ticker/price
    if "symbol" in p and "symbols" in p:
        raise BinanceError(400, -1128, "Combination of optional parameters invalid.")
    with emu.lock:
        if "symbol" in p:
            markets = [emu.market_or_error(p["symbol"], trading=True)]
        elif "symbols" in p:
            markets = [emu.market_or_error(s, trading=True) for s in _json_list(p["symbols"], "symbols")]
        else:
            markets = [m for m in emu.markets.values() if m.status == "TRADING"]
    if path == "/api/v3/ticker/price":
        rows: list[dict[str, Any]] = [
            {"symbol": m.symbol, "price": _fmt(_round_to(emu.prices.at(m, now), m.tick))} for m in markets
        ]
    else:
        full = p.get("type", "FULL") != "MINI"
        rows = [emu.ticker(m, now, full) for m in markets]
    return rows[0] if "symbol" in p else rows


def create_app(emulator: BinanceEmulator | None = None, **kwargs: Any) -> Starlette:
    """The Starlette app serving `emulator` (built from kwargs if not given) behind its FaultSwitch."""
    emu = emulator or BinanceEmulator(**kwargs)

    async def handle(request: Request) -> Response:
        path = request.url.path
        signed = path in SIGNED_PATHS
        if not signed and path not in PUBLIC_PATHS:
            return Response("", status_code=404)
        params = dict(urllib.parse.parse_qsl(request.url.query, keep_blank_values=True))
        client = request.client.host if request.client else "unknown"
        headers: dict[str, str] = {}
        try:
            headers = emu.charge(client, request_weight(path, params))
            if signed:
                emu.verify(request, params)
            body = _dispatch(emu, path, params, emu.now_ms())
        except BinanceError as err:
            return _json({"code": err.code, "msg": err.msg}, {**headers, **err.headers}, err.status)
        return _json(body, headers)

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET"])])
    app.state.emulator = emu
    app.add_middleware(FaultMiddleware, switch=emu.switch)
    return app


def wrong_signature_fault(path_prefix: str = "/api/v3/", times: int | None = None) -> Fault:
    """A switchable fault answering signed calls as Binance does when the signature does not match."""
    return Fault(
        "error",
        path_prefix=path_prefix,
        times=times,
        status=400,
        body={"code": -1022, "msg": "Signature for this request is not valid."},
    )


def signed_query(params: dict[str, Any], secret: str) -> str:
    """A query string signed the way Binance expects (for tests and hand-made requests)."""
    query = urllib.parse.urlencode(params)
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"

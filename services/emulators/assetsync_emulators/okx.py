"""OKX v5 REST emulator: the `/api/v5` endpoints ccxt's async `okx` calls for a spot account.

Serves on one loopback port, with OKX's envelope `{"code": "0", "msg": "", "data": [...]}`, its field
names, string-encoded decimals and error codes:

- public: `public/time`, `public/instruments` (SPOT, SWAP), `market/tickers` (SPOT), `market/ticker`,
  `public/liquidation-orders` (SWAP, per underlying; new liquidations appear every minute).
- private (headers OK-ACCESS-KEY / -SIGN / -TIMESTAMP / -PASSPHRASE; the signature is
  base64(HMAC-SHA256(secret, timestamp + method + requestPath + query + body))): `account/balance`,
  `account/positions`, `account/config`, `account/trade-fee`, `trade/orders-pending`, `trade/fills`,
  `trade/fills-history`. Rejections as OKX answers them (HTTP 401): unknown key 50111, bad
  timestamp 50112, clock skew over 30 s 50102, wrong passphrase 50105, bad signature 50113.
- rate limits per endpoint and client (OKX's documented "N requests per 2 s"): over the limit → HTTP
  429 with code 50011.

Prices follow the Binance emulator's deterministic paths (same seed → same BTC price on both).
The demo account holds BTC (also held on the Binance emulator), ETH, SOL, OKB and USDT, with USDT-quoted
fills that explain those balances, three pending orders and two swap positions. Faults: the shared
`FaultSwitch` plus `trade()` to change the account under a running client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assetsync_emulators.binance import CORE_ASSETS, AssetModel, Market, PriceModel, _mix, _unit
from assetsync_emulators.common import FaultMiddleware, FaultSwitch

# Credentials of the demo account (the demo stack uses them too). OKX keys are UUIDs.
DEMO_API_KEY = "0d5c7e3a-5a1b-4c7e-9f1d-a55e7c0de001"
DEMO_API_SECRET = "A55E7C0DE0KXDEM0SECRET0000000001"
DEMO_PASSPHRASE = "AssetSync-Demo1"

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MAX_SKEW_MS = 30_000
RATE_WINDOW = 2.0  # OKX states its limits per 2 seconds

# Requests per 2 s per endpoint (OKX v5 docs), by client for public and by key for private calls.
RATE_LIMITS: dict[str, int] = {
    "/api/v5/public/time": 10,
    "/api/v5/public/instruments": 20,
    "/api/v5/market/tickers": 20,
    "/api/v5/market/ticker": 20,
    "/api/v5/public/liquidation-orders": 40,
    "/api/v5/account/balance": 10,
    "/api/v5/account/positions": 10,
    "/api/v5/account/config": 5,
    "/api/v5/account/trade-fee": 5,
    "/api/v5/trade/orders-pending": 60,
    "/api/v5/trade/fills": 60,
    "/api/v5/trade/fills-history": 10,
}
PRIVATE_PATHS = frozenset(p for p in RATE_LIMITS if p.startswith(("/api/v5/account/", "/api/v5/trade/")))

ASSETS: dict[str, AssetModel] = {**CORE_ASSETS, "OKB": AssetModel("OKB", 48.5, 0.009, 6e7)}
SPOT: tuple[tuple[str, str, float, float], ...] = (  # base, quote, tickSz, lotSz
    ("BTC", "USDT", 0.1, 0.00000001),
    ("ETH", "USDT", 0.01, 0.000001),
    ("ETH", "BTC", 0.00001, 0.000001),
    ("SOL", "USDT", 0.01, 0.000001),
    ("OKB", "USDT", 0.01, 0.000001),
    ("DOGE", "USDT", 0.00001, 0.000001),
    ("XRP", "USDT", 0.0001, 0.000001),
    ("USDC", "USDT", 0.0001, 0.000001),
)
# Linear USDT swaps: underlying base and contract value (base units per contract).
SWAPS: dict[str, float] = {"BTC": 0.01, "ETH": 0.1, "SOL": 1.0, "DOGE": 1000.0}


class OkxError(Exception):
    """An error answer in OKX's shape: HTTP status plus {"code", "msg", "data": []}."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


def _s(x: float, digits: int = 8) -> str:
    """OKX's decimal strings: no trailing zeros."""
    text = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


@dataclass
class Fill:
    """One spot fill as trade/fills-history shows it."""

    trade_id: int
    bill_id: int
    ord_id: int
    inst_id: str
    side: str
    px: float
    sz: float
    fee: float  # negative: charged
    fee_ccy: str
    ts: int
    maker: bool = False

    def row(self) -> dict[str, Any]:
        return {
            "instType": "SPOT",
            "instId": self.inst_id,
            "tradeId": str(self.trade_id),
            "ordId": str(self.ord_id),
            "clOrdId": "",
            "billId": str(self.bill_id),
            "subType": "1" if self.side == "buy" else "2",
            "tag": "",
            "fillPx": _s(self.px),
            "fillSz": _s(self.sz),
            "fillIdxPx": _s(self.px),
            "fillPnl": "0",
            "fillPxVol": "",
            "fillPxUsd": "",
            "fillMarkVol": "",
            "fillFwdPx": "",
            "fillMarkPx": "",
            "side": self.side,
            "posSide": "net",
            "execType": "M" if self.maker else "T",
            "feeCcy": self.fee_ccy,
            "fee": _s(self.fee, 10),
            "feeRate": "-0.0008" if self.maker else "-0.001",
            "tradeQuoteCcy": self.inst_id.split("-")[1],
            "ts": str(self.ts),
            "fillTime": str(self.ts),
        }


@dataclass
class PendingOrder:
    """One live spot limit order."""

    ord_id: int
    inst_id: str
    side: str
    px: float
    sz: float
    c_time: int
    filled: float = 0.0

    def row(self) -> dict[str, Any]:
        return {
            "accFillSz": _s(self.filled),
            "algoClOrdId": "",
            "algoId": "",
            "attachAlgoClOrdId": "",
            "attachAlgoOrds": [],
            "avgPx": "",
            "cTime": str(self.c_time),
            "cancelSource": "",
            "cancelSourceReason": "",
            "category": "normal",
            "ccy": "",
            "clOrdId": "",
            "fee": "0",
            "feeCcy": self.inst_id.split("-")[0 if self.side == "buy" else 1],
            "fillPx": "",
            "fillSz": "0",
            "fillTime": "",
            "instId": self.inst_id,
            "instType": "SPOT",
            "isTpLimit": "false",
            "lever": "",
            "ordId": str(self.ord_id),
            "ordType": "limit",
            "pnl": "0",
            "posSide": "net",
            "px": _s(self.px),
            "pxType": "",
            "pxUsd": "",
            "pxVol": "",
            "quickMgnType": "",
            "rebate": "0",
            "rebateCcy": self.inst_id.split("-")[1 if self.side == "buy" else 0],
            "reduceOnly": "false",
            "side": self.side,
            "slOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "source": "",
            "state": "partially_filled" if self.filled else "live",
            "stpId": "",
            "stpMode": "cancel_maker",
            "sz": _s(self.sz),
            "tag": "",
            "tdMode": "cash",
            "tgtCcy": "",
            "tpOrdPx": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tradeId": "",
            "uTime": str(self.c_time),
        }


@dataclass
class SwapPosition:
    """One open perpetual-swap position (contracts of `SWAPS[base]` base units each)."""

    pos_id: int
    base: str
    pos: float  # contracts; negative: short (net mode)
    avg_px: float
    lever: int
    mgn_mode: str
    c_time: int


@dataclass
class _Bucket:
    """Timestamps of one client's recent calls to one endpoint."""

    calls: deque[float] = field(default_factory=deque)


class OkxEmulator:
    """The exchange state behind the app: instruments, a deterministic account, and rate limits."""

    def __init__(
        self,
        *,
        seed: int = 7,
        api_key: str = DEMO_API_KEY,
        api_secret: str = DEMO_API_SECRET,
        passphrase: str = DEMO_PASSPHRASE,
        clock: Callable[[], float] = time.time,
        switch: FaultSwitch | None = None,
        rate_limits: dict[str, int] | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.passphrase = passphrase
        self.clock = clock
        self.switch = switch or FaultSwitch()
        self.rate_limits = dict(RATE_LIMITS if rate_limits is None else rate_limits)
        self.prices = PriceModel(seed, ASSETS)
        self.seed = seed
        self.lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.spot = {f"{b}-{q}": Market(f"{b}-{q}", b, q, tick=t, step=lot) for b, q, t, lot in SPOT}
        self._ticks = {f"{b}-{q}": t for b, q, t, _ in SPOT}
        self.balances: dict[str, float] = {}
        self.fills: list[Fill] = []
        self.orders: list[PendingOrder] = []
        self.positions: list[SwapPosition] = []
        self._next_id = 600_000_000_000 + seed * 1_000_000
        self._build_account()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _id(self) -> int:
        self._next_id += 1 + int(_unit(self.seed, self._next_id) * 7)
        return self._next_id

    def price(self, inst_id: str, t_ms: int | None = None) -> float:
        m = self.spot[inst_id]
        px = self.prices.at(m, self.now_ms() if t_ms is None else t_ms)
        tick = self._ticks[inst_id]
        return round(round(px / tick) * tick, 10)

    def usd(self, asset: str, t_ms: int | None = None) -> float:
        if asset in ("USDT", "USDC"):
            return 1.0
        return self.price(f"{asset}-USDT", t_ms)

    def index_usd(self, asset: str, t_ms: int) -> float:
        """The USD value OKX's index gives an asset (also one without a USDT market); 0 when unknown."""
        if f"{asset}-USDT" in self.spot or asset in ("USDT", "USDC"):
            return self.usd(asset, t_ms)
        return self.prices.usd_anchor(asset, t_ms // HOUR_MS) if asset in ASSETS else 0.0

    # --- the demo account ---------------------------------------------------------------------
    def _build_account(self) -> None:
        """Fills over the last weeks whose net amounts are the balances (fees in base on buys)."""
        now = self.now_ms()
        start = (now // HOUR_MS - 24 * 30) * HOUR_MS
        usdt = 45_000.0  # deposited before the first fill
        plan = (
            ("BTC-USDT", (("buy", 0.12), ("buy", 0.08), ("sell", 0.05), ("buy", 0.1))),
            ("ETH-USDT", (("buy", 2.5), ("buy", 1.0), ("sell", 0.4))),
            ("SOL-USDT", (("buy", 40.0), ("sell", 15.0))),
            ("OKB-USDT", (("buy", 30.0),)),
        )
        t = start
        for inst_id, steps in plan:
            for side, sz in steps:
                t += int((20 + 60 * _unit(self.seed, inst_id, t)) * HOUR_MS)
                self._fill(inst_id, side, sz, min(t, now - HOUR_MS))
        for asset, amount in self.balances.items():
            if asset == "USDT":
                usdt += amount
        self.balances["USDT"] = round(usdt, 6)
        hour = now // HOUR_MS * HOUR_MS
        self.orders = [
            PendingOrder(
                self._id(), "BTC-USDT", "buy", self.price("BTC-USDT", hour) * 0.9, 0.01, hour - HOUR_MS
            ),
            PendingOrder(
                self._id(), "ETH-USDT", "sell", self.price("ETH-USDT", hour) * 1.15, 0.5, hour - 5 * HOUR_MS
            ),
            PendingOrder(
                self._id(), "SOL-USDT", "buy", self.price("SOL-USDT", hour) * 0.85, 5.0, hour - 26 * HOUR_MS
            ),
        ]
        self.positions = [
            SwapPosition(self._id(), "BTC", 5.0, self.usd("BTC", hour - 72 * HOUR_MS), 5, "cross", hour - 72 * HOUR_MS),
            SwapPosition(
                self._id(), "ETH", -20.0, self.usd("ETH", hour - 30 * HOUR_MS), 3, "isolated", hour - 30 * HOUR_MS
            ),
        ]  # fmt: skip

    def _fill(self, inst_id: str, side: str, sz: float, ts: int) -> Fill:
        base, quote = inst_id.split("-")
        px = self.price(inst_id, ts)
        maker = _unit(self.seed, "maker", ts) < 0.4
        rate = 0.0008 if maker else 0.001
        if side == "buy":  # OKX charges a spot buyer in the base currency, a seller in the quote
            fee, fee_ccy = -sz * rate, base
            self.balances[base] = self.balances.get(base, 0.0) + sz * (1 - rate)
            self.balances[quote] = self.balances.get(quote, 0.0) - sz * px
        else:
            fee, fee_ccy = -sz * px * rate, quote
            self.balances[base] = self.balances.get(base, 0.0) - sz
            self.balances[quote] = self.balances.get(quote, 0.0) + sz * px * (1 - rate)
        f = Fill(self._id(), self._id(), self._id(), inst_id, side, px, sz, fee, fee_ccy, ts, maker)
        self.fills.append(f)
        return f

    def trade(self, inst_id: str, side: str, sz: float) -> Fill:
        """A new fill now, moving the balances (for tests changing the account under a client)."""
        with self.lock:
            return self._fill(inst_id, side, sz, self.now_ms())

    # --- auth and limits ----------------------------------------------------------------------
    def charge(self, who: str, path: str) -> None:
        """Count a call against the endpoint's limit; OkxError 429/50011 when over it."""
        limit = self.rate_limits.get(path)
        if limit is None:
            return
        now = time.monotonic()
        with self.lock:
            bucket = self._buckets.setdefault((who, path), _Bucket())
            while bucket.calls and now - bucket.calls[0] >= RATE_WINDOW:
                bucket.calls.popleft()
            if len(bucket.calls) >= limit:
                raise OkxError(429, "50011", "Too Many Requests")
            bucket.calls.append(now)

    def verify(self, request: Request, body: bytes) -> None:
        """OKX's header authentication; raises OkxError with OKX's code for each failure."""
        h = request.headers
        key = h.get("OK-ACCESS-KEY", "")
        sign = h.get("OK-ACCESS-SIGN", "")
        stamp = h.get("OK-ACCESS-TIMESTAMP", "")
        phrase = h.get("OK-ACCESS-PASSPHRASE", "")
        if not key:
            raise OkxError(401, "50103", "Request header OK-ACCESS-KEY cannot be empty.")
        if not phrase:
            raise OkxError(401, "50104", "Request header OK-ACCESS-PASSPHRASE cannot be empty.")
        if not sign:
            raise OkxError(401, "50106", "Request header OK-ACCESS-SIGN cannot be empty.")
        if not stamp:
            raise OkxError(401, "50107", "Request header OK-ACCESS-TIMESTAMP cannot be empty.")
        if not hmac.compare_digest(key, self.api_key):
            raise OkxError(401, "50111", "Invalid OK-ACCESS-KEY.")
        try:
            sent = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError as exc:
            raise OkxError(401, "50112", "Invalid OK-ACCESS-TIMESTAMP.") from exc
        if abs(sent.timestamp() * 1000 - self.now_ms()) > MAX_SKEW_MS:
            raise OkxError(401, "50102", "Timestamp request expired.")
        if not hmac.compare_digest(phrase, self.passphrase):
            raise OkxError(401, "50105", "Request header OK-ACCESS-PASSPHRASE incorrect.")
        query = request.url.query
        path = request.url.path + (f"?{query}" if query else "")
        prehash = stamp + request.method + path + body.decode("utf-8")
        want = base64.b64encode(hmac.new(self.api_secret.encode(), prehash.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(sign.encode(), want):
            raise OkxError(401, "50113", "Invalid Sign.")

    # --- public -------------------------------------------------------------------------------
    def instruments(self, p: dict[str, str]) -> list[dict[str, Any]]:
        kind = _required(p, "instType")
        if kind == "SPOT":
            return [self._spot_row(m) for m in self.spot.values() if _match(p, "instId", m.symbol)]
        if kind == "SWAP":
            return [
                self._swap_row(b)
                for b in SWAPS
                if _match(p, "instFamily", f"{b}-USDT") and _match(p, "uly", f"{b}-USDT")
            ]
        return []

    def _spot_row(self, m: Market) -> dict[str, Any]:
        return {
            "alias": "",
            "auctionEndTime": "",
            "baseCcy": m.base,
            "category": "1",
            "ctMult": "",
            "ctType": "",
            "ctVal": "",
            "ctValCcy": "",
            "expTime": "",
            "futureSettlement": False,
            "instFamily": "",
            "instId": m.symbol,
            "instType": "SPOT",
            "lever": "10" if m.quote == "USDT" else "",
            "listTime": "1611907686000",
            "lotSz": _s(m.step),
            "maxIcebergSz": "9999999999",
            "maxLmtAmt": "20000000",
            "maxLmtSz": "9999999999",
            "maxMktAmt": "1000000",
            "maxMktSz": "1000000",
            "maxStopSz": "1000000",
            "maxTriggerSz": "9999999999",
            "maxTwapSz": "9999999999",
            "minSz": _s(max(m.step, 0.00001)),
            "optType": "",
            "quoteCcy": m.quote,
            "ruleType": "normal",
            "settleCcy": "",
            "state": "live",
            "stk": "",
            "tickSz": _s(m.tick, 10),
            "uly": "",
        }

    def _swap_row(self, base: str) -> dict[str, Any]:
        return {
            "alias": "",
            "baseCcy": "",
            "category": "1",
            "ctMult": "1",
            "ctType": "linear",
            "ctVal": _s(SWAPS[base]),
            "ctValCcy": base,
            "expTime": "",
            "instFamily": f"{base}-USDT",
            "instId": f"{base}-USDT-SWAP",
            "instType": "SWAP",
            "lever": "100",
            "listTime": "1611916828000",
            "lotSz": "0.01",
            "maxLmtSz": "100000000",
            "maxMktSz": "12000",
            "minSz": "0.01",
            "optType": "",
            "quoteCcy": "",
            "ruleType": "normal",
            "settleCcy": "USDT",
            "state": "live",
            "stk": "",
            "tickSz": "0.1" if base == "BTC" else "0.01",
            "uly": f"{base}-USDT",
        }

    def ticker(self, inst_id: str, now: int) -> dict[str, Any]:
        last = self.price(inst_id, now)
        open24 = self.price(inst_id, now - 24 * HOUR_MS)
        sod0 = self.price(inst_id, now // (24 * HOUR_MS) * 24 * HOUR_MS)
        swing = [self.price(inst_id, now - k * 2 * HOUR_MS) for k in range(13)]
        m = self.spot[inst_id]
        usd = ASSETS[m.base].daily_volume_usd if m.base in ASSETS else 1e6
        vol_quote = usd * (0.8 + 0.4 * _mix(len(inst_id), now // HOUR_MS)) / self.usd(m.quote, now)
        tick = self._ticks[inst_id]
        return {
            "instType": "SPOT",
            "instId": inst_id,
            "last": _s(last, 10),
            "lastSz": "0.0123",
            "askPx": _s(last + tick, 10),
            "askSz": "1.52",
            "bidPx": _s(last, 10),
            "bidSz": "0.87",
            "open24h": _s(open24, 10),
            "high24h": _s(max(swing), 10),
            "low24h": _s(min(swing), 10),
            "volCcy24h": _s(vol_quote, 4),
            "vol24h": _s(vol_quote / last, 6),
            "ts": str(now),
            "sodUtc0": _s(sod0, 10),
            "sodUtc8": _s(self.price(inst_id, now // (24 * HOUR_MS) * 24 * HOUR_MS - 8 * HOUR_MS), 10),
        }

    def tickers(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        if _required(p, "instType") != "SPOT":
            return []
        return [self.ticker(i, now) for i in self.spot]

    def liquidations(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        """Filled liquidations of one swap underlying: a few a minute, newest first, 100 at most."""
        if _required(p, "instType") != "SWAP":
            return []
        family = p.get("instFamily") or p.get("uly") or ""
        if not family:
            raise OkxError(400, "51000", "Parameter uly or instFamily error")
        base = family.split("-")[0]
        if family != f"{base}-USDT" or base not in SWAPS:
            return []
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        before = int(p.get("before") or 0)  # newer than
        after = int(p.get("after") or now + 1)  # older than
        details: list[dict[str, Any]] = []
        minute = min(after - 1, now) // MINUTE_MS
        key = int(_unit(self.seed, family) * (1 << 40))
        while len(details) < limit and minute * MINUTE_MS > max(before, now - 7 * 24 * HOUR_MS):
            for k in range(int(_mix(key, minute) * 3.2)):
                ts = minute * MINUTE_MS + int(_mix(key, minute, k, 9) * MINUTE_MS)
                if not (before < ts < after and ts <= now):
                    continue
                long_side = _mix(key, minute, k, 1) < 0.55
                px = self.usd(base, ts) * (0.994 if long_side else 1.006)
                sz = round(1 + _mix(key, minute, k, 2) ** 3 * 400)
                details.append(
                    {
                        "bkLoss": "0",
                        "bkPx": _s(px, 6),
                        "ccy": "",
                        "posSide": "long" if long_side else "short",
                        "side": "sell" if long_side else "buy",
                        "sz": _s(sz),
                        "ts": str(ts),
                    }
                )
            minute -= 1
        details.sort(key=lambda d: -int(d["ts"]))
        return [
            {
                "details": details[:limit],
                "instFamily": family,
                "instId": f"{base}-USDT-SWAP",
                "instType": "SWAP",
                "totalLoss": "0",
                "uly": family,
            }
        ]

    # --- private ------------------------------------------------------------------------------
    def balance(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        wanted = set(filter(None, p.get("ccy", "").split(",")))
        details = []
        total = 0.0
        with self.lock:
            held = sorted(self.balances.items())
        frozen = {o.inst_id.split("-")[0 if o.side == "sell" else 1]: 0.0 for o in self.orders}
        for o in self.orders:
            b, q = o.inst_id.split("-")
            if o.side == "sell":
                frozen[b] += o.sz - o.filled
            else:
                frozen[q] += (o.sz - o.filled) * o.px
        for ccy, eq in held:
            if eq <= 1e-12 or (wanted and ccy not in wanted):
                continue
            usd = eq * self.index_usd(ccy, now)
            total += usd
            fz = min(frozen.get(ccy, 0.0), eq)
            details.append(
                {
                    "availBal": _s(eq - fz),
                    "availEq": "",
                    "borrowFroz": "",
                    "cashBal": _s(eq),
                    "ccy": ccy,
                    "clSpotInUseAmt": "",
                    "crossLiab": "",
                    "disEq": _s(usd, 4),
                    "eq": _s(eq),
                    "eqUsd": _s(usd, 4),
                    "smtSyncEq": "0",
                    "spotCopyTradingEq": "0",
                    "fixedBal": "0",
                    "frozenBal": _s(fz),
                    "imr": "",
                    "interest": "",
                    "isoEq": "0",
                    "isoLiab": "",
                    "isoUpl": "",
                    "liab": "",
                    "maxLoan": "",
                    "mgnRatio": "",
                    "mmr": "",
                    "notionalLever": "",
                    "ordFrozen": _s(fz),
                    "rewardBal": "0",
                    "spotInUseAmt": "",
                    "spotIsoBal": "0",
                    "stgyEq": "0",
                    "twap": "0",
                    "uTime": str(now - 60_000),
                    "upl": "",
                    "uplLiab": "",
                    "spotBal": _s(eq),
                    "openAvgPx": "",
                    "accAvgPx": "",
                    "spotUpl": "",
                    "spotUplRatio": "",
                    "totalPnl": "",
                    "totalPnlRatio": "",
                }
            )
        return [
            {
                "adjEq": "",
                "borrowFroz": "",
                "details": details,
                "imr": "",
                "isoEq": "0",
                "mgnRatio": "",
                "mmr": "",
                "notionalUsd": "",
                "notionalUsdForBorrow": "",
                "notionalUsdForFutures": "",
                "notionalUsdForOption": "",
                "notionalUsdForSwap": "",
                "ordFroz": "",
                "totalEq": _s(total, 4),
                "uTime": str(now),
                "upl": "",
            }
        ]

    def position_rows(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        kind = p.get("instType", "")
        if kind and kind != "SWAP":
            return []
        ids = set(filter(None, p.get("instId", "").split(",")))
        out = []
        for pos in self.positions:
            inst = f"{pos.base}-USDT-SWAP"
            if ids and inst not in ids:
                continue
            mark = self.usd(pos.base, now)
            size = pos.pos * SWAPS[pos.base]
            upl = (mark - pos.avg_px) * size
            notional = abs(size) * mark
            margin = notional / pos.lever
            liq = pos.avg_px * (1 - 0.9 / pos.lever) if pos.pos > 0 else pos.avg_px * (1 + 0.9 / pos.lever)
            out.append(
                {
                    "adl": "2",
                    "availPos": _s(abs(pos.pos)),
                    "avgPx": _s(pos.avg_px, 4),
                    "baseBal": "",
                    "baseBorrowed": "",
                    "baseInterest": "",
                    "bePx": _s(pos.avg_px * 1.001, 4),
                    "bizRefId": "",
                    "bizRefType": "",
                    "cTime": str(pos.c_time),
                    "ccy": "USDT",
                    "clSpotInUseAmt": "",
                    "closeOrderAlgo": [],
                    "deltaBS": "",
                    "deltaPA": "",
                    "fee": _s(-notional * 0.0005, 6),
                    "fundingFee": _s(-notional * 0.0001 * (now - pos.c_time) // (8 * HOUR_MS), 6),
                    "gammaBS": "",
                    "gammaPA": "",
                    "idxPx": _s(mark, 4),
                    "imr": _s(margin, 6) if pos.mgn_mode == "cross" else "",
                    "instId": inst,
                    "instType": "SWAP",
                    "interest": "",
                    "last": _s(mark, 4),
                    "lever": str(pos.lever),
                    "liab": "",
                    "liabCcy": "",
                    "liqPenalty": "0",
                    "liqPx": _s(liq, 4),
                    "margin": _s(margin, 6) if pos.mgn_mode == "isolated" else "",
                    "markPx": _s(mark, 4),
                    "maxSpotInUseAmt": "",
                    "mgnMode": pos.mgn_mode,
                    "mgnRatio": _s(40 + 10 * pos.lever, 2),
                    "mmr": _s(notional * 0.004, 6),
                    "notionalUsd": _s(notional, 4),
                    "optVal": "",
                    "pendingCloseOrdLiabVal": "",
                    "pnl": "0",
                    "pos": _s(pos.pos),
                    "posCcy": "",
                    "posId": str(pos.pos_id),
                    "posSide": "net",
                    "quoteBal": "",
                    "quoteBorrowed": "",
                    "quoteInterest": "",
                    "realizedPnl": _s(-notional * 0.0005, 6),
                    "spotInUseAmt": "",
                    "spotInUseCcy": "",
                    "thetaBS": "",
                    "thetaPA": "",
                    "tradeId": str(pos.pos_id + 17),
                    "uTime": str(pos.c_time),
                    "upl": _s(upl, 6),
                    "uplLastPx": _s(upl, 6),
                    "uplRatio": _s(upl / margin if margin else 0, 6),
                    "uplRatioLastPx": _s(upl / margin if margin else 0, 6),
                    "usdPx": "",
                    "vegaBS": "",
                    "vegaPA": "",
                }
            )
        return out

    def pending(self, p: dict[str, str]) -> list[dict[str, Any]]:
        kind = p.get("instType", "")
        with self.lock:
            rows = [o.row() for o in sorted(self.orders, key=lambda o: -o.c_time)]
        return [r for r in rows if (not kind or r["instType"] == kind) and _match(p, "instId", r["instId"])][
            : min(int(p.get("limit") or 100), 100)
        ]

    def fill_rows(self, p: dict[str, str], now: int, *, history: bool) -> list[dict[str, Any]]:
        """Fills newest first; `after`/`before` page by billId, `begin`/`end` bound ts (ms)."""
        if history:
            _required(p, "instType")
        kind = p.get("instType", "")
        if kind and kind != "SPOT":
            return []
        window = (90 if history else 3) * 24 * HOUR_MS
        begin = int(p.get("begin") or 0)
        end = int(p.get("end") or now + 1)
        after = int(p.get("after") or 1 << 62)
        before = int(p.get("before") or 0)
        limit = min(max(int(p.get("limit") or 100), 1), 100)
        with self.lock:
            fills = sorted(self.fills, key=lambda f: -f.bill_id)
        out = [
            f.row()
            for f in fills
            if _match(p, "instId", f.inst_id)
            and begin <= f.ts <= end
            and before < f.bill_id < after
            and f.ts >= now - window
        ]
        return out[:limit]

    def config(self) -> list[dict[str, Any]]:
        return [
            {
                "acctLv": "2",
                "acctStpMode": "cancel_maker",
                "autoLoan": False,
                "ctIsoMode": "automatic",
                "enableSpotBorrow": False,
                "greeksType": "PA",
                "feeType": "0",
                "ip": "",
                "type": "0",
                "kycLv": "2",
                "label": "assetsync demo (read only)",
                "level": "Lv1",
                "levelTmp": "",
                "liquidationGear": "-1",
                "mainUid": "44705892343619584",
                "mgnIsoMode": "automatic",
                "opAuth": "0",
                "perm": "read_only",
                "posMode": "net_mode",
                "roleType": "0",
                "spotBorrowAutoRepay": False,
                "spotOffsetType": "",
                "spotRoleType": "0",
                "spotTraderInsts": [],
                "traderInsts": [],
                "uid": "44705892343619584",
                "settleCcy": "USDT",
                "settleCcyList": ["USD", "USDC", "USDG"],
            }
        ]

    def trade_fee(self, p: dict[str, str], now: int) -> list[dict[str, Any]]:
        kind = _required(p, "instType")
        return [
            {
                "category": "1",
                "delivery": "",
                "exercise": "",
                "fiatList": [],
                "instType": kind,
                "level": "Lv1",
                "maker": "-0.0008" if kind == "SPOT" else "-0.0002",
                "makerU": "" if kind == "SPOT" else "-0.0002",
                "makerUSDC": "",
                "ruleType": "normal",
                "taker": "-0.001" if kind == "SPOT" else "-0.0005",
                "takerU": "" if kind == "SPOT" else "-0.0005",
                "takerUSDC": "",
                "ts": str(now),
            }
        ]


def _required(p: dict[str, str], name: str) -> str:
    value = p.get(name, "")
    if not value:
        raise OkxError(400, "50014", f"Parameter {name} can not be empty.")
    return value


def _match(p: dict[str, str], name: str, value: str) -> bool:
    want = p.get(name, "")
    return not want or value in want.split(",")


def _dispatch(emu: OkxEmulator, path: str, p: dict[str, str], now: int) -> list[dict[str, Any]]:
    """The `data` of a successful answer for `path` (raises OkxError otherwise)."""
    if path == "/api/v5/public/time":
        return [{"ts": str(now)}]
    if path == "/api/v5/public/instruments":
        return emu.instruments(p)
    if path == "/api/v5/market/tickers":
        return emu.tickers(p, now)
    if path == "/api/v5/market/ticker":
        inst = _required(p, "instId")
        if inst not in emu.spot:
            raise OkxError(400, "51001", "Instrument ID does not exist.")
        return [emu.ticker(inst, now)]
    if path == "/api/v5/public/liquidation-orders":
        return emu.liquidations(p, now)
    if path == "/api/v5/account/balance":
        return emu.balance(p, now)
    if path == "/api/v5/account/positions":
        return emu.position_rows(p, now)
    if path == "/api/v5/account/config":
        return emu.config()
    if path == "/api/v5/account/trade-fee":
        return emu.trade_fee(p, now)
    if path == "/api/v5/trade/orders-pending":
        return emu.pending(p)
    if path == "/api/v5/trade/fills":
        return emu.fill_rows(p, now, history=False)
    return emu.fill_rows(p, now, history=True)


_ENCODER = msgspec.json.Encoder()


def _json(body: Any, status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json")


def create_app(emulator: OkxEmulator | None = None, **kwargs: Any) -> Starlette:
    """The Starlette app serving `emulator` (built from kwargs if not given) behind its FaultSwitch."""
    emu = emulator or OkxEmulator(**kwargs)

    async def handle(request: Request) -> Response:
        path = request.url.path
        if path not in RATE_LIMITS:
            return _json({"code": "50030", "msg": "Illegal request path", "data": []}, 404)
        params = dict(urllib.parse.parse_qsl(request.url.query, keep_blank_values=True))
        body = await request.body()
        try:
            if path in PRIVATE_PATHS:
                emu.verify(request, body)
                who = request.headers.get("OK-ACCESS-KEY", "")
            else:
                who = request.client.host if request.client else "unknown"
            emu.charge(who, path)
            data = _dispatch(emu, path, params, emu.now_ms())
        except OkxError as err:
            return _json({"code": err.code, "msg": err.msg, "data": []}, err.status)
        except ValueError:
            return _json({"code": "50014", "msg": "Parameter error", "data": []}, 400)
        return _json({"code": "0", "msg": "", "data": data})

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET"])])
    app.state.emulator = emu
    app.add_middleware(FaultMiddleware, switch=emu.switch)
    return app


def signed_headers(
    method: str, request_path: str, body: str = "", *, key: str = DEMO_API_KEY, secret: str = DEMO_API_SECRET,
    passphrase: str = DEMO_PASSPHRASE, at: float | None = None,
) -> dict[str, str]:  # fmt: skip
    """Headers signed the way OKX expects (for tests and hand-made requests); `request_path` has the query."""
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    mac = hmac.new(secret.encode(), (stamp + method + request_path + body).encode(), hashlib.sha256)
    return {
        "OK-ACCESS-KEY": key,
        "OK-ACCESS-SIGN": base64.b64encode(mac.digest()).decode(),
        "OK-ACCESS-TIMESTAMP": stamp,
        "OK-ACCESS-PASSPHRASE": passphrase,
    }

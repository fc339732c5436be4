"""The `okx` task: OKX spot balances as holdings priced in USDT, fills as trades, cost basis from fills.

Calls per run: `public/instruments` (SPOT), `account/balance`, one `market/tickers?instType=SPOT`, and
`trade/fills-history` pages of fills newer than the last one seen (100 a page). Cost basis is the
project's accounting (assetsync.costbasis, CONTRACTS §6) over fills valued in USDT: fills of
`<asset>-USDT` markets are exact; an asset with fills in another quote gets no cost ("insufficient
data", named in the result) rather than a guessed one. OKX keeps three months of fills: older buys
are unknown to a first run, so an asset whose fills do not explain its balance also gets no cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
from assetsync.config import Settings
from assetsync.costbasis import ValuedFill, average_basis, fifo_basis
from assetsync.events import AssetError, Event, Holding, PriceTick, TaskResult, TaskStatus, Trade
from assetsync.files import atomic_write
from assetsync.ignore import ignored

from assetsync_collector_okx.calls import OKX, AuthFailed, CallFailed, RetryPolicy, call
from assetsync_collector_okx.exchange import AssetsyncOkx

log = logging.getLogger("assetsync.collector_okx.sync")

Publish = Callable[[Event], Awaitable[None]]
Progress = Callable[[int, int, str], None]
SOURCE = "okx"
USDT = "USDT"
BRIDGES = ("BTC", "ETH", "USDC")
FILL_PAGE = 100
# 5000 new fills in one run (pages go newest first): older ones past that are not read, and an asset
# whose fills then do not explain its balance gets no cost (named in the log), never a guessed one.
MAX_FILL_PAGES = 50


def state_path(settings: Settings) -> Path:
    """`<data dir>/state/collector-okx.json`."""
    return settings.data_dir / "state" / "collector-okx.json"


class OkxState(msgspec.Struct, kw_only=True):
    """What runs carry over: valued fills per asset, the newest fill seen, and unvaluable assets."""

    version: int = 1
    fills: dict[str, list[ValuedFill]] = msgspec.field(default_factory=dict)
    fill_cursor: int = 0  # ts (ms) of the newest fill recorded
    seen: list[str] = msgspec.field(default_factory=list)  # "instId:tradeId" of fills at fill_cursor
    unvalued: dict[str, str] = msgspec.field(default_factory=dict)  # asset -> why no USDT cost


class StateFile:
    """Load and save an OkxState at one path (a damaged file costs a re-read of three months of fills)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> OkxState:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=OkxState)
        except FileNotFoundError:
            return OkxState()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad = self.path.with_suffix(".corrupt")
            self.path.replace(bad)
            log.warning(
                "okx state %s is unreadable (%s); moved to %s and starting fresh", self.path, exc, bad
            )
            return OkxState()

    def save(self, state: OkxState) -> None:
        atomic_write(self.path, msgspec.json.encode(state))


def usdt_price(asset: str, last: Mapping[str, float]) -> tuple[float | None, str]:
    """The asset's USDT price from spot last prices (`X/USDT`, else `X/B` x `B/USDT`), and the route."""
    if asset == USDT:
        return 1.0, USDT
    direct = last.get(f"{asset}/{USDT}")
    if direct:
        return direct, f"{asset}/{USDT}"
    for b in BRIDGES:
        leg, bridge = last.get(f"{asset}/{b}"), last.get(f"{b}/{USDT}")
        if b != asset and leg and bridge:
            return leg * bridge, f"{asset}/{b}*{b}/{USDT}"
    return None, ""


@dataclass
class Balance:
    asset: str
    quantity: float


class OkxSync:
    """Runs okx syncs against one exchange, keeping fills and the fill cursor in a StateFile."""

    def __init__(
        self,
        settings: Settings,
        exchange: AssetsyncOkx,
        state: StateFile,
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_call: Callable[[str], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.exchange = exchange
        self.state_file = state
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._on_call = on_call
        self._on_error = on_error
        self._lock = asyncio.Lock()

    def _now(self) -> int:
        return int(self.clock() * 1000)

    async def reconfigure(self, settings: Settings, exchange: AssetsyncOkx | None = None) -> None:
        """New settings between runs; a new exchange client (new keys or URL) replaces the old one."""
        async with self._lock:
            self.settings = settings
            if exchange is not None:
                old, self.exchange = self.exchange, exchange
                await old.close()

    async def call(self, endpoint: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """One counted call with retries (shared with the feed poller)."""
        return await call(
            self.exchange, endpoint, fn, self.retry, OKX, on_call=self._on_call, on_error=self._on_error
        )

    async def run(self, command_id: str, publish: Publish, progress: Progress | None = None) -> TaskResult:
        async with self._lock:
            return await self._run(command_id, publish)

    async def _run(self, command_id: str, publish: Publish) -> TaskResult:
        started = self._now()
        conf = self.settings.config.asset_sync.assets.crypto

        def failed(message: str) -> TaskResult:
            log.warning("okx sync failed: %s", message)
            return TaskResult(
                command_id=command_id,
                task="okx",
                source=SOURCE,
                status="failed",
                started_at=started,
                finished_at=self._now(),
                message=message,
            )

        ex = self.exchange
        state = self.state_file.load()
        try:
            await self.call("GET /api/v5/public/instruments", lambda: ex.load_markets(reload=True))
            balance = await self.call("GET /api/v5/account/balance", lambda: ex.fetch_balance())
            tickers = await self.call("GET /api/v5/market/tickers", lambda: ex.fetch_tickers())
            new_fills = await self._new_fills(state)
        except CallFailed as exc:  # AuthFailed included: nothing is published from a refused run
            return failed(str(exc))
        totals = balance.get("total") or {}
        held: list[Balance] = []
        skipped: list[str] = []
        for asset, qty in sorted(totals.items()):
            if qty is None or float(qty) <= 0:
                continue
            if ignored(str(asset), conf.ignore):
                skipped.append(str(asset))
                continue
            held.append(Balance(str(asset), float(qty)))
        last = {s: float(t["last"]) for s, t in tickers.items() if t.get("last")}
        ticker_ts = max(
            (int(t["timestamp"]) for t in tickers.values() if t.get("timestamp")), default=self._now()
        )

        events: list[Event] = []
        self._record_fills(new_fills, state, events)
        errors: list[AssetError] = []
        dust: list[str] = []
        shown: list[str] = []
        as_of = self._now()
        for b in held:
            price, via = usdt_price(b.asset, last)
            if price is not None:
                # As Binance's collector does: the price the holding was valued at, for the price
                # history and the alerter's freshness check of this source's assets.
                events.append(
                    PriceTick(source=SOURCE, asset=b.asset, price=price, currency=USDT, ts=ticker_ts, via=via)
                )
            if price is not None and b.quantity * price < conf.min_value:
                dust.append(b.asset)
                continue
            if price is None:
                errors.append(
                    AssetError(
                        asset=b.asset,
                        reason="no OKX spot market prices it in USDT",
                        kind="unpriced",
                        quantity=b.quantity,
                        part="prices",
                    )
                )
            cost, why = self._cost(b, state, conf.cost_method)
            if why:
                log.info("okx sync: no cost basis for %s: %s", b.asset, why)
            shown.append(b.asset)
            events.append(
                Holding(
                    source=SOURCE,
                    asset=b.asset,
                    quantity=b.quantity,
                    currency=USDT,
                    as_of=as_of if price is None else max(as_of, ticker_ts),
                    name=b.asset,
                    price=price,
                    avg_cost=cost,
                    cost_source="trades" if cost is not None else "",
                    run_id=command_id,
                )
            )
        for ev in events:
            await publish(ev)
        self.state_file.save(state)
        unpriced = [e for e in errors if e.kind == "unpriced"]
        status: TaskStatus = "failed" if shown and len(unpriced) == len(shown) else "success"
        parts = [f"{len(shown)} OKX assets, {len(new_fills)} new fills"]
        if unpriced:
            parts.append(f"{len(unpriced)} unpriced: {', '.join(e.asset for e in unpriced)}")
        if dust:
            parts.append(
                f"{len(dust)} dust hidden (< {conf.min_value:g} USDT, asset_sync.assets.crypto.min_value): "
                + ", ".join(dust)
            )
        return TaskResult(
            command_id=command_id,
            task="okx",
            source=SOURCE,
            status=status,
            started_at=started,
            finished_at=self._now(),
            records=len(shown) - len(unpriced),
            total=len(shown),
            errors=errors,
            message="; ".join(parts),
            assets=sorted(shown),
            dust=sorted(dust),
        )

    async def _new_fills(self, state: OkxState) -> list[dict[str, Any]]:
        """Spot fills at or after the cursor, oldest first, paging back by billId (OKX: newest first)."""
        seen = set(state.seen)
        since = state.fill_cursor or None
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        for _ in range(MAX_FILL_PAGES):
            page = await self.call(
                "GET /api/v5/trade/fills-history",
                partial(self.exchange.fetch_my_trades, None, since, None, dict(params)),
            )
            out.extend(page)
            if len(page) < FILL_PAGE:
                break
            oldest = min(page, key=lambda t: int(t["info"].get("billId") or 0))
            params = {"after": oldest["info"]["billId"]}
        fresh = {(t["info"].get("instId"), str(t["id"])): t for t in out}
        return sorted(
            (t for k, t in fresh.items() if f"{k[0]}:{k[1]}" not in seen),
            key=lambda t: (int(t["timestamp"]), int(t["info"].get("billId") or 0)),
        )

    def _record_fills(self, trades: list[dict[str, Any]], state: OkxState, events: list[Event]) -> None:
        """Trades for the new fills, their USDT valuation into the state, and the cursor moved past them."""
        for t in trades:
            symbol = str(t["symbol"])
            base, _, quote = symbol.partition("/")
            fee = t.get("fee") or {}
            fee_cur = str(fee.get("currency") or "")
            fee_qty = float(fee.get("cost") or 0.0)
            events.append(
                Trade(
                    source=SOURCE,
                    trade_id=str(t["id"]),
                    symbol=symbol,
                    side=t["side"],
                    price=float(t["price"]),
                    amount=float(t["amount"]),
                    cost=float(t["cost"]),
                    ts=int(t["timestamp"]),
                    order_id=str(t.get("order") or ""),
                    fee=fee_qty,
                    fee_currency=fee_cur,
                    taker_or_maker=str(t.get("takerOrMaker") or ""),
                )
            )
            if quote != USDT or fee_cur not in (base, USDT, ""):
                # Valuing this fill in USDT needs that minute's price of another currency: not guessed.
                state.unvalued[base] = f"a fill in {symbol} (fee in {fee_cur or '-'}) has no exact USDT value"
            else:
                in_base = fee_cur == base
                state.fills.setdefault(base, []).append(
                    ValuedFill(
                        ts=int(t["timestamp"]),
                        trade_id=int(t["id"]),
                        symbol=symbol,
                        side=t["side"],
                        qty=float(t["amount"]),
                        quote_usdt=float(t["cost"]),
                        fee_qty=fee_qty,
                        fee_asset=fee_cur,
                        fee_usdt=0.0 if in_base else fee_qty,
                        fee_in_base=in_base,
                        order_id=str(t.get("order") or ""),
                        quote_qty=float(t["cost"]),
                    )
                )
            ts = int(t["timestamp"])
            key = f"{t['info'].get('instId')}:{t['id']}"
            if ts > state.fill_cursor:
                state.fill_cursor, state.seen = ts, [key]
            elif ts == state.fill_cursor:
                state.seen.append(key)

    def _cost(self, b: Balance, state: OkxState, method: str) -> tuple[float | None, str]:
        """The average (or FIFO) USDT cost of the balance from its fills; None with the reason otherwise."""
        if b.asset == USDT:
            return None, "USDT is the quote: no cost basis (as on Binance)"
        if b.asset in state.unvalued:
            return None, state.unvalued[b.asset]
        fills = state.fills.get(b.asset)
        if not fills:
            return None, "no fills in OKX's three months of history"
        basis = fifo_basis(fills) if method == "fifo" else average_basis(fills)
        if basis.avg_cost is None or abs(basis.quantity - b.quantity) > max(1e-9, 0.001 * b.quantity):
            return (
                None,
                f"fills explain {basis.quantity:g} of the {b.quantity:g} held (deposits or older fills)",
            )
        return basis.avg_cost, ""


__all__ = ["AuthFailed", "OkxSync", "StateFile", "state_path"]

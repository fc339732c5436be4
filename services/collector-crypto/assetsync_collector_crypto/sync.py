"""One crypto sync: discover balances, price them in one ticker call, klines, trades, cost, publish.

Calls per run: exchangeInfo, account and one `ticker/24hr?symbols=[...]` (the 3 fixed calls), then one
`klines` call per held market with a newly closed candle and one `myTrades` call per market of an
asset whose balance changed (or was not checked for a day), plus a 1-minute `klines` call per window
of new fills paid or quoted in an asset other than USDT (valuation, CONTRACTS §6). Orders are
rebuilt from their fills (as the issue says: trades "stored as orders/trades"), so they cost no calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from assetsync.config import CryptoAssets, Settings
from assetsync.events import (
    AssetError,
    Candle,
    Event,
    Holding,
    KlineBatch,
    Order,
    PriceTick,
    TaskResult,
    TaskStatus,
    Trade,
)
from assetsync.ignore import ignored

from assetsync_collector_crypto.calls import BINANCE, AuthFailed, CallFailed, RetryPolicy, call
from assetsync_collector_crypto.costbasis import ValuedFill, avg_cost
from assetsync_collector_crypto.exchange import AssetsyncBinance
from assetsync_collector_crypto.names import display_name
from assetsync_collector_crypto.pricing import Route, price_of, route_for, ticker_symbols, trade_markets
from assetsync_collector_crypto.state import CryptoState, StateFile

log = logging.getLogger("assetsync.collector_crypto.sync")

Publish = Callable[[Event], Awaitable[None]]
SOURCE = "binance"
MINUTE_MS = 60_000
DAY_MS = 86_400_000
KLINE_PAGE = 1000
TRADE_PAGE = 1000


def state_path(settings: Settings) -> Path:
    """Where the collector keeps its cursors: `<data dir>/state/collector-crypto.json`."""
    return settings.data_dir / "state" / "collector-crypto.json"


@dataclass
class Position:
    """One asset to report: quantity from the account (or config), manual cost if configured."""

    asset: str
    quantity: float
    manual_cost: float | None = None
    name: str = ""
    manual: bool = False


@dataclass
class RunReport:
    """What one run found: events to publish and per-asset problems."""

    events: list[Event] = field(default_factory=list)
    errors: dict[str, AssetError] = field(default_factory=dict)
    trades_failed: set[str] = field(default_factory=set)  # assets whose fills must be fetched again
    # Per part of the run (klines / trades / cost): the assets it was tried for, and failed for.
    tried: dict[str, set[str]] = field(default_factory=dict)
    failed_parts: dict[str, set[str]] = field(default_factory=dict)

    def attempt(self, part: str, asset: str) -> None:
        self.tried.setdefault(part, set()).add(asset)

    def fail(self, asset: str, reason: str, part: str) -> None:
        prev = self.errors.get(asset)
        parts = part
        if prev is not None and prev.kind == "failed":
            reason = f"{prev.reason}; {reason}"
            parts = ",".join(sorted({*prev.part.split(","), part} - {""}))
        self.errors[asset] = AssetError(asset=asset, reason=reason, kind="failed", part=parts)
        self.failed_parts.setdefault(part, set()).add(asset)

    def failed_everywhere(self, held: int) -> list[str]:
        """The parts that failed for every asset they were tried for (the run is then a failure).

        A part tried for a single asset of several (trades are fetched only for balances that moved)
        counts only when that is the whole portfolio: one transient miss is partial, not a failure.
        """
        return sorted(
            p
            for p, tried in self.tried.items()
            if tried and tried <= self.failed_parts.get(p, set()) and (len(tried) > 1 or held <= 1)
        )


def discover(balances: Mapping[str, float], conf: CryptoAssets) -> tuple[list[Position], list[str]]:
    """Non-zero balances minus `ignore` globs, plus `manual` entries; also returns the ignored codes."""
    positions: dict[str, Position] = {}
    skipped: list[str] = []
    if conf.auto_discover:
        for asset, qty in sorted(balances.items()):
            if qty <= 0:
                continue
            if ignored(asset, conf.ignore):
                skipped.append(asset)
                continue
            positions[asset] = Position(asset, qty)
    for entry in conf.manual:
        code = entry.symbol.strip().upper()
        qty = entry.quantity if entry.quantity is not None else balances.get(code, 0.0)
        if qty <= 0:
            continue
        positions[code] = Position(code, qty, entry.avg_cost, entry.name, manual=True)
    return list(positions.values()), skipped


def balances_of(balance: Mapping[str, Any]) -> dict[str, float]:
    """ccxt's balance structure -> asset -> free + locked (the `total`)."""
    totals = balance.get("total") or {}
    return {str(k): float(v) for k, v in totals.items() if v is not None and float(v) > 0}


Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, what: str) -> None:
    return None


class CryptoSync:
    """Runs crypto syncs against one exchange, keeping its cursors in a StateFile."""

    def __init__(
        self,
        settings: Settings,
        exchange: AssetsyncBinance,
        state: StateFile,
        *,
        retry: RetryPolicy | None = None,
        concurrency: int = 32,
        clock: Callable[[], float] = time.time,
        on_call: Callable[[str], None] | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.conf = settings.config.asset_sync.assets.crypto
        self.exchange = exchange
        self.state_file = state
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._on_call = on_call
        self._on_error = on_error
        self._sem = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()  # one run at a time per process (the consumer is 1-at-a-time too)

    def _now(self) -> int:
        return int(self.clock() * 1000)

    async def reconfigure(self, settings: Settings, exchange: AssetsyncBinance | None = None) -> None:
        """New settings between runs (a config reload); a new exchange client replaces the old one."""
        async with self._lock:
            self.settings = settings
            self.conf = settings.config.asset_sync.assets.crypto
            if exchange is not None:
                old, self.exchange = self.exchange, exchange
                await old.close()

    async def _call(self, endpoint: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        async with self._sem:
            return await call(
                self.exchange,
                endpoint,
                fn,
                self.retry,
                BINANCE,
                on_call=self._on_call,
                on_error=self._on_error,
            )

    async def run(self, command_id: str, publish: Publish, progress: Progress | None = None) -> TaskResult:
        """One full sync; publishes its events, returns the TaskResult (the caller publishes it)."""
        async with self._lock:
            return await self._run(command_id, publish, progress or _no_progress)

    async def _run(self, command_id: str, publish: Publish, progress: Progress) -> TaskResult:
        started = self._now()

        def failed(
            message: str, assets: list[str] | None = None, errors: Sequence[AssetError] = ()
        ) -> TaskResult:
            log.warning("crypto sync failed: %s", message)
            return TaskResult(
                command_id=command_id,
                task="crypto",
                source=SOURCE,
                status="failed",
                started_at=started,
                finished_at=self._now(),
                message=message,
                errors=list(errors),
                assets=assets,
            )

        state = self.state_file.load()
        ex = self.exchange
        try:
            markets = await self._call("GET /api/v3/exchangeInfo", lambda: ex.load_markets(reload=True))
            balance = await self._call("GET /api/v3/account", lambda: ex.fetch_balance())
        except CallFailed as exc:
            return failed(str(exc))
        positions, skipped = discover(balances_of(balance), self.conf)
        if skipped:
            log.debug("crypto sync: ignored %s", ", ".join(skipped))
        report = RunReport()
        routes: dict[str, Route] = {}
        for p in positions:
            r = route_for(p.asset, markets)
            if r is not None:
                routes[p.asset] = r
        symbols = ticker_symbols(routes.values())
        last: dict[str, float | None] = {}
        ticker_ts = self._now()
        if symbols:
            try:
                tickers = await self._call("GET /api/v3/ticker/24hr", lambda: ex.fetch_tickers(symbols))
            except AuthFailed as exc:
                return failed(str(exc))
            except CallFailed as exc:
                errs = [
                    AssetError(asset=p.asset, reason=str(exc), quantity=p.quantity, part="prices")
                    for p in positions
                ]
                return failed(str(exc), None, errs)
            stamps = [int(t["timestamp"]) for t in tickers.values() if t.get("timestamp")]
            ticker_ts = max(stamps) if stamps else ticker_ts
            last = {sym: t.get("last") for sym, t in tickers.items()}

        # Price every position; unpriced ones are named with their quantity, never priced 0.
        prices: dict[str, float] = {}
        held: list[Position] = []
        dust: list[str] = []
        for p in positions:
            route = routes.get(p.asset)
            price = price_of(route, last) if route is not None else None
            if price is None:
                why = "no active Binance market" if route is None else f"no price for {route.via}"
                report.errors[p.asset] = AssetError(
                    asset=p.asset, reason=why, kind="unpriced", quantity=p.quantity, part="prices"
                )
                held.append(p)
                continue
            if p.quantity * price < self.conf.min_value and not p.manual:
                dust.append(p.asset)  # left out, but counted and named in the result
                continue
            prices[p.asset] = price
            held.append(p)

        try:
            # A TaskGroup cancels the other calls at once when the credentials are refused.
            kline_routes = [routes[a] for a in prices if routes[a].kline_symbol]
            done = 0

            async def klines(route: Route) -> None:
                nonlocal done
                await self._klines(route, state, report)
                done += 1
                progress(done, len(kline_routes), "klines")  # a first run backfills: worth a bar

            async with asyncio.TaskGroup() as tg:
                for route in kline_routes:
                    tg.create_task(klines(route))
                tg.create_task(self._trades(held, markets, state, report))
        except* AuthFailed as group:
            refused = str(group.exceptions[0])
        else:
            refused = ""
        if refused:
            return failed(refused)

        as_of = self._now()
        for p in held:
            price = prices.get(p.asset)
            route = routes.get(p.asset)
            if price is not None and route is not None:
                report.events.append(
                    PriceTick(
                        source=SOURCE,
                        asset=p.asset,
                        price=price,
                        currency="USDT",
                        ts=ticker_ts,
                        via=route.via,
                    )
                )
            cost, cost_source = self._cost(p, state)
            report.events.append(
                Holding(
                    source=SOURCE,
                    asset=p.asset,
                    quantity=p.quantity,
                    currency="USDT",
                    as_of=as_of,
                    name=display_name(p.asset, p.name),
                    price=price,
                    avg_cost=cost,
                    cost_source=cost_source,
                    run_id=command_id,
                )
            )
        for ev in report.events:
            await publish(ev)
        # Cursors advance only once everything they cover is published.
        self.state_file.save(state)

        errors = sorted(report.errors.values(), key=lambda e: e.asset)
        failures = [e for e in errors if e.kind == "failed"]
        unpriced = [e for e in errors if e.kind == "unpriced"]
        everywhere = report.failed_everywhere(len(held))
        if held and len(unpriced) == len(held):
            everywhere.insert(0, "prices")
        status: TaskStatus = "failed" if everywhere else "partial" if failures else "success"
        ok = len(held) - len(failures) - len(unpriced)
        message = self._message(held, failures, unpriced, dust, everywhere)
        if everywhere:
            log.warning("crypto sync failed: %s", message)
        return TaskResult(
            command_id=command_id,
            task="crypto",
            source=SOURCE,
            status=status,
            started_at=started,
            finished_at=self._now(),
            records=max(ok, 0),
            total=len(held),
            errors=errors,
            message=message,
            assets=sorted(p.asset for p in held),
            dust=sorted(dust),
        )

    def _message(
        self,
        held: Sequence[Position],
        failures: Sequence[AssetError],
        unpriced: Sequence[AssetError],
        dust: Sequence[str],
        everywhere: Sequence[str],
    ) -> str:
        """What went wrong, by part, with counts: the run's 日志 错误信息 starts with this."""
        parts = []
        for part in everywhere:
            hit = unpriced if part == "prices" else [e for e in failures if part in e.part.split(",")]
            first = hit[0].reason if hit else ""
            parts.append(f"{part} failed for every asset ({len(hit)}): {first}")
        if failures:
            by_part: dict[str, list[str]] = {}
            for e in failures:
                for part in e.part.split(","):
                    by_part.setdefault(part, []).append(e.asset)
            detail = "; ".join(f"{part}: {', '.join(assets)}" for part, assets in sorted(by_part.items()))
            parts.append(f"{len(failures)} of {len(held)} assets failed ({detail})")
        if unpriced:
            parts.append(
                f"{len(unpriced)} unpriced: {', '.join(f'{e.asset} ({e.reason})' for e in unpriced)}"
            )
        if dust:
            parts.append(
                f"{len(dust)} dust hidden (< {self.conf.min_value:g} USDT, asset_sync.assets.crypto.min_value): "
                + ", ".join(sorted(dust))
            )
        return "; ".join(parts)

    def _cost(self, p: Position, state: CryptoState) -> tuple[float | None, str]:
        if p.manual_cost is not None:
            return p.manual_cost, "manual"
        fills = state.fills.get(p.asset)
        if not fills:
            return None, ""
        return avg_cost(fills, self.conf.cost_method), "trades"

    # --- klines ------------------------------------------------------------------------------
    async def _klines(self, route: Route, state: CryptoState, report: RunReport) -> None:
        symbol = route.kline_symbol
        assert symbol is not None
        interval = self.conf.kline_interval
        step = int(self.exchange.parse_timeframe(interval) * 1000)
        key = f"{symbol}|{interval}"
        now = self._now()
        prev = state.kline_last_open.get(key)
        # From the last candle published, but never further back than the backfill window (an asset
        # sold months ago and bought again does not pull its whole gap).
        window_start = (now - self.conf.kline_backfill_hours * 3_600_000) // step * step
        since = max(prev + step, window_start) if prev is not None else window_start
        candles: list[Candle] = []
        report.attempt("klines", route.asset)
        try:
            while since + step <= now:  # a candle is fetched once it has closed
                page = await self._call(
                    "GET /api/v3/klines",
                    partial(self.exchange.fetch_ohlcv, symbol, interval, since=since, limit=KLINE_PAGE),
                )
                closed = [row for row in page if row[0] + step <= now and row[0] >= since]
                candles.extend(
                    Candle(int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
                    for r in closed
                )
                if len(page) < KLINE_PAGE or not closed:
                    break
                since = int(closed[-1][0]) + step
        except AuthFailed:
            raise
        except CallFailed as exc:
            report.fail(route.asset, f"klines {symbol}: {exc}", "klines")
        if candles:
            report.events.append(KlineBatch(source=SOURCE, symbol=symbol, interval=interval, candles=candles))
            state.kline_last_open[key] = candles[-1].open_time

    # --- trades ------------------------------------------------------------------------------
    async def _trades(
        self,
        held: Iterable[Position],
        markets: Mapping[str, Mapping[str, Any]],
        state: CryptoState,
        report: RunReport,
    ) -> None:
        now = self._now()
        due = [
            p
            for p in held
            if abs(state.quantities.get(p.asset, -1.0) - p.quantity) > 1e-12
            or now - state.trades_checked_at.get(p.asset, 0) > DAY_MS
        ]
        jobs = [(p.asset, sym) for p in due for sym in trade_markets(p.asset, markets)]
        for asset, _ in jobs:
            report.attempt("trades", asset)
        pages = await asyncio.gather(
            *(self._fetch_trades(sym, state) for _, sym in jobs), return_exceptions=True
        )
        new: dict[str, list[dict[str, Any]]] = {}
        for (asset, sym), got in zip(jobs, pages, strict=True):
            if isinstance(got, AuthFailed):
                raise got
            if isinstance(got, CallFailed):
                report.fail(asset, f"trades {sym}: {got}", "trades")
                report.trades_failed.add(asset)
                continue
            if isinstance(got, BaseException):
                raise got
            new.setdefault(asset, []).extend(got)
        if any(new.values()):
            await self._value_and_store(new, markets, state, report)
        for p in due:
            if p.asset not in report.trades_failed:
                # Checked: the next run looks again only when the balance moves (or after a day).
                state.trades_checked_at[p.asset] = now
                state.quantities[p.asset] = p.quantity

    async def _fetch_trades(self, symbol: str, state: CryptoState) -> list[dict[str, Any]]:
        cursor = state.trade_cursor.get(symbol)
        from_id = cursor + 1 if cursor is not None else 0
        out: list[dict[str, Any]] = []
        while True:
            page = await self._call(
                "GET /api/v3/myTrades",
                partial(self.exchange.fetch_my_trades, symbol, limit=TRADE_PAGE, params={"fromId": from_id}),
            )
            out.extend(page)
            if len(page) < TRADE_PAGE:
                return out
            from_id = max(int(t["id"]) for t in page) + 1

    async def _value_and_store(
        self,
        new: dict[str, list[dict[str, Any]]],
        markets: Mapping[str, Mapping[str, Any]],
        state: CryptoState,
        report: RunReport,
    ) -> None:
        """Value new fills in USDT at their minute (CONTRACTS §6), then record trades, orders, fills."""
        needs: dict[str, set[int]] = {}
        for trades in new.values():
            for t in trades:
                m = markets[t["symbol"]]
                minute = int(t["timestamp"]) // MINUTE_MS * MINUTE_MS
                if m["quote"] != "USDT":
                    needs.setdefault(m["quote"], set()).add(minute)
                fee = t.get("fee") or {}
                cur = fee.get("currency")
                if cur and cur not in (m["base"], "USDT") and float(fee.get("cost") or 0) > 0:
                    needs.setdefault(cur, set()).add(minute)
        closes: dict[str, dict[int, float]] = {}
        problems: dict[str, str] = {}
        await asyncio.gather(
            *(self._minute_closes(a, mins, markets, closes, problems) for a, mins in needs.items())
        )

        def usdt(asset: str, minute: int) -> float | None:
            if asset == "USDT":
                return 1.0
            return closes.get(asset, {}).get(minute)

        for asset, trades in new.items():
            report.attempt("cost", asset)
            valued: list[ValuedFill] = []
            missing = ""
            for t in sorted(trades, key=lambda t: (int(t["timestamp"]), int(t["id"]))):
                m = markets[t["symbol"]]
                minute = int(t["timestamp"]) // MINUTE_MS * MINUTE_MS
                quote_rate = usdt(m["quote"], minute)
                fee = t.get("fee") or {}
                fee_cur = str(fee.get("currency") or "")
                fee_qty = float(fee.get("cost") or 0.0)
                in_base = fee_cur == m["base"]
                fee_rate = 1.0 if in_base or fee_qty == 0 else usdt(fee_cur, minute)
                if quote_rate is None or fee_rate is None:
                    which = m["quote"] if quote_rate is None else fee_cur
                    missing = problems.get(which, f"no {which}/USDT 1m kline at {minute}")
                    break
                valued.append(
                    ValuedFill(
                        ts=int(t["timestamp"]),
                        trade_id=int(t["id"]),
                        symbol=t["symbol"],
                        side=t["side"],
                        qty=float(t["amount"]),
                        quote_usdt=float(t["cost"]) * quote_rate,
                        fee_qty=fee_qty,
                        fee_asset=fee_cur,
                        fee_usdt=0.0 if in_base else fee_qty * fee_rate,
                        fee_in_base=in_base,
                        order_id=str(t.get("order") or ""),
                        quote_qty=float(t["cost"]),
                    )
                )
            if missing:
                # Leave the cursors: these fills are fetched and valued again next run.
                report.fail(asset, f"cost basis: cannot value fills in USDT ({missing})", "cost")
                report.trades_failed.add(asset)
                continue
            self._record(asset, trades, valued, state, report)

    async def _minute_closes(
        self,
        asset: str,
        minutes: set[int],
        markets: Mapping[str, Mapping[str, Any]],
        closes: dict[str, dict[int, float]],
        problems: dict[str, str],
    ) -> None:
        """USDT closes of `asset` at each minute: 1m klines of its route, one call per 1000-minute window."""
        route = route_for(asset, markets, active_only=False)
        if route is None or not route.legs:
            problems[asset] = f"{asset} has no USDT market to value it"
            return
        # Windows of up to 1000 minutes, each asking only for the minutes it spans.
        windows: list[tuple[int, int]] = []
        for minute in sorted(minutes):
            if windows and minute < windows[-1][0] + KLINE_PAGE * MINUTE_MS:
                windows[-1] = (windows[-1][0], (minute - windows[-1][0]) // MINUTE_MS + 1)
            else:
                windows.append((minute, 1))
        leg_closes: dict[str, dict[int, float]] = {}
        try:
            for leg in route.legs:
                got = leg_closes.setdefault(leg, {})
                pages = await asyncio.gather(
                    *(
                        self._call(
                            "GET /api/v3/klines",
                            partial(self.exchange.fetch_ohlcv, leg, "1m", since=start, limit=count),
                        )
                        for start, count in windows
                    )
                )
                for page in pages:
                    for row in page:
                        got[int(row[0])] = float(row[4])
        except AuthFailed:
            raise
        except CallFailed as exc:
            problems[asset] = str(exc)
            return
        out = closes.setdefault(asset, {})
        for minute in minutes:
            value = 1.0
            for leg in route.legs:
                c = leg_closes[leg].get(minute)
                if c is None:
                    break
                value *= c
            else:
                out[minute] = value

    def _record(
        self,
        asset: str,
        trades: list[dict[str, Any]],
        valued: list[ValuedFill],
        state: CryptoState,
        report: RunReport,
    ) -> None:
        known = {(f.symbol, f.trade_id) for f in state.fills.get(asset, [])}
        fresh = [f for f in valued if (f.symbol, f.trade_id) not in known]
        state.fills.setdefault(asset, []).extend(fresh)
        touched: set[tuple[str, str]] = set()
        for t in trades:
            fee = t.get("fee") or {}
            report.events.append(
                Trade(
                    source=SOURCE,
                    trade_id=str(t["id"]),
                    symbol=t["symbol"],
                    side=t["side"],
                    price=float(t["price"]),
                    amount=float(t["amount"]),
                    cost=float(t["cost"]),
                    ts=int(t["timestamp"]),
                    order_id=str(t.get("order") or ""),
                    fee=float(fee.get("cost") or 0.0),
                    fee_currency=str(fee.get("currency") or ""),
                    taker_or_maker=str(t.get("takerOrMaker") or ""),
                )
            )
            cur = state.trade_cursor.get(t["symbol"], -1)
            state.trade_cursor[t["symbol"]] = max(cur, int(t["id"]))
            if t.get("order"):
                touched.add((t["symbol"], str(t["order"])))
        report.events.extend(orders_from_fills(state.fills.get(asset, []), touched))


def orders_from_fills(fills: Iterable[ValuedFill], touched: set[tuple[str, str]]) -> list[Order]:
    """Orders rebuilt from their fills (filled amount, cost, average price), for the touched ones."""
    groups: dict[tuple[str, str], list[ValuedFill]] = {}
    for f in fills:
        key = (f.symbol, f.order_id)
        if key in touched:
            groups.setdefault(key, []).append(f)
    out = []
    for (symbol, order_id), group in sorted(groups.items()):
        qty = sum(f.qty for f in group)
        cost = sum(f.quote_qty for f in group)
        out.append(
            Order(
                source=SOURCE,
                order_id=order_id,
                symbol=symbol,
                side=group[0].side,
                status="filled",
                created_at=min(f.ts for f in group),
                updated_at=max(f.ts for f in group),
                price=cost / qty if qty else None,
                amount=qty,
                filled=qty,
                cost=cost,
            )
        )
    return out

"""One fund sync: discover funds, price them (one batched quote request + Danjuan NAVs), publish, report."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import TypeVar
from zoneinfo import ZoneInfo

from assetsync.events import AssetError, Event, Holding, PriceTick, TaskResult, TaskStatus

from assetsync_collector_fund.discovery import Discovery, FundPosition, FundSource, discover, fund_kind
from assetsync_collector_fund.seen import Published, SeenFile, SeenState
from assetsync_collector_fund.snowball import (
    COOKIE_EXPIRED,
    CookieExpired,
    FundNav,
    Quote,
    SnowballClient,
    UnknownFund,
)
from assetsync_collector_fund.trading_days import TradingCalendar

log = logging.getLogger("assetsync.collector_fund.sync")

T = TypeVar("T")

Publish = Callable[[Event], Awaitable[None]]

SOURCE = "xueqiu"
CURRENCY = "CNY"
MARKET_TZ = ZoneInfo("Asia/Shanghai")  # quote and NAV dates are the exchange's local dates
NAV_TIME = dtime(15, 0)  # a NAV is the value at the close of its date


@dataclass(frozen=True)
class Priced:
    """A fund with its price: what gets published."""

    position: FundPosition
    price: float
    ts: int  # ms of the observation (the last trade, or the NAV date's close)
    price_date: date
    name: str
    via: str


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class FundSync:
    """Runs fund syncs; every dependency is passed in, and events go out through `publish`."""

    def __init__(
        self,
        client: SnowballClient,
        sources: Sequence[FundSource],
        ignore: Sequence[str],
        *,
        calendar: TradingCalendar | None = None,
        clock: Callable[[], datetime] | None = None,
        seen: SeenFile | None = None,
    ) -> None:
        self.client = client
        self.sources = list(sources)
        self.ignore = list(ignore)
        self.calendar = calendar
        self.seen = seen
        self._clock = clock or (lambda: datetime.now(UTC))

    async def run(self, command_id: str, publish: Publish) -> TaskResult:
        """Discover, price and publish; returns the task's result (the caller publishes it)."""
        started = _ms(self._clock())
        found = await discover(self.sources, self.ignore)
        etfs = [p for p in found.positions if fund_kind(p.code) == "quote"]
        open_end = [p for p in found.positions if fund_kind(p.code) == "nav"]
        symbols = [p.code for p in etfs]

        # Everything at once: one batched quote request, the ETF names and the Danjuan NAVs.
        quotes, names, navs = await asyncio.gather(
            _capture(self.client.quotes(symbols)),
            asyncio.gather(*(_capture(self.client.quote_name(s)) for s in symbols)),
            asyncio.gather(*(_capture(self.client.fund_nav(p.code)) for p in open_end)),
        )
        outcomes: list[object] = [quotes, *names, *navs]
        if any(isinstance(o, CookieExpired) for o in outcomes):
            return self._result(command_id, started, found, [], [], message=COOKIE_EXPIRED, failed=True)

        errors: list[AssetError] = list(found.errors)
        results = [self._etf(pos, quotes, name) for pos, name in zip(etfs, names, strict=True)]
        results += [self._open_end(pos, nav) for pos, nav in zip(open_end, navs, strict=True)]
        priced = [r for r in results if isinstance(r, Priced)]
        errors.extend(r for r in results if isinstance(r, AssetError))

        now = self._clock()
        state = self.seen.load() if self.seen is not None else SeenState()
        unchanged: list[Priced] = []
        for p in priced:
            facts = Published(p.ts, p.price, p.position.quantity, p.position.avg_cost)
            if state.funds.get(p.position.code) == facts:
                # Same quote/NAV, quantity and cost as last published: nothing new to write anywhere.
                unchanged.append(p)
            else:
                await publish(self._tick(p))
                if p.position.quantity is not None:
                    await publish(self._holding(p, now, command_id))
                    state.funds[p.position.code] = facts
            if p.position.quantity is None:
                errors.append(
                    AssetError(
                        asset=p.position.code,
                        reason="priced, but no quantity is known (set 数量 in the 持仓 table or quantity in "
                        "asset_sync.assets.funds.manual): no holding written",
                        kind="skipped",
                    )
                )
        if self.seen is not None:
            self.seen.save(state)  # after publishing: a crash repeats a publish, never skips one
        note = await self._day_note(now)
        if unchanged:
            dates = sorted({p.price_date.isoformat() for p in unchanged})
            what = "no new data" if len(unchanged) == len(priced) else f"{len(unchanged)} unchanged"
            stale = f"{what}: the latest quote/NAV ({', '.join(dates)}) is already recorded"
            note = f"{stale}; {note}" if note else stale
        return self._result(command_id, started, found, priced, errors, note=note)

    # --- pricing ----------------------------------------------------------------------------
    def _etf(
        self, pos: FundPosition, quotes: dict[str, Quote] | BaseException, name: str | BaseException | None
    ) -> Priced | AssetError:
        if isinstance(quotes, BaseException):
            return _failed(pos, f"no price: {quotes}")
        quote = quotes.get(pos.code)
        if quote is None:
            if name is None:
                reason = f"Xueqiu does not know the symbol {pos.code} (check the code)"
            else:
                reason = f"Xueqiu has no current price for {pos.code} (suspended?)"
            return _failed(pos, reason)
        if isinstance(name, BaseException):
            # The price is what matters; a failed name lookup keeps the name we already have.
            log.warning("fund %s: name lookup failed: %s", pos.code, name)
            name = None
        ts = quote.timestamp or _ms(self._clock())
        return Priced(
            position=pos,
            price=quote.current,
            ts=ts,
            price_date=datetime.fromtimestamp(ts / 1000, MARKET_TZ).date(),
            name=name or pos.name or pos.code,
            via="xueqiu quotec",
        )

    def _open_end(self, pos: FundPosition, nav: FundNav | BaseException) -> Priced | AssetError:
        if isinstance(nav, UnknownFund):
            hint = ""
            if pos.code[:1] in ("1", "5"):
                hint = f" — if it is an exchange-traded fund, write it as SH{pos.code} or SZ{pos.code}"
            return _failed(pos, f"Danjuan does not know or sell fund {pos.code}: {nav.detail}{hint}")
        if isinstance(nav, BaseException):
            return _failed(pos, f"no NAV: {nav}")
        close = datetime.combine(nav.nav_date, NAV_TIME, MARKET_TZ)
        return Priced(
            position=pos,
            price=nav.nav,
            ts=_ms(close),
            price_date=nav.nav_date,
            name=nav.name or pos.name or pos.code,
            via="danjuan nav",
        )

    # --- events -----------------------------------------------------------------------------
    @staticmethod
    def _tick(p: Priced) -> PriceTick:
        return PriceTick(
            source=SOURCE,
            asset=p.position.code,
            price=p.price,
            currency=CURRENCY,
            ts=p.ts,
            asset_type="fund",
            name=p.name,
            via=p.via,
            price_date=p.price_date.isoformat(),
        )

    @staticmethod
    def _holding(p: Priced, now: datetime, command_id: str) -> Holding:
        pos = p.position
        return Holding(
            source=SOURCE,
            asset=pos.code,
            quantity=float(pos.quantity or 0.0),
            currency=CURRENCY,
            as_of=_ms(now),
            asset_type="fund",
            name=p.name,
            price=p.price,
            avg_cost=pos.avg_cost,
            cost_source=pos.origin if pos.avg_cost is not None else "",
            price_date=p.price_date.isoformat(),
            run_id=command_id,
        )

    # --- result -----------------------------------------------------------------------------
    async def _day_note(self, now: datetime) -> str:
        if self.calendar is None:
            return ""
        today = now.astimezone(MARKET_TZ).date()
        try:
            trading = await self.calendar.is_trading_day(today)
            ending = self.calendar.warn_if_ending(today)
        except Exception as exc:  # the calendar is informative here, never a reason to fail
            log.warning("trading calendar unavailable: %s", exc)
            return ""
        notes = [] if trading else [f"{today} is not a Shanghai trading day"]
        return "; ".join([*notes, ending] if ending else notes)

    def _result(
        self,
        command_id: str,
        started: int,
        found: Discovery,
        priced: list[Priced],
        errors: list[AssetError],
        *,
        message: str = "",
        note: str = "",
        failed: bool = False,
    ) -> TaskResult:
        n_failed = sum(1 for e in errors if e.kind == "failed" and not e.asset.startswith("("))
        total = len(priced) + n_failed
        bad = any(e.kind == "failed" for e in errors)
        status: TaskStatus
        if failed or (not priced and bad):
            status = "failed"
        elif bad:
            status = "partial"
        else:
            status = "success"
        dates = sorted({p.price_date for p in priced})
        as_of = "" if not dates else dates[0].isoformat()
        if len(dates) > 1:
            as_of = f"{dates[0].isoformat()}..{dates[-1].isoformat()}"
        if not message:
            parts = [f"{len(priced)}/{total} funds priced" if total else "no funds to sync"]
            if as_of:
                parts.append(f"data from {as_of.replace('..', ' to ')}")
            if found.ignored:
                parts.append(f"ignored {', '.join(found.ignored)}")
            if note:
                parts.append(note)
            message = "; ".join(parts)
        return TaskResult(
            command_id=command_id,
            task="fund",
            source=SOURCE,
            status=status,
            started_at=started,
            finished_at=_ms(self._clock()),
            records=len(priced) if not failed else 0,
            total=total if not failed else len(found.positions),
            errors=errors if not failed else list(found.errors),
            message=message,
            assets=sorted(p.code for p in found.positions) if found.complete else None,
            data_as_of=as_of,
        )


async def _capture(job: Awaitable[T]) -> T | Exception:
    """The job's result, or the exception it raised (cancellation still propagates)."""
    try:
        return await job
    except Exception as exc:
        return exc


def _failed(pos: FundPosition, reason: str) -> AssetError:
    return AssetError(asset=pos.code, reason=reason, kind="failed", quantity=pos.quantity, part="prices")

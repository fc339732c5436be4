"""The OKX feeds: polls public and account endpoints and publishes FeedRecords, only when they changed.

- every `asset_sync.okx.interval_seconds`: OKX001 (spot tickers: `market.watchlist`, else the 50 most
  traded USDT markets) and, with keys, OKX002 positions, OKX003 pending orders, OKX004 new fills
  (`trade/fills-history`: the first poll publishes the newest 100 of OKX's three months);
- every max(interval, 300 s), with keys: OKX005 account config, fee tiers and limits;
- once per closed hour: LQ001, the hour's swap liquidations per instrument and side for the watch
  list's underlyings (BTC and ETH without one), paged back through `public/liquidation-orders`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from assetsync.events import Event, FeedRecord

from assetsync_collector_okx import feeds
from assetsync_collector_okx.calls import CallFailed
from assetsync_collector_okx.sync import OkxSync

log = logging.getLogger("assetsync.collector_okx.feeds")

Publish = Callable[[Event], Awaitable[None]]
HOUR_MS = feeds.HOUR_MS
LQ_PAGES = 10  # 1000 liquidations of one underlying in an hour; more is flagged `truncated`
DEFAULT_UNDERLYINGS = ("BTC", "ETH")
ACCOUNT_LIMITS_EVERY = 300.0
# OKX's documented limits for the endpoints this service calls (shown in OKX005).
DOCUMENTED_LIMITS = {
    "account/balance": "10 requests / 2 s",
    "account/positions": "10 requests / 2 s",
    "trade/orders-pending": "60 requests / 2 s",
    "trade/fills-history": "10 requests / 2 s",
    "account/config": "5 requests / 2 s",
    "account/trade-fee": "5 requests / 2 s",
}


@dataclass
class PollReport:
    """What one poll published and what failed (endpoint -> reason)."""

    published: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class OkxFeeds:
    """Builds and publishes the feed records; remembers what it last published per code."""

    def __init__(self, sync: OkxSync, publish: Publish, *, clock: Callable[[], float] = time.time) -> None:
        self.sync = sync
        self.publish = publish
        self.clock = clock
        self._last: dict[str, bytes] = {}  # code -> content of the last record published
        self._fill_cursor: tuple[int, set[str]] = (0, set())
        self._ct_val: dict[str, float] = {}
        self.lq_done: int = 0  # the last hour (start, ms) whose LQ001 was published
        self.last_limits: float = 0.0
        self.last_report: PollReport | None = None

    def _now(self) -> int:
        return int(self.clock() * 1000)

    @property
    def settings(self) -> Any:
        return self.sync.settings

    async def _emit(self, rec: FeedRecord, report: PollReport, *, dedupe: bool = True) -> None:
        content = feeds.content_key(rec.data)
        if dedupe and self._last.get(rec.code) == content:
            return
        await self.publish(rec)
        self._last[rec.code] = content
        report.published.append(rec.code)

    async def poll(self, *, account: bool) -> PollReport:
        """One interval's polls (each endpoint on its own: one failing does not stop the others)."""
        report = PollReport()
        await self._guard("OKX001", self._tickers(report), report)
        if account:
            await self._guard("OKX002", self._positions(report), report)
            await self._guard("OKX003", self._orders(report), report)
            await self._guard("OKX004", self._fills(report), report)
            if (
                time.monotonic() - self.last_limits >= max(ACCOUNT_LIMITS_EVERY, self._interval())
                or not self.last_limits
            ):
                await self._guard("OKX005", self._limits(report), report)
        self.last_report = report
        return report

    async def poll_liquidations(self) -> PollReport:
        """LQ001 for the last closed hour, once per hour."""
        report = PollReport()
        hour = self._now() // HOUR_MS * HOUR_MS - HOUR_MS
        if hour > self.lq_done:
            await self._guard("LQ001", self._liquidations(hour, report), report)
            if "LQ001" not in report.failed:
                self.lq_done = hour
        return report

    def _interval(self) -> float:
        return float(self.settings.config.asset_sync.okx.interval_seconds)

    async def _guard(self, code: str, work: Awaitable[None], report: PollReport) -> None:
        try:
            await work
        except CallFailed as exc:
            report.failed[code] = str(exc)
            log.warning("okx %s poll failed: %s", code, exc)

    async def _tickers(self, report: PollReport) -> None:
        ex = self.sync.exchange
        rows = await self.sync.call(
            "GET /api/v5/market/tickers", lambda: ex.publicGetMarketTickers({"instType": "SPOT"})
        )
        market = self.settings.config.market
        chosen, missing = feeds.select_tickers(rows.get("data") or [], market.quote, market.watchlist)
        if not chosen:
            raise CallFailed(f"OKX market/tickers answered no {market.quote} spot tickers")
        ts = max(t.ts for t in chosen) or self._now()
        await self._emit(feeds.tickers_record(ts, market.quote, chosen, missing), report)

    async def _positions(self, report: PollReport) -> None:
        ex = self.sync.exchange
        got = await self.sync.call("GET /api/v5/account/positions", lambda: ex.privateGetAccountPositions())
        items = [feeds.position_of(r) for r in got.get("data") or []]
        now = self._now()
        await self._emit(
            feeds.snapshot_record("OKX002", now, feeds.Positions(ts=now, positions=items)), report
        )

    async def _orders(self, report: PollReport) -> None:
        ex = self.sync.exchange
        got = await self.sync.call(
            "GET /api/v5/trade/orders-pending", lambda: ex.privateGetTradeOrdersPending()
        )
        items = [feeds.order_of(r) for r in got.get("data") or []]
        now = self._now()
        record = feeds.snapshot_record("OKX003", now, feeds.PendingOrders(ts=now, orders=items))
        await self._emit(record, report)

    async def _fills(self, report: PollReport) -> None:
        """OKX004: one record per fill newer than the last seen (the first poll: the newest 100 of 3 months)."""
        ex = self.sync.exchange
        cursor, seen = self._fill_cursor
        params: dict[str, str] = {"instType": "SPOT"}
        if cursor:
            params["begin"] = str(cursor)
        got = await self.sync.call(
            "GET /api/v5/trade/fills-history", lambda: ex.privateGetTradeFillsHistory(params)
        )
        fills = [f for r in got.get("data") or [] if (f := feeds.fill_of(r)) is not None]
        for f in sorted(fills, key=lambda f: (f.ts, f.bill_id)):
            key = f"{f.inst_id}:{f.trade_id}"
            if key in seen:
                continue
            await self.publish(feeds.fill_record(f))
            report.published.append("OKX004")
            if f.ts > cursor:
                cursor, seen = f.ts, {key}
            else:
                seen.add(key)
        self._fill_cursor = (cursor, seen)

    async def _limits(self, report: PollReport) -> None:
        ex = self.sync.exchange
        config = await self.sync.call("GET /api/v5/account/config", lambda: ex.privateGetAccountConfig())
        fees = await self.sync.call(
            "GET /api/v5/account/trade-fee", lambda: ex.privateGetAccountTradeFee({"instType": "SPOT"})
        )
        now = self._now()
        first = (config.get("data") or [{}])[0]
        data = feeds.account_limits(now, first, fees.get("data") or [], DOCUMENTED_LIMITS)
        await self._emit(feeds.snapshot_record("OKX005", now, data), report)
        self.last_limits = time.monotonic()

    def _underlyings(self) -> Sequence[str]:
        watch = [a.strip().upper() for a in self.settings.config.market.watchlist if a.strip()]
        return watch or DEFAULT_UNDERLYINGS

    async def _contract_values(self) -> dict[str, float]:
        if not self._ct_val:
            ex = self.sync.exchange
            got = await self.sync.call(
                "GET /api/v5/public/instruments",
                lambda: ex.publicGetPublicInstruments({"instType": "SWAP"}),
            )
            for r in got.get("data") or []:
                ct = feeds.num(r.get("ctVal"))
                if ct and r.get("settleCcy") == "USDT" and r.get("ctValCcy"):
                    self._ct_val[str(r.get("instFamily") or r.get("uly"))] = ct
        return self._ct_val

    async def _liquidations(self, hour: int, report: PollReport) -> None:
        ct_vals = await self._contract_values()
        for base in self._underlyings():
            family = f"{base}-USDT"
            ct_val = ct_vals.get(family)
            if ct_val is None:
                continue  # no USDT swap: nothing is liquidated on OKX for it
            details: list[dict[str, Any]] = []
            after: int | None = hour + HOUR_MS
            truncated = False
            inst_id = f"{family}-SWAP"
            for page_no in range(LQ_PAGES):
                params = {"instType": "SWAP", "instFamily": family, "state": "filled", "after": str(after)}
                got = await self.sync.call(
                    "GET /api/v5/public/liquidation-orders",
                    partial(
                        self.sync.exchange.request, "public/liquidation-orders", ["public"], "GET", params
                    ),
                )
                rows = got.get("data") or []
                page = [d for r in rows for d in r.get("details") or []]
                inst_id = next((str(r.get("instId")) for r in rows if r.get("instId")), inst_id)
                details.extend(page)
                oldest = min((int(d.get("ts") or 0) for d in page), default=0)
                if len(page) < 100 or oldest < hour:
                    break
                after = oldest
                truncated = page_no == LQ_PAGES - 1
            for s in feeds.liquidation_summaries(inst_id, family, details, ct_val, hour, truncated=truncated):
                await self._emit(feeds.liquidation_record(s), report, dedupe=False)


async def run_loop(
    feeds_: OkxFeeds,
    *,
    account: Callable[[], bool],
    interval: Callable[[], float],
    stop: asyncio.Event,
) -> None:
    """Poll every interval until `stop`; LQ001 whenever an hour has closed."""
    while not stop.is_set():
        try:
            await feeds_.poll(account=account())
            await feeds_.poll_liquidations()
        except Exception:  # a bug in one poll must not end the feeds for good
            log.exception("okx feed poll crashed; polling again next interval")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval())

"""The records of the 12 market codes, built from the state at a moment (pure: no bus, no clock)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from assetsync.events import Candle

from assetsync_market import indicators as ind
from assetsync_market import records as r
from assetsync_market.state import Coin, D, H, IndexBase, M, MarketState, Series, iso

SAR_INTERVAL = "1h"  # SAR on closed 1 h candles: the poller sends 7 days of them, enough for a cycle
MIN_SAR_BARS = 24  # contiguous closed candles the SAR needs before it says anything
STALE_POLLS = 3  # no poll for more than this many intervals: prices are stale
SPEED_MINUTES = (1, 5, 15)
INDEX_BASE = 1000.0
E = TypeVar("E", bound=msgspec.Struct)  # a coin's entry in a code's record
WEIGHTING_NOTE = (
    "equal-weighted: the watch-list polls carry prices and 24 h volumes but no market caps; "
    "a coin joining or leaving is divisor-adjusted so the index does not jump"
)


@dataclass(frozen=True)
class Out:
    """One record to publish: its key within the code, the time it describes, its change group."""

    code: str
    key: str
    ts: int
    rec: msgspec.Struct
    group: str  # records of one group replace each other (the code, or code:coin)
    insufficient: int = 0


def _count(coins: list[msgspec.Struct]) -> int:
    return sum(isinstance(c, r.Insufficient) for c in coins)


class Feeds:
    """Builds each code's records from a MarketState."""

    def __init__(self, state: MarketState) -> None:
        self.s = state
        self._sar_memo: dict[str, tuple[tuple[int, int, int], ind.SarCycle]] = {}
        self.index_changed = False  # set when CI001's bases moved (the service saves the state file)

    # --- freshness ------------------------------------------------------------------------------
    @property
    def grace(self) -> int:
        return STALE_POLLS * self.s.poll_ms

    def fresh(self, name: str, now: int) -> Coin | r.Insufficient:
        """The coin when its last price is fresh, else why not."""
        p = self.s.last_poll
        if p is None:
            return r.Insufficient(coin=name, reason="no watch-list poll received yet")
        if now - p.ts > self.grace:
            return r.Insufficient(
                coin=name,
                reason=f"stale: no watch-list poll since {iso(p.ts)} (more than {STALE_POLLS} polls of "
                f"{self.s.poll_ms // 1000}s)",
            )
        if name in p.missing:
            return r.Insufficient(
                coin=name,
                reason=f"{name}/{self.s.quote} has no market at {p.source} (missing from the last poll: delisted?)",
            )
        c = self.s.coins.get(name)
        if name not in p.prices or c is None or c.tick_ts != p.ts:
            return r.Insufficient(coin=name, reason=f"{name} has no price in the last poll ({iso(p.ts)})")
        return c

    def each_fresh(
        self, now: int, entry: Callable[[str, Coin], E | r.Insufficient]
    ) -> list[E | r.Insufficient]:
        """One entry per watched coin: `entry(name, coin)` for a coin whose price is fresh, else why not."""
        out: list[E | r.Insufficient] = []
        for name in self.s.watchlist():
            c = self.fresh(name, now)
            out.append(c if isinstance(c, r.Insufficient) else entry(name, c))
        return out

    def closed_span(self, c: Coin, interval: str, n: int, now: int) -> tuple[list[Candle], str]:
        """The last `n` closed candles, contiguous, or why they are not there ("" = fine).

        The newest closed candle may be late by up to STALE_POLLS polls (the poller sends it after
        the close); older than that it is missing.
        """
        s = c.candles(interval)
        step = s.step
        last = (now // step) * step - step
        if s.get(last) is None and now - (last + step) <= self.grace:
            last -= step
        got, missing = s.span(last - (n - 1) * step, last)
        if missing is not None:
            return (
                [],
                f"{interval} candle missing at {iso(missing)} (need the {n} closed before {iso(last + step)})",
            )
        return got, ""

    def _slot(self, now: int, interval: float) -> str:
        """The record key of a code-wide record: the start (ms) of its interval's slot."""
        ms = int(interval * 1000)
        return str(now // ms * ms)

    # --- PT001 / PT002 ------------------------------------------------------------------------
    def pt001(self, now: int, interval: float) -> Out | None:
        p = self.s.last_poll

        def entry(name: str, c: Coin) -> r.CoinPrice:
            ref = (c.tick_ts - D) // H * H
            ref_c = c.candles("1h").get(ref)
            known = ref_c is not None and ref_c.open > 0
            return r.CoinPrice(
                coin=name,
                price=c.tick_price,
                ts=c.tick_ts,
                change_24h_pct=ind.pct_change(c.tick_price, ref_c.open) if ref_c and known else None,
                ref_24h_ts=ref if known else None,
            )

        coins = self.each_fresh(now, entry)
        if not coins or p is None:
            return None
        rec = r.LatestPrices(ts=p.ts, quote=self.s.quote, source=p.source, coins=coins)
        return Out("PT001", self._slot(now, interval), p.ts, rec, "PT001", _count(list(coins)))

    def pt002(self, since: int) -> list[Out]:
        """One record per poll newer than `since`."""
        return [
            Out(
                "PT002",
                str(p.ts),
                p.ts,
                r.PricePoll(ts=p.ts, quote=p.quote, source=p.source, prices=p.prices, missing=p.missing),
                f"PT002:{p.ts}",
            )
            for p in self.s.polls
            if p.ts > since
        ]

    # --- PS001 ----------------------------------------------------------------------------------
    def ps001(self, now: int, interval: float) -> Out | None:
        p = self.s.last_poll

        def entry(name: str, c: Coin) -> r.CoinSpeed:
            changes: dict[int, float | None] = {}
            why: dict[str, str] = {}
            for minutes in SPEED_MINUTES:
                tol = min(max(self.s.poll_ms // 2, 15_000), minutes * M // 2)
                ref = c.price_near(c.tick_ts - minutes * M, tol)
                changes[minutes] = ind.pct_change(c.tick_price, ref[1]) if ref else None
                if ref is None:
                    why[f"{minutes}m"] = (
                        f"no price within {tol // 1000}s of {minutes} min before {iso(c.tick_ts)}"
                    )
            return r.CoinSpeed(
                coin=name,
                price=c.tick_price,
                ts=c.tick_ts,
                change_1m_pct=changes[1],
                change_5m_pct=changes[5],
                change_15m_pct=changes[15],
                unavailable=why,
            )

        coins = self.each_fresh(now, entry)
        if not coins or p is None:
            return None
        return Out("PS001", self._slot(now, interval), p.ts, r.PriceSpeed(ts=p.ts, coins=coins), "PS001",
                   _count(list(coins)))  # fmt: skip

    # --- PB001 / CC001 / CC002 ------------------------------------------------------------------
    def _no_baseline(self, name: str, day: str) -> r.Insufficient:
        return r.Insufficient(
            coin=name,
            reason=f"no baseline for {day}: no 1m/1h candle opening at 00:00 {self.s.timezone} and no poll "
            f"within {STALE_POLLS} polls after it",
        )

    def avg_7d(self, c: Coin, now: int) -> tuple[float | None, str | None, str]:
        """The 7-day average close (from 168 closed 1 h candles, else 7 closed 1 d candles), its source, or why not."""
        got, why_h = self.closed_span(c, "1h", 7 * 24, now)
        if got:
            return ind.mean([x.close for x in got]), "1h", ""
        got, why_d = self.closed_span(c, "1d", 7, now)
        if got:
            return ind.mean([x.close for x in got]), "1d", ""
        return None, None, f"{why_h}; {why_d}"

    def pb001(self, now: int, interval: float) -> Out | None:
        p = self.s.last_poll
        if p is None:
            return None
        day, _ = self.s.day_start(p.ts)

        def entry(name: str, c: Coin) -> r.CoinBaselineCompare | r.Insufficient:
            b = c.baselines.get(day)
            avg, src, why_avg = self.avg_7d(c, now)
            why: dict[str, str] = {}
            if b is None:
                why["day_open"] = self._no_baseline(name, day).reason
            if avg is None:
                why["avg_7d"] = why_avg
            if b is None and avg is None:
                return r.Insufficient(coin=name, reason="; ".join(why.values()))
            return r.CoinBaselineCompare(
                coin=name,
                price=c.tick_price,
                day_open=b.price if b else None,
                vs_day_open_pct=ind.pct_change(c.tick_price, b.price) if b else None,
                avg_7d=avg,
                avg_7d_from=src,
                vs_avg_7d_pct=ind.pct_change(c.tick_price, avg) if avg else None,
                unavailable=why,
            )

        coins = self.each_fresh(now, entry)
        rec = r.BaselineComparison(ts=p.ts, timezone=self.s.timezone, day=day, coins=coins)
        return Out("PB001", self._slot(now, interval), p.ts, rec, "PB001", _count(list(coins)))

    def cc001(self, now: int, interval: float) -> Out | None:
        p = self.s.last_poll
        if p is None:
            return None
        day, _ = self.s.day_start(p.ts)

        def entry(name: str, c: Coin) -> r.CoinChange | r.Insufficient:
            b = c.baselines.get(day)
            if b is None:
                return self._no_baseline(name, day)
            return r.CoinChange(
                coin=name,
                price=c.tick_price,
                baseline=b.price,
                change=c.tick_price - b.price,
                change_pct=ind.pct_change(c.tick_price, b.price),
            )

        coins = self.each_fresh(now, entry)
        rec = r.ChangeSinceBaseline(ts=p.ts, timezone=self.s.timezone, day=day, coins=coins)
        return Out("CC001", self._slot(now, interval), p.ts, rec, "CC001", _count(list(coins)))

    def cc002(self, now: int, interval: float) -> Out | None:
        names = self.s.watchlist()
        if not names:
            return None
        day, midnight = self.s.day_start(now)
        coins: list[r.CoinBaseline | r.Insufficient] = []
        for name in names:
            c = self.s.coins.get(name)
            b = c.baselines.get(day) if c else None
            if b is None:
                coins.append(self._no_baseline(name, day))
            else:
                coins.append(r.CoinBaseline(coin=name, price=b.price, source=b.source, ts=b.ts))
        rec = r.Baselines(day=day, timezone=self.s.timezone, baseline_ts=midnight, coins=coins)
        return Out("CC002", self._slot(now, interval), midnight, rec, "CC002", _count(list(coins)))

    # --- EX001 ----------------------------------------------------------------------------------
    def ex001(self, now: int, interval: float) -> Out | None:
        p = self.s.last_poll

        def entry(name: str, c: Coin) -> r.CoinExtremes | r.Insufficient:
            price = c.tick_price
            ranges: dict[str, ind.Range | None] = {}
            why: dict[str, str] = {}
            for label, n in (("24h", 24), ("7d", 7 * 24)):
                got, reason = self.closed_span(c, "1h", n, now)
                ranges[label] = ind.extremes(got, (price,)) if got else None
                if not got:
                    why[label] = reason
            d, w = ranges["24h"], ranges["7d"]
            if d is None and w is None:
                return r.Insufficient(coin=name, reason="; ".join(why.values()))
            return r.CoinExtremes(
                coin=name,
                price=price,
                high_24h=d.high if d else None,
                low_24h=d.low if d else None,
                from_high_24h_pct=ind.pct_change(price, d.high) if d else None,
                from_low_24h_pct=ind.pct_change(price, d.low) if d else None,
                high_7d=w.high if w else None,
                low_7d=w.low if w else None,
                from_high_7d_pct=ind.pct_change(price, w.high) if w else None,
                from_low_7d_pct=ind.pct_change(price, w.low) if w else None,
                unavailable=why,
            )

        coins = self.each_fresh(now, entry)
        if not coins or p is None:
            return None
        return Out("EX001", self._slot(now, interval), p.ts, r.Extremes(ts=p.ts, coins=coins), "EX001",
                   _count(list(coins)))  # fmt: skip

    # --- SAR001 / SAR002 / SAR003 -------------------------------------------------------------------
    def sar(self, name: str, now: int) -> tuple[ind.SarCycle, list[Candle]] | r.Insufficient:
        """The SAR on the coin's trailing run of closed 1 h candles (at least MIN_SAR_BARS, no gap)."""
        c = self.s.coins.get(name)
        if c is None:
            return r.Insufficient(coin=name, reason=f"no {SAR_INTERVAL} candles for {name} yet")
        s: Series = c.candles(SAR_INTERVAL)
        last = (now // s.step) * s.step - s.step
        if s.get(last) is None and now - (last + s.step) <= self.grace:
            last -= s.step
        run = s.trailing(last)
        if not run:
            held = s.last_closed(now)
            return r.Insufficient(
                coin=name,
                reason=f"stale: no closed {SAR_INTERVAL} candle opening at {iso(last)}"
                + (
                    f" (the newest is {iso(held.open_time)})" if held else f" (no {SAR_INTERVAL} candles yet)"
                ),
            )
        if len(run) < MIN_SAR_BARS:
            gap = run[0].open_time - s.step
            return r.Insufficient(
                coin=name,
                reason=f"{SAR_INTERVAL} candle gap at {iso(gap)}: only {len(run)} contiguous closed candles "
                f"up to {iso(last)}, the SAR needs {MIN_SAR_BARS}",
            )
        memo_key = (last, len(run), s.version)  # a re-sent candle changes the version
        hit = self._sar_memo.get(name)
        if hit is not None and hit[0] == memo_key:
            return hit[1], run
        cyc = ind.parabolic_sar(run)
        self._sar_memo[name] = (memo_key, cyc)
        return cyc, run

    def sar001(self, now: int) -> list[Out]:
        out = []
        for name in self.s.watchlist():
            got = self.sar(name, now)
            if isinstance(got, r.Insufficient):
                out.append(Out("SAR001", f"{name}:insufficient:{now // 60_000 * 60_000}", now, got,
                               f"SAR001:{name}", 1))  # fmt: skip
                continue
            cyc, run = got
            last = run[-1]
            rec = r.SarCurrentCycle(
                coin=name,
                interval=SAR_INTERVAL,
                direction=cyc.direction,
                cycle_start=run[cyc.start].open_time,
                cycle_start_price=run[cyc.start].close,
                cycle_start_sar=cyc.start_sar,
                cycle_from_data_start=cyc.from_data_start,
                bars=cyc.bars,
                acceleration_factor=cyc.af,
                extreme_point=cyc.ep,
                sar=cyc.sar,
                next_sar=cyc.next_sar,
                last_candle=last.open_time,
                close=last.close,
            )
            out.append(Out("SAR001", f"{name}:{last.open_time}", last.open_time, rec, f"SAR001:{name}"))
        return out

    def sar003(self, now: int) -> list[Out]:
        out = []
        for name in self.s.watchlist():
            got = self.sar(name, now)
            if not isinstance(got, r.Insufficient):
                cyc, run = got
                slope = ind.sar_slope(cyc, bar_hours=1.0)
                if slope is None:
                    got = r.Insufficient(
                        coin=name, reason=f"the SAR cycle began on the last closed candle ({iso(run[-1].open_time)}): "
                        "a slope needs 2 bars",
                    )  # fmt: skip
                else:
                    rec = r.SarSlope(
                        coin=name,
                        interval=SAR_INTERVAL,
                        direction=cyc.direction,
                        cycle_start=run[cyc.start].open_time,
                        bars=cyc.bars,
                        start_sar=cyc.start_sar,
                        sar=cyc.sar,
                        slope_per_bar=slope.per_bar,
                        slope_pct_per_hour=slope.pct_per_hour,
                        last_candle=run[-1].open_time,
                    )
                    out.append(Out("SAR003", f"{name}:{run[-1].open_time}", run[-1].open_time, rec,
                                   f"SAR003:{name}"))  # fmt: skip
                    continue
            out.append(Out("SAR003", f"{name}:insufficient:{now // 60_000 * 60_000}", now, got,
                           f"SAR003:{name}", 1))  # fmt: skip
        return out

    def sar002(self, now: int, interval: float) -> Out | None:
        p = self.s.last_poll
        names = self.s.watchlist()
        if p is None or not names:
            return None

        def entry(name: str, c: Coin) -> r.CoinSarBias | r.Insufficient:
            got = self.sar(name, now)
            if isinstance(got, r.Insufficient):
                return got
            cyc = got[0]
            return r.CoinSarBias(
                coin=name,
                price=c.tick_price,
                sar=cyc.sar,
                direction=cyc.direction,
                bias_pct=ind.pct_change(c.tick_price, cyc.sar),
                side="above" if c.tick_price >= cyc.sar else "below",
            )

        coins = self.each_fresh(now, entry)
        ok = [x for x in coins if isinstance(x, r.CoinSarBias)]
        biases = [x.bias_pct for x in ok]
        summary = r.SarBiasSummary(
            coins=len(coins),
            above=sum(x.side == "above" for x in ok),
            below=sum(x.side == "below" for x in ok),
            insufficient=len(coins) - len(ok),
            mean_bias_pct=ind.mean(biases) if biases else None,
            median_bias_pct=ind.median(biases) if biases else None,
        )
        rec = r.SarBias(ts=p.ts, interval=SAR_INTERVAL, coins=coins, summary=summary)
        return Out("SAR002", self._slot(now, interval), p.ts, rec, "SAR002", summary.insufficient)

    # --- SR001 ----------------------------------------------------------------------------------
    def sr001(self, now: int, interval: float) -> Out | None:
        names = self.s.watchlist()
        if not names:
            return None
        coins: list[r.CoinLevels | r.Insufficient] = []
        for name in names:
            c = self.s.coin(name)
            levels: dict[str, r.PivotLevels | None] = {}
            why: dict[str, str] = {}
            for iv in ("1h", "1d"):
                got, reason = self.closed_span(c, iv, 1, now)
                if got:
                    k, pv = got[0], ind.floor_pivots(got[0])
                    levels[iv] = r.PivotLevels(
                        interval=iv, candle=k.open_time, high=k.high, low=k.low, close=k.close,
                        p=pv.p, r1=pv.r1, r2=pv.r2, r3=pv.r3, s1=pv.s1, s2=pv.s2, s3=pv.s3,
                    )  # fmt: skip
                else:
                    levels[iv] = None
                    why[iv] = reason
            if levels["1h"] is None and levels["1d"] is None:
                coins.append(r.Insufficient(coin=name, reason="; ".join(why.values())))
            else:
                coins.append(r.CoinLevels(coin=name, h1=levels["1h"], d1=levels["1d"], unavailable=why))
        # The record describes the newest candle it stands on (not the clock: an unchanged record stays unchanged).
        used = [
            lv.candle for c in coins if isinstance(c, r.CoinLevels) for lv in (c.h1, c.d1) if lv is not None
        ]
        ts = max(used, default=now // H * H)
        rec = r.SupportResistance(ts=ts, coins=coins)
        return Out("SR001", self._slot(now, interval), ts, rec, "SR001", _count(list(coins)))

    # --- CI001 ----------------------------------------------------------------------------------
    def ci001(self, now: int, interval: float) -> Out | None:
        """The equal-weighted index; coins joining or leaving adjust the bases so the value carries on."""
        p = self.s.last_poll
        names = self.s.watchlist()
        if p is None or not names:
            return None
        prices: dict[str, float] = {}
        excluded: list[r.Insufficient] = []
        for name in names:
            c = self.fresh(name, now)
            if isinstance(c, r.Insufficient):
                excluded.append(c)
            else:
                prices[name] = c.tick_price
        base = self.s.index
        if not prices:
            rec = r.CryptoIndex(
                ts=p.ts, status="insufficient_data", reason="no constituent has a fresh price", value=None,
                base_value=INDEX_BASE, base_day=base.day if base else "", weighting="equal",
                weighting_note=WEIGHTING_NOTE, constituents=[], excluded=excluded,
            )  # fmt: skip
            return Out("CI001", self._slot(now, interval), p.ts, rec, "CI001", len(excluded))
        if base is None:
            day, _ = self.s.day_start(p.ts)
            base = self.s.index = IndexBase(day=day, bases=dict(prices))
            self.index_changed = True
        bases = base.bases
        stay = [n for n in bases if n in prices]
        left = [n for n in bases if n not in prices]
        if left and stay:
            # Rescale the staying bases so that, at the last computation's prices, they alone give the
            # value the index had then (no jump when a coin drops out).
            last = base.last_value
            if last is not None and all(n in base.last_prices for n in stay):
                sub = ind.mean([base.last_prices[n] / bases[n] for n in stay]) * INDEX_BASE
                for n in stay:
                    bases[n] *= sub / last
        for n in left:
            del bases[n]
        value = ind.mean([prices[n] / bases[n] for n in stay]) * INDEX_BASE if stay else INDEX_BASE
        for n in prices:
            if n not in bases:  # joins at the current value: its ratio equals the index's
                bases[n] = prices[n] * INDEX_BASE / value
        if left or len(bases) != len(stay):
            self.index_changed = True
        base.last_prices, base.last_value = dict(prices), value
        weight = 1.0 / len(bases)
        constituents = [
            r.Constituent(coin=k, price=prices[k], base_price=bases[k], weight=weight) for k in sorted(bases)
        ]
        rec = r.CryptoIndex(
            ts=p.ts,
            value=value,
            base_value=INDEX_BASE,
            base_day=base.day,
            weighting="equal",
            weighting_note=WEIGHTING_NOTE,
            constituents=constituents,
            excluded=excluded,
        )
        return Out("CI001", self._slot(now, interval), p.ts, rec, "CI001", len(excluded))

    # --- all ------------------------------------------------------------------------------------
    def builders(self) -> dict[str, Callable[[int, float], Out | list[Out] | None]]:
        """Each code's builder (PT002 is per poll, see `pt002`)."""
        return {
            "PT001": self.pt001,
            "PS001": self.ps001,
            "PB001": self.pb001,
            "SAR001": lambda now, _i: self.sar001(now),
            "SAR002": self.sar002,
            "SAR003": lambda now, _i: self.sar003(now),
            "CC001": self.cc001,
            "CC002": self.cc002,
            "EX001": self.ex001,
            "SR001": self.sr001,
            "CI001": self.ci001,
        }

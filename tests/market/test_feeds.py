"""Each code's records against an independent computation (pandas, TA-Lib) on the same candles and polls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib
from assetsync.events import Candle
from assetsync_market import records as r
from assetsync_market.feeds import MIN_SAR_BARS, Feeds, Out
from assetsync_market.state import D, H, M, MarketState

from tests.market.support import klines, state, ticks, walk

SH_MIDNIGHT = 1_764_547_200_000 + 16 * H  # 2025-12-02T00:00+08:00
NOW = SH_MIDNIGHT + 10 * H + 30 * M + 20_000  # 10:30:20 local
LAST_H = NOW // H * H - H  # the newest closed 1 h candle opens at 09:00 local
LAST_D = NOW // D * D - D
TICK = NOW - 20_000


def frame(candles: list[Candle]) -> pd.DataFrame:
    return pd.DataFrame(
        [(c.open_time, c.open, c.high, c.low, c.close) for c in candles],
        columns=["t", "open", "high", "low", "close"],
    ).set_index("t")


def build(
    coins: dict[str, int], *, drop_h: tuple[int, ...] = (), missing: list[str] | None = None
) -> tuple[MarketState, dict[str, Any]]:
    """A state with 200 h of 1 h candles, 40 d of 1 d candles and 20 polls per coin (seeded walks)."""
    st = state()
    data: dict[str, Any] = {}
    for coin, seed in coins.items():
        hours = [c for c in walk(200, start=LAST_H - 199 * H, seed=seed) if c.open_time not in drop_h]
        days = walk(40, start=LAST_D - 39 * D, step=D, seed=seed + 100)
        st.apply(klines(coin, "1h", hours))
        st.apply(klines(coin, "1d", days))
        data[coin] = {"h": frame(hours[-192:]), "d": frame(days), "hours": hours[-192:]}
    polls = {c: walk(21, start=TICK - 20 * M, step=M, seed=s + 7) for c, s in coins.items()}
    for i in range(21):
        st.apply(ticks(TICK - (20 - i) * M, {c: polls[c][i].close for c in coins}, missing=missing))
    for c in coins:
        data[c]["polls"] = pd.Series(
            [k.close for k in polls[c]], index=[TICK - (20 - i) * M for i in range(21)]
        )
    return st, data


def coins_of(out: Out | None) -> dict[str, Any]:
    assert out is not None
    data = r.to_data(out.rec)
    return {c["coin"]: c for c in data["coins"]}


def test_pt001_latest_price_and_24h_change() -> None:
    st, data = build({"BTC": 1, "ETH": 2})
    got = coins_of(Feeds(st).pt001(NOW, 60))
    for coin in ("BTC", "ETH"):
        price = data[coin]["polls"].iloc[-1]
        ref_t = (TICK - D) // H * H
        ref = data[coin]["h"].loc[ref_t, "open"]
        assert got[coin] == {"coin": coin, "status": "ok", "price": price, "ts": TICK,
                             "change_24h_pct": pytest.approx((price / ref - 1) * 100), "ref_24h_ts": ref_t}  # fmt: skip


def test_pt002_one_record_per_poll() -> None:
    st, data = build({"BTC": 1})
    outs = Feeds(st).pt002(TICK - 3 * M)
    assert [o.key for o in outs] == [str(TICK - 2 * M), str(TICK - M), str(TICK)]
    assert r.to_data(outs[-1].rec)["prices"] == {"BTC": data["BTC"]["polls"].iloc[-1]}


def test_ps001_changes_match_pandas_shift() -> None:
    st, data = build({"BTC": 1, "SOL": 3})
    got = coins_of(Feeds(st).ps001(NOW, 60))
    for coin in ("BTC", "SOL"):
        s = data[coin]["polls"]
        for minutes in (1, 5, 15):
            expect = (s / s.shift(minutes) - 1).iloc[-1] * 100
            assert got[coin][f"change_{minutes}m_pct"] == pytest.approx(expect)
        assert got[coin]["unavailable"] == {}


def test_ps001_says_which_window_is_unavailable() -> None:
    st = state()
    st.apply(ticks(TICK - 2 * M, {"BTC": 100.0}))
    st.apply(ticks(TICK, {"BTC": 101.0}))
    btc = coins_of(Feeds(st).ps001(NOW, 60))["BTC"]
    assert btc["change_1m_pct"] is None and btc["change_5m_pct"] is None and btc["change_15m_pct"] is None
    assert set(btc["unavailable"]) == {"1m", "5m", "15m"} and "no price within" in btc["unavailable"]["5m"]


def test_pb001_cc001_cc002_against_candles() -> None:
    st, data = build({"BTC": 1, "ETH": 2})
    f = Feeds(st)
    pb, cc, base = coins_of(f.pb001(NOW, 600)), coins_of(f.cc001(NOW, 60)), coins_of(f.cc002(NOW, 600))
    for coin in ("BTC", "ETH"):
        h, price = data[coin]["h"], data[coin]["polls"].iloc[-1]
        day_open = h.loc[SH_MIDNIGHT, "open"]  # the 1 h candle opening at 00:00 Asia/Shanghai
        avg = h["close"].tail(168).mean()
        assert pb[coin]["day_open"] == day_open and pb[coin]["avg_7d_from"] == "1h"
        assert pb[coin]["avg_7d"] == pytest.approx(avg)
        assert pb[coin]["vs_day_open_pct"] == pytest.approx((price / day_open - 1) * 100)
        assert pb[coin]["vs_avg_7d_pct"] == pytest.approx((price / avg - 1) * 100)
        assert cc[coin]["baseline"] == day_open and cc[coin]["change"] == pytest.approx(price - day_open)
        assert base[coin] == {
            "coin": coin,
            "status": "ok",
            "price": day_open,
            "source": "1h",
            "ts": SH_MIDNIGHT,
        }


def test_pb001_falls_back_to_daily_closes_and_cc001_needs_a_baseline() -> None:
    # A gap 100 h ago: no 168 contiguous 1 h closes, so the 7-day average comes from 7 daily closes.
    st, data = build({"BTC": 1}, drop_h=(LAST_H - 100 * H, SH_MIDNIGHT))
    pb = coins_of(Feeds(st).pb001(NOW, 600))["BTC"]
    assert pb["avg_7d_from"] == "1d" and pb["avg_7d"] == pytest.approx(
        data["BTC"]["d"]["close"].tail(7).mean()
    )
    assert pb["day_open"] is None and "no baseline for 2025-12-02" in pb["unavailable"]["day_open"]
    cc = coins_of(Feeds(st).cc001(NOW, 60))["BTC"]
    assert cc["status"] == "insufficient_data" and "00:00 Asia/Shanghai" in cc["reason"]


def test_ex001_extremes_match_pandas() -> None:
    st, data = build({"BTC": 1})
    got = coins_of(Feeds(st).ex001(NOW, 60))["BTC"]
    h, price = data["BTC"]["h"], data["BTC"]["polls"].iloc[-1]
    hi24, lo24 = max(h["high"].tail(24).max(), price), min(h["low"].tail(24).min(), price)
    hi7, lo7 = max(h["high"].tail(168).max(), price), min(h["low"].tail(168).min(), price)
    assert (got["high_24h"], got["low_24h"], got["high_7d"], got["low_7d"]) == (hi24, lo24, hi7, lo7)
    assert got["from_high_24h_pct"] == pytest.approx((price / hi24 - 1) * 100)
    assert got["from_low_7d_pct"] == pytest.approx((price / lo7 - 1) * 100)


def sar_reference(hours: list[Candle]) -> tuple[np.ndarray, int]:
    """TA-Lib's SAR and, independently, the index where its current cycle began."""
    sar = talib.SAR(np.array([c.high for c in hours]), np.array([c.low for c in hours]), 0.02, 0.2)
    side = ["up" if sar[i] < hours[i].low else "down" for i in range(1, len(hours))]
    start = next(i + 1 for i in range(len(side) - 1, 0, -1) if side[i] != side[i - 1])
    return sar, start


@pytest.mark.parametrize("seed", [1, 2, 6])
def test_sar001_sar003_against_talib(seed: int) -> None:
    st, data = build({"BTC": seed})
    hours = data["BTC"]["hours"]
    sar, start = sar_reference(hours)
    f = Feeds(st)
    [one] = f.sar001(NOW)
    rec = r.to_data(one.rec)
    assert one.key == f"BTC:{LAST_H}" and rec["last_candle"] == LAST_H and rec["interval"] == "1h"
    assert rec["sar"] == pytest.approx(sar[-1]) and rec["cycle_start"] == hours[start].open_time
    assert rec["bars"] == len(hours) - start and rec["cycle_start_sar"] == pytest.approx(sar[start])
    assert rec["direction"] == ("up" if sar[-1] < hours[-1].low else "down")
    [slope] = f.sar003(NOW)
    per_bar = (sar[-1] - sar[start]) / (len(hours) - start - 1)
    assert r.to_data(slope.rec)["slope_per_bar"] == pytest.approx(per_bar)
    assert r.to_data(slope.rec)["slope_pct_per_hour"] == pytest.approx(per_bar / sar[start] * 100)


def test_sar002_bias_and_summary() -> None:
    st, data = build({"BTC": 1, "ETH": 2, "SOL": 3}, missing=["LUNA"])
    out = Feeds(st).sar002(NOW, 3600)
    assert out is not None
    rec = r.to_data(out.rec)
    bias = {}
    for coin in ("BTC", "ETH", "SOL"):
        sar, _ = sar_reference(data[coin]["hours"])
        bias[coin] = (data[coin]["polls"].iloc[-1] / sar[-1] - 1) * 100
    got = {c["coin"]: c for c in rec["coins"]}
    for coin, b in bias.items():
        assert got[coin]["bias_pct"] == pytest.approx(b) and got[coin]["side"] == (
            "above" if b >= 0 else "below"
        )
    assert got["LUNA"]["status"] == "insufficient_data"
    s = pd.Series(list(bias.values()))
    assert rec["summary"] == {"coins": 4, "above": int((s >= 0).sum()), "below": int((s < 0).sum()), "insufficient": 1,
                              "mean_bias_pct": pytest.approx(s.mean()), "median_bias_pct": pytest.approx(s.median())}  # fmt: skip


def test_sr001_pivots_of_previous_candles() -> None:
    st, data = build({"BTC": 1})
    got = coins_of(Feeds(st).sr001(NOW, 3600))["BTC"]
    for key, df, t in (("h1", data["BTC"]["h"], LAST_H), ("d1", data["BTC"]["d"], LAST_D)):
        row = df.loc[t]
        p = (row.high + row.low + row.close) / 3
        assert got[key]["candle"] == t
        assert got[key]["p"] == pytest.approx(p) and got[key]["r1"] == pytest.approx(2 * p - row.low)
        assert got[key]["s1"] == pytest.approx(2 * p - row.high)
        assert got[key]["r3"] == pytest.approx(row.high + 2 * (p - row.low))
        assert got[key]["s3"] == pytest.approx(row.low - 2 * (row.high - p))


def test_ci001_equal_weight_and_no_jump_when_coins_leave_or_join() -> None:
    st = state(watchlist=["BTC", "ETH"])
    f = Feeds(st)
    st.apply(ticks(TICK, {"BTC": 100.0, "ETH": 10.0}))
    first = f.ci001(NOW, 3600)
    assert first is not None and r.to_data(first.rec)["value"] == 1000.0 and f.index_changed
    st.apply(ticks(TICK + M, {"BTC": 110.0, "ETH": 9.0}))
    # Equal weights: 1000 · (110/100 + 9/10) / 2 = 1000.
    got = f.ci001(NOW + M, 3600)
    assert got is not None and r.to_data(got.rec)["value"] == pytest.approx(1000.0)
    st.apply(ticks(TICK + 2 * M, {"BTC": 121.0, "ETH": 9.0}))
    v = r.to_data(f.ci001(NOW + 2 * M, 3600).rec)["value"]  # type: ignore[union-attr]
    assert v == pytest.approx(1000 * (1.21 + 0.9) / 2)
    # ETH drops out (delisted): at the last prices the index keeps its value, then follows BTC alone.
    st.apply(ticks(TICK + 3 * M, {"BTC": 121.0}, missing=["ETH"]))
    gone = r.to_data(f.ci001(NOW + 3 * M, 3600).rec)  # type: ignore[union-attr]
    assert gone["value"] == pytest.approx(v) and [c["coin"] for c in gone["excluded"]] == ["ETH"]
    # SOL joins at the current value: its ratio equals the index's, so the value does not move.
    st.configured = ["BTC", "SOL"]
    st.apply(ticks(TICK + 4 * M, {"BTC": 121.0, "SOL": 50.0}))
    joined = r.to_data(f.ci001(NOW + 4 * M, 3600).rec)  # type: ignore[union-attr]
    assert joined["value"] == pytest.approx(v) and [c["coin"] for c in joined["constituents"]] == [
        "BTC",
        "SOL",
    ]
    assert joined["weighting"] == "equal" and joined["base_day"] == "2025-12-02"


def test_candle_gap_makes_sar_and_extremes_insufficient() -> None:
    st, _ = build({"BTC": 1}, drop_h=(LAST_H - 5 * H,))
    f = Feeds(st)
    [sar] = f.sar001(NOW)
    rec = r.to_data(sar.rec)
    assert rec["status"] == "insufficient_data" and rec["coin"] == "BTC"
    assert "only 5 contiguous closed candles" in rec["reason"] and f"needs {MIN_SAR_BARS}" in rec["reason"]
    assert sar.key.startswith("BTC:insufficient:")
    ex = coins_of(f.ex001(NOW, 60))["BTC"]
    assert ex == {"coin": "BTC", "status": "insufficient_data", "reason": ex["reason"]}
    assert "1h candle missing at" in ex["reason"]
    # A gap two days back: the 24 h extremes stand, the 7-day ones say why they are missing.
    st2, _ = build({"BTC": 1}, drop_h=(LAST_H - 48 * H,))
    ex2 = coins_of(Feeds(st2).ex001(NOW, 60))["BTC"]
    assert (
        ex2["high_24h"] is not None
        and ex2["high_7d"] is None
        and "1h candle missing" in ex2["unavailable"]["7d"]
    )
    [slope] = f.sar003(NOW)
    assert r.to_data(slope.rec)["status"] == "insufficient_data"


def test_missing_coin_is_insufficient_everywhere() -> None:
    st, _ = build({"BTC": 1}, missing=["LUNA"])
    f = Feeds(st)
    for out in (f.pt001(NOW, 60), f.ps001(NOW, 60), f.cc001(NOW, 60), f.ex001(NOW, 60), f.pb001(NOW, 600)):
        luna = coins_of(out)["LUNA"]
        assert luna == {"coin": "LUNA", "status": "insufficient_data", "reason": luna["reason"]}
        assert "no market at binance" in luna["reason"] and "delisted" in luna["reason"]
        assert coins_of(out)["BTC"]["status"] == "ok" and out is not None and out.insufficient == 1


def test_stale_polls_make_every_coin_insufficient() -> None:
    st, _ = build({"BTC": 1, "ETH": 2})
    later = TICK + 3 * M + 1
    got = coins_of(Feeds(st).pt001(later, 60))
    assert all(c["status"] == "insufficient_data" and c["reason"].startswith("stale") for c in got.values())
    assert coins_of(Feeds(st).pt001(TICK + 3 * M, 60))["BTC"]["status"] == "ok"  # 3 polls late is still fresh


def test_late_newest_candle_is_tolerated_for_three_polls() -> None:
    # At 10:01:00 the 10:00 candle may not be in yet: the SAR still stands on the 09:00 one.
    st, _ = build({"BTC": 1})
    f = Feeds(st)
    early = LAST_H + 2 * H + 60_000
    st.apply(ticks(early - 1000, {"BTC": 100.0}))
    [one] = f.sar001(early)
    assert r.to_data(one.rec)["last_candle"] == LAST_H
    [stale] = f.sar001(LAST_H + 2 * H + 4 * M)
    assert "stale: no closed 1h candle" in r.to_data(stale.rec)["reason"]


def test_no_poll_yet_builds_nothing_or_says_why() -> None:
    assert Feeds(state()).pt001(NOW, 60) is None  # no watch list known yet: nothing to say
    f = Feeds(state(watchlist=["btc"]))
    assert f.fresh("BTC", NOW) == r.Insufficient(coin="BTC", reason="no watch-list poll received yet")
    assert coins_of(f.cc002(NOW, 600))["BTC"]["status"] == "insufficient_data"


def test_sar_follows_a_re_sent_candle() -> None:
    st, data = build({"BTC": 1})
    f = Feeds(st)
    before = r.to_data(f.sar001(NOW)[0].rec)
    last = data["BTC"]["hours"][-1]
    crash = Candle(last.open_time, last.open, last.high, last.low * 0.5, last.low * 0.6, last.volume)
    st.apply(klines("BTC", "1h", [crash]))
    hours = [*data["BTC"]["hours"][:-1], crash]
    sar, _ = sar_reference(hours)
    after = r.to_data(f.sar001(NOW)[0].rec)
    assert after["sar"] == pytest.approx(sar[-1]) and after != before


def test_records_do_not_change_with_the_clock_alone() -> None:
    st, _ = build({"BTC": 1, "ETH": 2})
    f = Feeds(st)
    for code, build_at in f.builders().items():
        a, b = build_at(NOW, 60), build_at(NOW + 30_000, 60)
        outs_a = a if isinstance(a, list) else [a]
        outs_b = b if isinstance(b, list) else [b]
        assert [r.to_data(o.rec) for o in outs_a if o] == [r.to_data(o.rec) for o in outs_b if o], code

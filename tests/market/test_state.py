"""The market state: candle series (upsert, spans, gaps), price points, baselines, the state file."""

from __future__ import annotations

import msgspec
from assetsync.events import Candle, PriceTick
from assetsync_market.state import Baseline, D, H, M, Saved, Series

from tests.market.support import klines, state, ticks, walk

T0 = 1_764_547_200_000  # 2025-12-01T00:00Z = 08:00 Asia/Shanghai
SH_MIDNIGHT = T0 + 16 * H  # 2025-12-02T00:00+08:00


def test_series_upserts_keeps_order_and_bound() -> None:
    s = Series(H, keep=5)
    cs = walk(8, start=T0)
    for c in reversed(cs[:4]):
        assert s.put(c)
    assert s.opens == [c.open_time for c in cs[:4]]
    assert not s.put(cs[0])  # the same candle again: no change
    assert s.put(Candle(cs[0].open_time, 1, 2, 0.5, 1.5, 9))  # re-sent with new values: replaced
    for c in cs[4:]:
        s.put(c)
    assert s.opens == [c.open_time for c in cs[3:]]  # only the newest 5 kept
    assert not s.put(cs[0])  # older than everything kept
    assert not s.put(Candle(T0 + 1, 1, 1, 1, 1, 1))  # off the 1 h grid


def test_series_span_trailing_and_last_closed() -> None:
    s = Series(H, keep=100)
    cs = walk(10, start=T0)
    for c in cs[:4] + cs[5:]:  # candle 4 missing: a gap
        s.put(c)
    got, missing = s.span(T0, T0 + 3 * H)
    assert len(got) == 4 and missing is None
    got, missing = s.span(T0, T0 + 9 * H)
    assert missing == T0 + 4 * H
    assert [c.open_time for c in s.trailing(T0 + 9 * H)] == [c.open_time for c in cs[5:]]
    assert s.trailing(T0 + 4 * H) == []
    last = s.last_closed(T0 + 9 * H + 30 * M)  # the 9th candle is still forming
    assert last is not None and last.open_time == T0 + 8 * H
    assert s.last_closed(T0) is None


def test_ticks_set_points_missing_and_tick_baseline() -> None:
    st = state()
    st.apply(ticks(SH_MIDNIGHT + 20_000, {"BTC": 100.0, "ETH": 0.0}, missing=["LUNA"]))
    assert st.watchlist() == ["BTC", "ETH", "LUNA"]
    btc = st.coins["BTC"]
    assert btc.tick_price == 100.0 and btc.points == [(SH_MIDNIGHT + 20_000, 100.0)]
    assert "ETH" not in st.coins  # a zero price is no price
    assert btc.baselines["2025-12-02"] == Baseline(100.0, "tick", SH_MIDNIGHT + 20_000)
    st.apply(ticks(SH_MIDNIGHT + 80_000, {"BTC": 101.0}))
    assert btc.baselines["2025-12-02"].price == 100.0  # the first poll after midnight stays
    st.apply(ticks(SH_MIDNIGHT + 5_000, {"BTC": 99.0}))  # an earlier poll delivered late: it is the first
    assert btc.baselines["2025-12-02"] == Baseline(99.0, "tick", SH_MIDNIGHT + 5_000)


def test_candle_baselines_beat_ticks() -> None:
    st = state()
    st.apply(ticks(SH_MIDNIGHT + 20_000, {"BTC": 100.0}))
    st.apply(klines("BTC", "1h", [Candle(SH_MIDNIGHT, 99.0, 101, 98, 100, 1)]))
    assert st.coins["BTC"].baselines["2025-12-02"] == Baseline(99.0, "1h", SH_MIDNIGHT)
    # A 1 m candle is not saved, but the baseline it brings is (True: the state file is rewritten).
    assert st.apply(klines("BTC", "1m", [Candle(SH_MIDNIGHT, 99.5, 100, 99, 99.8, 1)])) is True
    assert st.coins["BTC"].baselines["2025-12-02"] == Baseline(99.5, "1m", SH_MIDNIGHT)
    st.apply(klines("BTC", "1h", [Candle(SH_MIDNIGHT, 98.0, 101, 98, 100, 1)]))
    assert st.coins["BTC"].baselines["2025-12-02"].source == "1m"


def test_day_start_in_timezone() -> None:
    st = state()
    assert st.day_start(SH_MIDNIGHT + 5 * H) == ("2025-12-02", SH_MIDNIGHT)
    assert st.day_start(SH_MIDNIGHT - 1) == ("2025-12-01", SH_MIDNIGHT - D)
    assert state(tz="UTC").day_start(T0 + H) == ("2025-12-01", T0)


def test_one_minute_closes_seed_points_and_price_ticks_add_to_watched() -> None:
    st = state()
    st.apply(klines("BTC", "1m", walk(3, start=T0, step=M)))
    assert [p[0] for p in st.coins["BTC"].points] == [T0 + M, T0 + 2 * M, T0 + 3 * M]
    st.apply(PriceTick(source="binance", asset="BTC", price=50.0, currency="USDT", ts=T0 + 90_000))
    st.apply(
        PriceTick(source="xueqiu", asset="BTC", price=5.0, currency="CNY", ts=T0 + 100_000, asset_type="fund")
    )
    st.apply(PriceTick(source="binance", asset="DOGE", price=0.1, currency="USDT", ts=T0))
    assert (T0 + 90_000, 50.0) in st.coins["BTC"].points and len(st.coins["BTC"].points) == 4
    assert "DOGE" not in st.coins  # not watched


def test_other_quotes_origins_and_points_window() -> None:
    st = state()
    st.apply(klines("BTC", "1h", walk(2, start=T0)).__class__(source="b", symbol="BTC/EUR", interval="1h",
                                                               candles=walk(2, start=T0)))  # fmt: skip
    assert "BTC" not in st.coins
    st.apply(
        ticks(T0, {"BTC": 1.0}).__class__(source="b", quote="USDT", ts=T0, prices={"BTC": 1}, origin="x")
    )
    assert "BTC" not in st.coins
    for i in range(40):
        st.apply(ticks(T0 + i * M, {"BTC": 100.0 + i}))
    pts = st.coins["BTC"].points
    assert pts[0][0] == T0 + 19 * M and pts[-1][0] == T0 + 39 * M  # the last 20 minutes


def test_state_file_round_trip_keeps_slow_part() -> None:
    st = state()
    st.apply(klines("BTC", "1h", walk(30, start=T0)))
    st.apply(klines("BTC", "1d", walk(5, start=T0, step=D)))
    assert st.apply(klines("BTC", "1m", walk(5, start=T0, step=M))) is False  # fast part: not saved
    st.apply(ticks(SH_MIDNIGHT + 1000, {"BTC": 100.0}))
    raw = msgspec.json.encode(st.saved())
    back = state()
    back.restore(msgspec.json.decode(raw, type=Saved))
    b = back.coins["BTC"]
    assert b.candles("1h").opens == st.coins["BTC"].candles("1h").opens
    assert len(b.candles("1d").opens) == 5 and b.candles("1m").opens == []
    assert b.baselines == st.coins["BTC"].baselines


def test_a_candle_sent_while_forming_is_not_kept_but_its_open_is_the_baseline() -> None:
    st = state()
    forming = Candle(SH_MIDNIGHT, 99.0, 100, 98, 99.5, 1)  # sent at 00:30, before its close at 01:00
    st.apply(klines("BTC", "1h", [forming]), at=SH_MIDNIGHT + 30 * M)
    s = st.coins["BTC"].candles("1h")
    assert s.opens == [] and st.coins["BTC"].baselines["2025-12-02"] == Baseline(99.0, "1h", SH_MIDNIGHT)
    closed = Candle(SH_MIDNIGHT, 99.0, 103, 97, 101, 5)
    assert st.apply(klines("BTC", "1h", [closed]), at=SH_MIDNIGHT + H + 2000)
    assert s.get(SH_MIDNIGHT) == closed and s.version == 1
    st.apply(klines("BTC", "1m", [Candle(SH_MIDNIGHT + H, 1, 1, 1, 1, 1)]), at=SH_MIDNIGHT + H + 30_000)
    assert st.coins["BTC"].points == []  # a forming 1 m candle's close is not a price yet


def test_impossible_candles_are_refused() -> None:
    st = state()
    bad = [
        Candle(T0, 0.0, 1, 0.0, 1, 1),
        Candle(T0 + H, 10, 9, 8, 9.5, 1),
        Candle(T0 + 2 * H, 10, 12, 11, 11, 1),
    ]
    assert st.apply(klines("BTC", "1h", [*bad, Candle(T0 + 3 * H, 10, 12, 9, 11, 1)]))
    assert st.coins["BTC"].candles("1h").opens == [T0 + 3 * H] and st.rejected == 3


def test_poll_assets_are_upper_cased_and_a_zero_price_is_no_price() -> None:
    st = state()
    st.apply(ticks(T0, {"btc": 100.0, "ETH": 0.0}, missing=["luna"]))
    p = st.last_poll
    assert p is not None and p.prices == {"BTC": 100.0} and p.missing == ["LUNA"] and p.unpriced == ["ETH"]

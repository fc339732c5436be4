"""A fund sync end to end against the emulator (real pysnowball), publishing into a list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from assetsync.config import ManualFund, XueqiuConf
from assetsync.events import Event, Holding, PriceTick, TaskResult
from assetsync_collector_fund.discovery import FundPosition, ManualFunds
from assetsync_collector_fund.snowball import COOKIE_EXPIRED, SnowballClient
from assetsync_collector_fund.sync import FundSync
from assetsync_collector_fund.trading_days import TradingCalendar
from assetsync_emulators.common import Fault
from assetsync_emulators.xueqiu import SHANGHAI, XueqiuEmulator

HOLDINGS = [
    ManualFund(symbol="SH510300", quantity=1000, avg_cost=3.5),
    ManualFund(symbol="sz159915", quantity=2000),
    ManualFund(symbol="110011", quantity=300.5, avg_cost=3.9),
    ManualFund(symbol="161725", quantity=5000, avg_cost=1.1),
]


class Published(list[Event]):
    """Collects what a sync publishes."""

    async def __call__(self, event: Event) -> None:
        self.append(event)

    def of(self, kind: type[Any]) -> dict[str, Any]:
        return {e.asset: e for e in self if isinstance(e, kind)}


class BrokenSource:
    """A fund source that cannot be read (e.g. Feishu down)."""

    name = "Feishu 持仓 table"

    async def positions(self) -> list[FundPosition]:
        raise ConnectionError("Feishu unreachable")


def make_sync(
    emu: XueqiuEmulator,
    conf: XueqiuConf,
    manual: Sequence[ManualFund] = HOLDINGS,
    *,
    ignore: Sequence[str] = (),
    sources: Sequence[Any] = (),
    calendar: TradingCalendar | None = None,
) -> FundSync:
    client = SnowballClient(conf, backoff=0.01)
    return FundSync(
        client,
        [*sources, ManualFunds(list(manual))],
        list(ignore),
        calendar=calendar,
        clock=lambda: emu.clock(),
    )


async def run(sync: FundSync) -> tuple[TaskResult, Published]:
    out = Published()
    result = await sync.run("fund-test-1", out)
    return result, out


async def test_prices_every_fund_and_publishes_ticks_and_holdings(
    emu: XueqiuEmulator, xq_conf: XueqiuConf
) -> None:
    emu.set_price("SH510300", 4.012)
    result, out = await run(make_sync(emu, xq_conf))
    assert result.status == "success", result
    assert (result.records, result.total, result.source, result.task) == (4, 4, "xueqiu", "fund")
    assert result.assets == ["110011", "161725", "SH510300", "SZ159915"]
    # Quotes come on Friday 10:30, NAVs are Thursday's: the result says so.
    assert result.data_as_of == "2026-11-19..2026-11-20"
    assert "data from 2026-11-19 to 2026-11-20" in result.message
    ticks, holdings = out.of(PriceTick), out.of(Holding)
    assert set(ticks) == set(holdings) == {"SH510300", "SZ159915", "110011", "161725"}
    assert all(
        t.currency == "CNY" and t.asset_type == "fund" and t.source == "xueqiu" for t in ticks.values()
    )
    etf = holdings["SH510300"]
    assert (etf.price, etf.quantity, etf.avg_cost, etf.cost_source) == (4.012, 1000, 3.5, "manual")
    assert etf.name == "沪深300ETF华泰柏瑞" and etf.price_date == "2026-11-20" and etf.run_id == "fund-test-1"
    assert holdings["SZ159915"].avg_cost is None and holdings["SZ159915"].cost_source == ""
    nav = holdings["110011"]
    assert nav.name == "易方达优质精选混合(QDII)" and nav.price_date == "2026-11-19"
    assert ticks["110011"].ts == int(datetime(2026, 11, 19, 15, 0, tzinfo=SHANGHAI).timestamp() * 1000)
    # All exchange-traded funds were priced by one batched quote request.
    assert emu.switch.count("/v5/stock/realtime/quotec.json") == 1


async def test_expired_cookie_fails_the_task_with_the_fix(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    emu.expire_cookie()
    result, out = await run(make_sync(emu, xq_conf))
    assert result.status == "failed"
    assert result.message == "Xueqiu cookie expired — update asset_sync.xueqiu.cookies" == COOKIE_EXPIRED
    assert "Traceback" not in result.message and result.records == 0
    assert out == []  # nothing half-published


async def test_unknown_fund_code_fails_only_that_fund(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    manual = [
        *HOLDINGS,
        ManualFund(symbol="999999", quantity=10),
        ManualFund(symbol="SH599999", quantity=1),
    ]
    result, out = await run(make_sync(emu, xq_conf, manual))
    assert result.status == "partial"
    assert (result.records, result.total) == (4, 6)
    reasons = {e.asset: e.reason for e in result.errors}
    assert set(reasons) == {"999999", "SH599999"}
    assert "Danjuan does not know or sell fund 999999" in reasons["999999"]
    assert "Xueqiu does not know the symbol SH599999" in reasons["SH599999"]
    assert set(out.of(Holding)) == {"SH510300", "SZ159915", "110011", "161725"}
    # Failed funds stay in the discovered set, so sinks keep their last known rows.
    assert result.assets is not None and "999999" in result.assets


@pytest.mark.parametrize(
    ("fault", "path", "failed", "words"),
    [
        ("5xx", "/v5/stock/realtime/quotec.json", {"SH510300", "SZ159915"}, ["quotec", "HTTP 503"]),
        ("timeout", "/v5/stock/realtime/quotec.json", {"SH510300", "SZ159915"}, ["quotec", "timed out"]),
        ("html", "/djapi/fund/110011", {"110011"}, ["/djapi/fund/110011", "HTML page"]),
        ("garbage", "/djapi/fund/161725", {"161725"}, ["/djapi/fund/161725", "not valid JSON"]),
        ("truncated", "/djapi/fund/110011", {"110011"}, ["/djapi/fund/110011", "not valid JSON"]),
        ("timeout", "/djapi/fund/161725", {"161725"}, ["/djapi/fund/161725", "timed out"]),
    ],
)
async def test_a_failing_endpoint_fails_its_funds_and_names_it(
    emu: XueqiuEmulator, xq_conf: XueqiuConf, fault: str, path: str, failed: set[str], words: list[str]
) -> None:
    emu.switch.add(Fault(fault, path, delay=0.8))  # type: ignore[arg-type]
    result, out = await run(make_sync(emu, xq_conf))
    assert result.status == "partial"
    reasons = {e.asset: e.reason for e in result.errors if e.kind == "failed"}
    assert set(reasons) == failed
    for asset, reason in reasons.items():
        assert all(w in reason for w in words), reason
        assert asset not in out.of(Holding)
    assert set(out.of(Holding)) == {"SH510300", "SZ159915", "110011", "161725"} - failed


async def test_everything_down_fails_the_task(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    emu.switch.add(Fault("5xx", "/"))
    result, out = await run(make_sync(emu, xq_conf))
    assert result.status == "failed" and result.records == 0 and len(result.errors) == 4
    assert out == []


async def test_ignore_rules_and_bad_codes(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    manual = [*HOLDINGS, ManualFund(symbol="BTC", quantity=1)]
    result, out = await run(make_sync(emu, xq_conf, manual, ignore=["sz*", "1617*"]))
    assert set(out.of(Holding)) == {"SH510300", "110011"}
    assert "ignored SZ159915, 161725" in result.message
    assert result.status == "partial"
    (bad,) = result.errors
    assert bad.asset == "BTC" and "not a fund code" in bad.reason


async def test_manual_entries_override_another_source(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    class Sheet:
        name = "Feishu 持仓 table"

        async def positions(self) -> list[FundPosition]:
            return [
                FundPosition("SH510300", 800, 3.2, "沪深300ETF", "feishu"),
                FundPosition("005827", 1200, 2.0, "", "feishu"),
            ]

    manual = [ManualFund(symbol="SH510300", avg_cost=3.6)]
    result, out = await run(make_sync(emu, xq_conf, manual, sources=[Sheet()]))
    assert result.status == "success"
    h = out.of(Holding)
    assert (h["SH510300"].quantity, h["SH510300"].avg_cost, h["SH510300"].cost_source) == (800, 3.6, "manual")
    assert (h["005827"].quantity, h["005827"].avg_cost, h["005827"].cost_source) == (1200, 2.0, "feishu")


async def test_a_source_failing_makes_the_run_partial_and_the_set_incomplete(
    emu: XueqiuEmulator, xq_conf: XueqiuConf
) -> None:
    result, out = await run(make_sync(emu, xq_conf, sources=[BrokenSource()]))
    assert result.status == "partial"
    assert result.assets is None  # sinks must not drop funds they did not hear about
    assert any("Feishu unreachable" in e.reason for e in result.errors)
    assert len(out.of(Holding)) == 4


async def test_fund_without_quantity_is_priced_but_no_holding(
    emu: XueqiuEmulator, xq_conf: XueqiuConf
) -> None:
    result, out = await run(make_sync(emu, xq_conf, [ManualFund(symbol="110011")]))
    assert result.status == "success"
    assert "110011" in out.of(PriceTick) and out.of(Holding) == {}
    assert result.errors[0].kind == "skipped"


async def test_run_on_a_non_trading_day_says_when_the_data_is_from(
    emu: XueqiuEmulator, xq_conf: XueqiuConf
) -> None:
    emu.clock = lambda: datetime(2026, 11, 22, 9, 0, tzinfo=SHANGHAI)  # Sunday
    result, _ = await run(make_sync(emu, xq_conf, calendar=TradingCalendar()))
    assert result.status == "success"
    assert "2026-11-22 is not a Shanghai trading day" in result.message
    assert "data from 2026-11-20" in result.message  # Friday's close and Friday's NAV


async def test_no_funds_is_a_successful_empty_run(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    result, out = await run(make_sync(emu, xq_conf, []))
    assert (result.status, result.records, result.total, result.assets) == ("success", 0, 0, [])
    assert result.message == "no funds to sync" and out == []
    assert emu.switch.count() == 0  # no request for nothing

"""The Xueqiu/Danjuan emulator, driven by the real pysnowball (and plain requests for raw HTTP shapes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from urllib.parse import urlsplit

import pysnowball
import pytest
import requests
from assetsync.config import XueqiuConf
from assetsync.secrets import Secret
from assetsync_collector_fund.snowball import HttpStatusError, configure
from assetsync_emulators.common import Fault, serve_in_thread
from assetsync_emulators.xueqiu import SHANGHAI, XueqiuEmulator

FRIDAY_MORNING = datetime(2026, 11, 20, 10, 30, 7, tzinfo=SHANGHAI)
SUNDAY = datetime(2026, 11, 22, 12, 0, tzinfo=SHANGHAI)

# Fields of a quotec item as Xueqiu returns them (pysnowball README sample).
QUOTEC_FIELDS = {
    "symbol", "current", "percent", "chg", "timestamp", "volume", "amount", "market_capital",
    "float_market_capital", "turnover_rate", "amplitude", "open", "last_close", "high", "low",
    "avg_price", "trade_volume", "side", "is_trade", "level", "trade_session", "trade_type",
    "current_year_percent",
}  # fmt: skip


@pytest.fixture
def emu() -> XueqiuEmulator:
    return XueqiuEmulator.with_defaults(clock=lambda: FRIDAY_MORNING)


@pytest.fixture
def url(emu: XueqiuEmulator) -> Iterator[str]:
    with serve_in_thread(emu.app) as base:
        configure(
            XueqiuConf(cookies=Secret(emu.cookie()), base_url=base, fund_base_url=base, timeout_seconds=5)
        )
        yield base


def test_quotec_batches_symbols_and_leaves_out_unknown_ones(emu: XueqiuEmulator, url: str) -> None:
    body = pysnowball.quotec("SH510300,SZ159915,SH999999")
    assert body["error_code"] == 0
    items = {item["symbol"]: item for item in body["data"]}
    assert set(items) == {"SH510300", "SZ159915"}
    for item in items.values():
        assert set(item) >= QUOTEC_FIELDS
        assert item["current"] > 0 and item["is_trade"] is True
        assert item["low"] <= item["current"] <= item["high"]
        assert item["chg"] == pytest.approx(item["current"] - item["last_close"], abs=0.0015)
    # The last trade is "now" (to the 3 s tick) during the morning session.
    assert items["SH510300"]["timestamp"] == int(FRIDAY_MORNING.replace(second=6).timestamp() * 1000)
    assert emu.switch.count("/v5/stock/realtime/quotec.json") == 1


def test_quotec_is_public_even_with_an_expired_cookie(emu: XueqiuEmulator, url: str) -> None:
    emu.expire_cookie()
    body = pysnowball.quotec("SH510300")
    assert [i["symbol"] for i in body["data"]] == ["SH510300"]


def test_quotes_out_of_hours_are_the_last_close(emu: XueqiuEmulator, url: str) -> None:
    emu.clock = lambda: SUNDAY
    item = pysnowball.quotec("SZ159915")["data"][0]
    friday_close = datetime(2026, 11, 20, 15, 0, tzinfo=SHANGHAI)
    assert item["timestamp"] == int(friday_close.timestamp() * 1000)
    assert item["is_trade"] is False


def test_quote_detail_gives_the_name(url: str) -> None:
    body = pysnowball.quote_detail("SH510300")
    assert body["error_code"] == 0
    quote = body["data"]["quote"]
    assert quote["name"] == "沪深300ETF华泰柏瑞"
    assert quote["code"] == "510300" and quote["currency"] == "CNY"
    assert body["data"]["market"]["region"] == "CN"


def test_quote_detail_of_an_unknown_symbol_has_no_quote(url: str) -> None:
    body = pysnowball.quote_detail("SH999999")
    assert body["error_code"] == 0
    assert body["data"]["quote"] is None


def test_expired_cookie_gets_xueqiu_error_400016(emu: XueqiuEmulator, url: str) -> None:
    ok = requests.get(
        f"{url}/v5/stock/quote.json?extend=detail&symbol=SH510300",
        headers={"Cookie": emu.cookie()},
        timeout=5,
    )
    assert ok.status_code == 200
    emu.expire_cookie()
    resp = requests.get(
        f"{url}/v5/stock/quote.json?extend=detail&symbol=SH510300",
        headers={"Cookie": emu.cookie()},
        timeout=5,
    )
    assert resp.status_code == 400
    assert resp.json() == {
        "error_description": "遇到错误，请刷新页面或者重新登录帐号后再试",
        "error_uri": "/v5/stock/quote.json",
        "error_data": None,
        "error_code": "400016",
    }
    # Through pysnowball (as the collector calls it) the same answer surfaces with its status.
    with pytest.raises(HttpStatusError) as err:
        pysnowball.quote_detail("SH510300")
    assert err.value.status == 400 and b"400016" in err.value.body
    # A renewed cookie works again.
    configure(
        XueqiuConf(cookies=Secret(emu.renew_cookie()), base_url=url, fund_base_url=url, timeout_seconds=5)
    )
    assert pysnowball.quote_detail("SH510300")["data"]["quote"]["symbol"] == "SH510300"


def test_missing_cookie_is_rejected_like_an_expired_one(url: str) -> None:
    resp = requests.get(f"{url}/v5/stock/quote.json?extend=detail&symbol=SH510300", timeout=5)
    assert resp.status_code == 400 and resp.json()["error_code"] == "400016"


def test_danjuan_fund_info_derived_and_history_agree(url: str) -> None:
    info = pysnowball.fund_info("110011")
    derived = pysnowball.fund_derived("110011")
    history = pysnowball.fund_nav_history("110011", 1, 5)
    assert info["result_code"] == derived["result_code"] == history["result_code"] == 0
    assert info["data"]["fd_name"] == "易方达优质精选混合(QDII)"
    latest = history["data"]["items"][0]
    # On Friday morning the newest NAV is Thursday's (NAVs are published in the evening).
    assert latest["date"] == "2026-11-19"
    assert info["data"]["fund_derived"]["end_date"] == derived["data"]["end_date"] == "2026-11-19"
    assert info["data"]["fund_derived"]["unit_nav"] == derived["data"]["unit_nav"] == latest["nav"]
    dates = [i["date"] for i in history["data"]["items"]]
    assert dates == sorted(dates, reverse=True) and len(dates) == 5
    assert all(date.fromisoformat(d).weekday() < 5 for d in dates)
    assert history["data"]["total_pages"] == -(-history["data"]["total_items"] // 5)
    page2 = pysnowball.fund_nav_history("110011", 2, 5)["data"]["items"]
    assert page2[0]["date"] < dates[-1]


def test_unknown_fund_code_answers_danjuan_business_error(url: str) -> None:
    body = pysnowball.fund_info("999999")
    assert body["result_code"] == 600001
    assert "999999" in body["message"]
    assert "data" not in body


def test_pinned_values_are_served(emu: XueqiuEmulator, url: str) -> None:
    emu.set_price("SH510300", 4.321)
    emu.set_nav("161725", date(2026, 11, 19), 0.9001)
    assert pysnowball.quotec("SH510300")["data"][0]["current"] == 4.321
    assert pysnowball.fund_nav_history("161725", 1, 1)["data"]["items"][0]["nav"] == "0.9001"


def test_switchable_faults_apply_per_path(emu: XueqiuEmulator, url: str) -> None:
    emu.switch.add(Fault("5xx", "/djapi/fund/110011", times=1))
    with pytest.raises(HttpStatusError) as err:
        pysnowball.fund_info("110011")
    assert err.value.status == 503
    assert pysnowball.fund_info("110011")["result_code"] == 0  # the fault was used up
    emu.switch.add(Fault("html", "/v5/stock/realtime/quotec.json", times=1))
    with pytest.raises(ValueError):
        pysnowball.quotec("SH510300")


def test_requests_carry_the_configured_host(emu: XueqiuEmulator, url: str) -> None:
    pysnowball.quotec("SH510300")
    pysnowball.quote_detail("SH510300")
    hosts = {r.host for r in emu.switch.requests}
    assert hosts == {urlsplit(url).netloc}

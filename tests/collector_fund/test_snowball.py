"""The pysnowball adapter: URL rewriting, Host header, timeouts off the loop, and error mapping."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import msgspec
import pytest
from assetsync.config import XueqiuConf
from assetsync.metrics import Metrics
from assetsync_collector_fund.snowball import (
    COOKIE_EXPIRED,
    CookieExpired,
    FetchError,
    SnowballClient,
    UnknownFund,
    configure,
)
from assetsync_emulators.common import Fault
from assetsync_emulators.xueqiu import XueqiuEmulator
from pysnowball import api_ref, utls


def test_configure_rewrites_from_the_originals_each_time(xq_conf: XueqiuConf) -> None:
    other = msgspec.structs.replace(
        xq_conf, base_url="http://10.9.8.7:81/", fund_base_url="http://10.9.8.7:82"
    )
    configure(other)
    configure(other)  # idempotent: no double prefixing
    assert api_ref.realtime_quote == "http://10.9.8.7:81/v5/stock/realtime/quotec.json?symbol="
    assert api_ref.fund_info == "http://10.9.8.7:82/djapi/fund/%s"
    assert utls.fetch.__defaults__ == ("10.9.8.7:81",)
    configure(xq_conf)  # and back, from the pristine constants
    assert api_ref.realtime_quote == f"{xq_conf.base_url}/v5/stock/realtime/quotec.json?symbol="
    assert api_ref.fund_nav_history.startswith(f"{xq_conf.fund_base_url}/djapi/fund/nav/history/")
    # Hosts that are neither Xueqiu's nor Danjuan's are left alone.
    assert api_ref.convertible_bond.startswith("https://datacenter-web.eastmoney.com/")


async def test_quotes_names_and_navs(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    metrics = Metrics()
    client = SnowballClient(xq_conf, metrics=metrics)
    quotes = await client.quotes(["SH510300", "SZ159915", "SH999999"])
    assert set(quotes) == {"SH510300", "SZ159915"}
    assert emu.switch.count("/v5/stock/realtime/quotec.json") == 1
    assert await client.quote_name("SZ159915") == "创业板ETF易方达"
    assert await client.quote_name("SH999999") is None
    nav = await client.fund_nav("161725")
    assert nav.name == "招商中证白酒指数(LOF)A" and nav.nav > 0 and nav.nav_date.isoformat() == "2026-11-19"
    with pytest.raises(UnknownFund) as unknown:
        await client.fund_nav("999999")
    assert "999999" in unknown.value.detail
    assert (
        metrics.value("assetsync_external_api_calls_total", {"service": "xueqiu", "endpoint": "quotec"}) == 1
    )
    assert (
        metrics.value("assetsync_external_api_calls_total", {"service": "danjuan", "endpoint": "fund_info"})
        == 2
    )
    # Every request named the host it was sent to.
    assert {r.host for r in emu.switch.requests} == {urlsplit(xq_conf.base_url).netloc}


async def test_expired_cookie_is_its_own_error(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    emu.expire_cookie()
    client = SnowballClient(xq_conf)
    with pytest.raises(CookieExpired) as err:
        await client.quote_name("SH510300")
    assert str(err.value) == COOKIE_EXPIRED == "Xueqiu cookie expired — update asset_sync.xueqiu.cookies"
    assert emu.switch.count("/v5/stock/quote.json") == 1  # not retried


@pytest.mark.parametrize(
    ("kind", "expect", "attempts"),
    [
        ("5xx", "HTTP 503", 2),
        ("html", "HTML page", 2),
        ("garbage", "not valid JSON", 1),
        ("truncated", "not valid JSON", 1),
        ("drop", "HTTP 500", 2),
    ],
)
async def test_bad_answers_name_the_endpoint(
    emu: XueqiuEmulator, xq_conf: XueqiuConf, kind: str, expect: str, attempts: int
) -> None:
    emu.switch.add(Fault(kind, "/djapi/fund/110011"))  # type: ignore[arg-type]
    client = SnowballClient(xq_conf, backoff=0.01)
    with pytest.raises(FetchError) as err:
        await client.fund_nav("110011")
    assert "Danjuan fund info (/djapi/fund/110011)" in str(err.value)
    assert expect in str(err.value)
    assert emu.switch.count("/djapi/fund/110011") == attempts  # transient ones retried once


async def test_a_stalled_server_times_out_without_blocking_the_loop(
    emu: XueqiuEmulator, xq_conf: XueqiuConf
) -> None:
    # The server stalls until released, the deadline is far off: only requests' read timeout (0.5 s)
    # can end the call — the server's late 504 or the deadline would say something else.
    stall = Fault("timeout", "/v5/stock/realtime/quotec.json", delay=60)
    emu.switch.add(stall)
    client = SnowballClient(xq_conf, retries=0, deadline=60)
    call = asyncio.create_task(client.quotes(["SH510300"]))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not call.done():
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(ticker())
    try:
        with pytest.raises(FetchError) as err:
            await call
    finally:
        stall.released.set()
    await beat
    assert "Xueqiu quotec (/v5/stock/realtime/quotec.json)" in str(err.value)
    assert "timed out" in str(err.value) and "within" not in str(err.value)
    # A call blocking the loop would finish in its first step, before the ticker ever ran.
    assert ticks >= 1


async def test_the_deadline_bounds_a_call_even_when_requests_would_wait_longer(
    emu: XueqiuEmulator, xq_conf: XueqiuConf
) -> None:
    slow = msgspec.structs.replace(xq_conf, timeout_seconds=30.0)
    stall = Fault("timeout", "/djapi/fund/005827", delay=60)
    emu.switch.add(stall)
    client = SnowballClient(slow, deadline=0.3, retries=0)
    try:
        with pytest.raises(FetchError) as err:
            await client.fund_nav("005827")
    finally:
        stall.released.set()  # the worker thread ends with the server's late answer
    # Not requests' 30 s timeout, not the server's answer: the 0.3 s deadline ended the call.
    assert "no answer within 0.3s" in str(err.value)


async def test_transient_failure_then_success_is_retried(emu: XueqiuEmulator, xq_conf: XueqiuConf) -> None:
    emu.switch.add(Fault("5xx", "/v5/stock/realtime/quotec.json", times=1))
    client = SnowballClient(xq_conf, backoff=0.01)
    quotes = await client.quotes(["SH510300"])
    assert "SH510300" in quotes
    assert emu.switch.count("/v5/stock/realtime/quotec.json") == 2


async def test_unreachable_server_is_a_clear_error(xq_conf: XueqiuConf) -> None:
    from assetsync_emulators.common import free_port

    gone = msgspec.structs.replace(xq_conf, base_url=f"http://127.0.0.1:{free_port()}")
    client = SnowballClient(gone, retries=0)
    with pytest.raises(FetchError) as err:
        await client.quotes(["SH510300"])
    assert "cannot connect" in str(err.value) and "quotec" in str(err.value)


def test_cookie_header_accepts_a_bare_token() -> None:
    from assetsync_collector_fund.snowball import cookie_header

    assert cookie_header("xq_a_token=abc; u=1;") == "xq_a_token=abc; u=1;"
    assert cookie_header(" abc123 ") == "xq_a_token=abc123;"

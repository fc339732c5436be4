"""The OKX v5 emulator against raw HTTP (envelope, signatures, limits) and real, unmodified ccxt."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from assetsync.config import Settings
from assetsync_collector_okx.exchange import (
    OKX_REST,
    AssetsyncOkx,
    InvalidResponse,
    ccxt,
    make_exchange,
    rewrite_urls,
)
from assetsync_emulators.common import Fault, serve
from assetsync_emulators.okx import (
    DEMO_API_KEY,
    DEMO_API_SECRET,
    DEMO_PASSPHRASE,
    OkxEmulator,
    create_app,
    signed_headers,
)


@pytest.fixture
async def emu_url() -> AsyncIterator[tuple[OkxEmulator, str]]:
    emu = OkxEmulator(seed=3)
    async with serve(create_app(emu)) as url:
        yield emu, url


def _settings(make_settings: Any, url: str, **okx: Any) -> Settings:
    conf = {
        "api_key": DEMO_API_KEY,
        "api_secret": DEMO_API_SECRET,
        "password": DEMO_PASSPHRASE,
        "base_url": url,
        "timeout_seconds": 5,
    }
    conf.update(okx)
    settings: Settings = make_settings({"asset_sync": {"okx": conf}})
    return settings


@pytest.fixture
async def exchange(emu_url: tuple[OkxEmulator, str], make_settings: Any) -> AsyncIterator[AssetsyncOkx]:
    ex = make_exchange(_settings(make_settings, emu_url[1]))
    try:
        yield ex
    finally:
        await ex.close()


def test_rewrite_urls_replaces_the_rest_root() -> None:
    out = rewrite_urls(
        {"rest": "https://{hostname}", "other": f"{OKX_REST}/x", "ws": "wss://ws.okx.com"}, "http://h:1/"
    )
    assert out == {"rest": "http://h:1", "other": "http://h:1/x", "ws": "wss://ws.okx.com"}


async def test_public_answers_use_okx_envelope(emu_url: tuple[OkxEmulator, str]) -> None:
    _, url = emu_url
    async with httpx.AsyncClient(base_url=url) as http:
        t = (await http.get("/api/v5/public/time")).json()
        assert (
            t["code"] == "0" and t["msg"] == "" and abs(int(t["data"][0]["ts"]) - time.time() * 1000) < 5000
        )
        spot = (await http.get("/api/v5/public/instruments", params={"instType": "SPOT"})).json()["data"]
        assert {i["instId"] for i in spot} >= {"BTC-USDT", "ETH-USDT", "OKB-USDT"}
        assert all(i["instType"] == "SPOT" and i["state"] == "live" for i in spot)
        tick = (await http.get("/api/v5/market/tickers", params={"instType": "SPOT"})).json()["data"]
        btc = next(r for r in tick if r["instId"] == "BTC-USDT")
        assert float(btc["last"]) > 1000 and float(btc["volCcy24h"]) > 0 and btc["ts"].isdigit()
        missing = await http.get("/api/v5/market/tickers")
        assert missing.status_code == 400 and missing.json()["code"] == "50014"
        liq = (
            await http.get(
                "/api/v5/public/liquidation-orders", params={"instType": "SWAP", "uly": "BTC-USDT"}
            )
        ).json()["data"]
        assert liq[0]["instId"] == "BTC-USDT-SWAP" and 0 < len(liq[0]["details"]) <= 100
        stamps = [int(d["ts"]) for d in liq[0]["details"]]
        assert stamps == sorted(stamps, reverse=True)


async def test_signature_rejections_carry_okx_codes(emu_url: tuple[OkxEmulator, str]) -> None:
    _, url = emu_url
    path = "/api/v5/account/balance"
    async with httpx.AsyncClient(base_url=url) as http:

        async def code(headers: dict[str, str], request_path: str = path) -> tuple[int, str]:
            r = await http.get(request_path, headers=headers)
            return r.status_code, r.json()["code"]

        assert await code(signed_headers("GET", path)) == (200, "0")
        assert await code({}) == (401, "50103")
        assert await code(signed_headers("GET", path, key="0d5c7e3a-0000-0000-0000-000000000000")) == (
            401,
            "50111",
        )
        assert await code(signed_headers("GET", path, passphrase="wrong")) == (401, "50105")
        assert await code(signed_headers("GET", path, secret="not-the-secret")) == (401, "50113")
        assert await code(signed_headers("GET", path, at=time.time() - 45)) == (401, "50102")
        # The query is part of what is signed: signing the bare path for a request with a query fails.
        assert await code(signed_headers("GET", path), f"{path}?ccy=BTC") == (401, "50113")
        ok = await http.get(f"{path}?ccy=BTC", headers=signed_headers("GET", f"{path}?ccy=BTC"))
        assert [d["ccy"] for d in ok.json()["data"][0]["details"]] == ["BTC"]


async def test_rate_limit_per_endpoint_answers_429_50011(emu_url: tuple[OkxEmulator, str]) -> None:
    _, url = emu_url
    path = "/api/v5/account/config"  # 5 requests per 2 s
    async with httpx.AsyncClient(base_url=url) as http:
        got = [await http.get(path, headers=signed_headers("GET", path)) for _ in range(6)]
        assert [r.status_code for r in got] == [200] * 5 + [429]
        assert got[-1].json() == {"code": "50011", "msg": "Too Many Requests", "data": []}
        # Other endpoints have their own budget.
        other = "/api/v5/account/balance"
        assert (await http.get(other, headers=signed_headers("GET", other))).status_code == 200


async def test_ccxt_round_trip_loads_spot_only(
    exchange: AssetsyncOkx, emu_url: tuple[OkxEmulator, str]
) -> None:
    emu, _ = emu_url
    markets = await exchange.load_markets()
    assert "BTC/USDT" in markets and all(m["spot"] for m in markets.values())
    loads = [r.query for r in emu.switch.requests if r.path == "/api/v5/public/instruments"]
    assert loads == ["instType=SPOT"]  # no SWAP/FUTURES/OPTION loads, no currencies call
    assert emu.switch.count("/api/v5/asset/") == 0
    balance = await exchange.fetch_balance()
    assert balance["total"]["BTC"] == pytest.approx(emu.balances["BTC"])
    assert set(balance["total"]) >= {"BTC", "ETH", "SOL", "OKB", "USDT"}
    trades = await exchange.fetch_my_trades()
    assert len(trades) == len(emu.fills) and {t["symbol"] for t in trades} >= {"BTC/USDT", "ETH/USDT"}
    buy = next(t for t in trades if t["side"] == "buy")
    assert buy["fee"]["currency"] == buy["symbol"].split("/")[0] and buy["fee"]["cost"] > 0
    orders = await exchange.fetch_open_orders()
    assert len(orders) == 3 and all(o["status"] == "open" for o in orders)
    fee = await exchange.fetch_trading_fee("BTC/USDT")
    assert fee["maker"] == pytest.approx(0.0008) and fee["taker"] == pytest.approx(0.001)
    positions = (await exchange.privateGetAccountPositions())["data"]
    assert {p["instId"] for p in positions} == {"BTC-USDT-SWAP", "ETH-USDT-SWAP"}


async def test_ccxt_maps_okx_auth_codes(emu_url: tuple[OkxEmulator, str], make_settings: Any) -> None:
    _, url = emu_url
    ex = make_exchange(_settings(make_settings, url, password="wrong-passphrase"))
    try:
        with pytest.raises(ccxt.AuthenticationError, match="50105"):
            await ex.fetch_balance()
    finally:
        await ex.close()


async def test_liquidations_evolve_with_time(make_settings: Any) -> None:
    now = [time.time()]
    emu = OkxEmulator(seed=5, clock=lambda: now[0])
    params = {"instType": "SWAP", "instFamily": "ETH-USDT", "limit": "100"}
    first = emu.liquidations(params, emu.now_ms())[0]["details"]
    now[0] += 600
    later = emu.liquidations(params, emu.now_ms())[0]["details"]
    assert int(later[0]["ts"]) > int(first[0]["ts"])
    # Paging back with `after` gives strictly older records.
    older = emu.liquidations({**params, "after": first[-1]["ts"]}, emu.now_ms())[0]["details"]
    assert older and all(int(d["ts"]) < int(first[-1]["ts"]) for d in older)


async def test_html_answer_is_an_invalid_response(
    exchange: AssetsyncOkx, emu_url: tuple[OkxEmulator, str]
) -> None:
    emu, _ = emu_url
    emu.switch.add(Fault("html", path_prefix="/api/v5/market/tickers", times=1))
    await exchange.load_markets()
    with pytest.raises(InvalidResponse, match="HTML page"):
        await exchange.fetch_tickers()


async def test_trade_moves_balance_and_adds_a_fill(
    exchange: AssetsyncOkx, emu_url: tuple[OkxEmulator, str]
) -> None:
    emu, _ = emu_url
    before = (await exchange.fetch_balance())["total"]["BTC"]
    fill = emu.trade("BTC-USDT", "buy", 0.01)
    after = (await exchange.fetch_balance())["total"]["BTC"]
    assert 0.01 * 0.999 - 1e-9 <= after - before <= 0.01 * 0.9992 + 1e-9  # less the fee, in BTC
    ids = {t["id"] for t in await exchange.fetch_my_trades("BTC/USDT")}
    assert str(fill.trade_id) in ids


async def test_recent_fills_cover_three_days_history_three_months(emu_url: tuple[OkxEmulator, str]) -> None:
    emu, url = emu_url
    fill = emu.trade("SOL-USDT", "sell", 1.0)
    async with httpx.AsyncClient(base_url=url) as http:

        async def ids(path: str) -> list[str]:
            r = await http.get(path, headers=signed_headers("GET", path))
            return [f["tradeId"] for f in r.json()["data"]]

        recent = await ids("/api/v5/trade/fills?instType=SPOT")
        history = await ids("/api/v5/trade/fills-history?instType=SPOT")
        assert recent[0] == history[0] == str(fill.trade_id)  # newest first
        assert len(history) == len(emu.fills) > len(recent)
        missing = await http.get(
            "/api/v5/trade/fills-history", headers=signed_headers("GET", "/api/v5/trade/fills-history")
        )
        assert missing.status_code == 400 and missing.json()["code"] == "50014"  # instType is required

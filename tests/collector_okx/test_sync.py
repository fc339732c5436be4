"""The okx task against the emulator through real ccxt: holdings, trades, cost basis, failures."""

from __future__ import annotations

import pytest
from assetsync.costbasis import ValuedFill, average_basis
from assetsync.events import Holding, PriceTick, TaskResult, Trade
from assetsync_emulators.common import Fault
from assetsync_emulators.okx import DEMO_API_SECRET, DEMO_PASSPHRASE

from tests.collector_okx.conftest import Harness


def expected_cost(h: Harness, asset: str) -> float | None:
    """The average cost the emulator's own fills give, computed here from its rows (fees in base on buys)."""
    fills = []
    for f in h.emu.fills:
        if f.inst_id != f"{asset}-USDT":
            continue
        fee = -f.fee
        fills.append(
            ValuedFill(
                ts=f.ts,
                trade_id=f.trade_id,
                symbol=f"{asset}/USDT",
                side="buy" if f.side == "buy" else "sell",
                qty=f.sz,
                quote_usdt=f.sz * f.px,
                fee_qty=fee,
                fee_asset=f.fee_ccy,
                fee_usdt=0.0 if f.fee_ccy == asset else fee,
                fee_in_base=f.fee_ccy == asset,
            )
        )
    return average_basis(fills).avg_cost


async def test_balances_become_okx_holdings_with_cost_from_fills(harness: Harness) -> None:
    sync = harness.make()
    result = await sync.run("r1", harness.publish)
    assert isinstance(result, TaskResult)
    assert result.status == "success", result.message
    assert result.task == "okx" and result.source == "okx"
    assert result.assets == ["BTC", "ETH", "OKB", "SOL", "USDT"]
    holdings = {h.asset: h for h in harness.of(Holding)}
    assert set(holdings) == set(result.assets)
    assert all(h.source == "okx" and h.currency == "USDT" for h in holdings.values())
    btc = holdings["BTC"]
    assert btc.quantity == pytest.approx(harness.emu.balances["BTC"])
    assert btc.price == pytest.approx(harness.emu.price("BTC-USDT"), rel=0.01)
    for asset in ("BTC", "ETH", "SOL", "OKB"):
        assert holdings[asset].avg_cost == pytest.approx(expected_cost(harness, asset), rel=1e-9), asset
        assert holdings[asset].cost_source == "trades"
    assert holdings["USDT"].price == 1.0 and holdings["USDT"].avg_cost is None
    trades = harness.of(Trade)
    assert len(trades) == len(harness.emu.fills) and all(t.source == "okx" for t in trades)
    assert {t.symbol for t in trades} == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "OKB/USDT"}
    ticks = {t.asset for t in harness.of(PriceTick)}
    assert ticks == set(result.assets) and all(t.source == "okx" for t in harness.of(PriceTick))


async def test_next_run_publishes_only_new_fills(harness: Harness) -> None:
    sync = harness.make()
    await sync.run("r1", harness.publish)
    harness.events.clear()
    await sync.run("r2", harness.publish)
    assert harness.of(Trade) == []
    fill = harness.emu.trade("ETH-USDT", "sell", 0.5)
    harness.events.clear()
    result = await sync.run("r3", harness.publish)
    assert [t.trade_id for t in harness.of(Trade)] == [str(fill.trade_id)]
    eth = next(h for h in harness.of(Holding) if h.asset == "ETH")
    assert eth.quantity == pytest.approx(harness.emu.balances["ETH"])
    assert result.status == "success"
    # A sale keeps the average cost per unit (CONTRACTS §6 average method).
    assert eth.avg_cost == pytest.approx(expected_cost(harness, "ETH"), rel=1e-9)


async def test_wrong_passphrase_fails_naming_the_key_without_the_secret(harness: Harness) -> None:
    sync = harness.make(password="not-the-passphrase")
    result = await sync.run("r1", harness.publish)
    assert result.status == "failed"
    assert "asset_sync.okx.password" in result.message and "50105" in result.message
    for secret in ("not-the-passphrase", DEMO_PASSPHRASE, DEMO_API_SECRET):
        assert secret not in result.message
    assert harness.events == []  # nothing published from a refused run
    assert harness.emu.switch.count("/api/v5/account/balance") == 1  # no retries of a refusal


async def test_html_answer_gives_a_failed_run_and_no_made_up_holding(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("html", path_prefix="/api/v5/market/tickers"))
    result = await sync.run("r1", harness.publish)
    assert result.status == "failed" and "HTML page" in result.message
    assert "/api/v5/market/tickers" in result.message
    assert harness.of(Holding) == [] and harness.of(PriceTick) == []


async def test_429_is_retried_after_the_servers_retry_after(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("429", path_prefix="/api/v5/account/balance", times=1, retry_after=1))
    result = await sync.run("r1", harness.publish)
    assert result.status == "success", result.message
    calls = [r for r in harness.emu.switch.requests if r.path == "/api/v5/account/balance"]
    assert [r.status for r in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.95  # waited Retry-After: 1


async def test_unpriced_asset_is_named_not_priced_zero(harness: Harness) -> None:
    harness.emu.balances["ETHW"] = 3.0  # no OKX market prices it
    sync = harness.make()
    result = await sync.run("r1", harness.publish)
    ethw = next(h for h in harness.of(Holding) if h.asset == "ETHW")
    assert ethw.price is None and ethw.quantity == 3.0
    assert [(e.asset, e.kind) for e in result.errors] == [("ETHW", "unpriced")]
    assert result.status == "success" and "1 unpriced: ETHW" in result.message

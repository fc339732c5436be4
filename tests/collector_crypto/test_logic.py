"""Pure logic of the crypto collector: ignore globs, discovery, pricing routes, cost basis (§6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from assetsync.config import CryptoAssets, ManualAsset
from assetsync.ignore import ignored
from assetsync_collector_crypto.costbasis import ValuedFill, average_basis, avg_cost, fifo_basis
from assetsync_collector_crypto.pricing import Route, price_of, route_for, ticker_symbols, trade_markets
from assetsync_collector_crypto.state import CryptoState, StateFile
from assetsync_collector_crypto.sync import discover, orders_from_fills


@pytest.mark.parametrize(
    ("code", "rules", "expected"),
    [
        ("USDT", ["USDT"], True),
        ("usdt", ["USDT"], True),
        ("USDTX", ["USDT"], False),
        ("BNB", ["BNB*"], True),
        ("BNBUSDT", ["bnb*"], True),
        ("ABNB", ["BNB*"], False),
        ("BTCUSDT", ["*USDT"], True),
        ("USDTBTC", ["*USDT"], False),
        ("BTCDOWN", ["*DOWN*"], True),
        ("ETHDOWNX", ["*down*"], True),
        ("ETH", ["USDT", "BNB", "*DOWN*", "*UP*"], False),
        ("JUP", ["*UP*"], True),
        ("ETH", [" ", ""], False),
    ],
)
def test_ignore_globs_as_the_seed_describes(code: str, rules: list[str], expected: bool) -> None:
    assert ignored(code, rules) is expected


def test_discover_balances_ignore_and_manual() -> None:
    conf = CryptoAssets(
        ignore=["USDT", "*DOWN*"],
        manual=[
            ManualAsset(symbol="eth", avg_cost=1500.0),
            ManualAsset(symbol="DOT", quantity=12.0, avg_cost=6.5, name="Polkadot"),
            ManualAsset(symbol="ATOM"),  # no quantity and no balance: nothing to report
        ],
    )
    balances = {"BTC": 0.5, "ETH": 2.0, "USDT": 100.0, "BTCDOWN": 50.0, "XRP": 0.0}
    positions, skipped = discover(balances, conf)
    by = {p.asset: p for p in positions}
    assert sorted(by) == ["BTC", "DOT", "ETH"]
    assert sorted(skipped) == ["BTCDOWN", "USDT"]
    assert by["ETH"].quantity == 2.0 and by["ETH"].manual_cost == 1500.0
    assert by["DOT"].quantity == 12.0 and by["DOT"].name == "Polkadot"
    off = CryptoAssets(auto_discover=False, manual=[ManualAsset(symbol="BTC", quantity=0.1)])
    assert [(p.asset, p.quantity) for p in discover(balances, off)[0]] == [("BTC", 0.1)]


def _m(base: str, quote: str, active: bool = True) -> dict[str, Any]:
    return {"spot": True, "active": active, "base": base, "quote": quote}


MARKETS = {
    "BTC/USDT": _m("BTC", "USDT"),
    "ETH/USDT": _m("ETH", "USDT"),
    "ETH/BTC": _m("ETH", "BTC"),
    "PIVX/BTC": _m("PIVX", "BTC"),
    "SOL/USDT": _m("SOL", "USDT", active=False),
    "SOL/BTC": _m("SOL", "BTC", active=False),
    "LUNA/ETH": _m("LUNA", "ETH"),
}


def test_routes_direct_bridge_and_none() -> None:
    assert route_for("ETH", MARKETS) == Route("ETH", ("ETH/USDT",))
    pivx = route_for("PIVX", MARKETS)
    assert pivx == Route("PIVX", ("PIVX/BTC", "BTC/USDT")) and pivx.via == "PIVX/BTC*BTC/USDT"
    assert route_for("LUNA", MARKETS) == Route("LUNA", ("LUNA/ETH", "ETH/USDT"))
    assert route_for("ETHW", MARKETS) is None
    assert route_for("SOL", MARKETS) is None  # delisted: every market halted
    assert route_for("SOL", MARKETS, active_only=False) == Route("SOL", ("SOL/USDT",))
    assert route_for("USDT", MARKETS) == Route("USDT", ())
    routes = [r for r in (route_for(a, MARKETS) for a in ("ETH", "PIVX", "BTC")) if r]
    assert ticker_symbols(routes) == ["BTC/USDT", "ETH/USDT", "PIVX/BTC"]
    assert trade_markets("ETH", MARKETS) == ["ETH/USDT", "ETH/BTC"]


def test_price_of_route_never_zero() -> None:
    route = Route("PIVX", ("PIVX/BTC", "BTC/USDT"))
    assert price_of(route, {"PIVX/BTC": 5e-6, "BTC/USDT": 60000.0}) == pytest.approx(0.3)
    assert price_of(route, {"PIVX/BTC": 5e-6}) is None
    assert price_of(route, {"PIVX/BTC": 0.0, "BTC/USDT": 60000.0}) is None
    assert price_of(Route("USDT", ()), {}) == 1.0


def _fill(ts: int, side: str, qty: float, usdt: float, **kw: Any) -> ValuedFill:
    return ValuedFill(ts=ts, trade_id=ts, symbol="ETH/USDT", side=side, qty=qty, quote_usdt=usdt, **kw)  # type: ignore[arg-type]


def test_average_cost_per_contracts_section_6() -> None:
    fills = [
        # Buy 2 @ 1000, fee 0.002 ETH (base): qty 1.998, cost 2000.
        _fill(1, "buy", 2.0, 2000.0, fee_qty=0.002, fee_asset="ETH", fee_in_base=True),
        # Buy 1 @ 1600 with a BNB fee worth 1.2 USDT: cost += 1601.2.
        _fill(2, "buy", 1.0, 1600.0, fee_qty=0.002, fee_asset="BNB", fee_usdt=1.2),
        # Sell 1.5: cost and qty fall in proportion; the USDT fee does not change the basis.
        _fill(3, "sell", 1.5, 3000.0, fee_qty=3.0, fee_asset="USDT", fee_usdt=3.0),
    ]
    basis = average_basis(fills)
    qty = 1.998 + 1.0
    cost = 2000.0 + 1601.2
    expected_cost = cost * (qty - 1.5) / qty
    assert basis.quantity == pytest.approx(qty - 1.5)
    assert basis.cost == pytest.approx(expected_cost)
    assert avg_cost(fills) == pytest.approx(cost / qty)  # selling never changes the average
    # Order is (time, id), whatever order the fills arrive in.
    assert avg_cost(list(reversed(fills))) == pytest.approx(cost / qty)


def test_sell_fee_in_base_and_oversell_reset() -> None:
    fills = [
        _fill(1, "buy", 10.0, 100.0),
        _fill(2, "sell", 4.0, 60.0, fee_qty=1.0, fee_asset="ETH", fee_in_base=True),
    ]
    assert average_basis(fills).quantity == pytest.approx(5.0)
    assert avg_cost(fills) == pytest.approx(10.0)
    # Selling more than the fills explain (a deposit was sold) starts over from the next buy.
    fills += [_fill(3, "sell", 9.0, 90.0), _fill(4, "buy", 2.0, 50.0)]
    assert avg_cost(fills) == pytest.approx(25.0)
    assert avg_cost([_fill(1, "buy", 1.0, 10.0), _fill(2, "sell", 1.0, 12.0)]) is None


def test_fifo_consumes_oldest_lots() -> None:
    fills = [
        _fill(1, "buy", 1.0, 100.0),
        _fill(2, "buy", 1.0, 300.0, fee_qty=0.5, fee_asset="BNB", fee_usdt=2.0),
        _fill(3, "sell", 1.5, 600.0),
    ]
    basis = fifo_basis(fills)
    assert basis.quantity == pytest.approx(0.5)
    assert basis.cost == pytest.approx(0.5 * 302.0)
    assert avg_cost(fills, "fifo") == pytest.approx(302.0)
    assert avg_cost(fills, "average") == pytest.approx(201.0)


def test_orders_rebuilt_from_fills() -> None:
    def fill(ts: int, side: str, qty: float, order_id: str, quote_qty: float) -> ValuedFill:
        return ValuedFill(
            ts=ts,
            trade_id=ts,
            symbol="ETH/BTC",
            side=side,  # type: ignore[arg-type]
            qty=qty,
            quote_usdt=0.0,
            order_id=order_id,
            quote_qty=quote_qty,
        )

    fills = [
        fill(10, "buy", 1.0, "7", 0.05),
        fill(12, "buy", 3.0, "7", 0.16),
        fill(20, "sell", 1.0, "8", 0.06),
    ]
    (order,) = orders_from_fills(fills, {("ETH/BTC", "7")})
    assert (order.order_id, order.side, order.filled, order.created_at, order.updated_at) == (
        "7",
        "buy",
        4.0,
        10,
        12,
    )
    assert order.cost == pytest.approx(0.21) and order.price == pytest.approx(0.0525)


def test_state_file_roundtrip_and_corrupt_file(tmp_path: Path) -> None:
    sf = StateFile(tmp_path / "state" / "collector-crypto.json")
    assert sf.load() == CryptoState()
    state = CryptoState(trade_cursor={"ETH/USDT": 42}, quantities={"ETH": 1.5})
    state.fills["ETH"] = [_fill(1, "buy", 1.0, 10.0)]
    sf.save(state)
    assert sf.load() == state
    sf.path.write_text("{not json")
    assert sf.load() == CryptoState()
    assert sf.path.with_suffix(".corrupt").read_text() == "{not json"

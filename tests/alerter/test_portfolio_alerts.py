"""Daily report card after the snapshot, price-move and stale-price alerts (real NATS, bot emulator, real SQLite)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from assetsync.embedded import EmbeddedNats
from assetsync.events import PriceTick, TaskResult

from tests.alerter.test_service import acked, alerter, publish
from tests.support import wait_for
from tests.support.portfolio import fill_store

HOUR = 3_600_000


def snapshot_result(cid: str, day: str) -> TaskResult:
    now = int(time.time() * 1000)
    return TaskResult(
        command_id=cid, task="snapshot", source="system", status="success", started_at=now - 1000,
        finished_at=now, records=1, total=1, data_as_of=day, message=f"{day}: value 1 CNY",
    )  # fmt: skip


def tick(asset: str, price: float, ts: int) -> PriceTick:
    return PriceTick(source="binance", asset=asset, price=price, currency="USDT", ts=ts)


def text(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


def title(card: dict[str, Any]) -> str:
    return str(card["header"]["title"]["content"])


async def test_daily_report_card_after_the_snapshot(
    nats_server: EmbeddedNats, make_settings: Any, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    filled = fill_store(tmp_path / "data" / "assets.db")
    day = filled.last_day
    with sqlite3.connect(tmp_path / "data" / "assets.db") as conn:
        yesterday, week = (
            conn.execute("SELECT total_value FROM snapshots WHERE date = date(?, ?)", (day, d)).fetchone()[0]
            for d in ("-1 day", "-7 day")
        )
        today = conn.execute("SELECT total_value FROM snapshots WHERE date = ?", (day,)).fetchone()[0]
    async with alerter(nats_server, make_settings) as (emu, rt, _svc):
        await publish(rt, snapshot_result("s1", day))
        await wait_for(lambda: len(emu.cards()) == 1, what="report card")
        card = emu.cards()[0]
        body = text(card)
        assert card["header"]["template"] == "blue" and title(card) == f"📊 资产日报 · {day}"
        assert f"{today:,.2f}" in body
        assert f"{today - yesterday:+,.2f}" in body and f"{today - week:+,.2f}" in body
        assert "涨跌榜" in body and "BTC" in body
        assert "当日失败的数据源" in body or "全部成功" in body


async def test_daily_report_off_and_without_a_store(nats_server: EmbeddedNats, make_settings: Any) -> None:
    async with alerter(nats_server, make_settings, daily_report=False) as (emu, rt, svc):
        await publish(rt, snapshot_result("s1", "2026-01-02"))
        await wait_for(lambda: acked(svc) == 1, what="handled")
        assert emu.cards() == []
    # No database reachable from this alerter (another machine): the card says what the result said.
    async with alerter(nats_server, make_settings) as (emu, rt, _svc):
        await publish(rt, snapshot_result("s2", "2026-01-03"))
        await wait_for(lambda: len(emu.cards()) == 1, what="brief report card")
        assert "2026-01-03: value 1 CNY" in text(emu.cards()[0])


async def test_price_moves_alert_once_then_escalate(nats_server: EmbeddedNats, make_settings: Any) -> None:
    rules = [{"asset": "*", "percent": 5, "window_minutes": 60}, {"asset": "ETH", "percent": 50}]
    async with alerter(nats_server, make_settings, price_moves=rules) as (emu, rt, svc):
        t0 = int(time.time() * 1000) - HOUR
        minute = 60_000
        await publish(
            rt,
            tick("BTC", 100.0, t0),
            tick("ETH", 10.0, t0),
            tick("BTC", 103.0, t0 + 15 * minute),  # +3%: quiet
            tick("ETH", 11.0, t0 + 15 * minute),  # +10%: under ETH's own 50% rule
            tick("BTC", 107.0, t0 + 30 * minute),  # +7%: orange
            tick("BTC", 108.0, t0 + 45 * minute),  # still moving: deduplicated
        )
        await wait_for(lambda: len(emu.cards()) == 1, what="price move card")
        assert svc.price_consumer is not None
        await wait_for(
            lambda: svc.price_consumer is not None and svc.price_consumer.stats.acked >= 6, what="acks"
        )
        first = emu.cards()[0]
        assert first["header"]["template"] == "orange"
        assert "BTC" in title(first) and "+7.00%" in title(first) and "60 分钟内" in title(first)
        await publish(rt, tick("BTC", 125.0, t0 + 50 * minute))  # +25% ≥ 2 × 5%: escalates to red
        await wait_for(lambda: len(emu.cards()) == 2, what="escalation")
        assert emu.cards()[1]["header"]["template"] == "red" and "+25.00%" in title(emu.cards()[1])


async def test_stale_prices_alert_per_source_and_recover(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with alerter(nats_server, make_settings, stale_price_hours=1) as (emu, rt, svc):
        now = int(time.time() * 1000)
        crypto = TaskResult(
            command_id="c1", task="crypto", source="binance", status="success", started_at=now - 2000,
            finished_at=now - 1000, records=3, total=3, assets=["BTC", "ETH", "DOGE"],
        )  # fmt: skip
        await publish(rt, crypto, tick("BTC", 1.0, now - 3 * HOUR), tick("ETH", 1.0, now))
        await wait_for(lambda: acked(svc) == 1, what="result handled")
        assert svc.price_consumer is not None
        await wait_for(
            lambda: svc.price_consumer is not None and svc.price_consumer.stats.acked >= 2, what="ticks"
        )
        await svc.check_stale(now)
        await wait_for(lambda: len(emu.cards()) == 1, what="stale card")
        card = emu.cards()[0]
        assert card["header"]["template"] == "orange" and "binance · 1 个资产" in title(card)
        assert "BTC" in text(card) and "ETH" not in text(card)
        await svc.check_stale(now + 60_000)  # unchanged within the reminder interval: no second card
        # DOGE (held, never priced) goes stale too; BTC and ETH get prices again.
        await publish(rt, tick("BTC", 1.0, now + 2 * HOUR), tick("ETH", 1.0, now + 2 * HOUR))
        await wait_for(
            lambda: svc.price_consumer is not None and svc.price_consumer.stats.acked >= 4, what="ticks"
        )
        await svc.check_stale(now + 2 * HOUR)
        # Still one incident for the source (DOGE now), past the reminder interval: a reminder.
        await wait_for(lambda: len(emu.cards()) == 2, what="reminder")
        reminder = emu.cards()[1]
        assert "提醒 1" in title(reminder) and "DOGE" in text(reminder) and "BTC" not in text(reminder)
        # The next sync says DOGE was sold: the source is fresh, one green card.
        sold = TaskResult(
            command_id="c2", task="crypto", source="binance", status="success", started_at=now,
            finished_at=now + 1000, records=2, total=2, assets=["BTC", "ETH"],
        )  # fmt: skip
        await publish(rt, sold)
        await wait_for(lambda: acked(svc) == 2, what="result handled")
        await svc.check_stale(now + 2 * HOUR)
        await wait_for(lambda: len(emu.cards()) == 3, what="recovered card")
        assert emu.cards()[2]["header"]["template"] == "green" and "binance" in title(emu.cards()[2])


def test_price_rules_config_and_precedence(tmp_path: Path) -> None:
    import pytest
    from assetsync.config import ConfigError, load_settings
    from assetsync_alerter.prices import PriceWatch

    def settings(alerts: dict[str, Any]) -> Any:
        (tmp_path / "config.json").write_text(json.dumps({"asset_sync": {"alerts": alerts}}))
        return load_settings(tmp_path / "config.json", data_dir=tmp_path / "data", environ={})

    with pytest.raises(ConfigError) as exc:
        settings({"price_moves": [{"asset": "BTC", "percent": 0}]})
    assert exc.value.key.startswith("asset_sync.alerts.price_moves[0].percent") or "price_moves" in str(
        exc.value
    )
    with pytest.raises(ConfigError):
        settings({"stale_price_hours": -1})
    a = settings(
        {
            "price_moves": [
                {"asset": "*", "percent": 5},
                {"asset": "btc", "percent": 20},
                {"percent": 9, "window_minutes": 5},
            ]
        }
    ).config.asset_sync.alerts
    assert a.daily_report is True and a.stale_price_hours == 0
    w = PriceWatch(a.price_moves, 0)
    assert sorted((r.window_minutes, r.percent) for r in w.rules_for("BTC")) == [(5, 9.0), (60, 20.0)]
    assert sorted((r.window_minutes, r.percent) for r in w.rules_for("ETH")) == [(5, 9.0), (60, 5.0)]
    assert w.stale(0) == []  # stale alerts off

"""The alert policy (dedupe, reminders, recovery) and the card builders."""

from __future__ import annotations

import json

from assetsync.events import AssetError, BackupResult, ServiceLifecycle, TaskResult
from assetsync_alerter import cards
from assetsync_alerter.policy import AlertPolicy

T0 = 1_790_000_000_000


def failed(**kw: object) -> TaskResult:
    base: dict[str, object] = dict(command_id="c1", task="crypto", source="binance", status="failed", started_at=T0,
                                   finished_at=T0 + 4200, records=1, total=3, message="2 of 3 assets failed",
                                   errors=[AssetError(asset="DOGE", reason="no market"),
                                           AssetError(asset="PEPE", reason="timeout")])  # fmt: skip
    base.update(kw)
    return TaskResult(**base)  # type: ignore[arg-type]


def test_repeat_is_suppressed_then_reminded_then_recovered() -> None:
    p = AlertPolicy(reminder_minutes=10)
    d = p.decide("task:crypto", "red", T0)
    assert d.kind == "alert"
    p.commit(d, T0)
    again = p.decide("task:crypto", "red", T0 + 60_000)
    assert again.kind == "none"
    p.commit(again, T0 + 60_000)
    later = p.decide("task:crypto", "red", T0 + 600_000)
    assert later.kind == "reminder" and later.reminder == 1 and later.since == T0
    p.commit(later, T0 + 600_000)
    assert p.decide("task:crypto", "red", T0 + 700_000).kind == "none"
    ok = p.decide("task:crypto", None, T0 + 800_000)
    assert ok.kind == "recovered" and ok.since == T0
    p.commit(ok, T0 + 800_000)
    assert p.decide("task:crypto", None, T0 + 900_000).kind == "none" and not p.incidents


def test_escalation_alerts_at_once_and_uncommitted_decision_changes_nothing() -> None:
    p = AlertPolicy(reminder_minutes=60)
    p.commit(p.decide("task:fund", "orange", T0), T0)
    assert p.decide("task:fund", "red", T0 + 1).kind == "alert"
    p.decide("task:other", "red", T0)  # never committed (send failed): no incident
    assert "task:other" not in p.incidents


def test_task_card_names_task_time_counts_duration_and_assets() -> None:
    card = cards.task_card(failed(), "red", tz="Asia/Shanghai", footer="assetsync · local")
    text = json.dumps(card, ensure_ascii=False)
    assert card["header"]["template"] == "red" and "加密货币同步" in card["header"]["title"]["content"]
    for part in ("1/3", "4.2 秒", "DOGE", "no market", "PEPE", "timeout", "2026-", "binance"):
        assert part in text, part
    many = failed(errors=[AssetError(asset=f"A{i}", reason="x") for i in range(40)])
    text = json.dumps(cards.task_card(many, "red", tz="UTC", footer="f"), ensure_ascii=False)
    assert "A14" in text and "A15" not in text and "另有 25 个" in text
    assert len(text.encode()) < 20 * 1024


def test_partial_backup_lifecycle_and_recovered_colors() -> None:
    partial = failed(status="partial", records=2, total=3)
    assert (
        cards.task_card(partial, "orange", tz="UTC", footer="f", min_rate=0.8)["header"]["template"]
        == "orange"
    )
    b = BackupResult(command_id="b1", ok=False, started_at=T0, finished_at=T0 + 1000, error="disk full")
    bc = cards.backup_card(b, tz="UTC", footer="f")
    assert bc["header"]["template"] == "red" and "disk full" in json.dumps(bc, ensure_ascii=False)
    life = [ServiceLifecycle(service=s, instance="h-1", state="started", at=T0) for s in ("store", "alerter")]
    lc = cards.lifecycle_card(life, tz="UTC", footer="f")
    assert lc["header"]["template"] == "blue" and "alerter, store" in json.dumps(lc, ensure_ascii=False)
    rc = cards.recovered_card("基金同步 (fund_sync)", since=T0, now=T0 + 5, tz="UTC", footer="f")
    assert rc["header"]["template"] == "green"


def test_a_part_failing_for_every_asset_alerts_red_under_the_seed_policy(make_settings: object) -> None:
    from typing import Any

    from assetsync_alerter.service import Alerter

    settings = make_settings(  # type: ignore[operator]
        {"asset_sync": {"alerts": {"alert_on_partial_success": False, "feishu_webhook": "https://x/hook"}}}
    )
    alerter = Alerter(settings)
    errors = [AssetError(asset=a, reason=f"klines {a}/USDT: HTTP 503", part="klines") for a in ("BTC", "ETH")]
    run = failed(message="klines failed for every asset (2): klines BTC/USDT: HTTP 503", errors=errors,
                 records=0, total=2)  # fmt: skip
    now = run.finished_at + 1000
    out: Any = alerter.plan_one(run, now)
    assert out is not None and out.card["header"]["template"] == "red"
    text = json.dumps(out.card, ensure_ascii=False)
    assert "klines failed for every asset" in text and "**BTC** (klines)" in text
    # The same run reported as partial would have stayed silent under alert_on_partial_success: false.
    quiet = TaskResult(**{**{f: getattr(run, f) for f in run.__struct_fields__}, "status": "partial",
                          "command_id": "c2"})  # fmt: skip
    assert Alerter(settings).plan_one(quiet, now) is None

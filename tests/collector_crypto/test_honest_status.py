"""Honest statuses: what failed (prices / klines / trades / cost, per asset), dust and unpriced counts."""

from __future__ import annotations

from assetsync.events import TaskResult
from assetsync.outcome import headline
from assetsync_emulators.common import Fault
from assetsync_feishu_writer.rows import error_text

from tests.collector_crypto.conftest import Harness


def _reasons_cover_the_gap(r: TaskResult) -> None:
    """A count like 8/9 always comes with the reason for the missing one."""
    text = headline(r)
    if r.records < r.total:
        named = {e.asset for e in r.errors}
        assert len(named) >= r.total - r.records
        assert all(e.asset in text and e.reason in text for e in r.errors if e.kind != "failed"), text
        assert all(e.asset in text for e in r.errors), text


async def test_klines_failing_for_every_asset_fails_the_run(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("5xx", "/api/v3/klines"))
    result = await harness.run(sync)
    assert result.status == "failed", result.message
    assert result.message.startswith("klines failed for every asset"), result.message
    failed = [e for e in result.errors if e.kind == "failed"]
    assert failed and all("klines" in e.part.split(",") for e in failed)
    # Prices and holdings are still published: only the klines part failed.
    assert {"BTC", "ETH", "SOL"} <= set(harness.holdings())
    _reasons_cover_the_gap(result)


async def test_trades_failing_for_every_asset_fails_the_run(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("5xx", "/api/v3/myTrades"))
    result = await harness.run(sync)
    assert result.status == "failed"
    assert "trades failed for every asset" in result.message
    assert {e.part for e in result.errors if e.kind == "failed"} == {"trades"}


async def test_one_part_failing_for_some_assets_is_partial_and_says_which(harness: Harness) -> None:
    sync = harness.make()
    harness.emu.switch.add(Fault("5xx", "/api/v3/myTrades", query_contains="symbol=SOLUSDT"))
    result = await harness.run(sync)
    assert result.status == "partial"
    (sol,) = [e for e in result.errors if e.kind == "failed"]
    assert (sol.asset, sol.part) == ("SOL", "trades")
    assert "1 of 8 assets failed (trades: SOL)" in result.message
    _reasons_cover_the_gap(result)


async def test_dust_and_unpriced_are_counted_in_summary_and_log_row(harness: Harness) -> None:
    sync = harness.make()
    result = await harness.run(sync)
    assert result.status == "success"
    assert result.dust == ["SHIB"]  # the emulator's dust balance
    assert "1 dust hidden (< 1 USDT, asset_sync.assets.crypto.min_value): SHIB" in result.message
    assert "1 unpriced: ETHW (no active Binance market)" in result.message
    # The summary count names the missing one and why; the 日志 错误信息 carries both counts.
    assert headline(result) == f"{result.records}/{result.total} — {result.message}"
    text = error_text(result)
    assert "dust hidden" in text and "ETHW [prices]: no active Binance market" in text


async def test_task_summary_names_the_missing_and_the_dust(harness: Harness, capsys: object) -> None:
    from assetsync.cli import print_summary

    result = await harness.run(harness.make())
    print_summary(result, True)
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert f"{result.records}/{result.total}" in out
    assert "1 unpriced: ETHW (no active Binance market); 1 dust hidden" in out
    assert "unpriced [prices]: ETHW (quantity 4.21) — no active Binance market" in out


def test_a_part_tried_for_one_asset_of_many_is_not_everywhere() -> None:
    from assetsync_collector_crypto.sync import RunReport

    report = RunReport()
    report.attempt("trades", "SOL")
    report.fail("SOL", "trades SOL/USDT: HTTP 503", "trades")
    assert report.failed_everywhere(held=8) == []
    assert report.failed_everywhere(held=1) == ["trades"]
    for asset in ("BTC", "ETH"):
        report.attempt("klines", asset)
        report.fail(asset, f"klines {asset}/USDT: HTTP 503", "klines")
    assert report.failed_everywhere(held=8) == ["klines"]
    assert report.errors["SOL"].part == "trades"
    report.attempt("klines", "SOL")
    report.fail("SOL", "klines SOL/USDT: HTTP 503", "klines")
    assert report.errors["SOL"].part == "klines,trades"


def test_headline_adds_the_reasons_a_message_leaves_out() -> None:
    from assetsync.events import AssetError

    base = dict(command_id="c", task="fund", source="xueqiu", status="partial", started_at=1, finished_at=2)
    fund = TaskResult(
        **base,  # type: ignore[arg-type]
        records=3, total=4, message="3/4 funds priced",
        errors=[AssetError(asset="999999", reason="Danjuan does not know fund 999999")],
    )  # fmt: skip
    assert headline(fund) == "3/4 — 3/4 funds priced; 1 failed: 999999 (Danjuan does not know fund 999999)"
    silent = TaskResult(**base, records=8, total=9)  # type: ignore[arg-type]
    assert headline(silent) == "8/9 — no reason reported"
    assert headline(TaskResult(**base, records=2, total=2)) == "2/2"  # type: ignore[arg-type]

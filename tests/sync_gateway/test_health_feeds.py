"""SYS001 data health and SYS002 collector status, from the gateway's feeds and the task results it sees."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from assetsync.config import load_settings
from assetsync.events import AssetError, FeedRecord, TaskResult
from assetsync.schedule import Cron
from assetsync_sync_gateway.core import Gateway, GatewayOptions
from assetsync_sync_gateway.health_feeds import HEARTBEAT, TaskPlan, task_plans
from assetsync_sync_gateway.registry import native_endpoints

CRYPTO = TaskPlan("crypto", (Cron.parse("*", 0, "Asia/Shanghai"),), text="hour=* minute=0")
OKX = TaskPlan("okx", every=60.0, text="every 60 s")


class Clock:
    """Real time (feeds date their appends with it) or a fixed start, plus a shift."""

    def __init__(self, start: float | None = None) -> None:
        self.start = start
        self.shift = 0.0

    def __call__(self) -> float:
        return (time.time() if self.start is None else self.start) + self.shift


def gateway(data_dir: Path, clock: Clock) -> Gateway:
    gw = Gateway(
        GatewayOptions(
            data_dir=data_dir,
            site_id="A",
            native_endpoints=native_endpoints(["market", "system"]),
            task_plans=[CRYPTO, OKX],
            run_sources=False,
        )
    )
    gw.health.clock = clock
    return gw


def result(cid: str, task: Any, status: Any, at: float, **kw: Any) -> TaskResult:
    ms = int(at * 1000)
    return TaskResult(
        command_id=cid, task=task, source="binance", status=status, started_at=ms - 2500, finished_at=ms, **kw
    )


async def last_record(gw: Gateway, code: str) -> dict[str, Any]:
    (data,) = await gw.feeds.latest(code, 1, "A")
    got: dict[str, Any] = json.loads(data)
    return got


async def test_collector_status_last_run_next_run_failures(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 12, 6, 4, 10, tzinfo=UTC).timestamp())
    gw = gateway(tmp_path, clock)
    await gw.start()
    try:
        now = clock()
        boom = [AssetError(asset="XYZ", reason="no market XYZ/USDT")]
        await gw.ingest(
            [
                result("c1", "crypto", "success", now - 600, records=5, total=5),
                result("f1", "fund", "failed", now - 300, errors=boom, message="xueqiu answered 503"),
                result("f2", "fund", "failed", now - 100, errors=boom, message="xueqiu answered 503"),
                msgspec.structs.replace(result("b1", "backup", "failed", now), origin="B"),  # another site's
            ]
        )
        assert await gw.health.tick("SYS002") is True
        doc = await last_record(gw, "SYS002")
        by_task = {c["task"]: c for c in doc["collectors"]}
        assert list(by_task) == ["crypto", "okx", "fund"]  # scheduled ones first, then the others seen
        crypto = by_task["crypto"]
        assert crypto["last_run"]["status"] == "success" and crypto["last_run"]["records"] == 5
        assert crypto["last_run"]["duration_seconds"] == 2.5 and crypto["consecutive_failures"] == 0
        assert crypto["next_run"] == "2026-12-06T05:00:00Z"
        fund = by_task["fund"]
        assert fund["consecutive_failures"] == 2 and fund["schedule"] == "not scheduled here"
        assert fund["last_run"]["errors"] == [{"asset": "XYZ", "reason": "no market XYZ/USDT"}]
        assert fund["last_run"]["message"] == "xueqiu answered 503" and fund["next_run"] is None
        assert by_task["okx"]["last_run"] is None and by_task["okx"]["next_run"] is None
        assert by_task["okx"]["schedule"] == "every 60 s"

        # A quiet minute later only ages moved: nothing appended. A new run is news.
        clock.shift += 60
        assert await gw.health.tick("SYS002") is False
        await gw.ingest([result("f3", "fund", "success", clock(), records=3, total=3)])
        assert await gw.health.tick("SYS002") is True
        assert {c["task"]: c for c in (await last_record(gw, "SYS002"))["collectors"]}["fund"][
            "consecutive_failures"
        ] == 0
        clock.shift += HEARTBEAT + 1  # unchanged for an hour: one record says the gateway is alive
        assert await gw.health.tick("SYS002") is True
        assert gw.feeds.state("SYS002").count == 3
    finally:
        await gw.stop()

    # After a restart the history comes back from AS007, and the same status is not appended again.
    again = gateway(tmp_path, clock)
    await again.start()
    try:
        assert [r.command_id for r in again.health.runs["fund"]] == ["f1", "f2", "f3"]
        assert "backup" not in again.health.runs
        assert await again.health.tick("SYS002") is False
    finally:
        await again.stop()


async def test_data_health_per_feed_and_collector(tmp_path: Path) -> None:
    clock = Clock()
    gw = gateway(tmp_path, clock)
    await gw.start()
    try:
        await gw.ingest(
            [
                FeedRecord(code="PS001", record_key="BTC:1", ts=1, data={"coin": "BTC"}),
                result("c1", "crypto", "success", clock()),
                result("o1", "okx", "failed", clock(), message="OKX answered 50011"),
            ]
        )
        assert await gw.health.tick("SYS001") is True
        doc = await last_record(gw, "SYS001")
        feeds = {f["code"]: f for f in doc["feeds"]}
        assert "SYS001" not in feeds and "SYS002" not in feeds  # not about themselves
        assert feeds["PS001"]["status"] == "ok" and feeds["PS001"]["expected_interval_seconds"] == 60
        assert feeds["PS001"]["records"] == 1 and feeds["PS001"]["age_seconds"] is not None
        assert feeds["PT001"]["status"] == "empty" and feeds["PT001"]["last_record_at"] is None
        assert feeds["AS007"]["status"] == "ok" and feeds["AS007"]["expected_interval_seconds"] is None
        collectors = {c["task"]: c for c in doc["collectors"]}
        assert (
            collectors["crypto"]["status"] == "ok" and collectors["crypto"]["expected_every_seconds"] == 3600
        )
        assert collectors["okx"]["status"] == "failed" and collectors["okx"]["last_status"] == "failed"
        assert doc["status"] == "degraded" and doc["feeds_empty"] >= 1

        clock.shift += 60  # ages moved, statuses did not
        assert await gw.health.tick("SYS001") is False
        clock.shift += 3 * 60  # PS001 (every 60 s) is now more than 3 intervals old
        assert await gw.health.tick("SYS001") is True
        feeds = {f["code"]: f for f in (await last_record(gw, "SYS001"))["feeds"]}
        assert feeds["PS001"]["status"] == "stale" and feeds["PS001"]["age_seconds"] >= 240
        clock.shift += 3 * 3600  # crypto runs hourly: 3 h without a run is stale
        await gw.health.tick("SYS001")
        collectors = {c["task"]: c for c in (await last_record(gw, "SYS001"))["collectors"]}
        assert collectors["crypto"]["status"] == "stale"
    finally:
        await gw.stop()


def test_task_plans_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        data_dir=tmp_path,
        log_dir=tmp_path,
        environ={},
        overrides={
            "asset_sync": {
                "scheduler": {"crypto_sync": {"hour": "*", "minute": "*/15"}},
                "okx": {"api_key": "k", "api_secret": "s", "password": "p"},
                "binance": {"api_key": "k", "api_secret": "s"},
            }
        },
    )
    plans = {p.task: p for p in task_plans(settings)}
    assert plans["crypto"].text == "hour=* minute=*/15" and plans["crypto"].period(time.time()) == 900
    # No Xueqiu cookie: the fund collector is off, its schedule expects nothing.
    assert plans["okx"].text == "hour=* minute=0" and set(plans) == {"crypto", "okx", "snapshot", "backup"}
    bare = load_settings(None, data_dir=tmp_path, log_dir=tmp_path, environ={})
    assert {p.task for p in task_plans(bare)} == {"snapshot", "backup"}
    # OKX public data only (no keys): no okx task runs, so none is expected.
    public = load_settings(
        None,
        data_dir=tmp_path,
        log_dir=tmp_path,
        environ={},
        overrides={"asset_sync": {"okx": {"enabled": True}}},
    )
    assert {p.task for p in task_plans(public)} == {"snapshot", "backup"}

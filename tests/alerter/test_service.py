"""The alerter on a real NATS server with the group-bot emulator."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from assetsync.embedded import EmbeddedNats
from assetsync.events import AssetError, BackupResult, ServiceLifecycle, SinkRejected, TaskResult
from assetsync.feishu.bot import GroupBot
from assetsync.metrics import Metrics
from assetsync.runtime import Runtime, open_runtime
from assetsync.secrets import Secret
from assetsync.service import Disabled
from assetsync_alerter.service import AlerterService, build
from assetsync_emulators.common import serve
from assetsync_emulators.feishu_bot import BotEmulator

from tests.support import wait_for

T0 = int(time.time() * 1000) - 60_000  # recent: the alerter ignores day-old events


def result(cid: str, status: str = "failed", **kw: Any) -> TaskResult:
    base: dict[str, Any] = dict(command_id=cid, task="crypto", source="binance", status=status, started_at=T0,
                                finished_at=T0 + 3000, records=0 if status == "failed" else 9, total=10,
                                errors=[AssetError(asset="DOGE", reason="no market")] if status != "success" else [])  # fmt: skip
    base.update(kw)
    return TaskResult(**base)


@asynccontextmanager
async def alerter(
    nats_server: EmbeddedNats, make_settings: Any, *, url: str | None = None, **alerts: Any
) -> AsyncIterator[tuple[BotEmulator, Runtime, AlerterService]]:
    emu = BotEmulator(hooks={"hook1": "sekret"})
    async with serve(emu.app) as base:
        hook = url or emu.url(base, "hook1")
        conf = {"feishu_webhook": hook, "secret": "sekret", **alerts}
        settings = make_settings({"asset_sync": {"alerts": conf}})
        async with open_runtime(settings, nats_server.url, name="test-alerter", metrics=Metrics()) as rt:
            bot = GroupBot(Secret(hook), Secret("sekret"), backoff_base=0.01, metrics=rt.metrics)
            svc = AlerterService(rt, bot=bot, linger=0.02)
            async with AsyncExitStack() as stack:
                await svc.start(stack)
                yield emu, rt, svc


async def publish(rt: Runtime, *events: Any) -> None:
    for e in events:
        await rt.publisher.publish(e)
    await rt.publisher.flush()


def acked(svc: AlerterService) -> int:
    assert svc.consumer is not None
    return svc.consumer.stats.acked


async def test_disabled_alerts_send_nothing(nats_server: EmbeddedNats, make_settings: Any) -> None:
    settings = make_settings(
        {"asset_sync": {"alerts": {"enabled": False, "feishu_webhook": "http://127.0.0.1:9/x"}}}
    )
    async with open_runtime(settings, nats_server.url, name="t", metrics=Metrics()) as rt:
        out = build(rt)
    assert isinstance(out, Disabled) and "enabled is false" in out.reason


async def test_failure_once_then_suppressed_then_recovered(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with alerter(nats_server, make_settings) as (emu, rt, svc):
        await publish(rt, result("c1"))
        await wait_for(lambda: len(emu.cards()) == 1, what="red card")
        await publish(rt, result("c2"), result("c3"))
        await wait_for(lambda: acked(svc) == 3, what="repeats handled")
        await publish(rt, result("c4", status="success"))
        await wait_for(lambda: len(emu.cards()) == 2, what="green card")
        red, green = emu.cards()
        assert red["header"]["template"] == "red" and green["header"]["template"] == "green"
        assert "DOGE" in json.dumps(red, ensure_ascii=False)
        assert (
            rt.metrics.value("assetsync_alert_cards_total", {"kind": "repeat", "outcome": "suppressed"}) == 2
        )


async def test_reminder_interval_comes_from_config(nats_server: EmbeddedNats, make_settings: Any) -> None:
    # reminder_minutes=0: every repeat of an ongoing failure is already due for a reminder.
    async with alerter(nats_server, make_settings, reminder_minutes=0) as (emu, rt, _svc):
        await publish(rt, result("c1"))
        await wait_for(lambda: len(emu.cards()) == 1, what="first alert")
        await publish(rt, result("c2"))
        await wait_for(lambda: len(emu.cards()) == 2, what="reminder")
        assert "提醒 1" in emu.cards()[1]["header"]["title"]["content"]


async def test_partial_only_when_enabled_and_below_rate(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with alerter(nats_server, make_settings, alert_on_partial_success=True, min_success_rate=0.95) as (
        emu, rt, _svc,
    ):  # fmt: skip
        await publish(rt, result("p1", status="partial", task="fund", source="xueqiu"))
        await wait_for(lambda: len(emu.cards()) == 1, what="orange card")
        assert emu.cards()[0]["header"]["template"] == "orange"
    async with alerter(nats_server, make_settings) as (emu2, rt2, svc2):
        await publish(rt2, result("p2", status="partial"))
        await wait_for(lambda: acked(svc2) == 1, what="handled")
        assert emu2.cards() == []


async def test_backup_lifecycle_and_sink_rejection_cards(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with alerter(nats_server, make_settings) as (emu, rt, _svc):
        await publish(
            rt,
            BackupResult(command_id="b1", ok=False, started_at=T0, finished_at=T0 + 10, error="disk full"),
            ServiceLifecycle(service="store", instance="h-1", state="started", at=T0),
            ServiceLifecycle(service="alerter", instance="h-1", state="started", at=T0),
            SinkRejected(
                sink="feishu", target="持仓", record_key="holding:binance:BTC:1", reason="field 数量", at=T0
            ),
        )
        await wait_for(lambda: len(emu.cards()) == 3, what="three cards")
        colors = sorted(c["header"]["template"] for c in emu.cards())
        assert colors == ["blue", "red", "red"]
        text = json.dumps(emu.cards(), ensure_ascii=False)
        assert "disk full" in text and "数量" in text and "alerter, store" in text


async def test_webhook_404_is_logged_counted_and_does_not_block(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    # Point at a path the bot server does not have: HTTP 404.
    async with serve(BotEmulator().app) as base:
        settings = make_settings(
            {"asset_sync": {"alerts": {"feishu_webhook": base + "/open-apis/bot/v2/wrong"}}}
        )
        async with open_runtime(settings, nats_server.url, name="t404", metrics=Metrics()) as rt:
            svc = AlerterService(rt, linger=0.02)
            async with AsyncExitStack() as stack:
                await svc.start(stack)
                await publish(rt, result("x1"), result("x2", task="fund"), result("x3", task="snapshot"))
                await wait_for(lambda: acked(svc) == 3, what="all acked despite the 404")
                assert rt.metrics.value("assetsync_alerts_failed_total", {"reason": "not_found"}) == 3
                assert not svc.health()[0] and "404" in svc.health()[1]


async def test_stale_and_foreign_events_are_not_announced(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    async with alerter(nats_server, make_settings) as (emu, rt, svc):
        day_old = T0 - 25 * 3600 * 1000
        await publish(
            rt,
            result("old", started_at=day_old, finished_at=day_old + 1000),
            result("remote", origin="site-b"),
            ServiceLifecycle(service="store", instance="h-0", state="started", at=T0 - 3600 * 1000),
        )
        await wait_for(lambda: acked(svc) == 3, what="handled")
        assert emu.cards() == []


def test_combined_view_alerts_on_another_sites_failures_as_that_site(make_settings: Any) -> None:
    from assetsync_alerter.service import Alerter

    own_only = Alerter(make_settings())
    combined = Alerter(make_settings({"asset_sync": {"views": {"combined": True}}}))
    theirs = result("crypto@slot", origin="office")
    now = T0 + 5000
    assert not own_only.wanted(theirs, now)
    assert combined.wanted(theirs, now)
    assert not combined.wanted(
        ServiceLifecycle(service="store", instance="x", state="started", at=T0, origin="office"), now
    )
    card = combined.plan_one(theirs, now)
    assert card is not None and card.kind == "task_failed"
    assert "office" in json.dumps(card.card, ensure_ascii=False)
    # The other site's failure and this site's are tracked apart: ours still alerts at once.
    assert card.decision is not None
    combined.policy.commit(card.decision, now)
    mine = combined.plan_one(result("crypto@slot"), now + 1)
    assert mine is not None and mine.kind == "task_failed"

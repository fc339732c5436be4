"""The store service: every fact on the bus into SQLite, plus the daily snapshot and backups."""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from assetsync import bus
from assetsync.events import TaskCommand, TaskResult
from assetsync.runtime import Runtime
from assetsync.schedule import Scheduler
from assetsync.service import Disabled, Service
from assetsync.tasks import failed_result, now_ms, task_consumer

from assetsync_store.backup import BackupError, backup_summary, run_backup
from assetsync_store.db import Database, StoreBroken, StoreUnavailable
from assetsync_store.snapshot import SnapshotError, snapshot_summary, take_snapshot
from assetsync_store.upserts import Rows

log = logging.getLogger("assetsync.store")

# A batch commits in well under a second; a short ack wait means events a killed store held come
# back quickly to its successor (redelivery is harmless: every write is an upsert).
STORE_ACK_WAIT = 15.0

# Report the same write failure as a failed task result at most this often (no alert storm).
FAILURE_REPORT_EVERY = 300.0


class StoreService:
    """Consumes MARKET, PORTFOLIO and task/backup results into SQLite; owns snapshot and backup."""

    name = "store"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.db = Database(
            rt.settings.db_path, synchronous=rt.settings.config.asset_sync.database.synchronous
        )
        # Why writes fail, per consumer (and "open"): one consumer writing its small batch must not
        # hide that another cannot write (e.g. its own failure report fits the last free page).
        self._failing: dict[str, str] = {}
        self._reported: dict[str, float] = {}
        self._tz = ZoneInfo(rt.settings.timezone)
        self.consumers: list[bus.Consumer] = []
        m = rt.metrics
        self._rows = m.counter("assetsync_store_rows_total", "Rows upserted into SQLite", ("table",))
        self._backup_age = m.gauge(
            "assetsync_backup_last_success_timestamp_seconds", "Last good backup (unix time)"
        )
        self._value = m.gauge(
            "assetsync_portfolio_value", "Portfolio totals of the last snapshot (base currency)", ("metric",)
        )
        self._holding_value = m.gauge(
            "assetsync_holding_value",
            "Market value of one holding in its own currency",
            ("asset", "currency"),
        )

    async def start(self, stack: AsyncExitStack) -> None:
        try:
            await self.db.open()
        except StoreUnavailable as exc:
            # Keep running: consumers retry with backoff and the alerter hears about it.
            self._failing["open"] = str(exc)
            log.error("store: %s", exc)
            await self._report_failure(str(exc))
        else:
            await self._refresh_value_gauges(at_start=True)
        stack.push_async_callback(self.db.close)
        rt, topo = self.rt, self.rt.topo
        specs = [
            bus.ConsumerSpec(
                durable=rt.durable("store-market"),
                stream=topo.market,
                subjects=(topo.subject("market", ">"),),
                batch_size=2000,
                max_ack_pending=20000,
                ack_wait=STORE_ACK_WAIT,
                description="store: prices and klines into SQLite",
            ),
            bus.ConsumerSpec(
                durable=rt.durable("store-portfolio"),
                stream=topo.portfolio,
                subjects=(topo.subject("portfolio", ">"),),
                batch_size=1000,
                ack_wait=STORE_ACK_WAIT,
                description="store: holdings, trades, orders, snapshots into SQLite",
            ),
            bus.ConsumerSpec(
                durable=rt.durable("store-ops"),
                stream=topo.ops,
                subjects=(topo.result(), topo.backup()),
                batch_size=200,
                ack_wait=STORE_ACK_WAIT,
                description="store: task results (sync_logs) and backup results",
            ),
        ]
        for spec in specs:
            c = rt.consumer(spec, functools.partial(self._handle, spec.durable))
            await c.start()
            stack.push_async_callback(c.stop)
            self.consumers.append(c)
        for task, run in (
            ("snapshot", self._run_snapshot),
            ("backup", self._run_backup),
            ("restore", self._run_restore),
        ):
            tc = task_consumer(rt, task, run, ack_wait=120.0)  # type: ignore[arg-type]
            await tc.start()
            stack.push_async_callback(tc.stop)
        for task in ("snapshot", "backup"):
            if task == "backup" and not rt.settings.config.asset_sync.database.backup.enabled:
                continue
            sched = Scheduler.from_settings(rt, task, expires_after=6 * 3600)  # type: ignore[arg-type]
            if sched is not None:
                await sched.start(stack)

    @property
    def unavailable(self) -> str:
        """Why the database cannot be written now (empty when every consumer's last write worked)."""
        return next(iter(self._failing.values()), "")

    def health(self) -> tuple[bool, str]:
        halted = next((c.halted for c in self.consumers if c.halted), "")
        if halted:
            return False, halted
        if self.unavailable:
            return False, self.unavailable
        return True, f"{self.db.rows_written} rows written"

    async def _handle(self, who: str, batch: Sequence[bus.Delivery]) -> None:
        rows = Rows(site_id=self.rt.settings.site_id)
        for d in batch:
            rows.add(d.event)
        try:
            await self.db.write(rows)
        except StoreBroken as exc:
            # Retrying cannot help and terminating would drop every event: stop, keep them all.
            self._failing[who] = str(exc)
            log.error("store: %s", exc)
            await self._report_failure(str(exc))
            raise bus.HaltError(str(exc)) from exc
        except StoreUnavailable as exc:
            self._failing[who] = str(exc)
            await self._report_failure(str(exc))
            raise bus.TransientError(str(exc)) from exc
        self._failing.pop(who, None)
        self._failing.pop("open", None)
        for table, got in (
            ("price_history", rows.prices),
            ("klines", rows.klines),
            ("holdings", rows.holdings),
        ):
            if got:
                self._rows.labels(table).inc(len(got))
        if rows.holdings or rows.prunes:
            await self._refresh_value_gauges()
        if rows.task_ids:
            # Tell waiting CLIs (`assetsync task ...`) that these results are committed.
            await self.rt.nc.publish(self.rt.topo.committed("task"), json.dumps(rows.task_ids).encode())

    async def _refresh_value_gauges(self, *, at_start: bool = False) -> None:
        """Per-asset values from the holdings table; at start also the last snapshot and good backup."""
        try:
            # Read back after the prune so assets no longer held disappear from the gauge.
            # This site's own assets (the gauge has no site label; other sites export their own).
            # One asset held on two exchanges (BTC on Binance and OKX) is one series: their sum.
            holdings = await self.db.fetchall(
                "SELECT asset, currency, SUM(value) AS value FROM holdings WHERE origin = ''"
                " AND value IS NOT NULL GROUP BY asset, currency"
            )
            last: list[sqlite3.Row] = []
            backup: list[sqlite3.Row] = []
            if at_start:  # a restarted store reports what the previous run left behind
                last = await self.db.fetchall(
                    "SELECT total_value, total_cost, total_pnl FROM snapshots WHERE origin = ''"
                    " ORDER BY date DESC LIMIT 1"
                )
                backup = await self.db.fetchall("SELECT MAX(finished_at) AS at FROM backups WHERE ok = 1")
        except (sqlite3.Error, StoreUnavailable) as exc:  # metrics only: the batch is already committed
            log.warning("store: could not refresh the value gauges: %s", exc)
            return
        self._holding_value.clear()
        for h in holdings:
            if h["value"] is not None:
                self._holding_value.labels(h["asset"], h["currency"]).set(h["value"])
        for row in last:
            for metric in ("total_value", "total_cost", "total_pnl"):
                self._value.labels(metric).set(row[metric])
        for row in backup:
            if row["at"] is not None:
                self._backup_age.set(row["at"] / 1000)

    async def _report_failure(self, message: str) -> None:
        """Publish a failed `store` task result (at most every few minutes per distinct message)."""
        now = time.monotonic()
        if now - self._reported.get(message, -FAILURE_REPORT_EVERY) < FAILURE_REPORT_EVERY:
            return
        self._reported[message] = now
        ts = now_ms()
        result = TaskResult(
            command_id=f"store-failure-{ts}",
            task="store",
            source="system",
            status="failed",
            started_at=ts,
            finished_at=ts,
            message=message,
        )
        try:
            await self.rt.publisher.publish_now(result)
        except bus.BusError as exc:
            log.error("store: could not report the failure on the bus: %s", exc)

    # --- tasks -----------------------------------------------------------------------------

    async def _run_snapshot(self, cmd: TaskCommand) -> TaskResult:
        started = now_ms()
        try:
            snap = await take_snapshot(
                self.db,
                self.rt.settings,
                cmd,
                started,
                combined=self.rt.settings.config.asset_sync.views.combined,
            )
        except (SnapshotError, StoreUnavailable) as exc:
            log.warning("snapshot: %s", exc)
            return failed_result(cmd, started, str(exc))
        await self.rt.publisher.publish_now(snap)
        self._value.labels("total_value").set(snap.total_value)
        self._value.labels("total_cost").set(snap.total_cost)
        self._value.labels("total_pnl").set(snap.total_pnl)
        return TaskResult(
            command_id=cmd.command_id,
            task="snapshot",
            source="system",
            status="success",
            started_at=started,
            finished_at=now_ms(),
            records=1,
            total=1,
            data_as_of=snap.date,
            message=snapshot_summary(snap),
        )

    async def _run_backup(self, cmd: TaskCommand) -> TaskResult:
        started = now_ms()
        br = await run_backup(self.rt.settings, cmd, started, datetime.now(UTC).astimezone(self._tz))
        await self.rt.publisher.publish_now(br)
        if br.ok:
            self._backup_age.set(br.finished_at / 1000)
        return TaskResult(
            command_id=cmd.command_id,
            task="backup",
            source="system",
            status="success" if br.ok else "failed",
            started_at=started,
            finished_at=br.finished_at,
            records=1 if br.ok else 0,
            total=1,
            message=backup_summary(br),
        )

    async def _run_restore(self, cmd: TaskCommand) -> TaskResult:
        started = now_ms()
        path = cmd.args.get("path", "")
        try:
            summary = await self.db.restore_from(Path(path))
        except (BackupError, StoreUnavailable) as exc:
            return failed_result(cmd, started, f"restore refused: {exc}")
        return TaskResult(
            command_id=cmd.command_id,
            task="restore",
            source="system",
            status="success",
            started_at=started,
            finished_at=now_ms(),
            records=1,
            total=1,
            message=f"restored from {path}: {summary}",
        )


def build(rt: Runtime) -> Service | Disabled:
    """The store runs wherever asked: it needs no credentials."""
    return StoreService(rt)

"""The store service: every fact on the bus into SQLite, plus the daily snapshot and backups."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from assetsync import bus
from assetsync.events import BackupResult, TaskCommand, TaskResult
from assetsync.fx import describe as fx_describe
from assetsync.fx import resolve as fx_resolve
from assetsync.runtime import Runtime
from assetsync.schedule import Scheduler
from assetsync.service import Disabled, Service
from assetsync.tasks import failed_result, now_ms, task_consumer

from assetsync_store.backup import BackupError, create_backup
from assetsync_store.db import Database, StoreBroken, StoreUnavailable
from assetsync_store.fx_rates import save_fetched, save_used, stored_rates
from assetsync_store.snapshot import SnapshotError, compute_snapshot
from assetsync_store.upserts import SNAPSHOT_SQL, Rows, snapshot_row

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

    def _view(self) -> str:
        """The holdings this site's snapshot counts: its own, or every site's with `views.combined`."""
        return "1" if self.rt.settings.config.asset_sync.views.combined else "origin = ''"

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
            holdings = await self.db.fetchall("SELECT asset, currency, value FROM holdings WHERE origin = ''")
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

    def _snapshot_day(self, cmd: TaskCommand) -> str:
        """A scheduled midnight snapshot closes the day that just ended; a manual one is today's."""
        if cmd.slot:
            slot = datetime.fromisoformat(cmd.slot).astimezone(self._tz)
            return (slot - timedelta(seconds=1)).date().isoformat()
        return datetime.now(self._tz).date().isoformat()

    async def _run_snapshot(self, cmd: TaskCommand) -> TaskResult:
        started = now_ms()
        a = self.rt.settings.config.asset_sync
        base = a.base_currency.upper()
        day = self._snapshot_day(cmd)
        try:
            rows = await self.db.fetchall(
                f"SELECT asset, currency, value, total_cost FROM holdings WHERE {self._view()}"
                " ORDER BY origin, asset"
            )
            holdings = [dict(r) for r in rows]
            fx = await fx_resolve(
                {str(h["currency"]).upper() for h in holdings},
                base=base,
                manual={k.upper(): v for k, v in a.fx_rates.items()},
                conf=a.fx,
                stored=await stored_rates(self.db, base),
                today=datetime.now(self._tz).date(),
            )
            if fx.missing:
                raise SnapshotError(_no_rate_message(fx.missing, holdings, base))
            snap = compute_snapshot(
                holdings,
                base_currency=base,
                fx_rates={cur: q.rate for cur, q in fx.rates.items()},
                day=day,
                taken_at=started,
                command_id=cmd.command_id,
                fx_used=fx.rates,
            )
            async with self.db.transaction() as conn:
                await conn.execute(SNAPSHOT_SQL, snapshot_row(snap))
                await save_fetched(conn, base, fx.fetched, started)
                await save_used(conn, snap.date, base, snap.fx)
        except SnapshotError as exc:
            log.warning("snapshot %s: %s", day, exc)
            return failed_result(cmd, started, str(exc))
        except StoreUnavailable as exc:
            return failed_result(cmd, started, str(exc))
        await self.rt.publisher.publish_now(snap)
        self._value.labels("total_value").set(snap.total_value)
        self._value.labels("total_cost").set(snap.total_cost)
        self._value.labels("total_pnl").set(snap.total_pnl)
        pct = f" ({snap.pnl_pct:+.2f}%)" if snap.pnl_pct is not None else ""
        rates = f"; FX {fx_describe(snap.fx, base)}" if snap.fx else ""
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
            message=(
                f"{snap.date}: value {snap.total_value:,.2f} {snap.base_currency}, "
                f"PnL {snap.total_pnl:+,.2f}{pct}, {snap.asset_count} holdings{rates}"
            ),
        )

    async def _run_backup(self, cmd: TaskCommand) -> TaskResult:
        started = now_ms()
        s = self.rt.settings
        local_now = datetime.now(UTC).astimezone(self._tz)
        try:
            outcome = await asyncio.to_thread(
                create_backup,
                s.db_path,
                s.backup_dir,
                s.config.asset_sync.database.backup.keep_days,
                local_now,
            )
            br = BackupResult(
                command_id=cmd.command_id,
                ok=True,
                started_at=started,
                finished_at=now_ms(),
                path=str(outcome.path),
                size_bytes=outcome.size_bytes,
                integrity=outcome.integrity,
                removed=outcome.removed,
            )
        except BackupError as exc:
            br = BackupResult(
                command_id=cmd.command_id, ok=False, started_at=started, finished_at=now_ms(), error=str(exc)
            )
        await self.rt.publisher.publish_now(br)
        if br.ok:
            self._backup_age.set(br.finished_at / 1000)
            removed = f", removed {len(br.removed)} old" if br.removed else ""
            message = f"{br.path} ({br.size_bytes / 1e6:.1f} MB, integrity ok{removed})"
        else:
            message = br.error
        return TaskResult(
            command_id=cmd.command_id,
            task="backup",
            source="system",
            status="success" if br.ok else "failed",
            started_at=started,
            finished_at=br.finished_at,
            records=1 if br.ok else 0,
            total=1,
            message=message,
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


def _no_rate_message(missing: dict[str, str], holdings: list[dict[str, object]], base: str) -> str:
    """Which currency has no rate, what holds it, why — and the keys that fix it."""
    parts = []
    for cur, why in sorted(missing.items()):
        held = ", ".join(sorted(str(h["asset"]) for h in holdings if str(h["currency"]).upper() == cur))
        parts.append(f"no exchange rate from {cur} to {base} (held: {held}): {why}")
    example = ", ".join(f'"{cur}": 7.1' for cur in sorted(missing))
    return (
        "; ".join(parts)
        + f" — set asset_sync.fx_rates (e.g. {{{example}}}) or make asset_sync.fx.source reachable"
    )


def build(rt: Runtime) -> Service | Disabled:
    """The store runs wherever asked: it needs no credentials."""
    return StoreService(rt)

"""The Feishu sink: coalesces a batch of events into the fewest Bitable writes, against a row cache."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assetsync.events import Event, Holding, PriceTick, Snapshot, TaskResult
from assetsync.feishu import schema as fs
from assetsync.feishu.client import FeishuClient, stable_client_token
from assetsync.feishu.errors import (
    RECORD_NOT_FOUND,
    FeishuBadCredentials,
    FeishuError,
    FeishuRejected,
    FeishuTableNotFound,
)
from assetsync.feishu.tables import TableIds, resolve_tables

from assetsync_feishu_writer import rows

if TYPE_CHECKING:
    from assetsync.config import Settings

log = logging.getLogger("assetsync.feishu_writer")


@dataclass(frozen=True)
class Rejection:
    """Feishu refused the write of the event at `index` for good."""

    index: int
    table: str
    field: str
    reason: str
    record_key: str


@dataclass
class Outcome:
    """What one `apply` did."""

    rejected: list[Rejection] = field(default_factory=list)
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0


@dataclass
class _Cache:
    """Rows of one table keyed by the writer's natural key: key -> (record_id, cells)."""

    rows: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    loaded_at: float = 0.0
    valid: bool = False


class FeishuWriter:
    """Writes 持仓 (upsert by 资产代码), 历史 (one row per day) and 日志 (one row per run)."""

    def __init__(
        self,
        client: FeishuClient,
        settings: Settings,
        *,
        fresh_for: float = 60.0,
        cache_ttl: float = 6 * 3600.0,
        remembered_results: int = 4096,
    ) -> None:
        self.client = client
        self.settings = settings
        self.tz = settings.timezone
        self.site_id = settings.site_id
        self.combined = settings.config.asset_sync.views.combined
        self.fresh_for = fresh_for  # a cache older than this is re-read before creating rows
        self.cache_ttl = cache_ttl
        self.tables: TableIds | None = None
        self._holdings = _Cache()
        self._history = _Cache()
        self._logged: OrderedDict[str, None] = OrderedDict()
        self._remember = remembered_results
        self._lock = asyncio.Lock()

    # --- setup ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Resolve the table ids and read 持仓 into the cache (raises FeishuError if Feishu is unusable)."""
        async with self._lock:
            await self._ensure_tables()
            await self._load_holdings()

    async def _ensure_tables(self) -> TableIds:
        if self.tables is None:
            self.tables = await resolve_tables(self.client, self.settings)
        return self.tables

    async def _load_holdings(self) -> None:
        ids = await self._ensure_tables()
        records = await self.client.search_records(ids.holdings)
        cache: dict[str, tuple[str, dict[str, Any]]] = {}
        dupes = 0
        for r in records:
            key = rows.asset_key(str(r.fields.get(fs.CODE) or ""))
            if not key:
                continue
            if key in cache:
                dupes += 1  # keep the first; a duplicate was made by hand
                continue
            cache[key] = (r.record_id, r.fields)
        if dupes:
            log.warning("持仓 has %d duplicate 资产代码 rows; the writer updates the first of each", dupes)
        self._holdings = _Cache(cache, time.monotonic(), True)

    async def _load_history(self) -> None:
        ids = await self._ensure_tables()
        cache: dict[str, tuple[str, dict[str, Any]]] = {}
        for r in await self.client.search_records(ids.history):
            day = rows.day_of(r.fields.get(fs.SNAP_DATE), self.tz)
            if day and day not in cache:
                cache[day] = (r.record_id, r.fields)
        self._history = _Cache(cache, time.monotonic(), True)

    def invalidate(self) -> None:
        """Forget cached rows (after a failed write we cannot know what Feishu kept)."""
        self._holdings.valid = False
        self._history.valid = False

    @property
    def holdings_cache(self) -> dict[str, tuple[str, dict[str, Any]]]:
        return self._holdings.rows

    # --- the batch ------------------------------------------------------------------------
    async def apply(self, events: Sequence[Event]) -> Outcome:
        """Write what a batch of events means. Raises a transient FeishuError to have it retried."""
        out = Outcome()
        hold_idx: list[int] = []
        snap_idx: list[int] = []
        res_idx: list[int] = []
        # Other sites' records never touch this site's rows (they are acked unwritten), unless the
        # user asked for the combined view; `view` keeps the batch's indices for rejections.
        view = [rows.site_view(rows.exchange_view(e), self.site_id, self.combined) for e in events]
        for i, e in enumerate(view):
            if e is None:
                continue
            if isinstance(e, (Holding, PriceTick)):
                hold_idx.append(i)
            elif isinstance(e, Snapshot):
                snap_idx.append(i)
            elif isinstance(e, TaskResult):
                res_idx.append(i)
        transient: FeishuError | None = None
        async with self._lock:
            steps = (
                (fs.HOLDINGS.name, hold_idx, self._write_holdings),
                (fs.HISTORY.name, snap_idx, self._write_history),
                (fs.LOGS.name, res_idx, self._write_logs),
            )
            for table, idx, step in steps:
                if not idx:
                    continue
                try:
                    await step([v for i in idx if (v := view[i]) is not None], out)
                except FeishuError as exc:
                    self.invalidate()
                    if blocking(exc):
                        log.warning("feishu-writer: %s write will be retried: %s", table, exc)
                        transient = transient or exc
                        continue
                    log.error("feishu-writer: %s rejected %d event(s): %s", table, len(idx), exc)
                    for i in idx:
                        out.rejected.append(Rejection(i, table, exc.field, str(exc), _key(events[i])))
        if transient is not None:
            raise transient
        return out

    async def _fresh(self, cache: _Cache, loader: Any) -> None:
        if not cache.valid or time.monotonic() - cache.loaded_at > self.cache_ttl:
            await loader()

    def _plan_holdings(
        self, events: Sequence[Event]
    ) -> tuple[list[tuple[str, str, dict[str, Any]]], list[tuple[str, dict[str, Any]]], int]:
        hs, ts = rows.latest_by_asset(
            (e for e in events if isinstance(e, Holding)), (e for e in events if isinstance(e, PriceTick))
        )
        cache = self._holdings.rows
        updates: list[tuple[str, str, dict[str, Any]]] = []
        creates: list[tuple[str, dict[str, Any]]] = []
        unchanged = 0
        for asset, h in hs.items():
            existing = cache.get(asset)
            desired = rows.holding_cells(h, existing[1] if existing else None, ts.get(asset))
            if existing is None:
                creates.append((asset, rows.diff(desired, None)))
                continue
            if rows.is_stale(h, existing[1]):
                unchanged += 1  # older than what the row shows (a redelivery overtaken by a newer run)
                continue
            change = rows.diff(desired, existing[1], stamp=fs.UPDATED)
            if rows.user_owned(existing[1], h):
                # What the collector read from the row is the user's latest 数量/成本价: remember it.
                existing[1][fs.QUANTITY] = h.quantity
                existing[1][fs.AVG_COST] = h.avg_cost
            if change:
                updates.append((asset, existing[0], change))
            else:
                unchanged += 1
        for asset, t in ts.items():
            if asset in hs:
                continue
            existing = cache.get(asset)
            if existing is None:
                continue  # a price for an asset with no row: holdings define the rows
            desired_t = rows.tick_cells(t, existing[1])
            if desired_t is None:
                unchanged += 1
                continue
            change = rows.diff(desired_t, existing[1], stamp=fs.UPDATED)
            if change:
                updates.append((asset, existing[0], change))
            else:
                unchanged += 1
        return updates, creates, unchanged

    async def _write_holdings(self, events: Sequence[Event], out: Outcome) -> None:
        await self._reread_if_vanished(
            fs.HOLDINGS.name, self._load_holdings, self._upsert_holdings, events, out
        )

    async def _upsert_holdings(self, events: Sequence[Event], out: Outcome) -> None:
        ids = await self._ensure_tables()
        await self._fresh(self._holdings, self._load_holdings)
        updates, creates, unchanged = self._plan_holdings(events)
        read_from_feishu = {
            rows.asset_key(e.asset) for e in events if isinstance(e, Holding) and e.cost_source == "feishu"
        }
        stale = time.monotonic() - self._holdings.loaded_at > self.fresh_for
        if creates and (stale or any(asset in read_from_feishu for asset, _ in creates)):
            # New keys against an old cache, or a fund row the collector just read from Feishu: the
            # row may exist (added by hand, or by a write whose answer was lost). Re-read once so
            # nothing is created twice.
            await self._load_holdings()
            updates, creates, unchanged = self._plan_holdings(events)
        out.unchanged += unchanged
        await self._commit(ids.holdings, fs.HOLDINGS.name, self._holdings, updates, creates, out)

    async def _commit(
        self,
        table_id: str,
        name: str,
        cache: _Cache,
        updates: Sequence[tuple[str, str, dict[str, Any]]],
        creates: Sequence[tuple[str, dict[str, Any]]],
        out: Outcome,
    ) -> None:
        """Write the planned changes (updates first, then creates) and fold them into the cache."""
        if updates:
            await self.client.batch_update(table_id, [(rid, change) for _, rid, change in updates])
            for key, rid, change in updates:
                cache.rows[key] = (rid, rows.merged(cache.rows[key][1], change))
            out.updated[name] += len(updates)
        if creates:
            payload = [cells for _, cells in creates]
            made = await self.client.batch_create(table_id, payload, client_token=_token(table_id, payload))
            for (key, cells), rec in zip(creates, made, strict=False):
                cache.rows[key] = (rec.record_id, dict(cells))
            out.created[name] += len(creates)

    async def _drop_sold(self, results: Sequence[TaskResult], out: Outcome) -> None:
        """A crypto or okx run's complete asset list: 加密货币 rows for assets no longer held are deleted.

        Each site's run prunes only that site's rows (another site's are `<asset>@<site>`), and each
        exchange's run only that exchange's rows (OKX's are `<asset>@OKX`).
        """
        ids = await self._ensure_tables()
        keep: dict[tuple[str, str], set[str]] = {}
        for r in results:
            if r.task in ("crypto", "okx") and r.status != "failed" and r.assets is not None:
                site = "" if r.origin in ("", self.site_id) else rows.asset_key(r.origin)
                tag = rows.EXCHANGE_TAGS.get(r.source, "") if r.task == "okx" else ""
                suffix = (f"@{tag}" if tag else "") + (f"@{r.origin}" if site else "")
                keep[(site, tag)] = {rows.asset_key(a + suffix) for a in r.assets}
        if not keep:
            return
        await self._fresh(self._holdings, self._load_holdings)
        cache = self._holdings.rows
        stale = [
            k
            for k, (_, cells) in cache.items()
            if cells.get(fs.ASSET_TYPE) == fs.TYPE_CRYPTO
            and (owner := (rows.site_of(k), rows.exchange_of(k))) in keep
            and k not in keep[owner]
        ]
        if not stale:
            return
        await self.client.batch_delete(ids.holdings, [cache[k][0] for k in stale])
        for k in stale:
            cache.pop(k, None)
        out.deleted[fs.HOLDINGS.name] += len(stale)
        log.info(
            "feishu-writer: removed %d 持仓 row(s) no longer held: %s", len(stale), rows.keys_text(stale)
        )

    async def _write_history(self, events: Sequence[Event], out: Outcome) -> None:
        await self._reread_if_vanished(fs.HISTORY.name, self._load_history, self._upsert_history, events, out)

    async def _reread_if_vanished(
        self,
        name: str,
        load: Callable[[], Awaitable[None]],
        upsert: Callable[[Sequence[Event], Outcome], Awaitable[None]],
        events: Sequence[Event],
        out: Outcome,
    ) -> None:
        """Upsert; if a cached row was deleted in Feishu meanwhile, re-read the table and upsert again."""
        try:
            await upsert(events, out)
        except FeishuRejected as exc:
            if exc.code != RECORD_NOT_FOUND:
                raise
            log.warning("feishu-writer: a %s row vanished in Feishu; re-reading the table", name)
            await load()
            await upsert(events, out)

    async def _upsert_history(self, events: Sequence[Event], out: Outcome) -> None:
        ids = await self._ensure_tables()
        await self._fresh(self._history, self._load_history)
        latest: dict[str, Snapshot] = {}
        for e in events:
            if isinstance(e, Snapshot):
                cur = latest.get(e.date)
                if cur is None or e.taken_at >= cur.taken_at:
                    latest[e.date] = e
        cache = self._history.rows
        updates: list[tuple[str, str, dict[str, Any]]] = []
        creates: list[tuple[str, dict[str, Any]]] = []
        for day, s in latest.items():
            desired = rows.history_cells(s, self.tz)
            existing = cache.get(day)
            if existing is None:
                creates.append((day, rows.diff(desired, None)))
            else:
                change = rows.diff(desired, existing[1])
                if change:
                    updates.append((day, existing[0], change))
                else:
                    out.unchanged += 1
        await self._commit(ids.history, fs.HISTORY.name, self._history, updates, creates, out)

    async def _write_logs(self, events: Sequence[Event], out: Outcome) -> None:
        ids = await self._ensure_tables()
        results = [e for e in events if isinstance(e, TaskResult)]
        fresh: dict[str, TaskResult] = {}
        for r in results:
            if r.origin in ("", self.site_id) and r.command_id not in self._logged:
                fresh[r.command_id] = r
        if fresh:
            payload = [rows.log_cells(r) for r in fresh.values()]
            # A client_token per set of runs: a retried create after a lost answer is not duplicated.
            token = stable_client_token("logs:" + ids.logs + ":" + ",".join(sorted(fresh)))
            await self.client.batch_create(ids.logs, payload, client_token=token)
            for cid in fresh:
                self._logged[cid] = None
            while len(self._logged) > self._remember:
                self._logged.popitem(last=False)
            out.created[fs.LOGS.name] += len(payload)
        await self._drop_sold(results, out)


def blocking(exc: FeishuError) -> bool:
    """Errors that hold every event back (retry later) rather than reject one: Feishu down or unusable."""
    return exc.transient or isinstance(exc, (FeishuTableNotFound, FeishuBadCredentials))


def _key(e: Event) -> str:
    try:
        return e.key()
    except TypeError:
        return type(e).__name__


def _token(table_id: str, payload: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return stable_client_token(f"{table_id}:{digest}")

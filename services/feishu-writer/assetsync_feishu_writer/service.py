"""feishu-writer wiring: three durable consumers feeding one FeishuWriter; ack only after Feishu accepted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AsyncExitStack

from assetsync import bus
from assetsync.events import SinkRejected
from assetsync.feishu.client import FeishuClient, RetryPolicy
from assetsync.feishu.errors import FeishuError
from assetsync.runtime import Runtime
from assetsync.service import Disabled, Service

from assetsync_feishu_writer import rows
from assetsync_feishu_writer.writer import FeishuWriter, Outcome, blocking

log = logging.getLogger("assetsync.feishu_writer")

NAME = "feishu-writer"
# Feishu unusable (tables missing, credentials refused): wait this long before trying again.
BLOCKED_DELAY = 60.0
SERVICE_RETRY = RetryPolicy(max_attempts=5, backoff_base=0.5, backoff_cap=10.0, budget=30.0)


def build(rt: Runtime) -> Service | Disabled:
    """The service, or Disabled when Feishu is off or its credentials are absent."""
    s = rt.settings
    if s.config.asset_sync.feishu.enabled is False:
        return Disabled("asset_sync.feishu.enabled is false")
    if not s.feishu_on():
        return Disabled(
            "no Feishu credentials (mcp_server.app_id, mcp_server.app_secret, asset_sync.feishu.app_token)"
        )
    return FeishuWriterService(rt)


class FeishuWriterService:
    """Consumes holdings, prices, snapshots and task results; writes 持仓, 历史 and 日志."""

    name = NAME

    def __init__(self, rt: Runtime, *, linger: float = 1.0, client: FeishuClient | None = None) -> None:
        self.rt = rt
        self.linger = linger
        self._client = client
        self.writer: FeishuWriter | None = None
        self.consumers: list[bus.Consumer] = []
        self.last_error = ""
        m = rt.metrics
        self._m_rows = m.counter(
            "assetsync_feishu_rows_written_total", "Rows written to Feishu", ("table", "op")
        )
        self._m_rejected = m.counter(
            "assetsync_feishu_rejected_total", "Events Feishu rejected permanently (termed)", ("table",)
        )
        self._m_unchanged = m.counter(
            "assetsync_feishu_rows_unchanged_total", "Rows skipped: nothing changed"
        )

    async def start(self, stack: AsyncExitStack) -> None:
        rt = self.rt
        # Short in-call retries: a longer outage is waited out by JetStream's nak backoff instead.
        client = self._client or FeishuClient.from_settings(
            rt.settings, metrics=rt.metrics, retry=SERVICE_RETRY
        )
        if self._client is None:
            stack.push_async_callback(client.aclose)
        self.writer = FeishuWriter(client, rt.settings)
        # Read 持仓 in the background: a slow or absent Feishu must not hold up the stack's start.
        warm = asyncio.create_task(self._warm(self.writer), name="feishu-writer:warm")
        stack.callback(warm.cancel)
        topo = rt.topo
        specs = [
            self._spec(
                "portfolio", topo.portfolio, (topo.holding(), topo.snapshot()), 2000, "holdings, snapshots"
            ),
            self._spec("prices", topo.market, (topo.price(),), 2000, "price ticks"),
            self._spec("results", topo.ops, (topo.result(),), 200, "task results"),
        ]
        for spec in specs:
            c = rt.consumer(spec, self.handle)
            await c.start()
            stack.push_async_callback(c.stop)
            self.consumers.append(c)

    async def _warm(self, writer: FeishuWriter) -> None:
        try:
            await writer.start()
        except FeishuError as exc:
            # Not fatal: events wait in JetStream and the first batch tries again.
            self.last_error = f"Feishu not ready: {exc}"
            log.warning("feishu-writer: %s", self.last_error)
        except Exception as exc:  # a background task: report, never lose the error silently
            self.last_error = f"Feishu warm-up failed: {type(exc).__name__}: {exc}"
            log.exception("feishu-writer: warm-up failed")

    def _spec(
        self, part: str, stream: str, subjects: tuple[str, ...], batch: int, what: str
    ) -> bus.ConsumerSpec:
        # A sync's events arrive within moments: linger so they coalesce into one batch of writes.
        return bus.ConsumerSpec(
            durable=self.rt.durable(f"feishu-writer-{part}"),
            stream=stream,
            subjects=subjects,
            batch_size=batch,
            linger=self.linger,
            ack_wait=180.0,
            nak_delay=2.0,
            description=f"feishu-writer: {what} to Feishu",
        )

    def health(self) -> tuple[bool, str]:
        if self.last_error:
            return False, self.last_error
        return True, "ok"

    async def handle(self, batch: Sequence[bus.Delivery]) -> None:
        """One consumer batch: written in as few calls as possible; transient failures nak the batch."""
        assert self.writer is not None
        try:
            outcome = await self.writer.apply([d.event for d in batch])
        except FeishuError as exc:
            self.last_error = str(exc)
            if blocking(exc) and not exc.transient:
                log.error("feishu-writer: Feishu is unusable, events wait: %s", exc)
                raise bus.TransientError(str(exc), delay=BLOCKED_DELAY) from exc
            raise bus.TransientError(str(exc), delay=exc.retry_after) from exc
        self.last_error = ""
        self._count(outcome)
        if outcome.rejected:
            await self._reject(batch, outcome)

    def _count(self, outcome: Outcome) -> None:
        for table, n in outcome.created.items():
            self._m_rows.labels(table, "create").inc(n)
        for table, n in outcome.updated.items():
            self._m_rows.labels(table, "update").inc(n)
        for table, n in outcome.deleted.items():
            self._m_rows.labels(table, "delete").inc(n)
        if outcome.unchanged:
            self._m_unchanged.inc(outcome.unchanged)

    async def _reject(self, batch: Sequence[bus.Delivery], outcome: Outcome) -> None:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        reasons: dict[tuple[str, str], str] = {}
        for rej in outcome.rejected:
            batch[rej.index].term(f"Feishu {rej.table}: {rej.reason}")
            self._m_rejected.labels(rej.table).inc()
            groups[(rej.table, rej.field)].append(rej.record_key)
            reasons[(rej.table, rej.field)] = rej.reason
        now = int(time.time() * 1000)
        for (table, _field), keys in groups.items():
            log.error(
                "feishu-writer: %s rejected %d record(s) (%s): %s",
                table,
                len(keys),
                rows.keys_text(keys, 5),
                reasons[(table, _field)],
            )
            await self.rt.publisher.publish(
                SinkRejected(
                    sink="feishu",
                    target=table,
                    record_key=rows.keys_text(keys, 5),
                    reason=reasons[(table, _field)],
                    at=now,
                )
            )

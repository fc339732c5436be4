"""Chaos: SIGKILL each service process in turn under the supervisor while events stream in.

At the end SQLite holds every price exactly once and the latest of every holding, and the emulated
Feishu 持仓 table holds exactly one row per 资产代码 with its latest quantity.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

from assetsync import events as ev
from assetsync.embedded import EmbeddedNats
from assetsync.feishu import schema as fs
from assetsync.metrics import Metrics
from assetsync.retry import Backoff
from assetsync.runtime import Runtime, open_runtime
from assetsync.supervisor import Supervisor, plan

from tests.feishu.support import feishu_site
from tests.scale.support import read_only
from tests.support import wait_for

ASSETS = [f"K{i:02d}" for i in range(30)]
T0 = 1_790_000_000_000


class Stream:
    """The collectors' side: ~2000 prices/s and a round of holdings for every asset every 0.25 s."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.ticks = 0
        self.round = 0
        self.running = True

    async def run(self) -> None:
        while self.running:
            for _ in range(500):
                await self.rt.publisher.publish(
                    ev.PriceTick(
                        source="binance",
                        asset=ASSETS[self.ticks % len(ASSETS)],
                        price=1.0,
                        currency="USDT",
                        ts=T0 + self.ticks,
                    )
                )
                self.ticks += 1
            await self.holdings_round()
            await self.rt.publisher.flush()
            await asyncio.sleep(0.25)

    def advanced(self, to_round: int) -> bool:
        return self.round >= to_round

    async def holdings_round(self) -> None:
        self.round += 1
        for a in ASSETS:
            await self.rt.publisher.publish(
                ev.Holding(
                    source="binance",
                    asset=a,
                    quantity=float(self.round),
                    currency="USDT",
                    as_of=T0 + self.round * 1000,
                    price=2.0,
                    avg_cost=1.0,
                )
            )


def sqlite_state(db: Path) -> tuple[int, int, set[float]]:
    try:
        with read_only(db) as conn:
            (ticks,) = conn.execute("SELECT COUNT(*) FROM price_history").fetchone()
            rows = list(conn.execute("SELECT quantity FROM holdings"))
    except sqlite3.OperationalError:
        return 0, 0, set()
    return int(ticks), len(rows), {r[0] for r in rows}


async def test_sigkill_each_service_in_turn_loses_and_duplicates_nothing(
    nats_server: EmbeddedNats, make_settings: Any, prefix: str, tmp_path: Path
) -> None:
    async with feishu_site() as site:
        site.emu.seed_demo()
        settings = make_settings(site.overrides())
        env = {
            **os.environ,
            "ASSETSYNC_NATS__PREFIX": prefix,
            "ASSETSYNC_MCP_SERVER__APP_ID": site.emu.app_id,
            "ASSETSYNC_MCP_SERVER__APP_SECRET": site.emu.app_secret,
            "ASSETSYNC_ASSET_SYNC__FEISHU__APP_TOKEN": site.emu.app_token,
            "ASSETSYNC_ASSET_SYNC__FEISHU__BASE_URL": site.url,
            "ASSETSYNC_SYNC_GATEWAY__ENABLED": "false",
        }
        off = {"collector-crypto": 0, "collector-okx": 0, "collector-fund": 0, "market": 0, "alerter": 0}
        off["sync-gateway"] = 0
        specs = plan(off)
        assert [s.label for s in specs] == ["store.1", "feishu-writer.1"]
        out, err = io.StringIO(), io.StringIO()
        sup = Supervisor(
            specs,
            nats_url=nats_server.url,
            cli_args=["--data-dir", str(settings.data_dir), "--log-dir", str(tmp_path / "logs")],
            env=env,
            backoff=Backoff(base=0.2, cap=30.0, jitter=(1.0, 1.0)),
            out=out,
            err=err,
        )
        stop = asyncio.Event()
        supervising = asyncio.create_task(sup.run(stop))

        def ready(label: str, times: int) -> bool:
            return out.getvalue().count(f"[{label}] ready in") >= times

        async with open_runtime(settings, nats_server.url, name="test-collector", metrics=Metrics()) as rt:
            stream = Stream(rt)
            publishing: asyncio.Task[None] | None = None
            try:
                for label in ("store.1", "feishu-writer.1"):
                    await wait_for(partial(ready, label, 1), 30, what=f"{label} ready")
                publishing = asyncio.create_task(stream.run())
                for label in ("store.1", "feishu-writer.1"):
                    # Let the service work under load, then kill it mid-batch.
                    start_round = stream.round
                    await wait_for(partial(stream.advanced, start_round + 6), 20, what="events flowing")
                    pid = sup.child(label).pid
                    assert pid is not None
                    os.kill(pid, signal.SIGKILL)
                    await wait_for(partial(ready, label, 2), 30, what=f"{label} restarted")
                start_round = stream.round
                await wait_for(lambda: stream.round >= start_round + 6, 20, what="events after the restarts")
            finally:
                stream.running = False
                if publishing is not None:
                    await publishing
            await rt.publisher.flush()
            final = float(stream.round)
            ticks = stream.ticks

            def feishu_state() -> tuple[int, set[str], set[float]]:
                rows = site.emu.rows(fs.HOLDINGS.name)
                return (
                    len(rows),
                    {str(r.get(fs.CODE)) for r in rows},
                    {float(r.get(fs.QUANTITY) or 0) for r in rows},
                )

            want_feishu = (len(ASSETS), set(ASSETS), {final})
            await wait_for(lambda: feishu_state() == want_feishu, 30, interval=0.2, what="Feishu converged")
            # Prices delivered to the killed store come back after its consumer's ack_wait (30 s).
            want_db = (ticks, len(ASSETS), {final})
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: sqlite_state(settings.db_path) == want_db, 45, interval=0.2)
            assert sqlite_state(settings.db_path) == want_db
            assert feishu_state() == want_feishu  # nothing was created twice meanwhile
        stop.set()
        assert await supervising == 0
    assert sup.child("store.1").exit_codes[0] == -signal.SIGKILL
    assert sup.child("feishu-writer.1").exit_codes[0] == -signal.SIGKILL
    assert [c.starts for c in sup.children] == [2, 2]
    assert "killed by SIGKILL" in err.getvalue()

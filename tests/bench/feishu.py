"""`./run bench feishu`: writing 1,000 holdings to the Feishu 持仓 table, then re-syncs, vs a naive writer.

Both run in this process against the Feishu Open Platform emulator on loopback (each request delayed
by `--latency`, default 5 ms, to stand in for the network). Three syncs of N holdings:
  full     — an empty 持仓 table (the writer's start-up read is counted in this phase),
  changed  — the same N holdings, 50 with a new price,
  none     — the same N holdings again, nothing changed (only a newer timestamp).
The naive baseline does what the original tool did: per holding, one search for its row, then one
create or update. Targets: API calls ≤ ceil(N/1000) + 1 for the full sync, ≤ 2 for 50 changes,
0 writes when nothing changed. Token requests are shown separately.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass

from assetsync.config import Settings, load_settings
from assetsync.events import Holding
from assetsync.feishu import schema as fs
from assetsync.feishu.client import WRITE_KINDS, FeishuClient, RetryPolicy
from assetsync.feishu.setup import setup_tables
from assetsync.secrets import Secret
from assetsync_emulators.common import serve
from assetsync_emulators.feishu import FeishuEmulator
from assetsync_feishu_writer import rows
from assetsync_feishu_writer.writer import FeishuWriter

T0 = 1_790_000_000_000


@dataclass
class Phase:
    """One measured sync."""

    name: str
    calls: Counter[str]
    wall: float

    @property
    def total(self) -> int:
        return sum(n for k, n in self.calls.items() if k != "token")

    @property
    def writes(self) -> int:
        return sum(n for k, n in self.calls.items() if k in WRITE_KINDS)


def holdings(n: int, hour: int, bumped: int) -> list[Holding]:
    """The account at `hour`: n assets, the first `bumped` priced one unit higher than the rest's base."""
    return [
        Holding(
            source="binance",
            asset=f"A{i:04d}",
            quantity=1.0 + i,
            currency="USDT",
            as_of=T0 + hour * 3_600_000,
            price=100.0 + i % 97 + (1.0 if i < bumped else 0.0),
            avg_cost=90.0,
            name=f"Asset {i}",
        )
        for i in range(n)
    ]


def settings_for(emu: FeishuEmulator, url: str, tables: dict[str, str] | None = None) -> Settings:
    feishu: dict[str, object] = {"base_url": url, "app_token": emu.app_token}
    if tables:
        feishu["tables"] = tables  # the ids setup-tables printed, as a deployment configures them
    return load_settings(
        None,
        environ={},
        overrides={
            "mcp_server": {"app_id": emu.app_id, "app_secret": emu.app_secret},
            "asset_sync": {"feishu": feishu},
        },
    )


def client(emu: FeishuEmulator, url: str) -> FeishuClient:
    # No client-side pacing here: the emulator is not rate limited, so both writers run flat out.
    return FeishuClient(
        url, emu.app_id, Secret(emu.app_secret), emu.app_token, max_qps=None, retry=RetryPolicy()
    )


async def measure(name: str, emu: FeishuEmulator, work: object) -> Phase:
    emu.calls.clear()
    started = time.perf_counter()
    await work  # type: ignore[misc]
    return Phase(name, Counter(emu.calls), time.perf_counter() - started)


async def writer_phases(n: int, changed: int, latency: float) -> list[Phase]:
    emu = FeishuEmulator()
    async with serve(emu.app) as url, client(emu, url) as c:
        report = await setup_tables(settings_for(emu, url), c)
        settings = settings_for(emu, url, {t.spec.role: t.table_id for t in report.tables})
        emu.switch.latency = latency
        w = FeishuWriter(c, settings)

        async def full() -> None:
            await w.start()
            await w.apply(holdings(n, 0, 0))

        out = [await measure("full", emu, full())]
        out.append(await measure(f"{changed} changed", emu, w.apply(holdings(n, 1, changed))))
        out.append(await measure("none changed", emu, w.apply(holdings(n, 2, changed))))
        assert len(emu.rows(fs.HOLDINGS.name)) == n
        return out


async def naive_sync(c: FeishuClient, table_id: str, batch: list[Holding]) -> None:
    """The original loop: find each asset's row, then create or update it, one call at a time."""
    for h in batch:
        found = await c.search_records(
            table_id,
            filter={
                "conjunction": "and",
                "conditions": [{"field_name": fs.CODE, "operator": "is", "value": [h.asset]}],
            },
        )
        cells = rows.diff(rows.holding_cells(h, None), None)
        if found:
            await c.batch_update(table_id, [(found[0].record_id, cells)])
        else:
            await c.batch_create(table_id, [cells])


async def naive_phases(n: int, changed: int, latency: float) -> list[Phase]:
    emu = FeishuEmulator()
    async with serve(emu.app) as url:
        settings = settings_for(emu, url)
        async with client(emu, url) as c:
            await setup_tables(settings, c)
            tid = emu.table(fs.HOLDINGS.name).table_id
            emu.switch.latency = latency
            out = [await measure("full", emu, naive_sync(c, tid, holdings(n, 0, 0)))]
            out.append(await measure(f"{changed} changed", emu, naive_sync(c, tid, holdings(n, 1, changed))))
            out.append(await measure("none changed", emu, naive_sync(c, tid, holdings(n, 2, changed))))
            assert len(emu.rows(fs.HOLDINGS.name)) == n
            return out


async def run(n: int, changed: int, latency: float) -> int:
    ours = await writer_phases(n, changed, latency)
    naive = await naive_phases(n, changed, latency)
    targets = [math.ceil(n / 1000) + 1, 2, 0]
    print(f"Feishu writer: {n} holdings, emulator latency {latency * 1000:.0f} ms/request")
    print(
        f"{'sync':<14}{'calls':>7}{'writes':>8}{'wall s':>9}   {'naive calls':>11}{'naive s':>9}   target   ok"
    )
    ok_all = True
    for mine, base, target in zip(ours, naive, targets, strict=True):
        value = mine.writes if target == 0 else mine.total
        ok = value <= target
        ok_all &= ok
        what = f"writes ≤ {target}" if target == 0 else f"calls ≤ {target}"
        print(
            f"{mine.name:<14}{mine.total:>7}{mine.writes:>8}{mine.wall:>9.3f}   {base.total:>11}{base.wall:>9.2f}"
            f"   {what:<14} {'yes' if ok else 'NO'}"
        )
        detail = ", ".join(f"{k}={v}" for k, v in sorted(mine.calls.items()))
        print(f"{'':<14}({detail or 'no calls'})")
    speedup = sum(p.wall for p in naive) / max(1e-9, sum(p.wall for p in ours))
    print(f"total wall: writer {sum(p.wall for p in ours):.2f} s, naive {sum(p.wall for p in naive):.2f} s "
          f"(×{speedup:.0f}); calls: writer {sum(p.total for p in ours)}, naive {sum(p.total for p in naive)}")  # fmt: skip
    print("targets met" if ok_all else "TARGETS MISSED")
    return 0 if ok_all else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench feishu", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--holdings", type=int, default=1000)
    p.add_argument("--changed", type=int, default=50)
    p.add_argument("--latency", type=float, default=0.005, help="seconds added to every emulator request")
    args = p.parse_args(argv)
    return asyncio.run(run(args.holdings, args.changed, args.latency))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

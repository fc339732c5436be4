"""Soak: `assetsync up --processes` under steady load while services are SIGKILLed and the embedded
nats-server is killed at random; at the end SQLite, the Feishu emulator and the gateway's feeds hold the
same counts and no process of the stack is left. `./run soak [--minutes N] [--seed S]`; exit 0 = pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from assetsync.feishu import schema as fs
from assetsync.stack import NatsOwner
from assetsync_emulators.common import serve_in_thread
from assetsync_emulators.feishu import FeishuEmulator

from tests.lifecycle.load import EventStream
from tests.lifecycle.support import Up, processes_mentioning

ASSETS = 20


def say(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", flush=True)


def count(db: Path, sql: str) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return -1


def service_pids(up: Up) -> dict[str, int]:
    """The live child process of each service (`assetsync service NAME`)."""
    out: dict[str, int] = {}
    for pid in processes_mentioning(" service "):
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if up.proc is not None and ppid == up.proc.pid and "service" in words:
            out[words[words.index("service") + 1]] = pid
    return out


class Counts:
    """What each place holds; converged when all agree with what was published."""

    def __init__(self, up: Up, emu: FeishuEmulator, stream: EventStream) -> None:
        self.up, self.emu, self.stream = up, emu, stream

    def now(self) -> dict[str, object]:
        db = self.up.data_dir / "assets.db"
        feeds = self.up.data_dir / "gateway" / "feeds.db"
        rows = self.emu.rows(fs.HOLDINGS.name)
        return {
            "sqlite prices": count(db, "SELECT COUNT(*) FROM price_history"),
            "sqlite holdings at final": count(
                db, f"SELECT COUNT(*) FROM holdings WHERE quantity = {float(self.stream.rounds)}"
            ),
            "feishu holdings at final": sum(
                1 for r in rows if float(r.get(fs.QUANTITY) or 0) == float(self.stream.rounds)
            ),
            "feishu holding rows": len(rows),
            "gateway price records": count(feeds, "SELECT COUNT(*) FROM records WHERE code = 'AS002'"),
            "gateway holding records": count(feeds, "SELECT COUNT(*) FROM records WHERE code = 'AS001'"),
        }

    def want(self) -> dict[str, object]:
        s = self.stream
        return {
            "sqlite prices": s.ticks,
            "sqlite holdings at final": ASSETS,
            "feishu holdings at final": ASSETS,
            "feishu holding rows": ASSETS,
            "gateway price records": s.ticks,
            "gateway holding records": s.rounds * ASSETS,
        }


async def chaos(up: Up, rng: random.Random, until: float, tally: dict[str, int]) -> None:
    """Every few seconds: SIGKILL a random service, or kill the embedded nats-server (no faster than `up`
    tolerates: deaths closer together than NatsOwner.STABLE_AFTER count as a crash loop)."""
    last_nats = 0.0
    while time.monotonic() < until:
        await asyncio.sleep(rng.uniform(4.0, 9.0))
        if time.monotonic() >= until:
            return
        if rng.random() < 0.35 and time.monotonic() - last_nats > NatsOwner.STABLE_AFTER + 2:
            last_nats = time.monotonic()
            with contextlib.suppress(OSError, KeyError, ValueError):
                pid = int(up.state()["nats_pid"])
                os.kill(pid, rng.choice([signal.SIGKILL, signal.SIGTERM]))
                tally["nats-server"] = tally.get("nats-server", 0) + 1
                say(f"killed nats-server (pid {pid})")
            continue
        pids = service_pids(up)
        if pids:
            name = rng.choice(sorted(pids))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[name], signal.SIGKILL)
                tally[name] = tally.get(name, 0) + 1
                say(f"SIGKILLed {name} (pid {pids[name]})")


async def soak(minutes: float, seed: int, root: Path) -> int:
    rng = random.Random(seed)
    say(f"{minutes:g} minutes, seed {seed}, in {root}")
    emu = FeishuEmulator()
    emu.seed_demo()
    with serve_in_thread(emu.app) as feishu_url:
        up = Up(
            root,
            "site",
            args=["--processes", "--replicas", "collector-crypto=0,collector-fund=0,alerter=0"],
            metrics_port=0,
            env={
                "ASSETSYNC_MCP_SERVER__APP_ID": emu.app_id,
                "ASSETSYNC_MCP_SERVER__APP_SECRET": emu.app_secret,
                "ASSETSYNC_ASSET_SYNC__FEISHU__APP_TOKEN": emu.app_token,
                "ASSETSYNC_ASSET_SYNC__FEISHU__BASE_URL": feishu_url,
            },
        )
        try:
            up.start()
            deadline = time.monotonic() + 90
            while up.out.count("ready in") < 3:
                if (up.proc is not None and up.proc.poll() is not None) or time.monotonic() > deadline:
                    say(f"FAIL: the stack did not start\n{up.out[-3000:]}\n{up.err[-3000:]}")
                    return 1
                await asyncio.sleep(0.2)
            stream = EventStream(up.state()["nats_url"], up.data_dir, up.env, assets=ASSETS)
            stream.assets = [f"K{i:02d}" for i in range(ASSETS)]
            counts = Counts(up, emu, stream)
            tally: dict[str, int] = {}
            publishing = asyncio.create_task(stream.run(burst=100, pause=0.2))
            await chaos(up, rng, time.monotonic() + minutes * 60, tally)
            stream.running = False
            await asyncio.wait_for(publishing, 180)
            say(f"load stopped: {stream.ticks:,} prices, {stream.rounds} holding rounds; kills: {tally}")
            want = counts.want()
            deadline = time.monotonic() + 120  # redeliveries wait out ack_wait after a kill
            while (got := counts.now()) != want and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
            for key in want:
                mark = "ok " if got[key] == want[key] else "BAD"
                say(f"  {mark} {key}: {got[key]} (want {want[key]})")
            if up.proc is not None:
                up.proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(up.proc.wait, 30)
                say(f"`up --processes` stopped with {code}")
            else:
                code = 1
            left: list[int] = []
            end = time.monotonic() + 15
            while (left := processes_mentioning(str(up.data_dir))) and time.monotonic() < end:
                await asyncio.sleep(0.2)
            say(f"orphans: {left or 'none'}")
            ok = got == want and code == 0 and not left
            say("PASS" if ok else "FAIL")
            if not ok:
                say(f"stderr tail:\n{up.err[-3000:]}")
            return 0 if ok else 1
        finally:
            up.kill_all()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="./run soak")
    ap.add_argument(
        "--minutes", type=float, default=3.0, help="how long to apply load and faults (default 3)"
    )
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    # The load publisher's reconnect chatter is expected here; the stack's own output is in its files.
    logging.getLogger("assetsync").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="assetsync-soak-"))
    try:
        return asyncio.run(soak(args.minutes, seed, root))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`./run bench sync`: one crypto sync of a 200-asset account vs the naive per-asset baseline.

Both run against the Binance emulator (own thread, 30 ms added to every request, its real weight
limits) through real ccxt. The naive baseline asks, asset by asset and one call at a time, for a
price and for the balance — the original tool's loop. The sync is measured twice: cold (first run:
full trade history and kline backfill) and hourly (a new candle closed since the last run, 10 % of
the assets traded). Targets: requests ≤ 3 + one klines and one trades call per held asset that
changed; wall time ≤ 0.1 × the naive baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from assetsync.config import Settings, load_settings
from assetsync.events import Event, Holding, TaskResult
from assetsync.ignore import ignored
from assetsync_collector_crypto.exchange import make_exchange
from assetsync_collector_crypto.state import StateFile
from assetsync_collector_crypto.sync import CryptoSync, state_path
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, HOUR_MS, BinanceEmulator, create_app
from assetsync_emulators.common import serve

IGNORE = ["USDT", "LD*"]


@dataclass
class Measure:
    """One measured run: wall time, requests by endpoint, and what it reported."""

    name: str
    wall: float
    requests: Counter[str]
    budget: int | None = None
    result: TaskResult | None = None

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def _settings(url: str, data_dir: Path) -> Settings:
    return load_settings(
        None,
        data_dir=data_dir,
        environ={},
        overrides={
            "asset_sync": {
                "binance": {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": url},
                "assets": {"crypto": {"ignore": IGNORE}},
            }
        },
    )


class RemoteEmulator:
    """The emulator in its own process (as Binance is): the client's CPU is not the server's."""

    def __init__(self, conn: Connection, url: str) -> None:
        self._conn = conn
        self.url = url
        self._lock = threading.Lock()

    def _ask(self, *msg: Any) -> Any:
        with self._lock:
            self._conn.send(msg)
            return self._conn.recv()

    def reset_log(self) -> None:
        self._ask("reset")

    def requests(self) -> Counter[str]:
        counts: Counter[str] = self._ask("counts")
        return counts

    def buy_for_usdt(self, symbols: int, usdt: float) -> None:
        """`symbols` generated assets each buy `usdt` worth at the current price."""
        self._ask("buy", symbols, usdt)


def _child(conn: Connection, size: int, latency: float) -> None:
    emu = BinanceEmulator(seed=1, size=size)
    emu.switch.latency = latency

    def control(url: str) -> None:
        conn.send(url)
        while True:
            try:
                msg = conn.recv()
            except EOFError:
                return
            if msg[0] == "reset":
                emu.switch.reset_log()
                conn.send(None)
            elif msg[0] == "counts":
                conn.send(Counter(r.path.rsplit("/", 1)[-1] for r in emu.switch.requests))
            elif msg[0] == "buy":
                synthetic = sorted(s for s in emu.markets if s.startswith("Z") and s.endswith("USDT"))
                for symbol in synthetic[: msg[1]]:
                    emu.trade(symbol, "BUY", msg[2] / emu.prices.at(emu.markets[symbol], emu.now_ms()))
                conn.send(None)
            elif msg[0] == "stop":
                conn.send(None)
                return

    async def main() -> None:
        async with serve(create_app(emu)) as url:
            await asyncio.to_thread(control, url)

    asyncio.run(main())


@contextmanager
def remote_emulator(size: int, latency: float) -> Iterator[RemoteEmulator]:
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_child, args=(child, size, latency), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the Binance emulator did not start within 30 s")
        remote = RemoteEmulator(parent, parent.recv())
        yield remote
        remote._ask("stop")
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.terminate()


async def naive(emu: RemoteEmulator, data_dir: Path) -> Measure:
    """The per-asset loop: a price call and a balance call for each asset, one after another."""
    ex = make_exchange(_settings(emu.url, data_dir))
    try:
        await ex.load_markets()
        balance = await ex.fetch_balance()
        assets = [a for a, q in balance["total"].items() if q and not ignored(a, IGNORE)]
        emu.reset_log()
        started = time.perf_counter()
        for asset in assets:
            symbol = f"{asset}/USDT"
            if symbol in ex.markets and ex.markets[symbol]["active"]:
                await ex.fetch_ticker(symbol)
            await ex.fetch_balance()
        wall = time.perf_counter() - started
        return Measure("naive per-asset", wall, emu.requests())
    finally:
        await ex.close()


async def collector(emu: RemoteEmulator, data_dir: Path, traded: int) -> tuple[Measure, Measure]:
    """A cold sync, then an hourly one after `traded` assets traded and a candle closed."""
    settings = _settings(emu.url, data_dir)
    state = StateFile(state_path(settings))
    sync = CryptoSync(settings, make_exchange(settings), state)
    events: list[Event] = []

    async def publish(ev: Event) -> None:
        events.append(ev)

    try:
        runs = []
        for name in ("sync, cold (first run)", "sync, hourly"):
            events.clear()
            emu.reset_log()
            started = time.perf_counter()
            result = await sync.run(name, publish)
            wall = time.perf_counter() - started
            held = sum(1 for e in events if isinstance(e, Holding) and e.price is not None)
            runs.append(Measure(name, wall, emu.requests(), result=result, budget=held))
            if len(runs) == 1:
                # An hour later: every held market has a newly closed candle; some assets traded.
                st = state.load()
                st.kline_last_open = {k: v - HOUR_MS for k, v in st.kline_last_open.items()}
                state.save(st)
                emu.buy_for_usdt(traded, 50.0)
        cold, hourly = runs
        # Budget: 3 + one klines call per held priced asset + one trades call per changed asset.
        cold.budget = 3 + 2 * (cold.budget or 0)
        hourly.budget = 3 + (hourly.budget or 0) + traded
        return cold, hourly
    finally:
        await sync.exchange.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./run bench sync", description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--traded", type=int, default=20, help="assets that trade between the two syncs")
    args = parser.parse_args(argv)

    latency = args.latency_ms / 1000
    # Separate emulators (as separate IPs): each run gets Binance's full per-minute weight budget.
    with tempfile.TemporaryDirectory() as tmp:
        with remote_emulator(args.assets, latency) as emu:
            base = asyncio.run(naive(emu, Path(tmp) / "naive"))
        with remote_emulator(args.assets, latency) as emu:
            cold, hourly = asyncio.run(collector(emu, Path(tmp) / "sync", args.traded))

    print(f"crypto sync benchmark: {args.assets} assets, {args.latency_ms:g} ms latency per request")
    print(f"  {'run':<24}{'wall s':>9}{'requests':>10}{'budget':>8}{'wall/naive':>12}  by endpoint")
    ok = True
    for m in (base, cold, hourly):
        ratio = m.wall / base.wall
        parts = ", ".join(f"{k} {v}" for k, v in sorted(m.requests.items()))
        budget = "" if m.budget is None else str(m.budget)
        print(f"  {m.name:<24}{m.wall:>9.2f}{m.total:>10}{budget:>8}{ratio:>12.3f}  {parts}")
        if m.result is None:
            continue
        r = m.result
        req_ok = m.total <= (m.budget or 0)
        wall_ok = ratio <= 0.1
        verdict = f"requests ≤ {m.budget}: {'met' if req_ok else 'over'}; wall ≤ 0.1 × naive: {'met' if wall_ok else 'over'}"
        print(f"  {'':<24}→ {r.status}, {r.records}/{r.total} assets priced and stored; {verdict}")
        if m is hourly:
            ok = req_ok and wall_ok and r.status != "failed"
    print(
        "  targets apply to the hourly sync; the cold run also backfills "
        "klines and the whole trade history, and values past fills at 1m closes (§6)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

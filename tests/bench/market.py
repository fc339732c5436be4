"""`./run bench market`: the CPU a 50-coin watch list adds to an idle stack. Target: ≤ 10 % of one core.

Two arms, each a real `assetsync up` in a subprocess against the emulators (`assetsync_emulators.serve`
in a process of their own, so their CPU is not counted): arm A with `market.enabled: false`, arm B
with a 50-coin watch list (`market.watchlist`, ticks every `market.interval_seconds`, 60 s) and fear &
greed. Both have the same Binance account (keys, hourly sync) and whatever other services are
present. Once steady (the stack ready and, in arm B, the first kline backfill of 150 calls done, then
a settle pause), the CPU seconds of `up`'s whole process tree (/proc: every live descendant, the
embedded nats-server included, plus reaped children) are read over a window (`--minutes`, default 3).
1h/1d klines are fetched when an hour/day closes (1m ones only when a coin joins), so a window that
crosses a full hour includes one round of 50 kline calls.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from assetsync_emulators.binance import CORE_ASSETS, DEMO_API_KEY, DEMO_API_SECRET, LISTED_ASSETS
from assetsync_emulators.common import free_port

ROOT = Path(__file__).resolve().parents[2]
TARGET_PCT = 10.0
TICKS = os.sysconf("SC_CLK_TCK")
CALLS = re.compile(
    r'assetsync_external_api_calls_total\{endpoint="GET /api/v3/(\w+)[^"]*",service="binance"\} (\S+)'
)


def watchlist(n: int = 50) -> list[str]:
    """`n` coins that trade against USDT on the emulated Binance (not stablecoins or leveraged tokens)."""
    core = [c for c in ("BTC", "ETH", "SOL", "DOGE", "BNB", "SHIB", "XRP", "ADA", "LINK") if c in CORE_ASSETS]
    return [*core, *(code for code, *_ in LISTED_ASSETS)][:n]


def config(
    urls: dict[str, str], watch: list[str] | None, metrics_port: int, gateway_port: int
) -> dict[str, Any]:
    # The hourly crypto sync is moved 12 hours away so it cannot land in the window of one arm only.
    sync_hour = (time.gmtime().tm_hour + 12) % 24
    conf: dict[str, Any] = {
        "asset_sync": {
            "binance": {"api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET, "base_url": urls["binance"]},
            "assets": {"crypto": {"ignore": ["USDT", "LD*"]}},
            "fx": {"source": "none"},
            "scheduler": {"timezone": "UTC", "crypto_sync": {"hour": sync_hour, "minute": 0}},
        },
        "metrics": {"port": metrics_port},
        "sync_gateway": {"port": gateway_port},
        "market": {"enabled": False},
    }
    if watch is not None:
        conf["market"] = {
            "enabled": True,
            "watchlist": watch,
            "interval_seconds": 60,
            "fear_greed": {"base_url": urls["alternative_me"]},
        }
    return conf


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and every live descendant, plus the children `root` has reaped."""
    parent: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        pid = int(entry)
        parent[pid] = int(fields[1])
        stats[pid] = fields
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    total = 0
    for pid in tree:
        f = stats.get(pid)
        if f is None:
            continue
        total += int(f[11]) + int(f[12])  # utime, stime
        if pid == root:
            total += int(f[13]) + int(f[14])  # cutime, cstime: children already reaped
    return total / TICKS


def calls(metrics_port: int) -> dict[str, float]:
    """Binance calls so far by endpoint (`klines`, `ticker`, `exchangeInfo`, ...), from `/metrics`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for name, n in CALLS.findall(text):
        out[name] = out.get(name, 0.0) + float(n)
    return out


def ready(metrics_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:.0f}s")
        time.sleep(1.0)


def arm(name: str, urls: dict[str, str], watch: list[str] | None, minutes: float, settle: float) -> float:
    """CPU % of one core of an idle `up` over the window, once steady."""
    with tempfile.TemporaryDirectory(prefix=f"bench-market-{name}-") as tmp:
        tmp_path = Path(tmp)
        metrics_port, gateway_port = free_port(), free_port()
        (tmp_path / "config.json").write_text(json.dumps(config(urls, watch, metrics_port, gateway_port)))
        log = (tmp_path / "up.out").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "assetsync", "up", "--config", str(tmp_path / "config.json"),
             "--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "logs")],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        try:
            wait(lambda: ready(metrics_port), 120, f"arm {name}: stack ready")
            if watch is not None:
                need = 3 * len(watch)
                wait(
                    lambda: calls(metrics_port).get("klines", 0) >= need,
                    300,
                    f"arm {name}: {need} backfill kline calls",
                )
            time.sleep(settle)
            c0, t0, n0 = tree_cpu(proc.pid), time.monotonic(), calls(metrics_port)
            time.sleep(minutes * 60)
            c1, t1, n1 = tree_cpu(proc.pid), time.monotonic(), calls(metrics_port)
            if proc.poll() is not None:
                raise RuntimeError(f"arm {name}: `up` exited with {proc.returncode}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        pct = (c1 - c0) / (t1 - t0) * 100.0
        made = ", ".join(f"{k} {n1[k] - n0.get(k, 0):g}" for k in sorted(n1) if n1[k] > n0.get(k, 0))
        print(
            f"  arm {name}: {pct:5.2f} % of one core  ({c1 - c0:.2f} CPU s over {t1 - t0:.0f} s; "
            f"Binance calls in the window: {made or 'none'})",
            flush=True,
        )
        return pct


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="./run bench market", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="measuring window per arm (default 3)")
    p.add_argument("--settle", type=float, default=20.0, help="seconds to wait once steady (default 20)")
    p.add_argument("--coins", type=int, default=50, help="watch-list size of arm B (default 50)")
    args = p.parse_args(argv)
    emulators = subprocess.Popen(
        [sys.executable, "-m", "assetsync_emulators.serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert emulators.stdout is not None
        urls: dict[str, str] = json.loads(emulators.stdout.readline())
        coins = watchlist(args.coins)
        print(
            f"market bench: idle `assetsync up`, window {args.minutes:g} min per arm, emulators {urls['binance']}"
        )
        a = arm("A (market.enabled: false)", urls, None, args.minutes, args.settle)
        b = arm(f"B ({len(coins)}-coin watch list)", urls, coins, args.minutes, args.settle)
    finally:
        emulators.send_signal(signal.SIGTERM)
        emulators.wait(10)
    added = b - a
    print(
        f"  added by the watch list: {added:+.2f} percentage points of one core   target: ≤ {TARGET_PCT:g} %"
    )
    return 0 if added <= TARGET_PCT else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

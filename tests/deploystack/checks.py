"""What the deploy test asserts about the running stack: data end to end, Prometheus, the gateway, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from assetsync.feishu import schema as fs
from assetsync.service import SERVICE_MODULES

from tests.deploystack.engine import DeployTestError
from tests.deploystack.stack import Stack

T = TypeVar("T")
DB = "/var/lib/assetsync/data/assets.db"
# Counts per table of an SQLite file, printed as JSON (run inside the store's container).
COUNT_TABLES = (
    "import json, sqlite3, sys; db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); "
    "names = [r[0] for r in db.execute(\"SELECT name FROM sqlite_master WHERE type = 'table' "
    "AND name NOT LIKE 'sqlite_%'\")]; "
    "print(json.dumps({n: db.execute(f'SELECT count(*) FROM \"{n}\"').fetchone()[0] for n in names}))"
)
SCRAPED = set(SERVICE_MODULES)


class Fatal(DeployTestError):
    """A failure waiting longer cannot fix."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 1.0) -> T:
    """Poll `probe` until it returns something other than None/False; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Fatal:
            raise
        except (DeployTestError, httpx.HTTPError, KeyError, ValueError) as exc:
            last_error = f" (last error: {exc})"
        time.sleep(every)
    raise DeployTestError(f"timed out after {timeout:.0f} s waiting for {what}{last_error}")


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def container_metrics(stack: Stack, cid: str) -> str:
    """The /metrics text of one container (from inside it: every replica, not just one per service)."""
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=5).read().decode())"
    return stack.engine.docker("exec", cid, "python", "-c", script)


# --- data end to end, with the store killed mid-stream ---------------------------------------
def run_tasks_killing_store(stack: Stack) -> dict[str, int]:
    """Crypto and fund syncs through the stack; the store dies abruptly while it ingests them."""
    (store,) = stack.containers("store")
    restarts = stack.inspect(store)["RestartCount"]
    tasks = {
        t: stack.popen("exec", "-T", "sync-gateway", "assetsync", "task", t, "--timeout", "400")
        for t in ("crypto", "fund")
    }

    def ingesting() -> float:
        if tasks["crypto"].poll() is not None:
            raise Fatal("the crypto sync finished before the store could be killed mid-stream")
        return _metric_sum(container_metrics(stack, store), "assetsync_events_acked_total")

    acked = wait_for("the store to ingest the first events", ingesting, 240, every=0.3)
    # SIGKILL to the container's init from the host: the whole container dies at once, as in an OOM
    # kill or a crash, and the restart policy brings it back. (`docker kill` itself counts as the user
    # stopping the container: Docker never restarts it then, whatever the policy.)
    os.kill(stack.inspect(store)["State"]["Pid"], signal.SIGKILL)
    print(f"  store killed mid-stream, after acking {acked:g} events", flush=True)
    wait_for(
        "the store to be restarted by its restart policy",
        lambda: stack.inspect(store)["RestartCount"] > restarts and stack.inspect(store)["State"]["Running"],
        60,
    )
    stack.wait_healthy(120)
    print("  store restarted by its policy and healthy again", flush=True)
    out: dict[str, int] = {}
    for task, proc in tasks.items():
        try:
            text, _ = proc.communicate(timeout=420)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise DeployTestError(f"`assetsync task {task}` did not finish in time") from None
        print(f"  task {task}: {text.strip().splitlines()[-1] if text.strip() else ''}", flush=True)
        if proc.returncode != 0:
            raise DeployTestError(f"`assetsync task {task}` exited {proc.returncode}:\n{text[-3000:]}")
        out[task] = proc.returncode
    return out


def check_sqlite(stack: Stack) -> dict[str, Any]:
    """Holdings of both kinds and successful sync logs in the store's SQLite."""
    script = (
        "import json, sqlite3; db = sqlite3.connect('file:" + DB + "?mode=ro', uri=True); print(json.dumps({"
        "'holdings': dict(db.execute('SELECT asset_type, count(*) FROM holdings GROUP BY asset_type').fetchall()),"
        "'syncs': [list(r) for r in db.execute('SELECT task, status, records FROM sync_logs')]}))"
    )
    got: dict[str, Any] = stack.exec_python("store", script)
    kinds = {k: v for k, v in got["holdings"].items() if v}
    if len(kinds) < 2:
        raise DeployTestError(f"SQLite holdings lack a crypto or a fund row: {got['holdings']}")
    for task in ("crypto", "fund"):
        ok = [s for s in got["syncs"] if s[0] == task and s[1] in ("success", "partial") and s[2] > 0]
        if not ok:
            raise DeployTestError(f"no successful {task} sync with records in sync_logs: {got['syncs']}")
    print(f"  SQLite holdings by type: {kinds}", flush=True)
    return got


def check_nothing_lost(stack: Stack) -> None:
    """Every event in the streams is in SQLite: a replay of the streams into a fresh file matches it."""
    stack.compose("exec", "-T", "store", "assetsync", "replay", "--output", "/tmp/replay.db", "--force")
    live = stack.exec_python("store", COUNT_TABLES.replace("sys.argv[1]", repr(DB)))
    replayed = stack.exec_python("store", COUNT_TABLES.replace("sys.argv[1]", "'/tmp/replay.db'"))
    stack.compose("exec", "-T", "store", "rm", "-f", "/tmp/replay.db", check=False)
    # backups: rows written by the backup command itself, not carried by events.
    diff = {t: (live.get(t), n) for t, n in replayed.items() if t != "backups" and live.get(t) != n}
    if diff:
        raise DeployTestError(f"SQLite differs from a replay of the streams (table: live, replayed): {diff}")
    print(f"  SQLite matches a replay of the streams: {replayed}", flush=True)


def check_feishu(stack: Stack) -> None:
    """持仓 in the emulated Feishu holds crypto and fund rows with prices (written by feishu-writer)."""
    base = "http://" + stack.published("emulators", 8003)
    emu = stack.feishu

    def rows() -> dict[str, int] | None:
        with httpx.Client(base_url=base, timeout=10) as c:
            token = c.post(
                "/open-apis/auth/v3/tenant_access_token/internal",
                json={"app_id": emu.app_id, "app_secret": emu.app_secret},
            ).json()["tenant_access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            app = f"/open-apis/bitable/v1/apps/{emu.app_token}"
            tables = c.get(f"{app}/tables", headers=auth).json()["data"]["items"]
            table = next(t["table_id"] for t in tables if t["name"] == fs.HOLDINGS.name)
            items = c.get(f"{app}/tables/{table}/records", params={"page_size": 500}, headers=auth).json()
            counts: dict[str, int] = {}
            for rec in items["data"]["items"] or []:
                cells = rec["fields"]
                if cells.get(fs.PRICE) not in (None, "", 0):
                    kind = str(cells.get(fs.ASSET_TYPE))
                    counts[kind] = counts.get(kind, 0) + 1
        return counts if counts.get(fs.TYPE_CRYPTO) and counts.get(fs.TYPE_FUND) else None

    counts = wait_for("持仓 rows of both kinds in the emulated Feishu", rows, 180, every=2)
    print(f"  Feishu 持仓 rows with prices: {counts}", flush=True)


# --- Prometheus and the gateway --------------------------------------------------------------
def check_prometheus(stack: Stack) -> None:
    """Every scrape target is up (each assetsync service found by DNS, and Prometheus itself)."""
    base = "http://" + stack.published("prometheus", 9090)

    def all_up() -> list[dict[str, Any]] | None:
        res = httpx.get(f"{base}/api/v1/query", params={"query": "up"}, timeout=10).json()["data"]["result"]
        services = {r["metric"].get("service", "") for r in res}
        if not services >= SCRAPED or any(r["value"][1] != "1" for r in res):
            return None
        return list(res)

    res = wait_for("Prometheus to scrape every target with up == 1", all_up, 150, every=3)
    print(f"  Prometheus: {len(res)} targets, all up == 1", flush=True)


def check_gateway(stack: Stack) -> None:
    """The sync gateway answers its sender API with the token and refuses it without."""
    base = "http://" + stack.published("sync-gateway", 5000)
    url = f"{base}/api/data-sync/sender/status"
    denied = httpx.get(url, timeout=10)
    if denied.status_code not in (401, 403):
        raise DeployTestError(f"gateway answered {denied.status_code} without a token")
    ok = httpx.get(url, headers={"Authorization": f"Bearer {stack.sender_token}"}, timeout=10)
    if ok.status_code != 200:
        raise DeployTestError(f"gateway answered {ok.status_code} with the sender token: {ok.text[:300]}")
    admin = httpx.get(
        f"{base}/api/data-sync/sender/config",
        headers={"Authorization": f"Bearer {stack.admin_token}"},
        timeout=10,
    )
    if admin.status_code != 200:
        raise DeployTestError(
            f"gateway answered {admin.status_code} with the admin token: {admin.text[:300]}"
        )
    print(f"  gateway: 200 with the tokens, {denied.status_code} without", flush=True)


# --- scale-out -------------------------------------------------------------------------------
def check_scaled_slot_runs_once(stack: Stack, tz: str) -> None:
    """Two collector-crypto replicas, a crypto slot every minute: the next slot runs exactly once."""
    stack.env["DEPLOY_TEST_CRYPTO_MINUTE"] = "*"
    stack.compose("up", "-d", "--no-deps", "--scale", "collector-crypto=2", "collector-crypto")
    replicas = stack.containers("collector-crypto")
    if len(replicas) != 2:
        raise DeployTestError(f"expected 2 collector-crypto replicas, found {len(replicas)}")
    stack.wait_healthy(120)

    def runs() -> float:
        return sum(
            _metric_sum(container_metrics(stack, c), "assetsync_task_runs_total", task="crypto")
            for c in replicas
        )

    before = runs()
    zone = ZoneInfo(tz)
    now = datetime.now(zone)
    slot = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    command_id = f"crypto@{slot.isoformat(timespec='minutes')}"
    print(f"  2 replicas healthy; waiting for slot {command_id}", flush=True)
    script = (
        "import json, sqlite3; db = sqlite3.connect('file:" + DB + "?mode=ro', uri=True); "
        f"print(json.dumps([list(r) for r in db.execute('SELECT status, records FROM sync_logs WHERE command_id = ?', ({command_id!r},))]))"
    )
    wait_for(
        f"the scheduled run {command_id} in sync_logs",
        lambda: stack.exec_python("store", script),
        180,
        every=2,
    )
    # The result is stored: a duplicate run would have started with the first and be counted by now;
    # both replicas' counters together must have moved by exactly one.
    delta = wait_for("both replicas' task counters", lambda: runs() - before or None, 30)
    if delta != 1:
        raise DeployTestError(f"slot {command_id} ran {delta:g} times across the 2 replicas")
    starts = sum(stack.logs(c, 2000).count(f"starting (command {command_id},") for c in replicas)
    if starts != 1:
        raise DeployTestError(
            f"slot {command_id} was started {starts} times across the 2 replicas (their logs)"
        )
    per_replica = [
        _metric_sum(container_metrics(stack, c), "assetsync_task_runs_total", task="crypto") for c in replicas
    ]
    print(f"  slot {command_id} ran once across 2 replicas (runs per replica: {per_replica})", flush=True)


def dump_state(stack: Stack) -> None:
    """On failure: each container's state and log tail, to see what went wrong."""
    for cid in stack.containers():
        info = stack.inspect(cid)
        state = info["State"]
        health = (state.get("Health") or {}).get("Status", "-")
        print(
            f"--- {info['Name'].lstrip('/')}: {state['Status']} health={health} restarts={info['RestartCount']}"
        )
        print(stack.logs(cid, 15))
        for h in ((state.get("Health") or {}).get("Log") or [])[-1:]:
            print(f"    last healthcheck: exit {h['ExitCode']}: {json.dumps(h['Output'][-300:])}")

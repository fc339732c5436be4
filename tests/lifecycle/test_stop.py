"""Prompt stop under load, and no orphan after SIGKILL: the next `up` on the data dir starts cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import urllib.request
from collections.abc import Callable

from assetsync_emulators.common import Fault, serve_in_thread
from assetsync_emulators.feishu import FeishuEmulator

from tests.lifecycle.load import EventStream, idle_keepalive_clients, stalling_server
from tests.lifecycle.support import Up, healthz, processes_mentioning
from tests.scale.support import read_only
from tests.support import wait_for, wait_for_sync


def store_rows(up: Up) -> int:
    try:
        with read_only(up.data_dir / "assets.db") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM price_history").fetchone()[0])
    except Exception:
        return 0


def feishu_env(emu: FeishuEmulator, url: str) -> dict[str, str]:
    return {
        "ASSETSYNC_MCP_SERVER__APP_ID": emu.app_id,
        "ASSETSYNC_MCP_SERVER__APP_SECRET": emu.app_secret,
        "ASSETSYNC_ASSET_SYNC__FEISHU__APP_TOKEN": emu.app_token,
        "ASSETSYNC_ASSET_SYNC__FEISHU__BASE_URL": url,
    }


async def test_sigterm_under_load_exits_0_promptly(make_up: Callable[..., Up]) -> None:
    emu = FeishuEmulator()
    emu.seed_demo()
    # Every Feishu call fails: the writer sits in its retry backoff when the stop comes.
    emu.switch.add(Fault("5xx", path_prefix="/open-apis/bitable"))
    with serve_in_thread(emu.app) as feishu_url, stalling_server() as remote:
        up = make_up(
            env={
                **feishu_env(emu, feishu_url),
                "ASSETSYNC_SYNC_GATEWAY__RECEIVER__ENABLED": "true",
                "ASSETSYNC_SYNC_GATEWAY__RECEIVER__REMOTE_URL": remote,
            }
        ).start()
        up.wait_ready()
        stream = EventStream(up.state()["nats_url"], up.data_dir, up.env)
        publishing = asyncio.create_task(stream.run())
        clients = idle_keepalive_clients(up.gateway_port)
        waited: list[object] = []

        def sync_and_wait() -> None:  # held open by the stalling remote until the stop
            req = urllib.request.Request(
                f"http://127.0.0.1:{up.gateway_port}/api/data-sync/receiver/sync-all?wait=true",
                method="POST",
                data=b"{}",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    waited.append(r.status)
            except Exception as exc:
                waited.append(exc)

        syncing = threading.Thread(target=sync_and_wait, daemon=True)
        syncing.start()
        try:
            await wait_for(lambda: store_rows(up) > 1000, 60, interval=0.1, what="store consuming")
            await wait_for(
                lambda: emu.switch.count("/open-apis/bitable") > 0, 30, what="Feishu writes failing"
            )
            assert syncing.is_alive()  # the ?wait=true sync is in flight
            up.signal(signal.SIGTERM)
            code = await asyncio.to_thread(up.wait, 10)
        finally:
            publishing.cancel()  # its NATS is gone: nothing more will be acknowledged
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await publishing
            for c in clients:
                c.close()
        assert code == 0, up.err[-2000:]
        assert "stopped" in up.out
        syncing.join(10)
        assert waited, "the ?wait=true request was answered or cut when the gateway stopped"
        assert up.nats_servers() == []


def test_sigkill_leaves_nothing_running_and_the_next_up_starts_clean(make_up: Callable[..., Up]) -> None:
    up = make_up().start().wait_ready()
    nats_pid = up.state()["nats_pid"]
    assert up.nats_servers() == [nats_pid]
    up.signal(signal.SIGKILL)
    assert up.wait(10) == -signal.SIGKILL
    wait_for_sync(lambda: up.nats_servers() == [], 15, what="nats-server gone with its parent")
    assert (up.data_dir / "run" / "stack.json").exists()  # left behind by the kill

    again = make_up("site", metrics_port=up.metrics_port, gateway_port=up.gateway_port).start()
    again.wait_ready(times=2)
    assert "run/stack.json is stale" in again.err
    assert healthz(again.metrics_port)[0] == 200
    assert again.state()["pid"] == again.proc.pid  # type: ignore[union-attr]
    again.signal(signal.SIGINT)
    assert again.wait(10) == 0
    assert not (again.data_dir / "run" / "stack.json").exists()


def test_sigkill_of_up_processes_takes_every_child_with_it(make_up: Callable[..., Up]) -> None:
    up = make_up(args=["--processes"]).start()
    wait_for_sync(lambda: "[store.1]" in up.out and "ready in" in up.out, 60, what="store child ready")
    children = [p for p in processes_mentioning(str(up.data_dir)) if p != up.proc.pid]  # type: ignore[union-attr]
    assert len(children) >= 2  # nats-server and at least the store
    up.signal(signal.SIGKILL)
    up.wait(10)
    wait_for_sync(lambda: processes_mentioning(str(up.data_dir)) == [], 20, what="no orphan left")

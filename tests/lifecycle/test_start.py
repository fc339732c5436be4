"""All-or-nothing start: a part that cannot start ends `up` with one line naming the key, exit 1,
nothing left running; /healthz is 200 only once every part is ready."""

from __future__ import annotations

import signal
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

from assetsync.embedded import free_port, running

from tests.lifecycle.support import Up, healthz
from tests.support import wait_for_sync


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_a_second_stack_on_taken_ports_exits_naming_the_key(make_up: Callable[..., Up]) -> None:
    first = make_up("first").start().wait_ready()
    assert healthz(first.metrics_port)[0] == 200
    assert healthz(first.gateway_port)[0] == 200

    # Another data dir, the same (default-like) ports: the metrics port is checked first.
    second = make_up("second", metrics_port=first.metrics_port, gateway_port=first.gateway_port).start()
    assert second.wait(60) == 1
    line = last_line(second.err)
    assert line.startswith("assetsync: metrics cannot start:") and "change metrics.port" in line, second.err
    assert "Traceback" not in second.err
    assert "ready in" not in second.out

    # With its own metrics port it gets as far as the gateway's port; NATS already started is gone.
    third = make_up("third", gateway_port=first.gateway_port).start()
    assert third.wait(60) == 1
    line = last_line(third.err)
    assert "sync-gateway cannot start" in line and "change sync_gateway.port" in line, third.err
    assert third.nats_servers() == []
    assert not (third.data_dir / "run" / "stack.json").exists()

    # Ports of its own: both stacks run side by side.
    fourth = make_up("fourth").start().wait_ready()
    assert healthz(fourth.metrics_port)[0] == 200
    assert healthz(first.metrics_port)[0] == 200


def test_unreachable_nats_url_is_one_line(make_up: Callable[..., Up]) -> None:
    up = make_up(env={"ASSETSYNC_NATS__URL": f"nats://127.0.0.1:{free_port()}"}).start()
    assert up.wait(60) == 1
    line = last_line(up.err)
    assert line.startswith("assetsync: nats cannot start:") and "change nats.url" in line, up.err
    assert healthz(up.metrics_port)[0] == 0  # the health port it had bound is closed again


def test_a_damaged_database_file_stops_the_start(make_up: Callable[..., Up], tmp_path: Path) -> None:
    up = make_up()
    up.data_dir.mkdir(parents=True)
    (up.data_dir / "assets.db").write_bytes(b"this is not an SQLite database, just a bad file" * 100)
    up.start()
    assert up.wait(60) == 1
    line = last_line(up.err)
    assert "store cannot start" in line and "asset_sync.database.path" in line, up.err
    wait_for_sync(lambda: up.nats_servers() == [], 10, what="embedded nats-server stopped")
    # The file is left as it was for the user to restore.
    try:
        sqlite3.connect(up.data_dir / "assets.db").execute("SELECT 1 FROM sqlite_master").fetchall()
        damaged = False
    except sqlite3.DatabaseError:
        damaged = True
    assert damaged


def test_up_processes_checks_every_childs_port_first(make_up: Callable[..., Up]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = make_up(args=["--processes"], metrics_port=port).start()
        assert up.wait(60) == 1
    line = last_line(up.err)
    assert line.startswith("assetsync: store.1 cannot start:") and "change metrics.port" in line, up.err
    assert up.nats_servers() == []


def test_healthz_is_503_until_every_part_is_ready(make_up: Callable[..., Up], tmp_path: Path) -> None:
    port = free_port()
    up = make_up(env={"ASSETSYNC_NATS__URL": f"nats://127.0.0.1:{port}"}).start()
    # NATS is not there yet: the health port answers, but "not ready".
    wait_for_sync(lambda: healthz(up.metrics_port)[0] == 503, 30, what="503 while starting")
    assert healthz(up.metrics_port)[1]["state"] == "starting (nats)"
    with running(tmp_path / "late-nats", port=port):
        up.wait_ready()
        assert healthz(up.metrics_port)[0] == 200
        up.signal(signal.SIGTERM)
        assert up.wait(10) == 0

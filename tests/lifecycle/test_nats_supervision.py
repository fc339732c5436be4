"""The embedded nats-server is supervised: restarted on the same store and port, nothing acknowledged
lost, every /healthz not ready meanwhile; after `nats.restart_limit` deaths in a row `up` exits 1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable

from tests.lifecycle.load import EventStream
from tests.lifecycle.support import Up, healthz
from tests.lifecycle.test_stop import store_rows
from tests.support import wait_for, wait_for_sync


class HealthWatch:
    """Polls both health endpoints in a thread, remembering every status seen."""

    def __init__(self, *ports: int) -> None:
        self.ports = ports
        self.seen: dict[int, set[int]] = {p: set() for p in ports}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for p in self.ports:
                self.seen[p].add(healthz(p)[0])

    def __enter__(self) -> HealthWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


async def test_a_killed_nats_server_is_restarted_and_nothing_acknowledged_is_lost(
    make_up: Callable[..., Up],
) -> None:
    up = make_up().start().wait_ready()
    state = up.state()
    url, first_pid = state["nats_url"], state["nats_pid"]
    stream = EventStream(url, up.data_dir, up.env)
    publishing = asyncio.create_task(stream.run(burst=100, pause=0.05))
    try:
        await wait_for(lambda: store_rows(up) > 500, 60, interval=0.1, what="store consuming")
        with HealthWatch(up.metrics_port, up.gateway_port) as watch:
            os.kill(first_pid, signal.SIGKILL)
            await wait_for(lambda: "embedded nats-server restarted" in up.err, 30, what="restart logged")
            await wait_for(
                lambda: healthz(up.metrics_port)[0] == 200 and healthz(up.gateway_port)[0] == 200,
                30,
                what="ready again",
            )
        # Both endpoints said "not ready" while the server was down, then ready again.
        assert 503 in watch.seen[up.metrics_port], watch.seen
        assert 503 in watch.seen[up.gateway_port], watch.seen
        restarted = up.state()
        assert restarted["nats_url"] == url and restarted["nats_pid"] != first_pid
        assert up.nats_servers() == [restarted["nats_pid"]]
        rounds = stream.confirmed_rounds
        await wait_for(lambda: stream.confirmed_rounds > rounds + 3, 30, what="publishing resumed")
    finally:
        stream.running = False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(publishing, 60)
    # Every tick JetStream acknowledged reaches SQLite, exactly once.
    await wait_for(lambda: store_rows(up) == stream.ticks, 90, interval=0.2, what="store caught up")
    up.signal(signal.SIGTERM)
    assert await asyncio.to_thread(up.wait, 10) == 0


def test_a_server_that_keeps_dying_ends_up_with_exit_1(make_up: Callable[..., Up]) -> None:
    up = make_up(env={"ASSETSYNC_NATS__RESTART_LIMIT": "1"}).start().wait_ready()
    os.kill(up.state()["nats_pid"], signal.SIGKILL)
    wait_for_sync(lambda: "embedded nats-server restarted" in up.err, 30, what="first restart")
    os.kill(up.state()["nats_pid"], signal.SIGKILL)  # a second death in a row: over the limit
    assert up.wait(30) == 1
    assert "nats cannot run: the embedded nats-server died 2 times in a row" in up.err
    assert "nats.restart_limit" in up.err
    assert up.nats_servers() == []

"""`task` returns once its result is stored: an alert that cannot be delivered yet stays queued (one line
says so) and is delivered by the next run."""

from __future__ import annotations

import signal
from collections.abc import Callable

from assetsync.embedded import free_port
from assetsync_emulators.common import Fault, serve_in_thread
from assetsync_emulators.feishu_bot import HOOK_PATH, BotEmulator

from tests.lifecycle.support import Up
from tests.support import wait_for_sync


def test_task_returns_when_stored_and_the_alert_waits_for_the_next_run(make_up: Callable[..., Up]) -> None:
    bot = BotEmulator()
    bot.switch.add(Fault("5xx", path_prefix=HOOK_PATH))  # the group's webhook is down for now
    with serve_in_thread(bot.app) as bot_base:
        site = make_up(
            env={
                "ASSETSYNC_ASSET_SYNC__BINANCE__API_KEY": "key",
                "ASSETSYNC_ASSET_SYNC__BINANCE__API_SECRET": "secret",
                # Binance unreachable: the task fails fast and its failure raises an alert.
                "ASSETSYNC_ASSET_SYNC__BINANCE__BASE_URL": f"http://127.0.0.1:{free_port()}",
                "ASSETSYNC_ASSET_SYNC__ALERTS__FEISHU_WEBHOOK": bot.url(bot_base),
            }
        )
        done = site.run("task", "crypto", timeout=50)  # generous; it used to hold on for 60s more
        assert done.returncode == 1, done.stderr
        assert "crypto_sync: failed" in done.stdout and "stored: yes" in done.stdout
        assert "still queued; a running `assetsync up` or the next run delivers them" in done.stdout
        assert bot.switch.count(HOOK_PATH) > 0 and not bot.cards()

        bot.switch.clear()  # the webhook is back: the next run delivers the queued alert
        site.start().wait_ready()
        wait_for_sync(lambda: bot.cards(), 30, what="the queued alert delivered")
        assert "crypto" in str(bot.cards()[0]).lower()
        site.signal(signal.SIGTERM)
        assert site.wait(10) == 0

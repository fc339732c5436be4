"""The group-bot client against the webhook emulator: signing, limits, retries, rejections."""

from __future__ import annotations

import time

import pytest
from assetsync.feishu.bot import BotRejected, GroupBot, sign
from assetsync.secrets import Secret
from assetsync_emulators.common import serve
from assetsync_emulators.feishu_bot import BotEmulator

CARD = {"header": {"template": "red", "title": {"tag": "plain_text", "content": "t"}}, "elements": []}


def test_signature_matches_the_documented_algorithm() -> None:
    # HMAC-SHA256 keyed with "timestamp\nsecret" over an empty message, base64.
    import base64
    import hashlib
    import hmac

    want = base64.b64encode(hmac.new(b"1599360473\ndemo", b"", hashlib.sha256).digest()).decode()
    assert sign(1599360473, "demo") == want


async def test_signed_card_is_delivered_and_bad_secret_is_counted() -> None:
    emu = BotEmulator(hooks={"hook1": "s3cret"})
    async with serve(emu.app) as base:
        good = GroupBot(Secret(emu.url(base)), Secret("s3cret"), backoff_base=0.01)
        await good.send_card(CARD)
        bad = GroupBot(Secret(emu.url(base)), Secret("wrong"), backoff_base=0.01)
        with pytest.raises(BotRejected) as info:
            await bad.send_card(CARD)
        await good.aclose()
        await bad.aclose()
    assert emu.cards() == [CARD]
    assert info.value.code == 19021 and bad.stats["sign_failed"] == 1
    assert emu.rejected[19021] == 2  # tried once more with a fresh timestamp
    assert "s3cret" not in repr(good) and "hook1" not in repr(good)


async def test_webhook_404_is_a_permanent_rejection() -> None:
    emu = BotEmulator()
    async with serve(emu.app) as base:
        bot = GroupBot(Secret(base + "/open-apis/bot/v2/nohook/x"), backoff_base=0.01)
        with pytest.raises(BotRejected) as info:
            await bot.send_card(CARD)
        await bot.aclose()
    assert info.value.status == 404 and bot.stats["failed:not_found"] == 1 and bot.stats["requests"] == 1


async def test_client_stays_within_5_per_second() -> None:
    emu = BotEmulator()
    async with serve(emu.app) as base:
        bot = GroupBot(Secret(emu.url(base)), backoff_base=0.01)
        started = time.monotonic()
        for _ in range(7):
            await bot.send_card(CARD)
        elapsed = time.monotonic() - started
        await bot.aclose()
    assert len(emu.cards()) == 7 and emu.rejected[11232] == 0
    assert elapsed >= 0.95  # the 6th message waits for the first second to pass


async def test_bot_rate_limit_code_is_retried() -> None:
    emu = BotEmulator(per_second=2)
    async with serve(emu.app) as base:
        bot = GroupBot(Secret(emu.url(base)), per_second=50, backoff_base=0.3)
        for _ in range(4):
            await bot.send_card(CARD)
        await bot.aclose()
    assert len(emu.cards()) == 4 and emu.rejected[11232] >= 1 and bot.stats["rate_limited"] >= 1

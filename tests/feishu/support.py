"""Helpers for Feishu tests: an emulator on loopback and settings/clients pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from assetsync.config import Settings
from assetsync.feishu.client import FeishuClient, RetryPolicy
from assetsync_emulators.common import serve
from assetsync_emulators.feishu import FeishuEmulator

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.02, backoff_cap=0.2, budget=10.0)


@dataclass
class FeishuSite:
    """A running emulator and its base URL."""

    emu: FeishuEmulator
    url: str

    def overrides(self, **feishu: Any) -> dict[str, Any]:
        """Config overrides pointing the stack at this emulator."""
        return {
            "mcp_server": {"app_id": self.emu.app_id, "app_secret": self.emu.app_secret},
            "asset_sync": {"feishu": {"base_url": self.url, "app_token": self.emu.app_token, **feishu}},
        }

    def client(self, **kw: Any) -> FeishuClient:
        from assetsync.secrets import Secret

        kw.setdefault("retry", FAST_RETRY)
        kw.setdefault("max_qps", None)
        kw.setdefault("timeout", 2.0)
        return FeishuClient(self.url, self.emu.app_id, Secret(self.emu.app_secret), self.emu.app_token, **kw)


@contextlib.asynccontextmanager
async def feishu_site(**kw: Any) -> AsyncIterator[FeishuSite]:
    """Serve a fresh FeishuEmulator (kwargs are its settings) on loopback."""
    emu = FeishuEmulator(**kw)
    async with serve(emu.app) as url:
        yield FeishuSite(emu, url)


def client_for(settings: Settings, **kw: Any) -> FeishuClient:
    """A client from settings with test-speed retries."""
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("max_qps", None)
    kw.setdefault("timeout", 2.0)
    return FeishuClient.from_settings(settings, **kw)

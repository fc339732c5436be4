"""Feishu custom group-bot webhook emulator: signature check, 5/s + 100/min limits, recorded messages."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from assetsync.feishu.bot import MAX_BODY, sign
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from assetsync_emulators.common import FaultMiddleware, FaultSwitch

HOOK_PATH = "/open-apis/bot/v2/hook/"
_OK = {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}


@dataclass
class BotEmulator:
    """Webhooks by token (value = signing secret or None); `.messages` holds what the group received."""

    hooks: dict[str, str | None] = field(default_factory=lambda: {"emulator-hook-0001": None})
    keywords: list[str] = field(default_factory=list)
    per_second: int = 5
    per_minute: int = 100
    switch: FaultSwitch = field(default_factory=FaultSwitch)
    messages: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter[int] = field(default_factory=Counter)
    _sent: deque[float] = field(default_factory=deque)

    @property
    def app(self) -> ASGIApp:
        routes = [Route(HOOK_PATH + "{token}", self._hook, methods=["POST"])]
        return FaultMiddleware(Starlette(routes=routes), self.switch)

    def url(self, base: str, token: str | None = None) -> str:
        return base.rstrip("/") + HOOK_PATH + (token or next(iter(self.hooks)))

    def cards(self) -> list[dict[str, Any]]:
        return [m["card"] for m in self.messages if m.get("msg_type") == "interactive"]

    def _deny(self, code: int, msg: str) -> JSONResponse:
        self.rejected[code] += 1
        return JSONResponse({"code": code, "msg": msg, "data": {}})

    async def _hook(self, request: Request) -> JSONResponse:
        token = request.path_params["token"]
        if token not in self.hooks:
            return self._deny(19001, "param invalid: incoming webhook access token invalid")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return self._deny(9499, "Bad Request")
        if (
            len(raw) > MAX_BODY
            or not isinstance(body, dict)
            or body.get("msg_type")
            not in (
                "text",
                "post",
                "image",
                "share_chat",
                "interactive",
            )
        ):
            return self._deny(9499, "Bad Request")
        secret = self.hooks[token]
        if secret is not None:
            ts = str(body.get("timestamp", ""))
            ok = (
                ts.isdigit()
                and abs(time.time() - int(ts)) <= 3600
                and body.get("sign") == sign(int(ts), secret)
            )
            if not ok:
                return self._deny(
                    19021, "sign match fail or timestamp is not within one hour from current time"
                )
        now = time.monotonic()
        while self._sent and now - self._sent[0] >= 60.0:
            self._sent.popleft()
        last_second = sum(1 for t in self._sent if now - t < 1.0)
        if last_second >= self.per_second or len(self._sent) >= self.per_minute:
            return self._deny(11232, "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]")
        if self.keywords and not any(k in json.dumps(body, ensure_ascii=False) for k in self.keywords):
            return self._deny(19024, "Key Words Not Found")
        self._sent.append(now)
        self.messages.append({k: v for k, v in body.items() if k not in ("sign", "timestamp")})
        return JSONResponse(_OK)

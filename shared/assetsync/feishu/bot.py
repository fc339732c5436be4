"""The Feishu custom group bot (webhook): signed interactive cards, within the bot's 5/s and 100/min."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, Final

import httpx

from assetsync.retry import Backoff
from assetsync.secrets import Secret

if TYPE_CHECKING:
    from assetsync.metrics import Metrics

log = logging.getLogger("assetsync.feishu.bot")

SIGN_FAILED: Final = 19021
RATE_LIMITED: Final = 11232
BAD_REQUEST: Final = 9499
MAX_BODY: Final = 20 * 1024  # the bot refuses bodies over 20 KB


def sign(timestamp: int, secret: str) -> str:
    """The bot signature: base64(HMAC-SHA256(key = f"{timestamp}\\n{secret}", message = empty))."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class BotError(Exception):
    """A message the bot did not take; `transient` ones may be sent later."""

    transient = False

    def __init__(self, message: str, *, code: int = 0, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class BotUnavailable(BotError):
    """The webhook could not be reached, answered 5xx, or kept rate-limiting."""

    transient = True


class BotRejected(BotError):
    """The webhook refused the message for good (404, bad signature, bad request, keyword, IP)."""


class _Window:
    """Sliding-window limiter: at most `n` sends in any `period` seconds."""

    def __init__(self, n: int, period: float) -> None:
        self.n, self.period = n, period
        self.sent: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.sent and now - self.sent[0] >= self.period:
            self.sent.popleft()
        return 0.0 if len(self.sent) < self.n else self.sent[0] + self.period - now


class GroupBot:
    """Sends cards to one webhook. The URL and secret stay secret: neither is ever logged."""

    def __init__(
        self,
        webhook: Secret,
        secret: Secret | None = None,
        *,
        timeout: float = 10.0,
        per_second: int = 5,
        per_minute: int = 100,
        max_attempts: int = 4,
        backoff_base: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._webhook = webhook
        self._secret = secret or Secret("")
        self._http = httpx.AsyncClient(timeout=timeout)
        # A little slack on each window: the bot counts arrivals, we can only count departures.
        self._windows = (_Window(per_second, 1.1), _Window(per_minute, 61.0))
        self._lock = asyncio.Lock()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.stats: Counter[str] = Counter()
        self._m_sent = self._m_failed = None
        if metrics is not None:
            self._m_sent = metrics.counter("assetsync_alerts_sent_total", "Bot messages accepted", ("kind",))
            self._m_failed = metrics.counter(
                "assetsync_alerts_failed_total", "Bot messages not delivered, by reason", ("reason",)
            )

    def __repr__(self) -> str:
        return f"GroupBot(webhook={self._webhook!r}, signed={bool(self._secret)})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _pace(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                delay = max(w.wait(now) for w in self._windows)
                if delay <= 0:
                    for w in self._windows:
                        w.sent.append(now)
                    return
                await asyncio.sleep(delay)

    def _fail(self, reason: str) -> None:
        self.stats[f"failed:{reason}"] += 1
        if self._m_failed is not None:
            self._m_failed.labels(reason).inc()

    async def send_card(self, card: dict[str, Any], *, kind: str = "alert") -> None:
        """Send an interactive card; raises BotRejected (permanent) or BotUnavailable (try later)."""
        await self.send({"msg_type": "interactive", "card": card}, kind=kind)

    async def send(self, message: dict[str, Any], *, kind: str = "alert") -> None:
        sign_retried = False
        for attempt in range(1, self.max_attempts + 1):
            body = dict(message)
            if self._secret:
                ts = int(time.time())
                body["timestamp"] = str(ts)
                body["sign"] = sign(ts, self._secret.get())
            raw = json.dumps(body, ensure_ascii=False).encode()
            if len(raw) > MAX_BODY:
                self._fail("too_large")
                raise BotRejected(f"bot message is {len(raw)} bytes, over the bot's 20 KB limit")
            await self._pace()
            self.stats["requests"] += 1
            delay = Backoff(self.backoff_base, cap=60.0, jitter=(0.75, 1.25)).delay(attempt)
            try:
                resp = await self._http.post(
                    self._webhook.get(), content=raw, headers={"Content-Type": "application/json"}
                )
            except httpx.TransportError as exc:
                err: BotError = BotUnavailable(f"bot webhook unreachable: {type(exc).__name__}")
            else:
                err_or_none = self._outcome(resp)
                if err_or_none is None:
                    self.stats["sent"] += 1
                    if self._m_sent is not None:
                        self._m_sent.labels(kind).inc()
                    return
                err = err_or_none
                if err.code == SIGN_FAILED and not sign_retried:
                    # Once with a fresh timestamp (clock skew at the minute boundary); then it is the secret.
                    sign_retried = True
                    err = BotUnavailable(str(err), code=err.code)
                    delay = 0.0
                elif err.code == SIGN_FAILED:
                    self.stats["sign_failed"] += 1
                    self._fail("sign")
                    log.error(
                        "ALERT DELIVERY BROKEN: the Feishu bot rejected the signature (19021). Check "
                        "asset_sync.alerts.secret against the bot's 签名校验 secret and this host's clock."
                    )
                    raise err
            if not err.transient:
                self._fail("not_found" if err.status == 404 else f"code_{err.code or err.status}")
                log.error("bot message rejected: %s", err)
                raise err
            if attempt >= self.max_attempts:
                self._fail("unavailable")
                log.warning("bot message not delivered after %d attempts: %s", attempt, err)
                raise err
            if delay:
                await asyncio.sleep(delay)

    def _outcome(self, resp: httpx.Response) -> BotError | None:
        status = resp.status_code
        try:
            data = resp.json()
        except ValueError:
            data = None
        if status == 429 or status >= 500:
            self.stats["rate_limited" if status == 429 else "server_error"] += 1
            return BotUnavailable(f"bot webhook answered HTTP {status}", status=status)
        if status == 404 or not isinstance(data, dict) or not ({"code", "StatusCode"} & data.keys()):
            self.stats["not_found" if status == 404 else "bad_response"] += 1
            return BotRejected(
                f"bot webhook answered HTTP {status} (is asset_sync.alerts.feishu_webhook right?)",
                status=status,
            )
        code = int(data.get("code", data.get("StatusCode", 0)) or 0)
        msg = str(data.get("msg", data.get("StatusMessage", "")))
        if code == 0 and status == 200:
            return None
        if code == RATE_LIMITED or (code == BAD_REQUEST and "too many" in msg.lower()):
            self.stats["rate_limited"] += 1
            return BotUnavailable(f"bot rate limited: {msg}", code=code)
        return BotRejected(
            f"bot refused the message: {msg} [code {code}, HTTP {status}]", code=code, status=status
        )

"""FG001: the crypto fear & greed index from alternative.me (`GET /fng/?limit=1`, no key), as FeedRecords.

alternative.me answers `{"name": "Fear and Greed Index", "data": [{"value": "40", "value_classification":
"Fear", "timestamp": "1551157133", "time_until_update": "68499"}], "metadata": {"error": null}}` with
every number a string; the index changes once a day. A record is published only for a timestamp not
published before (its key is the timestamp, so a restart republishing it is dropped as a duplicate).
An HTML page, garbage, a 5xx/429 or `metadata.error` publishes nothing and is logged with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Annotated

import httpx
import msgspec
from assetsync.config import Settings
from assetsync.events import Event, FeedRecord
from assetsync.metrics import Metrics
from assetsync.retry import Backoff, Streak
from assetsync.secrets import mask_urls

log = logging.getLogger("assetsync.collector_crypto.sentiment")

CODE = "FG001"
SOURCE = "alternative.me"
PublishMany = Callable[[Sequence[Event]], Awaitable[None]]


class BadAnswer(Exception):
    """alternative.me's answer carries no usable index value; the message says why, `kind` for the counter."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Entry(msgspec.Struct):
    value: str
    value_classification: str
    timestamp: str
    time_until_update: str | None = None


class _Meta(msgspec.Struct):
    error: str | None = None


class _Answer(msgspec.Struct):
    data: list[_Entry] | None = None
    metadata: _Meta = msgspec.field(default_factory=_Meta)
    name: str = ""


_DECODER = msgspec.json.Decoder(_Answer)


class FearGreed(msgspec.Struct, kw_only=True):
    """The FG001 record: the index value (0-100), its class and the day it describes."""

    value: Annotated[int, msgspec.Meta(ge=0, le=100)]
    classification: Annotated[str, msgspec.Meta(min_length=1)]
    timestamp: Annotated[int, msgspec.Meta(gt=0)]  # unix seconds (alternative.me's day start)
    time_until_update: int | None = None  # seconds until the next value (latest entry only)
    source: str = SOURCE


def parse(body: bytes) -> FearGreed:
    """The latest entry of a `/fng/` answer; BadAnswer says what is wrong with it."""
    text = body.lstrip()
    if text[:1] == b"<":
        raise BadAnswer(f"an HTML page instead of JSON: {body[:60]!r}", "html")
    try:
        answer = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadAnswer(f"not the index's JSON ({exc}): {body[:60]!r}", "garbage") from None
    if answer.metadata.error:
        raise BadAnswer(f"alternative.me reported an error: {answer.metadata.error}", "error")
    if not answer.data:
        raise BadAnswer("the answer has no data entries", "empty")
    e = answer.data[0]
    try:
        return msgspec.convert(
            {
                "value": int(e.value),
                "classification": e.value_classification.strip(),
                "timestamp": int(e.timestamp),
                "time_until_update": int(e.time_until_update) if e.time_until_update else None,
            },
            FearGreed,
        )
    except (ValueError, msgspec.ValidationError) as exc:
        raise BadAnswer(
            f"an entry that is not an index value ({exc}): {msgspec.json.encode(e)!r}", "garbage"
        ) from None


def record_of(fg: FearGreed) -> FeedRecord:
    """The FG001 FeedRecord of one index value (key: its timestamp)."""
    return FeedRecord(
        code=CODE, record_key=str(fg.timestamp), ts=fg.timestamp * 1000, data=msgspec.to_builtins(fg)
    )


class FearGreedPoller:
    """Fetches the index every `market.fear_greed.interval_seconds`; publishes each new value once."""

    def __init__(
        self,
        settings: Settings,
        publish: PublishMany,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.publish = publish
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.failures = self.metrics.counter(
            "assetsync_fear_greed_failures_total", "Fear & greed fetches that published nothing", ("kind",)
        )
        self.streak = Streak(backoff or Backoff(base=5.0, cap=600.0, attempts=1_000_000))
        self.last: FearGreed | None = None
        self.failing = ""
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, stack: AsyncExitStack) -> None:
        self._task = asyncio.create_task(self.run(), name="fear-greed")
        stack.push_async_callback(self.stop)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.aclose()

    async def reconfigure(self, settings: Settings) -> None:
        self.settings = settings

    async def run(self) -> None:
        while True:
            await asyncio.sleep(await self.step())

    async def step(self) -> float:
        """One fetch (when on); seconds until the next one."""
        conf = self.settings.config.market.fear_greed
        if not self.settings.fear_greed_on():
            return conf.interval_seconds
        try:
            fg = await self.fetch()
        except BadAnswer as exc:
            self._fail(str(exc), exc.kind)
            return min(self.streak.fail(), conf.interval_seconds)
        except httpx.HTTPError as exc:
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "http"
            self._fail(mask_urls(f"{type(exc).__name__}: {exc}"), kind)
            return min(self.streak.fail(), conf.interval_seconds)
        if self.last is None or fg.timestamp != self.last.timestamp:
            try:
                await self.publish([record_of(fg)])
            except Exception as exc:  # the bus is down: the same value is published next time
                self._fail(f"could not publish: {exc}", "publish")
                return min(self.streak.fail(), conf.interval_seconds)
            log.info(
                "fear & greed %d (%s) for %d published as FG001", fg.value, fg.classification, fg.timestamp
            )
        self.streak.succeed()
        if self.failing:
            log.info("fear & greed: fetching works again (was %s)", self.failing)
            self.failing = ""
        self.last = fg
        return float(conf.interval_seconds)

    async def fetch(self) -> FearGreed:
        """GET `<base_url>/fng/?limit=1` and parse it (raises BadAnswer or httpx.HTTPError)."""
        conf = self.settings.config.market.fear_greed
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        url = conf.base_url.rstrip("/") + "/fng/"
        resp = await self._http.get(url, params={"limit": 1}, timeout=conf.timeout_seconds)
        if resp.status_code == 429:
            raise BadAnswer(
                f"rate-limited (HTTP 429, Retry-After {resp.headers.get('retry-after', '?')})", "rate_limited"
            )
        if resp.status_code >= 400:
            raise BadAnswer(f"HTTP {resp.status_code}: {resp.text[:60]!r}", f"http_{resp.status_code}")
        return parse(resp.content)

    def _fail(self, reason: str, kind: str) -> None:
        self.failures.labels(kind).inc()
        if not self.failing or self.failing.split(":", 1)[0] != kind:
            base = mask_urls(self.settings.config.market.fear_greed.base_url)
            log.warning("fear & greed (%s): no FG001 record: %s", base, reason)
        self.failing = f"{kind}: {reason}"

    def health(self) -> tuple[bool, str]:
        """Always ok (an outage of alternative.me is not this process's ill health); says how fetches go."""
        if self.failing:
            return True, f"fear & greed failing: {self.failing}"
        if self.last is None:
            return True, "fear & greed: first fetch pending"
        return True, f"fear & greed {self.last.value} ({self.last.classification})"

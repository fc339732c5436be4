"""Feeds of registry endpoints: tail a JSONL file, or poll an upstream HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
from assetsync.secrets import mask_urls

from assetsync_sync_gateway.feeds import FeedStore, NewRecord
from assetsync_sync_gateway.registry import Endpoint, data_file_path

log = logging.getLogger("assetsync.gateway.sources")
MAX_READ = 8 * 1024 * 1024  # bytes of a JSONL file taken per transaction


@dataclass
class SourceStatus:
    """What an endpoint's source did last (shown in the sender status)."""

    last_poll: float = 0.0
    last_error: str = ""
    records: int = 0
    skipped_lines: int = 0
    failures: int = 0


@dataclass
class Sources:
    """Background tasks that fill registry feeds; one per endpoint."""

    feeds: FeedStore
    data_dir: Path
    client: httpx.AsyncClient | None = None
    status: dict[str, SourceStatus] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, endpoints: list[Endpoint]) -> None:
        for ep in endpoints:
            self.status[ep.code] = SourceStatus()
            if ep.source == "jsonl":
                self._tasks.append(
                    asyncio.create_task(self._loop(ep, self.tail_jsonl), name=f"jsonl:{ep.code}")
                )
            elif ep.source == "http":
                self._tasks.append(
                    asyncio.create_task(self._loop(ep, self.poll_http), name=f"http:{ep.code}")
                )

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def _loop(self, ep: Endpoint, step: Callable[[Endpoint], Awaitable[int]]) -> None:
        st = self.status[ep.code]
        while True:
            try:
                await step(ep)
                if st.last_error:
                    log.info("endpoint %s: source works again", ep.code)
                st.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a source failing must not stop the others; retried next interval
                error = mask_urls(f"{type(exc).__name__}: {exc}")
                # Warn when the failure starts or changes, not every few seconds while it lasts.
                level = logging.DEBUG if error == st.last_error else logging.WARNING
                log.log(
                    level,
                    "endpoint %s: source failed (retrying every %ss): %s",
                    ep.code,
                    ep.interval_seconds,
                    error,
                )
                st.last_error = error
                st.failures += 1
            st.last_poll = time.time()
            await asyncio.sleep(ep.interval_seconds)

    async def tail_jsonl(self, ep: Endpoint) -> int:
        """Append the complete lines added to the endpoint's JSONL file since the last look."""
        path = data_file_path(ep, self.data_dir)
        st = self.status.setdefault(ep.code, SourceStatus())
        saved = await self.feeds.load_source_state(ep.code)
        pos = json.loads(saved) if saved else {"ino": 0, "offset": 0}
        try:
            info = path.stat()
        except FileNotFoundError:
            return 0
        if pos["ino"] and (info.st_ino != pos["ino"] or info.st_size < pos["offset"]):
            # The file was replaced or truncated: the feed starts over under a new epoch (receivers resync).
            log.warning("endpoint %s: %s was replaced or truncated; feed reset", ep.code, path)
            pos = {"ino": info.st_ino, "offset": 0}
            await self.feeds.reset(ep.code, json.dumps(pos))
        pos["ino"] = info.st_ino
        total = 0
        while info.st_size > pos["offset"]:
            chunk = await asyncio.to_thread(_read_lines, path, pos["offset"])
            if not chunk:
                break
            recs: list[NewRecord] = []
            for line in chunk.split(b"\n"):
                text = line.strip()
                if not text:
                    continue
                try:
                    msgspec.json.decode(text)
                except msgspec.DecodeError:
                    st.skipped_lines += 1
                    log.warning("endpoint %s: a line of %s is not JSON; skipped", ep.code, ep.data_file)
                    continue
                recs.append(NewRecord(origin="", data=text))
            pos["offset"] += len(chunk)
            total += await self.feeds.append_with_state(ep.code, recs, json.dumps(pos))
        st.records += total
        return total

    async def poll_http(self, ep: Endpoint) -> int:
        """GET the upstream URL once; the response body is one record."""
        if self.client is None:
            raise RuntimeError("no HTTP client for upstream endpoints")
        resp = await self.client.get(ep.upstream_url, timeout=max(5.0, min(30.0, ep.interval_seconds)))
        if resp.status_code != 200:
            raise RuntimeError(f"upstream {mask_urls(ep.upstream_url)} answered {resp.status_code}")
        body = resp.content.strip()
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise RuntimeError(f"upstream {mask_urls(ep.upstream_url)} did not answer JSON") from exc
        added = await self.feeds.append({ep.code: [NewRecord(origin="", data=body)]})
        n = added.get(ep.code, 0)
        self.status[ep.code].records += n
        return n


def _read_lines(path: Path, offset: int) -> bytes:
    """Bytes from `offset` up to the last newline (a partly written last line waits for next time)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, MAX_READ)
    finally:
        os.close(fd)
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""

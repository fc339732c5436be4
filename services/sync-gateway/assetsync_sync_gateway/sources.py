"""Feeds of registry endpoints: tail a JSONL file, or poll an upstream HTTP API.

A JSONL feed knows whether it has caught up with its file (`behind`): a page answered while lines
of the file are not in the feed yet would claim an end that is not there, so the sender asks the
tail to run now (`catch_up`) and, if it is still behind, says `has_more: true`.
An `http` feed appends a response only when its body differs from the last one appended for the
same URL: an `api_path`/`upstream_url` with `{coin}` is polled once per coin of `coins`, each with its
own hash, and each record is `{"coin": …, "data": <the body>}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from assetsync.secrets import mask_urls

from assetsync_sync_gateway.feeds import FeedStore, NewRecord
from assetsync_sync_gateway.registry import COIN_SLOT, Endpoint, RegistryError, data_file_path

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
    unchanged: int = 0  # http polls whose body was the same as the last record's


@dataclass
class TailState:
    """How far a JSONL feed has read its file: inode, byte offset, and the file size last seen whole."""

    path: Path
    ino: int = 0
    offset: int = 0
    seen: int = -1  # size of the file when the last pass started (-1: no pass yet)


@dataclass
class Sources:
    """Background tasks that fill registry feeds; one per endpoint."""

    feeds: FeedStore
    data_dir: Path
    client: httpx.AsyncClient | None = None
    status: dict[str, SourceStatus] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _tails: dict[str, TailState] = field(default_factory=dict)
    _wake: dict[str, asyncio.Event] = field(default_factory=dict)
    _passed: dict[str, asyncio.Event] = field(default_factory=dict)
    _hashes: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> coin ("" none) -> sha256

    def start(self, endpoints: list[Endpoint]) -> None:
        for ep in endpoints:
            self.status[ep.code] = SourceStatus()
            self._wake[ep.code] = asyncio.Event()
            self._passed[ep.code] = asyncio.Event()
            if ep.source == "jsonl":
                # A path that escapes the data dir is reported by the tail loop, which refuses it.
                with contextlib.suppress(RegistryError):
                    self._tails[ep.code] = TailState(data_file_path(ep, self.data_dir))
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
            passed, self._passed[ep.code] = self._passed[ep.code], asyncio.Event()
            passed.set()
            wake = self._wake[ep.code]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), ep.interval_seconds)
            wake.clear()

    def behind(self, code: str) -> bool:
        """True when a JSONL feed may lack lines its file already holds (a stat; no I/O otherwise)."""
        ts = self._tails.get(code)
        if ts is None:
            return False
        if ts.seen < 0:
            return True
        try:
            info = ts.path.stat()  # the tail itself re-checks the path each pass
        except (FileNotFoundError, NotADirectoryError):
            return False
        return info.st_ino != ts.ino or info.st_size != ts.seen

    async def catch_up(self, code: str, timeout: float) -> bool:
        """Run the feed's source now and wait (up to `timeout`) until it is not behind; True if caught up."""
        deadline = time.monotonic() + timeout
        while self.behind(code):
            left = deadline - time.monotonic()
            if left <= 0 or code not in self._wake:
                return False
            passed = self._passed[code]
            self._wake[code].set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(passed.wait(), left)
            if not passed.is_set():
                return False
        return True

    def error(self, code: str) -> str:
        st = self.status.get(code)
        return st.last_error if st is not None else ""

    async def tail_jsonl(self, ep: Endpoint) -> int:
        """Append the complete lines added to the endpoint's JSONL file since the last look."""
        path = data_file_path(ep, self.data_dir)
        st = self.status.setdefault(ep.code, SourceStatus())
        saved = await self.feeds.load_source_state(ep.code)
        pos = json.loads(saved) if saved else {"ino": 0, "offset": 0}
        tail = self._tails.setdefault(ep.code, TailState(path))
        try:
            info = path.stat()
        except FileNotFoundError:
            tail.seen = 0
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
        tail.ino, tail.offset, tail.seen = info.st_ino, pos["offset"], info.st_size
        st.records += total
        return total

    async def poll_http(self, ep: Endpoint) -> int:
        """Call the upstream once per `{coin}` expansion; each changed body is one record.

        Every expansion is polled even when one fails; the failures are then raised together (the
        loop shows them in the endpoint's status), the successes kept.
        """
        if self.client is None:
            raise RuntimeError("no HTTP client for upstream endpoints")
        st = self.status.setdefault(ep.code, SourceStatus())
        if ep.code not in self._hashes:
            saved = await self.feeds.load_source_state(ep.code)
            self._hashes[ep.code] = _saved_hashes(saved)
        hashes = self._hashes[ep.code]
        total = 0
        errors: list[str] = []
        expansions: list[str | None] = list(ep.coins) if ep.coins else [None]
        for coin in expansions:
            url = expand(ep.upstream_url, coin)
            try:
                body = await self._fetch(ep, url, coin)
            except RuntimeError as exc:
                errors.append(str(exc))
                continue
            slot = coin or ""
            digest = hashlib.sha256(body).hexdigest()
            if digest == hashes.get(slot):
                st.unchanged += 1
                continue
            data = body if coin is None else _tagged(coin, body)
            # The bodies' hashes are saved with the record: after a restart an unchanged body is no news.
            state = json.dumps({"sha256": {**hashes, slot: digest}})
            total += await self.feeds.append_with_state(ep.code, [NewRecord(origin="", data=data)], state)
            hashes[slot] = digest
        st.records += total
        if errors:
            raise RuntimeError("; ".join(errors))
        return total

    async def _fetch(self, ep: Endpoint, url: str, coin: str | None) -> bytes:
        """One upstream call: `params` as the query string (GET) or the JSON body (POST); JSON or an error."""
        assert self.client is not None
        params = expand_params(ep.params, coin)
        where = mask_urls(url) + (f" ({coin})" if coin else "")
        timeout = max(5.0, min(30.0, ep.interval_seconds))
        try:
            if ep.method.upper() == "POST":
                resp = await self.client.post(url, json=params or {}, timeout=timeout)
            else:
                resp = await self.client.get(url, params=params, timeout=timeout)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"upstream {where}: {type(exc).__name__}: {mask_urls(str(exc))}") from exc
        if resp.status_code != 200:
            raise RuntimeError(f"upstream {where} answered {resp.status_code}")
        body = resp.content.strip()
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise RuntimeError(f"upstream {where} did not answer JSON") from exc
        return body


def expand(text: str, coin: str | None) -> str:
    """`text` with `{coin}` replaced (unchanged without a coin)."""
    return text if coin is None else text.replace(COIN_SLOT, coin)


def expand_params(params: dict[str, Any] | None, coin: str | None) -> dict[str, Any] | None:
    """The endpoint's params with `{coin}` replaced in text values."""
    if not params or coin is None:
        return params
    return {k: expand(v, coin) if isinstance(v, str) else v for k, v in params.items()}


def _tagged(coin: str, body: bytes) -> bytes:
    """The record of one `{coin}` expansion: the coin and the upstream body as it came."""
    return b'{"coin":' + msgspec.json.encode(coin) + b',"data":' + body + b"}"


def _saved_hashes(saved: str | None) -> dict[str, str]:
    """Last body hash per expansion ("" = no coin); a plain string is the state before `{coin}`."""
    if not saved:
        return {}
    got = json.loads(saved).get("sha256", "")
    if isinstance(got, str):
        return {"": got} if got else {}
    return {str(k): str(v) for k, v in got.items()}


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

"""Feeds over time (CONTRACTS §5.2): ?latest=N, change-only http feeds, bounded feeds, honest ends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from assetsync_sync_gateway.registry import Catalog, RegistryError, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support import wait_for
from tests.sync_gateway.support import ext, fill, gw_conf, make_gateway, receiver_conf, serve, site_settings

DATA = "/api/data-sync/sender/data/"


async def pages(
    c: httpx.AsyncClient, code: str, since: str | None = None, limit: int = 10000
) -> tuple[list[Any], str]:
    """Every record from `since` to the end the sender admits (following has_more), and the last cursor."""
    out: list[Any] = []
    while True:
        params: dict[str, Any] = {"limit": limit}
        if since:
            params["since"] = since
        r = await c.get(DATA + code, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["records"])
        since = body["next_cursor"]
        if not body["has_more"]:
            return out, str(since)


async def test_latest_n_returns_the_newest_records_and_a_cursor_after_them(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "A", extra=[ext("LT001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        await fill(gw, "LT001", 30)
        await fill(gw, "LT001", 10, start=30, origin="B")
        r = (await c.get(DATA + "LT001", params={"latest": 5})).json()
        assert [x["data"]["i"] for x in r["records"]] == [35, 36, 37, 38, 39]
        assert r["has_more"] is False
        r2 = (await c.get(DATA + "LT001", params={"latest": 3, "exclude_origin": "B"})).json()
        assert [x["data"]["i"] for x in r2["records"]] == [27, 28, 29]
        await fill(gw, "LT001", 2, start=40)
        after = (await c.get(DATA + "LT001", params={"since": r["next_cursor"]})).json()
        assert [x["data"]["i"] for x in after["records"]] == [40, 41]
        everything = (await c.get(DATA + "LT001", params={"latest": 1000})).json()
        assert len(everything["records"]) == 42
        assert (await c.get(DATA + "LT001", params={"latest": 0})).status_code == 400
        both = await c.get(DATA + "LT001", params={"latest": 2, "since": r["next_cursor"]})
        assert both.status_code == 400 and "latest" in both.json()["error"]


async def test_http_source_appends_only_when_the_body_changes(tmp_path: Path) -> None:
    from assetsync_sync_gateway.http_server import server_config, serving

    state = {"price": 100}

    async def current(request: Request) -> JSONResponse:
        return JSONResponse({"price": state["price"]})

    async with serving(
        server_config(Starlette(routes=[Route("/p", current)]), "127.0.0.1", 0, log_level="error")
    ) as up:
        eps = validate(
            [
                {
                    "code": "OKX901",
                    "category": "okx_data",
                    "name": "价格",
                    "api_path": "/api/okx/p",
                    "interval_seconds": 0.02,
                    "source": "http",
                    "upstream_url": f"{up.url}/p",
                }
            ],
            tmp_path,
        )
        gw = make_gateway(tmp_path, "A", extra=eps, run_sources=True)
        async with serve(gw):
            st = gw.sources.status
            await wait_for(lambda: st["OKX901"].unchanged >= 5, 10, what="unchanged polls")
            assert gw.feeds.state("OKX901").count == 1
            state["price"] = 101
            await wait_for(lambda: gw.feeds.state("OKX901").count == 2, 10, what="changed body")
            state["price"] = 100  # back to an earlier body: still a change from the last one
            await wait_for(lambda: gw.feeds.state("OKX901").count == 3, 10, what="changed back")
        # Restarted: the last body's hash was saved with it, so the same answer is still no news.
        gw2 = make_gateway(tmp_path, "A", extra=eps, run_sources=True)
        async with serve(gw2):
            await wait_for(
                lambda: gw2.sources.status["OKX901"].unchanged >= 3, 10, what="polls after restart"
            )
            assert gw2.feeds.state("OKX901").count == 3
        assert eps[0].limits() == (30.0, 0)  # an http feed's default retention


async def test_max_records_holds_after_every_append_and_receivers_resync_from_the_oldest(
    tmp_path: Path,
) -> None:
    a = make_gateway(tmp_path / "a", "A", extra=[ext("MX001", max_records=10)])
    async with serve(a) as sa:
        b = make_gateway(
            tmp_path / "b", "B", extra=[], conf=gw_conf(receiver=receiver_conf(sa.url)), builtin=False
        )
        async with serve(b), httpx.AsyncClient(base_url=sa.url) as c:
            await fill(a, "MX001", 10)
            first = (await b.receiver.start_sync("MX001")[0]).records
            assert first == 10
            early = (await c.get(DATA + "MX001", params={"limit": 2})).json()["next_cursor"]
            for k in range(3):
                await fill(a, "MX001", 5, start=10 + 5 * k)
                assert a.feeds.state("MX001").count == 10
            kept, _ = await pages(c, "MX001")
            assert [x["data"]["i"] for x in kept] == list(range(15, 25))
            # A cursor into what is gone: 409 naming the low-water mark, not a page with a silent gap.
            r = await c.get(DATA + "MX001", params={"since": early})
            assert r.status_code == 409 and r.headers["x-feed-low-water"] == "15"
            assert "retention" in r.json()["error"] or "no longer kept" in r.json()["error"]
            # B's cursor (after record 10) is below the floor too: it resyncs from the oldest kept
            # record and keeps what it already had.
            out = await b.receiver.start_sync("MX001")[0]
            assert out.status == "success", out.error
            got = [int(x[2].split(b'"i":')[1].split(b",")[0]) for x in await b.received.records("MX001")]
            assert got == list(range(10)) + list(range(15, 25))
            lines = (tmp_path / "b" / "synced_data" / "MX001.jsonl").read_text().splitlines()
            assert len(lines) == 20 and len(set(lines)) == 20
            assert b.receiver.stats.endpoint("MX001").resyncs == 1
            status = (await c.get("/api/data-sync/sender/status")).json()["endpoint_stats"]["MX001"]
            assert status["low_water"] == 15 and status["records"] == 10


async def test_retention_days_prunes_old_records_and_survives_restart(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "A", extra=[ext("RT001", retention_days=2)])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        await fill(gw, "RT001", 5)
        await fill(gw, "RT001", 5, start=5)
        cursor = (await c.get(DATA + "RT001", params={"limit": 3})).json()["next_cursor"]
        now = int(time.time() * 1000)
        assert await gw.feeds.prune(now + 86_400_000) == {}  # a day later: nothing is 2 days old
        removed = await gw.feeds.prune(now + 3 * 86_400_000)
        assert removed == {"RT001": 10}
        assert (await c.get(DATA + "RT001", params={"since": cursor})).status_code == 409
        empty = (await c.get(DATA + "RT001")).json()
        assert empty["records"] == [] and empty["has_more"] is False
        await fill(gw, "RT001", 1, start=10)
        assert [x["data"]["i"] for x in (await pages(c, "RT001"))[0]] == [10]
    gw2 = make_gateway(tmp_path, "A", extra=[ext("RT001", retention_days=2)])
    async with serve(gw2) as s2, httpx.AsyncClient(base_url=s2.url) as c2:
        assert gw2.feeds.state("RT001").floor == 10 and gw2.feeds.state("RT001").count == 1
        assert (await c2.get(DATA + "RT001", params={"since": cursor})).status_code == 409


def test_builtin_feeds_have_bounded_defaults_and_config_overrides(tmp_path: Path) -> None:
    gw = make_gateway(
        tmp_path, "A", conf=gw_conf(feeds={"AS002": {"retention_days": 7}, "AS004": {"max_records": 500}})
    )
    eps = gw.catalog.endpoints
    assert eps["AS002"].limits() == (7.0, 0) and eps["AS004"].limits() == (0.0, 500)
    assert eps["AS001"].limits() == (180.0, 0) and eps["AS006"].limits() == (0.0, 0)
    assert eps["AS002"].public()["retention_days"] == 7.0 and eps["AS006"].public()["retention_days"] is None
    assert set(gw.feeds.limits) == {"AS001", "AS002", "AS003", "AS004"}
    with pytest.raises(RegistryError, match="NOPE"):
        Catalog(limits={"NOPE": (1.0, None)})
    with pytest.raises(RegistryError, match=">= 0"):
        Catalog(limits={"AS002": (-1.0, None)})
    with pytest.raises(RegistryError, match="max_records"):
        validate([{"code": "X", "category": "c", "name": "n", "api_path": "/x", "source": "http",
                   "upstream_url": "http://h/x", "max_records": -1}], tmp_path)  # fmt: skip


async def test_jsonl_feed_never_claims_an_end_its_file_has_not_reached(tmp_path: Path) -> None:
    """20,000 lines in the file at start, 20,000 more between polls: every read gets them all."""
    data = tmp_path / "data"
    (data / "feeds").mkdir(parents=True)
    f = data / "feeds" / "big.jsonl"
    f.write_bytes(b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * 40) for i in range(20000)))
    eps = validate(
        [{"code": "BIG001", "category": "big_data", "name": "大", "api_path": "/api/big",
          "source": "jsonl", "data_file": "feeds/big.jsonl", "interval_seconds": 3600}],
        data,
    )  # fmt: skip
    gw = make_gateway(data, "A", extra=eps, run_sources=True)
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url, timeout=30) as c:
        # Right after start: the first answer must not be an empty "that's all".
        first = (await c.get(DATA + "BIG001", params={"limit": 10000})).json()
        assert first["records"] or first["has_more"]
        got, end = await pages(c, "BIG001")
        assert [x["data"]["n"] for x in got] == list(range(20000))
        # Lines appended while the tail sleeps (its interval is an hour) are caught up on request.
        with f.open("ab") as fh:
            fh.write(b"".join(b'{"n":%d}\n' % i for i in range(20000, 40000)))
        more, _ = await pages(c, "BIG001", since=end)
        assert [x["data"]["n"] for x in more] == list(range(20000, 40000))
        # A receiver pulling the feed gets every line too, exactly once.
        b = make_gateway(tmp_path / "b", "B", conf=gw_conf(receiver=receiver_conf(s.url)), builtin=False)
        async with serve(b):
            with f.open("ab") as fh:
                fh.write(b'{"n":40000}\n')
            out = await b.receiver.start_sync("BIG001")[0]
            assert out.status == "success" and out.records == 40001
        lines = (tmp_path / "b" / "synced_data" / "BIG001.jsonl").read_bytes().count(b"\n")
        assert lines == 40001


async def test_a_failing_source_answers_503_not_a_false_end(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "feeds" / "dir.jsonl").mkdir(parents=True)  # a directory where a file should be: unreadable
    eps = validate(
        [{"code": "BAD001", "category": "bad_data", "name": "坏", "api_path": "/api/bad",
          "source": "jsonl", "data_file": "feeds/dir.jsonl", "interval_seconds": 3600}],
        data,
    )  # fmt: skip
    gw = make_gateway(data, "A", extra=eps, run_sources=True)
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        await wait_for(lambda: gw.sources.status["BAD001"].last_error, 10, what="source error")
        r = await c.get(DATA + "BAD001")
        assert r.status_code == 503 and r.headers["retry-after"] and "BAD001" in r.json()["error"]


async def test_builtin_feeds_say_has_more_until_the_bus_is_caught_up(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "A")
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        gw.builtin_ready.clear()
        behind = (await c.get(DATA + "AS001", params={"limit": 5})).json()
        assert behind["records"] == [] and behind["has_more"] is True
        waiting = asyncio.create_task(c.get(DATA + "AS001", params={"since": behind["next_cursor"]}))
        gw.builtin_ready.set()
        r = (await waiting).json()
        assert r["has_more"] is False


async def test_gateway_started_after_the_bus_filled_serves_everything_it_held(
    tmp_path: Path, nats_server: Any, prefix: str
) -> None:
    """Events published before the gateway starts: its first reader still gets all of them."""
    from contextlib import AsyncExitStack

    from assetsync.metrics import Metrics
    from assetsync.runtime import open_runtime
    from assetsync_sync_gateway.service import GatewayService, build

    from tests.sync_gateway.support import holding

    settings = site_settings(tmp_path, prefix, "A")
    async with AsyncExitStack() as stack:
        rt = await stack.enter_async_context(
            open_runtime(settings, nats_server.url, name="gw-late", metrics=Metrics())
        )
        await rt.publisher.publish_many([holding(f"C{i}", 1000 + i) for i in range(3000)])
        await rt.publisher.flush()
        svc = build(rt)
        assert isinstance(svc, GatewayService)
        gate = asyncio.Event()
        ingest = svc._handle

        async def gated(batch: Any) -> None:  # the consumers hold their first batches until the gate opens
            await gate.wait()
            await ingest(batch)

        svc._handle = gated  # type: ignore[method-assign]
        await svc.start(stack)
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as c:
            first = (await c.get(DATA + "AS001")).json()
            assert first["records"] == [] and first["has_more"] is True
            gate.set()
            got, _ = await pages(c, "AS001", since=first["next_cursor"], limit=500)
        assert len(got) == 3000 and svc.gw.builtin_ready.is_set()


def test_a_bound_for_an_unknown_feed_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    from assetsync.config import ConfigError
    from assetsync.metrics import Metrics
    from assetsync_sync_gateway.service import build

    class FakeRt:
        def __init__(self, settings: Any) -> None:
            self.settings = settings
            self.publisher = None
            self.metrics = Metrics()

    bad = site_settings(tmp_path, "p", "A", feeds={"NOPE1": {"max_records": 5}})
    with pytest.raises(ConfigError, match=r"sync_gateway\.feeds.*NOPE1"):
        build(FakeRt(bad))  # type: ignore[arg-type]


async def test_a_sync_against_a_sender_still_catching_up_ends_and_resumes(tmp_path: Path) -> None:
    from dataclasses import replace

    from tests.sync_gateway.support import FAST, holding

    a = make_gateway(tmp_path / "a", "A")
    async with serve(a) as sa:
        await a.ingest([holding("BTC", 1)])
        a.builtin_ready.clear()  # A's feeds are (still) reading its bus
        b = make_gateway(
            tmp_path / "b",
            "B",
            conf=gw_conf(receiver=receiver_conf(sa.url)),
            builtin=False,
            tuning=replace(FAST, catch_up_pages=1),
        )
        async with serve(b):
            out = await b.receiver.start_sync("AS001")[0]
            assert out.status == "failed" and "catching up" in out.error
            assert out.records == 1  # what was there is kept
            a.builtin_ready.set()
            await a.ingest([holding("ETH", 2)])
            again = await b.receiver.start_sync("AS001")[0]
            assert again.status == "success" and again.records == 1

"""The replication protocol over real HTTP: pages, cursors, epochs, ETags, compression, batch, exclusion."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import zstandard
from assetsync_sync_gateway.envelope import encode_cursor
from assetsync_sync_gateway.feeds import NewRecord

from tests.sync_gateway.support import Site, ext, fill, gw_conf, holding, make_gateway, serve

DATA = "/api/data-sync/sender/data"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    gw = make_gateway(
        tmp_path, "A", extra=[ext("PB001"), ext("AN001")], conf=gw_conf(sender={"rate_limit": 0})
    )
    async with serve(gw) as s:
        yield s


async def test_pages_cover_the_feed_in_order_with_opaque_resumable_cursors(site: Site) -> None:
    await fill(site.gw, "PB001", 1234)
    seen: list[int] = []
    cursor = None
    pages = 0
    async with httpx.AsyncClient(base_url=site.url) as c:
        while True:
            params = {"limit": "500", **({"since": cursor} if cursor else {})}
            r = await c.get(f"{DATA}/PB001", params=params)
            assert r.status_code == 200
            body = r.json()
            assert set(body) == {"code", "records", "next_cursor", "has_more"}
            assert body["code"] == "PB001" and isinstance(body["next_cursor"], str)
            for rec in body["records"]:
                assert set(rec) == {"seq", "origin", "data"} and rec["origin"] == "A"
                seen.append(rec["data"]["i"])
            pages += 1
            cursor = body["next_cursor"]
            if not body["has_more"]:
                break
        assert seen == list(range(1234)) and pages == 3
        # The last cursor is the resume point: new records show up after it, nothing twice.
        await fill(site.gw, "PB001", 3, start=1234)
        r = await c.get(f"{DATA}/PB001", params={"since": cursor})
        assert [x["data"]["i"] for x in r.json()["records"]] == [1234, 1235, 1236]
        # No since = from the beginning, default page size 500.
        r = await c.get(f"{DATA}/PB001")
        assert len(r.json()["records"]) == 500 and r.json()["has_more"] is True


async def test_pages_are_capped_by_bytes(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "A", extra=[ext("BIG")])
    async with serve(gw) as s:
        blob = "x" * 200_000
        await gw.feeds.append(
            {"BIG": [NewRecord("", json.dumps({"k": k, "blob": blob}).encode()) for k in range(40)]}
        )
        async with httpx.AsyncClient(base_url=s.url) as c:
            r = await c.get(f"{DATA}/BIG", params={"limit": "10000"})
            body = r.json()
            assert body["has_more"] is True
            assert 0 < len(body["records"]) < 40
            assert len(r.content) <= 4 * 1024 * 1024 + 300_000


async def test_bad_requests_are_answered_with_the_contract_codes(site: Site) -> None:
    await fill(site.gw, "PB001", 5)
    async with httpx.AsyncClient(base_url=site.url) as c:
        assert (await c.get(f"{DATA}/NOPE001")).status_code == 404
        assert (await c.get(f"{DATA}/PB001", params={"since": "garbage!!"})).status_code == 400
        assert (await c.get(f"{DATA}/PB001", params={"since": "djEuZm9vLjE"})).status_code == 400
        assert (await c.get(f"{DATA}/PB001", params={"limit": "0"})).status_code == 400
        assert (await c.get(f"{DATA}/PB001", params={"limit": "abc"})).status_code == 400
        assert (await c.get(f"{DATA}/PB001", params={"exclude_origin": "a b"})).status_code == 400
        # Path traversal in a code never reaches the filesystem or another route.
        for evil in ("..%2F..%2Fetc%2Fpasswd", "..", "PB001%00", "%2e%2e"):
            r = await c.get(f"{DATA}/{evil}")
            assert r.status_code == 404, evil
        r = await c.get(f"{DATA}/PB001")
        cursor = r.json()["next_cursor"]
        # The feed is recreated (new epoch): the old cursor is refused with 409, never silently skipped.
        await site.gw.feeds.reset("PB001")
        r = await c.get(f"{DATA}/PB001", params={"since": cursor})
        assert r.status_code == 409 and "resync" in r.json()["error"]
        # A cursor forged for the current epoch but past the head is harmless: an empty page.
        ahead = encode_cursor(site.gw.feeds.state("PB001").epoch, 10**9)
        r = await c.get(f"{DATA}/PB001", params={"since": ahead})
        assert r.status_code == 200 and r.json()["records"] == []


async def test_idle_poll_is_a_small_304_and_new_data_breaks_it(site: Site) -> None:
    await fill(site.gw, "PB001", 10)
    async with httpx.AsyncClient(base_url=site.url) as c:
        r = await c.get(f"{DATA}/PB001")
        etag, cursor = r.headers["etag"], r.json()["next_cursor"]
        r2 = await c.get(f"{DATA}/PB001", params={"since": cursor}, headers={"If-None-Match": etag})
        assert r2.status_code == 304 and r2.content == b""
        assert r2.headers["x-feed-head"] == "10"
        await fill(site.gw, "PB001", 1, start=10)
        r3 = await c.get(f"{DATA}/PB001", params={"since": cursor}, headers={"If-None-Match": etag})
        assert r3.status_code == 200 and [x["data"]["i"] for x in r3.json()["records"]] == [10]


async def test_gzip_and_zstd_are_negotiated_with_vary(site: Site) -> None:
    await fill(site.gw, "PB001", 300)
    async with httpx.AsyncClient(base_url=site.url) as c:
        plain = await c.get(f"{DATA}/PB001", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding"
        async with c.stream("GET", f"{DATA}/PB001", headers={"Accept-Encoding": "gzip"}) as r:
            raw_gz = b"".join([x async for x in r.aiter_raw()])
            assert r.headers["content-encoding"] == "gzip"
        async with c.stream("GET", f"{DATA}/PB001", headers={"Accept-Encoding": "gzip, zstd"}) as r:
            raw_zst = b"".join([x async for x in r.aiter_raw()])
            assert r.headers["content-encoding"] == "zstd"
        assert gzip.decompress(raw_gz) == plain.content
        assert zstandard.ZstdDecompressor().decompressobj().decompress(raw_zst) == plain.content
        assert len(raw_gz) * 3 < len(plain.content) and len(raw_zst) * 3 < len(plain.content)
        refused = await c.get(f"{DATA}/PB001", headers={"Accept-Encoding": "gzip;q=0, zstd;q=0"})
        assert "content-encoding" not in refused.headers


async def test_exclude_origin_never_sends_a_site_its_own_records(site: Site) -> None:
    gw = site.gw
    await gw.feeds.append({"PB001": [NewRecord("A", b'{"mine":1}'), NewRecord("B", b'{"theirs":1}', oseq=7)]})
    await gw.feeds.append({"PB001": [NewRecord("A", b'{"mine":2}')]})
    async with httpx.AsyncClient(base_url=site.url) as c:
        body = (await c.get(f"{DATA}/PB001", params={"exclude_origin": "B"})).json()
        assert [r["data"] for r in body["records"]] == [{"mine": 1}, {"mine": 2}]
        all_ = (await c.get(f"{DATA}/PB001")).json()["records"]
        relayed = [r for r in all_ if r["origin"] == "B"]
        assert relayed == [{"seq": 2, "origin": "B", "oseq": 7, "data": {"theirs": 1}}]
        # Excluded records still advance the cursor: the next poll starts after them.
        again = (
            await c.get(f"{DATA}/PB001", params={"exclude_origin": "B", "since": body["next_cursor"]})
        ).json()
        assert again["records"] == [] and again["has_more"] is False


async def test_batch_returns_several_pages_and_refuses_oversized_requests(site: Site) -> None:
    await fill(site.gw, "PB001", 20)
    await site.gw.ingest([holding("BTC", 1), holding("ETH", 2)])
    async with httpx.AsyncClient(base_url=site.url) as c:
        r = await c.post(
            "/api/data-sync/sender/batch",
            json={"requests": [{"code": "PB001", "limit": 5}, {"code": "AS001"}, {"code": "NOPE"}]},
            headers={"Accept-Encoding": "gzip"},
        )
        assert r.status_code == 200
        results = r.json()["results"]
        assert [x["code"] for x in results] == ["PB001", "AS001", "NOPE"]
        assert len(results[0]["records"]) == 5 and results[0]["has_more"] is True
        assert [x["data"]["asset"] for x in results[1]["records"]] == ["BTC", "ETH"]
        assert results[2]["status"] == 404
        many = {"requests": [{"code": "PB001"}] * 51}
        assert (await c.post("/api/data-sync/sender/batch", json=many)).status_code == 413
        huge = b'{"requests": [' + b'{"code": "PB001"},' * 20000 + b'{"code": "PB001"}]}'
        assert (await c.post("/api/data-sync/sender/batch", content=huge)).status_code == 413
        r = await c.post("/api/data-sync/sender/batch", content=b"{not json", headers=JSON)
        assert r.status_code == 400


async def test_catalog_status_and_openapi_describe_the_gateway(site: Site) -> None:
    await fill(site.gw, "PB001", 3)
    async with httpx.AsyncClient(base_url=site.url) as c:
        cat = (await c.get("/api/data-sync/sender/catalog")).json()
        codes = [e["code"] for e in cat["endpoints"]]
        assert {"AS001", "AS007", "PB001", "AN001"} <= set(codes) and cat["site_id"] == "A"
        pb = next(e for e in cat["endpoints"] if e["code"] == "PB001")
        assert {"code", "category", "name", "api_path", "method", "description", "interval_seconds"} <= set(
            pb
        )
        assert pb["records"] == 3 and "upstream_url" not in pb
        found = (await c.get("/api/data-sync/sender/catalog", params={"q": "an001"})).json()
        assert [e["code"] for e in found["endpoints"]] == ["AN001"]
        await c.get(f"{DATA}/PB001")
        await c.get(f"{DATA}/NOPE")
        st = (await c.get("/api/data-sync/sender/status")).json()
        for key in (
            "total_requests",
            "successful_requests",
            "failed_requests",
            "total_bytes_sent",
            "last_request_time",
        ):
            assert key in st
        assert st["endpoint_stats"]["PB001"]["requests"] == 1 and st["failed_requests"] >= 1
        doc = (await c.get("/openapi.json")).json()
        for path in (
            "/api/data-sync/sender/status",
            "/api/data-sync/sender/catalog",
            "/api/data-sync/sender/data/{code}",
            "/api/data-sync/sender/batch",
            "/api/data-sync/sender/config",
            "/api/data-sync/receiver/status",
            "/api/data-sync/receiver/config",
            "/api/data-sync/receiver/sync-all",
            "/api/data-sync/receiver/sync/{code}",
            "/api/data-sync/receiver/start-auto-sync",
            "/api/data-sync/receiver/stop-auto-sync",
            "/data-sync-manager",
            "/metrics",
            "/healthz",
        ):
            assert path in doc["paths"], path
        assert (await c.get("/healthz")).json()["ok"] is True
        html = (await c.get("/data-sync-manager")).text
        for label in ("总览", "发送端", "接收端", "数据目录", "日志", "立即全量同步"):
            assert label in html


async def test_sender_statistics_survive_a_restart(tmp_path: Path) -> None:
    for round_ in (1, 2):
        gw = make_gateway(tmp_path, "A", extra=[ext("PB001")])
        async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
            await c.get(f"{DATA}/PB001")
            st = (await c.get("/api/data-sync/sender/status")).json()
            assert st["endpoint_stats"]["PB001"]["requests"] == round_

"""Receiver end to end over real HTTP: full copy, mirror, dedupe, resync, restarts, faults, two sites."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from assetsync.embedded import free_port
from assetsync.events import Event, ExternalRecord, Holding
from assetsync_sync_gateway.core import Gateway

from tests.support import wait_for
from tests.sync_gateway.support import (
    FlakyProxy,
    ext,
    fill,
    gw_conf,
    holding,
    make_gateway,
    receiver_conf,
    serve,
    tick,
)

ADMIN = "/api/data-sync/receiver"


def mirror_lines(gw: Gateway, code: str) -> list[dict[str, object]]:
    p = gw.data_dir / "synced_data" / f"{code}.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


async def received_datas(gw: Gateway, code: str) -> list[bytes]:
    return sorted(
        json.dumps(json.loads(d), sort_keys=True).encode() for _, _, d in await gw.received.records(code)
    )


async def source_datas(gw: Gateway, code: str) -> list[bytes]:
    page = await gw.feeds.page(code, 0, limit=10000, max_bytes=1 << 30)
    body = json.loads(page.body)
    return sorted(json.dumps(r["data"], sort_keys=True).encode() for r in body["records"])


async def test_full_copy_with_mirror_status_and_bus_republish(tmp_path: Path) -> None:
    a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
    published: list[Event] = []

    async def sink(events: Sequence[Event]) -> None:
        published.extend(events)

    async with serve(a) as sa:
        await fill(a, "PB001", 1600)
        await a.ingest([holding("BTC", 1), holding("ETH", 1), tick("SOL", 5)])
        b = make_gateway(tmp_path / "b", "B", conf=gw_conf(receiver=receiver_conf(sa.url)), sink=sink)
        async with serve(b) as sb, httpx.AsyncClient(base_url=sb.url) as c:
            r = await c.post(f"{ADMIN}/sync-all", params={"wait": "true"}, json={})
            assert r.status_code == 200
            results = {x["code"]: x for x in r.json()["results"]}
            assert results["PB001"]["records"] == 1600 and results["PB001"]["status"] == "success"
            assert [x["i"] for x in mirror_lines(b, "PB001")] == list(range(1600))
            assert len(mirror_lines(b, "AS001")) == 2
            st = (await c.get(f"{ADMIN}/status")).json()
            pb = st["endpoint_stats"]["PB001"]
            assert pb["records"] == 1600 and pb["lag"] == 0 and pb["last_error"] == "" and pb["cursor"]
            assert 0 < pb["bytes"] < pb["bytes_raw"] / 3
            assert (
                st["total_syncs"] >= 8
                and st["successful_syncs"] == st["total_syncs"]
                and st["syncing"] is False
            )
            assert st["total_bytes_received"] > 0 and st["last_sync_time"]
            # Built-in records come back as their own event type with the origin kept; others as ExternalRecord.
            holdings = [e for e in published if isinstance(e, Holding)]
            assert {h.asset for h in holdings} == {"BTC", "ETH"} and all(h.origin == "A" for h in holdings)
            ext_recs = [e for e in published if isinstance(e, ExternalRecord)]
            assert len(ext_recs) == 1600 and ext_recs[0].origin == "A" and ext_recs[0].code == "PB001"
            assert ext_recs[5].seq == 6 and ext_recs[5].data == {"i": 5, "payload": "record number 5"}
            # A new record moves exactly one record; an idle poll moves nothing.
            await fill(a, "PB001", 1, start=1600)
            r = await c.post(f"{ADMIN}/sync/PB001", params={"wait": "1"}, json={})
            assert r.json()["results"][0]["records"] == 1
            r = await c.post(f"{ADMIN}/sync/PB001", params={"wait": "1"}, json={})
            assert r.json()["results"][0]["records"] == 0 and r.json()["results"][0]["bytes"] == 0
            assert len(mirror_lines(b, "PB001")) == 1601
            metrics = (await c.get("/metrics")).text
            assert 'assetsync_gateway_receiver_records_total{code="PB001"} 1601.0' in metrics
            assert 'assetsync_gateway_receiver_lag{code="PB001"} 0.0' in metrics


async def test_refetched_pages_are_deduplicated(tmp_path: Path) -> None:
    a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
    async with serve(a) as sa:
        await fill(a, "PB001", 700)
        b = make_gateway(tmp_path / "b", "B", conf=gw_conf(receiver=receiver_conf(sa.url)))
        async with serve(b):
            first = await b.receiver.start_sync("PB001")[0]
            assert first.records == 700
            # Rewind the cursor (as if a crash had lost it): every page is fetched again, nothing stored twice.
            await b.received.commit_page("PB001", sa.url, [], "", None, 0, 0, b.receiver.stats)
            out = await b.receiver.start_sync("PB001")[0]
            assert out.status == "success" and out.records == 0 and out.duplicates == 700
            assert len(mirror_lines(b, "PB001")) == 700
            assert b.receiver.stats.endpoint("PB001").duplicates == 700


async def test_recreated_remote_feed_triggers_a_full_resync(tmp_path: Path) -> None:
    a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
    async with serve(a) as sa:
        await fill(a, "PB001", 50)
        b = make_gateway(tmp_path / "b", "B", conf=gw_conf(receiver=receiver_conf(sa.url)))
        async with serve(b):
            await b.receiver.start_sync("PB001")[0]
            await a.feeds.reset("PB001")
            await fill(a, "PB001", 20, start=1000)
            out = await b.receiver.start_sync("PB001")[0]
            assert out.status == "success" and out.records == 20
            assert [x["i"] for x in mirror_lines(b, "PB001")] == list(range(1000, 1020))
            assert await received_datas(b, "PB001") == await source_datas(a, "PB001")
            assert b.receiver.stats.endpoint("PB001").resyncs == 1


async def test_receiver_state_and_statistics_survive_restarts(tmp_path: Path) -> None:
    a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
    async with serve(a) as sa:
        await fill(a, "PB001", 300)
        conf = gw_conf(receiver=receiver_conf(sa.url))
        b = make_gateway(tmp_path / "b", "B", conf=conf)
        async with serve(b):
            await b.receiver.start_sync_all()
        b2 = make_gateway(tmp_path / "b", "B", conf=conf)
        async with serve(b2) as sb, httpx.AsyncClient(base_url=sb.url) as c:
            st = (await c.get(f"{ADMIN}/status")).json()
            assert st["endpoint_stats"]["PB001"]["records"] == 300 and st["endpoint_stats"]["PB001"]["cursor"]
            before = st["total_syncs"]
            assert before > 0
            r = await c.post(f"{ADMIN}/sync/PB001", params={"wait": "true"}, json={})
            assert r.json()["results"][0]["records"] == 0
            st = (await c.get(f"{ADMIN}/status")).json()
            assert st["total_syncs"] == before + 1
        assert len(mirror_lines(b2, "PB001")) == 300


async def test_remote_down_is_reported_retries_back_off_and_nothing_is_lost(tmp_path: Path) -> None:
    port = free_port()
    remote = f"http://127.0.0.1:{port}"
    b = make_gateway(tmp_path / "b", "B", conf=gw_conf(receiver=receiver_conf(remote)))
    async with serve(b) as sb, httpx.AsyncClient(base_url=sb.url) as c:
        t = time.monotonic()
        r = await c.post(f"{ADMIN}/sync-all", params={"wait": "true"}, json={})
        took = time.monotonic() - t
        assert r.status_code == 200 and r.json()["results"][0]["status"] == "failed"
        # 8 attempts with jittered exponential backoff (0.01 * 2^k, capped at 0.2, halved at worst).
        assert took >= 0.5 * sum(min(0.2, 0.01 * 2**k) for k in range(7))
        st = (await c.get(f"{ADMIN}/status")).json()
        assert st["remote_ok"] is False and "unreachable" in st["last_error"] and st["failed_syncs"] == 1
        # Auto-sync keeps trying with growing delays while the remote is down.
        assert (await c.post(f"{ADMIN}/start-auto-sync", json={})).status_code == 200
        await wait_for(lambda: b.receiver.consecutive_failures >= 2, 20, what="failed auto cycles")
        # The remote comes up on that port: the next cycle converges.
        a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
        async with serve(a, port=port):
            await fill(a, "PB001", 120)
            b.receiver.sync_soon()
            await wait_for(
                lambda: b.receiver.counts.get("PB001", 0) == 120, 20, what="converged after outage"
            )
            st = (await c.get(f"{ADMIN}/status")).json()
            assert st["remote_ok"] is True and st["endpoint_stats"]["PB001"]["lag"] == 0
        assert (await c.post(f"{ADMIN}/stop-auto-sync", json={})).status_code == 200
        assert (await c.get(f"{ADMIN}/config")).json()["auto_sync"] is False
    assert [x["i"] for x in mirror_lines(b, "PB001")] == list(range(120))


async def test_sync_api_starts_once_and_rejects_unknown_codes(tmp_path: Path) -> None:
    a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
    async with serve(a) as sa:
        await fill(a, "PB001", 3000)
        b = make_gateway(tmp_path / "b", "B", conf=gw_conf(receiver=receiver_conf(sa.url)))
        async with serve(b) as sb, httpx.AsyncClient(base_url=sb.url) as c:
            assert (await c.post(f"{ADMIN}/sync/NOPE01", json={})).status_code == 404
            assert (await c.post(f"{ADMIN}/sync/..%2F..", json={})).status_code == 404
            r1 = await c.post(f"{ADMIN}/sync/PB001", json={})
            r2 = await c.post(f"{ADMIN}/sync/PB001", json={})
            assert r1.status_code == 202 and r1.json()["started"] is True
            assert r2.status_code == 202 and r2.json()["already_running"] is True
            r = await c.post(f"{ADMIN}/sync-all", json={})
            assert r.status_code == 202
            await wait_for(lambda: not b.receiver.syncing, 20, what="syncs done")
            assert b.receiver.counts["PB001"] == 3000
            assert (await c.post(f"{ADMIN}/sync-all", params={"wait": "maybe"}, json={})).status_code == 400
            logs = (await c.get("/api/data-sync/logs", params={"kind": "sync"})).json()["items"]
            assert any(x["code"] == "PB001" and x["records"] == 3000 for x in logs)
            b.config.update_receiver(b'{"enabled": false}')
            assert (await c.post(f"{ADMIN}/sync-all", json={})).status_code == 409


async def test_flaky_network_still_converges(tmp_path: Path) -> None:
    a = make_gateway(tmp_path / "a", "A", extra=[ext("PB001")])
    async with serve(a) as sa:
        await fill(a, "PB001", 4000)
        await a.ingest([holding(f"C{k}", k) for k in range(50)])
        proxy = FlakyProxy(int(sa.url.rsplit(":", 1)[1]))
        await proxy.start()
        try:
            b = make_gateway(
                tmp_path / "b", "B", conf=gw_conf(receiver=receiver_conf(f"http://127.0.0.1:{proxy.port}"))
            )
            async with serve(b):
                for _ in range(10):
                    results = await b.receiver.start_sync_all()
                    if all(r.status == "success" for r in results) and b.receiver.counts.get("PB001") == 4000:
                        break
                assert b.receiver.counts.get("PB001") == 4000 and b.receiver.counts.get("AS001") == 50
                assert proxy.faults["dropped"] > 0 and proxy.faults["truncated"] > 0
                assert sum(es.retries for es in b.receiver.stats.endpoint_stats.values()) > 0
                assert await received_datas(b, "PB001") == await source_datas(a, "PB001")
                assert len(mirror_lines(b, "PB001")) == 4000
        finally:
            await proxy.stop()


async def test_two_sites_converge_and_then_move_nothing(tmp_path: Path) -> None:
    """Seed 场景3: each site sends and receives; records from B are never sent back to B."""
    pa, pb = free_port(), free_port()
    sites: dict[str, Gateway] = {}

    def bus_of(site: str) -> object:
        async def sink(events: Sequence[Event]) -> None:  # this site's bus: received records feed its feeds
            await sites[site].ingest(events)

        return sink

    a = make_gateway(
        tmp_path / "a",
        "A",
        conf=gw_conf(receiver=receiver_conf(f"http://127.0.0.1:{pb}")),
        extra=[ext("PB001")],
        sink=bus_of("A"),  # type: ignore[arg-type]
    )
    b = make_gateway(
        tmp_path / "b",
        "B",
        conf=gw_conf(receiver=receiver_conf(f"http://127.0.0.1:{pa}")),
        extra=[ext("PB001")],
        sink=bus_of("B"),  # type: ignore[arg-type]
    )
    sites.update(A=a, B=b)
    async with serve(a, port=pa), serve(b, port=pb):
        await a.ingest([holding("BTC", 1), holding("ETH", 1), tick("BTC", 10)])
        await b.ingest([holding("SOL", 2), tick("SOL", 20), tick("SOL", 21)])

        async def cycle() -> int:
            ra, rb = await asyncio.gather(a.receiver.start_sync_all(), b.receiver.start_sync_all())
            assert all(r.status == "success" for r in [*ra, *rb]), [*ra, *rb]
            return sum(r.records for r in [*ra, *rb])

        moved = [await cycle() for _ in range(2)]
        assert moved == [6, 0]
        # Both feeds now hold all facts, each with its true origin.
        for gw in (a, b):
            page = json.loads((await gw.feeds.page("AS001", 0, limit=100, max_bytes=1 << 20)).body)
            assert {(r["origin"], r["data"]["asset"]) for r in page["records"]} == {
                ("A", "BTC"),
                ("A", "ETH"),
                ("B", "SOL"),
            }
        # Three more cycles after convergence move zero records.
        assert [await cycle() for _ in range(3)] == [0, 0, 0]
        # New data on one side flows once, then quiet again.
        await b.ingest([holding("ADA", 3)])
        assert await cycle() == 1
        assert [await cycle() for _ in range(3)] == [0, 0, 0]


async def test_two_sites_with_the_same_site_id_refuse_to_sync(tmp_path: Path) -> None:
    a = make_gateway(tmp_path / "a", "local", extra=[ext("PB001")])
    async with serve(a) as sa:
        await fill(a, "PB001", 3)
        b = make_gateway(tmp_path / "b", "local", conf=gw_conf(receiver=receiver_conf(sa.url)))
        async with serve(b):
            results = await b.receiver.start_sync_all()
            assert results[0].status == "failed" and "sync_gateway.site_id" in results[0].error
            assert b.receiver.counts.get("PB001", 0) == 0

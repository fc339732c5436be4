"""Registry `http` sources against the emulated original host: `{coin}`, params, POST, dedupe, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from assetsync_emulators.common import Fault, serve
from assetsync_emulators.upstream import PATHS, UpstreamEmulator, registry_entries
from assetsync_sync_gateway.feeds import FeedStore
from assetsync_sync_gateway.registry import Endpoint, RegistryError, validate
from assetsync_sync_gateway.sources import Sources

from tests.support import wait_for
from tests.sync_gateway.support import make_gateway
from tests.sync_gateway.support import serve as serve_gateway

T0 = 1_765_000_800.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def entry(code: str, url: str, **kw: Any) -> dict[str, Any]:
    base = next(e for e in registry_entries(url) if e["code"] == code)
    base.update(kw)
    return base


async def records(feeds: FeedStore, code: str) -> list[Any]:
    page = await feeds.page(code, 0, limit=100, max_bytes=1 << 22)
    return [r["data"] for r in json.loads(page.body)["records"]]


@pytest.fixture
async def feeds(tmp_path: Path) -> Any:
    store = FeedStore(tmp_path / "feeds.db", "A")
    await store.open(["V1V2001", "AN002", "ES001", "PI001"])
    yield store
    await store.close()


async def test_coin_expansion_one_poll_and_one_hash_per_coin(tmp_path: Path, feeds: FeedStore) -> None:
    clock = Clock()
    up = UpstreamEmulator(clock=clock)
    async with serve(up.app) as url, httpx.AsyncClient() as http:
        (ep,) = validate(
            [entry("V1V2001", url, upstream_url=url + "/api/v1v2/latest/{coin}", coins=["BTC", "ETH"])],
            tmp_path,
        )
        src = Sources(feeds, tmp_path, client=http)
        assert await src.poll_http(ep) == 2
        assert sorted(r.path for r in up.switch.requests) == ["/api/v1v2/latest/BTC", "/api/v1v2/latest/ETH"]
        got = await records(feeds, "V1V2001")
        assert [r["coin"] for r in got] == ["BTC", "ETH"]
        assert [r["data"]["data"]["coin"] for r in got] == ["BTC", "ETH"]  # the host's body as it came
        assert await src.poll_http(ep) == 0 and src.status["V1V2001"].unchanged == 2  # same minute
        clock.now += 60
        assert await src.poll_http(ep) == 2
        # A restart keeps each coin's hash: the same bodies again are no news.
        again = Sources(feeds, tmp_path, client=http)
        assert await again.poll_http(ep) == 0


async def test_params_as_query_string_and_post_body(tmp_path: Path, feeds: FeedStore) -> None:
    up = UpstreamEmulator(clock=Clock())
    async with serve(up.app) as url, httpx.AsyncClient() as http:
        src = Sources(feeds, tmp_path, client=http)
        (get,) = validate([entry("AN002", url, params={"limit": 5})], tmp_path)
        assert await src.poll_http(get) == 1
        assert [(r.method, r.query) for r in up.switch.requests] == [("GET", "limit=5")]
        assert len((await records(feeds, "AN002"))[-1]["data"]) == 5
        (post,) = validate([entry("AN002", url, method="POST", params={"limit": 3})], tmp_path)
        up.switch.reset_log()
        assert await src.poll_http(post) == 1
        assert [(r.method, r.query) for r in up.switch.requests] == [("POST", "")]
        assert len((await records(feeds, "AN002"))[-1]["data"]) == 3
        # `{coin}` in a text param is expanded too.
        (by_param,) = validate(
            [entry("ES001", url, params={"coin": "{coin}"}, coins=["SOL"])],
            tmp_path,
        )
        up.switch.reset_log()
        assert await src.poll_http(by_param) == 1
        assert up.switch.requests[0].query == "coin=SOL"
        (rec,) = await records(feeds, "ES001")
        assert rec["coin"] == "SOL" and list(rec["data"]["data"]["coins"]) == ["SOL"]


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (Fault("garbage"), "did not answer JSON"),
        (Fault("html"), "did not answer JSON"),
        (Fault("5xx"), "answered 503"),
        (Fault("429"), "answered 429"),
    ],
)
async def test_bad_upstream_answers_make_no_record(
    tmp_path: Path, feeds: FeedStore, fault: Fault, said: str
) -> None:
    up = UpstreamEmulator(clock=Clock())
    async with serve(up.app) as url, httpx.AsyncClient() as http:
        src = Sources(feeds, tmp_path, client=http)
        (ep,) = validate([entry("PI001", url)], tmp_path)
        up.switch.add(fault)
        with pytest.raises(RuntimeError, match=said):
            await src.poll_http(ep)
        assert feeds.state("PI001").count == 0
        up.switch.clear()
        assert await src.poll_http(ep) == 1


async def test_one_failing_coin_keeps_the_others(tmp_path: Path, feeds: FeedStore) -> None:
    up = UpstreamEmulator(clock=Clock())
    async with serve(up.app) as url, httpx.AsyncClient() as http:
        src = Sources(feeds, tmp_path, client=http)
        (ep,) = validate(
            [entry("V1V2001", url, upstream_url=url + "/api/v1v2/latest/{coin}", coins=["BTC", "NOPE"])],
            tmp_path,
        )
        with pytest.raises(RuntimeError, match=r"latest/NOPE \(NOPE\) answered 404"):
            await src.poll_http(ep)
        assert [r["coin"] for r in await records(feeds, "V1V2001")] == ["BTC"]


async def test_upstream_error_in_sender_status_with_credentials_masked(tmp_path: Path) -> None:
    up = UpstreamEmulator(auth=("ops", "s3cret-pw"))
    async with serve(up.app) as url:
        authed = url.replace("http://", "http://ops:s3cret-pw@")
        eps = validate([entry("PI001", authed, interval_seconds=0.05)], tmp_path)
        gw = make_gateway(tmp_path, "A", extra=eps, run_sources=True)
        async with serve_gateway(gw) as site, httpx.AsyncClient(base_url=site.url) as c:
            await wait_for(lambda: gw.feeds.state("PI001").count == 1, 10, what="a record through basic auth")
            up.switch.add(Fault("garbage", PATHS["PI001"]))
            await wait_for(lambda: gw.sources.error("PI001"), 10, what="the garbage reported")
            st = (await c.get("/api/data-sync/sender/status")).json()["endpoint_stats"]["PI001"]
            assert "did not answer JSON" in st["source_error"] and "ops:***@127.0.0.1" in st["source_error"]
            assert gw.feeds.state("PI001").count == 1  # the garbage made no record
            logs = await c.get("/api/data-sync/logs")
            assert logs.status_code == 200 and "endpoint PI001: source failed" in logs.text
            assert "s3cret-pw" not in st["source_error"] + logs.text
            up.switch.clear()
            await wait_for(lambda: not gw.sources.error("PI001"), 10, what="the source works again")


def test_coin_rules_in_the_registry(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"
    with pytest.raises(RegistryError, match="field coins: required when upstream_url contains"):
        validate([entry("V1V2001", url, upstream_url=url + "/x/{coin}")], tmp_path)
    with pytest.raises(RegistryError, match="field coins: only for an http source"):
        validate([entry("V1V2001", url, coins=["BTC"])], tmp_path)
    with pytest.raises(RegistryError, match="field coins: expected a non-empty list"):
        validate([entry("V1V2001", url, upstream_url=url + "/x/{coin}", coins=[])], tmp_path)
    with pytest.raises(RegistryError, match="field coins: expected a non-empty list"):
        validate([entry("V1V2001", url, upstream_url=url + "/x/{coin}", coins=["B/C"])], tmp_path)
    (ok,) = validate([entry("V1V2001", url, upstream_url=url + "/x/{coin}", coins=["BTC"])], tmp_path)
    assert isinstance(ok, Endpoint) and ok.public()["coins"] == ["BTC"]

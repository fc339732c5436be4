"""The Feishu client against the emulator over loopback: tokens, paging, limits, retries, typed errors."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from functools import partial

import pytest
from assetsync.feishu import errors as fe
from assetsync.feishu import schema as fs
from assetsync.feishu.client import RetryPolicy
from assetsync.secrets import Secret
from assetsync_emulators.common import Fault

from tests.feishu.support import feishu_site
from tests.support import wait_for


def rows(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {fs.CODE: f"A{i:05d}", fs.QUANTITY: float(i), fs.ASSET_TYPE: fs.TYPE_CRYPTO}
        for i in range(start, start + n)
    ]


async def test_token_is_cached_and_records_page_and_chunk() -> None:
    async with feishu_site() as site:
        tid = site.emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields]).table_id
        async with site.client() as c:
            made = await c.batch_create(tid, rows(2345))
            got = await c.search_records(tid)
            deleted = await c.batch_delete(tid, [r.record_id for r in made[:1100]])
        assert len(made) == 2345 and len({r.record_id for r in made}) == 2345
        assert sorted(r.fields[fs.CODE] for r in got) == [f"A{i:05d}" for i in range(2345)]
        # Text cells come back from search as rich-text segments; the client hands out plain strings.
        assert all(isinstance(r.fields[fs.CODE], str) for r in got)
        assert deleted == 1100 and len(site.emu.table(fs.HOLDINGS.name).records) == 1245
        assert site.emu.calls["token"] == 1
        assert site.emu.calls["records.batch_create"] == 3  # 1000 + 1000 + 345
        assert site.emu.calls["records.search"] == 5  # 500 per page
        assert site.emu.calls["records.batch_delete"] == 3  # 500 + 500 + 100


async def test_token_refreshed_before_expiry() -> None:
    async with feishu_site(token_ttl=1.0) as site:
        tid = site.emu.add_table("t").table_id
        async with site.client() as c:
            await c.search_records(tid)
            # Until the emulator's token lapsed: the client must fetch a new one, not present the old.
            await wait_for(partial(_all_lapsed, site.emu.tokens), 10, what="the token lapsed")
            await c.search_records(tid)
        assert site.emu.calls["token"] == 2
        assert sum(n for k, n in c.stats.errors.items() if k.endswith(":token")) == 0


async def test_token_revoked_mid_batch_is_refreshed_and_batch_completes() -> None:
    async with feishu_site(write_latency=0.2) as site:
        tid = site.emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields]).table_id
        async with site.client() as c:
            job = asyncio.create_task(c.batch_create(tid, rows(3000)))
            await wait_for(lambda: len(site.emu.table(fs.HOLDINGS.name).records) >= 1000, what="first chunk")
            site.emu.expire_tokens()
            made = await job
        codes = [r[fs.CODE] for r in site.emu.rows(fs.HOLDINGS.name)]
        assert len(made) == 3000 and len(codes) == 3000 and len(set(codes)) == 3000
        assert site.emu.calls["token"] == 2
        assert c.stats.errors["records.batch_create:token"] == 1


async def test_rate_limit_storm_keeps_request_rate_under_the_limit() -> None:
    limit = 10
    async with feishu_site(qps_limit=limit) as site:
        tid = site.emu.add_table("t").table_id
        async with site.client(max_qps=20.0) as c:
            await asyncio.gather(*(c.search_records(tid) for _ in range(45)))
        per_second = Counter(int(r.at) for r in site.emu.switch.requests if "/records/" in r.path)
        seconds = sorted(per_second)
        assert site.emu.calls["records.search"] - site.emu.rate_limited == 45, "every call completed"
        # After the first burst the client paces itself: at most one over the limit per second.
        assert all(per_second[s] <= limit + 1 for s in seconds[1:]), per_second
        assert site.emu.rate_limited <= 15


async def test_write_conflicts_retried_and_writes_serialized_per_table() -> None:
    async with feishu_site(write_latency=0.05) as site:
        tid = site.emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields]).table_id
        async with site.client() as c:
            site.emu.conflicts = 2
            await c.batch_create(tid, rows(10))
            assert c.stats.errors["records.batch_create:1254291"] == 2
            # Concurrent writers in one process never collide: the client queues them per table.
            await asyncio.gather(*(c.batch_create(tid, rows(10, 100 * (k + 1))) for k in range(5)))
        assert len(site.emu.rows(fs.HOLDINGS.name)) == 60
        assert c.stats.errors["records.batch_create:1254291"] == 2


async def test_5xx_and_timeouts_are_retried() -> None:
    async with feishu_site() as site:
        tid = site.emu.add_table("t").table_id
        stall = Fault("timeout", path_prefix="/open-apis/bitable", times=1, delay=60)
        async with site.client(timeout=0.3) as c:
            site.emu.switch.add(Fault("5xx", path_prefix="/open-apis/bitable", times=2))
            site.emu.switch.add(stall)
            try:
                await c.search_records(tid)
            finally:
                stall.released.set()
        # The stalled request tripped the client's timeout and was retried; the two 503s too. (A busy
        # machine may slow any answer past 0.3 s: every failed attempt counts once, as one or the other.)
        timeouts, unavailable = c.stats.errors["records.search:timeout"], c.stats.errors["records.search:503"]
        attempts = site.emu.switch.count("/open-apis/bitable")
        assert timeouts >= 1 and unavailable <= 2
        assert timeouts + unavailable == attempts - 1  # every attempt but the last failed, and was retried
        assert site.emu.calls["records.search"] == attempts - 3 >= 1  # the faults answered before the handler


async def test_feishu_down_gives_a_transient_error() -> None:
    async with feishu_site() as site:
        tid = site.emu.add_table("t").table_id
        async with site.client(retry=RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_cap=0.05)) as c:
            await c.tenant_token()
            site.emu.switch.add(Fault("5xx", path_prefix="/open-apis/bitable"))
            with pytest.raises(fe.FeishuUnavailable) as info:
                await c.search_records(tid)
        assert info.value.transient
        assert site.emu.calls["records.search"] == 0  # the fault answered before the handler
        assert site.emu.switch.count("/open-apis/bitable") == 3


async def test_missing_field_error_names_table_and_field() -> None:
    async with feishu_site() as site:
        tid = site.emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields]).table_id
        site.emu.rename_field(fs.HOLDINGS.name, fs.PRICE, "价格")
        async with site.client() as c:
            await c.list_tables()
            with pytest.raises(fe.FeishuFieldNotFound) as info:
                await c.batch_create(tid, [{fs.CODE: "BTC", fs.PRICE: 1.0}])
        err = info.value
        assert not err.transient and err.field == fs.PRICE and err.code == 1254045
        assert fs.PRICE in str(err) and fs.HOLDINGS.name in str(err) and tid in str(err)
        assert site.emu.rows(fs.HOLDINGS.name) == []


async def test_wrong_type_is_a_permanent_rejection() -> None:
    async with feishu_site() as site:
        tid = site.emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields]).table_id
        async with site.client() as c:
            with pytest.raises(fe.FeishuRejected) as info:
                await c.batch_create(tid, [{fs.CODE: "BTC", fs.QUANTITY: "lots"}])
        assert info.value.code == 1254061 and not info.value.transient and info.value.field == fs.QUANTITY
        assert fs.QUANTITY in str(info.value)


async def test_bad_credentials_name_the_config_keys() -> None:
    async with feishu_site() as site:
        from assetsync.feishu.client import FeishuClient

        async with FeishuClient(site.url, site.emu.app_id, Secret("wrong"), site.emu.app_token) as c:
            with pytest.raises(fe.FeishuBadCredentials) as info:
                await c.list_tables()
        assert "mcp_server.app_secret" in str(info.value)
        assert "wrong" not in str(info.value) and "wrong" not in repr(c)


async def test_client_paces_to_max_qps() -> None:
    async with feishu_site() as site:
        tid = site.emu.add_table("t").table_id
        async with site.client(max_qps=20.0) as c:
            await c.tenant_token()
            started = time.monotonic()
            await asyncio.gather(*(c.search_records(tid) for _ in range(11)))
            elapsed = time.monotonic() - started
        assert elapsed >= 0.45  # 11 calls at 20/s: the 11th starts 0.5 s after the first


def _all_lapsed(tokens: dict[str, float]) -> bool:
    return all(expiry <= time.monotonic() for expiry in tokens.values())

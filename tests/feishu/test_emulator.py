"""The Feishu emulators speak the real wire format: envelopes, errors, headers, limits."""

from __future__ import annotations

import asyncio

import httpx
from assetsync.feishu import schema as fs
from assetsync_emulators.common import serve
from assetsync_emulators.feishu_bot import BotEmulator

from tests.feishu.support import feishu_site


async def test_envelopes_errors_and_limits_over_raw_http() -> None:
    async with feishu_site(qps_limit=3) as site, httpx.AsyncClient(base_url=site.url) as http:
        emu = site.emu
        t = emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields])
        base = f"/open-apis/bitable/v1/apps/{emu.app_token}/tables/{t.table_id}/records"
        tok = await http.post(
            "/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": emu.app_id, "app_secret": emu.app_secret},
        )
        body = tok.json()
        assert body["code"] == 0 and body["tenant_access_token"].startswith("t-") and body["expire"] == 7200
        auth = {"Authorization": f"Bearer {body['tenant_access_token']}"}

        missing = await http.post(f"{base}/search", json={})
        assert missing.status_code == 400 and missing.json()["code"] == 99991661

        too_many = await http.post(
            f"{base}/batch_create", headers=auth, json={"records": [{"fields": {}}] * 1001}
        )
        assert too_many.json()["code"] == 1254104

        created = await http.post(
            f"{base}/batch_create?client_token=3f1c2c4e-8d2a-4b7e-9a51-0f6f1d2e3c4b",
            headers=auth,
            json={"records": [{"fields": {fs.CODE: "BTC", fs.QUANTITY: 1.5}}]},
        )
        rec = created.json()["data"]["records"][0]
        assert rec["record_id"].startswith("rec") and rec["fields"] == {fs.CODE: "BTC", fs.QUANTITY: 1.5}

        answers = await asyncio.gather(
            *(http.post(f"{base}/search", headers=auth, json={}) for _ in range(8))
        )
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.status_code == 429 and limited.json()["code"] == 99991400
        assert (
            limited.headers["x-ogw-ratelimit-limit"] == "3"
            and int(limited.headers["x-ogw-ratelimit-reset"]) >= 1
        )
    assert len(emu.rows(fs.HOLDINGS.name)) == 1


async def test_search_returns_rich_text_and_client_token_is_idempotent() -> None:
    async with feishu_site() as site, site.client() as c:
        t = site.emu.add_table(fs.HOLDINGS.name, [(f.name, f.type) for f in fs.HOLDINGS.fields])
        token = "3f1c2c4e-8d2a-4b7e-9a51-0f6f1d2e3c4b"
        first = await c.batch_create(t.table_id, [{fs.CODE: "ETH"}], client_token=token)
        again = await c.batch_create(t.table_id, [{fs.CODE: "ETH"}], client_token=token)
        async with httpx.AsyncClient(base_url=site.url) as http:
            raw = await http.post(
                f"/open-apis/bitable/v1/apps/{site.emu.app_token}/tables/{t.table_id}/records/search",
                headers={"Authorization": f"Bearer {await c.tenant_token()}"},
                json={},
            )
    assert first[0].record_id == again[0].record_id and len(site.emu.rows(fs.HOLDINGS.name)) == 1
    assert raw.json()["data"]["items"][0]["fields"][fs.CODE] == [{"text": "ETH", "type": "text"}]


async def test_bot_emulator_checks_signature_and_limits() -> None:
    emu = BotEmulator(hooks={"h": "sec"}, per_second=1)
    async with serve(emu.app) as base, httpx.AsyncClient() as http:
        unsigned = await http.post(emu.url(base, "h"), json={"msg_type": "text", "content": {"text": "x"}})
        wrong = await http.post(emu.url(base, "nope"), json={"msg_type": "text", "content": {"text": "x"}})
        bad = await http.post(emu.url(base, "h"), content=b"{not json")
    assert unsigned.json()["code"] == 19021 and wrong.json()["code"] == 19001 and bad.json()["code"] == 9499
    assert emu.messages == []

"""The catalog: the shipped example registry, validation errors, and the JSONL and HTTP sources."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from assetsync.endpoints import SEED_BY_CODE, codes_of
from assetsync_sync_gateway.http_server import server_config, serving
from assetsync_sync_gateway.registry import (
    BUILTIN,
    Catalog,
    RegistryError,
    load_registry,
    native_endpoints,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support import wait_for
from tests.sync_gateway.support import make_gateway, serve

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "registry.example.json"


def test_example_registry_has_the_seeds_upstream_endpoints(tmp_path: Path) -> None:
    eps = load_registry(EXAMPLE, tmp_path)
    # The other 21 codes are native (assetsync.endpoints): only the original host's outputs remain.
    assert [e.code for e in eps] == list(codes_of("upstream"))
    by = {e.code: e for e in eps}
    for code, e in by.items():
        seed = SEED_BY_CODE[code]
        assert (e.name, e.api_path, e.category, e.category_name, e.interval_seconds) == (
            seed.name, seed.api_path, seed.category, seed.category_name, seed.interval_seconds,
        )  # fmt: skip
    assert all(e.source == "http" and e.upstream_url.endswith(e.api_path) for e in eps)
    assert by["AN002"].params == {"limit": 60}
    cat = Catalog(eps, native=native_endpoints(["market", "okx_public", "okx", "sentiment", "system"]))
    assert len(cat.endpoints) == 30 + len(BUILTIN)


def _entry(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "code": "NEW001",
        "category": "your_category",
        "name": "新端点名称",
        "api_path": "/api/your-endpoint",
        "method": "GET",
        "description": "端点描述",
        "data_file": "your_data/your_file.jsonl",
        "params": None,
        "interval_seconds": 60,
        "source": "jsonl",
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([_entry(), _entry()], "duplicate code NEW001"),
        ([_entry(code="AS001")], "duplicate code AS001"),
        ([_entry(interval_seconds="soon")], "interval_seconds"),
        ([_entry(interval_seconds=0)], "interval_seconds"),
        ([_entry(code="../x")], "field code"),
        ([_entry(category="Has Spaces")], "field category"),
        ([_entry(api_path="no-slash")], "api_path"),
        ([_entry(data_file="../../etc/passwd")], "outside the data directory"),
        ([_entry(data_file="/etc/passwd")], "relative to the data directory"),
        ([_entry(data_file=None)], "data_file: required"),
        ([_entry(source="http", upstream_url="ftp://x")], "upstream_url"),
        ([_entry(unknown_field=1)], "unknown_field"),
        ([_entry(), "not an object"], "#1"),
        ({"not": "a list"}, "JSON array"),
    ],
)
def test_bad_registry_entries_are_rejected_naming_entry_and_reason(
    tmp_path: Path, entries: Any, needle: str
) -> None:
    with pytest.raises(RegistryError) as err:
        validate(entries, tmp_path, source="reg.json", taken=[e.code for e in BUILTIN])
    assert needle in str(err.value)
    if isinstance(entries, list) and len(entries) > 1 and isinstance(entries[1], dict):
        assert "#1 (NEW001)" in str(err.value)


def test_symlink_escaping_the_data_dir_is_rejected(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.symlink("/etc", data / "sneaky")
    with pytest.raises(RegistryError, match="outside the data directory"):
        validate([_entry(data_file="sneaky/passwd")], data)


def test_registry_file_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "reg.json"
    p.write_text("[{")
    with pytest.raises(RegistryError, match=r"reg\.json: malformed JSON"):
        load_registry(p, tmp_path)


async def test_jsonl_source_tails_appended_lines_and_resets_on_truncation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "feeds").mkdir(parents=True)
    f = data / "feeds" / "prices.jsonl"
    f.write_text('{"p":1}\n{"p":2}\n{"p":')  # the last line is still being written
    eps = validate([_entry(code="JL001", data_file="feeds/prices.jsonl", interval_seconds=0.05)], data)
    gw = make_gateway(data, "A", extra=eps, run_sources=True)
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        url = "/api/data-sync/sender/data/JL001"

        async def datas() -> list[Any]:
            return [r["data"] for r in (await c.get(url)).json()["records"]]

        await wait_for(lambda: gw.feeds.state("JL001").count == 2, 10, what="first lines")
        with f.open("a") as fh:
            fh.write('3}\nnot json\n{"p":4}\n')
        await wait_for(lambda: gw.feeds.state("JL001").count == 4, 10, what="appended lines")
        assert await datas() == [{"p": 1}, {"p": 2}, {"p": 3}, {"p": 4}]
        assert gw.sources.status["JL001"].skipped_lines == 1
        cursor = (await c.get(url)).json()["next_cursor"]
        # Truncated and rewritten: the feed starts over under a new epoch; old cursors get 409.
        f.write_text('{"p":"new"}\n')
        await wait_for(lambda: gw.feeds.state("JL001").count == 1, 10, what="reset feed")
        assert (await c.get(url, params={"since": cursor})).status_code == 409
        assert await datas() == [{"p": "new"}]
    # Restarted: the saved offset means no line is read twice.
    gw2 = make_gateway(data, "A", extra=eps, run_sources=True)
    async with serve(gw2):
        with f.open("a") as fh:
            fh.write('{"p":"more"}\n')
        await wait_for(lambda: gw2.feeds.state("JL001").count == 2, 10, what="line after restart")


async def test_http_source_polls_upstream_each_response_one_record(tmp_path: Path) -> None:
    calls = {"n": 0}

    async def latest(request: Request) -> JSONResponse:
        calls["n"] += 1
        return JSONResponse({"price": 100 + calls["n"], "coin": request.path_params["coin"]})

    upstream = Starlette(routes=[Route("/api/sar/current-cycle/{coin}", latest)])
    async with serving(server_config(upstream, "127.0.0.1", 0, log_level="error")) as up:
        eps = validate(
            [
                {
                    "code": "SAR001",
                    "category": "sar_data",
                    "name": "SAR当前周期",
                    "api_path": "/api/sar/current-cycle/{coin}",
                    "params": {"coin": "BTC"},
                    "interval_seconds": 0.05,
                    "source": "http",
                    "upstream_url": f"{up.url}/api/sar/current-cycle/BTC",
                }
            ],
            tmp_path,
        )
        gw = make_gateway(tmp_path, "A", extra=eps, run_sources=True)
        async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
            await wait_for(lambda: gw.feeds.state("SAR001").count >= 3, 10, what="three polls")
            recs = (await c.get("/api/data-sync/sender/data/SAR001")).json()["records"]
            assert [r["data"]["price"] for r in recs[:3]] == [101, 102, 103]
            assert all(r["data"]["coin"] == "BTC" for r in recs)
            st = (await c.get("/api/data-sync/sender/status")).json()["endpoint_stats"]["SAR001"]
            assert st["source_error"] == ""


async def test_http_source_failure_is_reported_not_fatal(tmp_path: Path) -> None:
    eps = validate(
        [
            _entry(
                code="DOWN01",
                source="http",
                data_file=None,
                upstream_url="http://127.0.0.1:9/x",
                interval_seconds=0.05,
            )
        ],
        tmp_path,
    )
    gw = make_gateway(tmp_path, "A", extra=eps, run_sources=True)
    async with serve(gw):
        await wait_for(lambda: gw.sources.status["DOWN01"].last_error, 10, what="source error")
        assert gw.feeds.state("DOWN01").count == 0
    assert json.loads(json.dumps(gw.sources.status["DOWN01"].last_error))

"""The emulated original host over real HTTP (httpx): the 9 upstream endpoints, evolving data, faults."""

from __future__ import annotations

import httpx
import pytest
from assetsync.endpoints import codes_of
from assetsync_emulators.common import Fault, serve
from assetsync_emulators.upstream import PATHS, UpstreamEmulator, registry_entries

T0 = 1_765_000_800.0  # a whole minute


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_the_nine_upstream_codes_are_served() -> None:
    assert set(PATHS) == set(codes_of("upstream"))


async def test_every_endpoint_answers_the_hosts_envelope_and_evolves_by_the_minute() -> None:
    clock = Clock()
    up = UpstreamEmulator(clock=clock)
    async with serve(up.app) as url, httpx.AsyncClient(base_url=url) as http:
        first: dict[str, bytes] = {}
        for code, path in PATHS.items():
            r = await http.get(path)
            body = r.json()
            assert r.status_code == 200 and body["success"] is True, code
            assert body["timestamp"] == int(T0)
            assert body["data"] not in (None, [], {}) or code == "ME001"  # no major event is news too
            first[code] = r.content
            assert (await http.get(path)).content == r.content  # same minute: same body
        clock.now += 60
        moved = [c for c, p in PATHS.items() if (await http.get(p)).content != first[c]]
        # Per-minute endpoints move each minute; the hourly aggregates (ES002, PI001, ME001) keep.
        assert {"AN001", "AN002", "AN004", "ES001", "V1V2001"} <= set(moved)
        latest = (await http.get(PATHS["AN001"])).json()["data"]
        assert set(latest["stats"]) == {"short", "long"} and latest["stats"]["short"]["total"] >= 1
        positions = (await http.get(PATHS["AN004"])).json()["data"]
        assert {p["coin"] for p in positions} == set(up.coins)
        assert all(p["side"] in ("long", "short") and p["mark_price"] > 0 for p in positions)


async def test_coin_paths_params_and_post() -> None:
    up = UpstreamEmulator(clock=Clock())
    async with serve(up.app) as url, httpx.AsyncClient(base_url=url) as http:
        one = (await http.get(PATHS["V1V2001"] + "/ETH")).json()["data"]
        assert one["coin"] == "ETH" and one["v2"] > one["v1"] > 0
        (pos,) = (await http.get(PATHS["AN004"] + "/BTC")).json()["data"]
        assert pos["symbol"] == "BTC-USDT-SWAP"
        assert len((await http.get(PATHS["AN002"], params={"limit": 5})).json()["data"]) == 5
        posted = await http.post(PATHS["AN002"], json={"limit": 3})
        assert posted.status_code == 200 and len(posted.json()["data"]) == 3
        bad = await http.get(PATHS["V1V2001"] + "/NOPE")
        assert bad.status_code == 404 and bad.json() == {"success": False, "error": "unknown coin NOPE"}
        assert (await http.post(PATHS["AN002"], content=b"[1]")).status_code == 400


async def test_basic_auth_when_set() -> None:
    up = UpstreamEmulator(clock=Clock(), auth=("ops", "s3cret"))
    async with serve(up.app) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get(PATHS["PI001"])).status_code == 401
        async with httpx.AsyncClient(base_url=url, auth=("ops", "s3cret")) as http:
            assert (await http.get(PATHS["PI001"])).json()["data"]["panic_index"] > 0


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("5xx", lambda r: r.status_code == 503),
        ("429", lambda r: r.status_code == 429 and "retry-after" in r.headers),
        ("html", lambda r: r.status_code == 200 and r.text.startswith("<html>")),
        ("garbage", lambda r: r.status_code == 200 and b"\x00" in r.content),
    ],
)
async def test_faults(kind: str, check: object) -> None:
    up = UpstreamEmulator(clock=Clock())
    async with serve(up.app) as url, httpx.AsyncClient(base_url=url) as http:
        up.switch.add(Fault(kind, PATHS["ES001"], times=1))  # type: ignore[arg-type]
        r = await http.get(PATHS["ES001"])
        assert callable(check) and check(r)
        assert (await http.get(PATHS["ES001"])).json()["success"] is True  # the fault was used up


async def test_timeout_fault_stalls_until_released() -> None:
    up = UpstreamEmulator(clock=Clock())
    async with serve(up.app) as url, httpx.AsyncClient(base_url=url) as http:
        fault = Fault("timeout", PATHS["ME001"], times=1, delay=30)
        up.switch.add(fault)
        with pytest.raises(httpx.ReadTimeout):
            await http.get(PATHS["ME001"], timeout=0.3)
        fault.released.set()


def test_registry_entries_carry_the_seeds_fields() -> None:
    entries = registry_entries("http://127.0.0.1:1", coins=["BTC", "ETH"])
    assert [e["code"] for e in entries] == list(PATHS)
    v1v2 = next(e for e in entries if e["code"] == "V1V2001")
    assert v1v2["upstream_url"].endswith("/api/v1v2/latest/{coin}") and v1v2["coins"] == ["BTC", "ETH"]
    an001 = entries[0]
    assert an001["name"] == "锚定利润最新" and an001["interval_seconds"] == 300

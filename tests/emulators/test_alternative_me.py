"""The alternative.me fear & greed emulator over real HTTP (httpx): shape, parameters, history and faults."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import httpx
from assetsync_emulators.alternative_me import FIRST_DAY, FNG_PATH, AlternativeMeEmulator, classify
from assetsync_emulators.common import Fault, serve

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC).timestamp()
TODAY = int(datetime(2026, 12, 6, tzinfo=UTC).timestamp())


async def test_latest_value_as_alternative_me_serves_it() -> None:
    emu = AlternativeMeEmulator(clock=lambda: NOW)
    async with serve(emu.app) as url, httpx.AsyncClient(base_url=url) as http:
        resp = await http.get(FNG_PATH)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
        body = resp.json()
        assert body["name"] == "Fear and Greed Index" and body["metadata"] == {"error": None}
        (entry,) = body["data"]
        assert set(entry) == {"value", "value_classification", "timestamp", "time_until_update"}
        assert all(isinstance(v, str) for v in entry.values())  # every number is a string, as for real
        assert entry["timestamp"] == str(TODAY)
        assert entry["time_until_update"] == str(17 * 3600)  # until 00:00 UTC
        value = int(entry["value"])
        assert 5 <= value <= 95 and entry["value_classification"] == classify(value)
        emu.set_value(12)
        again = (await http.get(FNG_PATH, params={"limit": 1})).json()["data"][0]
        assert (again["value"], again["value_classification"]) == ("12", "Extreme Fear")


async def test_history_limit_and_date_formats() -> None:
    emu = AlternativeMeEmulator(clock=lambda: NOW)
    async with serve(emu.app) as url, httpx.AsyncClient(base_url=url) as http:
        week = (await http.get(FNG_PATH, params={"limit": 7})).json()["data"]
        assert [int(e["timestamp"]) for e in week] == [TODAY - i * 86400 for i in range(7)]
        assert "time_until_update" in week[0] and all("time_until_update" not in e for e in week[1:])
        steps = [abs(int(a["value"]) - int(b["value"])) for a, b in itertools.pairwise(week)]
        assert max(steps) <= 16  # a daily walk, not noise
        everything = (await http.get(FNG_PATH, params={"limit": 0})).json()["data"]
        assert int(everything[-1]["timestamp"]) == FIRST_DAY and len(everything) > 3000
        assert [e["value"] for e in everything[:7]] == [e["value"] for e in week]  # consistent
        us = (await http.get(FNG_PATH, params={"limit": 2, "date_format": "us"})).json()["data"]
        assert [e["timestamp"] for e in us] == ["12-06-2026", "12-05-2026"]
        world = (await http.get(FNG_PATH, params={"date_format": "world"})).json()["data"]
        assert world[0]["timestamp"] == "06-12-2026"
        cn = (await http.get(FNG_PATH, params={"date_format": "cn"})).json()["data"]
        assert cn[0]["timestamp"] == "2026-12-06"
        csv = await http.get(FNG_PATH, params={"limit": 2, "format": "csv", "date_format": "cn"})
        lines = csv.text.strip().splitlines()
        assert lines[0] == "date,fng_value,fng_classification" and lines[1].startswith("2026-12-06,")
        bad = (await http.get(FNG_PATH, params={"limit": "many"})).json()
        assert bad["data"] == [] and "integer" in bad["metadata"]["error"]


async def test_faults_switch_on_and_off() -> None:
    emu = AlternativeMeEmulator(clock=lambda: NOW)
    async with serve(emu.app) as url, httpx.AsyncClient(base_url=url) as http:
        emu.switch.add(Fault("5xx", FNG_PATH, times=1))
        assert (await http.get(FNG_PATH)).status_code == 503
        emu.switch.add(Fault("429", FNG_PATH, times=1))
        assert (await http.get(FNG_PATH)).status_code == 429
        emu.switch.add(Fault("html", FNG_PATH, times=1))
        assert (await http.get(FNG_PATH)).text.startswith("<html>")
        emu.switch.add(Fault("garbage", FNG_PATH, times=1))
        assert b"not json" in (await http.get(FNG_PATH)).content
        stall = Fault("timeout", FNG_PATH, times=1, delay=5.0)
        emu.switch.add(stall)
        try:
            await http.get(FNG_PATH, timeout=0.2)
        except httpx.TimeoutException:
            timed_out = True
        else:
            timed_out = False
        stall.released.set()
        assert timed_out
        emu.error = "Service temporarily unavailable."
        down = (await http.get(FNG_PATH)).json()
        assert down["data"] == [] and down["metadata"]["error"] == "Service temporarily unavailable."
        emu.error = None
        assert (await http.get(FNG_PATH)).json()["metadata"]["error"] is None
        assert emu.switch.count(FNG_PATH) == 7

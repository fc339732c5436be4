"""The ECB emulator over real HTTP (httpx): the daily XML's shape, headers, publication days and faults."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import httpx
from assetsync_emulators.common import Fault, serve
from assetsync_emulators.ecb import DAILY_PATH, EcbEmulator, target_holidays

NS = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"


async def test_daily_xml_as_the_ecb_serves_it() -> None:
    ecb = EcbEmulator(clock=lambda: datetime(2026, 12, 7, 16, 30, tzinfo=UTC))  # Monday 17:30 CET
    async with serve(ecb.app) as url, httpx.AsyncClient(base_url=url) as http:
        resp = await http.get(DAILY_PATH)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/xml")
        assert resp.headers["last-modified"] == "Mon, 07 Dec 2026 15:00:00 GMT"
        root = ET.fromstring(resp.content)
        assert root.tag == "{http://www.gesmes.org/xml/2002-08-01}Envelope"
        (day,) = [c for c in root.iter(f"{NS}Cube") if c.get("time")]
        assert day.get("time") == "2026-12-07"
        rates = {c.get("currency"): float(c.get("rate") or 0) for c in day}
        assert {"USD", "CNY", "JPY", "GBP"} <= set(rates) and all(r > 0 for r in rates.values())
        assert 6.5 < rates["CNY"] / rates["USD"] < 7.5  # a realistic USD→CNY cross
        ecb.set_rate("USD", 1.25)
        again = ET.fromstring((await http.get(DAILY_PATH)).content)
        assert [c.get("rate") for c in again.iter(f"{NS}Cube") if c.get("currency") == "USD"] == ["1.25"]


async def test_faults_switch_on_and_off() -> None:
    ecb = EcbEmulator()
    async with serve(ecb.app) as url, httpx.AsyncClient(base_url=url) as http:
        ecb.switch.add(Fault("5xx", DAILY_PATH, times=1))
        assert (await http.get(DAILY_PATH)).status_code == 503
        ecb.switch.add(Fault("html", DAILY_PATH, times=1))
        assert (await http.get(DAILY_PATH)).text.startswith("<html>")
        ecb.truncate = True
        cut = (await http.get(DAILY_PATH)).content
        assert cut.startswith(b"<?xml") and not cut.rstrip().endswith(b"</gesmes:Envelope>")
        ecb.truncate = False
        ecb.zero.add("CNY")
        assert b"currency='CNY' rate='0'" in (await http.get(DAILY_PATH)).content
        assert ecb.switch.count(DAILY_PATH) == 4


def test_target_holidays() -> None:
    assert target_holidays(2027) == {
        date(2027, 1, 1), date(2027, 3, 26), date(2027, 3, 29), date(2027, 5, 1),
        date(2027, 12, 25), date(2027, 12, 26),
    }  # fmt: skip

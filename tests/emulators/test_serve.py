"""`python -m assetsync_emulators.serve`: every emulator in one process, seeded, stopped by SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from assetsync.feishu import schema as fs
from assetsync_emulators.binance import DEMO_API_KEY, DEMO_API_SECRET, signed_query
from assetsync_emulators.feishu import FeishuEmulator
from assetsync_emulators.xueqiu import DEMO_FUND_HOLDINGS


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "assetsync_emulators.serve", "--xueqiu-token", "deadbeef"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_serves_every_emulator_and_stops_on_sigterm(
    served: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    proc, urls = served
    assert set(urls) == {"binance", "xueqiu", "feishu", "bot", "okx", "alternative_me", "xueqiu_cookie"}
    servers = ("binance", "xueqiu", "feishu", "bot", "okx", "alternative_me")
    assert all(urls[k].startswith("http://127.0.0.1:") for k in servers)
    assert urls["xueqiu_cookie"].startswith("xq_a_token=deadbeef;")
    with httpx.Client(timeout=10) as c:
        query = signed_query({"timestamp": 0, "recvWindow": 60000}, DEMO_API_SECRET)
        # A signed call with the demo key reaches the account (a wrong timestamp is Binance's -1021).
        account = c.get(f"{urls['binance']}/api/v3/account?{query}", headers={"X-MBX-APIKEY": DEMO_API_KEY})
        assert account.json()["code"] == -1021
        okx = c.get(f"{urls['okx']}/api/v5/public/time").json()
        assert okx["code"] == "0" and okx["data"][0]["ts"].isdigit()
        quote = c.get(
            f"{urls['xueqiu']}/v5/stock/realtime/quotec.json",
            params={"symbol": "SH510300"},
            headers={"Cookie": urls["xueqiu_cookie"]},
        )
        assert quote.status_code == 200 and quote.json()["data"][0]["symbol"] == "SH510300"
        emu = FeishuEmulator()
        token = c.post(
            f"{urls['feishu']}/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": emu.app_id, "app_secret": emu.app_secret},
        ).json()["tenant_access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        app = f"{urls['feishu']}/open-apis/bitable/v1/apps/{emu.app_token}"
        tables = {
            t["name"]: t["table_id"] for t in c.get(f"{app}/tables", headers=auth).json()["data"]["items"]
        }
        assert set(tables) == {spec.name for spec in fs.TABLES}
        records = c.get(f"{app}/tables/{tables[fs.HOLDINGS.name]}/records", headers=auth).json()["data"][
            "items"
        ]
        assert sorted(r["fields"][fs.CODE] for r in records) == sorted(
            h["symbol"] for h in DEMO_FUND_HOLDINGS
        )
        hook = c.post(
            f"{urls['bot']}/open-apis/bot/v2/hook/emulator-hook-0001",
            json={"msg_type": "text", "content": {"text": "hi"}},
        )
        assert hook.json()["code"] == 0
        fng = c.get(f"{urls['alternative_me']}/fng/", params={"limit": 1}).json()
        assert fng["name"] == "Fear and Greed Index" and 0 <= int(fng["data"][0]["value"]) <= 100
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_a_taken_port_is_named() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "assetsync_emulators.serve", "--feishu-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    assert "cannot listen on 127.0.0.1" in proc.stderr

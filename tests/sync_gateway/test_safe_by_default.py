"""CONTRACTS §5.1 over real HTTP: loopback trust only for genuine local use, CSRF, exposure, secrets."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from assetsync.secrets import mask_urls
from assetsync_sync_gateway.security import RateLimiter, rate_key
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import wait_for
from tests.sync_gateway.support import ext, gw_conf, make_gateway, serve

DATA = "/api/data-sync/sender/data/PB001"
ADMIN = "/api/data-sync/receiver/status"
SENDER_CONFIG = "/api/data-sync/sender/config"
RECEIVER_CONFIG = "/api/data-sync/receiver/config"
JSON = {"Content-Type": "application/json"}


async def test_foreign_host_gets_no_loopback_trust_and_allowed_hosts_adds_names(tmp_path: Path) -> None:
    conf = gw_conf(allowed_hosts=["assets.home.arpa"], sender={"rate_limit": 0})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        port = s.url.rsplit(":", 1)[1]
        for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "[::1]:5000", "assets.home.arpa"):
            assert (await c.get(ADMIN, headers={"Host": host})).status_code == 200, host
            assert (await c.get(DATA, headers={"Host": host})).status_code == 200, host
        # DNS rebinding: the attacker's name resolves to 127.0.0.1, the browser sends it as Host.
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.nip.io", "localhost.evil.example"):
            r = await c.get(ADMIN, headers={"Host": host})
            assert r.status_code == 403 and "Host" in r.json()["error"], host
            r = await c.get(DATA, headers={"Host": host})
            assert r.status_code == 403 and "sender.auth_token" in r.json()["error"], host
        r = await c.post(SENDER_CONFIG, json={"rate_limit": 7}, headers={"Host": "evil.example"})
        assert r.status_code == 403 and gw.config.sender.rate_limit == 0
        # With a token the Host does not matter: the token is the identity.
    gw2 = make_gateway(tmp_path / "t", "A", conf=gw_conf(admin_token="adm"), extra=[ext("PB001")])
    async with serve(gw2) as s, httpx.AsyncClient(base_url=s.url) as c:
        r = await c.get(ADMIN, headers={"Host": "evil.example", "Authorization": "Bearer adm"})
        assert r.status_code == 200
        assert (await c.get(ADMIN, headers={"Host": "localhost"})).status_code == 401


async def test_forwarding_headers_from_loopback_mean_a_proxy_not_a_local_user(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "A", conf=gw_conf(sender={"rate_limit": 0}), extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        assert (await c.get(ADMIN)).status_code == 200
        for name, value in (
            ("X-Forwarded-For", "127.0.0.1"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("Forwarded", "for=127.0.0.1"),
            ("X-Real-IP", "127.0.0.1"),
        ):
            r = await c.get(ADMIN, headers={name: value})
            assert r.status_code == 403 and "proxy" in r.json()["error"], name
            assert (await c.get(DATA, headers={name: value})).status_code == 403, name
            r = await c.post(
                RECEIVER_CONFIG, json={"remote_url": "http://evil.example"}, headers={name: value}
            )
            assert r.status_code == 403
        assert gw.config.receiver.remote_url == ""


async def test_public_bind_without_admin_token_closes_the_admin_api_to_everyone(tmp_path: Path) -> None:
    # Bound (by configuration) to all interfaces: not even a loopback peer gets the admin API.
    conf = gw_conf(host="0.0.0.0", sender={"auth_token": "snd", "rate_limit": 0})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        r = await c.get(ADMIN)
        assert r.status_code == 403 and "sync_gateway.admin_token" in r.json()["error"]
        assert (await c.get(DATA)).status_code == 401
        assert (await c.get(DATA, headers={"Authorization": "Bearer snd"})).status_code == 200
    logs = [line["message"] for line in gw.logs.recent(limit=1000)]
    assert any("admin_token is not set" in m and "403 to everyone" in m for m in logs), logs


async def test_clearing_the_sender_token_of_a_public_gateway_is_refused(tmp_path: Path) -> None:
    conf = gw_conf(host="0.0.0.0", admin_token="adm", sender={"auth_token": "snd"})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with (
        serve(gw) as s,
        httpx.AsyncClient(base_url=s.url, headers={"Authorization": "Bearer adm"}) as c,
    ):
        r = await c.post(SENDER_CONFIG, json={"auth_token": ""})
        assert r.status_code == 400 and "sender.auth_token" in r.json()["error"]
        assert gw.config.sender_tokens() == ("snd",)
        # Turning the sender off and then clearing is fine: nothing is served.
        assert (await c.post(SENDER_CONFIG, json={"enabled": False, "auth_token": ""})).status_code == 200
        assert gw.config.sender_tokens() == ()


async def test_state_changes_must_be_json_from_no_foreign_origin(tmp_path: Path) -> None:
    conf = gw_conf(allowed_origins=["https://admin.example.com"], sender={"rate_limit": 0})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        own = s.url
        body = json.dumps({"remote_url": "http://evil.example:5000"})
        for headers, status in (
            ({"Content-Type": "text/plain"}, 415),
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
            ({}, 415),
            ({**JSON, "Origin": "http://evil.example"}, 403),
            ({**JSON, "Origin": "null"}, 403),
            ({**JSON, "Sec-Fetch-Site": "cross-site"}, 403),
            ({**JSON, "Sec-Fetch-Site": "same-site"}, 403),
            ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),
        ):
            r = await c.post(RECEIVER_CONFIG, content=body, headers=headers)
            assert r.status_code == status, (headers, r.text)
        assert gw.config.receiver.remote_url == ""
        # curl/scripts (no Origin), the page itself (own Origin, same-origin), an allowed admin UI.
        ok = [
            JSON,
            {
                "Content-Type": "application/json; charset=utf-8",
                "Origin": own,
                "Sec-Fetch-Site": "same-origin",
            },
            {**JSON, "Origin": "https://admin.example.com", "Sec-Fetch-Site": "cross-site"},
        ]
        for i, headers in enumerate(ok):
            r = await c.post(SENDER_CONFIG, content=json.dumps({"rate_limit": 10 + i}), headers=headers)
            assert r.status_code == 200, (headers, r.text)
        assert gw.config.sender.rate_limit == 12
        # The allowed origin also gets CORS answers (preflight and response), others do not.
        pre = await c.options(
            SENDER_CONFIG,
            headers={
                "Origin": "https://admin.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://admin.example.com"
        r = await c.get(SENDER_CONFIG, headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_rate_limit_keys_ipv6_clients_by_their_slash_64(tmp_path: Path) -> None:
    a = ipaddress.ip_address("2001:db8:1:2::1")
    b = ipaddress.ip_address("2001:db8:1:2:ffff:ffff:ffff:ffff")
    other = ipaddress.ip_address("2001:db8:1:3::1")
    assert rate_key(a) == rate_key(b) == "2001:db8:1:2::/64" != rate_key(other)
    assert rate_key(ipaddress.ip_address("192.0.2.7")) == "192.0.2.7"
    rl = RateLimiter(2)
    assert rl.check(rate_key(a), now=0).allowed and rl.check(rate_key(b), now=0).allowed
    assert not rl.check(rate_key(ipaddress.ip_address("2001:db8:1:2::99")), now=0).allowed
    assert rl.check(rate_key(other), now=0).allowed
    # Over HTTP: a trusted proxy forwards three addresses of one /64; the third is over the limit.
    conf = gw_conf(trusted_proxies=["127.0.0.1"], sender={"rate_limit": 2, "auth_token": "t"})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url, headers={"Authorization": "Bearer t"}) as c:
        codes = [
            (await c.get(DATA, headers={"X-Forwarded-For": f"2001:db8:1:2::{k}"})).status_code
            for k in (1, 2, 3)
        ]
        assert codes == [200, 200, 429]
        assert (await c.get(DATA, headers={"X-Forwarded-For": "2001:db8:1:3::1"})).status_code == 200


def test_url_credentials_are_masked() -> None:
    assert mask_urls("GET http://user:pa55@host:8/x failed") == "GET http://user:***@host:8/x failed"
    assert mask_urls("https://tok3n@api.example/v1") == "https://***@api.example/v1"
    assert mask_urls("nats://a:b@n1:4222, nats://c:d@n2:4222") == "nats://a:***@n1:4222, nats://c:***@n2:4222"
    assert (
        mask_urls("mail me at a@b.c, see http://host/x?a=b@c") == "mail me at a@b.c, see http://host/x?a=b@c"
    )


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """An upstream that answers 503 and HTML: the errors that used to carry the URL's password."""
    import uvicorn

    async def down(request: Request) -> Response:
        return Response("<html>maintenance</html>", 503, media_type="text/html")

    from assetsync_sync_gateway.http_server import server_config, start_server, stop_server

    running = await start_server(
        server_config(Starlette(routes=[Route("/feed", down)]), "127.0.0.1", 0, log_level="error")
    )
    assert isinstance(running.server, uvicorn.Server)
    try:
        yield running.url
    finally:
        await stop_server(running)


async def test_upstream_password_never_reaches_status_logs_or_files(tmp_path: Path, upstream: str) -> None:
    secret_url = upstream.replace("http://", "http://reader:hunter2-pw@") + "/feed"
    log_dir = tmp_path / "logs"
    gw = make_gateway(
        tmp_path / "data",
        "A",
        conf=gw_conf(sender={"rate_limit": 0}),
        extra=[ext("PX001", upstream_url=secret_url, interval_seconds=1)],
        run_sources=True,
    )
    gw.opts.log_dir = log_dir
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:

        async def failed() -> bool:
            st = (await c.get("/api/data-sync/sender/status")).json()
            return bool(st["endpoint_stats"]["PX001"].get("source_error"))

        await wait_for(failed, 15, what="the upstream failure in sender/status")
        status = (await c.get("/api/data-sync/sender/status")).text
        logs = (await c.get("/api/data-sync/logs", params={"kind": "error"})).text
        assert "503" in status and "reader:***@" in status
        assert "reader:***@" in logs
        for text in (status, logs):
            assert "hunter2" not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert b"hunter2" not in p.read_bytes(), p


async def test_every_file_holding_a_token_is_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: anything created plainly would be world-readable
    try:
        tokens = ["adm-tok-1111", "snd-tok-2222", "rcv-tok-3333", "new-snd-4444", "nxt-5555", "new-rcv-6666"]
        conf = gw_conf(
            admin_token=tokens[0], sender={"auth_token": tokens[1]}, receiver={"auth_token": tokens[2]}
        )
        gw = make_gateway(tmp_path / "data", "A", conf=conf, extra=[ext("PB001")])
        gw.opts.log_dir = tmp_path / "logs"
        hdr = {"Authorization": f"Bearer {tokens[0]}"}
        async with serve(gw) as s, httpx.AsyncClient(base_url=s.url, headers=hdr) as c:
            r = await c.post(SENDER_CONFIG, json={"auth_token": tokens[3], "next_auth_token": tokens[4]})
            assert r.status_code == 200
            assert (await c.post(RECEIVER_CONFIG, json={"auth_token": tokens[5]})).status_code == 200
            assert (await c.get(DATA, headers={"Authorization": f"Bearer {tokens[4]}"})).status_code == 200
        holding = []
        for p in tmp_path.rglob("*"):
            if p.is_file() and any(t.encode() in p.read_bytes() for t in tokens):
                holding.append(p)
                mode = stat.S_IMODE(p.stat().st_mode)
                assert mode & 0o077 == 0, f"{p} holds a token with mode {oct(mode)}"
        assert [p.name for p in holding] == ["runtime_config.json"]
        assert stat.S_IMODE((tmp_path / "data" / "gateway").stat().st_mode) == 0o700
        assert not list((tmp_path / "data" / "gateway").glob(".*.tmp"))
    finally:
        os.umask(old)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_public_bind_without_sender_token_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"sync_gateway": {"host": "0.0.0.0", "port": 0}}))
    clean = {k: "" for k in os.environ if k.startswith("ASSETSYNC_SYNC_GATEWAY__")}
    runs = await asyncio.gather(
        asyncio.to_thread(
            _run, ["-m", "assetsync", "service", "sync-gateway", "--config", str(cfg)], tmp_path, clean
        ),
        asyncio.to_thread(_run, ["-m", "assetsync", "up", "--config", str(cfg)], tmp_path, clean),
        asyncio.to_thread(_run, ["-m", "assetsync", "check-config", "--config", str(cfg)], tmp_path, clean),
        asyncio.to_thread(
            _run,
            ["-m", "assetsync_sync_gateway", "--data-dir", str(tmp_path / "d"), "--config", str(cfg)],
            tmp_path,
            clean,
        ),
    )
    for r in runs:
        assert r.returncode == 2, (r.args, r.stdout, r.stderr)
        assert "sync_gateway.sender.auth_token" in r.stderr and "gen-token" in r.stderr, r.stderr
    # With a token from the environment (what .env does) the same config is accepted.
    token = _run(["-m", "assetsync", "gen-token"], tmp_path).stdout.strip()
    assert len(token) >= 43 and token.replace("-", "").replace("_", "").isalnum()
    ok = _run(
        ["-m", "assetsync", "check-config", "--config", str(cfg)],
        tmp_path,
        {**clean, "ASSETSYNC_SYNC_GATEWAY__SENDER__AUTH_TOKEN": token},
    )
    assert ok.returncode == 0, ok.stderr
    assert token not in ok.stdout + ok.stderr


def test_console_and_daily_log_files_mask_url_credentials(tmp_path: Path) -> None:
    import io
    import logging

    from assetsync.logs import setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    console = io.StringIO()
    try:
        setup_logging(tmp_path / "logs", "INFO", stream=console)
        log = logging.getLogger("assetsync.test")
        log.warning("upstream %s answered 503", "http://reader:hunter2-pw@feeds.example/x")
        try:
            raise RuntimeError("connect to nats://svc:hunter2-pw@nats:4222 failed")
        except RuntimeError:
            log.exception("bus down")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    written = "".join(p.read_text() for p in (tmp_path / "logs").glob("sync_*.log"))
    for text in (console.getvalue(), written):
        assert "http://reader:***@feeds.example/x" in text and "nats://svc:***@nats:4222" in text
        assert "hunter2" not in text

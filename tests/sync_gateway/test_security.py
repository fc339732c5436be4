"""Tokens, the admin split, allowlists and trusted proxies, rate limits, size limits, settings, TLS."""

from __future__ import annotations

import datetime
import json
import ssl
from pathlib import Path

import httpx
import pytest
from assetsync_sync_gateway.live_settings import ConfigPatchError, RuntimeConfig
from assetsync_sync_gateway.security import RateLimiter, client_address, parse_networks, token_ok

from tests.sync_gateway.support import ext, fill, gw_conf, make_gateway, serve

DATA = "/api/data-sync/sender/data/PB001"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sender_token_current_and_next_both_work_and_anything_else_is_401(tmp_path: Path) -> None:
    conf = gw_conf(
        admin_token="adm-1", sender={"auth_token": "cur-1", "next_auth_token": "nxt-2", "rate_limit": 0}
    )
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        await fill(gw, "PB001", 2)
        assert (await c.get(DATA)).status_code == 401
        assert (await c.get(DATA, headers=auth("wrong"))).status_code == 401
        assert (await c.get(DATA, headers={"Authorization": "Basic Y3VyLTE="})).status_code == 401
        assert (await c.get(DATA, headers={"Authorization": "cur-1"})).status_code == 401
        r = await c.get(DATA, headers=auth("wrong"))
        assert r.headers["www-authenticate"].startswith("Bearer") and "error" in r.json()
        assert (await c.get(DATA, headers=auth("cur-1"))).status_code == 200
        assert (await c.get(DATA, headers=auth("nxt-2"))).status_code == 200
        assert (await c.get("/api/data-sync/sender/catalog", headers=auth("adm-1"))).status_code == 200
        # The sender token is not an admin token.
        assert (await c.get("/api/data-sync/receiver/status", headers=auth("cur-1"))).status_code == 401
        assert (await c.get("/api/data-sync/receiver/status", headers=auth("adm-1"))).status_code == 200
        # Open routes stay open.
        for path in ("/healthz", "/metrics", "/data-sync-manager", "/openapi.json"):
            assert (await c.get(path)).status_code == 200, path


def test_token_comparison_is_constant_time_over_all_accepted_tokens() -> None:
    assert token_ok("b", ("a", "b"))
    assert not token_ok("c", ("a", "b"))
    assert not token_ok(None, ("a",))
    assert not token_ok("", ("",))


async def test_without_admin_token_admin_paths_answer_loopback_only(tmp_path: Path) -> None:
    conf = gw_conf(trusted_proxies=["127.0.0.1"], sender={"rate_limit": 0})
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        assert (await c.get("/api/data-sync/receiver/status")).status_code == 200
        # Through the trusted proxy the client is a remote address: refused.
        r = await c.get("/api/data-sync/receiver/status", headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403 and "admin_token" in r.json()["error"]
        r = await c.post(
            "/api/data-sync/sender/config", json={"rate_limit": 5}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert r.status_code == 403


async def test_allowlist_cidrs_and_forged_forwarded_for(tmp_path: Path) -> None:
    # Untrusted peer (no trusted proxies): X-Forwarded-For is ignored, so forging an allowed address fails.
    conf = gw_conf(sender={"allowed_ips": ["10.0.0.0/8"], "rate_limit": 0})
    gw = make_gateway(tmp_path / "a", "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        assert (await c.get(DATA)).status_code == 403
        assert (await c.get(DATA, headers={"X-Forwarded-For": "10.1.2.3"})).status_code == 403
        assert (await c.get("/api/data-sync/receiver/status")).status_code == 403
        assert (await c.get("/healthz")).status_code == 200
    # Behind a trusted proxy the forwarded address counts.
    # (A proxied request is never local, so this sender needs its token.)
    conf = gw_conf(
        trusted_proxies=["127.0.0.0/8"],
        sender={"allowed_ips": ["10.0.0.0/8", "192.168.1.100"], "rate_limit": 0, "auth_token": "tok"},
    )
    gw = make_gateway(tmp_path / "b", "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url, headers=auth("tok")) as c:
        assert (await c.get(DATA, headers={"X-Forwarded-For": "10.1.2.3"})).status_code == 200
        assert (await c.get(DATA, headers={"X-Forwarded-For": "192.168.1.100"})).status_code == 200
        assert (await c.get(DATA, headers={"X-Forwarded-For": "192.168.1.101"})).status_code == 403
        # A client prepending a fake hop does not help: the rightmost untrusted hop is the client.
        assert (await c.get(DATA, headers={"X-Forwarded-For": "10.1.2.3, 198.51.100.7"})).status_code == 403


def test_client_address_walks_trusted_hops_only() -> None:
    trusted = parse_networks(["127.0.0.1", "10.9.0.0/16"], "t")
    assert str(client_address("127.0.0.1", "1.2.3.4, 10.9.1.1", trusted)) == "1.2.3.4"
    assert str(client_address("8.8.8.8", "1.2.3.4", trusted)) == "8.8.8.8"
    assert str(client_address("127.0.0.1", "garbage", trusted)) == "127.0.0.1"
    assert str(client_address("::ffff:127.0.0.1", None, trusted)) == "127.0.0.1"


async def test_flood_gets_429_with_retry_after_and_ratelimit_headers(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "A", conf=gw_conf(sender={"rate_limit": 5}), extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        codes = [(await c.get(DATA)) for _ in range(8)]
        assert [r.status_code for r in codes[:5]] == [200] * 5
        assert codes[0].headers["ratelimit-limit"] == "5" and codes[0].headers["ratelimit-remaining"] == "4"
        r = codes[-1]
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["ratelimit-remaining"] == "0"
        assert (await c.get("/healthz")).status_code == 200


def test_rate_limiter_refills_over_time() -> None:
    rl = RateLimiter(60)
    assert all(rl.check("a", now=0.0).allowed for _ in range(60))
    assert not rl.check("a", now=0.0).allowed
    assert rl.check("b", now=0.0).allowed
    assert rl.check("a", now=1.01).allowed


async def test_config_get_hides_secrets_and_post_validates_and_persists(tmp_path: Path) -> None:
    conf = gw_conf(
        sender={"auth_token": "s3cret-token", "rate_limit": 0}, receiver={"auth_token": "r3mote-token"}
    )
    gw = make_gateway(tmp_path, "A", conf=conf, extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        for path in ("/api/data-sync/sender/config", "/api/data-sync/receiver/config"):
            r = await c.get(path)
            assert r.status_code == 200 and "s3cret" not in r.text and "r3mote" not in r.text
        assert (await c.get("/api/data-sync/sender/config")).json()["auth_token_set"] is True
        bad = [
            ("/api/data-sync/sender/config", {"allowed_ips": ["10.0.0.0/33"]}, "allowed_ips"),
            ("/api/data-sync/sender/config", {"rate_limit": -1}, "rate_limit"),
            ("/api/data-sync/sender/config", {"bogus": 1}, "bogus"),
            ("/api/data-sync/sender/config", {"enabled": "yes"}, "enabled"),
            ("/api/data-sync/receiver/config", {"remote_url": "ftp://x"}, "remote_url"),
            ("/api/data-sync/receiver/config", {"sync_interval": 0}, "sync_interval"),
        ]
        for path, body, key in bad:
            r = await c.post(path, json=body)
            assert r.status_code == 400 and key in r.json()["error"], (body, r.text)
        r = await c.post(
            "/api/data-sync/sender/config", content=b"[1,", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400
        big = {"allowed_ips": ["10.0.0.1"] * 20000}
        assert (await c.post("/api/data-sync/sender/config", json=big)).status_code == 413
        r = await c.post(
            "/api/data-sync/sender/config",
            json={"sender": {"allowed_ips": ["127.0.0.1/32"], "auth_token": "new-tok"}},
        )
        assert r.status_code == 200
        r = await c.post(
            "/api/data-sync/receiver/config",
            json={"remote_url": "http://10.0.0.5:5000/", "sync_interval": 60, "auto_sync": False},
        )
        assert r.status_code == 200
        assert (await c.get(DATA)).status_code == 401
        assert (await c.get(DATA, headers=auth("new-tok"))).status_code == 200
    saved = tmp_path / "gateway" / "runtime_config.json"
    assert (saved.stat().st_mode & 0o777) == 0o600
    # A new process reads the overlay over the config file's values.
    again = RuntimeConfig(conf, saved)
    assert again.sender.auth_token.get() == "new-tok" and again.sender.allowed_ips == ["127.0.0.1/32"]
    assert again.receiver.remote_url == "http://10.0.0.5:5000" and again.receiver.sync_interval == 60
    assert again.receiver.auth_token.get() == "r3mote-token"
    with pytest.raises(ConfigPatchError):
        again.update_receiver(json.dumps({"remote_url": "not a url"}).encode())


async def test_disabled_sender_answers_403(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, "A", conf=gw_conf(sender={"enabled": False}), extra=[ext("PB001")])
    async with serve(gw) as s, httpx.AsyncClient(base_url=s.url) as c:
        r = await c.get(DATA)
        assert r.status_code == 403 and "disabled" in r.json()["error"]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cp, kp = tmp / "cert.pem", tmp / "key.pem"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cp, kp


async def test_optional_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    gw = make_gateway(tmp_path / "d", "A", extra=[ext("PB001")])
    async with serve(gw, tls_cert=str(cert), tls_key=str(key)) as s:
        assert s.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=s.url, verify=ctx) as c:
            assert (await c.get(DATA)).status_code == 200

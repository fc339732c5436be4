"""Who may do what on /api/data-sync/ and /api/portfolio/ (CONTRACTS §5, §5.1): every access rule, in one ASGI middleware.

In order: client address (peer, or X-Forwarded-For through `trusted_proxies`), `sender.allowed_ips`,
rate limit (IPv6 clients by /64), body size, CSRF (foreign Origin / Sec-Fetch-Site → 403, non-JSON
state changes → 415), then tokens — with loopback trust standing in for a missing token only for a
genuinely local request: loopback bind, loopback peer, a local Host name, no forwarding headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from assetsync.config import LOCAL_HOST_NAMES, is_loopback_host
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assetsync_sync_gateway.envelope import json_str
from assetsync_sync_gateway.security import (
    Address,
    RateLimiter,
    _addr,
    bearer,
    client_address,
    in_networks,
    is_loopback,
    rate_key,
    token_ok,
)

if TYPE_CHECKING:
    from assetsync_sync_gateway.core import Gateway

log = logging.getLogger("assetsync.gateway.sender")

API_PREFIX = "/api/data-sync/"
PORTFOLIO_PREFIX = "/api/portfolio/"  # the portfolio page's JSON: admin rights, like the manager's
DATA_PREFIX = "/api/data-sync/sender/data/"
MAX_BODY = 64 * 1024  # request bodies (config, batch) are small JSON
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORWARDING_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")

# What a path is, for the token rules (None: not an API route; the router answers 404/405).
ADMIN, SENDER_INFO, SENDER_FEED = "admin", "sender-info", "sender-feed"
_SENDER_INFO = frozenset({"/api/data-sync/sender/status", "/api/data-sync/sender/catalog"})
_ADMIN_EXACT = frozenset({"/api/data-sync/sender/config", "/api/data-sync/logs"})
_ADMIN_BEARER = [(b"www-authenticate", b'Bearer realm="data-sync-admin"')]
_SENDER_BEARER = [(b"www-authenticate", b'Bearer realm="data-sync"')]


def path_kind(path: str) -> str | None:
    if path.startswith(DATA_PREFIX) or path == "/api/data-sync/sender/batch":
        return SENDER_FEED
    if path in _SENDER_INFO:
        return SENDER_INFO
    if path in _ADMIN_EXACT or path.startswith(("/api/data-sync/receiver/", PORTFOLIO_PREFIX)):
        return ADMIN
    return None


def host_name(host: str) -> str:
    """`Host` header → lower-case name without port (`[::1]:5000` → `[::1]`, `Example.org.:80` → `example.org`)."""
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[: end + 1] if end > 0 else h
    name = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return name.rstrip(".")


class Refusal(Exception):
    """An answer instead of the route: status, message, extra headers."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class AccessPolicy:
    """The static half of the rules (bind address, names, origins), read once from the gateway's settings."""

    def __init__(self, gw: Gateway) -> None:
        conf = gw.opts.conf
        self.bind = conf.host
        self.bind_loopback = is_loopback_host(conf.host)
        names = set(LOCAL_HOST_NAMES) | {host_name(h) for h in conf.allowed_hosts}
        bind = conf.host.strip().lower()
        names.add(f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind)
        self.local_hosts = frozenset(names)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in conf.allowed_origins)
        # (peer, Host) -> the verdict: the same few pairs repeat on every request of a session.
        self._verdicts: dict[tuple[str | None, bytes | None], str | None] = {}

    def local_problem(
        self, peer: str | None, headers: dict[bytes, bytes], forwarded: bytes | None
    ) -> str | None:
        """Why this request is not a genuine local one (None: it is)."""
        if forwarded is not None:
            return f"the request came through a proxy ({forwarded.decode('latin-1')} header)"
        key = (peer, headers.get(b"host"))
        try:
            return self._verdicts[key]
        except KeyError:
            pass
        verdict = self._judge(_addr(peer or ""), key[1])
        if len(self._verdicts) >= 1024:  # strangers can vary the Host: stay bounded
            self._verdicts.clear()
        self._verdicts[key] = verdict
        return verdict

    def _judge(self, addr: Address | None, host: bytes | None) -> str | None:
        if not self.bind_loopback:
            return f"the gateway is bound to {self.bind or 'all interfaces'}, not to a loopback address"
        if not is_loopback(addr):
            return f"the client {addr} is not on this machine"
        if host is None:
            return "the request has no Host header"
        name = host_name(host.decode("latin-1"))
        if name not in self.local_hosts:
            return f"Host {name[:100]!r} is not a local name (sync_gateway.allowed_hosts adds names)"
        return None

    def origin_problem(self, headers: dict[bytes, bytes], proxied_host: bytes | None) -> str | None:
        """Why a state-changing request looks cross-site (None: same origin, allowed origin, or no browser)."""
        origin = headers.get(b"origin")
        if origin is not None:
            o = origin.decode("latin-1").strip().rstrip("/").lower()
            if o in self.allowed_origins:
                return None
            own = {h.decode("latin-1").strip().lower() for h in (headers.get(b"host"), proxied_host) if h}
            if o.partition("://")[2] not in own:
                return f"Origin {o[:100]!r} is not this gateway's (sync_gateway.allowed_origins adds origins)"
        site = headers.get(b"sec-fetch-site")
        if site in (b"cross-site", b"same-site"):
            return f"a {site.decode()} request (Sec-Fetch-Site) from a page of another site"
        return None


FastRoute = Callable[[Scope, Send, dict[bytes, bytes], list[tuple[bytes, bytes]]], Awaitable[None]]


class AccessControl:
    """Pure ASGI (the data route is the replication hot path): refuses, or passes on with `state.client` set.

    An admitted `GET …/sender/data/{code}` goes straight to `data_route` (no router, headers parsed once);
    other admitted requests go to the app, with the RateLimit-* headers added to the answer.
    """

    def __init__(self, app: ASGIApp, gw: Gateway, data_route: FastRoute) -> None:
        self.app = app
        self.gw = gw
        self.data_route = data_route
        self.policy = AccessPolicy(gw)
        self._limiter = RateLimiter(gw.config.sender.rate_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith((API_PREFIX, PORTFOLIO_PREFIX)):
            await self.app(scope, receive, send)
            return
        gw = self.gw
        raw = scope["headers"]
        headers: dict[bytes, bytes] = dict(raw)
        forwarded: bytes | None = None
        xff: str | None = None
        if b"x-forwarded-for" in headers or b"forwarded" in headers or b"x-real-ip" in headers:
            forwarded = next(k for k in FORWARDING_HEADERS if k in headers)
            hops = [v.decode("latin-1") for k, v in raw if k == b"x-forwarded-for"]
            xff = ",".join(hops) if hops else None
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        addr = client_address(peer, xff, gw.trusted)
        state = scope.setdefault("state", {})
        state["client"] = addr
        extra: list[tuple[bytes, bytes]] = []
        path: str = scope["path"]
        kind = path_kind(path)
        try:
            allowed = gw.config.allowed
            if allowed and not in_networks(addr, allowed):
                log.warning("refused %s %s from %s: not in sender.allowed_ips", scope["method"], path, addr)
                raise Refusal(403, f"address {addr} is not in the allowlist (sender.allowed_ips)")
            limit = gw.config.sender.rate_limit
            if limit > 0:
                if self._limiter.per_minute != limit:
                    self._limiter = RateLimiter(limit)
                d = self._limiter.check(rate_key(addr))
                extra += [
                    (b"ratelimit-limit", b"%d" % d.limit),
                    (b"ratelimit-remaining", b"%d" % d.remaining),
                    (b"ratelimit-reset", b"%d" % d.reset),
                ]
                if not d.allowed:
                    raise Refusal(
                        429,
                        f"rate limit of {limit} requests per minute exceeded",
                        [(b"retry-after", b"%d" % d.retry_after)],
                    )
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                raise Refusal(413, f"request body larger than {MAX_BODY} bytes")
            method = scope["method"]
            if method not in SAFE_METHODS:
                self._check_state_change(headers, addr)
            if kind is not None:
                self._check_tokens(kind, headers, peer, forwarded)
        except Refusal as r:
            if kind != ADMIN:
                gw.sender_stats.stats.record(None, False, 0)
            body = b'{"error":%s}' % json_str(r.message)
            await send(
                {
                    "type": "http.response.start",
                    "status": r.status,
                    "headers": [
                        *extra,
                        *r.headers,
                        (b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(body)),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if method == "GET" and path.startswith(DATA_PREFIX):
            await self.data_route(scope, send, headers, extra)
            return
        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check_state_change(self, headers: dict[bytes, bytes], addr: Address | None) -> None:
        """CSRF: a browser page of another site may not change anything, even on a loopback gateway."""
        proxied = headers.get(b"x-forwarded-host") if in_networks(addr, self.gw.trusted) else None
        problem = self.policy.origin_problem(headers, proxied)
        if problem is not None:
            raise Refusal(403, f"refused: {problem}")
        ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if ctype != b"application/json":
            raise Refusal(415, "state-changing requests must be Content-Type: application/json")

    def _admin_problem(
        self, given: str | None, headers: dict[bytes, bytes], peer: str | None, forwarded: bytes | None
    ) -> Refusal | None:
        admin = self.gw.admin_token
        if admin:
            if token_ok(given, (admin,)):
                return None
            return Refusal(401, "missing or wrong admin token (sync_gateway.admin_token)", _ADMIN_BEARER)
        local = self.policy.local_problem(peer, headers, forwarded)
        if local is None:
            return None
        if not self.policy.bind_loopback:
            return Refusal(
                403,
                "the admin API is closed: sync_gateway.admin_token is not set and the gateway is bound to "
                f"{self.policy.bind or 'all interfaces'} (set sync_gateway.admin_token)",
            )
        return Refusal(
            403,
            "without sync_gateway.admin_token the admin API answers only requests made on this machine: "
            + local,
        )

    def _check_tokens(
        self, kind: str, headers: dict[bytes, bytes], peer: str | None, forwarded: bytes | None
    ) -> None:
        auth = headers.get(b"authorization")
        given = bearer(auth.decode("latin-1")) if auth is not None else None
        if kind == ADMIN:
            refusal = self._admin_problem(given, headers, peer, forwarded)
            if refusal is not None:
                raise refusal
            return
        cfg = self.gw.config
        # The manager (admin rights) reads the sender's status and catalog, also while the sender is off.
        if kind == SENDER_INFO and self._admin_problem(given, headers, peer, forwarded) is None:
            return
        if not cfg.sender.enabled:
            raise Refusal(403, "the sender is disabled (sync_gateway.sender.enabled)")
        tokens = cfg.sender_tokens()
        if tokens:
            if not token_ok(given, (*tokens, self.gw.admin_token)):
                raise Refusal(
                    401, "missing or wrong bearer token (sync_gateway.sender.auth_token)", _SENDER_BEARER
                )
            return
        if given is not None and token_ok(given, (self.gw.admin_token,)):
            return
        local = self.policy.local_problem(peer, headers, forwarded)
        if local is not None:
            raise Refusal(
                403,
                "without sync_gateway.sender.auth_token the sender answers only requests made on this "
                f"machine: {local}",
            )

"""Access primitives: bearer tokens (constant time, rotation), IP networks, trusted proxies, rate limits."""

from __future__ import annotations

import functools
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetworkListError(ValueError):
    """An allowlist entry that is not an IP address or CIDR."""

    def __init__(self, key: str, value: str) -> None:
        super().__init__(f"{key}: {value!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)")
        self.key = key
        self.value = value


def parse_networks(values: Iterable[str], key: str) -> tuple[Network, ...]:
    """IPs and CIDRs -> networks; NetworkListError names the bad entry."""
    out: list[Network] = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError as exc:
            raise NetworkListError(key, v) from exc
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _addr(text: str) -> Address | None:
    try:
        a = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def in_networks(addr: Address | None, nets: Sequence[Network]) -> bool:
    return addr is not None and any(addr in n for n in nets)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> Address | None:
    """The client's address: the peer, or through trusted proxies the rightmost untrusted XFF hop."""
    addr = _addr(peer or "")
    if addr is None or not forwarded_for or not in_networks(addr, trusted):
        return addr
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        hop_addr = _addr(hop)
        if hop_addr is None:
            return addr  # a garbled chain: trust nothing beyond the proxy itself
        if not in_networks(hop_addr, trusted):
            return hop_addr
        addr = hop_addr
    return addr


def is_loopback(addr: Address | None) -> bool:
    return addr is not None and addr.is_loopback


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_ok(given: str | None, accepted: Iterable[str]) -> bool:
    """Constant-time comparison against every accepted token (current and next)."""
    if given is None:
        return False
    g = given.encode()
    ok = False
    for t in accepted:
        if t:
            ok |= hmac.compare_digest(g, t.encode())
    return ok


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass(frozen=True)
class RateDecision:
    """Whether a request may pass, and the numbers for RateLimit headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int


class RateLimiter:
    """Token bucket per client: `per_minute` requests per minute, bursts up to the same number."""

    def __init__(self, per_minute: int, *, max_clients: int = 10000) -> None:
        self.per_minute = per_minute
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max = max_clients

    def check(self, client: str, now: float | None = None) -> RateDecision:
        limit = self.per_minute
        if limit <= 0:
            return RateDecision(True, 0, 0, 0, 0)
        t = time.monotonic() if now is None else now
        rate = limit / 60.0
        b = self._buckets.get(client)
        if b is None:
            b = _Bucket(float(limit), t)
            self._buckets[client] = b
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            b.tokens = min(float(limit), b.tokens + (t - b.stamp) * rate)
            b.stamp = t
        reset = math.ceil((limit - b.tokens) / rate)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return RateDecision(True, limit, int(b.tokens), max(reset, 0), 0)
        retry = max(1, math.ceil((1.0 - b.tokens) / rate))
        return RateDecision(False, limit, 0, max(reset, 1), retry)


@functools.lru_cache(maxsize=4096)
def _v6_prefix(addr: ipaddress.IPv6Address) -> str:
    return str(ipaddress.IPv6Network((addr, 64), strict=False))


def rate_key(addr: Address | None) -> str:
    """The rate limiter's key: an IPv4 address, or an IPv6 client's /64 (one host gets a whole /64)."""
    if isinstance(addr, ipaddress.IPv6Address):
        return _v6_prefix(addr)
    return str(addr)

"""The catalog: built-in endpoints (this system's own data) plus extra endpoints from a registry file."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
from assetsync.endpoints import SEED_ENDPOINTS, Part, SeedEndpoint
from assetsync.validation import error_key

CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
COIN_RE = re.compile(r"^[A-Za-z0-9._-]{1,30}$")
COIN_SLOT = "{coin}"
Source = Literal["builtin", "native", "jsonl", "http"]
log = logging.getLogger("assetsync.gateway")


class RegistryError(Exception):
    """A registry file problem, naming the entry and the reason."""

    def __init__(self, entry: str, reason: str, source: str = "") -> None:
        self.entry = entry
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}entry {entry}: {reason}" if entry else f"{where}{reason}")


class Endpoint(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """One catalog endpoint, with the seed's fields plus where its records come from."""

    code: str
    category: str
    name: str
    category_name: str = ""  # display name of the category, e.g. 价格追踪
    api_path: str
    method: str = "GET"
    description: str = ""
    data_file: str | None = None
    params: dict[str, Any] | None = None
    # Values `{coin}` in api_path / upstream_url takes: one poll (and one content hash) per coin.
    coins: list[str] | None = None
    interval_seconds: float = 60.0
    source: Source = "http"
    upstream_url: str = ""
    # How much of the feed is kept (None: the default for its source; 0: no bound).
    retention_days: float | None = None
    max_records: int | None = None

    def limits(self) -> tuple[float, int]:
        """(retention_days, max_records) in force, defaults filled in (0 = unbounded)."""
        days = self.retention_days
        if days is None:
            own = self.code if self.source in ("builtin", "native") else ""
            days = DEFAULT_RETENTION_DAYS.get(own, DEFAULT_RETENTION_DAYS.get(self.source, 0.0))
        return float(days), int(self.max_records or 0)

    def public(self) -> dict[str, Any]:
        """The catalog entry as shown to clients (no upstream URL: it may carry credentials)."""
        return {
            "code": self.code,
            "category": self.category,
            "category_name": self.category_name or self.category,
            "name": self.name,
            "api_path": self.api_path,
            "method": self.method,
            "description": self.description,
            "data_file": self.data_file,
            "params": self.params,
            "coins": self.coins,
            "interval_seconds": self.interval_seconds,
            "source": self.source,
            "retention_days": self.limits()[0] or None,
            "max_records": self.limits()[1] or None,
            "data_path": f"/api/data-sync/sender/data/{self.code}",
        }


# Defaults by built-in code or registry source. Built-in feeds re-export what the store keeps anyway:
# the voluminous ones are bounded, the small ledger-like ones (trades, orders, snapshots, task logs)
# kept whole. An `http` source's history exists nowhere else but is mostly polling noise: 30 days.
# A `jsonl` feed mirrors a file the user keeps: unbounded.
DEFAULT_RETENTION_DAYS: dict[str, float] = {
    "AS001": 180.0,  # holdings: one record per asset per sync
    "AS002": 90.0,  # prices: one per asset per sync (every 15 minutes by default)
    "AS003": 365.0,  # klines
    "OKX001": 7.0,  # native: a ticker set every 5 seconds
    "native": 30.0,  # native feeds (market analytics, OKX, fear & greed, SYS…): recomputable, per minute
    "http": 30.0,
}


def _builtin(code: str, category: str, name: str, what: str, description: str) -> Endpoint:
    return Endpoint(
        code=code,
        category=category,
        category_name="本系统数据",
        name=name,
        api_path=f"/api/assets/{what}",
        description=description,
        interval_seconds=0,
        source="builtin",
    )


# Event type tag -> built-in endpoint code. The feed of each is fed by the bus.
BUILTIN: tuple[Endpoint, ...] = (
    _builtin("AS001", "asset_holdings", "持仓", "holdings", "每个资产的持仓状态（数量、价格、成本）"),
    _builtin("AS002", "asset_prices", "价格历史", "prices", "每次采集的资产价格"),
    _builtin("AS003", "asset_klines", "K线", "klines", "K线数据（OHLCV）"),
    _builtin("AS004", "asset_trades", "成交记录", "trades", "交易所成交明细"),
    _builtin("AS005", "asset_orders", "订单", "orders", "订单状态变化"),
    _builtin("AS006", "asset_snapshots", "每日快照", "snapshots", "每日组合快照（总市值、总成本、收益）"),
    _builtin("AS007", "task_logs", "同步日志", "task-logs", "每次任务运行的结果与错误"),
)
BUILTIN_BY_TAG: dict[str, str] = {
    "holding.v1": "AS001",
    "price.v1": "AS002",
    "kline.v1": "AS003",
    "trade.v1": "AS004",
    "order.v1": "AS005",
    "snapshot.v1": "AS006",
    "result.v1": "AS007",
}


def _entry_name(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("code"), str) and raw["code"]:
        return f"#{index} ({raw['code']})"
    return f"#{index}"


def _field_error(err: msgspec.ValidationError) -> str:
    key, message = error_key(err)
    return f"field {key}: {message}" if key else message


def validate(raw: Any, data_dir: Path, *, source: str = "", taken: Sequence[str] = ()) -> list[Endpoint]:
    """Parse and check registry entries; RegistryError names the entry and why."""
    if not isinstance(raw, list):
        raise RegistryError("", "expected a JSON array of endpoints", source)
    seen: dict[str, str] = {c: "a built-in endpoint" for c in taken}
    out: list[Endpoint] = []
    root = data_dir.resolve()
    for i, item in enumerate(raw):
        name = _entry_name(item, i)
        if not isinstance(item, dict):
            raise RegistryError(name, "expected an object", source)
        try:
            ep = msgspec.convert(item, Endpoint)
        except msgspec.ValidationError as exc:
            raise RegistryError(name, _field_error(exc), source) from exc
        if not CODE_RE.match(ep.code):
            raise RegistryError(name, "field code: expected 1-40 letters, digits, '_' or '-'", source)
        if ep.code in seen:
            raise RegistryError(name, f"duplicate code {ep.code} (already used by {seen[ep.code]})", source)
        seen[ep.code] = f"entry {name}"
        if not CATEGORY_RE.match(ep.category):
            raise RegistryError(name, "field category: expected snake_case text (e.g. price_tracker)", source)
        if not ep.name.strip():
            raise RegistryError(name, "field name: must not be empty", source)
        if not ep.api_path.startswith("/") or ".." in ep.api_path.split("/"):
            raise RegistryError(name, "field api_path: expected an absolute path such as /api/x", source)
        if ep.method.upper() not in ("GET", "POST"):
            raise RegistryError(name, "field method: expected GET or POST", source)
        if not 0 < ep.interval_seconds <= 86400 * 7:
            raise RegistryError(name, "field interval_seconds: expected seconds > 0 (at most a week)", source)
        if ep.source in ("builtin", "native"):
            raise RegistryError(
                name, f"field source: expected jsonl or http ({ep.source} is reserved)", source
            )
        if ep.coins is not None and (
            not ep.coins or any(not isinstance(c, str) or not COIN_RE.match(c) for c in ep.coins)
        ):
            raise RegistryError(
                name, "field coins: expected a non-empty list of coin symbols such as BTC", source
            )
        if ep.coins and (ep.source != "http" or not uses_coin(ep)):
            raise RegistryError(
                name,
                f"field coins: only for an http source whose upstream_url or params contain {COIN_SLOT}",
                source,
            )
        if not ep.coins and uses_coin(ep):
            raise RegistryError(
                name, f"field coins: required when upstream_url contains {COIN_SLOT} (e.g. ['BTC'])", source
            )
        if ep.retention_days is not None and not 0 <= ep.retention_days <= 36500:
            raise RegistryError(
                name, "field retention_days: expected days >= 0 (0 = keep everything)", source
            )
        if ep.max_records is not None and ep.max_records < 0:
            raise RegistryError(name, "field max_records: expected a count >= 0 (0 = no bound)", source)
        if ep.source == "jsonl":
            if not ep.data_file:
                raise RegistryError(name, "field data_file: required when source is jsonl", source)
            data_path = Path(ep.data_file)
            if data_path.is_absolute():
                raise RegistryError(name, "field data_file: must be relative to the data directory", source)
            resolved = (root / data_path).resolve()
            if not resolved.is_relative_to(root):
                raise RegistryError(
                    name, f"field data_file: {ep.data_file} is outside the data directory {root}", source
                )
        if ep.source == "http" and not re.match(r"^https?://[^\s/]+", ep.upstream_url):
            raise RegistryError(
                name, "field upstream_url: expected an http(s) URL when source is http", source
            )
        out.append(ep)
    return out


def uses_coin(ep: Endpoint) -> bool:
    """Whether the upstream call of an entry depends on `{coin}` (in its URL or a text param)."""
    texts = [ep.upstream_url, *(v for v in (ep.params or {}).values() if isinstance(v, str))]
    return any(COIN_SLOT in t for t in texts)


def load_registry(path: Path, data_dir: Path) -> list[Endpoint]:
    """Read a registry file (JSON array) and validate it against the built-in codes."""
    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        raise RegistryError("", f"cannot read registry file: {exc.strerror}", str(path)) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError("", f"malformed JSON: {exc}", str(path)) from exc
    return validate(raw, data_dir, source=str(path), taken=[e.code for e in BUILTIN])


def data_file_path(ep: Endpoint, data_dir: Path) -> Path:
    """The resolved JSONL file of an endpoint (validated to be inside the data dir)."""
    if not ep.data_file:
        raise RegistryError(ep.code, "no data_file")
    root = data_dir.resolve()
    p = (root / ep.data_file).resolve()
    if not p.is_relative_to(root):
        raise RegistryError(ep.code, f"field data_file: {ep.data_file} is outside the data directory {root}")
    return p


class Catalog:
    """Built-in plus registry endpoints, by code."""

    def __init__(
        self,
        extra: Sequence[Endpoint] = (),
        *,
        builtin: bool = True,
        native: Sequence[Endpoint] = (),
        limits: Mapping[str, tuple[float | None, int | None]] | None = None,
    ) -> None:
        # A registry entry with a native code wins: the user pointed it at the host that provides it.
        taken = {e.code for e in extra}
        for e in native:
            if e.code in taken:
                log.info("endpoint %s: the registry entry replaces the native feed", e.code)
        kept = [e for e in native if e.code not in taken]
        eps = [*(BUILTIN if builtin else ()), *kept, *extra]
        self.endpoints: dict[str, Endpoint] = {e.code: e for e in eps}
        for code, (days, most) in (limits or {}).items():
            ep = self.endpoints.get(code)
            if ep is None:
                raise RegistryError(
                    code, "no such endpoint code (its keys are catalog codes)", "sync_gateway.feeds"
                )
            if (days is not None and not 0 <= days <= 36500) or (most is not None and most < 0):
                raise RegistryError(
                    code,
                    "retention_days and max_records must be >= 0 (0 = no bound)",
                    "sync_gateway.feeds",
                )
            self.endpoints[code] = msgspec.structs.replace(
                ep,
                retention_days=ep.retention_days if days is None else days,
                max_records=ep.max_records if most is None else most,
            )

    def get(self, code: str) -> Endpoint | None:
        return self.endpoints.get(code)

    def is_native(self, code: str) -> bool:
        """True when the code's records come from FeedRecord events on the bus."""
        ep = self.endpoints.get(code)
        return ep is not None and ep.source == "native"

    def codes(self) -> list[str]:
        return list(self.endpoints)

    def categories(self) -> list[str]:
        return sorted({e.category for e in self.endpoints.values()})


def native_endpoint(seed: SeedEndpoint) -> Endpoint:
    """The catalog entry of a seed code this system produces itself (records from FeedRecord events)."""
    return Endpoint(
        code=seed.code,
        category=seed.category,
        name=seed.name,
        category_name=seed.category_name,
        api_path=seed.api_path,
        description=seed.description,
        interval_seconds=seed.interval_seconds,
        source="native",
    )


def native_endpoints(parts: Sequence[Part]) -> list[Endpoint]:
    """The seed codes produced by the given parts, in the seed's order, as native catalog entries."""
    return [native_endpoint(s) for s in SEED_ENDPOINTS if s.part in parts]

"""Configuration: the original config.json layout (or TOML), env overrides, msgspec-validated."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from assetsync.secrets import Secret
from assetsync.validation import error_key

# Paths (dotted) whose values are secrets: masked everywhere, and taken verbatim from env.
SECRET_PATHS = frozenset(
    {
        "mcp_server.app_secret",
        "asset_sync.binance.api_key",
        "asset_sync.binance.api_secret",
        "asset_sync.xueqiu.cookies",
        "asset_sync.alerts.feishu_webhook",
        "asset_sync.alerts.secret",
        "asset_sync.okx.api_key",
        "asset_sync.okx.api_secret",
        "asset_sync.okx.password",
        "sync_gateway.admin_token",
        "sync_gateway.sender.auth_token",
        "sync_gateway.sender.next_auth_token",
        "sync_gateway.receiver.auth_token",
    }
)
ENV_PREFIX = "ASSETSYNC_"


class ConfigError(Exception):
    """A configuration problem a user can fix: names the key and what was expected."""

    def __init__(self, key: str, problem: str, source: str = "") -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}" if key else f"{where}{problem}")


class _Base(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    pass


class McpServer(_Base):
    app_id: str = ""
    app_secret: Secret = Secret("")


class BinanceConf(_Base):
    enabled: bool | None = None
    api_key: Secret = Secret("")
    api_secret: Secret = Secret("")
    testnet: bool = False
    base_url: str = ""
    timeout_seconds: float = 15.0


class OkxConf(_Base):
    """OKX via ccxt: public market data (tickers, liquidations) and, with keys, the account."""

    # None: on when api_key, api_secret and password are set; true: also without keys (public data only).
    enabled: bool | None = None
    api_key: Secret = Secret("")
    api_secret: Secret = Secret("")
    password: Secret = Secret("")  # the API key's passphrase (ccxt calls it `password`)
    base_url: str = ""  # replaces https://www.okx.com for every REST call
    timeout_seconds: float = 15.0
    interval_seconds: Annotated[float, msgspec.Meta(ge=5, le=86400)] = 60.0  # account/ticker polls


class XueqiuConf(_Base):
    enabled: bool | None = None
    cookies: Secret = Secret("")
    base_url: str = "https://stock.xueqiu.com"
    fund_base_url: str = "https://danjuanfunds.com"
    timeout_seconds: float = 15.0


class FeishuTables(_Base):
    holdings: str = ""
    history: str = ""
    logs: str = ""


class FeishuConf(_Base):
    enabled: bool | None = None
    app_token: str = ""
    tables: FeishuTables = msgspec.field(default_factory=FeishuTables)
    base_url: str = "https://open.feishu.cn"


class ManualAsset(_Base):
    symbol: str
    quantity: float | None = None
    avg_cost: float | None = None
    name: str = ""


class CryptoAssets(_Base):
    auto_discover: bool = True
    ignore: list[str] = msgspec.field(default_factory=list)
    manual: list[ManualAsset] = msgspec.field(default_factory=list)
    cost_method: Literal["average", "fifo"] = "average"
    min_value: float = 1.0
    kline_interval: str = "1h"
    kline_backfill_hours: int = 24 * 7


class ManualFund(_Base):
    """A fund listed by hand (instead of, or on top of, the Feishu 持仓 rows): its code and position."""

    code: str = ""
    symbol: str = ""  # the name crypto's manual entries use; either one may be given
    quantity: float | None = None
    avg_cost: float | None = None
    name: str = ""

    @property
    def fund_code(self) -> str:
        return (self.code or self.symbol).strip()


class FundAssets(_Base):
    auto_discover: bool = True
    ignore: list[str] = msgspec.field(default_factory=list)
    manual: list[ManualFund] = msgspec.field(default_factory=list)


def _check_fund_manual(funds: FundAssets, source: str) -> None:
    for i, entry in enumerate(funds.manual):
        key = f"asset_sync.assets.funds.manual[{i}]"
        if not entry.fund_code:
            raise ConfigError(f"{key}.code", "required: the fund code, e.g. SH510300 or 110011", source)
        if entry.code and entry.symbol and entry.code.strip() != entry.symbol.strip():
            raise ConfigError(f"{key}.symbol", f"differs from code {entry.code!r}: give one of them", source)
        if entry.quantity is not None and entry.quantity < 0:
            raise ConfigError(f"{key}.quantity", "expected a quantity >= 0", source)


class AssetsConf(_Base):
    crypto: CryptoAssets = msgspec.field(default_factory=CryptoAssets)
    funds: FundAssets = msgspec.field(default_factory=FundAssets)


CronField = int | str


class ScheduleEntry(_Base):
    enabled: bool = True
    hour: CronField = "*"
    minute: CronField = 0


class BackupConf(_Base):
    enabled: bool = True
    path: str = ""
    keep_days: int = 30


class DatabaseConf(_Base):
    path: str = ""
    # SQLite `synchronous` (WAL): FULL fsyncs every commit (an acknowledged event survives power loss);
    # NORMAL may lose the last commits on power loss (never on a crash).
    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    backup: BackupConf = msgspec.field(default_factory=BackupConf)


class PriceMoveRule(_Base):
    """Alert when an asset's price moves by `percent` or more within `window_minutes` ("*": every asset)."""

    percent: Annotated[float, msgspec.Meta(gt=0, le=1000)]
    asset: str = "*"
    window_minutes: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)] = 60


class AlertsConf(_Base):
    enabled: bool = True
    feishu_webhook: Secret = Secret("")
    secret: Secret = Secret("")
    alert_on_failure: bool = True
    alert_on_partial_success: bool = False
    min_success_rate: float = 0.8
    reminder_minutes: float = 60.0
    daily_report: bool = True  # a report card after each daily snapshot
    price_moves: list[PriceMoveRule] = msgspec.field(default_factory=list)
    # Alert when a held asset has had no price for this many hours (0: off); also the /portfolio
    # page's stale flag (24 h when off). Funds count as stale after at least 96 h (weekends).
    stale_price_hours: Annotated[float, msgspec.Meta(ge=0)] = 0.0


class ViewsConf(_Base):
    """`asset_sync.views`: `combined` adds other sites' replicated holdings to this site's views."""

    combined: bool = False


# --- FX (CONTRACTS §6): where rates come from when `fx_rates` does not name a currency ---------
class FxConf(_Base):
    source: Literal["ecb", "none"] = "ecb"
    base_url: str = "https://www.ecb.europa.eu"
    max_age_days: float = 7.0
    # The whole fetch (connect, answer, one retry) must fit in this: a snapshot never hangs on it.
    timeout_seconds: float = 10.0


def _check_fx(a: AssetSync, source: str) -> None:
    if a.fx.max_age_days < 0:
        raise ConfigError("asset_sync.fx.max_age_days", "expected a number of days >= 0", source)
    if not 0 < a.fx.timeout_seconds <= 120:
        raise ConfigError("asset_sync.fx.timeout_seconds", "expected seconds in (0, 120]", source)
    if a.fx.source != "none" and not a.fx.base_url.startswith(("http://", "https://")):
        raise ConfigError("asset_sync.fx.base_url", "expected an http:// or https:// URL", source)


class AssetSync(_Base):
    binance: BinanceConf = msgspec.field(default_factory=BinanceConf)
    xueqiu: XueqiuConf = msgspec.field(default_factory=XueqiuConf)
    feishu: FeishuConf = msgspec.field(default_factory=FeishuConf)
    assets: AssetsConf = msgspec.field(default_factory=AssetsConf)
    # Task name -> schedule; keys are crypto_sync / fund_sync / okx_sync / snapshot / backup, optionally with a
    # suffix (the seed's `crypto_sync_15min`), plus `timezone`. Validated in `_check_scheduler`.
    scheduler: dict[str, Any] = msgspec.field(default_factory=dict)
    database: DatabaseConf = msgspec.field(default_factory=DatabaseConf)
    alerts: AlertsConf = msgspec.field(default_factory=AlertsConf)
    base_currency: str = "CNY"
    fx_rates: dict[str, float] = msgspec.field(default_factory=dict)
    views: ViewsConf = msgspec.field(default_factory=ViewsConf)
    fx: FxConf = msgspec.field(default_factory=FxConf)
    okx: OkxConf = msgspec.field(default_factory=OkxConf)


class NatsConf(_Base):
    url: str = ""
    # Namespace for stream and subject names, so several stacks (or tests) share one server.
    prefix: str = ""
    stream_replicas: int = 1
    # Dedupe window for market/portfolio events (seconds); task commands use a day.
    duplicate_window: float = 3600.0
    max_age_days: float = 30.0
    # Embedded server's JetStream fsync policy: "always" (nothing acknowledged is lost on power loss)
    # or a duration such as "2m" (nats-server's own default: up to that much may be lost).
    sync_interval: str = "always"
    # Embedded server deaths in a row that `up` restarts it after; one more and `up` exits with 1.
    restart_limit: int = 5


# --- the gateway's settings rules, written once: the config file, the settings API (its patches in
# the gateway's live_settings) and the OpenAPI request schemas (msgspec.json.schema) all use them.
RateLimit = Annotated[
    int, msgspec.Meta(ge=0, le=1_000_000, description="requests per minute per client address; 0 = unlimited")
]
SyncInterval = Annotated[
    float, msgspec.Meta(gt=0, le=7 * 86400, description="seconds between automatic syncs (at most a week)")
]
TokenText = Annotated[
    str, msgspec.Meta(max_length=512, pattern=r"^\S*$", description="a bearer token: no spaces, ≤ 512 chars")
]
RemoteUrl = Annotated[
    str,
    msgspec.Meta(
        # ASCII host (name, IPv4, [IPv6], port; user:password@ allowed, always shown masked).
        pattern=r"^(https?://[A-Za-z0-9.:@%_~+\-\[\]]+(/[^\s]*)?)?$",
        description="the remote gateway, e.g. http://host:5000 (empty: none)",
    ),
]


class SenderConf(_Base):
    enabled: bool = True
    auth_token: Secret = Secret("")
    next_auth_token: Secret = Secret("")
    allowed_ips: list[str] = msgspec.field(default_factory=list)
    rate_limit: RateLimit = 600


class ReceiverConf(_Base):
    enabled: bool = False
    remote_url: RemoteUrl = ""
    auth_token: Secret = Secret("")
    sync_interval: SyncInterval = 300.0
    auto_sync: bool = False


class FeedLimitsConf(_Base):
    """`sync_gateway.feeds.<CODE>`: how much of one feed the sender keeps (0 = no bound)."""

    retention_days: float | None = None
    max_records: int | None = None


class SyncGatewayConf(_Base):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5000
    site_id: str = ""
    admin_token: Secret = Secret("")
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    # Safe by default (CONTRACTS §5.1): extra Host names for local trust; origins of a cross-origin admin UI.
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    registry: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    sender: SenderConf = msgspec.field(default_factory=SenderConf)
    receiver: ReceiverConf = msgspec.field(default_factory=ReceiverConf)
    feeds: dict[str, FeedLimitsConf] = msgspec.field(default_factory=dict)


class MetricsConf(_Base):
    host: str = "127.0.0.1"
    # Port of the /metrics + /healthz endpoint of `assetsync service NAME`; 0 = off.
    port: int = 9464


class FearGreedConf(_Base):
    """FG001: the crypto fear & greed index (alternative.me's keyless API)."""

    enabled: bool = True
    base_url: str = "https://api.alternative.me"
    interval_seconds: Annotated[float, msgspec.Meta(ge=60, le=86400)] = 3600.0
    timeout_seconds: float = 10.0


class MarketConf(_Base):
    """Public market data for a watch list and the analytics computed from it (no API keys needed)."""

    enabled: bool = True
    # Base assets to watch, e.g. ["BTC", "ETH", "SOL"]; empty: the held crypto assets plus BTC and ETH.
    watchlist: list[str] = msgspec.field(default_factory=list)
    quote: str = "USDT"
    interval_seconds: Annotated[float, msgspec.Meta(ge=10, le=3600)] = 60.0  # ticker polls
    fear_greed: FearGreedConf = msgspec.field(default_factory=FearGreedConf)


class Config(_Base):
    mcp_server: McpServer = msgspec.field(default_factory=McpServer)
    asset_sync: AssetSync = msgspec.field(default_factory=AssetSync)
    nats: NatsConf = msgspec.field(default_factory=NatsConf)
    sync_gateway: SyncGatewayConf = msgspec.field(default_factory=SyncGatewayConf)
    metrics: MetricsConf = msgspec.field(default_factory=MetricsConf)
    market: MarketConf = msgspec.field(default_factory=MarketConf)


TASK_SCHEDULE_KEYS = ("crypto_sync", "fund_sync", "okx_sync", "snapshot", "backup")
DEFAULT_SCHEDULES: dict[str, ScheduleEntry] = {
    "crypto_sync": ScheduleEntry(hour="*", minute=0),
    "fund_sync": ScheduleEntry(hour=9, minute=0),
    "okx_sync": ScheduleEntry(hour="*", minute=0),  # run only by collector-okx, when OKX keys are set
    "snapshot": ScheduleEntry(hour=0, minute=0),
    "backup": ScheduleEntry(hour=1, minute=0),
}
_CRON_RE = re.compile(r"^(\*|\*/\d+|\d+(-\d+)?(,\d+(-\d+)?)*)$")


@dataclass(frozen=True)
class Schedule:
    """One scheduled job: which task, when, and under which config key."""

    key: str
    task: str
    hour: str
    minute: str


@dataclass(frozen=True)
class Settings:
    """Validated config plus resolved paths; built once in `__main__`, passed everywhere."""

    config: Config
    config_path: Path | None
    config_dir: Path
    data_dir: Path
    log_dir: Path
    db_path: Path
    backup_dir: Path
    timezone: str
    schedules: tuple[Schedule, ...]
    demo: bool = False
    # Market holidays named in `asset_sync.scheduler.holidays` (override the XSHG calendar).
    holidays: tuple[date, ...] = ()
    # What `load_settings` merged over the file (the demo's emulator URLs), so a reload keeps them.
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def site_id(self) -> str:
        return self.config.sync_gateway.site_id or "local"

    def binance_on(self) -> bool:
        b = self.config.asset_sync.binance
        return bool(b.enabled is not False and b.api_key and b.api_secret)

    def xueqiu_on(self) -> bool:
        x = self.config.asset_sync.xueqiu
        return bool(x.enabled is not False and x.cookies)

    def feishu_on(self) -> bool:
        f = self.config.asset_sync.feishu
        m = self.config.mcp_server
        return bool(f.enabled is not False and m.app_id and m.app_secret and f.app_token)

    def okx_on(self) -> bool:
        """OKX runs at all: public data (OKX001, LQ001), and the account when `okx_account_on`."""
        o = self.config.asset_sync.okx
        return bool(o.enabled is True or (o.enabled is None and self.okx_account_on()))

    def okx_account_on(self) -> bool:
        """OKX keys are set (and OKX is not `enabled: false`): balances, positions, orders, fills."""
        o = self.config.asset_sync.okx
        return bool(o.enabled is not False and o.api_key and o.api_secret and o.password)

    def market_on(self) -> bool:
        return self.config.market.enabled

    def fear_greed_on(self) -> bool:
        return self.config.market.enabled and self.config.market.fear_greed.enabled

    def alerts_on(self) -> bool:
        a = self.config.asset_sync.alerts
        return bool(a.enabled and a.feishu_webhook)

    def schedule_for(self, task: str) -> list[Schedule]:
        return [s for s in self.schedules if s.task == task]


_TASK_OF_KEY = {
    "crypto_sync": "crypto",
    "fund_sync": "fund",
    "okx_sync": "okx",
    "snapshot": "snapshot",
    "backup": "backup",
}


def _msgspec_error(err: msgspec.ValidationError, source: str, root: Any = None) -> ConfigError:
    """msgspec's error as a ConfigError naming the dotted key (and the rule's description on `root`)."""
    key, message = error_key(err, root)
    return ConfigError(key or "(top level)", message, source)


def _parse_file(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config file: {exc.strerror}", str(path)) from exc
    if path.suffix.lower() == ".toml":
        try:
            raw: Any = tomllib.loads(data.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("", f"malformed TOML: {exc}", str(path)) from exc
    else:
        try:
            raw = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                "", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", str(path)
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("", "malformed JSON: not UTF-8 text", str(path)) from exc
    if not isinstance(raw, dict):
        raise ConfigError("", "expected an object at the top level", str(path))
    return raw


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """`ASSETSYNC_A__B__C=value` sets a.b.c; secrets verbatim, other values parsed as JSON if they can be."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            continue
        dotted = ".".join(parts)
        parsed: Any = value
        if dotted not in SECRET_PATHS:
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = parsed


def _check_scheduler(raw: dict[str, Any], source: str) -> tuple[str, tuple[Schedule, ...]]:
    tz = "Asia/Shanghai"
    entries: dict[str, ScheduleEntry] = dict(DEFAULT_SCHEDULES)
    for key, value in raw.items():
        dotted = f"asset_sync.scheduler.{key}"
        if key == "holidays":
            continue  # dates, checked in `_check_holidays`
        if key == "timezone":
            if not isinstance(value, str):
                raise ConfigError(dotted, "expected a timezone name such as Asia/Shanghai", source)
            tz = value
            continue
        base = next((k for k in TASK_SCHEDULE_KEYS if key == k or key.startswith(k + "_")), None)
        if base is None:
            raise ConfigError(
                dotted,
                f"unknown key (expected one of {', '.join(TASK_SCHEDULE_KEYS)}, timezone or holidays)",
                source,
            )
        try:
            entry = msgspec.convert(value, ScheduleEntry)
        except msgspec.ValidationError as exc:
            err = _msgspec_error(exc, source)
            raise ConfigError(f"{dotted}.{err.key}".rstrip("."), err.problem, source) from exc
        for fname in ("hour", "minute"):
            fval = str(getattr(entry, fname)).strip()
            if not _CRON_RE.match(fval):
                raise ConfigError(
                    f"{dotted}.{fname}", f"{fval!r} is not a number, '*', 'a-b', 'a,b' or '*/n'", source
                )
            limit = 23 if fname == "hour" else 59
            for num in re.findall(r"\d+", fval):
                if int(num) > limit and not fval.startswith("*/"):
                    raise ConfigError(f"{dotted}.{fname}", f"{num} is out of range 0-{limit}", source)
        entries[key] = entry
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
    except Exception as exc:
        raise ConfigError("asset_sync.scheduler.timezone", f"unknown timezone {tz!r}", source) from exc
    out = tuple(
        Schedule(
            key=k,
            task=_TASK_OF_KEY[next(b for b in TASK_SCHEDULE_KEYS if k == b or k.startswith(b + "_"))],
            hour=str(e.hour),
            minute=str(e.minute),
        )
        for k, e in entries.items()
        if e.enabled
    )
    return tz, out


def _check_holidays(raw: Any, source: str) -> tuple[date, ...]:
    """`asset_sync.scheduler.holidays`: dates (YYYY-MM-DD) on which the market is closed."""
    key = "asset_sync.scheduler.holidays"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(key, 'expected a list of dates such as ["2027-02-08", "2027-02-09"]', source)
    out: list[date] = []
    for i, value in enumerate(raw):
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, date):
            out.append(value)
            continue
        try:
            out.append(date.fromisoformat(str(value).strip()))
        except ValueError:
            raise ConfigError(f"{key}[{i}]", f"{value!r} is not a date (YYYY-MM-DD)", source) from None
    return tuple(sorted(set(out)))


def _check_credentials(cfg: Config, explicit: dict[str, Any], source: str) -> None:
    """A source explicitly enabled but missing its credential is an error; absent both, it is just off."""
    a = cfg.asset_sync

    def on(path: str) -> bool:
        node: Any = explicit
        for p in path.split("."):
            if not isinstance(node, dict) or p not in node:
                return False
            node = node[p]
        return node is True

    if on("asset_sync.binance.enabled"):
        for k in ("api_key", "api_secret"):
            if not getattr(a.binance, k):
                raise ConfigError(
                    f"asset_sync.binance.{k}", "required when asset_sync.binance.enabled is true", source
                )
    if on("asset_sync.xueqiu.enabled") and not a.xueqiu.cookies:
        raise ConfigError(
            "asset_sync.xueqiu.cookies",
            "required when asset_sync.xueqiu.enabled is true (xq_a_token=...)",
            source,
        )
    if on("asset_sync.feishu.enabled"):
        if not cfg.mcp_server.app_id:
            raise ConfigError("mcp_server.app_id", "required when asset_sync.feishu.enabled is true", source)
        if not cfg.mcp_server.app_secret:
            raise ConfigError(
                "mcp_server.app_secret", "required when asset_sync.feishu.enabled is true", source
            )
        if not a.feishu.app_token:
            raise ConfigError(
                "asset_sync.feishu.app_token", "required when asset_sync.feishu.enabled is true", source
            )
    if a.alerts.enabled and on("asset_sync.alerts.enabled") and not a.alerts.feishu_webhook:
        raise ConfigError(
            "asset_sync.alerts.feishu_webhook", "required when asset_sync.alerts.enabled is true", source
        )
    if not 0.0 <= a.alerts.min_success_rate <= 1.0:
        raise ConfigError("asset_sync.alerts.min_success_rate", "expected a number between 0 and 1", source)
    if a.database.backup.keep_days < 1:
        raise ConfigError(
            "asset_sync.database.backup.keep_days", "expected a whole number of days >= 1", source
        )
    for cur, rate in a.fx_rates.items():
        if rate <= 0:
            raise ConfigError(f"asset_sync.fx_rates.{cur}", "expected a positive rate", source)
    _check_fx(a, source)
    _check_fund_manual(a.assets.funds, source)
    gw = cfg.sync_gateway
    if not 0 <= gw.port <= 65535:
        raise ConfigError("sync_gateway.port", "expected a TCP port 0-65535", source)
    if not re.fullmatch(r"[A-Za-z0-9_-]*", cfg.nats.prefix):
        raise ConfigError("nats.prefix", "expected letters, digits, '-' or '_'", source)
    if cfg.nats.sync_interval != "always" and not re.fullmatch(r"\d+(ms|s|m|h)", cfg.nats.sync_interval):
        raise ConfigError(
            "nats.sync_interval", 'expected "always" or a duration such as "10s" or "2m"', source
        )
    if not 0 <= cfg.nats.restart_limit <= 100:
        raise ConfigError("nats.restart_limit", "expected a whole number 0-100", source)


# --- gateway exposure (CONTRACTS §5.1) ---------------------------------------------------------
LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback_host(host: str) -> bool:
    """True for a bind address reachable only from this machine (`localhost`, 127.0.0.0/8, ::1)."""
    import ipaddress

    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a name (or 0.0.0.0 / ::) may be reachable from elsewhere


def exposure_problem(host: str, sender_enabled: bool, sender_token_set: bool) -> str | None:
    """Why serving the sender on `host` would hand the portfolio to strangers, or None when it would not."""
    if not sender_enabled or sender_token_set or is_loopback_host(host):
        return None
    return (
        f"required when sync_gateway.host ({host or 'all interfaces'}) is not a loopback address and the "
        "sender is enabled: without it anyone who reaches the port reads the holdings. Make one with "
        "`assetsync gen-token` (or set sync_gateway.host to 127.0.0.1, or sync_gateway.sender.enabled to false)"
    )


# Exchange tags of 持仓 row codes (`BTC@OKX`): a site of that name would be read as the exchange.
RESERVED_SITE_IDS = frozenset({"OKX"})


def _check_site_id(cfg: Config, source: str) -> None:
    site = cfg.sync_gateway.site_id
    if site.strip().upper() in RESERVED_SITE_IDS:
        raise ConfigError(
            "sync_gateway.site_id",
            f"{site!r} is reserved: 持仓 rows of OKX holdings are `<资产代码>@OKX`; choose another site id",
            source,
        )


def _check_gateway_exposure(cfg: Config, source: str) -> None:
    gw = cfg.sync_gateway
    if not gw.enabled:
        return
    problem = exposure_problem(
        gw.host, gw.sender.enabled, bool(gw.sender.auth_token or gw.sender.next_auth_token)
    )
    if problem:
        raise ConfigError("sync_gateway.sender.auth_token", problem, source)
    for key, values in (("allowed_hosts", gw.allowed_hosts), ("allowed_origins", gw.allowed_origins)):
        for v in values:
            if not v.strip() or any(c.isspace() for c in v) or (key == "allowed_hosts" and "/" in v):
                raise ConfigError(f"sync_gateway.{key}", f"{v!r} is not a host name", source)
            if key == "allowed_origins" and (not re.fullmatch(r"https?://[^/\s]+", v) or v == "*"):
                raise ConfigError(
                    f"sync_gateway.{key}", f"{v!r} is not an origin such as https://admin.example.com", source
                )


def find_default_config(cwd: Path) -> Path | None:
    """`./config.json` or `./config.toml`, if present."""
    for name in ("config.json", "config.toml"):
        p = cwd / name
        if p.is_file():
            return p
    return None


def load_settings(
    path: Path | None,
    *,
    data_dir: Path | None = None,
    log_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    demo: bool = False,
) -> Settings:
    """Read, merge env, validate and resolve paths. Raises ConfigError."""
    env = os.environ if environ is None else environ
    source = str(path) if path else "config"
    raw: dict[str, Any] = _parse_file(path) if path else {}
    if overrides:
        deep_merge(raw, overrides)
    _apply_env(raw, env)
    sched_raw = (
        raw.get("asset_sync", {}).get("scheduler", {}) if isinstance(raw.get("asset_sync"), dict) else {}
    )
    if not isinstance(sched_raw, dict):
        raise ConfigError("asset_sync.scheduler", "expected an object", source)
    try:
        cfg = msgspec.convert(raw, Config, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _msgspec_error(exc, source, Config) from exc
    tz, schedules = _check_scheduler(sched_raw, source)
    holidays = _check_holidays(sched_raw.get("holidays"), source)
    _check_credentials(cfg, raw, source)
    _check_gateway_exposure(cfg, source)
    _check_site_id(cfg, source)

    config_dir = (path.parent if path else Path.cwd()).resolve()
    ddir = (data_dir if data_dir is not None else Path("data")).resolve()
    ldir = (log_dir if log_dir is not None else Path(env.get("ASSETSYNC_LOG_DIR", "logs"))).resolve()
    db = cfg.asset_sync.database
    db_path = (config_dir / db.path).resolve() if db.path else ddir / "assets.db"
    backup_dir = (config_dir / db.backup.path).resolve() if db.backup.path else ddir / "backups"
    return Settings(
        config=cfg,
        config_path=path.resolve() if path else None,
        config_dir=config_dir,
        data_dir=ddir,
        log_dir=ldir,
        db_path=db_path,
        backup_dir=backup_dir,
        timezone=tz,
        schedules=schedules,
        demo=demo,
        holidays=holidays,
        overrides=dict(overrides or {}),
    )


def reload_settings(old: Settings) -> Settings:
    """Re-read the config `old` came from (same file, data dir, log dir and overrides). Raises ConfigError."""
    return load_settings(
        old.config_path,
        data_dir=old.data_dir,
        log_dir=old.log_dir,
        overrides=old.overrides,
        demo=old.demo,
    )


def deep_merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    """Merge `src` into `dst` recursively (nested objects merge, other values replace)."""
    for k, v in src.items():
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        elif isinstance(v, Mapping):
            dst[k] = {}
            deep_merge(dst[k], v)
        else:
            dst[k] = v


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret:
        if not isinstance(obj, str):
            raise TypeError(f"Expected `str`, got `{type(obj).__name__}`")
        return Secret(obj)
    raise TypeError(f"unsupported type {type_!r}")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Secret):
        return obj.masked()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def redacted(cfg: Config) -> dict[str, Any]:
    """The config as plain data with every secret masked (for `check-config` and logs)."""
    out: dict[str, Any] = msgspec.to_builtins(cfg, enc_hook=_enc_hook)
    return out

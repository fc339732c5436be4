"""The gateway's resources in one object: catalog, feeds, sources, sender stats, receiver, settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from assetsync.config import ConfigError, Settings, SyncGatewayConf, exposure_problem, is_loopback_host
from assetsync.endpoints import Part
from assetsync.events import Event, FeedRecord
from assetsync.logs import DATEFMT, FORMAT, MaskingFormatter
from assetsync.metrics import Metrics
from prometheus_client import CollectorRegistry, generate_latest

from assetsync_sync_gateway.feeds import FeedStore, Limits
from assetsync_sync_gateway.health_feeds import HealthFeeds, TaskPlan, task_plans
from assetsync_sync_gateway.ingest import ingest_events
from assetsync_sync_gateway.live_settings import RuntimeConfig
from assetsync_sync_gateway.logbuffer import LogBuffer
from assetsync_sync_gateway.portfolio import PortfolioOptions
from assetsync_sync_gateway.receiver import EventSink, Receiver, Tuning
from assetsync_sync_gateway.receiver_store import ReceivedStore
from assetsync_sync_gateway.registry import (
    BUILTIN_BY_TAG,
    Catalog,
    Endpoint,
    load_registry,
    native_endpoints,
)
from assetsync_sync_gateway.security import Network, parse_networks
from assetsync_sync_gateway.sources import Sources
from assetsync_sync_gateway.stats import GatewayCollector, StatsFile

log = logging.getLogger("assetsync.gateway")
RETENTION_EVERY = 600.0  # seconds between retention passes (max_records holds at every append)


@dataclass
class GatewayOptions:
    """Everything a gateway is built from (tests build these directly; `from_settings` for services)."""

    data_dir: Path
    site_id: str
    conf: SyncGatewayConf = field(default_factory=SyncGatewayConf)
    extra_endpoints: Sequence[Endpoint] = ()
    builtin: bool = True
    native_endpoints: Sequence[Endpoint] = ()  # seed codes this site produces (`native_parts`)
    task_plans: Sequence[TaskPlan] = ()  # expected task runs, for SYS001/SYS002
    metrics: Metrics | None = None
    sink: EventSink | None = None
    tuning: Tuning | None = None
    run_sources: bool = True
    receiver_transport: httpx.AsyncBaseTransport | None = None
    page_limit_default: int = 500
    log_dir: Path | None = None  # where the seed's data_sender.log / data_receiver.log go
    portfolio: PortfolioOptions | None = None  # the store's database for /portfolio (None: not served)


def native_parts(settings: Settings) -> tuple[Part, ...]:
    """Which producers of the seed's codes run at this site (their codes are in the catalog)."""
    on: list[tuple[Part, bool]] = [
        ("market", settings.market_on()),
        ("okx_public", settings.okx_on()),
        ("okx", settings.okx_account_on()),
        ("sentiment", settings.fear_greed_on()),
        ("system", True),  # the gateway's own health feeds (SYS001, SYS002)
    ]
    return tuple(part for part, running in on if running)


def portfolio_options(settings: Settings) -> PortfolioOptions:
    """The /portfolio page's view of the store: its database and the valuation settings."""
    a = settings.config.asset_sync
    stale = a.alerts.stale_price_hours
    return PortfolioOptions(
        store_db=settings.db_path,
        base_currency=a.base_currency,
        fx_rates=dict(a.fx_rates),
        stale_hours=stale if stale > 0 else 24.0,
        timezone=settings.timezone,
    )


class Gateway:
    """Owns the gateway's resources; `start`/`stop` are called from the web app's lifespan."""

    def __init__(self, opts: GatewayOptions) -> None:
        self.opts = opts
        self.site_id = opts.site_id
        self.data_dir = opts.data_dir
        gw_dir = opts.data_dir / "gateway"
        # Feeds (the portfolio), settings (tokens), statistics: the owner's alone (new folders only).
        gw_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.catalog = Catalog(
            opts.extra_endpoints,
            builtin=opts.builtin,
            native=opts.native_endpoints,
            limits={c: (f.retention_days, f.max_records) for c, f in opts.conf.feeds.items()},
        )
        self.feeds = FeedStore(gw_dir / "feeds.db", opts.site_id)
        self.feeds.limits = {
            code: Limits(*ep.limits()) for code, ep in self.catalog.endpoints.items() if any(ep.limits())
        }
        self.config = RuntimeConfig(opts.conf, gw_dir / "runtime_config.json")
        self.admin_token = opts.conf.admin_token.get()
        self.trusted: tuple[Network, ...] = parse_networks(
            opts.conf.trusted_proxies, "sync_gateway.trusted_proxies"
        )
        problem = exposure_problem(
            opts.conf.host, self.config.sender.enabled, bool(self.config.sender_tokens())
        )
        if problem:  # also checked on the config file; this one sees settings changed from the manager
            raise ConfigError("sync_gateway.sender.auth_token", problem)
        self.sender_stats = StatsFile(gw_dir / "sender_stats.json")
        self.received = ReceivedStore(gw_dir / "received.db", opts.data_dir / "synced_data")
        self.receiver = Receiver(
            self.received,
            self.config,
            opts.site_id,
            sink=opts.sink,
            tuning=opts.tuning,
            transport=opts.receiver_transport,
        )
        self.metrics = opts.metrics or Metrics()
        # The gateway port's /metrics: gateway series only (the process registry also holds portfolio values).
        self.registry = CollectorRegistry(auto_describe=False)
        self.sources = Sources(self.feeds, opts.data_dir)
        self.health = HealthFeeds(self.catalog, self.feeds, self.sources, opts.task_plans)
        self.logs = LogBuffer()
        self._collector: GatewayCollector | None = None
        self._http: httpx.AsyncClient | None = None
        self._file_handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self.started = False
        self.start_error: BaseException | None = None
        # Whether the stack around the gateway is ready too (NATS up, every part started): /healthz.
        self.ready: Callable[[], bool] = lambda: True
        # Set while the built-in feeds hold everything the bus held when they started (the service
        # clears it until its consumers have caught up; without a bus there is nothing to wait for).
        self.builtin_ready = asyncio.Event()
        self.builtin_ready.set()
        # Feeds filled from the bus: built-in event types and native FeedRecords.
        self._builtin_codes = frozenset(BUILTIN_BY_TAG.values()) | {
            c for c in self.catalog.codes() if self.catalog.is_native(c)
        }
        # FeedRecords of codes not in the catalog (their producer runs, this catalog lacks the part).
        self.ignored_records: Counter[str] = Counter()
        self._retention: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, metrics: Metrics | None = None, sink: EventSink | None = None
    ) -> Gateway:
        """Build from validated settings; a bad registry file raises RegistryError naming the entry."""
        conf = settings.config.sync_gateway
        extra: list[Endpoint] = []
        if conf.registry:
            path = Path(conf.registry)
            if not path.is_absolute():
                path = settings.config_dir / path
            extra = load_registry(path, settings.data_dir)
        return cls(
            GatewayOptions(
                data_dir=settings.data_dir,
                site_id=settings.site_id,
                conf=conf,
                extra_endpoints=extra,
                native_endpoints=native_endpoints(native_parts(settings)),
                task_plans=task_plans(settings),
                metrics=metrics,
                sink=sink,
                log_dir=settings.log_dir,
                portfolio=portfolio_options(settings),
            )
        )

    def _open_log_files(self) -> None:
        """The seed's log files: sender and receiver activity, each in its own file."""
        if self.opts.log_dir is None:
            return
        try:
            self.opts.log_dir.mkdir(parents=True, exist_ok=True)
            for logger, name in (
                ("assetsync.gateway.sender", "data_sender.log"),
                ("assetsync.gateway.receiver", "data_receiver.log"),
            ):
                h = logging.FileHandler(self.opts.log_dir / name, encoding="utf-8")
                h.setFormatter(MaskingFormatter(FORMAT, DATEFMT))
                h.setLevel(logging.INFO)
                lg = logging.getLogger(logger)
                lg.addHandler(h)
                self._file_handlers.append((lg, h))
        except OSError as exc:
            log.warning("cannot open gateway log files in %s: %s", self.opts.log_dir, exc)

    async def start(self) -> None:
        logging.getLogger("assetsync.gateway").addHandler(self.logs)
        self._open_log_files()
        await self.feeds.open(self.catalog.codes())
        await self.health.load()
        self.sender_stats.load()
        self.sender_stats.start()
        await self.received.open()
        await self.receiver.start()
        if self.opts.run_sources:
            self._http = httpx.AsyncClient(follow_redirects=False)
            self.sources.client = self._http
            self.sources.start(list(self.catalog.endpoints.values()))
            self.health.start()
        self._collector = GatewayCollector(
            lambda: self.sender_stats.stats,
            lambda: self.receiver.stats,
            self.receiver.lag,
            lambda: self.receiver.syncing,
        )
        with contextlib.suppress(ValueError):  # already registered by an earlier build in this process
            self.metrics.registry.register(self._collector)
        self.registry.register(self._collector)
        self._retention = asyncio.create_task(self._retention_loop(), name="gateway-retention")
        self.started = True
        if not self.admin_token and not is_loopback_host(self.opts.conf.host):
            log.warning(
                "sync_gateway.admin_token is not set and the gateway is bound to %s: the admin API "
                "(manager page, settings, receiver) answers 403 to everyone; set sync_gateway.admin_token",
                self.opts.conf.host or "all interfaces",
            )
        log.info(
            "sync gateway %s: %d endpoints (%d categories), sender %s, receiver %s",
            self.site_id,
            len(self.catalog.endpoints),
            len(self.catalog.categories()),
            "on" if self.config.sender.enabled else "off",
            "on" if self.config.receiver.enabled else "off",
        )

    async def stop(self) -> None:
        self.started = False
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        await self.health.stop()
        await self.sources.stop()
        await self.receiver.stop()
        await self.sender_stats.stop()
        if self._http is not None:
            await self._http.aclose()
        await self.received.close()
        await self.feeds.close()
        if self._collector is not None:
            with contextlib.suppress(KeyError):
                self.metrics.registry.unregister(self._collector)
            with contextlib.suppress(KeyError):
                self.registry.unregister(self._collector)
        logging.getLogger("assetsync.gateway").removeHandler(self.logs)
        for lg, h in self._file_handlers:
            lg.removeHandler(h)
            h.close()
        self._file_handlers.clear()

    def exposition(self) -> bytes:
        """The gateway's own metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    async def _retention_loop(self) -> None:
        while True:
            try:
                removed = await self.feeds.prune()
                for code, n in removed.items():
                    log.info("feed %s: %d record(s) older than its retention_days removed", code, n)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retried next pass; appends and pages are unaffected
                log.warning("feed retention failed (will retry): %s", exc)
            await asyncio.sleep(RETENTION_EVERY)

    def behind(self, code: str) -> bool:
        """True when a feed may lack records its source already holds (cheap: no I/O for built-ins)."""
        if code in self._builtin_codes:
            return not self.builtin_ready.is_set()
        return self.sources.behind(code)

    async def catch_up(self, code: str, timeout: float) -> bool:
        """Wait (up to `timeout`) for a feed to hold everything its source holds; True if it does."""
        if code in self._builtin_codes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.builtin_ready.wait(), timeout)
            return self.builtin_ready.is_set()
        return await self.sources.catch_up(code, timeout)

    async def ingest(self, events: Iterable[Event]) -> dict[str, int]:
        """Append bus events to the built-in and native feeds (one transaction)."""
        wanted = [e for e in events if self._wanted(e)]
        gained = await ingest_events(self.feeds, wanted)
        self.health.observe(wanted, self.site_id)  # after the append: a failed batch is redelivered
        return gained

    def _wanted(self, event: Event) -> bool:
        """False for a FeedRecord whose code is not a native catalog entry (counted, logged once per code)."""
        if not isinstance(event, FeedRecord) or self.catalog.is_native(event.code):
            return True
        self.ignored_records[event.code] += 1
        if self.ignored_records[event.code] == 1:
            why = "its registry entry provides it" if self.catalog.get(event.code) else "not in the catalog"
            log.info("feed records of %s are ignored: %s", event.code, why)
        return False

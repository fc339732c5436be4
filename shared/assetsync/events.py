"""Every event on the bus: msgspec tagged-union Structs (additive evolution: new fields get defaults).

Each event has a natural `key()`; it is the `Nats-Msg-Id` on publish and the upsert key in sinks,
so redelivery, replay and replication never duplicate a row.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

TaskName = Literal["crypto", "fund", "okx", "snapshot", "backup", "restore", "store"]
TaskStatus = Literal["success", "partial", "failed"]
AssetType = Literal["crypto", "fund"]
# A task's name in 日志 (任务类型), the CLI and reports: its schedule key.
TASK_LABEL: dict[str, str] = {
    "crypto": "crypto_sync",
    "fund": "fund_sync",
    "okx": "okx_sync",
    "snapshot": "snapshot",
    "backup": "backup",
}


class Event(msgspec.Struct, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of every bus event; `origin` is the site that produced it ("" = this site)."""

    origin: str = ""
    # For events received from another site's gateway: their sequence in the origin site's feed
    # (0 = produced here), so relays keep the (origin, origin sequence) identity.
    origin_seq: int = 0

    def key(self) -> str:
        raise TypeError(f"{type(self).__name__} has no natural key")


def site_key(e: Event, key: str) -> str:
    """The key of a site's own record, tagged with its origin when it came from another site.

    Two sites' own ids can be equal (the same schedule slot `crypto@…`, trade 1 of two accounts):
    without the origin one site's record would be taken for a duplicate of the other's.
    Market facts (prices, klines) are the same at every site and keep one key.
    """
    return f"{key}@{e.origin}" if e.origin else key


class PriceTick(Event, tag="price.v1"):
    """A price observation for one asset, in its own currency."""

    source: str
    asset: str
    price: float
    currency: str
    ts: int  # ms since epoch of the observation
    asset_type: AssetType = "crypto"
    name: str = ""
    via: str = ""  # market(s) used, e.g. "ETH/BTC*BTC/USDT"
    price_date: str = ""  # NAV date for open-end funds (YYYY-MM-DD)

    def key(self) -> str:
        return f"price:{self.source}:{self.asset}:{self.ts}"


class Candle(msgspec.Struct, array_like=True, frozen=True):
    """One OHLCV candle, encoded as a compact array."""

    open_time: int  # ms
    open: float
    high: float
    low: float
    close: float
    volume: float


class KlineBatch(Event, tag="kline.v1"):
    """Consecutive candles of one market and interval."""

    source: str
    symbol: str  # ccxt unified symbol, e.g. BTC/USDT
    interval: str  # 1m, 1h, 1d ...
    candles: list[Candle]

    def key(self) -> str:
        first = self.candles[0].open_time if self.candles else 0
        last = self.candles[-1].open_time if self.candles else 0
        closes = hash(tuple(c.close for c in self.candles)) & 0xFFFFFFFF
        return (
            f"kline:{self.source}:{self.symbol}:{self.interval}:{first}:{last}:{len(self.candles)}:{closes:x}"
        )


class MarketTicks(Event, tag="ticks.v1"):
    """Last prices of a watch list at one poll (public market data; one message for every asset).

    Kept apart from `PriceTick` so a minute-by-minute watch list does not grow the store's price
    history or the AS002 feed; the market analytics service reads both.
    """

    source: str  # binance / okx
    quote: str  # the currency of every price, e.g. USDT
    ts: int  # ms of the poll
    prices: dict[str, float]  # base asset -> last price
    volumes: dict[str, float] = msgspec.field(default_factory=dict)  # base asset -> 24 h quote volume
    missing: list[str] = msgspec.field(default_factory=list)  # watched assets with no market (delisted…)

    def key(self) -> str:
        return f"ticks:{self.source}:{self.quote}:{self.ts}"


class Holding(Event, tag="holding.v1"):
    """The state of one held asset at `as_of` (quantity, price and cost in `currency`)."""

    source: str
    asset: str
    quantity: float
    currency: str
    as_of: int  # ms
    asset_type: AssetType = "crypto"
    name: str = ""
    price: float | None = None  # None: unpriced
    avg_cost: float | None = None  # None: no cost known
    cost_source: str = ""  # trades / manual / feishu
    price_date: str = ""
    run_id: str = ""

    def key(self) -> str:
        return site_key(self, f"holding:{self.source}:{self.asset}:{self.as_of}")


class Trade(Event, tag="trade.v1"):
    """One fill from the exchange."""

    source: str
    trade_id: str
    symbol: str
    side: Literal["buy", "sell"]
    price: float
    amount: float
    cost: float
    ts: int
    order_id: str = ""
    fee: float = 0.0
    fee_currency: str = ""
    taker_or_maker: str = ""

    def key(self) -> str:
        return site_key(self, f"trade:{self.source}:{self.symbol}:{self.trade_id}")


class Order(Event, tag="order.v1"):
    """The state of one order at `updated_at`."""

    source: str
    order_id: str
    symbol: str
    side: str
    status: str
    created_at: int
    updated_at: int
    order_type: str = ""  # limit / market ...
    price: float | None = None
    amount: float = 0.0
    filled: float = 0.0
    cost: float = 0.0

    def key(self) -> str:
        return site_key(
            self, f"order:{self.source}:{self.symbol}:{self.order_id}:{self.updated_at}:{self.status}"
        )


class TaskCommand(Event, tag="command.v1"):
    """Run a task now. Scheduled commands carry their slot, so replicas publish one message per slot."""

    command_id: str
    task: TaskName
    requested_by: str = "cli"  # scheduler / cli / api
    requested_at: int = 0
    slot: str = ""  # ISO minute of the scheduled slot, e.g. 2026-11-22T09:00+08:00
    expires_at: int = 0  # ms; a command still queued after this is dropped
    args: dict[str, str] = msgspec.field(default_factory=dict)

    def key(self) -> str:
        return f"cmd:{self.task}:{self.slot}" if self.slot else f"cmd:{self.command_id}"


class AssetError(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Why one asset failed (or was left unpriced) in a task run."""

    asset: str
    reason: str
    kind: str = "failed"  # failed / unpriced / skipped
    quantity: float | None = None
    part: str = ""  # which part of the run failed for it: prices / klines / trades / cost


class TaskResult(Event, tag="result.v1"):
    """The outcome of one task run, with per-asset errors."""

    command_id: str
    task: TaskName
    source: str  # binance / xueqiu / system
    status: TaskStatus
    started_at: int
    finished_at: int
    records: int = 0  # assets/rows that succeeded
    total: int = 0  # assets/rows attempted
    errors: list[AssetError] = msgspec.field(default_factory=list)
    message: str = ""
    # The complete set of assets discovered (None when discovery itself failed): sinks drop the rest.
    assets: list[str] | None = None
    data_as_of: str = ""  # e.g. the NAV date for funds
    dust: list[str] = msgspec.field(default_factory=list)  # held, but below min_value: left out

    @property
    def duration(self) -> float:
        return max(0.0, (self.finished_at - self.started_at) / 1000.0)

    @property
    def success_rate(self) -> float:
        return self.records / self.total if self.total else (1.0 if self.status == "success" else 0.0)

    def key(self) -> str:
        return site_key(self, f"result:{self.command_id}")


class FxRate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A rate a snapshot converted with: base units per unit, its reference date, where it came from."""

    rate: float
    date: str = ""  # YYYY-MM-DD of the rate ("" for manual rates)
    source: str = ""  # manual / ecb / "ecb (stored)"


class Snapshot(Event, tag="snapshot.v1"):
    """The daily portfolio snapshot, totals in `base_currency`."""

    date: str  # local day, YYYY-MM-DD
    base_currency: str
    total_value: float
    total_cost: float
    total_pnl: float
    pnl_pct: float | None
    asset_count: int
    taken_at: int
    command_id: str = ""
    by_currency: dict[str, float] = msgspec.field(default_factory=dict)
    fx: dict[str, FxRate] = msgspec.field(default_factory=dict)  # currency -> the rate used

    def key(self) -> str:
        return site_key(self, f"snapshot:{self.date}:{self.taken_at}")


class BackupResult(Event, tag="backup.v1"):
    """The outcome of one database backup."""

    command_id: str
    ok: bool
    started_at: int
    finished_at: int
    path: str = ""
    size_bytes: int = 0
    integrity: str = ""
    error: str = ""
    removed: list[str] = msgspec.field(default_factory=list)

    def key(self) -> str:
        return site_key(self, f"backup:{self.command_id}")


class ServiceLifecycle(Event, tag="lifecycle.v1"):
    """A service instance started or is stopping."""

    service: str
    instance: str
    state: Literal["started", "stopping"]
    at: int
    version: str = ""
    host: str = ""

    def key(self) -> str:
        return f"lifecycle:{self.service}:{self.instance}:{self.state}:{self.at}"


class SinkRejected(Event, tag="sink_rejected.v1"):
    """A sink refused a record permanently (e.g. a Feishu field was renamed)."""

    sink: str
    target: str  # e.g. table name
    record_key: str
    reason: str
    at: int

    def key(self) -> str:
        return f"sink_rejected:{self.sink}:{self.target}:{self.record_key}:{self.at}"


class ExternalRecord(Event, tag="external.v1"):
    """A record of a catalog endpoint received from another site's gateway."""

    code: str
    seq: int
    data: Any
    received_at: int = 0

    def key(self) -> str:
        return f"external:{self.origin}:{self.code}:{self.seq}"


class FeedRecord(Event, tag="feed.v1"):
    """One record of a native catalog endpoint (assetsync.endpoints), e.g. PS001 or SAR001.

    `data` is the record as the endpoint serves it, built by the producer from its own typed
    Struct. `record_key` is the record's natural key within its code (e.g. "BTC:1733462400000"), so a
    producer restarted mid-interval republishes the same record and it is dropped as a duplicate.
    """

    code: str
    record_key: str
    ts: int  # ms the record describes
    data: dict[str, Any]

    def key(self) -> str:
        return site_key(self, f"feed:{self.code}:{self.record_key}")


AnyEvent = (
    PriceTick
    | MarketTicks
    | KlineBatch
    | Holding
    | Trade
    | Order
    | TaskCommand
    | TaskResult
    | Snapshot
    | BackupResult
    | ServiceLifecycle
    | SinkRejected
    | ExternalRecord
    | FeedRecord
)


class Codec:
    """Encoder and decoder for the event union, built once and shared."""

    def __init__(self) -> None:
        self._enc = msgspec.json.Encoder()
        self._dec: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)

    def encode(self, event: Event) -> bytes:
        return self._enc.encode(event)

    def decode(self, data: bytes) -> AnyEvent:
        return self._dec.decode(data)

"""Site B of `assetsync up --demo`: a second, emulated site whose catalog the demo's receiver pulls.

Design: an in-process second `Gateway` (own site id, data dir, FeedStore, port and sender token),
served by the gateway's own HTTP server on the `up` event loop. The receiver only ever talks to a
remote site's sender API over HTTP, and site B's sender is the real one, so a whole second stack
(its own NATS, store, collectors) would double the demo's footprint without changing anything the
receiver sees. Site B's built-in feeds (持仓 AS001, 价格 AS002, 成交 AS004, 快照 AS006) are filled the
way its bus would fill them (`Gateway.ingest` of real events), its two registry feeds by the real
JSONL tail of files a small generator appends to: every few seconds a line to each file, every
`holdings_every` seconds a price and a holding per asset (a real crypto sync runs every 15 minutes:
this keeps the demo lively without growing the demo store's price history by much).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from assetsync.config import SenderConf, SyncGatewayConf
from assetsync.events import Event, Holding, PriceTick, Snapshot, Trade
from assetsync.files import atomic_write
from assetsync.secrets import Secret
from assetsync_sync_gateway.core import Gateway, GatewayOptions
from assetsync_sync_gateway.http_api import create_app
from assetsync_sync_gateway.http_server import Running, server_config, start_server, stop_server
from assetsync_sync_gateway.registry import BUILTIN, Endpoint, validate

log = logging.getLogger("assetsync.demo.site_b")
SITE_B_ID = "demo-b"
DAY_MS = 86_400_000
HISTORY_DAYS = 30
# Site B's account: quantity and average cost (USDT) of each asset, and the price it starts from.
ACCOUNT: dict[str, tuple[float, float, float]] = {
    "BTC": (0.85, 61_250.0, 97_300.0),
    "ETH": (6.4, 2_310.0, 3_420.0),
    "SOL": (55.0, 128.0, 191.5),
    "BNB": (12.0, 402.0, 655.0),
}
# Site B's registry feeds, in the seed's endpoint shape (JSONL files under site B's data dir).
REGISTRY: tuple[dict[str, Any], ...] = (
    {
        "code": "BPT001",
        "category": "price_tracker",
        "category_name": "价格追踪",
        "name": "站点B价格追踪",
        "api_path": "/api/coin-price-tracker/latest",
        "description": "站点B观察列表每个币种的最新价格与涨跌幅",
        "source": "jsonl",
        "data_file": "feeds/BPT001.jsonl",
        "interval_seconds": 2,
    },
    {
        "code": "BFG001",
        "category": "fear_greed",
        "category_name": "恐惧贪婪",
        "name": "站点B恐惧贪婪指数",
        "api_path": "/api/fear-greed/latest",
        "description": "站点B记录的恐惧贪婪指数（alternative.me 形状）",
        "source": "jsonl",
        "data_file": "feeds/BFG001.jsonl",
        "interval_seconds": 2,
    },
)
_enc = msgspec.json.Encoder()


def site_b_endpoints(data_dir: Path) -> list[Endpoint]:
    """Site B's registry endpoints, checked like a registry file's."""
    return validate(list(REGISTRY), data_dir, source="demo site B", taken=[e.code for e in BUILTIN])


def sender_token(data_dir: Path) -> str:
    """Site B's sender token: made once per data dir, kept 0600 (the receiver's settings may keep it)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / "sender_token"
    with contextlib.suppress(FileNotFoundError):
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    atomic_write(path, token.encode())
    return token


class Generator:
    """Plausible live data of site B: a random walk of prices, its holdings, trades and snapshots."""

    def __init__(self, seed: int = 2) -> None:
        self.rnd = random.Random(seed)
        self.prices = {a: start for a, (_, _, start) in ACCOUNT.items()}
        self.opened = dict(self.prices)  # the "24h" reference of the change percentages
        self.fear_greed = 52.0

    def walk(self) -> None:
        """Move every price by a small random step (about 0.2% per step)."""
        for a, p in self.prices.items():
            self.prices[a] = round(p * math.exp(self.rnd.gauss(0.0, 0.002)), 8)
        self.fear_greed = min(95.0, max(5.0, self.fear_greed + self.rnd.gauss(0.0, 1.5)))

    def market(self, now_ms: int) -> list[Event]:
        """A price and a holding per asset, as a crypto sync of site B would publish them."""
        out: list[Event] = []
        for a, (qty, cost, _) in ACCOUNT.items():
            price = self.prices[a]
            out.append(PriceTick(source="binance", asset=a, price=price, currency="USDT", ts=now_ms))
            out.append(
                Holding(
                    source="binance",
                    asset=a,
                    quantity=qty,
                    currency="USDT",
                    as_of=now_ms,
                    price=price,
                    avg_cost=cost,
                    cost_source="trades",
                )
            )
        return out

    def history(self, now_ms: int, days: int = HISTORY_DAYS) -> list[Event]:
        """The buys behind the holdings and a daily snapshot for each past day (fixed keys: a restart adds none)."""
        today = now_ms - now_ms % DAY_MS
        out: list[Event] = []
        for i, (a, (qty, cost, _)) in enumerate(ACCOUNT.items()):
            ts = today - (days + 1) * DAY_MS + i * 3_600_000
            out.append(
                Trade(
                    source="binance",
                    trade_id=f"b-{a.lower()}-1",
                    symbol=f"{a}/USDT",
                    side="buy",
                    price=cost,
                    amount=qty,
                    cost=round(qty * cost, 8),
                    ts=ts,
                    fee=round(qty * cost * 0.001, 8),
                    fee_currency="USDT",
                    taker_or_maker="taker",
                )
            )
        invested = sum(q * c for q, c, _ in ACCOUNT.values())
        rnd = random.Random(7)  # the same past on every start
        value = invested * 1.18
        for k in range(days, 0, -1):
            value *= math.exp(rnd.gauss(0.002, 0.02))
            out.append(self._snapshot(today - k * DAY_MS, value, invested))
        return out

    def snapshot_today(self, now_ms: int) -> Snapshot:
        """Today's snapshot of site B at the current prices."""
        value = sum(q * self.prices[a] for a, (q, _, _) in ACCOUNT.items())
        invested = sum(q * c for q, c, _ in ACCOUNT.values())
        return self._snapshot(now_ms - now_ms % DAY_MS, value, invested, taken_at=now_ms)

    def _snapshot(self, day_ms: int, value: float, cost: float, taken_at: int | None = None) -> Snapshot:
        day = datetime.fromtimestamp(day_ms / 1000, UTC).date()
        return Snapshot(
            date=day.isoformat(),
            base_currency="USDT",
            total_value=round(value, 2),
            total_cost=round(cost, 2),
            total_pnl=round(value - cost, 2),
            pnl_pct=round((value - cost) / cost * 100.0, 4),
            asset_count=len(ACCOUNT),
            taken_at=taken_at if taken_at is not None else day_ms + DAY_MS - 1,
            command_id="demo-site-b",
            by_currency={"USDT": round(value, 2)},
        )

    def lines(self, now_ms: int) -> dict[str, bytes]:
        """One JSON line for each registry feed of site B."""
        when = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="seconds")
        coins = [
            {
                "symbol": a,
                "price": p,
                "change_pct": round((p / self.opened[a] - 1.0) * 100.0, 4),
            }
            for a, p in self.prices.items()
        ]
        fg = round(self.fear_greed)
        label = (
            "Extreme Fear"
            if fg < 25
            else "Fear"
            if fg < 45
            else "Neutral"
            if fg <= 55
            else "Greed"
            if fg < 75
            else "Extreme Greed"
        )
        return {
            "BPT001": _enc.encode({"ts": now_ms, "time": when, "quote": "USDT", "coins": coins}) + b"\n",
            "BFG001": _enc.encode(
                {"value": str(fg), "value_classification": label, "timestamp": str(now_ms // 1000)}
            )
            + b"\n",
        }


def _append(files: Mapping[Path, bytes]) -> None:
    for path, line in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as f:  # one write of a whole line: the tail never sees half a record
            f.write(line)


async def generate(
    gw: Gateway, data_dir: Path, *, every: float = 5.0, holdings_every: float = 30.0, seed: int = 2
) -> None:
    """Feed site B for ever: registry lines every `every` s, prices and holdings every `holdings_every` s."""
    gen = Generator(seed)
    now = int(time.time() * 1000)
    await gw.ingest([*gen.history(now), *gen.market(now), gen.snapshot_today(now)])
    files = {ep.code: data_dir / str(ep.data_file) for ep in site_b_endpoints(data_dir)}
    last_market = time.monotonic()
    day = now // DAY_MS
    while True:
        try:
            gen.walk()
            now = int(time.time() * 1000)
            lines = gen.lines(now)
            await asyncio.to_thread(_append, {files[c]: line for c, line in lines.items()})
            if time.monotonic() - last_market >= holdings_every:
                last_market = time.monotonic()
                batch = gen.market(now)
                if now // DAY_MS != day:  # a new day: site B takes its daily snapshot
                    day = now // DAY_MS
                    batch.append(gen.snapshot_today(now))
                await gw.ingest(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a full disk must not end the demo; the next step tries again
            log.warning("demo site B: generating records failed (will retry): %s", exc)
        await asyncio.sleep(every)


@dataclass
class SiteB:
    """The running site B: its URL, sender token and gateway."""

    site_id: str
    url: str
    token: str
    data_dir: Path
    gateway: Gateway
    running: Running

    def receiver_overrides(self, sync_interval: float = 20.0) -> dict[str, Any]:
        """`sync_gateway.receiver` settings of a site that pulls site B automatically."""
        return {
            "enabled": True,
            "remote_url": self.url,
            "auth_token": self.token,
            "auto_sync": True,
            "sync_interval": sync_interval,
        }


@contextlib.asynccontextmanager
async def run_site_b(
    data_dir: Path,
    *,
    site_id: str = SITE_B_ID,
    host: str = "127.0.0.1",
    port: int = 0,
    every: float = 5.0,
    holdings_every: float = 30.0,
) -> AsyncIterator[SiteB]:
    """Serve site B's gateway and feed it until the block ends (stops within a few seconds)."""
    token = await asyncio.to_thread(sender_token, data_dir)
    conf = SyncGatewayConf(host=host, port=port, site_id=site_id, sender=SenderConf(auth_token=Secret(token)))
    gw = Gateway(
        GatewayOptions(
            data_dir=data_dir, site_id=site_id, conf=conf, extra_endpoints=site_b_endpoints(data_dir)
        )
    )
    running = await start_server(server_config(create_app(gw), host, port))
    feeder = asyncio.create_task(
        generate(gw, data_dir, every=every, holdings_every=holdings_every), name="demo-site-b"
    )
    try:
        yield SiteB(site_id, running.url, token, data_dir, gw, running)
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder
        await stop_server(running, 4.0)

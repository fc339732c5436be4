"""The gateway's port serves gateway metrics only; portfolio and per-asset values only on metrics.port."""

from __future__ import annotations

import time
from typing import Any

import httpx
from assetsync import events as ev
from assetsync.embedded import EmbeddedNats, free_port
from assetsync.stack import Stack
from assetsync_sync_gateway.service import GatewayService

from tests.support import wait_for

PORTFOLIO_SERIES = ("assetsync_holding_value", "assetsync_portfolio_value")


async def test_gateway_metrics_carry_no_portfolio_values(
    nats_server: EmbeddedNats, make_settings: Any
) -> None:
    settings = make_settings(
        {
            "nats": {"url": nats_server.url},
            "metrics": {"port": free_port()},
            "sync_gateway": {"port": 0, "sender": {"rate_limit": 0}},
        }
    )
    t0 = int(time.time() * 1000)
    async with Stack(settings, ["store", "sync-gateway"], scheduling=False, announce=False) as stack:
        assert stack.rt is not None and stack.health_server is not None
        gw = stack.service("sync-gateway")
        assert isinstance(gw, GatewayService)
        gw_url = gw.url
        await stack.rt.publisher.publish_many(
            [
                ev.Holding(
                    source="binance", asset="BTC", quantity=0.5, currency="USDT", as_of=t0, price=60000.0
                ),
                ev.Holding(
                    source="binance", asset="ETH", quantity=2.0, currency="USDT", as_of=t0, price=3000.0
                ),
            ]
        )
        labels = {"asset": "BTC", "currency": "USDT"}
        await wait_for(lambda: stack.metrics.value("assetsync_holding_value", labels) > 0, 20, what="gauges")
        hs = stack.health_server
        async with httpx.AsyncClient() as c:

            async def fed() -> bool:
                r = await c.get(f"{gw_url}/api/data-sync/sender/data/AS001")
                return len(r.json()["records"]) >= 2

            await wait_for(fed, 20, what="holdings in the gateway feed")
            internal = (await c.get(f"http://{hs.host}:{hs.port}/metrics")).text
            public = (await c.get(f"{gw_url}/metrics")).text
    assert 'assetsync_holding_value{asset="BTC",currency="USDT"} 30000.0' in internal
    assert "assetsync_gateway_sender_requests" in internal  # the internal endpoint has everything
    assert "assetsync_gateway_sender_requests" in public and 'code="AS001"' in public
    for name in PORTFOLIO_SERIES:
        assert name not in public, name
    assert "BTC" not in public and "ETH" not in public
    assert not [
        line for line in public.splitlines() if line.startswith("assetsync_") and "gateway" not in line
    ]

"""`assetsync up --demo` end to end: the gateway's catalog lists the seed's 30 codes, each with live records,
and the demo's receiver has pulled site demo-b."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from assetsync.endpoints import SEED_ENDPOINTS

from tests.lifecycle.support import Up
from tests.support import wait_for_sync

SEED = [e.code for e in SEED_ENDPOINTS]


@dataclass
class CatalogState:
    """What the demo gateway serves so far; true once every seed code has a record and site B was pulled."""

    missing: list[str] = field(default_factory=list)  # seed codes not in the catalog
    empty: list[str] = field(default_factory=list)  # in the catalog, but `?latest=1` gives no record
    pulled: int = 0  # records the receiver pulled from site demo-b
    error: str = ""

    def __bool__(self) -> bool:
        return not (self.missing or self.empty or self.error) and self.pulled > 0


def catalog_state(base: str, filled: set[str]) -> CatalogState:
    """One look (a code seen with a record is not asked again: the gateway's rate limit is 600/min)."""
    out = CatalogState()
    try:
        with httpx.Client(base_url=base, timeout=10) as c:
            catalog = c.get("/api/data-sync/sender/catalog").raise_for_status().json()
            codes = {e["code"] for e in catalog["endpoints"]}
            out.missing = [code for code in SEED if code not in codes]
            for code in SEED:
                if code in codes and code not in filled:
                    page = c.get(f"/api/data-sync/sender/data/{code}", params={"latest": "1"})
                    if page.status_code == 200 and page.json()["records"]:
                        filled.add(code)
                    else:
                        out.empty.append(code)
            status = c.get("/api/data-sync/receiver/status").raise_for_status().json()
            if status["remote_site_id"] == "demo-b":
                out.pulled = int(status["total_records"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


@pytest.mark.timeout(360)
def test_up_demo_catalog_serves_every_seed_code_with_records(tmp_path: Path) -> None:
    up = Up(tmp_path, "demo", args=["--demo"])
    try:
        up.start().wait_ready(60)
        site_b = re.search(r"site demo-b (http://127\.0\.0\.1:\d+)", up.out)
        assert site_b is not None, up.out
        base = f"http://127.0.0.1:{up.gateway_port}"
        filled: set[str] = set()
        wait_for_sync(
            lambda: catalog_state(base, filled), 120, interval=3.0, what="every seed code with records"
        )
        # The demo says so itself, once all is up.
        line = wait_for_sync(
            lambda: next((x for x in up.out.splitlines() if "catalog:" in x), ""), 90, interval=0.5
        )
        assert "30 seed codes, 30 with data" in line, line
        assert re.search(r"site demo-b: [1-9]\d* records pulled", up.out), up.out
        # Site B stops with `up`: Ctrl+C exits 0 within 10 s and leaves nothing serving.
        up.signal(signal.SIGINT)
        assert up.wait(10) == 0, up.err[-3000:]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{site_b.group(1)}/healthz", timeout=2)
        assert not up.nats_servers()
    finally:
        up.kill_all()

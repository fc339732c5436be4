"""What the fund collector last published per fund, so a day without a new quote/NAV writes nothing again.

Kept as `<data dir>/state/collector-fund.json`, written atomically after the run's events are published.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgspec
from assetsync.files import atomic_write

log = logging.getLogger("assetsync.collector_fund.seen")


class Published(msgspec.Struct, array_like=True, frozen=True):
    """The facts of one fund's last published holding: quote/NAV time and value, quantity, cost."""

    ts: int
    price: float
    quantity: float | None
    avg_cost: float | None


class SeenState(msgspec.Struct, kw_only=True):
    version: int = 1
    funds: dict[str, Published] = msgspec.field(default_factory=dict)


class SeenFile:
    """Load and save the SeenState at one path (a damaged file only costs one repeated publish)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> SeenState:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=SeenState)
        except FileNotFoundError:
            return SeenState()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad = self.path.with_suffix(".corrupt")
            os.replace(self.path, bad)
            log.warning("fund state %s is unreadable (%s); moved to %s", self.path, exc, bad)
            return SeenState()

    def save(self, state: SeenState) -> None:
        atomic_write(self.path, msgspec.json.encode(state))

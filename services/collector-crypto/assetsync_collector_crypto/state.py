"""The collector's own small state: kline and trade cursors, valued fills, last seen quantities.

Kept as one JSON file under `<data dir>/state/`, written atomically (temp file + rename) after a
sync has published its events, so a crash repeats work (deduplicated downstream) and never skips it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgspec
from assetsync.files import atomic_write

from assetsync_collector_crypto.costbasis import ValuedFill

log = logging.getLogger("assetsync.collector_crypto.state")


class CryptoState(msgspec.Struct, kw_only=True):
    """Everything a sync needs from the previous ones."""

    version: int = 1
    kline_last_open: dict[str, int] = msgspec.field(default_factory=dict)  # "BTC/USDT|1h" -> ms
    trade_cursor: dict[str, int] = msgspec.field(default_factory=dict)  # symbol -> last trade id
    fills: dict[str, list[ValuedFill]] = msgspec.field(default_factory=dict)  # asset -> fills
    quantities: dict[str, float] = msgspec.field(default_factory=dict)  # asset -> last balance
    trades_checked_at: dict[str, int] = msgspec.field(default_factory=dict)  # asset -> ms


class StateFile:
    """Load and save a CryptoState at one path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> CryptoState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return CryptoState()
        try:
            return msgspec.json.decode(data, type=CryptoState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # A damaged state only costs a re-backfill: keep the bad file for inspection and start over.
            bad = self.path.with_suffix(".corrupt")
            os.replace(self.path, bad)
            log.warning(
                "collector state %s is unreadable (%s); moved to %s and starting fresh", self.path, exc, bad
            )
            return CryptoState()

    def save(self, state: CryptoState) -> None:
        atomic_write(self.path, msgspec.json.encode(state))

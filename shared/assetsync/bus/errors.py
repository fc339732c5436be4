"""What the bus raises and the header that carries every event's natural key."""

from __future__ import annotations

MSG_ID = "Nats-Msg-Id"


class BusError(Exception):
    """The bus could not do what was asked (after retries)."""


class PublishError(BusError):
    """Some published events were not acknowledged by JetStream."""


class TransientError(Exception):
    """A handler failure worth retrying later: the batch is nak'ed with backoff."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class HaltError(Exception):
    """The sink itself is broken (e.g. a damaged database): stop consuming and settle nothing, so
    every event stays in the stream for after the repair — never terminated as poison."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def subject_kind(subject: str) -> str:
    """`[prefix.]market.price.v1.binance` -> `market.price` (a low-cardinality metric label)."""
    parts = subject.split(".")
    for i, p in enumerate(parts):
        if p in ("market", "portfolio", "tasks", "ops", "gateway", "store") and i + 1 < len(parts):
            return f"{p}.{parts[i + 1]}"
    return parts[0]

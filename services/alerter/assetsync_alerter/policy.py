"""No storms: one alert per incident, reminders at an interval, one 'recovered' when it clears."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["orange", "red"]
Kind = Literal["alert", "reminder", "recovered", "none"]
_RANK = {"orange": 1, "red": 2}


@dataclass
class Incident:
    """An ongoing problem under one key (e.g. `task:crypto`)."""

    key: str
    level: Level
    first_at: int  # ms
    last_sent: int  # ms
    sent: int = 1
    suppressed: int = 0


@dataclass(frozen=True)
class Decision:
    """What to do about one observation; `commit` it once the card was delivered."""

    kind: Kind
    key: str
    level: Level | None = None
    reminder: int = 0  # 1, 2, ... for reminders
    since: int = 0  # when the incident began (ms)


class AlertPolicy:
    """Dedupes repeats by key; `reminder_ms` between reminders of an unchanged incident."""

    def __init__(self, reminder_minutes: float) -> None:
        self.reminder_ms = int(reminder_minutes * 60_000)
        self.incidents: dict[str, Incident] = {}

    def decide(self, key: str, level: Level | None, now: int) -> Decision:
        """`level` None means healthy. Pure: nothing changes until `commit`."""
        inc = self.incidents.get(key)
        if level is None:
            return Decision("recovered", key, since=inc.first_at) if inc else Decision("none", key)
        if inc is None:
            return Decision("alert", key, level, since=now)
        if _RANK[level] > _RANK[inc.level]:
            return Decision("alert", key, level, since=inc.first_at)  # escalated: say so at once
        if now - inc.last_sent >= self.reminder_ms:
            return Decision("reminder", key, inc.level, reminder=inc.sent, since=inc.first_at)
        return Decision("none", key, level, since=inc.first_at)

    def commit(self, d: Decision, now: int) -> None:
        """Record that the decision's card was sent (or that it was suppressed)."""
        inc = self.incidents.get(d.key)
        if d.kind == "recovered":
            self.incidents.pop(d.key, None)
        elif d.kind == "alert" and d.level is not None:
            if inc is None:
                self.incidents[d.key] = Incident(d.key, d.level, now, now)
            else:
                inc.level, inc.last_sent, inc.sent = d.level, now, inc.sent + 1
        elif d.kind == "reminder" and inc is not None:
            inc.last_sent, inc.sent = now, inc.sent + 1
        elif d.kind == "none" and inc is not None and d.level is not None:
            inc.suppressed += 1

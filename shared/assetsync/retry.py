"""One retry rule for every loop that waits and tries again: capped exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (1-based) = min(cap, base × 2^(n−1)) × uniform(*jitter); give up after `attempts`.

    Jitter spreads retries of many clients that failed together (a NATS restart, a Feishu outage)
    so they do not come back in lockstep. `attempts` counts tries, the first one included.
    """

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 6
    jitter: tuple[float, float] = (0.5, 1.0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        lo, hi = self.jitter
        return float(min(self.cap, self.base * 2 ** max(0, attempt - 1)) * random.uniform(lo, hi))

    def exhausted(self, attempt: int) -> bool:
        """True when try number `attempt` was the last one allowed."""
        return attempt >= self.attempts


@dataclass
class Streak:
    """A backoff over consecutive failures that resets once things ran well for `stable_after` seconds."""

    policy: Backoff
    stable_after: float = 30.0
    failures: int = 0

    def fail(self, ran_for: float = 0.0) -> float:
        """Record a failure after `ran_for` seconds of success; the delay before trying again."""
        if ran_for >= self.stable_after:
            self.failures = 0
        self.failures += 1
        return self.policy.delay(self.failures)

    def succeed(self) -> None:
        """Things work again: the next failure starts from the base delay."""
        self.failures = 0

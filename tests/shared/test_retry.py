"""The one backoff rule: growth, cap, jitter bounds, attempt budget, streak reset."""

from __future__ import annotations

import pytest
from assetsync.retry import Backoff, Streak


def test_delay_doubles_up_to_the_cap_within_the_jitter_band() -> None:
    b = Backoff(base=0.5, cap=4.0, jitter=(0.5, 1.0))
    for attempt, top in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (30, 4.0)]:
        for _ in range(50):
            assert top * 0.5 <= b.delay(attempt) <= top


def test_no_jitter_is_exact() -> None:
    b = Backoff(base=1.0, cap=30.0, jitter=(1.0, 1.0))
    assert [b.delay(n) for n in (1, 2, 3, 6)] == [1.0, 2.0, 4.0, 30.0]


@pytest.mark.parametrize(("attempts", "last"), [(1, 1), (4, 4)])
def test_exhausted_after_the_allowed_tries(attempts: int, last: int) -> None:
    b = Backoff(attempts=attempts)
    assert not any(b.exhausted(n) for n in range(1, last))
    assert b.exhausted(last)


def test_streak_grows_and_resets_after_a_stable_run() -> None:
    s = Streak(Backoff(base=1.0, cap=8.0, jitter=(1.0, 1.0)), stable_after=10.0)
    assert [s.fail(), s.fail(), s.fail(), s.fail(), s.fail()] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert s.fail(ran_for=10.0) == 1.0  # ran long enough: a fresh start
    s.fail()
    s.succeed()
    assert s.fail() == 1.0

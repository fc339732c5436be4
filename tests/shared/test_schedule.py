"""Cron parsing (the seed's `hour`/`minute` forms) and next-slot arithmetic, including DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from assetsync.schedule import Cron

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("hour", "minute", "hours", "minutes"),
    [
        ("*", 0, tuple(range(24)), (0,)),  # crypto_sync: every hour on the hour
        (9, 0, (9,), (0,)),  # fund_sync: 09:00
        ("*", "*/15", tuple(range(24)), (0, 15, 30, 45)),  # the seed's crypto_sync_15min
        ("9-11", "0,30", (9, 10, 11), (0, 30)),
        ("1,5-6,23", "59", (1, 5, 6, 23), (59,)),
        ("*/6", "*/20", (0, 6, 12, 18), (0, 20, 40)),
        (" 7 ", " 5 ", (7,), (5,)),
        ("3,3,1", 0, (1, 3), (0,)),  # duplicates collapse, values sorted
    ],
)
def test_parse_accepts_the_seed_forms(
    hour: str | int, minute: str | int, hours: tuple[int, ...], minutes: tuple[int, ...]
) -> None:
    cron = Cron.parse(hour, minute, "Asia/Shanghai")
    assert (cron.hours, cron.minutes) == (hours, minutes)
    assert cron.tz == SH


@pytest.mark.parametrize(
    ("hour", "minute", "field", "problem"),
    [
        (24, 0, "hour", "out of range"),
        (0, 60, "minute", "out of range"),
        ("5-2", 0, "hour", "out of range"),
        ("*/0", 0, "hour", "step must be positive"),
        ("every", 0, "hour", "is not a number"),
        ("1,,2", 0, "hour", "is not a number"),
        (0, "-5", "minute", "is not a number"),
    ],
)
def test_parse_rejects_nonsense_naming_the_field(
    hour: str | int, minute: str | int, field: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        Cron.parse(hour, minute)
    assert str(err.value).startswith(f"{field}:")


def test_next_after_is_strictly_after() -> None:
    cron = Cron.parse(9, 0, SH)
    at_nine = datetime(2026, 11, 20, 9, 0, tzinfo=SH)
    assert cron.next_after(at_nine - timedelta(microseconds=1)) == at_nine
    assert cron.next_after(at_nine) == datetime(2026, 11, 21, 9, 0, tzinfo=SH)


def test_next_after_walks_the_slots_of_a_day_and_wraps() -> None:
    cron = Cron.parse("*", "*/15", SH)
    moment = datetime(2026, 11, 22, 23, 31, tzinfo=SH)
    got = []
    for _ in range(3):
        moment = cron.next_after(moment)
        got.append(moment)
    assert got == [
        datetime(2026, 11, 22, 23, 45, tzinfo=SH),
        datetime(2026, 11, 23, 0, 0, tzinfo=SH),
        datetime(2026, 11, 23, 0, 15, tzinfo=SH),
    ]


def test_next_after_month_and_year_ends() -> None:
    cron = Cron.parse(0, 0, SH)
    assert cron.next_after(datetime(2026, 12, 31, 0, 1, tzinfo=SH)) == datetime(2027, 1, 1, 0, 0, tzinfo=SH)
    assert cron.next_after(datetime(2028, 2, 28, 12, 0, tzinfo=SH)) == datetime(2028, 2, 29, 0, 0, tzinfo=SH)


def test_slots_are_in_the_configured_timezone_whatever_the_input_zone() -> None:
    cron = Cron.parse(9, 0, SH)
    # 00:30 UTC is 08:30 in Shanghai: the slot is half an hour later, the same Shanghai day.
    nxt = cron.next_after(datetime(2026, 11, 20, 0, 30, tzinfo=UTC))
    assert nxt == datetime(2026, 11, 20, 9, 0, tzinfo=SH)
    assert nxt.utcoffset() == timedelta(hours=8)
    # 01:30 UTC is 09:30 in Shanghai: today's slot has passed.
    assert cron.next_after(datetime(2026, 11, 20, 1, 30, tzinfo=UTC)) == datetime(
        2026, 11, 21, 9, 0, tzinfo=SH
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        Cron.parse(9, 0).next_after(datetime(2026, 11, 20, 8, 0))


def test_a_slot_in_the_spring_forward_gap_runs_once_at_a_real_instant() -> None:
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29: the 02:30 job runs at 03:30 CEST, once.
    cron = Cron.parse(2, 30, BERLIN)
    slot = cron.next_after(datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN))
    assert slot.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert cron.next_after(slot).astimezone(UTC) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_hourly_across_spring_forward_has_no_duplicate_instant() -> None:
    cron = Cron.parse("*", 0, BERLIN)
    moment = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    instants = []
    for _ in range(4):
        moment = cron.next_after(moment)
        instants.append(moment.astimezone(UTC))
    assert instants == [datetime(2026, 3, 29, h, 0, tzinfo=UTC) for h in range(4)]


def test_hourly_across_fall_back_keeps_moving_forward() -> None:
    # 2026-10-25: Berlin repeats 02:00-03:00. Each wall-clock slot runs once, always later in real time.
    cron = Cron.parse("*", 0, BERLIN)
    moment = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)
    instants = []
    for _ in range(5):
        moment = cron.next_after(moment)
        instants.append(moment.astimezone(UTC))
    assert instants == sorted(set(instants))
    walls = [i.astimezone(BERLIN).strftime("%H:%M") for i in instants]
    assert walls == ["01:00", "02:00", "03:00", "04:00", "05:00"]


def test_daily_slot_on_the_fall_back_day_runs_once() -> None:
    cron = Cron.parse(2, 30, BERLIN)
    first = cron.next_after(datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN))
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    assert cron.next_after(first).date().isoformat() == "2026-10-26"

"""Schedules (registry/cron.py): crontab(5)'s and croniter's documented examples as a table of known
answers, the refusals with the field they name, then properties: for generated expressions the answer
is strictly after the moment, its fields are in the sets the expression writes (computed here on their
own), no earlier minute fires (a day-by-day search written plainly), an expression refused as never
firing has no day in 400 years, intervals add exactly, and any text is a schedule or a ValueError."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.cron import MAX_SCHEDULE_LENGTH, CronSchedule, IntervalSchedule, parse_schedule
from tests.fuzz.conftest import fuzz_light as fuzz
from tests.fuzz.strategies import any_text, near


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (expression, moment in UTC, the next firing); 2026-12-07 is a Monday.
KNOWN = [
    ("0 9 * * mon-fri", "2026-12-11T09:00", "2026-12-14T09:00"),  # Friday 09:00 itself is not after it
    ("0 9 * * mon-fri", "2026-12-11T08:59:59.999", "2026-12-11T09:00"),
    ("0 9 * * MON-FRI", "2026-12-12T12:00", "2026-12-14T09:00"),
    ("0 9 * * 1-5", "2026-12-07T09:00:01", "2026-12-08T09:00"),
    ("*/15 * * * *", "2026-12-07T10:14:59", "2026-12-07T10:15"),
    ("*/15 * * * *", "2026-12-07T10:15", "2026-12-07T10:30"),
    ("*/15 * * * *", "2026-12-31T23:59", "2027-01-01T00:00"),
    ("* * * * *", "2026-12-07T10:15:30", "2026-12-07T10:16"),
    ("0 0 1 * *", "2026-01-31T12:00", "2026-02-01T00:00"),
    ("0 0 1 * *", "2026-12-01T00:00", "2027-01-01T00:00"),
    ("0 0 31 * *", "2026-04-15T00:00", "2026-05-31T00:00"),  # April has no 31st
    ("0 0 29 2 *", "2024-02-29T00:00", "2028-02-29T00:00"),
    ("0 0 29 2 *", "2025-01-01T00:00", "2028-02-29T00:00"),
    ("0 0 29 2 *", "2096-03-01T00:00", "2104-02-29T00:00"),  # 2100 is no leap year
    ("0 0 29 feb */7", "2026-01-01T00:00", "2032-02-29T00:00"),  # day-of-week starred: both must hold (Sunday)
    ("59 23 31 12 *", "2026-12-31T23:59", "2027-12-31T23:59"),
    ("0 0 1 * mon", "2026-12-08T00:00", "2026-12-14T00:00"),  # both restricted: the 1st or a Monday
    ("0 0 30 feb mon", "2026-12-07T00:00", "2027-02-01T00:00"),  # no February 30th, but Mondays
    ("0 0 1 * mon", "2026-12-29T00:00", "2027-01-01T00:00"),
    ("0 0 */2 * mon", "2026-12-07T00:00", "2026-12-21T00:00"),  # day-of-month starred: odd days that are Mondays
    ("5 4 * * sun", "2026-12-07T00:00", "2026-12-13T04:05"),
    ("30 2 * * 7", "2026-12-07T00:00", "2026-12-13T02:30"),  # 7 is Sunday too
    ("0 0 * * sat,SUN", "2026-12-07T00:00", "2026-12-12T00:00"),
    ("0 0-23/6 * * *", "2026-12-07T07:00", "2026-12-07T12:00"),
    ("1-5/2,30 * * * *", "2026-12-07T07:03", "2026-12-07T07:05"),
    ("1-5/2,30 * * * *", "2026-12-07T07:05", "2026-12-07T07:30"),
    ("1-5/2,30 * * * *", "2026-12-07T07:30", "2026-12-07T08:01"),
    ("0 12 * jan,jul *", "2026-12-07T00:00", "2027-01-01T12:00"),
    ("0 12 1 jun-aug *", "2026-08-01T12:00", "2027-06-01T12:00"),
    ("0 22 * * 1-5", "2026-12-11T22:00", "2026-12-14T22:00"),
    ("23 0-20/2 * * *", "2026-12-07T20:23", "2026-12-08T00:23"),
    ("@hourly", "2026-12-07T10:00", "2026-12-07T11:00"),
    ("@daily", "2026-12-07T10:00", "2026-12-08T00:00"),
    ("@midnight", "2026-12-07T00:00", "2026-12-08T00:00"),
    ("@weekly", "2026-12-13T00:00", "2026-12-20T00:00"),
    ("@monthly", "2026-12-07T10:00", "2027-01-01T00:00"),
    ("@yearly", "2026-01-01T00:00", "2027-01-01T00:00"),
    ("@ANNUALLY", "2026-06-01T00:00", "2027-01-01T00:00"),
    ("  0   9 * *   mon-fri ", "2026-12-11T09:00", "2026-12-14T09:00"),
]


@pytest.mark.parametrize(("expression", "moment", "expected"), KNOWN)
def test_known_answers(expression: str, moment: str, expected: str) -> None:
    schedule = parse_schedule(expression)
    assert isinstance(schedule, CronSchedule)
    answer = schedule.next_after(utc(moment))
    assert answer == utc(expected) and answer.tzinfo is UTC
    assert schedule.fires_at(answer)


def test_cron_is_evaluated_in_utc() -> None:
    schedule = parse_schedule("0 9 * * *")
    berlin_winter = timezone(timedelta(hours=1))
    assert schedule.next_after(datetime(2026, 12, 7, 9, 30, tzinfo=berlin_winter)) == utc("2026-12-07T09:00")
    assert schedule.next_after(datetime(2026, 12, 7, 10, 30, tzinfo=berlin_winter)) == utc("2026-12-08T09:00")


@pytest.mark.parametrize(("text", "seconds"), [
    ("every 30s", 30), ("every 5m", 300), ("every 2h", 7200), ("every 1d", 86400), ("every 1s", 1),
    ("EVERY 1H", 3600), ("every 90 m", 5400), ("every 366d", 366 * 86400), ("every 0090s", 90),
])
def test_intervals(text: str, seconds: int) -> None:
    schedule = parse_schedule(text)
    assert isinstance(schedule, IntervalSchedule) and schedule.interval == timedelta(seconds=seconds)
    moment = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)
    assert schedule.next_after(moment) == moment + timedelta(seconds=seconds)


def test_intervals_are_elapsed_time_across_a_clock_change() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    before = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)  # clocks go from 02:00 to 03:00 that night
    answer = parse_schedule("every 1h").next_after(before)
    assert answer - before == timedelta(hours=1) and answer == utc("2026-03-29T01:30")


@pytest.mark.parametrize(("text", "named"), [
    ("", "empty"), ("   ", "empty"), ("* * * *", "5 fields"), ("* * * * * *", "5 fields"),
    ("60 * * * *", "minute field '60'"), ("* 24 * * *", "hour field '24'"), ("* * 0 * *", "day-of-month field '0'"),
    ("* * 32 * *", "day-of-month field '32'"), ("* * * 13 *", "month field '13'"), ("* * * 0 *", "month field '0'"),
    ("* * * * 8", "day-of-week field '8'"), ("*/0 * * * *", "minute field '*/0'"), ("5/10 * * * *", "minute field '5/10'"),
    ("* * * * fri-mon", "day-of-week field 'fri-mon'"), ("* * * * mon-", "day-of-week field 'mon-'"),
    ("1,,2 * * * *", "minute field ''"), ("* * * foo *", "month field 'foo'"), ("* * * * monday", "day-of-week field"),
    ("mon * * * *", "minute field 'mon'"), ("* * * jan-sun *", "month field 'jan-sun'"), ("-1 * * * *", "minute field"),
    ("*/x * * * *", "minute field '*/x'"), ("*/100 * * * *", "minute field"), ("* * * * ٣", "day-of-week field '٣'"),
    ("1-2-3 * * * *", "minute field '1-2-3'"), ("*-5 * * * *", "minute field"), ("? * * * *", "minute field '?'"),
    ("0 0 30 2 *", "never fires"), ("0 0 31 4,6,9,11 *", "never fires"), ("0 0 30-31 feb *", "never fires"),
    ("@reboot", "not a macro"), ("@daily 5", "not a macro"), ("@", "not a macro"),
    ("30", "no unit"), ("every", "unit"), ("every 5", "unit"), ("every 5w", "unit"), ("every -5m", "unit"),
    ("every 1.5h", "unit"), ("every 0s", "from 1s"), ("every 367d", "from 1s"), ("every ５m", "unit"),
    ("0" * (MAX_SCHEDULE_LENGTH + 1), "longer than"),
])
def test_bad_schedules_name_the_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="^schedule: ") as caught:
        parse_schedule(text)
    assert named in str(caught.value) and "\n" not in str(caught.value)


def test_moments_must_be_aware() -> None:
    for text in ("* * * * *", "every 1m"):
        with pytest.raises(ValueError, match="aware"):
            parse_schedule(text).next_after(datetime(2026, 12, 7))


def test_the_end_of_time_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="10000"):
        parse_schedule("* * * * *").next_after(datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
    with pytest.raises(ValueError):
        parse_schedule("0 0 1 1 *").next_after(datetime(9999, 6, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="10000"):
        parse_schedule("every 2d").next_after(datetime(9999, 12, 31, tzinfo=UTC))


def test_rare_expressions_end_fast() -> None:
    # Feb 29 on a Sunday (day-of-week starred, so both must hold): 28 years apart, and longer across 2100.
    schedule = parse_schedule("59 23 29 2 */7")
    moment = utc("2033-01-01T00:00")
    for _ in range(20):
        moment = schedule.next_after(moment)
        assert (moment.month, moment.day, moment.weekday()) == (2, 29, 6)
    assert moment.year > 2400


# --- properties ---------------------------------------------------------------------------------------------

BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def spelled(index: int, value: int, by_name: bool) -> str:
    if by_name and index == 3:
        return MONTH_NAMES[value - 1]
    if by_name and index == 4 and value < 7:
        return DAY_NAMES[value]
    return str(value)


@st.composite
def field(draw: st.DrawFn, index: int) -> tuple[str, set[int]]:
    """A field's text and the values it means, worked out here without the module."""
    low, high = BOUNDS[index]
    # The ends of months and the short months now and then: where "never fires" is decided.
    edges = {2: [29, 30, 31], 3: [2, 4, 6, 9, 11]}.get(index, [low, high])
    values = st.one_of(st.integers(low, high), st.sampled_from(edges))
    kind = draw(st.sampled_from(["*", "*/n", "list", "list"]))
    if kind == "*":
        return "*", set(range(low, high + 1))
    if kind == "*/n":
        step = draw(st.integers(1, high + 2))
        return f"*/{step}", set(range(low, high + 1, step))
    items, meant = [], set()
    for _ in range(draw(st.integers(1, 3))):
        first = draw(values)
        name = draw(st.booleans())
        if draw(st.booleans()):
            items.append(spelled(index, first, name))
            meant.add(first)
            continue
        last = draw(st.one_of(st.integers(first, high), st.sampled_from([v for v in edges if v >= first] or [first])))
        step = draw(st.integers(1, 9))
        text = f"{spelled(index, first, name)}-{spelled(index, last, name)}"
        items.append(text if step == 1 and draw(st.booleans()) else f"{text}/{step}")
        meant.update(range(first, last + 1, step))
    return ",".join(items), meant


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, list[set[int]], bool]:
    """(expression, the five sets with Sunday as 0, whether a day must match both day fields)."""
    fields = [draw(field(index)) for index in range(5)]
    sets = [values for _, values in fields]
    sets[4] = {day % 7 for day in sets[4]}
    both = fields[2][0].startswith("*") or fields[4][0].startswith("*")
    return " ".join(text for text, _ in fields), sets, both


MOMENTS = st.builds(lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone),
                    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2500, 1, 1)),
                    st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]))


def day_fires(sets: list[set[int]], both: bool, day: date) -> bool:
    in_days, in_weekdays = day.day in sets[2], day.isoweekday() % 7 in sets[4]
    return day.month in sets[3] and ((in_days and in_weekdays) if both else (in_days or in_weekdays))


def plain_next(sets: list[set[int]], both: bool, moment: datetime, limit: date) -> datetime | None:
    """Day by day from the moment's day, the day's firings in order: the first one after the moment."""
    day = moment.astimezone(UTC).date()
    while day <= limit:
        if day_fires(sets, both, day):
            for hour in sorted(sets[1]):
                for minute in sorted(sets[0]):
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if candidate > moment:
                        return candidate
        day += timedelta(days=1)
    return None


@fuzz
@given(expressions(), MOMENTS)
def test_next_after_is_the_first_firing(expression: tuple[str, list[set[int]], bool], moment: datetime) -> None:
    text, sets, both = expression
    try:
        schedule = parse_schedule(text)
    except ValueError as exc:
        assert "never fires" in str(exc), exc
        start = date(2001, 1, 1)  # 400 years hold every calendar there is
        assert plain_next(sets, both, datetime(2000, 12, 31, tzinfo=UTC), start.replace(year=2401)) is None
        return
    answer = schedule.next_after(moment)
    assert answer > moment and answer.tzinfo is UTC and answer.second == answer.microsecond == 0
    assert answer.minute in sets[0] and answer.hour in sets[1] and day_fires(sets, both, answer.date())
    assert plain_next(sets, both, moment, answer.date()) == answer


@fuzz
@given(st.integers(1, 10**6), st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]), MOMENTS,
       st.sampled_from(["", " "]))
def test_intervals_add_exactly(number: int, unit: tuple[str, int], moment: datetime, space: str) -> None:
    letter, seconds = unit
    text = f"every {number}{space}{letter}"
    if number * seconds > 366 * 86400:
        with pytest.raises(ValueError, match="from 1s"):
            parse_schedule(text)
        return
    answer = parse_schedule(text).next_after(moment)
    assert answer - moment == timedelta(seconds=number * seconds) and answer.tzinfo is UTC


VALID_TEXT = st.one_of(expressions().map(lambda e: e[0]),
                       st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "every 30s", "every 2h"]))


@fuzz
@given(near(VALID_TEXT))
def test_any_text_is_a_schedule_or_value_error(text: str) -> None:
    try:
        schedule = parse_schedule(text)
    except ValueError as exc:
        assert str(exc).startswith("schedule: ") and "\n" not in str(exc)
        return
    schedule.next_after(datetime(2026, 12, 7, tzinfo=UTC))


@fuzz
@given(any_text(300))
def test_any_text_at_all(text: str) -> None:
    try:
        parse_schedule(text)
    except ValueError:
        pass


def test_weekday_numbering_matches_calendar() -> None:
    # The table above counts on 2026-12-07 being a Monday; cron's day-of-week 1.
    assert calendar.weekday(2026, 12, 7) == calendar.MONDAY

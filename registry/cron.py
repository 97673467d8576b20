"""Schedules for replication rules: a cron expression, a cron macro, or a fixed interval.

- Cron: five fields, `minute hour day-of-month month day-of-week`, evaluated in UTC. Each field is a
  comma-separated list of `*`, `N`, `A-B`, `*/S` or `A-B/S` (ranges inclusive, steps from the range's
  start). Months may be written `jan`-`dec` and days `sun`-`sat`, in any case, in ranges too
  (`mon-fri`); day-of-week 0 and 7 are both Sunday. Refused: `A/S` (write `A-59/S`), backward ranges
  (`fri-mon`), step 0, values out of the field's bounds.
- Day-of-month and day-of-week, as crontab(5) has them: when both are restricted (neither starts
  with `*`) a day matching either fires (`0 0 1 * mon`: the 1st and every Monday); otherwise a day
  must match both (`0 0 */2 * mon`: odd-numbered days that are Mondays).
- Macros: `@hourly`, `@daily` and `@midnight`, `@weekly` (Sunday 00:00), `@monthly`, `@yearly` and
  `@annually`. `@reboot` is no schedule here.
- Intervals: `every N` and a unit, `s`, `m`, `h` or `d` (`every 30s`, `every 2h`), from 1 second to
  MAX_INTERVAL; the next firing is the moment plus the interval, in elapsed time (UTC). A bare number
  is refused: seconds or minutes would be a guess.

An expression that can never fire is refused when parsed (`0 0 30 2 *`, `0 0 31 4,6 *`): the only
such expressions restrict day-of-month alone to days its months do not have. `0 0 29 2 *` fires in
leap years. `next_after` searches at most the Gregorian calendar's 400-year cycle, so it always ends;
it raises ValueError only past the year 9999.

ValueError messages name the field and the bad part; they come from configuration files and the
admin API, and are one line.
"""

from __future__ import annotations

import bisect
import calendar
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from registry.numbers import ascii_decimal

MAX_SCHEDULE_LENGTH = 256
MAX_INTERVAL = timedelta(days=366)  # longer is more likely a typo than a plan
SEARCH_YEARS = 400  # the Gregorian calendar repeats itself (weekdays included) every 400 years

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES: tuple[dict[str, int], ...] = ({}, {}, {}, {name: i + 1 for i, name in enumerate(_MONTHS)},
                                      {name: i for i, name in enumerate(_DAYS)})
_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
           "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February in a leap year


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("schedule: the moment must be an aware datetime (UTC)")
    return moment.astimezone(UTC)


class Schedule(ABC):
    text: str

    @abstractmethod
    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment` (an aware datetime), in UTC."""


@dataclass(frozen=True)
class IntervalSchedule(Schedule):
    text: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        # In UTC: an aware datetime plus a timedelta moves its wall clock, which across a daylight
        # saving change in its own zone is not the elapsed time.
        try:
            return _utc(moment) + self.interval
        except OverflowError:
            raise ValueError("schedule: no firing before the year 10000") from None


@dataclass(frozen=True)
class CronSchedule(Schedule):
    text: str
    minutes: tuple[int, ...]  # each sorted, without repeats
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 is Sunday; a 7 written is stored as 0
    days_starred: bool  # the day-of-month field starts with `*`
    weekdays_starred: bool

    def day_fires(self, year: int, month: int, day: int) -> bool:
        """Whether the schedule fires on that day (crontab(5)'s rule on the two day fields)."""
        in_days = day in self.days
        in_weekdays = (calendar.weekday(year, month, day) + 1) % 7 in self.weekdays  # Monday 0 -> 1
        if self.days_starred or self.weekdays_starred:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def fires_at(self, moment: datetime) -> bool:
        """Whether the schedule fires in the minute of `moment` (aware; seconds ignored)."""
        at = _utc(moment)
        return (at.minute in self.minutes and at.hour in self.hours and at.month in self.months
                and self.day_fires(at.year, at.month, at.day))

    def next_after(self, moment: datetime) -> datetime:
        at = _utc(moment)
        try:
            start = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
        except OverflowError:
            raise ValueError("schedule: no firing before the year 10000") from None
        for year in range(start.year, min(start.year + SEARCH_YEARS, 9999) + 1):
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                first = start.day if (year, month) == (start.year, start.month) else 1
                for day in range(first, calendar.monthrange(year, month)[1] + 1):
                    if not self.day_fires(year, month, day):
                        continue
                    found = self._time_on(year, month, day, start)
                    if found is not None:
                        return found
        raise ValueError(f"schedule: {self.text!r} does not fire after {at.isoformat()}")

    def _time_on(self, year: int, month: int, day: int, start: datetime) -> datetime | None:
        """The first firing minute on that day not before `start`, or None."""
        same_day = (year, month, day) == (start.year, start.month, start.day)
        for hour in self.hours[bisect.bisect_left(self.hours, start.hour) if same_day else 0:]:
            same_hour = same_day and hour == start.hour
            at = bisect.bisect_left(self.minutes, start.minute) if same_hour else 0
            if at < len(self.minutes):
                return datetime(year, month, day, hour, self.minutes[at], tzinfo=UTC)
        return None


def _bad(field: str, part: str, why: str) -> ValueError:
    return ValueError(f"schedule: {field} field {part!r} {why}")


def _value(text: str, index: int, part: str) -> int:
    low, high = _BOUNDS[index]
    named = _NAMES[index].get(text.lower())
    number = named if named is not None else ascii_decimal(text, 2)
    if number is None:
        names = " or a name (jan-dec)" if index == 3 else " or a name (sun-sat)" if index == 4 else ""
        raise _bad(FIELDS[index], part, f"is not a number{names}")
    if not low <= number <= high:
        raise _bad(FIELDS[index], part, f"is out of range {low}-{high}")
    return number


def _field(text: str, index: int) -> set[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        span, slash, step_text = part.partition("/")
        step = 1
        if slash:
            parsed = ascii_decimal(step_text, 2)
            if parsed is None or parsed == 0:
                raise _bad(FIELDS[index], part, "has a step that is not a number from 1 to 99")
            step = parsed
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first, last = _value(first_text, index, part), _value(last_text, index, part)
            if first > last:
                raise _bad(FIELDS[index], part, "runs backwards")
        elif slash:
            raise _bad(FIELDS[index], part, "has a step on a single value (write a range: A-B/S)")
        else:
            first = last = _value(span, index, part)
        values.update(range(first, last + 1, step))
    return values


def _never_fires(days: set[int], months: set[int], weekdays_starred: bool) -> bool:
    """True when a day must be in `days` and none of them exists in any of the months. With day-of-week
    restricted too, either field will do, and every month has every day of the week. A day of a month
    that exists at all comes round on each day of the week within the 400-year cycle (Feb 29 too), so
    starred day-of-week steps (`*/2`) cannot make an expression impossible; a starred day-of-month
    holds day 1."""
    return weekdays_starred and all(day > _LONGEST_DAYS[month - 1] for day in days for month in months)


def _cron(text: str, written: str) -> CronSchedule:
    fields = written.split()
    if len(fields) != 5:
        raise ValueError(f"schedule: {text!r} is not a cron expression of 5 fields ({' '.join(FIELDS)}), "
                         "a macro like @daily, or an interval like 'every 30m'")
    minutes, hours, days, months, weekdays = (_field(part, index) for index, part in enumerate(fields))
    weekdays = {day % 7 for day in weekdays}
    days_starred, weekdays_starred = fields[2].startswith("*"), fields[4].startswith("*")
    if _never_fires(days, months, weekdays_starred):
        raise ValueError(f"schedule: {text!r} never fires: no month it names has the day-of-month {fields[2]!r}")
    return CronSchedule(text, tuple(sorted(minutes)), tuple(sorted(hours)), tuple(sorted(days)), tuple(sorted(months)),
                        tuple(sorted(weekdays)), days_starred=days_starred, weekdays_starred=weekdays_starred)


def _interval(text: str, amount: str) -> IntervalSchedule:
    number = ascii_decimal(amount[:-1], 9)
    unit = _UNITS.get(amount[-1:].lower())
    if number is None or unit is None:
        raise ValueError(f"schedule: {text!r}: write the interval as a number and a unit s, m, h or d (every 30m)")
    interval = timedelta(seconds=number * unit)
    if not timedelta(seconds=1) <= interval <= MAX_INTERVAL:
        raise ValueError(f"schedule: {text!r}: the interval must be from 1s to {MAX_INTERVAL.days}d")
    return IntervalSchedule(text, interval)


def parse_schedule(text: str) -> Schedule:
    """The schedule the text writes (see the module's text); ValueError naming the bad part."""
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise ValueError(f"schedule: longer than {MAX_SCHEDULE_LENGTH} characters")
    words = text.split()
    if not words:
        raise ValueError("schedule: empty")
    if words[0].lower() == "every":
        return _interval(text, "".join(words[1:]))
    if words[0].startswith("@"):
        macro = _MACROS.get(words[0].lower())
        if macro is None or len(words) > 1:
            raise ValueError(f"schedule: {text!r} is not a macro ({', '.join(_MACROS)})")
        return _cron(text, macro)
    if len(words) == 1 and ascii_decimal(words[0], 9) is not None:
        raise ValueError(f"schedule: {text!r} has no unit: write 'every {words[0]}s' or 'every {words[0]}m'")
    return _cron(text, text)

"""Report periods: a week, a month or any range of days, read against the data.

``resolve_period`` turns what a user asks for (``last-week``, ``last-month``, ``YYYY-MM`` or
``FROM:TO``) into a ``Period``; relative periods are read against the data, not the calendar
of the machine. The year-earlier helpers give the same dates a year before, for the
year-over-year comparisons of reports and the overview. Core layer: the settings check a
schedule's period with it, so it imports nothing above core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal

from cs_metrics.core._settings_model import PLAUSIBLE_BOUNDS  # not settings: it imports this
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.zones import UTC_ZONE, to_local

if TYPE_CHECKING:  # only annotated: the settings import this module without a warehouse
    from cs_metrics.core.warehouse import Warehouse

__all__ = [
    "Period",
    "add_months",
    "complete_end",
    "period_between",
    "range_label",
    "resolve_period",
    "year_earlier_day",
    "year_earlier_in_data",
    "year_earlier_range",
]


@dataclass(frozen=True)
class Period:
    """A report's period ``[date_from, date_to)`` on ``created_at`` and the one before it."""

    kind: Literal["week", "month", "range"]
    date_from: date
    date_to: date  # exclusive
    previous_from: date
    previous_to: date  # exclusive; equals date_from
    label: str
    spec: str  # as asked: last-week, last-month, YYYY-MM or FROM:TO

    @property
    def days(self) -> int:
        return (self.date_to - self.date_from).days

    @property
    def slug(self) -> str:
        if self.kind == "week":
            return f"{self.date_from:%G-W%V}"
        if self.kind == "month":
            return f"{self.date_from:%Y-%m}"
        return f"{self.date_from.isoformat()}_{(self.date_to - timedelta(days=1)).isoformat()}"


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def complete_end(wh: Warehouse, tz: str = UTC_ZONE) -> date:
    """The day after the last complete day of data: the last creation day counts when the
    data reaches its final hour (like the seasonality page's daily series). Days are local
    days of the reporting zone ``tz``."""
    span = wh.created_range()
    if span is None:
        raise CsMetricsError(
            f"The warehouse {wh.path} holds no tickets yet; run "
            "`python -m cs_metrics ingest SOURCE` first."
        )
    last = to_local(span[1], tz)
    reached = max(to_local(wh.as_of() or span[1], tz), last)
    if reached >= datetime.combine(last.date(), time(23)):
        return last.date() + timedelta(days=1)
    return last.date()


def year_earlier_day(day: date) -> date | None:
    """The same calendar day one year earlier; 29 February becomes 28 February. None in
    year 1 (no year before it)."""
    if day.year <= 1:
        return None
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def year_earlier_range(date_from: date, date_to: date) -> tuple[date, date] | None:
    """``[date_from, date_to)`` moved back one year: its first and last days (inclusive) each
    become the same calendar day a year earlier (29 February -> 28 February), so a whole
    month stays the whole month and a week keeps its dates. None before year 2."""
    start = year_earlier_day(date_from)
    last = year_earlier_day(date_to - timedelta(days=1))
    if start is None or last is None:
        return None
    return start, last + timedelta(days=1)


def year_earlier_in_data(wh: Warehouse, date_from: date, date_to: date,
                         tz: str = UTC_ZONE) -> tuple[date, date] | None:
    """The year-earlier range of ``[date_from, date_to)`` when the warehouse's tickets reach
    back to its first day (local days of ``tz``); None when they do not (a comparison with
    days before the data starts would read as a drop to nothing)."""
    shifted = year_earlier_range(date_from, date_to)
    span = wh.created_range()
    if shifted is None or span is None or to_local(span[0], tz).date() > shifted[0]:
        return None
    return shifted


def range_label(start: date, end: date) -> str:
    days = (end - start).days
    return (f"{start:%d %b %Y} – {end - timedelta(days=1):%d %b %Y} "
            f"({days} day{'s' if days != 1 else ''})")


def _month_period(start: date, spec: str) -> Period:
    end = add_months(start, 1)
    return Period("month", start, end, add_months(start, -1), start, f"{start:%B %Y}", spec)


def period_between(date_from: date, date_to: date, spec: str | None = None) -> Period:
    """Any ``[date_from, date_to)``; the previous period is as long and ends where it starts."""
    if date_to <= date_from:
        raise CsMetricsError(
            f"The report period must end after it starts; got {date_from} to "
            f"{date_to - timedelta(days=1)}."
        )
    _check_bounds(date_from, date_to - timedelta(days=1), spec)
    length = date_to - date_from
    spec = spec or f"{date_from.isoformat()}:{(date_to - timedelta(days=1)).isoformat()}"
    return Period("range", date_from, date_to, date_from - length, date_from,
                  range_label(date_from, date_to), spec)


def _check_bounds(first: date, last: date, spec: str | None) -> None:
    """A period and the one before it stay countable: the days of PLAUSIBLE_BOUNDS (year
    0001 has no month before it, and pandas holds 1677-2262 only)."""
    lo, hi = PLAUSIBLE_BOUNDS
    if first < lo or last > hi:
        asked = f"--period {spec!r}" if spec else f"The report period {first} to {last}"
        raise CsMetricsError(f"{asked} must lie between {lo} and {hi}.")


def resolve_period(wh: Warehouse, spec: str, tz: str = UTC_ZONE) -> Period:
    """``last-week``, ``last-month``, ``YYYY-MM`` or ``FROM:TO`` -> a Period.

    Relative periods are read against the data, not today: the last complete day of data is
    the last day a ticket was created, if the data reaches that day's final hour (else the
    day before). ``last-week`` is the latest whole Monday–Sunday week up to that day and is
    compared with the week before; ``last-month`` the latest whole calendar month, compared
    with the month before; ``YYYY-MM`` that calendar month (even if the data covers only part
    of it), compared with the month before; ``FROM:TO`` the days from FROM to TO, both
    included (ISO dates), compared with the same number of days just before. Days are
    local days of the reporting zone ``tz``.
    """
    text = (spec or "").strip()
    if text == "last-week":
        end = complete_end(wh, tz)
        end -= timedelta(days=end.weekday())
        start = end - timedelta(days=7)
        label = f"Week {start:%G-W%V}, {range_label(start, end)}"
        return Period("week", start, end, start - timedelta(days=7), start, label, text)
    if text == "last-month":
        end = complete_end(wh, tz).replace(day=1)
        return _month_period(add_months(end, -1), text)
    if re.fullmatch(r"\d{4}-\d{2}", text):
        year, month = int(text[:4]), int(text[5:])
        if not 1 <= month <= 12:
            raise CsMetricsError(f"--period {text!r}: the month must be 01 to 12.")
        _check_bounds(date(max(year, 1), month, 1), date(max(year, 1), month, 1), text)
        return _month_period(date(year, month, 1), text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}:\d{4}-\d{2}-\d{2}", text):
        first, last = text.split(":")
        try:
            start, stop = date.fromisoformat(first), date.fromisoformat(last)
        except ValueError:
            raise CsMetricsError(f"--period {text!r} holds a day that does not exist.") from None
        if stop < start:
            raise CsMetricsError(f"--period {text!r} ends before it starts.")
        _check_bounds(start, stop, text)
        return period_between(start, stop + timedelta(days=1), text)
    raise CsMetricsError(
        f"--period {spec!r} is not a period; use last-week, last-month, a month as YYYY-MM, "
        "or FROM:TO as YYYY-MM-DD:YYYY-MM-DD (both days included)."
    )

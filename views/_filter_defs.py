"""What the sidebar's filters are: the date presets, the dimension filters and their query
parameters, and how a filtered view is described in captions and file names.

No widgets here: the tables, exports and filter widgets all read these.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from cs_metrics import Filters

DATE_PRESETS: tuple[str, ...] = (
    "Last 7 days",
    "Last 30 days",
    "Last 90 days",
    "Quarter to date",
    "Year to date",
    "All time",
    "Custom range",
)


DEFAULT_PRESET = "Last 90 days"
# How a preset reads in a shared link (?range=last-30-days).
PRESET_SLUGS: dict[str, str] = {
    p: p.lower().replace(" ", "-").replace("custom-range", "custom") for p in DATE_PRESETS
}


# The sidebar's dimension filters, in order: (dimension, label). Each is also a query
# parameter of the same name (?channel=chat&channel=email).
FILTER_DIMENSIONS: tuple[tuple[str, str], ...] = (
    ("channel", "Channel"),
    ("priority", "Priority"),
    ("domain", "Domain"),
    ("location", "Location"),
    ("customer_segment", "Customer segment"),
    ("team", "Team"),
    ("rep_name", "Representative"),
    # a ticket matches when it has any of the chosen tags
    ("tag", "Tag"),
)


DATE_PARAMS: tuple[str, ...] = ("range", "from", "to", "tz")


def _preset_window(preset: str, end: date,
                   first: date | None = None) -> tuple[date | None, date | None]:
    """[from, to) for a preset; ``end`` is the exclusive end (the day after the data ends).
    ``first``, the data's first day: a window reaching before it starts there instead (a
    90-day window on a 3-day export is those 3 days, not 87 days of nothing first)."""
    last = end - timedelta(days=1)
    if preset == "Last 7 days":
        start = end - timedelta(days=7)
    elif preset == "Last 30 days":
        start = end - timedelta(days=30)
    elif preset == "Last 90 days":
        start = end - timedelta(days=90)
    elif preset == "Quarter to date":
        start = date(last.year, 3 * ((last.month - 1) // 3) + 1, 1)
    elif preset == "Year to date":
        start = date(last.year, 1, 1)
    else:
        return None, None  # all time
    if first is not None and start < first <= last:
        start = first
    return start, end


def previous_period(filters: Filters) -> Filters | None:
    """The window of the same length just before ``filters`` (None for an open range)."""
    if filters.date_from is None or filters.date_to is None:
        return None
    length = filters.date_to - filters.date_from
    if filters.date_from - date.min < length:
        return None  # a range from the first centuries has no window before it
    return Filters(filters.date_from - length, filters.date_from, filters.where, filters.tz)


def describe_range(filters: Filters) -> str:
    if filters.date_from is None and filters.date_to is None:
        return "All tickets"
    if filters.date_from is None:
        return f"Tickets created before {filters.date_to:%d %b %Y}"
    if filters.date_to is None:
        return f"Tickets created from {filters.date_from:%d %b %Y}"
    last = filters.date_to - timedelta(days=1)
    days = (filters.date_to - filters.date_from).days
    return (
        f"Tickets created {filters.date_from:%d %b %Y} – {last:%d %b %Y} "
        f"({days} day{'s' if days != 1 else ''})"
    )


def describe_filters(filters: Filters) -> str:
    """The date range plus any dimension filters, for a page's caption."""
    labels = dict(FILTER_DIMENSIONS)
    parts = [describe_range(filters)]
    parts += [f"{labels.get(dim, dim)}: {', '.join(values)}" for dim, values in filters.where]
    return " · ".join(parts)


def filters_slug(filters: Filters) -> str:
    """The active filters as a file-name part: ``2024-12-01_2025-02-28_channel-chat+email``."""
    parts = [
        filters.date_from.isoformat() if filters.date_from else "start",
        (filters.date_to - timedelta(days=1)).isoformat() if filters.date_to else "end",
    ]
    parts += [f"{dim}-{'+'.join(values)}" for dim, values in filters.where]
    if filters.tz != "UTC":  # the file's days are local days of this zone
        parts.append(f"tz-{filters.tz}")
    slug = "_".join(re.sub(r"[^A-Za-z0-9+.-]+", "-", part).strip("-") for part in parts)
    return slug[:150]


def no_filters() -> Filters:
    """The empty filter, for file names of tables the sidebar does not filter."""
    return Filters()

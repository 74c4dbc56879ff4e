"""The reporting time zone: storage is UTC, reports read in the team's own zone.

Every timestamp in the warehouse is a naive UTC moment. A reporting zone (settings
``[display] timezone``, the app's sidebar, ``--tz`` on the commands) decides which local day,
week, month and hour of the week a moment belongs to, and where a date range starts and ends:
``--from 2026-03-01 --tz America/New_York`` starts at New York's midnight, 05:00 UTC.

Days follow the wall clock, so a day on which the clocks change is 23 or 25 hours long; an
hourly figure of such a day has one hour fewer (the skipped hour) or counts the repeated
hour twice over, once per pass (both passes fall in the same local hour).
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, available_timezones

if TYPE_CHECKING:
    import pandas as pd

from cs_metrics.core.errors import CsMetricsError

__all__ = ["UTC_ZONE", "check_zone", "local_sql", "local_date_sql", "utc_moment",
           "local_now", "to_local", "local_columns", "zone_names"]

UTC_ZONE = "UTC"


@functools.lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """The IANA zones a reporting zone may be, sorted (UTC first)."""
    names = {n for n in available_timezones() if n != "localtime" and not n.startswith(
        ("posix/", "right/"))}
    names.discard(UTC_ZONE)
    return (UTC_ZONE, *sorted(names))


@functools.lru_cache(maxsize=64)
def _known(tz: str) -> bool:
    return tz in zone_names()


def check_zone(tz: Any, where: str = "the reporting time zone") -> str:
    """``tz`` when it is a known IANA zone name, else a clear error naming ``where``.

    Only names from the zone database pass, so a zone can be written into SQL as a literal:
    they hold letters, digits, ``/``, ``_``, ``+`` and ``-`` only.
    """
    if isinstance(tz, str) and _known(tz):
        return tz
    shown = repr(tz)[:60]
    raise CsMetricsError(
        f"{where} is {shown}, which is not a known time zone; use an IANA name such as "
        '"America/New_York", "Europe/Berlin" or "UTC".'
    )


def _literal(tz: str) -> str:
    check_zone(tz)  # the allowlist: nothing else is ever written into SQL
    return "'" + tz.replace("'", "''") + "'"


def local_sql(column: str, tz: str) -> str:
    """SQL for the naive local wall-clock time in ``tz`` of the naive UTC ``column``."""
    if tz == UTC_ZONE:
        return column
    return f"timezone({_literal(tz)}, timezone('UTC', {column}))"


def local_date_sql(column: str, tz: str, utc_date_column: str | None = None) -> str:
    """SQL for the local calendar day of ``column``; in UTC the stored day column
    ``utc_date_column`` (cheaper to truncate than the timestamp) when there is one."""
    if tz == UTC_ZONE and utc_date_column:
        return utc_date_column
    return f"cast({local_sql(column, tz)} as date)"


def utc_moment(value: date | datetime, tz: str) -> datetime:
    """The naive UTC moment of a local day's midnight (or a naive local time) in ``tz``.

    A midnight the clocks skip (a few zones change at 00:00) is the first moment of the
    day, as the zone database resolves it.
    """
    local = value if isinstance(value, datetime) else datetime.combine(value, time())
    if tz == UTC_ZONE:
        return local.replace(tzinfo=None)
    aware = local.replace(tzinfo=ZoneInfo(tz))
    return aware.astimezone(UTC).replace(tzinfo=None)


def to_local(moment: datetime, tz: str) -> datetime:
    """The naive local wall-clock time in ``tz`` of a naive UTC moment."""
    if tz == UTC_ZONE:
        return moment
    return moment.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def local_now(tz: str) -> datetime:
    """The wall-clock time in ``tz`` now (naive)."""
    return to_local(datetime.now(UTC).replace(tzinfo=None), tz)


def local_columns(df: pd.DataFrame, columns: tuple[str, ...], tz: str) -> pd.DataFrame:
    """``df`` with its naive UTC timestamp ``columns`` as naive local times of ``tz`` (for the
    few rows a page lists; figures convert in SQL)."""
    if tz == UTC_ZONE:
        return df
    import pandas as pd

    out = df.copy()
    for col in columns:
        if col in out.columns:
            out[col] = (pd.to_datetime(out[col]).dt.tz_localize("UTC").dt.tz_convert(tz)
                        .dt.tz_localize(None))
    return out

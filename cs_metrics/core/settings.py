"""Settings: SLA policies, KPI targets, staffing assumptions, alert rules, notification
channels and, for the hosted app, who may see what; from one TOML file merged over the
defaults."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cs_metrics.core._settings_model import (
    ALERT_SEVERITIES,
    DEFAULT_CALENDAR,
    EMAIL_SECURITY,
    IDENTITY_CLAIMS,
    NOTIFICATION_CHANNELS,
    PLAUSIBLE_BOUNDS,
    ROLES,
    SCHEDULE_AUDIENCES,
    SCHEDULE_FORMATS,
    WEEKDAYS,
    AccessSettings,
    AlertSettings,
    BusinessCalendar,
    CsatRule,
    EmailSettings,
    EmergingRule,
    IngestSettings,
    NotificationSettings,
    OutageRule,
    Schedule,
    ServiceLevel,
    Settings,
    SlaPolicy,
    SlaRule,
    StaffingSettings,
    WatchRule,
)
from cs_metrics.core._settings_read import (
    _access,
    _alerts,
    _business_hours,
    _display,
    _fires,
    _ingest,
    _known_zone,
    _notifications,
    _per_priority,
    _policy_calendar,
    _policy_values,
    _Section,
    _segment_labels,
    _staffing,
)
from cs_metrics.core.errors import CsMetricsError

DEFAULT_SETTINGS_FILE = Path(__file__).with_name("default_settings.toml")
SETTINGS_ENV = "CS_METRICS_SETTINGS"

# The value objects live in _settings_model and the section readers in _settings_read; this
# module is where every caller imports them from.
__all__ = [
    "ALERT_SEVERITIES",
    "AccessSettings",
    "AlertSettings",
    "BusinessCalendar",
    "CsatRule",
    "DEFAULT_CALENDAR",
    "DEFAULT_SETTINGS_FILE",
    "EMAIL_SECURITY",
    "EmailSettings",
    "EmergingRule",
    "IDENTITY_CLAIMS",
    "IngestSettings",
    "NOTIFICATION_CHANNELS",
    "NotificationSettings",
    "OutageRule",
    "PLAUSIBLE_BOUNDS",
    "ROLES",
    "SCHEDULE_AUDIENCES",
    "SCHEDULE_FORMATS",
    "SETTINGS_ENV",
    "Schedule",
    "ServiceLevel",
    "Settings",
    "SlaPolicy",
    "SlaRule",
    "StaffingSettings",
    "WEEKDAYS",
    "WatchRule",
    "effective_settings_path",
    "handed_settings",
    "load_settings",
]


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CsMetricsError(f"Settings file {path} does not exist.") from exc
    except UnicodeDecodeError as exc:
        raise CsMetricsError(
            f"Settings file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8 (a TOML file must be UTF-8 text)."
        ) from exc
    except OSError as exc:
        # a folder, or a file this process may not read: said, not a traceback
        raise CsMetricsError(
            f"Settings file {path} cannot be read ({exc.strerror or exc}); pass a readable "
            "UTF-8 text file as settings."
        ) from exc


def _parse_toml(text: str, path: Path) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CsMetricsError(f"Settings file {path} is not valid TOML: {exc}.") from exc


# The settings file of a command handed over to the running app (cs_metrics.ops.jobs): the file
# the command's own process would have read, for the thread that runs it.
_HANDED_SETTINGS: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "handed_settings", default=None)


def effective_settings_path(path: str | Path | None = None) -> str | None:
    """The settings file ``load_settings(path)`` reads, as an absolute path (None for the
    defaults alone)."""
    if path is None:
        path = os.environ.get(SETTINGS_ENV) or (
            "settings.toml" if Path("settings.toml").is_file() else None)
    return None if path is None else str(Path(path).resolve())


@contextlib.contextmanager
def handed_settings(path: str | None) -> Iterator[None]:
    """Within the block, ``load_settings()`` without a path reads ``path`` (None: the
    defaults alone), as the process that handed a command over would have."""
    token = _HANDED_SETTINGS.set(path or "")
    try:
        yield
    finally:
        _HANDED_SETTINGS.reset(token)


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by ``path``, else $CS_METRICS_SETTINGS, else ./settings.toml.

    The files are read on every call (an edited file applies at once); parsing and checking
    them is done once per content: the hosted app asks on every page run."""
    handed = _HANDED_SETTINGS.get()
    if path is None and handed is not None:
        path = handed or None
        if path is None:
            return _settings(_read_text(DEFAULT_SETTINGS_FILE), None)
    if path is None:
        env = os.environ.get(SETTINGS_ENV)
        if env:
            path = env
        elif Path("settings.toml").is_file():
            path = "settings.toml"
    user = None if path is None else (str(path), _read_text(Path(path)))
    return _settings(_read_text(DEFAULT_SETTINGS_FILE), user)


@functools.lru_cache(maxsize=16)
def _settings(defaults: str, user: tuple[str, str] | None) -> Settings:
    """The settings of a defaults text and a user file's (path, text); Settings are frozen,
    so callers can share one."""
    raw = _parse_toml(defaults, DEFAULT_SETTINGS_FILE)
    source = "defaults"
    if user is not None:
        # A user's SLA policy list replaces the default list rather than extending it.
        mine = _parse_toml(user[1], Path(user[0]))
        calendars = raw.get("business_hours", {})
        raw = _merge(raw, mine)
        if isinstance(mine.get("business_hours"), dict) and isinstance(calendars, dict):
            # a user's calendar replaces the default one of that name whole: merged hours
            # would keep a day open that the user left out to close it
            raw["business_hours"] = {**calendars, **mine["business_hours"]}
        source = user[0]
    policies = []
    for i, rule in enumerate(raw.get("sla", {}).get("policies", []), start=1):
        where = f"SLA policy {i} ({rule.get('name', 'unnamed')}) in {source}"
        pri = rule.get("priorities")
        seg = rule.get("segments")
        policies.append(
            SlaPolicy(
                name=str(rule.get("name", f"policy {i}")),
                priorities=tuple(pri) if pri is not None else None,
                segments=tuple(seg) if seg is not None else None,
                first_response_min=_per_priority(rule.get("first_response_min"), where),
                resolution_h=_per_priority(rule.get("resolution_h"), where),
                business_hours=_policy_calendar(rule.get("business_hours"), where),
                channels=_policy_values(rule.get("channels"), where, "channels"),
                teams=_policy_values(rule.get("teams"), where, "teams"),
            )
        )
    calendars = _business_hours(raw.get("business_hours", {}), source)
    for i, policy in enumerate(policies, start=1):
        if policy.business_hours is not None and policy.business_hours not in dict(calendars):
            raise CsMetricsError(
                f"SLA policy {i} ({policy.name}) in {source} names the business-hours "
                f"calendar {policy.business_hours!r}, which is not defined; define "
                f"[business_hours.{policy.business_hours}] or use one of "
                f"{', '.join(name for name, _ in calendars)}."
            )
    targets = raw.get("targets", {})
    bad = [k for k, v in targets.items() if not isinstance(v, (int, float))]
    if bad:
        raise CsMetricsError(f"Targets {bad} in {source} must be numbers.")
    return Settings(
        sla_policies=tuple(policies),
        targets=tuple(sorted((k, float(v)) for k, v in targets.items())),
        source=source,
        staffing=_staffing(raw.get("staffing", {}), source),
        alerts=_alerts(raw.get("alerts", {}), source),
        notifications=(notifications := _notifications(raw.get("notifications", {}), source)),
        access=_access(raw.get("access", {}), source),
        ingest=_ingest(raw.get("ingest", {}), source),
        business_hours=calendars,
        display_timezone=_display(raw.get("display", {}), source),
        segment_labels=_segment_labels(raw.get("display", {}), source),
        schedules=_schedules(raw.get("schedules", []), source, notifications),
    )


_SCHEDULE_KEYS = ("name", "audience", "team", "rep", "period", "cron", "timezone",
                  "recipients", "format", "where")
_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9_\- ]{1,80}")


def _schedule_period(spec: Any, sec: _Section) -> str:
    """A period ``resolve_period`` accepts; relative ones are read against the data when the
    report runs, the others are checked now."""
    if not isinstance(spec, str) or not spec.strip():
        raise sec.fail("period", "last-week, last-month, a month as YYYY-MM or FROM:TO as "
                       "YYYY-MM-DD:YYYY-MM-DD")
    spec = spec.strip()
    if spec in ("last-week", "last-month"):
        return spec
    from cs_metrics.core.periods import resolve_period  # loaded when a schedule is read

    try:
        resolve_period(None, spec)  # type: ignore[arg-type]  # fixed periods need no data
    except CsMetricsError as exc:
        raise CsMetricsError(f"{sec.where('period')} is not a report period: {exc}") from None
    return spec


def _schedule(i: int, raw: Any, source: str, names: set[str]) -> Schedule:
    from croniter import croniter

    from cs_metrics.core.schema import DIMENSIONS

    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not _SCHEDULE_NAME.fullmatch(name.strip() or "-!"):
        raise CsMetricsError(
            f"Setting schedules[{i}].name in {source} must be a name of 1 to 80 letters, "
            f"digits, _, - or spaces, not {name!r}."
        )
    name = name.strip()
    if name.lower() in names:
        raise CsMetricsError(
            f"Setting schedules[{i}].name in {source} repeats the name {name!r}; every "
            "schedule needs a name of its own."
        )
    names.add(name.lower())
    sec = _Section(raw, f"schedules[{i}] ({name})", source, _SCHEDULE_KEYS)
    audience = sec.choice("audience", SCHEDULE_AUDIENCES)
    subject: dict[str, str | None] = {"team": None, "rep": None}
    for key, needs in (("team", "team"), ("rep", "representative")):
        value = sec.raw.get(key)
        if audience != needs:
            if value is not None:
                raise CsMetricsError(f"{sec.where(key)} only goes with audience = \"{needs}\"; "
                                     f"remove it or change the audience.")
            continue
        if not isinstance(value, str) or not value.strip():
            what = "a team, or a manager" if key == "team" else "a rep id or name"
            raise sec.fail(key, f"{what} (the {needs} audience needs one)")
        subject[key] = value.strip()
    cron = sec.raw.get("cron")
    fields = cron.split() if isinstance(cron, str) else []
    aliases = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].lower() in aliases)) \
            or not croniter.is_valid(" ".join(fields)) or not _fires(" ".join(fields)):
        raise sec.fail("cron", 'a cron expression of five fields (minute hour day month '
                       'weekday) that fires, e.g. "0 8 * * mon" for Mondays at 08:00, or '
                       '@daily, @weekly')
    tz = sec.raw.get("timezone", "UTC")
    if not _known_zone(tz):
        raise sec.fail("timezone", 'an IANA time zone such as "Europe/Berlin" or "UTC"')
    recipients = sec.texts("recipients")
    bad = [r for r in recipients if r.count("@") != 1 or any(c.isspace() for c in r)
           or any(c in r for c in ',;<>"()[]\\')
           or r.startswith("@") or r.endswith("@")]
    if bad or not recipients:
        raise sec.fail("recipients", 'a non-empty list of e-mail addresses, e.g. '
                       '["lead@example.com"]')
    fmt = sec.raw.get("format", "html")
    if fmt not in SCHEDULE_FORMATS:
        raise sec.fail("format", '"html" or "md"')
    where_raw = sec.raw.get("where", {})
    if not isinstance(where_raw, dict):
        raise sec.fail("where", 'a table of dimension filters, e.g. { channel = "chat" }')
    where: list[tuple[str, tuple[str, ...]]] = []
    for dim, value in sorted(where_raw.items()):
        if dim not in DIMENSIONS:
            raise CsMetricsError(
                f"{sec.where('where')} names the unknown dimension {dim!r}; use "
                f"{', '.join(DIMENSIONS)}."
            )
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or \
                not all(isinstance(v, str) and v.strip() for v in values):
            raise CsMetricsError(
                f"{sec.where('where.' + dim)} must be a value or a list of values, not "
                f"{value!r}."
            )
        where.append((dim, tuple(dict.fromkeys(v.strip() for v in values))))
    return Schedule(name=name, audience=audience, period=_schedule_period(
        sec.raw.get("period"), sec), cron=" ".join(fields), recipients=recipients,
        timezone=tz, team=subject["team"], rep=subject["rep"], format=fmt, where=tuple(where))


def _schedules(raw: Any, source: str, notifications: NotificationSettings
               ) -> tuple[Schedule, ...]:
    """The ``[[schedules]]`` array of tables."""
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise CsMetricsError(
            f"Setting schedules in {source} must be an array of tables, one [[schedules]] "
            "per scheduled report."
        )
    names: set[str] = set()
    out = tuple(_schedule(i, r, source, names) for i, r in enumerate(raw, start=1))
    email = notifications.email
    if out and (not email.host or not email.sender):
        raise CsMetricsError(
            f"Setting schedules in {source} e-mails reports: set notifications.email.host "
            "and notifications.email.sender (the SMTP server) too."
        )
    return out

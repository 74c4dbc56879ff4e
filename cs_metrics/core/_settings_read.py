"""Reading and checking the sections of a settings file, each into its value object, with
errors that name the file and the key."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

from cs_metrics.core._settings_model import (
    ALERT_SEVERITIES,
    DEFAULT_CALENDAR,
    EMAIL_SECURITY,
    IDENTITY_CLAIMS,
    NOTIFICATION_CHANNELS,
    PLAUSIBLE_BOUNDS,
    ROLES,
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
    ServiceLevel,
    SlaRule,
    StaffingSettings,
    WatchRule,
)
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import PRIORITIES


def _per_priority(value: Any, where: str) -> tuple[tuple[str, float], ...]:
    if value is None:
        return ()
    if isinstance(value, (int, float)):
        return tuple((p, float(value)) for p in PRIORITIES)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(PRIORITIES))
        if unknown:
            raise CsMetricsError(
                f"{where} names unknown priorities {unknown}; use {', '.join(PRIORITIES)}."
            )
        return tuple((p, float(value[p])) for p in PRIORITIES if p in value)
    raise CsMetricsError(f"{where} must be a number or a table by priority, not {value!r}.")


def _number(value: Any, where: str, rule: str, ok: Callable[[float], bool]) -> float:
    # bool is an int to Python, but `shrinkage = true` is a mistake, not 1; TOML's nan fails ok
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise CsMetricsError(f"{where} must be {rule}, not {value!r}.")
    return float(value)


_STAFFING_KEYS = ("shrinkage", "max_occupancy", "aht_s", "service_levels")


_SERVICE_LEVEL_KEYS = ("target", "within_s")


def _staffing(raw: Any, source: str) -> StaffingSettings:
    def where(key: str) -> str:
        return f"Setting staffing.{key} in {source}"

    if not isinstance(raw, dict):
        raise CsMetricsError(f"Section [staffing] in {source} must be a table.")
    unknown = sorted(set(raw) - set(_STAFFING_KEYS))
    if unknown:
        raise CsMetricsError(
            f"Section [staffing] in {source} has unknown keys {unknown}; use "
            f"{', '.join(_STAFFING_KEYS)}."
        )
    shrinkage = _number(raw.get("shrinkage"), where("shrinkage"),
                        "a fraction from 0 to 0.9, e.g. 0.3 for 30 % of paid time away from "
                        "contacts", lambda x: 0 <= x <= 0.9)
    occupancy = _number(raw.get("max_occupancy"), where("max_occupancy"),
                        "a fraction from 0.05 to 1, e.g. 0.85", lambda x: 0.05 <= x <= 1)
    aht = _number(raw.get("aht_s"), where("aht_s"), "a positive number of seconds",
                  lambda x: 0 < x < math.inf)
    tables = raw.get("service_levels")
    if not isinstance(tables, dict):
        raise CsMetricsError(
            f"{where('service_levels')} must be a table by channel, e.g. "
            "chat = { target = 0.8, within_s = 60 }."
        )
    levels: list[tuple[str, ServiceLevel]] = []
    for channel, rule in sorted(tables.items()):
        here = f"service_levels.{channel}"
        if not isinstance(rule, dict):
            raise CsMetricsError(
                f"{where(here)} must be a table like {{ target = 0.8, within_s = 20 }}, "
                f"not {rule!r}."
            )
        unknown = sorted(set(rule) - set(_SERVICE_LEVEL_KEYS))
        if unknown:
            raise CsMetricsError(
                f"{where(here)} has unknown keys {unknown}; use "
                f"{', '.join(_SERVICE_LEVEL_KEYS)}."
            )
        target = _number(rule.get("target"), where(f"{here}.target"),
                         "a fraction between 0 and 1 (exclusive), e.g. 0.8 for 80 %",
                         lambda x: 0 < x < 1)
        within = _number(rule.get("within_s"), where(f"{here}.within_s"),
                         "zero or more seconds", lambda x: 0 <= x < math.inf)
        levels.append((channel.strip().lower(), ServiceLevel(target, within)))
    if "default" not in dict(levels):
        raise CsMetricsError(
            f"{where('service_levels')} needs a `default` entry for channels without "
            "their own target."
        )
    return StaffingSettings(shrinkage, occupancy, aht, tuple(levels))


class _Section:
    """Reads one settings table, with errors that name the file and the key."""

    def __init__(self, raw: Any, name: str, source: str, keys: tuple[str, ...]) -> None:
        if not isinstance(raw, dict):
            raise CsMetricsError(f"Section [{name}] in {source} must be a table, not {raw!r}.")
        unknown = sorted(set(raw) - set(keys))
        if unknown:
            raise CsMetricsError(
                f"Section [{name}] in {source} has unknown keys {unknown}; use "
                f"{', '.join(keys)}."
            )
        self.raw, self.name, self.source = raw, name, source

    def where(self, key: str) -> str:
        return f"Setting {self.name}.{key} in {self.source}"

    def fail(self, key: str, rule: str) -> CsMetricsError:
        return CsMetricsError(f"{self.where(key)} must be {rule}, not {self.raw.get(key)!r}.")

    def flag(self, key: str) -> bool:
        value = self.raw.get(key)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def number(self, key: str, rule: str, ok: Callable[[float], bool]) -> float:
        return _number(self.raw.get(key), self.where(key), rule, ok)

    def integer(self, key: str, rule: str, ok: Callable[[int], bool]) -> int:
        value = self.raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not ok(value):
            raise self.fail(key, rule)
        return value

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "a string (\"\" for none)")
        return value.strip()

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.raw.get(key)
        if value not in options:
            raise self.fail(key, f"one of {', '.join(repr(o) for o in options)}")
        return value

    def texts(self, key: str, options: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self.raw.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "a list of strings, e.g. [\"a\", \"b\"]")
        if options is not None:
            unknown = [v for v in value if v not in options]
            if unknown:
                raise CsMetricsError(
                    f"{self.where(key)} names unknown values {unknown}; use "
                    f"{', '.join(options)}."
                )
        return tuple(dict.fromkeys(v.strip() for v in value))

    def severity(self, key: str = "severity") -> str:
        return self.choice(key, ALERT_SEVERITIES)

    def cooldown(self) -> float:
        return self.number("cooldown_min", "zero or more minutes", lambda x: 0 <= x < math.inf)


def _positive(x: float) -> bool:
    return 0 < x < math.inf


def _probability(x: float) -> bool:
    return 0 < x < 1


_RULE_KEYS = ("enabled", "cooldown_min")


def _alerts(raw: Any, source: str) -> AlertSettings:
    from cs_metrics.core.schema import DIMENSIONS

    top = _Section(raw, "alerts", source,
                   ("enabled", "every", "outage", "sla", "watch", "csat", "emerging"))
    o = _Section(raw.get("outage"), "alerts.outage", source, (
        *_RULE_KEYS, "severity", "window_min", "history_weeks", "min_history_weeks", "p_value",
        "min_count", "min_ratio", "dimensions"))
    history = o.integer("history_weeks", "a whole number of weeks from 1 to 52",
                        lambda x: 1 <= x <= 52)
    outage = OutageRule(
        enabled=o.flag("enabled"), severity=o.severity(), cooldown_min=o.cooldown(),
        window_min=o.number("window_min", "minutes from 1 to 10080 (one week)",
                            lambda x: 1 <= x <= 10080),
        history_weeks=history,
        min_history_weeks=o.integer(
            "min_history_weeks", f"a whole number of weeks from 1 to history_weeks ({history})",
            lambda x: 1 <= x <= history),
        p_value=o.number("p_value", "a probability between 0 and 1, e.g. 0.001", _probability),
        min_count=o.integer("min_count", "a whole number of tickets, 1 or more",
                            lambda x: x >= 1),
        min_ratio=o.number("min_ratio", "a ratio of 1 or more, e.g. 3.0",
                           lambda x: 1 <= x < math.inf),
        dimensions=o.texts("dimensions", DIMENSIONS),
    )
    s = _Section(raw.get("sla"), "alerts.sla", source, (
        *_RULE_KEYS, "breached_severity", "at_risk_severity", "at_risk_share", "priorities",
        "segments", "max_ids"))
    sla = SlaRule(
        enabled=s.flag("enabled"), breached_severity=s.severity("breached_severity"),
        at_risk_severity=s.severity("at_risk_severity"), cooldown_min=s.cooldown(),
        at_risk_share=s.number("at_risk_share", "a fraction between 0 and 1, e.g. 0.8 for 80 % "
                               "of the target", _probability),
        priorities=s.texts("priorities", PRIORITIES),
        segments=s.texts("segments"),
        max_ids=s.integer("max_ids", "a whole number from 1 to 1000", lambda x: 1 <= x <= 1000),
    )
    w = _Section(raw.get("watch"), "alerts.watch", source, (
        *_RULE_KEYS, "severity", "reopened_priorities", "vip_segments", "lookback_min",
        "active_h"))
    watch = WatchRule(
        enabled=w.flag("enabled"), severity=w.severity(), cooldown_min=w.cooldown(),
        reopened_priorities=w.texts("reopened_priorities", PRIORITIES),
        vip_segments=w.texts("vip_segments"),
        lookback_min=w.number("lookback_min", "a positive number of minutes", _positive),
        active_h=w.number("active_h", "a positive number of hours", _positive),
    )
    c = _Section(raw.get("csat"), "alerts.csat", source, (
        *_RULE_KEYS, "severity", "recent_days", "baseline_days", "p_value", "min_drop_points",
        "min_responses"))
    csat = CsatRule(
        enabled=c.flag("enabled"), severity=c.severity(), cooldown_min=c.cooldown(),
        recent_days=c.number("recent_days", "a positive number of days", _positive),
        baseline_days=c.number("baseline_days", "a positive number of days", _positive),
        p_value=c.number("p_value", "a probability between 0 and 1, e.g. 0.01", _probability),
        min_drop_points=c.number("min_drop_points", "zero or more percentage points",
                                 lambda x: 0 <= x <= 100),
        min_responses=c.integer("min_responses", "a whole number of responses, 1 or more",
                                lambda x: x >= 1),
    )
    e = _Section(raw.get("emerging"), "alerts.emerging", source, (
        *_RULE_KEYS, "severity", "recent_days", "baseline_days", "min_count", "min_growth",
        "alpha"))
    emerging = EmergingRule(
        enabled=e.flag("enabled"), severity=e.severity(), cooldown_min=e.cooldown(),
        recent_days=e.integer("recent_days", "a whole number of days from 1 to 365",
                              lambda x: 1 <= x <= 365),
        baseline_days=e.integer("baseline_days", "a whole number of days from 1 to 730",
                                lambda x: 1 <= x <= 730),
        min_count=e.integer("min_count", "a whole number of comments, 1 or more",
                            lambda x: x >= 1),
        min_growth=e.number("min_growth", "a ratio of 1 or more, e.g. 2.0",
                            lambda x: 1 <= x < math.inf),
        alpha=e.number("alpha", "a probability between 0 and 1, e.g. 0.01", _probability),
    )
    every = top.number("every", "a number of minutes above 0 and at most 1440 (one day)",
                       lambda x: 0 < x <= 1440) if "every" in top.raw else 5.0
    return AlertSettings(top.flag("enabled"), outage, sla, watch, csat, emerging, every)


def _notifications(raw: Any, source: str) -> NotificationSettings:
    n = _Section(raw, "notifications", source, (
        "channels", "min_severity", "app_url", "retry_attempts", "retry_base_s", "timeout_s",
        "webhook", "email"))
    channels = n.texts("channels", NOTIFICATION_CHANNELS)
    app_url = n.text("app_url").rstrip("/")
    if app_url and not app_url.startswith(("http://", "https://")):
        raise n.fail("app_url", "an http:// or https:// address, or \"\"")
    h = _Section(raw.get("webhook"), "notifications.webhook", source, ("urls", "urls_env"))
    urls = h.texts("urls")
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise CsMetricsError(
            f"{h.where('urls')} must hold http:// or https:// addresses, not {bad!r}."
        )
    urls_env = h.text("urls_env")
    raw_email = raw.get("email")
    if isinstance(raw_email, dict) and "password" in raw_email:
        raise CsMetricsError(
            f"Setting notifications.email.password in {source} is not allowed: a password "
            "never goes in a settings file; put it in the environment variable named by "
            "notifications.email.password_env (by default CS_METRICS_SMTP_PASSWORD)."
        )
    if isinstance(raw_email, dict) and "from" in raw_email:  # the usual name of the field
        raw_email = {k: v for k, v in raw_email.items() if k != "from"} | {
            "sender": raw_email["from"]}
    e = _Section(raw_email, "notifications.email", source, (
        "host", "port", "security", "username", "password_env", "sender", "recipients",
        "subject_prefix"))
    recipients = e.texts("recipients")
    bad = [r for r in recipients if "@" not in r]
    if bad:
        raise CsMetricsError(f"{e.where('recipients')} must hold email addresses, not {bad!r}.")
    sender = e.text("sender")
    if sender and "@" not in sender:
        raise e.fail("sender", "an email address")
    email = EmailSettings(
        host=e.text("host"),
        port=e.integer("port", "a port number from 1 to 65535", lambda x: 1 <= x <= 65535),
        security=e.choice("security", EMAIL_SECURITY),
        username=e.text("username"),
        password_env=e.text("password_env"),
        sender=sender,
        recipients=recipients,
        subject_prefix=e.text("subject_prefix"),
    )
    if "email" in channels:
        for key, value in (("host", email.host), ("sender", email.sender),
                           ("recipients", email.recipients)):
            if not value:
                raise CsMetricsError(
                    f"{e.where(key)} must be set when notifications.channels includes "
                    "\"email\"."
                )
        if email.username and not email.password_env:
            raise CsMetricsError(
                f"{e.where('password_env')} must name the environment variable holding the "
                "password of notifications.email.username."
            )
    if "webhook" in channels and not urls and not urls_env:
        raise CsMetricsError(
            f"{h.where('urls')} (or urls_env) must be set when notifications.channels includes "
            "\"webhook\"."
        )
    return NotificationSettings(
        channels=channels,
        min_severity=n.choice("min_severity", ALERT_SEVERITIES),
        app_url=app_url,
        # bounded, so a failing channel cannot hold a refresh for long
        retry_attempts=n.integer("retry_attempts", "a whole number of tries from 1 to 10",
                                 lambda x: 1 <= x <= 10),
        retry_base_s=n.number("retry_base_s", "seconds from 0 to 60", lambda x: 0 <= x <= 60),
        timeout_s=n.number("timeout_s", "seconds above 0 and at most 120",
                           lambda x: 0 < x <= 120),
        webhook_urls=urls,
        webhook_urls_env=urls_env,
        email=email,
    )


def _identity(value: str, where: str) -> str:
    ident = value.strip()
    if ident.lower().startswith("group:"):
        if not ident[6:].strip():
            raise CsMetricsError(f"{where} has an empty group name in {value!r}.")
        return "group:" + ident[6:].strip()
    if "@" not in ident:
        raise CsMetricsError(
            f"{where} names {value!r}, which is neither an e-mail address nor group:NAME."
        )
    return ident.lower()


def _access(raw: Any, source: str) -> AccessSettings:
    top = _Section(raw, "access", source, ("admins", "managers", "team_leads",
                                           "representatives", "customer_details",
                                           "identity_claim"))
    claim = top.raw.get("identity_claim", "verified_email")
    if claim not in IDENTITY_CLAIMS:
        raise CsMetricsError(
            f"{top.where('identity_claim')} must be \"verified_email\" (the e-mail address "
            "when the identity provider marks it verified; the safe choice) or \"email\" (the "
            "e-mail address as the provider sends it; only for providers that verify every "
            f"address), not {claim!r}."
        )
    admins = tuple(_identity(v, top.where("admins")) for v in top.texts("admins"))
    managers = tuple(_identity(v, top.where("managers")) for v in top.texts("managers"))
    leads = top.raw.get("team_leads")
    if not isinstance(leads, dict):
        raise top.fail("team_leads", 'a table of identity = ["team", ...]')
    team_leads = []
    for ident, teams in leads.items():
        where = f"{top.where('team_leads')} ({ident})"
        if isinstance(teams, str):
            teams = [teams]
        if not isinstance(teams, list) or not teams or \
                not all(isinstance(t, str) and t.strip() for t in teams):
            raise CsMetricsError(f"{where} must be a non-empty list of team names, "
                                 f"not {teams!r}.")
        team_leads.append((_identity(ident, where), tuple(dict.fromkeys(t.strip()
                                                                         for t in teams))))
    reps = top.raw.get("representatives")
    if not isinstance(reps, dict):
        raise top.fail("representatives", 'a table of identity = "rep_id"')
    representatives = []
    for ident, rep_id in reps.items():
        where = f"{top.where('representatives')} ({ident})"
        if not isinstance(rep_id, str) or not rep_id.strip():
            raise CsMetricsError(f"{where} must be a rep_id string, not {rep_id!r}.")
        representatives.append((_identity(ident, where), rep_id.strip()))
    return AccessSettings(admins, managers, tuple(team_leads), tuple(representatives),
                          top.texts("customer_details", ROLES), claim)


_INGEST_KEYS = ("earliest", "latest", "earliest_hired")


def _day(sec: _Section, key: str) -> date:
    """A day written as "YYYY-MM-DD" or as a TOML date, inside PLAUSIBLE_BOUNDS."""
    value = sec.raw.get(key)
    rule = (f"a day from {PLAUSIBLE_BOUNDS[0]} to {PLAUSIBLE_BOUNDS[1]} written "
            '"YYYY-MM-DD"')
    if isinstance(value, datetime):  # a TOML date-time: the window is whole days
        raise sec.fail(key, rule)
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            raise sec.fail(key, rule) from None
    if not isinstance(value, date) or not PLAUSIBLE_BOUNDS[0] <= value <= PLAUSIBLE_BOUNDS[1]:
        raise sec.fail(key, rule)
    return value


def _ingest(raw: Any, source: str) -> IngestSettings:
    sec = _Section(raw, "ingest", source, _INGEST_KEYS)
    earliest = _day(sec, "earliest")
    latest: date | int
    if isinstance(sec.raw.get("latest"), int) and not isinstance(sec.raw.get("latest"), bool):
        latest = sec.integer("latest", 'a whole number of days after the load from 0 to 3650, '
                             'or a last plausible day "YYYY-MM-DD"', lambda x: 0 <= x <= 3650)
        today = datetime.now(timezone.utc).date()
        if earliest > today:
            raise CsMetricsError(
                f"{sec.where('earliest')} is {earliest}, after today: every timestamp would "
                "be refused; set an earlier day."
            )
    else:
        latest = _day(sec, "latest")
        if latest < earliest:
            raise CsMetricsError(
                f"{sec.where('latest')} ({latest}) is before ingest.earliest ({earliest}): "
                "every timestamp would be refused; set a later day or a number of days."
            )
    hired = _day(sec, "earliest_hired")
    if hired > earliest:
        raise CsMetricsError(
            f"{sec.where('earliest_hired')} ({hired}) is after ingest.earliest ({earliest}); "
            "people are hired before the tickets they answer, so set it on or before "
            "that day."
        )
    return IngestSettings(earliest, latest, hired)


_CALENDAR_KEYS = ("timezone", "hours", "holidays")


def _fires(cron: str) -> bool:
    """Whether a valid cron expression has a slot before and after now ("* * 31 2 *" is
    valid to croniter but never comes)."""
    from croniter import CroniterError, croniter

    try:
        it = croniter(cron, datetime(2026, 1, 1))
        it.get_next(datetime)
        croniter(cron, datetime(2026, 1, 1)).get_prev(datetime)
    except (CroniterError, ValueError, OverflowError):
        return False
    return True


def _known_zone(tz: Any) -> bool:
    # the zone names every part of the app accepts (cs_metrics.core.zones): not "localtime", the
    # machine's own zone (another server would read the hours otherwise), nor the posix/ and
    # right/ copies of the database
    from cs_metrics.core.zones import zone_names

    return isinstance(tz, str) and tz in zone_names()


def _clock(text: str) -> int | None:
    """Seconds from midnight of "HH:MM" (00:00 to 24:00), else None."""
    hh, sep, mm = text.strip().partition(":")
    if not (sep and len(hh) == 2 and len(mm) == 2 and hh.isdigit() and mm.isdigit()):
        return None
    seconds = int(hh) * 3600 + int(mm) * 60
    return seconds if int(mm) < 60 and seconds <= 86400 else None


def _calendar(name: Any, raw: Any, source: str) -> BusinessCalendar:
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise CsMetricsError(
            f"Section [business_hours.{name}] in {source} must be named with letters, digits, "
            "_ or - only."
        )
    sec = _Section(raw, f"business_hours.{name}", source, _CALENDAR_KEYS)
    tz = sec.raw.get("timezone")
    if not _known_zone(tz):
        raise sec.fail("timezone", 'an IANA time zone such as "America/New_York" or "UTC"')
    table = sec.raw.get("hours")
    if not isinstance(table, dict):
        raise sec.fail("hours", 'a table by weekday, e.g. { mon = "09:00-17:00" }')
    unknown = sorted(set(table) - set(WEEKDAYS))
    if unknown:
        raise CsMetricsError(
            f"{sec.where('hours')} names unknown days {unknown}; use {', '.join(WEEKDAYS)} "
            "(a day left out is closed)."
        )
    hours: list[tuple[int, int] | None] = []
    for day in WEEKDAYS:
        span = table.get(day)
        if span is None:
            hours.append(None)
            continue
        first, sep, last = span.partition("-") if isinstance(span, str) else ("", "", "")
        start, end = _clock(first), _clock(last)
        if not sep or start is None or end is None or start >= end:
            # an overnight shift would need a day split in two: say so rather than guess
            raise CsMetricsError(
                f"{sec.where('hours.' + day)} must be opening and closing times within one "
                f'day written "HH:MM-HH:MM" (open before close, up to 24:00), not {span!r}.'
            )
        hours.append((start, end))
    if all(h is None for h in hours):
        raise CsMetricsError(
            f"{sec.where('hours')} must open on at least one day, or every business-time "
            "duration would be zero."
        )
    days = sec.raw.get("holidays", [])
    if not isinstance(days, list):
        raise sec.fail("holidays", 'a list of days written "YYYY-MM-DD"')
    holidays = []
    for i, value in enumerate(days):
        key = f"holidays[{i}]"  # each day read on its own, so the error names the entry
        holidays.append(_day(_Section({key: value}, sec.name, source, (key,)), key))
    return BusinessCalendar(name, tz, tuple(hours), tuple(sorted(set(holidays))))


def _business_hours(raw: Any, source: str) -> tuple[tuple[str, BusinessCalendar], ...]:
    if not isinstance(raw, dict):
        raise CsMetricsError(f"Section [business_hours] in {source} must be a table of "
                             "calendars such as [business_hours.default].")
    calendars = tuple((name, _calendar(name, rule, source)) for name, rule in
                      sorted(raw.items()))
    if DEFAULT_CALENDAR not in dict(calendars):
        raise CsMetricsError(
            f"Section [business_hours] in {source} needs a `default` calendar, used by "
            "every ticket."
        )
    return calendars


def _policy_calendar(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CsMetricsError(
            f"{where}: business_hours must name a calendar such as \"default\" (a "
            f"[business_hours.NAME] section), not {value!r}."
        )
    return value.strip()


def _policy_values(value: Any, where: str, key: str) -> tuple[str, ...] | None:
    """A policy's ``channels`` or ``teams``: None (any) or a list of non-empty names."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v.strip() for v in value):
        example = '["chat", "email"]' if key == "channels" else '["Team A"]'
        raise CsMetricsError(
            f"{where}: {key} must be a list of one or more non-empty names such as "
            f"{example}, not {value!r}."
        )
    return tuple(value)


def _display(raw: Any, source: str) -> str:
    """The reporting zone of section ``[display]``."""
    sec = _Section(raw, "display", source, ("timezone", "segments"))
    tz = sec.raw.get("timezone", "UTC")
    if not _known_zone(tz):
        raise sec.fail("timezone", 'an IANA time zone such as "America/New_York" or "UTC"')
    return tz


SEGMENT_LABEL_MAX = 60


def _segment_labels(raw: Any, source: str) -> tuple[tuple[str, str], ...]:
    """``[display.segments]``: what each customer segment code is called on pages and in
    reports (``M = "Mid-market"``). Labels are plain text, shown as written."""
    if not isinstance(raw, dict):
        return ()
    table = raw.get("segments", {})
    if not isinstance(table, dict):
        raise CsMetricsError(
            f"Setting display.segments in {source} must be a table of segment = \"label\", "
            f"e.g. [display.segments] M = \"Mid-market\", not {table!r}.")
    out: list[tuple[str, str]] = []
    for code, label in table.items():
        if (not isinstance(label, str) or not label.strip() or len(label) > SEGMENT_LABEL_MAX
                or any(unicodedata.category(c).startswith("C") for c in label)):
            # category C: controls, and invisible format characters such as a
            # right-to-left override, which would make a label read as another
            raise CsMetricsError(
                f"Setting display.segments.{code} in {source} must be a label of 1 to "
                f"{SEGMENT_LABEL_MAX} printable characters, not {label!r}.")
        label = label.strip()
        if label in ("–", "-", "(none)"):
            raise CsMetricsError(
                f"Setting display.segments.{code} in {source} may not be {label!r}: that "
                "is how a missing segment is shown.")
        taken = next((c for c, lab in out if lab.casefold() == label.casefold()), None)
        if taken is not None:
            raise CsMetricsError(
                f"Settings display.segments.{taken} and display.segments.{code} in {source} "
                f"are both {label!r}; give each segment its own label.")
        out.append((code, label))
    return tuple(out)

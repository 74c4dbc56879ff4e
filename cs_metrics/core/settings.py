"""Settings: SLA policies, KPI targets, staffing assumptions, alert rules, notification
channels and, for the hosted app, who may see what; from one TOML file merged over the
defaults."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.schema import PRIORITIES

DEFAULT_SETTINGS_FILE = Path(__file__).with_name("default_settings.toml")
SETTINGS_ENV = "CS_METRICS_SETTINGS"


@dataclass(frozen=True)
class SlaPolicy:
    name: str
    priorities: tuple[str, ...] | None
    segments: tuple[str, ...] | None
    first_response_min: tuple[tuple[str, float], ...]  # (priority, target) pairs
    resolution_h: tuple[tuple[str, float], ...]
    # a [business_hours.NAME] calendar: targets are then business time; None is 24/7
    business_hours: str | None = None
    # the tickets' channels and their representatives' teams it is for; None is any (a
    # ticket without a channel or team matches only a policy that does not restrict it)
    channels: tuple[str, ...] | None = None
    teams: tuple[str, ...] | None = None

    def matches(self, priority: str, segment: str, channel: str | None = None,
                team: str | None = None) -> bool:
        return (self.priorities is None or priority in self.priorities) and (
            self.segments is None or segment in self.segments
        ) and (self.channels is None or channel in self.channels) and (
            self.teams is None or team in self.teams
        )


@dataclass(frozen=True)
class ServiceLevel:
    """A service-level target: ``target`` (a fraction) of contacts answered within
    ``within_s`` seconds, e.g. 80 % within 20 s is ``ServiceLevel(0.8, 20)``."""

    target: float
    within_s: float

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            # 100 % is never reached by a queue with random arrivals: no staffing would do
            raise CsMetricsError(
                f"A service-level target must be a fraction between 0 and 1 (exclusive), "
                f"e.g. 0.8 for 80 %, not {self.target!r}."
            )
        if not self.within_s >= 0:  # written so that nan fails too
            raise CsMetricsError(
                f"A service-level time must be zero or more seconds, not {self.within_s!r}."
            )


# Channel names that mean the same queue as a configured one.
_CHANNEL_ALIASES: dict[str, str] = {"call": "phone", "voice": "phone", "telephone": "phone"}


@dataclass(frozen=True)
class StaffingSettings:
    """Assumptions behind Erlang C staffing (see cs_metrics.analysis.staffing)."""

    shrinkage: float  # share of paid time not spent on contacts: breaks, training, meetings
    max_occupancy: float  # busiest share of logged-in time that is sustainable
    aht_s: float  # average handle time when the data has no handle_time_s
    service_levels: tuple[tuple[str, ServiceLevel], ...]  # (channel, target), incl. "default"

    def service_level(self, channel: str | None) -> ServiceLevel:
        """The target of ``channel`` (case-insensitive, "call" means "phone"), else the
        ``default`` target."""
        levels = dict(self.service_levels)
        name = (channel or "").strip().lower()
        for key in (name, _CHANNEL_ALIASES.get(name)):
            if key and key in levels:
                return levels[key]
        return levels["default"]


ALERT_SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")  # mildest first
NOTIFICATION_CHANNELS: tuple[str, ...] = ("in_app", "email", "webhook")
EMAIL_SECURITY: tuple[str, ...] = ("starttls", "tls", "none")


@dataclass(frozen=True)
class OutageRule:
    """Arrivals far above the same hour of the week (see cs_metrics.ops.alerts)."""

    enabled: bool
    severity: str
    cooldown_min: float
    window_min: float
    history_weeks: int
    min_history_weeks: int
    p_value: float  # family-wise: divided by the number of groups tested
    min_count: int
    min_ratio: float
    dimensions: tuple[str, ...]


@dataclass(frozen=True)
class SlaRule:
    """Unanswered tickets past (or near) their first-response target."""

    enabled: bool
    breached_severity: str
    at_risk_severity: str
    cooldown_min: float
    at_risk_share: float
    priorities: tuple[str, ...]
    segments: tuple[str, ...]
    max_ids: int


@dataclass(frozen=True)
class WatchRule:
    """Status changes on watched tickets: reopened, closed without a first response."""

    enabled: bool
    severity: str
    cooldown_min: float
    reopened_priorities: tuple[str, ...]
    vip_segments: tuple[str, ...]
    lookback_min: float
    active_h: float


@dataclass(frozen=True)
class CsatRule:
    """CSAT % of the recent days significantly below the days before."""

    enabled: bool
    severity: str
    cooldown_min: float
    recent_days: float
    baseline_days: float
    p_value: float
    min_drop_points: float
    min_responses: int


@dataclass(frozen=True)
class EmergingRule:
    """Comment terms whose share rose significantly (cs_metrics.analysis.topics.emerging_issues)."""

    enabled: bool
    severity: str
    cooldown_min: float
    recent_days: int
    baseline_days: int
    min_count: int
    min_growth: float
    alpha: float


@dataclass(frozen=True)
class AlertSettings:
    enabled: bool
    outage: OutageRule
    sla: SlaRule
    watch: WatchRule
    csat: CsatRule
    emerging: EmergingRule
    # minutes of wall-clock time between the app's scheduled evaluations of the rules
    every: float = 5.0


@dataclass(frozen=True)
class EmailSettings:
    host: str
    port: int
    security: str  # starttls, tls (implicit) or none
    username: str
    password_env: str  # the name of the environment variable holding the password
    sender: str
    recipients: tuple[str, ...]
    subject_prefix: str

    def password(self) -> str | None:
        """The SMTP password from the environment (never from the settings file)."""
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class NotificationSettings:
    channels: tuple[str, ...]
    min_severity: str  # email and webhooks get alerts this severe or worse; in-app gets all
    app_url: str  # base that makes the alerts' relative links absolute ("" keeps them relative)
    retry_attempts: int  # tries in all, per channel and target
    retry_base_s: float  # wait before the second try; doubles before each next one
    timeout_s: float
    webhook_urls: tuple[str, ...]
    webhook_urls_env: str
    email: EmailSettings

    def webhooks(self) -> tuple[str, ...]:
        """The configured URLs plus those in the environment variable ``webhook_urls_env``."""
        extra = os.environ.get(self.webhook_urls_env, "") if self.webhook_urls_env else ""
        urls = [*self.webhook_urls, *extra.replace(",", " ").split()]
        return tuple(dict.fromkeys(urls))


ROLES: tuple[str, ...] = ("admin", "manager", "team_lead", "representative")

# Which identity claim may match an [access] entry (``access.identity_claim``):
# - "verified_email": the ``email`` claim, only when the provider sends ``email_verified``
#   true. The default: a provider that lets people type their own address cannot make
#   anyone an admin with it.
# - "email": the ``email`` claim as it is, for providers that verify every address they
#   release but do not send ``email_verified``.
# ``preferred_username``, ``name`` and other claims people choose themselves never match.
IDENTITY_CLAIMS: tuple[str, ...] = ("verified_email", "email")


@dataclass(frozen=True)
class AccessSettings:
    """Who may see what when people sign in to the hosted app (section ``[access]``).

    An identity is an e-mail address from the identity provider (any case) or
    ``group:NAME`` for a group claim. ``customer_details`` lists the roles that see customer
    names, e-mail addresses and phone numbers unmasked. ``identity_claim`` (one of
    ``IDENTITY_CLAIMS``) says which e-mail claim may match an entry.
    """

    admins: tuple[str, ...] = ()
    managers: tuple[str, ...] = ()
    team_leads: tuple[tuple[str, tuple[str, ...]], ...] = ()  # identity -> teams
    representatives: tuple[tuple[str, str], ...] = ()  # identity -> rep_id
    customer_details: tuple[str, ...] = ("admin",)
    identity_claim: str = "verified_email"


# Every plausible timestamp lies within these days, so pandas (nanoseconds, 1677-2262), charts
# and date arithmetic can hold any of them; the [ingest] window must stay inside.
PLAUSIBLE_BOUNDS: tuple[date, date] = (date(1900, 1, 1), date(2199, 12, 31))


@dataclass(frozen=True)
class IngestSettings:
    """What a load accepts as plausible (section ``[ingest]``).

    A timestamp before ``earliest`` or after the window's end is rejected as
    ``implausible_timestamp``; the end is the day ``latest`` when it is a date, else the
    moment of the load plus ``latest`` days (the default, 1, allows for clocks and zones a
    little ahead). A representative's ``hired_at`` may go back to ``earliest_hired`` (people
    are hired before the first ticket) and, like every timestamp, not past the window's end.
    A warehouse that holds rows outside the window (written by other means) keeps them out
    of its default views (see cs_metrics.core.warehouse).
    """

    earliest: date = date(1990, 1, 1)
    latest: date | int = 1  # a last plausible day, or whole days after the moment of the load
    earliest_hired: date = date(1950, 1, 1)

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """(first, last) plausible moment, naive UTC, for a load or derive at ``now``."""
        start = datetime.combine(self.earliest, time())
        if isinstance(self.latest, int):
            now = now or datetime.now(timezone.utc).replace(tzinfo=None)
            end = now + timedelta(days=self.latest)
        else:
            end = datetime.combine(self.latest, time.max)  # the whole of the last day
        # a far-off `now` (a test clock) never takes the window outside what pandas holds
        return start, min(end, datetime.combine(PLAUSIBLE_BOUNDS[1], time.max))


WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class BusinessCalendar:
    """Open hours for business-time durations (section ``[business_hours.NAME]``).

    ``hours`` has one entry per weekday, Monday first: (open, close) in seconds from local
    midnight, or None for a closed day. Hours are local wall-clock time in ``timezone``; a
    holiday is closed all day.
    """

    name: str
    timezone: str
    hours: tuple[tuple[int, int] | None, ...]
    holidays: tuple[date, ...] = ()


DEFAULT_CALENDAR = "default"

SCHEDULE_AUDIENCES: tuple[str, ...] = ("executive", "team", "representative")
SCHEDULE_FORMATS: tuple[str, ...] = ("html", "md")


@dataclass(frozen=True)
class Schedule:
    """A report built and e-mailed on a cron schedule (one ``[[schedules]]`` entry; see
    cs_metrics.ops.schedules)."""

    name: str
    audience: str  # executive, team or representative
    period: str  # as cs_metrics.ops.reports.resolve_period reads it: last-week, last-month, ...
    cron: str  # five cron fields (or @daily, @weekly, ...), in ``timezone``
    recipients: tuple[str, ...]
    timezone: str = "UTC"
    team: str | None = None  # the team audience's team (or manager)
    rep: str | None = None  # the representative audience's rep id or name
    format: str = "html"  # html or md
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()  # dimension -> values


@dataclass(frozen=True)
class Settings:
    sla_policies: tuple[SlaPolicy, ...]
    targets: tuple[tuple[str, float], ...]
    source: str
    staffing: StaffingSettings
    alerts: AlertSettings
    notifications: NotificationSettings
    access: AccessSettings = AccessSettings()
    ingest: IngestSettings = IngestSettings()
    # (name, calendar) pairs; "default" is always there (the shipped one unless set)
    business_hours: tuple[tuple[str, BusinessCalendar], ...] = (
        (DEFAULT_CALENDAR, BusinessCalendar(DEFAULT_CALENDAR, "UTC",
                                            ((9 * 3600, 17 * 3600),) * 5 + (None, None))),
    )

    # the reporting zone (``[display] timezone``): local days, weeks, months and hours
    display_timezone: str = "UTC"
    # ``[display.segments]``: (code, label) pairs, e.g. ("M", "Mid-market")
    segment_labels: tuple[tuple[str, str], ...] = ()
    # ``[[schedules]]``: reports the running server builds and e-mails on a cron schedule
    schedules: tuple[Schedule, ...] = ()

    def segment_label(self, code: Any) -> str | None:
        """What segment ``code`` is called (its label, else the code itself); None for a
        missing segment."""
        if code is None or (isinstance(code, float) and code != code):
            return None
        text = str(code)
        return dict(self.segment_labels).get(text, text)

    def calendar(self, name: str = DEFAULT_CALENDAR) -> BusinessCalendar:
        """The business-hours calendar ``name``."""
        calendars = dict(self.business_hours)
        if name not in calendars:
            raise CsMetricsError(
                f"No business-hours calendar {name!r} in {self.source}; define "
                f"[business_hours.{name}] or use one of {sorted(calendars)}."
            )
        return calendars[name]

    def target(self, metric: str) -> float | None:
        return dict(self.targets).get(metric)

    def sla_targets(self, priority: str, segment: str, channel: str | None = None,
                    team: str | None = None) -> tuple[float | None, float | None, str]:
        """(first response minutes, resolution hours, policy name) for one ticket kind: its
        priority, customer segment, channel and representative's team."""
        first: float | None = None
        resolution: float | None = None
        names: list[str] = []
        for policy in self.sla_policies:
            if not policy.matches(priority, segment, channel, team):
                continue
            fr = dict(policy.first_response_min).get(priority)
            res = dict(policy.resolution_h).get(priority)
            if first is None and fr is not None:
                first = fr
                names.append(policy.name)
            if resolution is None and res is not None:
                resolution = res
                if policy.name not in names:
                    names.append(policy.name)
            if first is not None and resolution is not None:
                break
        return first, resolution, " / ".join(names)

    def sla_calendars(self, priority: str, segment: str, channel: str | None = None,
                      team: str | None = None) -> tuple[str | None, str | None]:
        """The business-hours calendars of the policies giving one ticket kind its first
        response and its resolution target (as ``sla_targets`` picks them); None where that
        policy counts elapsed (24/7) time or there is no target."""
        first: str | None = None
        resolution: str | None = None
        found = [False, False]
        for policy in self.sla_policies:
            if not policy.matches(priority, segment, channel, team):
                continue
            if not found[0] and dict(policy.first_response_min).get(priority) is not None:
                first, found[0] = policy.business_hours, True
            if not found[1] and dict(policy.resolution_h).get(priority) is not None:
                resolution, found[1] = policy.business_hours, True
            if all(found):
                break
        return first, resolution


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
    from cs_metrics.ops.reports import resolve_period  # reports reads settings: not at import

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

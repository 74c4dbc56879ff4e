"""The settings value objects (frozen) and the fixed vocabularies they use; reading them
from TOML is ``cs_metrics.core.settings``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from cs_metrics.core.errors import CsMetricsError


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

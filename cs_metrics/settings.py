"""Settings: SLA policies, KPI targets and staffing assumptions, from one TOML file merged over
the defaults."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs_metrics.errors import CsMetricsError
from cs_metrics.schema import PRIORITIES

DEFAULT_SETTINGS_FILE = Path(__file__).with_name("default_settings.toml")
SETTINGS_ENV = "CS_METRICS_SETTINGS"


@dataclass(frozen=True)
class SlaPolicy:
    name: str
    priorities: tuple[str, ...] | None
    segments: tuple[str, ...] | None
    first_response_min: tuple[tuple[str, float], ...]  # (priority, target) pairs
    resolution_h: tuple[tuple[str, float], ...]

    def matches(self, priority: str, segment: str) -> bool:
        return (self.priorities is None or priority in self.priorities) and (
            self.segments is None or segment in self.segments
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
    """Assumptions behind Erlang C staffing (see cs_metrics.staffing)."""

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


@dataclass(frozen=True)
class Settings:
    sla_policies: tuple[SlaPolicy, ...]
    targets: tuple[tuple[str, float], ...]
    source: str
    staffing: StaffingSettings

    def target(self, metric: str) -> float | None:
        return dict(self.targets).get(metric)

    def sla_targets(self, priority: str, segment: str) -> tuple[float | None, float | None, str]:
        """(first response minutes, resolution hours, policy name) for one ticket kind."""
        first: float | None = None
        resolution: float | None = None
        names: list[str] = []
        for policy in self.sla_policies:
            if not policy.matches(priority, segment):
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
                        "a fraction in [0, 1), e.g. 0.3 for 30 % of paid time away from "
                        "contacts", lambda x: 0 <= x < 1)
    occupancy = _number(raw.get("max_occupancy"), where("max_occupancy"),
                        "a fraction in (0, 1], e.g. 0.85", lambda x: 0 < x <= 1)
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


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CsMetricsError(f"Settings file {path} does not exist.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CsMetricsError(f"Settings file {path} is not valid TOML: {exc}.") from exc


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by ``path``, else $CS_METRICS_SETTINGS, else ./settings.toml."""
    raw = _read_toml(DEFAULT_SETTINGS_FILE)
    source = "defaults"
    if path is None:
        env = os.environ.get(SETTINGS_ENV)
        if env:
            path = env
        elif Path("settings.toml").is_file():
            path = "settings.toml"
    if path is not None:
        user = _read_toml(Path(path))
        # A user's SLA policy list replaces the default list rather than extending it.
        raw = _merge(raw, user)
        source = str(path)
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
            )
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
    )

"""Settings: SLA policies and KPI targets, from one TOML file merged over the defaults."""

from __future__ import annotations

import os
import tomllib
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
class Settings:
    sla_policies: tuple[SlaPolicy, ...]
    targets: tuple[tuple[str, float], ...]
    source: str

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
    )

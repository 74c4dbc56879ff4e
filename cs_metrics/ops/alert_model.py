"""The alert value type, the rule catalogue, and what the rules and their storage share.

Imported by the alert modules (``alert_rules``, ``alert_store``, ``alerts``) and by
``cs_metrics.ops.notify``, which needs only the ``Alert`` type: so the alert modules import
notify (to deliver) and notify never imports them, and there is no import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import ALERT_SEVERITIES
from cs_metrics.core.warehouse import Warehouse

__all__ = ["RULES", "RULE_INPUTS", "Alert", "RuleInfo", "rules_without_inputs"]


@dataclass(frozen=True)
class RuleInfo:
    name: str
    label: str
    section: str  # settings table, e.g. "alerts.sla"
    kind: str  # "state" resolves when no longer found; "event" expires after active_h


RULES: dict[str, RuleInfo] = {
    r.name: r
    for r in (
        RuleInfo("outage", "Outage suspected", "alerts.outage", "state"),
        RuleInfo("sla_breached", "SLA breached", "alerts.sla", "state"),
        RuleInfo("sla_at_risk", "SLA at risk", "alerts.sla", "state"),
        RuleInfo("ticket_reopened", "Ticket reopened", "alerts.watch", "event"),
        RuleInfo("vip_closed_unanswered", "Closed without a first response", "alerts.watch",
                 "event"),
        RuleInfo("csat_drop", "CSAT drop", "alerts.csat", "state"),
        RuleInfo("emerging_issue", "Emerging issue in comments", "alerts.emerging", "state"),
    )
}

# The inputs each rule reads, named like ``Metric.requires``. A rule whose inputs the dataset
# lacks does not run: without first-response times every open ticket would look unanswered
# and breached, every closed one closed unanswered.
RULE_INPUTS: dict[str, tuple[str, ...]] = {
    "sla_breached": ("first_response_at",),
    "sla_at_risk": ("first_response_at",),
    "vip_closed_unanswered": ("first_response_at",),
    "csat_drop": ("feedback.csat",),
    "emerging_issue": ("feedback.comment",),
}


def rules_without_inputs(wh: Warehouse) -> dict[str, tuple[str, ...]]:
    """Rule -> the inputs it needs that this dataset lacks (rules missing none left out)."""
    if not _has(wh, "tickets"):
        return {}
    present = {f"feedback.{c}" for c in wh.nonempty_columns("feedback")}
    present |= wh.nonempty_columns("tickets_src")
    out = {}
    for rule, needs in RULE_INPUTS.items():
        lacking = tuple(n for n in needs if n not in present)
        if lacking:
            out[rule] = lacking
    return out


# the app's filter query parameters (views/_filter_parts.py); other dimensions are left out of links
_LINK_DIMENSIONS = ("channel", "priority", "domain", "location", "customer_segment", "team",
                    "rep_name")


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Alert:
    """One alert as a rule raised it. ``figures`` is a read-only mapping of the numbers in
    ``message``; ``link`` is a relative app URL to the filtered view."""

    id: str  # stable key "rule:subject": the same condition gives the same id
    rule: str
    severity: str  # info, warning or critical
    title: str
    message: str
    figures: Mapping[str, Any] = field(hash=False)
    link: str
    created_at: datetime
    occurrence_id: str | None = None  # "id#n" once stored by run_alerts

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise CsMetricsError(f"Unknown alert rule {self.rule!r}; rules: {', '.join(RULES)}.")
        if self.severity not in ALERT_SEVERITIES:
            raise CsMetricsError(
                f"Unknown severity {self.severity!r}; use {', '.join(ALERT_SEVERITIES)}."
            )
        object.__setattr__(self, "figures", _freeze(dict(self.figures)))

    def absolute_link(self, app_url: str = "") -> str:
        return f"{app_url.rstrip('/')}{self.link}" if app_url else self.link


def _has(wh: Warehouse, table: str) -> bool:
    return wh.has_table(table)


def _link(page: str, range_: str | None = "last-7-days", date_from: datetime | None = None,
          date_to: datetime | None = None, **dims: Sequence[str] | str | None) -> str:
    params: list[tuple[str, str]] = []
    if date_from is not None and date_to is not None:
        params += [("range", "custom"), ("from", date_from.date().isoformat()),
                   ("to", date_to.date().isoformat())]
    elif range_:
        params.append(("range", range_))
    for dim, values in dims.items():
        if dim not in _LINK_DIMENSIONS or values is None:
            continue
        for v in [values] if isinstance(values, str) else values:
            params.append((dim, str(v)))
    return f"/{page}?{urlencode(params)}" if params else f"/{page}"

"""The what-if engine's headline figures and plain-language summary of a simulated period.
Split from ``cs_metrics.analysis.whatif`` (which re-exports ``WhatIfTotals``) to keep each
module to one concern.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cs_metrics.analysis._whatif_queue import _median, _Runs

if TYPE_CHECKING:  # whatif imports this module: the scenario is only a type here
    from cs_metrics.analysis.whatif import OutageScenario


# --- the result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIfTotals:
    """The period's headline figures (p-figures are medians over the runs unless named)."""

    expected_extra_tickets: float
    extra_tickets_p10: float
    extra_tickets_p50: float
    extra_tickets_p90: float
    peak_backlog_p50: float
    peak_backlog_hour: datetime
    baseline_peak_backlog_p50: float
    peak_first_response_min_p50: float  # the worst hour's mean wait
    peak_first_response_hour: datetime
    baseline_first_response_min_p50: float  # at that same hour, without the outage
    sla_breach_pct_p50: float  # share of all tickets of the reported period
    baseline_sla_breach_pct_p50: float
    max_extra_agents_needed: int
    extra_agent_hours: int
    recovered_at: datetime | None  # backlog back to its baseline level (None: not in the tail)


def _count_text(value: float) -> str:
    n = int(round(value))
    if n >= 100:
        digits = len(str(n)) - 2
        n = int(round(n, -digits))
    return f"{n:,}"


def _tickets(value: float) -> str:
    n = int(round(value))
    return f"{n:,} ticket{'' if n == 1 else 's'}"


def _duration(minutes: float) -> str:
    if not math.isfinite(minutes):
        return "n/a"
    if minutes < 1:
        return "under a minute"
    if minutes < 10:
        return f"{minutes:.1f} min"
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def _when(ts: datetime, ref: datetime) -> str:
    if ts.date() == ref.date():
        return f"{ts:%H:%M}"
    return f"{ts:%a %d %b %H:%M}"


def _hours_text(hours: float) -> str:
    whole = abs(hours - round(hours)) < 1e-9
    value = f"{int(round(hours))}" if whole else f"{hours:.1f}"
    return f"{value} hour{'' if value == '1' else 's'}"


def _agents_text(frame: pd.DataFrame, ref: datetime) -> str:
    """The extra agents clause: what the SLA needs beyond today's staffing and the scenario's
    planned extra staff, around the hour that needs most."""
    needed = frame["extra_agents_needed"].to_numpy(dtype=np.int64)
    planned = frame["extra_staff"].to_numpy(dtype=np.int64)
    short = np.maximum(needed - planned, 0)
    if short.max(initial=0) == 0:
        if planned.max(initial=0) == 0:
            return "today's staffing keeps the SLA in every hour"
        most = int(planned.max())
        upto = "" if (planned[planned > 0] == most).all() else "up to "
        return (f"the planned extra staff ({upto}{most} agent{'s' if most != 1 else ''}) "
                "keeps the SLA in every hour")
    peak = int(np.argmax(short))
    lo = peak
    while lo > 0 and short[lo - 1] > 0:
        lo -= 1
    hi = peak
    while hi + 1 < len(short) and short[hi + 1] > 0:
        hi += 1
    k = int(short[peak])
    same = bool((short[lo:hi + 1] == k).all())
    hour = frame["hour"]
    beyond = " beyond the planned extra staff" if planned.max(initial=0) > 0 else ""
    text = (f"{'' if same else 'up to '}{k} more agent{'s' if k != 1 else ''}{beyond} from "
            f"{_when(hour.iloc[lo].to_pydatetime(), ref)} to "
            f"{_when((hour.iloc[hi] + pd.Timedelta(hours=1)).to_pydatetime(), ref)} "
            f"keep{'s' if k == 1 and same else ''} the SLA")
    others = int((short > 0).sum()) - (hi - lo + 1)
    if others:
        text += (f" ({others} other hour{'s need' if others != 1 else ' needs'} "
                 "some too)")
    return text


def _summary(scenario: OutageScenario, place: str, customers: int, frame: pd.DataFrame,
             totals: WhatIfTotals, sla_minutes: float, tail_hours: int) -> str:
    ref = scenario.start
    if totals.expected_extra_tickets < 0.5:
        why = ("severity none adds no tickets" if scenario.severity == "none"
               else f"no customer lives within {scenario.radius_km:g} km of {place}"
               if customers == 0 else "the rate is too small to add a whole ticket")
        parts = [f"No extra tickets are expected ({why}) over {_hours_text(scenario.hours)}"]
    else:
        parts = [
            f"About {_count_text(totals.expected_extra_tickets)} extra tickets over "
            f"{_hours_text(scenario.hours)} from {customers:,} customers within "
            f"{scenario.radius_km:g} km of {place}"
        ]
    if totals.peak_backlog_p50 > totals.baseline_peak_backlog_p50:
        parts.append(
            f"the backlog peaks at {_tickets(totals.peak_backlog_p50)} waiting at "
            f"{_when(totals.peak_backlog_hour, ref)} (usually at most "
            f"{totals.baseline_peak_backlog_p50:.0f})"
        )
    else:
        parts.append(f"the backlog stays at its usual level (at most "
                     f"{_tickets(totals.baseline_peak_backlog_p50)} waiting)")
    peak_fr, usual_fr = totals.peak_first_response_min_p50, totals.baseline_first_response_min_p50
    # compared hour by hour: a thinly staffed hour is slow with or without the outage
    rises = (frame["first_response_min_p50"] - frame["baseline_first_response_min_p50"]
             > 0.5).any()
    if peak_fr > usual_fr + 0.5:
        fr_text = (f"first response rises to {_duration(peak_fr)} at the peak "
                   f"({_duration(usual_fr)} without the outage)")
    elif rises:
        fr_text = (f"first response peaks at {_duration(peak_fr)}, as it would without the "
                   "outage, and rises in quieter hours")
    else:
        fr_text = ("first response stays at or below its usual level (at most "
                   f"{_duration(peak_fr)} in any hour)" if peak_fr >= 1
                   else "first response stays under a minute")
    parts.append(
        f"{fr_text} and {totals.sla_breach_pct_p50:.0f} % of tickets wait longer than "
        f"{_duration(sla_minutes)} ({totals.baseline_sla_breach_pct_p50:.0f} % without it)"
    )
    parts.append(_agents_text(frame, ref))
    backlog = frame["backlog_p50"].to_numpy()
    if (backlog > frame["baseline_backlog_p50"].to_numpy() + 1e-9).any():
        if totals.recovered_at is None:
            parts.append(f"the backlog is still above its usual level {tail_hours} hours "
                         "after the outage ends")
        else:
            parts.append(f"the backlog is back to its usual level by "
                         f"{_when(totals.recovered_at, ref)}")
    return "; ".join(parts) + "."


def _totals(frame: pd.DataFrame, sim: _Runs, base: _Runs, expected: float) -> WhatIfTotals:
    realised = (sim.arrivals - base.arrivals).sum(axis=1)  # same baseline draws in both
    x10, x50, x90 = np.percentile(realised, [10, 50, 90])
    peak_b = int(np.argmax(frame["backlog_p50"].to_numpy()))
    fr = frame["first_response_min_p50"].to_numpy()
    known = bool(np.isfinite(fr).any())
    peak_f = int(np.nanargmax(fr)) if known else 0
    # recovered: the first hour after the outage from which the backlog stays at its level
    # without the outage
    outage = frame["in_outage"].to_numpy()
    after = np.flatnonzero(~outage)
    after = after[after > np.flatnonzero(outage).max(initial=-1)]
    above = frame["backlog_p50"].to_numpy() > frame["baseline_backlog_p50"].to_numpy() + 1e-9
    recovered_at = next(
        (frame["hour"].iloc[i].to_pydatetime() for i in after if not above[i:].any()), None
    )
    needed = frame["extra_agents_needed"].to_numpy(dtype=np.int64)
    return WhatIfTotals(
        expected_extra_tickets=expected,
        extra_tickets_p10=float(x10),
        extra_tickets_p50=float(x50),
        extra_tickets_p90=float(x90),
        peak_backlog_p50=float(frame["backlog_p50"].iloc[peak_b]),
        peak_backlog_hour=frame["hour"].iloc[peak_b].to_pydatetime(),
        baseline_peak_backlog_p50=float(frame["baseline_backlog_p50"].max()),
        peak_first_response_min_p50=float(fr[peak_f]) if known else math.nan,
        peak_first_response_hour=frame["hour"].iloc[peak_f].to_pydatetime(),
        baseline_first_response_min_p50=float(
            frame["baseline_first_response_min_p50"].iloc[peak_f]),
        sla_breach_pct_p50=_median(sim.breach_share),
        baseline_sla_breach_pct_p50=_median(base.breach_share),
        max_extra_agents_needed=int(needed.max(initial=0)),
        extra_agent_hours=int(needed.sum()),
        recovered_at=recovered_at,
    )

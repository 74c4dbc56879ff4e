"""Notable changes: every (metric, group) of a report's scope tested against the previous period.

Changes are found, not written: counts with a Poisson rate test, percentages with a pooled
two-proportion z-test, times with Welch's t-test on log durations; only movements that are
significant after Benjamini–Hochberg over all the tests, and large enough to matter, are
listed, with the test that found them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime, time
from typing import Any

import pandas as pd

from cs_metrics.analysis.leaderboard import MIN_EFFECT, TESTS
from cs_metrics.core import _stats
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import to_local, utc_moment
from cs_metrics.metrics.registry import Metric, filter_sql, get_metric, query
from cs_metrics.ops.reports.model import DIMENSION_LABELS, ReportScope, ReportTable, _num

# Notable changes: which groups are compared with the previous period, per audience.
CHANGE_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "executive": ("channel", "priority", "domain", "location", "customer_segment", "team"),
    "team": ("channel", "priority", "domain", "customer_segment", "rep_name"),
    "representative": ("channel", "priority", "domain"),
}
COUNT_METRIC = "ticket_count"
PROPORTION_METRICS: tuple[str, ...] = (
    "sla_first_response_pct", "sla_resolution_pct", "fcr_pct", "reopen_pct", "csat_pct",
)
DURATION_METRICS: tuple[str, ...] = ("avg_first_response_min", "avg_resolution_h")
ALPHA = 0.05
MIN_N = 30  # tickets or responses on each side before a percentage or a time is tested
MIN_COUNT_TOTAL = 30  # tickets in both periods together before a count is tested
MIN_COUNT_CHANGE = 0.10  # a count's rate per day must move by 10 % or more
MAX_CHANGES = 10
TEST_NAMES: dict[str, str] = {
    "count": "Poisson rate test (exact conditional binomial test of the two counts, "
             "per day of data)",
    "proportion": "two-proportion z-test (pooled)",
    "duration": "Welch's t-test on log durations",
}
TEST_SHORT: dict[str, str] = {
    "count": "Poisson rate test", "proportion": "two-proportion z-test",
    "duration": "Welch's t-test on log times",
}

def _local_span(wh: Warehouse, tz: str) -> tuple[datetime, datetime] | None:
    """The data's first and last creation moments as local times of ``tz``."""
    span = wh.created_range()
    return None if span is None else (to_local(span[0], tz), to_local(span[1], tz))


def _exposure_days(span: tuple[datetime, datetime] | None, start: date, end: date) -> float:
    """Days of data inside ``[start, end)``: a period the data covers in part counts in part."""
    if span is None:
        return 0.0
    lo = max(datetime.combine(start, time(0)), span[0])
    hi = min(datetime.combine(end, time(0)), span[1])
    return max(0.0, (hi - lo).total_seconds() / 86400)


def _test_stats(wh: Warehouse, scope: ReportScope, dim: str | None,
                proportions: list[str], durations: list[str]) -> pd.DataFrame:
    """Per group and period: the successes and trials of every percentage, and the count,
    mean and variance of every log duration (what the tests need beside the figures)."""
    span = replace(scope.filters, date_from=scope.period.previous_from,
                   date_to=scope.period.date_to)
    where, where_params = filter_sql(span)
    cols = ["count(*) as tickets"]
    params: list[Any] = [utc_moment(scope.period.date_from, scope.filters.tz)]
    for name in proportions:
        spec = TESTS[name]
        cols += [f"{spec.successes} as {name}__s", f"{spec.trials} as {name}__n"]
    for name in durations:
        spec = TESTS[name]
        ok = f"{spec.value} is not null and {spec.value} >= 0"
        cols += [f"count(*) filter (where {ok}) as {name}__n",
                 f"avg(ln({spec.value} + ?)) filter (where {ok}) as {name}__mean",
                 f"var_samp(ln({spec.value} + ?)) filter (where {ok}) as {name}__var"]
        params += [spec.offset, spec.offset]
    group = f"t.{dim}" if dim else "cast(null as varchar)"  # dim: one of CHANGE_DIMENSIONS
    sql = f"""
        with final as (
            select {group} as grp, t.created_at >= ? as is_current, {", ".join(cols)}
            from tickets t
            where {where}
            group by 1, 2
        )
        select * from final
    """
    return wh.df(sql, params + where_params)


def _test_one(kind: str, cur: dict[str, Any], prev: dict[str, Any], name: str,
              days: tuple[float, float]) -> tuple[float, float, int, int] | None:
    """(z, p, n current, n previous) of one metric in one group, or None if not testable."""
    if kind == "count":
        n1, n2 = int(cur["tickets"]), int(prev["tickets"])
        d1, d2 = days
        if n1 + n2 < MIN_COUNT_TOTAL or d1 <= 0 or d2 <= 0:
            return None
        p0 = d1 / (d1 + d2)
        total = n1 + n2
        p = _stats.binomial_test(n1, total, p0)
        z = (n1 - total * p0) / math.sqrt(total * p0 * (1 - p0))
        return z, p, n1, n2
    if kind == "proportion":
        s1, n1 = float(cur[f"{name}__s"]), int(cur[f"{name}__n"])
        s2, n2 = float(prev[f"{name}__s"]), int(prev[f"{name}__n"])
        if n1 < MIN_N or n2 < MIN_N:
            return None
        pooled = (s1 + s2) / (n1 + n2)
        if pooled * (1 - pooled) == 0:  # all or none in both periods: nothing to test
            return None
        z, p = _stats.two_proportion_ztest(s1, n1, s2, n2)
        return z, p, n1, n2
    n1, n2 = int(cur[f"{name}__n"]), int(prev[f"{name}__n"])
    if n1 < MIN_N or n2 < MIN_N:
        return None
    v1, v2 = float(cur[f"{name}__var"]), float(prev[f"{name}__var"])
    if not (v1 > 0 or v2 > 0):
        return None
    t, p = _stats.welch_ttest_from_stats(
        float(cur[f"{name}__mean"]), math.sqrt(max(v1, 0)), n1,
        float(prev[f"{name}__mean"]), math.sqrt(max(v2, 0)), n2)
    return t, p, n1, n2


def _large_enough(kind: str, value: float | None, before: float | None,
                  days: tuple[float, float]) -> bool:
    if value is None or before is None:
        return False
    if kind == "count":
        if days[0] <= 0 or days[1] <= 0 or before == 0:
            return False
        return abs((value / days[0]) / (before / days[1]) - 1) >= MIN_COUNT_CHANGE
    if kind == "proportion":
        return abs(value - before) >= MIN_EFFECT["proportion"]
    return before > 0 and abs(value - before) >= MIN_EFFECT["duration"] * before


def _changes(wh: Warehouse, scope: ReportScope, present: list[str]) -> tuple[ReportTable, int]:
    proportions = [m for m in PROPORTION_METRICS if m in present]
    durations = [m for m in DURATION_METRICS if m in present]
    metrics = [COUNT_METRIC, *proportions, *durations]
    kinds = {COUNT_METRIC: "count", **{m: "proportion" for m in proportions},
             **{m: "duration" for m in durations}}
    span = _local_span(wh, scope.filters.tz)
    p = scope.period
    days = (_exposure_days(span, p.date_from, p.date_to),
            _exposure_days(span, p.previous_from, p.previous_to))
    rows = []
    fixed = dict(scope.filters.where)
    everyone: tuple[int, int] | None = None  # the scope's tickets (current, previous)
    for dim in (None, *CHANGE_DIMENSIONS[scope.audience]):
        if dim in fixed and len(fixed[dim]) == 1:
            continue  # one value: the same groups as the whole scope
        by = [dim] if dim else []
        test: dict[tuple[Any, bool], dict[str, Any]] = {
            (None if pd.isna(r["grp"]) else r["grp"], bool(r["is_current"])): r
            for r in _test_stats(wh, scope, dim, proportions, durations).to_dict("records")
        }
        shown = {}
        for is_current, filters in ((True, scope.current()), (False, scope.previous())):
            for r in query(wh, metrics, by=by, filters=filters).to_dict("records"):
                key = r[dim] if dim else None
                shown[(None if pd.isna(key) else key, is_current)] = r
        for (group, is_current), cur in test.items():
            prev = test.get((group, False))
            if not is_current or prev is None or (dim and group is None):
                continue  # tickets without a value of the dimension: no group to name
            fig_cur, fig_prev = shown.get((group, True)), shown.get((group, False))
            if fig_cur is None or fig_prev is None:
                continue
            counts = (int(cur["tickets"]), int(prev["tickets"]))
            if dim is None:
                everyone = counts
            elif counts == everyone:
                continue  # the group holds every ticket of the scope: the overall row says it
            for name in metrics:
                kind = kinds[name]
                result = _test_one(kind, cur, prev, name, days)
                if result is None:
                    continue
                z, p_value, n1, n2 = result
                rows.append({
                    "dimension": dim, "value": group, "metric": name,
                    "label": get_metric(name).label, "kind": kind,
                    "previous": _num(fig_prev[name]), "current": _num(fig_cur[name]),
                    "z": z, "p_value": p_value, "n_current": n1, "n_previous": n2,
                    "test": TEST_SHORT[kind],
                })
    columns = ["dimension", "value", "metric", "label", "kind", "previous", "current",
               "change", "z", "p_value", "q_value", "n_current", "n_previous", "test",
               "sentence"]
    if not rows:
        return ReportTable("changes", "Notable changes", pd.DataFrame(columns=columns), (),
                           _changes_note(0)), 0
    df = pd.DataFrame(rows)
    df["q_value"] = _stats.benjamini_hochberg(df["p_value"].to_numpy(dtype=float))
    df["change"] = df["current"] - df["previous"]
    large = [
        _large_enough(k, c, pr, days)
        for k, c, pr in zip(df["kind"], df["current"], df["previous"], strict=True)
    ]
    tested = len(df)
    df = df[(df["q_value"] < ALPHA) & pd.Series(large, index=df.index)].copy()
    df["strength"] = df["z"].abs()
    df = df.sort_values(["strength", "metric"], ascending=[False, True]).head(MAX_CHANGES)
    for col in ("dimension", "value"):  # the scope's own row has neither
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["sentence"] = [_change_sentence(row) for _, row in df.iterrows()]
    return ReportTable("changes", "Notable changes", df[columns].reset_index(drop=True), (),
                       _changes_note(tested)), tested


def _changes_note(tested: int) -> str:
    return (
        f"Every figure of the scope, and of each group below it, was compared with the previous "
        f"period ({tested} tests): counts with a {TEST_NAMES['count']}, percentages with a "
        f"{TEST_NAMES['proportion']}, times with {TEST_NAMES['duration']}. Listed: movements "
        f"whose Benjamini–Hochberg q-value is below {ALPHA:g} over all {tested} tests, at least "
        f"{MIN_N} tickets or responses on each side, and large enough to matter "
        f"(counts ±{MIN_COUNT_CHANGE:.0%} per day, percentages ±{MIN_EFFECT['proportion']:g} "
        f"points, times ±{MIN_EFFECT['duration']:.0%}); the {MAX_CHANGES} strongest (largest "
        "|z|) first."
    )


def _change_sentence(row: pd.Series) -> str:
    metric = get_metric(row["metric"])
    where = ("all tickets in scope" if row["dimension"] is None or pd.isna(row["dimension"])
             else f"{DIMENSION_LABELS.get(row['dimension'], row['dimension']).lower()} "
                  f"{row['value']}")
    p_text = "p < 0.001" if row["p_value"] < 0.001 else f"p = {row['p_value']:.3f}"
    change = change_text(metric, row["current"], row["previous"])
    return (f"{metric.label}, {where}: {metric.display(row['previous'])} → "
            f"{metric.display(row['current'])}, {change}; {row['test']}, "
            f"z = {row['z']:+.1f}, {p_text}.")


def change_text(metric: Metric, value: float | None, before: float | None) -> str:
    """The change from ``before`` to ``value`` in the metric's terms: percentages in points,
    counts with their relative change, times and scores in their unit."""
    value, before = _num(value), _num(before)
    if value is None or before is None:
        return "–"
    delta = value - before
    spec = metric.format.lstrip("+")
    if metric.unit == "%":
        return f"{format(delta, '+' + spec)} pp"
    if metric.is_count:
        rel = f" ({100 * delta / before:+.1f} %)" if before else ""
        return f"{format(delta, '+' + spec)}{rel}"
    return f"{format(delta, '+' + spec)} {metric.unit}".rstrip()

"""Honest comparisons: is the difference between two groups real, and how large is it?

Two groups (two channels, two teams, before/after a date, ...) are compared on one registry
metric with a test suited to it and a 95 % confidence interval for the difference:

- percentages (CSAT %, FCR, SLA, negative comments, ...): the pooled two-proportion z-test,
  and Newcombe's hybrid score interval for the difference of the two proportions;
- times (first response, resolution, handle time; mean, median or P90): the Mann-Whitney U
  rank test, and the Hodges-Lehmann shift (the median of all pairwise differences) with its
  distribution-free (Moses) interval, so a few very long tickets neither drive the test nor
  the estimate;
- mean scores (CSAT and CES averages, comment sentiment, NPS as +100/0/-100 per response):
  Welch's t-test and interval for the difference of means.

A group with fewer than ``MIN_GROUP`` observations is not tested: it is flagged as too small.
``resolution_csat`` relates resolution time to CSAT (Spearman) and says that it is a
correlation, not a cause.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from cs_metrics.core import _stats
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.metrics.registry import DIMENSIONS, Filters, filter_sql, get_metric, query

__all__ = [
    "CAUSATION_CAVEAT",
    "COMPARABLE_METRICS",
    "MIN_GROUP",
    "Comparison",
    "Correlation",
    "Group",
    "TestResult",
    "compare_groups",
    "hodges_lehmann",
    "mean_test",
    "rank_test",
    "resolution_csat",
    "two_proportion_test",
]

MIN_GROUP = 30  # fewer observations than this in a group: flagged, not compared
CONFIDENCE = 0.95
# Above this many observations a group's times are compared on a random sample of them (the
# same for test and interval): the interval is then within a few per cent of the full one,
# and the page stays under a second.
MAX_RANK_SAMPLE = 200_000

# metric -> (successes, trials), both SQL sums over the ticket query table ``t``: the
# registry's percentage is 100 * successes / trials
_PROPORTIONS: dict[str, tuple[str, str]] = {
    "csat_pct": ("sum(t.fb_csat_good)", "sum(t.fb_csat_n)"),
    "negative_comment_pct": ("sum(t.fb_sent_neg)", "sum(t.fb_sent_n)"),
    "sla_first_response_pct": (
        "count(*) filter (where t.sla_first_response_met)",
        "count(*) filter (where t.sla_first_response_met is not null)"),
    "sla_resolution_pct": (
        "count(*) filter (where t.sla_resolution_met)",
        "count(*) filter (where t.sla_resolution_met is not null)"),
    "fcr_pct": (
        "count(*) filter (where t.status = 'closed' and t.contacts = 1 "
        "and coalesce(t.reopened_count, 0) = 0)",
        "count(*) filter (where t.status = 'closed' and t.contacts is not null)"),
    "reopen_pct": (
        "count(*) filter (where t.status = 'closed' and t.reopened_count > 0)",
        "count(*) filter (where t.status = 'closed' and t.reopened_count is not null)"),
    "response_rate_pct": (
        "count(*) filter (where t.status = 'closed' and t.has_feedback)",
        "count(*) filter (where t.status = 'closed')"),
}
# metric -> (table, per-observation value); durations use the rank test
_DURATIONS: dict[str, str] = {
    "avg_first_response_min": "t.first_response_min",
    "median_first_response_min": "t.first_response_min",
    "p90_first_response_min": "t.first_response_min",
    "avg_resolution_h": "t.resolution_h",
    "median_resolution_h": "t.resolution_h",
    "p90_resolution_h": "t.resolution_h",
    "aht_min": "t.handle_time_s / 60.0",
}
# mean scores, one value per survey response (feedback_facts)
_SCORES: dict[str, str] = {
    "csat_avg": "t.csat",
    "ces_avg": "t.ces",
    "sentiment_avg": "t.sentiment",
    "nps": "case when t.nps >= 9 then 100.0 when t.nps <= 6 then -100.0 else 0.0 end",
}
_SCORE_COLUMN = {"csat_avg": "csat", "ces_avg": "ces", "sentiment_avg": "sentiment",
                 "nps": "nps"}

COMPARABLE_METRICS: tuple[str, ...] = (*_PROPORTIONS, *_DURATIONS, *_SCORES)

CAUSATION_CAVEAT = (
    "Correlation is not causation: slow tickets are also the hard ones (complex problems, "
    "outages, reopened cases, demanding customers), so this does not say how much faster "
    "resolution would raise CSAT. Compare like with like (one domain, one priority) before "
    "acting on it."
)


# --- the statistics ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    """A difference (first group minus second), its interval and a two-sided test."""

    estimate: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    test: str


def _z(confidence: float) -> float:
    return _stats.normal_quantile(confidence)


def _wilson(x: int, n: int, z: float) -> tuple[float, float]:
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def two_proportion_test(
    x1: int, n1: int, x2: int, n2: int, confidence: float = CONFIDENCE
) -> TestResult:
    """p1 - p2 with Newcombe's hybrid score interval (his method 10) and the pooled
    two-proportion z-test (two-sided). Proportions are 0-1."""
    if n1 <= 0 or n2 <= 0:
        raise CsMetricsError("Both groups need at least one observation to compare.")
    z = _z(confidence)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = _wilson(x1, n1, z)
    l2, u2 = _wilson(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    # all successes or none in both groups: z = 0, p = 1 (no evidence either way)
    stat, p = _stats.two_proportion_ztest(x1, n1, x2, n2)
    return TestResult(d, low, high, stat, p, "pooled two-proportion z-test")


def _kth_difference(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """The k-th smallest (1-based) of the len(a) * len(b) differences a[i] - b[j], without
    forming them all: a search on the value (counting the pairs below a value with sorted
    searches, interpolating between the counts, halving the interval when that stalls)
    until few enough differences remain in the interval to list them."""
    def count(d: float) -> np.ndarray:  # per j: how many i have a[i] <= b[j] + d
        return np.searchsorted(a, b + d, side="right")

    lo, hi = float(a[0] - b[-1]) - 1.0, float(a[-1] - b[0])
    c_lo, c_hi = count(lo), count(hi)  # invariant: sum(c_lo) < k <= sum(c_hi)
    n_lo, n_hi = int(c_lo.sum()), int(c_hi.sum())
    few = max(100_000, 4 * (len(a) + len(b)))
    step = 0
    while n_hi - n_lo > few:
        if step % 2 == 0:  # interpolate, kept away from the ends so the interval shrinks
            frac = min(max((k - n_lo) / (n_hi - n_lo), 0.05), 0.95)
        else:
            frac = 0.5
        step += 1
        mid = lo + (hi - lo) * frac
        if not lo < mid < hi or hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
            # a pile of tied differences: the answer is the largest one counted at hi
            ok = c_hi > 0
            return float(np.max(a[c_hi[ok] - 1] - b[ok]))
        c_mid = count(mid)
        n_mid = int(c_mid.sum())
        if n_mid >= k:
            hi, c_hi, n_hi = mid, c_mid, n_mid
        else:
            lo, c_lo, n_lo = mid, c_mid, n_mid
    lengths = c_hi - c_lo
    j = np.repeat(np.arange(len(b)), lengths)
    first = np.repeat(c_lo - np.cumsum(lengths) + lengths, lengths)
    i = first + np.arange(int(lengths.sum()))
    diffs = np.sort(a[i] - b[j])
    return float(diffs[min(k - n_lo, len(diffs)) - 1])


def hodges_lehmann(
    a: np.ndarray | list[float], b: np.ndarray | list[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """The Hodges-Lehmann shift (median of all a[i] - b[j]) and its Moses interval.

    The interval's ends are order statistics of the pairwise differences picked with the
    normal approximation of the Mann-Whitney distribution (no tie correction), as in
    Hollander & Wolfe. Works for large groups: nothing of size len(a) * len(b) is built.
    """
    a = np.sort(np.asarray(a, dtype="float64"))
    b = np.sort(np.asarray(b, dtype="float64"))
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise CsMetricsError("Both groups need at least one observation to compare.")
    total = n1 * n2
    if total % 2:
        estimate = _kth_difference(a, b, total // 2 + 1)
    else:
        estimate = (_kth_difference(a, b, total // 2) + _kth_difference(a, b, total // 2 + 1)) / 2
    z = _z(confidence)
    c = int(math.floor(total / 2 - z * math.sqrt(total * (n1 + n2 + 1) / 12)))
    if c < 1:  # too few observations for an interval at this confidence
        return estimate, -math.inf, math.inf
    return estimate, _kth_difference(a, b, c), _kth_difference(a, b, total + 1 - c)


def rank_test(
    a: np.ndarray | list[float], b: np.ndarray | list[float], confidence: float = CONFIDENCE
) -> TestResult:
    """Mann-Whitney U (two-sided; exact for small groups without ties, else the normal
    approximation with tie and continuity corrections, as scipy decides) and the
    Hodges-Lehmann shift of a against b with its interval."""
    a = np.asarray(a, dtype="float64")
    b = np.asarray(b, dtype="float64")
    res = _stats.mann_whitney(a, b)
    est, low, high = hodges_lehmann(a, b, confidence)
    return TestResult(est, low, high, float(res.statistic), float(res.pvalue),
                      "Mann-Whitney U rank test; Hodges-Lehmann shift")


def mean_test(
    a: np.ndarray | list[float], b: np.ndarray | list[float], confidence: float = CONFIDENCE
) -> TestResult:
    """Welch's t-test (two-sided) and interval for mean(a) - mean(b)."""
    a = np.asarray(a, dtype="float64")
    b = np.asarray(b, dtype="float64")
    if len(a) < 2 or len(b) < 2:
        raise CsMetricsError("Both groups need at least two observations to compare means.")
    res = _stats.welch_ttest(a, b)
    d = float(a.mean() - b.mean())
    if not np.isfinite(res.statistic):  # no spread at all in either group
        return TestResult(d, d, d, 0.0 if d == 0 else math.inf, 1.0 if d == 0 else 0.0,
                          "Welch's t-test")
    ci = res.confidence_interval(confidence)
    return TestResult(d, float(ci.low), float(ci.high), float(res.statistic),
                      float(res.pvalue), "Welch's t-test")


# --- groups of the warehouse -------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One side of a comparison: dimension values and/or a date range (on created_at),
    applied on top of the page's filters (a dimension it names replaces the page's)."""

    label: str
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    date_from: date | datetime | None = None
    date_to: date | datetime | None = None

    @staticmethod
    def build(label: str, date_from: date | datetime | None = None,
              date_to: date | datetime | None = None,
              **where: str | list[str] | tuple[str, ...]) -> Group:
        f = Filters.build(**where)
        return Group(label, f.where, date_from, date_to)

    def filters(self, base: Filters | None = None) -> Filters:
        base = base or Filters()
        for dim, _ in self.where:
            if dim not in DIMENSIONS:
                raise CsMetricsError(
                    f"Unknown dimension {dim!r}; valid dimensions: {', '.join(DIMENSIONS)}."
                )
        mine = dict(self.where)
        where = tuple(sorted({**dict(base.where), **mine}.items()))
        starts = [d for d in (base.date_from, self.date_from) if d is not None]
        ends = [d for d in (base.date_to, self.date_to) if d is not None]
        return Filters(max(starts, key=_ts) if starts else None,
                       min(ends, key=_ts) if ends else None, where, base.tz)


def _ts(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)


@dataclass(frozen=True)
class Comparison:
    """Group A against group B on one metric. ``difference`` is A minus B in the metric's
    unit (percentage points for percentages; for times the Hodges-Lehmann shift, which is
    not the difference of the two shown values)."""

    metric: str
    label_a: str
    label_b: str
    value_a: float | None
    value_b: float | None
    n_a: int
    n_b: int
    unit_of_n: str  # what was counted: "CSAT responses", "closed tickets", ...
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str
    confidence: float = CONFIDENCE
    note: str = ""  # why there is no test ("too few ..."), else empty
    details: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 1 - self.confidence

    @property
    def verdict(self) -> str:
        """One sentence a lead can act on."""
        m = get_metric(self.metric)
        if self.difference is None:
            return self.note
        unit = " points" if m.unit == "%" else (f" {m.unit}" if m.unit not in ("", "score")
                                                else "")
        diff = _num(abs(self.difference))
        low, high = (_num(v) for v in (self.ci_low, self.ci_high))
        what = "typically " if self.metric in _DURATIONS else ""
        if self.difference == 0:
            side = f"{self.label_a} and {self.label_b} do not differ"
        else:
            word = "higher" if self.difference > 0 else "lower"
            side = f"{m.label} is {what}{diff}{unit} {word} for {self.label_a} than for " \
                   f"{self.label_b}"
        interval = f"{int(round(self.confidence * 100))} % interval {low} to {high}{unit}"
        if self.significant:
            end = "unlikely to be chance."
        else:
            end = "this could well be chance."
        return f"{side} ({interval}; {self.test}, {p_text(self.p_value)}): {end}"


def _num(value: float) -> str:
    """A difference as people read it: 1,234 / 12.3 / 1.23 / 0.012; no "-0"; ±∞."""
    if not np.isfinite(value):
        return "−∞" if value < 0 else "∞"
    size = abs(value)
    text = (f"{value:,.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else
            f"{value:.2f}" if size >= 1 else f"{value:.2g}")
    return "0" if float(text.replace(",", "")) == 0 else text


def p_text(p: float | None) -> str:
    """``p = 0.012``; below what a double can tell apart from 0, ``p < 1e-16``."""
    if p is None or not np.isfinite(p):
        return "p unknown"
    return "p < 1e-16" if p < 1e-16 else f"p = {p:.2g}"


def _scalar_query(wh: Warehouse, sql: str, params: list) -> tuple:
    return tuple(wh.connection().execute(sql, params).fetchall()[0])


def _values(wh: Warehouse, table: str, expr: str, where: str, params: list) -> np.ndarray:
    rows = wh.df(f"select {expr} as v from {table} t where {where} and {expr} is not null",
                 params)
    return rows["v"].to_numpy(dtype="float64")


def compare_groups(
    wh: Warehouse,
    metric: str,
    a: Group,
    b: Group,
    filters: Filters | None = None,
    *,
    confidence: float = CONFIDENCE,
    min_group: int = MIN_GROUP,
) -> Comparison:
    """Compare ``a`` against ``b`` on ``metric`` within ``filters``; see the module notes."""
    m = get_metric(metric)
    if metric not in COMPARABLE_METRICS:
        raise CsMetricsError(
            f"{m.label} ({metric}) is a count, not a rate or a time: compare one of "
            f"{', '.join(COMPARABLE_METRICS)}."
        )
    fa, fb = a.filters(filters), b.filters(filters)
    value_a, value_b = (
        float(query(wh, [metric], filters=f)[metric].iloc[0]) for f in (fa, fb)
    )
    value_a, value_b = (None if pd.isna(v) else v for v in (value_a, value_b))
    wa, pa = filter_sql(fa)
    wb, pb = filter_sql(fb)
    base = dict(metric=metric, label_a=a.label, label_b=b.label, value_a=value_a,
                value_b=value_b, confidence=confidence)
    if metric in _PROPORTIONS:
        succ, trials = _PROPORTIONS[metric]
        sql = f"select coalesce({succ}, 0), coalesce({trials}, 0) from tickets t where {{}}"
        xa, na = (int(v) for v in _scalar_query(wh, sql.format(wa), pa))
        xb, nb = (int(v) for v in _scalar_query(wh, sql.format(wb), pb))
        unit = {"csat_pct": "CSAT responses", "negative_comment_pct": "comments"}.get(
            metric, "tickets")
        small = _small(na, nb, min_group, unit, a.label, b.label)
        if small:
            return Comparison(**base, n_a=na, n_b=nb, unit_of_n=unit, difference=None,
                              ci_low=None, ci_high=None, p_value=None, test="", note=small)
        r = two_proportion_test(xa, na, xb, nb, confidence)
        return Comparison(**base, n_a=na, n_b=nb, unit_of_n=unit,
                          difference=100 * r.estimate, ci_low=100 * r.ci_low,
                          ci_high=100 * r.ci_high, p_value=r.p_value, test=r.test,
                          details={"successes": (xa, xb), "z": r.statistic})
    if metric in _DURATIONS:
        table, expr = "tickets", _DURATIONS[metric]
        unit = "tickets"
        tester = rank_test
    else:
        if not wh.has_table("feedback_facts") or _SCORE_COLUMN[metric] not in \
                wh.columns("feedback_facts"):
            raise CsMetricsError(
                f"This warehouse has no {m.label.lower()} per response; re-ingest the data "
                "to compare it."
            )
        table, expr = "feedback_facts", _SCORES[metric]
        unit = "comments" if metric == "sentiment_avg" else "responses"
        tester = mean_test
    va = _values(wh, table, expr, wa, pa)
    vb = _values(wh, table, expr, wb, pb)
    small = _small(len(va), len(vb), min_group, unit, a.label, b.label)
    if small:
        return Comparison(**base, n_a=len(va), n_b=len(vb), unit_of_n=unit, difference=None,
                          ci_low=None, ci_high=None, p_value=None, test="", note=small)
    details: dict = {}
    if tester is rank_test and max(len(va), len(vb)) > MAX_RANK_SAMPLE:
        rng = np.random.default_rng(0)
        sa, sb = (v if len(v) <= MAX_RANK_SAMPLE else
                  rng.choice(v, MAX_RANK_SAMPLE, replace=False) for v in (va, vb))
        details["sampled"] = (len(sa), len(sb))
        r = tester(sa, sb, confidence)
        test = f"{r.test} (on a random sample of {MAX_RANK_SAMPLE:,} per larger group)"
    else:
        r = tester(va, vb, confidence)
        test = r.test
    details["statistic"] = r.statistic
    return Comparison(**base, n_a=len(va), n_b=len(vb), unit_of_n=unit,
                      difference=r.estimate, ci_low=r.ci_low, ci_high=r.ci_high,
                      p_value=r.p_value, test=test, details=details)


def _small(na: int, nb: int, min_group: int, unit: str, la: str, lb: str) -> str:
    few = [f"{label} has {n:,} {unit}" for label, n in ((la, na), (lb, nb)) if n < min_group]
    if not few:
        return ""
    return (f"Too few to compare: {' and '.join(few)}; at least {min_group} are needed "
            "before a difference means anything.")


# --- resolution time and CSAT ------------------------------------------------------------------

# resolution-time bands (hours) for the view: label, lower bound inclusive
RESOLUTION_BANDS: tuple[tuple[str, float], ...] = (
    ("< 1 h", 0.0), ("1–4 h", 1.0), ("4–12 h", 4.0), ("12–24 h", 12.0), ("1–3 days", 24.0),
    ("3–7 days", 72.0), ("7+ days", 168.0),
)
MAX_CORRELATION_SAMPLE = 200_000


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation of resolution hours with CSAT, per closed ticket with a
    CSAT answer (its mean CSAT when it has several), and CSAT by resolution band."""

    rho: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int  # tickets in the correlation (a deterministic sample above the cap)
    total: int  # tickets with a resolution time and CSAT in the filters
    bands: pd.DataFrame  # band, tickets, csat_responses, csat_pct, csat_avg, note
    caveat: str = CAUSATION_CAVEAT

    @property
    def summary(self) -> str:
        if self.rho is None:
            return (f"Too few closed tickets with a CSAT answer ({self.total:,}) to relate "
                    "resolution time to CSAT.")
        strength = abs(self.rho)
        word = ("no" if strength < 0.1 else "a weak" if strength < 0.3 else
                "a moderate" if strength < 0.5 else "a strong")
        sign = "" if strength < 0.1 else (" negative" if self.rho < 0 else " positive")
        sampled = f" (a sample of {self.n:,} of {self.total:,})" if self.n < self.total else ""
        return (f"Spearman's ρ = {self.rho:.2f} (95 % interval {self.ci_low:.2f} to "
                f"{self.ci_high:.2f}, {p_text(self.p_value)}) over {self.n:,} closed tickets "
                f"with CSAT{sampled}: {word}{sign} association"
                + (" — slower resolution goes with lower CSAT." if self.rho <= -0.1 else "."))


def resolution_csat(
    wh: Warehouse, filters: Filters | None = None, *, min_n: int = MIN_GROUP,
    max_sample: int = MAX_CORRELATION_SAMPLE,
) -> Correlation:
    """Resolution time against CSAT, per ticket; see ``Correlation``."""
    where, params = filter_sql(filters or Filters())
    cond = f"{where} and t.resolution_h is not null and t.fb_csat_n > 0"
    cases = " ".join(f"when t.resolution_h >= {lo!r} then {i}"
                     for i, (_, lo) in reversed(list(enumerate(RESOLUTION_BANDS))))
    bands = wh.df(
        f"""
        select case {cases} end as band_no, count(*) as tickets,
            sum(t.fb_csat_n) as csat_responses,
            100.0 * sum(t.fb_csat_good) / sum(t.fb_csat_n) as csat_pct,
            sum(t.fb_csat_sum) * 1.0 / sum(t.fb_csat_n) as csat_avg
        from tickets t where {cond} group by band_no order by band_no
        """,
        params,
    )
    full = pd.DataFrame({"band_no": range(len(RESOLUTION_BANDS)),
                         "band": [b for b, _ in RESOLUTION_BANDS]})
    bands = full.merge(bands, on="band_no", how="left").drop(columns="band_no")
    for col in ("tickets", "csat_responses"):
        bands[col] = bands[col].fillna(0).astype("int64")
    bands["note"] = np.where(bands["csat_responses"] < min_n, "few responses", "")
    total = int(bands["tickets"].sum())
    if total < max(min_n, 3):
        return Correlation(None, None, None, None, 0, total, bands)
    # a deterministic sample keeps the ranks cheap at ten million tickets
    pairs = wh.df(
        f"select t.resolution_h as h, t.fb_csat_sum * 1.0 / t.fb_csat_n as csat "
        f"from tickets t where {cond} order by hash(t.ticket_id) limit ?",
        [*params, max_sample],
    )
    n = len(pairs)
    if pairs["h"].nunique() < 2 or pairs["csat"].nunique() < 2:
        return Correlation(None, None, None, None, n, total, bands)
    rho, p = _stats.spearman(pairs["h"], pairs["csat"])
    # Fisher z with the Bonett-Wright standard error for Spearman's rho
    se = math.sqrt((1 + rho * rho / 2) / (n - 3))
    zr = math.atanh(max(min(rho, 0.999999), -0.999999))
    zc = _z(CONFIDENCE)
    return Correlation(rho, math.tanh(zr - zc * se), math.tanh(zr + zc * se), float(p), n,
                       total, bands)

"""Leaderboards per representative, team and manager, and representatives whose figures are
unusual once their ticket mix is accounted for.

Every figure shown comes from the metric registry (``cs_metrics.metrics.registry.query``).
The test in
``unusual`` also needs per-group counts and log-scale spreads that are not metrics; that one
small query lives here, with ``?`` parameters and identifiers taken only from allow-lists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from cs_metrics.core import _stats
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.metrics.registry import Filters, filter_sql, get_metric, missing_inputs, query

Level = Literal["rep", "team", "manager"]

LEVELS: dict[str, tuple[str, ...]] = {
    "rep": ("rep_id", "rep_name", "team", "manager"),
    "team": ("team",),
    "manager": ("manager",),
}

LEADERBOARD_METRICS: tuple[str, ...] = (
    "ticket_count", "avg_first_response_min", "avg_resolution_h", "open_count",
    "in_progress_count", "closed_count", "sla_first_response_pct", "fcr_pct", "csat_pct",
)

# The columns a lead can pick on the Representatives page, and the ones shown at first (those
# whose inputs the dataset has: see ``default_columns``). "Open" is not a default: tickets
# assigned to a representative are rarely still open, so it is zero for almost everyone.
BOARD_COLUMNS: tuple[str, ...] = (
    "ticket_count", "median_first_response_min", "avg_first_response_min",
    "median_resolution_h", "avg_resolution_h", "sla_first_response_pct", "sla_resolution_pct",
    "fcr_pct", "reopen_pct", "aht_min", "csat_pct", "nps", "open_count", "in_progress_count",
    "closed_count",
)
DEFAULT_BOARD_COLUMNS: tuple[str, ...] = (
    "ticket_count", "median_first_response_min", "avg_first_response_min",
    "median_resolution_h", "sla_first_response_pct", "fcr_pct", "reopen_pct", "aht_min",
    "csat_pct", "nps",
)

MIX_DIMENSIONS: tuple[str, ...] = ("priority", "domain")
HIGH_PRIORITIES: tuple[str, ...] = ("high", "urgent")
MIN_TICKETS = 30
ALPHA = 0.05
# What counts as a notable change between periods in reports: durations relative to the
# earlier figure, percentages in percentage points.
MIN_EFFECT: dict[str, float] = {"duration": 0.10, "proportion": 5.0}
# Over months of tickets a difference of a few minutes is "significant" yet nothing a lead
# should act on: a flag also needs a difference this large. Durations: the ratio of observed
# to expected, either way (1.5 = half as slow again, or two thirds of the time); percentages:
# percentage points. On generated data with a realistic spread of skill this flags a handful.
FLAG_MIN_EFFECT: dict[str, float] = {"duration": 1.5, "proportion": 10.0}
SMALL = "small difference"
NO_DOMAIN = "(no domain)"


@dataclass(frozen=True)
class UnusualSpec:
    """How a metric is tested: the mean of a duration on the log scale, or a proportion.

    The SQL fragments are fixed strings of this module (an allow-list), never user input.
    """

    metric: str
    kind: Literal["duration", "proportion"]
    # duration: the per-ticket value column and the offset that keeps log() finite at zero
    value: str = ""
    offset: float = 0.0
    # proportion: successes and trials per ticket row
    successes: str = ""
    trials: str = ""


_CLOSED = "t.status = 'closed'"

TESTS: dict[str, UnusualSpec] = {
    s.metric: s
    for s in (
        # offsets: one second in the metric's unit (durations are stored to the second)
        UnusualSpec("avg_resolution_h", "duration", value="t.resolution_h", offset=1 / 3600),
        UnusualSpec("avg_first_response_min", "duration", value="t.first_response_min",
                 offset=1 / 60),
        UnusualSpec("sla_first_response_pct", "proportion",
                 successes="count(*) filter (where t.sla_first_response_met)",
                 trials="count(*) filter (where t.sla_first_response_met is not null)"),
        UnusualSpec("sla_resolution_pct", "proportion",
                 successes="count(*) filter (where t.sla_resolution_met)",
                 trials="count(*) filter (where t.sla_resolution_met is not null)"),
        UnusualSpec("fcr_pct", "proportion",
                 successes=f"count(*) filter (where {_CLOSED} and t.contacts = 1 "
                           "and coalesce(t.reopened_count, 0) = 0)",
                 trials=f"count(*) filter (where {_CLOSED} and t.contacts is not null)"),
        UnusualSpec("reopen_pct", "proportion",
                 successes=f"count(*) filter (where {_CLOSED} and t.reopened_count > 0)",
                 trials=f"count(*) filter (where {_CLOSED} and t.reopened_count is not null)"),
        UnusualSpec("csat_pct", "proportion",
                 successes="coalesce(sum(t.fb_csat_good), 0)",
                 trials="coalesce(sum(t.fb_csat_n), 0)"),
    )
}

TEST_EXPLANATION = (
    "Each representative's expected figure is what their own ticket mix would give at "
    "everyone's rate: the average of the metric in every (priority, domain) cell, weighted by "
    "the representative's tickets in that cell. Observed and expected are compared cell by "
    "cell against the other representatives in a stratified z-test: durations on the log "
    "scale (so a few very long tickets do not dominate), percentages as a two-proportion test "
    "with the pooled rate of each cell. P-values are corrected for the number of "
    "representatives tested (Benjamini–Hochberg); a representative is flagged when the "
    "corrected q-value is below {alpha:g}, they have at least {min_n} tickets with a value, "
    "and the difference is large enough to matter: at least {min_ratio:g}× the expected "
    "figure or 1/{min_ratio:g} of it for times, at least {min_pp:g} percentage points for "
    "percentages. Flagged representatives are ranked by the size of the difference. A significant "
    "difference below that is marked \"small difference\". Smaller groups are marked "
    "\"too few tickets\" and not tested."
)


def leaderboard(
    wh: Warehouse,
    filters: Filters | None = None,
    level: Level = "rep",
    metrics: tuple[str, ...] | list[str] = LEADERBOARD_METRICS,
) -> pd.DataFrame:
    """One row per representative (rep_id, rep_name, team, manager), team or manager, with
    the registry metrics; tickets without one are left out. Sorted by ticket count."""
    keys = _level_keys(level)
    df = query(wh, list(metrics), by=list(keys), filters=filters)
    df = df[df[keys[0]].notna()]
    sort = ["ticket_count"] if "ticket_count" in df.columns else []
    df = df.sort_values([*sort, keys[0]], ascending=[False] * len(sort) + [True], kind="stable")
    return df.reset_index(drop=True)


def default_columns(wh: Warehouse) -> tuple[str, ...]:
    """``DEFAULT_BOARD_COLUMNS`` without the metrics whose inputs this dataset lacks."""
    return tuple(m for m in DEFAULT_BOARD_COLUMNS if not missing_inputs(get_metric(m), wh))


def format_q(q: float | None) -> str:
    """A q- or p-value as a lead reads it: "< 0.0001" below that, "–" when not tested."""
    if q is None or pd.isna(q):
        return "–"
    return "< 0.0001" if q < 0.0001 else f"{q:.4f}"


def unusual_sentence(metric: str, observed: float, expected: float) -> str:
    """One plain sentence: what differs and by how much, e.g. "Avg first response 42.0 min
    against 18.0 min expected for their mix (2.3× as long)"."""
    m = get_metric(metric)
    head = f"{m.label} {m.display(observed)} against {m.display(expected)} expected for their mix"
    if TESTS[metric].kind == "duration":
        if expected > 0 and observed >= expected:
            return f"{head} ({observed / expected:.1f}× as long)"
        if observed > 0:
            return f"{head} ({expected / observed:.1f}× as fast)"
        return head
    diff = observed - expected
    return f"{head} ({abs(diff):.1f} points {'higher' if diff >= 0 else 'lower'})"


def _effect_size(kind: str, observed: pd.Series, expected: pd.Series) -> pd.Series:
    """Durations: observed / expected or its inverse, whichever is at least 1; percentages:
    the absolute difference in points."""
    if kind == "duration":
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = observed.astype(float) / expected.astype(float)
            return pd.Series(np.where(ratio >= 1, ratio, 1 / ratio), index=observed.index)
    return (observed - expected).abs().astype(float)


def _level_keys(level: str) -> tuple[str, ...]:
    try:
        return LEVELS[level]
    except KeyError:
        raise CsMetricsError(
            f"Unknown leaderboard level {level!r}; use {', '.join(LEVELS)}."
        ) from None


def spec_for(metric: str) -> UnusualSpec:
    get_metric(metric)  # an unknown name gets the registry's message
    try:
        return TESTS[metric]
    except KeyError:
        raise CsMetricsError(
            f"{metric!r} cannot be tested for unusual representatives; use one of "
            f"{', '.join(TESTS)}."
        ) from None


def _cell_stats(wh: Warehouse, filters: Filters, spec: UnusualSpec) -> pd.DataFrame:
    """Per (rep, priority, domain): n with a value, and the mean and spread of the log value
    (durations) or the successes (proportions)."""
    where, params = filter_sql(filters)
    keys = "t.rep_id, t.priority, t.domain"
    if spec.kind == "duration":
        sql = f"""
            with logs as (
                select {keys}, ln({spec.value} + ?) as y
                from tickets t
                where {where} and t.rep_id is not null and {spec.value} is not null
                    and {spec.value} >= 0
            ),
            final as (
                select rep_id, priority, domain, count(*) as n, avg(y) as mean,
                    sum(y * y) as sumsq
                from logs group by rep_id, priority, domain
            )
            select * from final
        """
        return wh.df(sql, [spec.offset, *params])
    sql = f"""
        with final as (
            select {keys}, {spec.trials} as n, {spec.successes} as successes
            from tickets t
            where {where} and t.rep_id is not null
            group by {keys}
        )
        select * from final where n > 0
    """
    return wh.df(sql, params)


@dataclass(frozen=True)
class _Cells:
    """Per (rep, cell) rows as arrays, so the repeated test is a few bincounts."""

    reps: np.ndarray  # rep ids, by code
    rep: np.ndarray  # rep code per row
    cell: np.ndarray  # cell code per row
    n: np.ndarray
    total: np.ndarray  # sum of values (log durations, or successes)
    sumsq: np.ndarray  # sum of squared log durations (durations only)
    kind: str

    @staticmethod
    def of(cells: pd.DataFrame, kind: str) -> _Cells:
        rep, reps = pd.factorize(cells["rep_id"])
        cell, _ = pd.factorize(pd.MultiIndex.from_arrays(
            [cells["priority"], cells["domain"].fillna(NO_DOMAIN)]))
        n = cells["n"].to_numpy(dtype=float)
        if kind == "duration":
            total = cells["mean"].to_numpy(dtype=float) * n
            sumsq = cells["sumsq"].to_numpy(dtype=float)
        else:
            total = cells["successes"].to_numpy(dtype=float)
            sumsq = np.zeros_like(n)
        return _Cells(np.asarray(reps), rep, cell, n, total, sumsq, kind)


def _stratified_z(c: _Cells, in_reference: np.ndarray) -> pd.DataFrame:
    """_stratified_arrays as a frame indexed by rep_id."""
    n_rep, scale_diff, z, p_value = _stratified_arrays(c, in_reference)
    return pd.DataFrame({
        "n": n_rep.round().astype("int64"),
        "scale_diff": scale_diff,
        "z": z,
        "p_value": p_value,
    }, index=pd.Index(c.reps, name="rep_id"))


def _stratified_arrays(c: _Cells, in_reference: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per rep: difference of the rep's mean from its mix-expected mean (on the test scale),
    its standard error under "no difference within any cell", z and the two-sided p-value.

    Each cell's expected value and spread s^2 come from the reference reps. In a cell c with
    N reference tickets, of which the rep has n when the rep is in the reference (else 0),
    and m = N - n others, the rep's mean minus the cell mean is (m / N) (rep mean - others'
    mean), with variance (m / N)^2 s^2 (1/n + 1/m) under the null. Cells are independent, so
    the rep's difference (cell differences weighted by n / n_rep) has the summed variance.
    With one cell this is the textbook pooled two-sample z-test.
    """
    mine = in_reference[c.rep]
    cells = int(c.cell.max()) + 1
    big_n = np.bincount(c.cell, weights=c.n * mine, minlength=cells)
    big_t = np.bincount(c.cell, weights=c.total * mine, minlength=cells)
    with np.errstate(divide="ignore", invalid="ignore"):
        cell_mean = big_t / big_n
        if c.kind == "duration":
            big_ss = np.bincount(c.cell, weights=c.sumsq * mine, minlength=cells)
            cell_var = np.where(big_n > 1, (big_ss - big_n * cell_mean**2) / (big_n - 1),
                                np.nan).clip(min=0)
        else:
            cell_var = cell_mean * (1 - cell_mean)
        total, mu, s2 = big_n[c.cell], cell_mean[c.cell], cell_var[c.cell]
        m = total - c.n * mine
        # a cell no other reference rep works in says nothing about the rep: weight zero
        informative = (m > 0) & np.isfinite(mu) & np.isfinite(s2)
        var_cell = (m / total) ** 2 * s2 * (1 / c.n + 1 / m)
        diff = c.total / c.n - mu
        w_diff = np.where(informative, c.n * diff, 0.0)
        w2_var = np.where(informative, c.n**2 * var_cell, 0.0)
        reps = len(c.reps)
        n_rep = np.bincount(c.rep, weights=c.n, minlength=reps)
        scale_diff = np.bincount(c.rep, weights=w_diff, minlength=reps) / n_rep
        se = np.sqrt(np.bincount(c.rep, weights=w2_var, minlength=reps)) / n_rep
        z = np.where(se > 0, scale_diff / se, np.nan)
    return n_rep, scale_diff, z, _stats.normal_p(z)


def _reference_reps(
    cells: pd.DataFrame, kind: str, min_tickets: int, alpha: float
) -> tuple[set[str], pd.DataFrame]:
    """The reps that set the expected values, and every rep's test against them.

    One very unusual rep shifts every cell's average and would make everyone else look
    unusual the other way; so the most unusual rep, while flagged, leaves the reference and
    the test is repeated, until no reference rep is flagged or one more would leave the
    reference without a strict majority of the tested reps.
    """
    c = _Cells.of(cells, kind)
    in_reference = np.ones(len(c.reps), dtype=bool)
    tested = np.bincount(c.rep, weights=c.n, minlength=len(c.reps)) >= min_tickets
    removed = 0
    while True:  # in arrays: one round per rep that leaves, dozens for a big team
        n_rep, scale_diff, z, p_value = _stratified_arrays(c, in_reference)
        z[~tested] = np.nan
        p_value[~tested] = np.nan
        q_value = _bh(p_value)
        # the reference keeps a strict majority of the tested reps (with two, both stay)
        if 2 * (removed + 1) >= tested.sum():
            break
        with np.errstate(invalid="ignore"):
            candidates = in_reference & (q_value < alpha)
        if not candidates.any():
            break
        in_reference[int(np.argmin(np.where(candidates, p_value, np.inf)))] = False
        removed += 1
    result = pd.DataFrame({
        "n": n_rep.round().astype("int64"),
        "scale_diff": scale_diff,
        "z": z,
        "p_value": p_value,
        "q_value": q_value,
    }, index=pd.Index(c.reps, name="rep_id"))
    return set(c.reps[in_reference]), result


def _bh(p_values: np.ndarray) -> np.ndarray:
    """benjamini_hochberg on an array: missing p-values stay missing and are not counted."""
    return _stats.benjamini_hochberg(p_values)


def benjamini_hochberg(p_values: pd.Series) -> pd.Series:
    """Benjamini–Hochberg q-values; missing p-values stay missing and are not counted."""
    return pd.Series(_stats.benjamini_hochberg(p_values.to_numpy(dtype=float)),
                     index=p_values.index, dtype="float64")


def mix_summary(wh: Warehouse, filters: Filters | None = None) -> pd.DataFrame:
    """Per rep: share of high or urgent tickets, the top domain and its share."""
    df = query(wh, ["ticket_count"], by=["rep_id", *MIX_DIMENSIONS], filters=filters)
    df = df[df["rep_id"].notna()].copy()
    cols = ["rep_id", "high_urgent_pct", "top_domain", "top_domain_pct"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["domain"] = df["domain"].fillna(NO_DOMAIN)
    total = df.groupby("rep_id")["ticket_count"].sum()
    high = df[df["priority"].isin(HIGH_PRIORITIES)].groupby("rep_id")["ticket_count"].sum()
    by_domain = df.groupby(["rep_id", "domain"])["ticket_count"].sum().reset_index()
    by_domain = by_domain.sort_values(["rep_id", "ticket_count", "domain"],
                                      ascending=[True, False, True])
    top = by_domain.drop_duplicates("rep_id").set_index("rep_id")
    out = pd.DataFrame({
        "high_urgent_pct": 100.0 * high.reindex(total.index, fill_value=0) / total,
        "top_domain": top["domain"].reindex(total.index),
        "top_domain_pct": 100.0 * top["ticket_count"].reindex(total.index) / total,
    })
    return out.rename_axis("rep_id").reset_index()[cols]


def unusual(
    wh: Warehouse,
    filters: Filters | None = None,
    metric: str = "avg_resolution_h",
    min_tickets: int = MIN_TICKETS,
    alpha: float = ALPHA,
    min_effect: float | None = None,
) -> pd.DataFrame:
    """Representatives whose ``metric`` differs from what their ticket mix predicts.

    One row per representative: observed (the registry's figure), expected_from_mix (the
    registry's figure per priority x domain cell over the reference reps, weighted by the
    rep's tickets with a value in each cell), difference, z, p_value, q_value
    (Benjamini–Hochberg over the representatives tested), flag, status, in_reference and the
    mix summary, effect (the ratio either way for durations, percentage points for percentages)
    and sentence (one plain sentence per flagged representative, else empty). The reference
    is every rep except those found unusual (see
    ``_reference_reps``). Representatives with fewer than ``min_tickets`` tickets with a
    value are "too few tickets" and not tested. A flag also needs an effect of at least
    ``min_effect`` (default ``FLAG_MIN_EFFECT``: a ratio either way for durations, percentage
    points for percentages); a significant, smaller one is "small difference". Flagged
    representatives come first, the largest effect first; the rest by q-value.
    """
    filters = filters or Filters()
    spec = spec_for(metric)
    if min_effect is None:
        min_effect = FLAG_MIN_EFFECT[spec.kind]
    the_metric = get_metric(metric)
    columns = [
        "rep_id", "rep_name", "team", "ticket_count", "n", "observed", "expected_from_mix",
        "difference", "z", "p_value", "q_value", "flag", "status", "in_reference",
        "high_urgent_pct", "top_domain", "top_domain_pct", "effect", "sentence",
    ]
    if missing_inputs(the_metric, wh):
        # without its inputs every unanswered ticket would count as a breach: nothing to test
        return pd.DataFrame(columns=columns)
    cells = _cell_stats(wh, filters, spec)
    if cells.empty:
        return pd.DataFrame(columns=columns)

    reference, tested = _reference_reps(cells, spec.kind, min_tickets, alpha)
    # expected from the mix, in the metric's own units: the registry's figure per cell over
    # the reference reps; a cell none of them works in falls back to every rep's figure
    weights = cells[["rep_id", "priority", "domain", "n"]].copy()
    weights["domain"] = weights["domain"].fillna(NO_DOMAIN)
    weights["cell"] = np.nan
    for reps in (reference, set(cells["rep_id"])):
        per_cell = query(wh, [metric], by=list(MIX_DIMENSIONS), filters=_with_reps(filters, reps))
        per_cell["domain"] = per_cell["domain"].fillna(NO_DOMAIN)
        figure = weights[list(MIX_DIMENSIONS)].merge(per_cell, how="left")[metric].to_numpy()
        weights["cell"] = weights["cell"].fillna(pd.Series(figure, index=weights.index))
        if weights["cell"].notna().all():
            break
    weights["weighted"] = weights["n"] * weights["cell"]
    expected = weights.groupby("rep_id")["weighted"].sum() / weights.groupby("rep_id")["n"].sum()

    board = leaderboard(wh, filters, "rep", metrics=("ticket_count", metric))
    out = board.drop(columns=["manager"]).rename(columns={metric: "observed"})
    out = out.merge(tested, left_on="rep_id", right_index=True, how="inner")
    out["expected_from_mix"] = out["rep_id"].map(expected).astype("float64")
    out["difference"] = out["observed"] - out["expected_from_mix"]
    out["in_reference"] = out["rep_id"].isin(reference)

    enough = out["n"] >= min_tickets
    significant = enough & (out["q_value"] < alpha)
    out["effect"] = _effect_size(spec.kind, out["observed"], out["expected_from_mix"])
    out["flag"] = significant & (out["effect"] >= min_effect)
    out["status"] = [
        SMALL if sig and not flag
        else _status(the_metric.direction, bool(ok), bool(flag), float(z) if pd.notna(z) else 0.0)
        for ok, sig, flag, z in zip(enough, significant, out["flag"], out["z"], strict=True)
    ]
    out = out.merge(mix_summary(wh, filters), on="rep_id", how="left")
    out["sentence"] = [
        unusual_sentence(metric, obs, exp) if flag else ""
        for flag, obs, exp in zip(out["flag"], out["observed"], out["expected_from_mix"],
                                  strict=True)
    ]
    out["rank_effect"] = out["effect"].where(out["flag"])
    out = out.sort_values(["flag", "rank_effect", "q_value", "rep_id"],
                          ascending=[False, False, True, True], na_position="last",
                          kind="stable")
    return out[columns].reset_index(drop=True)


def _with_reps(filters: Filters, reps: set[str]) -> Filters:
    where = tuple((d, v) for d, v in filters.where if d != "rep_id")
    return replace(filters, where=tuple(sorted((*where, ("rep_id", tuple(sorted(reps)))))))


def _status(direction: str | None, enough: bool, flag: bool, z: float) -> str:
    if not enough:
        return "too few tickets"
    if not flag:
        return "as expected"
    higher = z > 0
    if direction is None:
        return "higher than the mix predicts" if higher else "lower than the mix predicts"
    better = higher == (direction == "higher")
    return "better than the mix predicts" if better else "worse than the mix predicts"


def rep_trend(
    wh: Warehouse,
    filters: Filters | None,
    rep_id: str,
    metric: str,
    grain: str = "week",
) -> pd.DataFrame:
    """The rep's ``metric`` per period beside the median of the values of their team's reps.

    Columns: period, rep (the rep's value), team_median, team_reps (reps with a value that
    period). The team is the rep's team; without one, the median is over all reps.
    """
    filters = filters or Filters()
    the_metric = get_metric(metric)
    if the_metric.source != "tickets":
        raise CsMetricsError(f"{metric!r} has no per-representative trend; pick another metric.")
    row = query(wh, ["ticket_count"], by=["team"], filters=Filters.build(rep_id=rep_id))
    if row.empty:
        raise CsMetricsError(f"There is no representative {rep_id!r} in this dataset.")
    team = row["team"].iloc[0]
    where = tuple((d, v) for d, v in filters.where if d != "team")
    if pd.notna(team):
        where = tuple(sorted((*where, ("team", (team,)))))
    scoped = replace(filters, where=where)
    df = query(wh, [metric], by=["rep_id"], grain=grain, filters=scoped)
    df = df[df["rep_id"].notna()]
    team_stats = df.groupby("period")[metric].agg(["median", "count"])
    mine = df[df["rep_id"] == rep_id].set_index("period")[metric]
    out = pd.DataFrame({
        "rep": mine.reindex(team_stats.index),
        "team_median": team_stats["median"],
        "team_reps": team_stats["count"].astype("int64"),
    })
    out = out.rename_axis("period").reset_index()
    return out[out["rep"].notna() | out["team_median"].notna()].reset_index(drop=True)

"""Honest comparisons: the tests against textbook values, and on the warehouse against
independent computations."""

from __future__ import annotations

import dataclasses
import math
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

import cs_metrics
from cs_metrics.analysis.compare import (
    CAUSATION_CAVEAT,
    COMPARABLE_METRICS,
    Group,
    compare_groups,
    hodges_lehmann,
    mean_test,
    rank_test,
    resolution_csat,
    two_proportion_test,
)
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.metrics.registry import Filters, query

# --- textbook values -----------------------------------------------------------------------------


def test_two_proportions_newcombe_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 against 48/80;
    # his method 10 (hybrid score) interval for the difference is 0.0524 to 0.3339.
    r = two_proportion_test(56, 70, 48, 80)
    assert r.estimate == pytest.approx(0.2)
    assert (round(r.ci_low, 4), round(r.ci_high, 4)) == (0.0524, 0.3339)
    low, high = confint_proportions_2indep(56, 70, 48, 80, method="newcomb", compare="diff")
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), abs=1e-12)


def test_two_proportion_z_test_known_value():
    # 120 of 200 against 90 of 200: pooled p = 0.525, z = 0.15 / sqrt(0.525 * 0.475 / 100)
    r = two_proportion_test(120, 200, 90, 200)
    assert r.statistic == pytest.approx(0.15 / math.sqrt(0.525 * 0.475 / 100))
    assert r.statistic == pytest.approx(3.0038, abs=1e-4)
    assert r.p_value == pytest.approx(0.002667, abs=1e-6)
    z, p = proportions_ztest([120, 90], [200, 200])
    assert (r.statistic, r.p_value) == pytest.approx((z, p), rel=1e-12)


def test_mann_whitney_known_values():
    # scipy's documented example (Conover): U = 17, exact two-sided p = 1/9
    males = [19, 22, 16, 29, 24]
    females = [20, 11, 17, 12]
    r = rank_test(males, females)
    assert r.statistic == 17.0
    assert r.p_value == pytest.approx(0.1111111111111111)
    assert r.estimate == np.median(np.subtract.outer(males, females))  # Hodges-Lehmann = 7
    assert r.estimate == 7.0


def test_welch_known_value():
    a, b = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4], [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1,
                    22.9, 20.5, 24.4]
    r = mean_test(a, b)
    # Welch's t from its formula
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert r.statistic == pytest.approx(t)
    assert r.statistic == pytest.approx(-2.46, abs=0.01)  # Wikipedia's Welch example 1
    assert r.p_value == pytest.approx(2 * stats.t.sf(abs(t), df))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (r.ci_low, r.ci_high) == pytest.approx((r.estimate - half, r.estimate + half))


@pytest.mark.parametrize("seed", range(8))
def test_hodges_lehmann_against_all_pairwise_differences(seed):
    rng = np.random.default_rng(seed)
    n1, n2 = rng.integers(5, 400, 2)
    decimals = int(rng.integers(0, 3))  # rounded data has many tied differences
    a = np.round(rng.lognormal(1.0, 1.0, n1), decimals)
    b = np.round(rng.lognormal(1.2, 1.0, n2), decimals)
    diffs = np.sort(np.subtract.outer(a, b).ravel())
    est, low, high = hodges_lehmann(a, b)
    assert est == pytest.approx(np.median(diffs), abs=1e-9)
    # Moses: order statistics C and N + 1 - C of the differences (1-based)
    total = n1 * n2
    c = math.floor(total / 2 - stats.norm.ppf(0.975) * math.sqrt(total * (n1 + n2 + 1) / 12))
    assert low == pytest.approx(diffs[c - 1], abs=1e-9)
    assert high == pytest.approx(diffs[total - c], abs=1e-9)


def test_hodges_lehmann_interval_covers_a_known_shift():
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(200):
        a = rng.exponential(10, 40) + 2.0
        b = rng.exponential(10, 60)
        _, low, high = hodges_lehmann(a, b)
        covered += low <= 2.0 <= high
    assert 0.90 <= covered / 200 <= 0.99  # a 95 % interval


# --- the warehouse -------------------------------------------------------------------------------

WINDOW = Filters(date(2024, 11, 1), date(2025, 3, 1))


def test_proportions_come_from_the_registry(sample_wh):
    a = Group.build("chat", channel="chat")
    b = Group.build("email", channel="email")
    r = compare_groups(sample_wh, "csat_pct", a, b, WINDOW)
    chat = query(sample_wh, ["csat_pct"], filters=a.filters(WINDOW))["csat_pct"].iloc[0]
    email = query(sample_wh, ["csat_pct"], filters=b.filters(WINDOW))["csat_pct"].iloc[0]
    assert (r.value_a, r.value_b) == pytest.approx((chat, email))
    facts = sample_wh.df("select channel, csat >= 4 as good from feedback_facts where "
                         "not is_test and csat is not null and created_at >= ? "
                         "and created_at < ?", [date(2024, 11, 1), date(2025, 3, 1)])
    ga = facts[facts["channel"] == "chat"]["good"]
    gb = facts[facts["channel"] == "email"]["good"]
    assert (r.n_a, r.n_b) == (len(ga), len(gb))
    z, p = proportions_ztest([ga.sum(), gb.sum()], [len(ga), len(gb)])
    assert r.p_value == pytest.approx(p)
    assert r.difference == pytest.approx(chat - email)
    low, high = confint_proportions_2indep(ga.sum(), len(ga), gb.sum(), len(gb),
                                           method="newcomb", compare="diff")
    assert (r.ci_low, r.ci_high) == pytest.approx((100 * low, 100 * high))
    assert r.unit_of_n == "CSAT responses"
    assert r.verdict.startswith("CSAT is ")
    assert "p = " in r.verdict and "interval" in r.verdict


def test_times_use_the_rank_test_before_and_after(sample_wh):
    split = date(2025, 1, 15)
    r = compare_groups(sample_wh, "median_resolution_h", Group("after", date_from=split),
                       Group("before", date_to=split), WINDOW)
    t = sample_wh.df("select created_at, resolution_h from tickets where not is_test and "
                     "resolution_h is not null and created_at >= ? and created_at < ?",
                     [date(2024, 11, 1), date(2025, 3, 1)])
    after = t[t["created_at"] >= pd.Timestamp(split)]["resolution_h"]
    before = t[t["created_at"] < pd.Timestamp(split)]["resolution_h"]
    assert (r.n_a, r.n_b) == (len(after), len(before))
    assert r.value_a == pytest.approx(after.median())
    assert r.value_b == pytest.approx(before.median())
    want = stats.mannwhitneyu(after, before, alternative="two-sided")
    assert r.p_value == pytest.approx(want.pvalue)
    assert r.details["statistic"] == want.statistic
    assert r.ci_low <= r.difference <= r.ci_high
    assert "Mann-Whitney" in r.test


def test_mean_scores_use_welch(sample_wh):
    a, b = Group.build("high", priority="high"), Group.build("normal", priority="normal")
    r = compare_groups(sample_wh, "sentiment_avg", a, b)
    f = sample_wh.df("select priority, sentiment from feedback_facts where not is_test "
                     "and sentiment is not null")
    want = stats.ttest_ind(f[f["priority"] == "high"]["sentiment"],
                           f[f["priority"] == "normal"]["sentiment"], equal_var=False)
    assert r.p_value == pytest.approx(want.pvalue)
    assert r.test == "Welch's t-test"


def test_small_groups_are_flagged_not_compared(sample_wh):
    day = Filters(date(2025, 2, 10), date(2025, 2, 11))
    r = compare_groups(sample_wh, "csat_pct", Group.build("chat", channel="chat"),
                       Group.build("email", channel="email"), day)
    assert r.difference is None and r.p_value is None and not r.significant
    assert r.note.startswith("Too few to compare")
    assert r.verdict == r.note


def test_groups_are_frozen_and_combine_with_the_filters():
    g = Group.build("b", date(2025, 1, 1), None, channel=["chat"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.label = "x"  # type: ignore[misc]
    f = g.filters(Filters.build(date(2024, 12, 1), date(2025, 2, 1), channel=["email"],
                                priority=["high"]))
    assert f == Filters(date(2025, 1, 1), date(2025, 2, 1),
                        (("channel", ("chat",)), ("priority", ("high",))))


def test_counts_cannot_be_compared(sample_wh):
    assert "ticket_count" not in COMPARABLE_METRICS
    with pytest.raises(CsMetricsError, match="is a count"):
        compare_groups(sample_wh, "ticket_count", Group("a"), Group("b"))


def test_resolution_time_and_csat(sample_wh):
    corr = resolution_csat(sample_wh, WINDOW)
    t = sample_wh.df(
        "select resolution_h, fb_csat_sum * 1.0 / fb_csat_n as csat from tickets "
        "where not is_test and resolution_h is not null and fb_csat_n > 0 "
        "and created_at >= ? and created_at < ?", [date(2024, 11, 1), date(2025, 3, 1)])
    want = stats.spearmanr(t["resolution_h"], t["csat"])
    assert corr.n == corr.total == len(t)
    assert corr.rho == pytest.approx(want.statistic)
    assert corr.p_value == pytest.approx(want.pvalue)
    assert corr.ci_low < corr.rho < corr.ci_high
    # the generator makes CSAT fall when resolution is slow
    assert corr.rho < -0.2
    assert corr.caveat == CAUSATION_CAVEAT and "not causation" in corr.caveat
    assert "Spearman" in corr.summary
    bands = corr.bands
    assert bands["tickets"].sum() == len(t)
    assert bands.iloc[0]["csat_pct"] > bands.dropna().iloc[-1]["csat_pct"]
    assert set(bands.loc[bands["csat_responses"] < 30, "note"]) <= {"few responses"}
    # a sample above the cap is deterministic
    a = resolution_csat(sample_wh, WINDOW, max_sample=200)
    b = resolution_csat(sample_wh, WINDOW, max_sample=200)
    assert a.n == 200 and a.rho == b.rho and a.total == len(t)


def test_comparison_names_are_in_the_registry():
    for name in COMPARABLE_METRICS:
        cs_metrics.get_metric(name)

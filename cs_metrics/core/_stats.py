"""Every test of significance the project runs, as thin wrappers over scipy and statsmodels.

One home for the statistics, so a test is written once and checked once (tests/test_stats.py
compares each wrapper with a textbook computation). The wrappers add only what the callers
share: the conventions at the edges (empty groups, no spread at all) and the argument order.

scipy and statsmodels are imported inside the functions: importing this module stays cheap,
so the command line starts fast when it runs no test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = [
    "Alternative",
    "benjamini_hochberg",
    "binomial_test",
    "binomial_upper_tail",
    "mann_whitney",
    "normal_p",
    "normal_quantile",
    "poisson_upper_tail",
    "spearman",
    "two_proportion_ztest",
    "welch_ttest",
    "welch_ttest_from_stats",
]

# statsmodels' names: "smaller" is H1: the first group's value is below the second's
Alternative = Literal["two-sided", "smaller", "larger"]


def normal_p(z: Any, alternative: Alternative = "two-sided") -> Any:
    """The p-value of a standard normal statistic ``z`` (a number or an array)."""
    from scipy import stats

    if alternative == "two-sided":
        return 2 * stats.norm.sf(np.abs(z))
    if alternative == "larger":
        return stats.norm.sf(z)
    return stats.norm.cdf(z)


def normal_quantile(confidence: float) -> float:
    """The two-sided critical value of a standard normal: 1.96 for 0.95."""
    from scipy import stats

    return float(stats.norm.ppf(0.5 + confidence / 2))


def two_proportion_ztest(
    x1: float, n1: float, x2: float, n2: float, alternative: Alternative = "two-sided"
) -> tuple[float, float]:
    """Pooled two-proportion z-test of p1 = x1 / n1 against p2 = x2 / n2: (z, p-value).

    statsmodels' ``proportions_ztest`` (pooled variance). An empty group gives (nan, nan).
    When every observation in both groups is a success, or none is, the pooled variance is
    0 and p1 = p2: no evidence either way, so z = 0 (p = 1 two-sided, 0.5 one-sided) rather
    than statsmodels' 0 / 0.
    """
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    pooled = (x1 + x2) / (n1 + n2)
    if pooled * (1 - pooled) == 0:
        return 0.0, float(normal_p(0.0, alternative))
    from statsmodels.stats.proportion import proportions_ztest

    z, p = proportions_ztest([x1, x2], [n1, n2], value=0, alternative=alternative)
    return float(z), float(p)


def poisson_upper_tail(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu): the one-sided exact test of a count ``k`` against the
    expected ``mu``. scipy's survival function, accurate in the far tail (no 1 - cdf)."""
    k = int(k)
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    from scipy import stats

    return float(stats.poisson.sf(k - 1, mu))


def binomial_upper_tail(k: Any, n: Any, p: Any) -> Any:
    """P(X >= k) for X ~ Binomial(n, p), elementwise over arrays: the one-sided exact test
    of ``k`` successes out of ``n``."""
    from scipy import stats

    return stats.binom.sf(k - 1, n, p)


def binomial_test(k: int, n: int, p: float, alternative: Alternative = "two-sided") -> float:
    """Exact binomial test of ``k`` successes out of ``n`` against ``p``: the p-value.
    ``alternative`` in statsmodels' words ("smaller" is scipy's "less")."""
    from scipy import stats

    scipy_alt = {"two-sided": "two-sided", "smaller": "less", "larger": "greater"}[alternative]
    return float(stats.binomtest(int(k), int(n), p, alternative=scipy_alt).pvalue)


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order: statsmodels'
    ``multipletests(method="fdr_bh")``. Missing p-values stay missing and are not counted."""
    p = np.asarray(p_values, dtype="float64")
    q = np.full(p.shape, np.nan)
    known = ~np.isnan(p)
    if known.any():
        from statsmodels.stats.multitest import multipletests

        q[known] = multipletests(p[known], method="fdr_bh")[1]
    return q


def spearman(x: Any, y: Any) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value (scipy's ``spearmanr``)."""
    from scipy import stats

    rho, p = stats.spearmanr(x, y)
    return float(rho), float(p)


def mann_whitney(a: Any, b: Any) -> Any:
    """Mann-Whitney U, two-sided: exact for small groups without ties, else the normal
    approximation with tie and continuity corrections, as scipy decides. scipy's result
    (``statistic``, ``pvalue``)."""
    from scipy import stats

    return stats.mannwhitneyu(a, b, alternative="two-sided", method="auto")


def welch_ttest(a: Any, b: Any) -> Any:
    """Welch's t-test (two-sided) of mean(a) - mean(b): scipy's result, with
    ``confidence_interval(confidence)``."""
    from scipy import stats

    return stats.ttest_ind(a, b, equal_var=False)


def welch_ttest_from_stats(mean1: float, sd1: float, n1: int, mean2: float, sd2: float,
                           n2: int) -> tuple[float, float]:
    """Welch's t-test (two-sided) from each group's mean, standard deviation and size:
    (t, p-value)."""
    from scipy import stats

    res = stats.ttest_ind_from_stats(mean1, sd1, n1, mean2, sd2, n2, equal_var=False)
    return float(res.statistic), float(res.pvalue)

"""cs_metrics.core._stats against textbook computations written out here without scipy or
statsmodels: exact sums in rational or 50-digit decimal arithmetic, the normal tail from
``math.erfc``, Student's t from the regularized incomplete beta function."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction
from itertools import combinations

import numpy as np
import pytest

from cs_metrics.core import _stats

REL = 1e-12  # the replacements keep every figure equal to this relative tolerance


def _close(got: float, want: float, rel: float = REL) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    return got == pytest.approx(want, rel=rel, abs=1e-300)


# --- textbook computations ---------------------------------------------------------------------


def _phi_upper(z: float) -> float:
    """P(Z >= z), from the complementary error function (no cancellation in either tail)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _pooled_z(x1: int, n1: int, x2: int, n2: int) -> float:
    pooled = (x1 + x2) / (n1 + n2)
    return (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))


def _poisson_upper(k: int, mu: float) -> float:
    """sum_{i >= k} e^-mu mu^i / i!, in 50 digits, summed until the terms vanish."""
    if k <= 0:
        return 1.0
    if mu == 0:
        return 0.0
    with localcontext() as ctx:
        ctx.prec = 50
        m = Decimal(mu)
        term = (-m).exp() * m ** k / math.factorial(k)
        total, i = Decimal(0), k
        while term > total * Decimal(10) ** -40 or i < k + 2:
            total += term
            i += 1
            term = term * m / i
        return float(total)


def _binom_pmf(i: int, n: int, p: Fraction) -> Fraction:
    return math.comb(n, i) * p ** i * (1 - p) ** (n - i)


def _binom_upper(k: int, n: int, p: float) -> float:
    """sum_{i >= k} C(n, i) p^i (1 - p)^(n - i), exactly in rationals."""
    q = Fraction(p)
    return float(sum((_binom_pmf(i, n, q) for i in range(max(k, 0), n + 1)), Fraction(0)))


def _binom_two_sided(k: int, n: int, p: float) -> float:
    """The exact two-sided test: the probability of every outcome no more likely than ``k``
    (with the customary relative slack of 1e-7 for ties in floating point)."""
    q = Fraction(p)
    pk = _binom_pmf(k, n, q)
    slack = pk * (1 + Fraction(1, 10 ** 7))
    return min(1.0, float(sum((pi for i in range(n + 1)
                               if (pi := _binom_pmf(i, n, q)) <= slack), Fraction(0))))


def _bh(p: list[float]) -> list[float]:
    """Benjamini-Hochberg step-up q-values: q_(i) = min over j >= i of m p_(j) / j, at most 1;
    missing p-values are left out of m and stay missing."""
    known = [(v, i) for i, v in enumerate(p) if not math.isnan(v)]
    m = len(known)
    out = [math.nan] * len(p)
    best = 1.0
    for rank in range(m, 0, -1):
        v, i = sorted(known)[rank - 1]
        best = min(best, v * m / rank)
        out[i] = best
    return out


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            return h
    raise AssertionError("continued fraction did not converge")


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return _betainc(df / 2, 0.5, df / (df + t * t))


def _welch(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int) -> tuple[float, float]:
    v1, v2 = s1 * s1 / n1, s2 * s2 / n2
    t = (m1 - m2) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    return t, _t_two_sided(t, df)


def _ranks(x: list[float]) -> list[float]:
    """Ranks 1..n, ties given their average rank."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    rx, ry = _ranks(x), _ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    rho = sxy / math.sqrt(sxx * syy)
    if abs(rho) == 1:  # a perfect ordering: t is infinite
        return rho, 0.0
    t = rho * math.sqrt((n - 2) / (1 - rho * rho))
    return rho, _t_two_sided(t, n - 2)


def _mann_whitney(a: list[float], b: list[float]) -> tuple[float, float]:
    """U of ``a`` and the two-sided p-value: exact by enumeration without ties (2 P(U >= the
    larger U)), else the normal approximation with tie and continuity corrections."""
    n1, n2 = len(a), len(b)
    pooled = [*a, *b]
    r = _ranks(pooled)
    u1 = sum(r[:n1]) - n1 * (n1 + 1) / 2
    big = max(u1, n1 * n2 - u1)
    if len(set(pooled)) == len(pooled):
        us = [sum(ri for ri in chosen) - n1 * (n1 + 1) / 2
              for chosen in combinations(range(1, n1 + n2 + 1), n1)]
        return u1, min(1.0, 2 * sum(u >= big for u in us) / len(us))
    n = n1 + n2
    ties = sum(c ** 3 - c for c in (pooled.count(v) for v in set(pooled)))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (big - n1 * n2 / 2 - 0.5) / sigma
    return u1, min(1.0, 2 * _phi_upper(z))


# --- the normal distribution -------------------------------------------------------------------


@pytest.mark.parametrize("z", [-38.0, -8.5, -1.96, -0.3, 0.0, 0.3, 1.0, 2.5, 8.5, 38.0])
def test_normal_p_matches_the_error_function(z):
    assert _close(float(_stats.normal_p(z)), min(1.0, 2 * _phi_upper(abs(z))))
    assert _close(float(_stats.normal_p(z, "larger")), _phi_upper(z))
    assert _close(float(_stats.normal_p(z, "smaller")), _phi_upper(-z))


def test_normal_p_on_arrays_keeps_missing_values():
    z = np.array([-2.0, np.nan, 0.0, 3.0])
    got = _stats.normal_p(z)
    assert np.isnan(got[1])
    for i in (0, 2, 3):
        assert _close(float(got[i]), 2 * _phi_upper(abs(z[i])))


def test_normal_quantile_textbook_values():
    assert _stats.normal_quantile(0.95) == pytest.approx(1.959963984540054, rel=REL)
    assert _stats.normal_quantile(0.99) == pytest.approx(2.5758293035489004, rel=REL)
    assert _stats.normal_quantile(0.0) == 0.0
    for c in (0.5, 0.8, 0.9, 0.999):  # the quantile gives back its tail
        assert 2 * _phi_upper(_stats.normal_quantile(c)) == pytest.approx(1 - c, rel=1e-12)


# --- the two-proportion z-test -----------------------------------------------------------------


@pytest.mark.parametrize("x1, n1, x2, n2", [
    (80, 100, 90, 100), (90, 100, 80, 100), (0, 10, 3, 10), (10, 10, 7, 10), (1, 1, 0, 1),
    (0, 1, 1, 2), (1, 3, 2, 3), (5, 1000, 40, 1000), (12345, 20000, 9000, 15000),
    (70, 100, 180, 200), (0, 50, 50, 50),
])
def test_two_proportion_ztest_matches_the_pooled_formula(x1, n1, x2, n2):
    z = _pooled_z(x1, n1, x2, n2)
    got_z, got_p = _stats.two_proportion_ztest(x1, n1, x2, n2)
    assert _close(got_z, z) and _close(got_p, min(1.0, 2 * _phi_upper(abs(z))))
    assert all(_close(g, w) for g, w in zip(
        _stats.two_proportion_ztest(x1, n1, x2, n2, "smaller"), (z, _phi_upper(-z)), strict=True))
    assert all(_close(g, w) for g, w in zip(
        _stats.two_proportion_ztest(x1, n1, x2, n2, "larger"), (z, _phi_upper(z)), strict=True))


@pytest.mark.parametrize("x1, n1, x2, n2", [(0, 10, 0, 20), (10, 10, 20, 20), (0, 1, 0, 1),
                                            (1, 1, 1, 1)])
def test_two_proportion_ztest_without_spread_is_no_evidence(x1, n1, x2, n2):
    # all failures or all successes in both groups: p1 = p2 and the pooled variance is 0
    assert _stats.two_proportion_ztest(x1, n1, x2, n2) == (0.0, 1.0)
    assert _stats.two_proportion_ztest(x1, n1, x2, n2, "smaller") == (0.0, 0.5)
    assert _stats.two_proportion_ztest(x1, n1, x2, n2, "larger") == (0.0, 0.5)


@pytest.mark.parametrize("x1, n1, x2, n2", [(0, 0, 1, 5), (1, 5, 0, 0), (0, 0, 0, 0)])
def test_two_proportion_ztest_of_an_empty_group_is_undefined(x1, n1, x2, n2):
    z, p = _stats.two_proportion_ztest(x1, n1, x2, n2)
    assert math.isnan(z) and math.isnan(p)


def test_two_proportion_ztest_accepts_weighted_successes():
    # reports test sums of 0/1 flags that arrive as floats
    z = _pooled_z(41.0, 60, 30.0, 70)  # type: ignore[arg-type]
    got_z, got_p = _stats.two_proportion_ztest(41.0, 60, 30.0, 70)
    assert _close(got_z, z) and _close(got_p, 2 * _phi_upper(abs(z)))


# --- Poisson and binomial tails ----------------------------------------------------------------


@pytest.mark.parametrize("k, mu", [
    (1, 1e-9), (2, 1e-9), (3, 0.01), (1, 0.5), (5, 0.5), (30, 7.0), (7, 30.0), (60, 2.5),
    (200, 99.5), (1000, 900.0), (5000, 4800.0), (100, 100.0), (12, 12.5),
])
def test_poisson_upper_tail_matches_the_exact_sum(k, mu):
    assert _close(_stats.poisson_upper_tail(k, mu), _poisson_upper(k, mu))


def test_poisson_upper_tail_edges():
    assert _stats.poisson_upper_tail(0, 3.0) == 1.0
    assert _stats.poisson_upper_tail(-2, 3.0) == 1.0
    assert _stats.poisson_upper_tail(0, 0.0) == 1.0
    assert _stats.poisson_upper_tail(1, 0.0) == 0.0  # nothing expected, something seen
    assert _stats.poisson_upper_tail(4, -1.0) == 0.0
    assert _stats.poisson_upper_tail(1, 2.0) == pytest.approx(-math.expm1(-2.0), rel=REL)


@pytest.mark.parametrize("k, n, p", [
    (0, 10, 0.3), (1, 1, 0.5), (3, 10, 0.3), (10, 10, 0.3), (7, 20, 0.05), (40, 60, 0.25),
    (55, 120, 0.5), (2, 200, 0.001), (11, 10, 0.3), (1, 5, 0.0), (5, 5, 1.0), (0, 0, 0.4),
])
def test_binomial_upper_tail_matches_the_exact_sum(k, n, p):
    want = _binom_upper(k, n, p)
    assert _close(float(_stats.binomial_upper_tail(k, n, p)), want)


def test_binomial_upper_tail_elementwise():
    k = np.array([1.0, 4.0, 9.0])
    n = np.array([3.0, 20.0, 12.0])
    got = _stats.binomial_upper_tail(k, n, 0.2)
    for i in range(3):
        assert _close(float(got[i]), _binom_upper(int(k[i]), int(n[i]), 0.2))


@pytest.mark.parametrize("k, n, p", [(3, 10, 0.3), (0, 10, 0.3), (10, 10, 0.3), (7, 20, 0.5),
                                     (40, 60, 0.25), (1, 1, 0.5), (5, 30, 1 / 3)])
def test_binomial_test_two_sided_and_one_sided(k, n, p):
    assert _close(_stats.binomial_test(k, n, p), _binom_two_sided(k, n, p))
    assert _close(_stats.binomial_test(k, n, p, "larger"), _binom_upper(k, n, p))
    assert _close(_stats.binomial_test(k, n, p, "smaller"), 1.0 - _binom_upper(k + 1, n, p)
                  if _binom_upper(k + 1, n, p) < 0.5
                  else float(sum((_binom_pmf(i, n, Fraction(p)) for i in range(k + 1)),
                                 Fraction(0))))


# --- Benjamini-Hochberg ------------------------------------------------------------------------


@pytest.mark.parametrize("p", [
    [0.01, 0.04, 0.03, 0.005, 0.2],
    [0.5],
    [0.0, 1.0, 0.0, 1.0],
    [0.049, 0.049, 0.049],
    [1e-300, 0.7, 0.9, 0.04],
    list(np.random.default_rng(7).random(200) ** 4),
])
def test_benjamini_hochberg_matches_the_step_up_procedure(p):
    got = _stats.benjamini_hochberg(p)
    want = _bh(p)
    assert len(got) == len(p)
    assert all(_close(float(g), w) for g, w in zip(got, want, strict=True))


def test_benjamini_hochberg_leaves_missing_values_out():
    p = [0.01, math.nan, 0.04, 0.03, math.nan]
    got = _stats.benjamini_hochberg(np.array(p))
    assert math.isnan(got[1]) and math.isnan(got[4])
    assert all(_close(float(g), w) for g, w in zip(got, _bh(p), strict=True))
    assert np.isnan(_stats.benjamini_hochberg([math.nan, math.nan])).all()
    assert len(_stats.benjamini_hochberg([])) == 0


# --- rank and mean tests -----------------------------------------------------------------------


@pytest.mark.parametrize("x, y", [
    ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
    ([1.5, 3.0, 2.0, 8.0, 7.0, 6.5, 0.5], [2, 1, 4, 5, 5, 3, 1]),
    ([10, 20, 30, 40], [4, 3, 2, 1.5]),
    ([1, 1, 2, 2, 3, 3, 4, 4, 5, 5], [1, 2, 1, 3, 2, 4, 3, 5, 5, 4]),
])
def test_spearman_matches_ranks_and_students_t(x, y):
    rho, p = _stats.spearman(x, y)
    want_rho, want_p = _spearman(x, y)
    assert _close(rho, want_rho) and _close(p, want_p, rel=1e-11)


@pytest.mark.parametrize("a, b", [
    ([1.1, 2.3, 0.4], [3.5, 4.2, 5.0, 2.9]),  # exact, no ties
    ([19, 22, 16, 29, 24], [20, 11, 17, 12]),  # scipy's documented example (U = 17)
    ([1, 2, 2, 3, 5, 5, 5, 8], [2, 3, 4, 4, 6, 7, 9, 9, 10]),  # ties: normal approximation
    ([0.2], [0.1]),  # tiny groups
])
def test_mann_whitney_matches_the_textbook(a, b):
    res = _stats.mann_whitney(a, b)
    u, p = _mann_whitney([float(v) for v in a], [float(v) for v in b])
    assert _close(float(res.statistic), u) and _close(float(res.pvalue), p)


@pytest.mark.parametrize("a, b", [
    ([1.0, 2.0, 3.0, 4.5], [2.0, 2.5, 6.0, 7.0, 9.0]),
    ([10.0, 10.5], [3.0, 40.0, 4.0]),
    (list(np.random.default_rng(3).normal(5, 2, 40)), list(np.random.default_rng(4)
                                                           .normal(6, 1, 25))),
])
def test_welch_ttest_matches_welch_satterthwaite(a, b):
    res = _stats.welch_ttest(np.array(a), np.array(b))
    m1, m2 = float(np.mean(a)), float(np.mean(b))
    s1, s2 = float(np.std(a, ddof=1)), float(np.std(b, ddof=1))
    t, p = _welch(m1, s1, len(a), m2, s2, len(b))
    assert _close(float(res.statistic), t) and _close(float(res.pvalue), p, rel=1e-11)
    got_t, got_p = _stats.welch_ttest_from_stats(m1, s1, len(a), m2, s2, len(b))
    assert _close(got_t, t) and _close(got_p, p, rel=1e-11)

"""Leaderboards and the mix-adjusted test for unusual representatives."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from cs_metrics import CsMetricsError, Filters, Warehouse, get_metric, ingest
from cs_metrics.analysis.leaderboard import (
    FLAG_MIN_EFFECT,
    LEADERBOARD_METRICS,
    LEVELS,
    TESTS,
    benjamini_hochberg,
    format_q,
    leaderboard,
    mix_summary,
    rep_trend,
    spec_for,
    unusual,
    unusual_sentence,
)
from cs_metrics.core.settings import load_settings
from tests import reference
from tests.conftest import write_csv

WINDOW = Filters(datetime(2024, 12, 1).date(), datetime(2025, 3, 1).date())


@pytest.fixture(scope="module")
def prepared(sample_dir):
    return reference.prepare(sample_dir, load_settings())


def _in_window(t: pd.DataFrame) -> pd.DataFrame:
    t = t[~t["is_test"]]
    return t[(t["created_at"] >= pd.Timestamp(WINDOW.date_from))
             & (t["created_at"] < pd.Timestamp(WINDOW.date_to))]


@pytest.mark.parametrize("level", list(LEVELS))
def test_leaderboard_matches_pandas(sample_wh, prepared, level):
    tickets, feedback = prepared
    keys = list(LEVELS[level])
    got = leaderboard(sample_wh, WINDOW, level)
    want = reference.compute(tickets, feedback, list(LEADERBOARD_METRICS), keys, None,
                             WINDOW.date_from, WINDOW.date_to)
    want = want[want[keys[0]].notna()]
    assert list(got.columns) == keys + list(LEADERBOARD_METRICS)
    assert len(got) == len(want) > 1
    assert got["ticket_count"].is_monotonic_decreasing
    merged = got.merge(want, on=keys, suffixes=("", "_ref"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    for m in LEADERBOARD_METRICS:
        np.testing.assert_allclose(merged[m].astype(float), merged[f"{m}_ref"].astype(float),
                                   rtol=1e-9, equal_nan=True, err_msg=m)


def test_unknown_level_and_metric_are_clear_errors(sample_wh):
    with pytest.raises(CsMetricsError, match="rep, team, manager"):
        leaderboard(sample_wh, WINDOW, "region")
    with pytest.raises(CsMetricsError, match="cannot be tested"):
        unusual(sample_wh, WINDOW, "ticket_count")
    with pytest.raises(CsMetricsError, match="Unknown metric"):
        spec_for("speed")


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TESTS["avg_resolution_h"].offset = 0.0  # type: ignore[misc]


@pytest.mark.parametrize("metric", ["avg_resolution_h", "fcr_pct"])
def test_unusual_figures_match_pandas(sample_wh, prepared, metric):
    """Observed, expected-from-mix and the mix summary, recomputed from the source rows."""
    tickets, _ = prepared
    t = _in_window(tickets)
    t = t[t["rep_id"].notna()].copy()
    t["domain"] = t["domain"].fillna("(no domain)")
    if metric == "avg_resolution_h":
        t["value"] = t["res_h"]
    else:
        known = (t["status"] == "closed") & t["contacts"].notna()
        ok = (t["contacts"] == 1) & (t["reopened_count"].fillna(0) == 0)
        t["value"] = np.where(known, 100.0 * ok, np.nan)
    v = t[t["value"].notna()]
    got = unusual(sample_wh, WINDOW, metric).set_index("rep_id")
    # expected values come from the reps not found unusual themselves
    reference = set(got.index[got["in_reference"]])
    assert len(reference) > len(got) / 2
    assert not got.loc[got["in_reference"], "flag"].any()
    ref = v[v["rep_id"].isin(reference)]
    cell_mean = ref.groupby(["priority", "domain"])["value"].mean().rename("cell")
    v = v.join(cell_mean, on=["priority", "domain"])
    observed = v.groupby("rep_id")["value"].mean()
    expected = v.groupby("rep_id")["cell"].mean()

    assert set(got.index) == set(observed.index)
    np.testing.assert_allclose(got["observed"], observed.reindex(got.index), rtol=1e-9)
    np.testing.assert_allclose(got["expected_from_mix"], expected.reindex(got.index), rtol=1e-9)
    np.testing.assert_allclose(got["difference"], got["observed"] - got["expected_from_mix"])
    assert (got["n"] == v.groupby("rep_id").size().reindex(got.index)).all()

    few = got["n"] < 30
    assert (got.loc[few, "status"] == "too few tickets").all()
    assert got.loc[few, ["p_value", "q_value"]].isna().all().all()
    assert not got.loc[few, "flag"].any()
    tested = got[~few]
    np.testing.assert_allclose(tested["q_value"],
                               multipletests(tested["p_value"], method="fdr_bh")[1])
    rel = {"avg_resolution_h": True, "fcr_pct": False}[metric]
    ratio = tested["observed"] / tested["expected_from_mix"]
    big = (ratio >= 1.5) | (ratio <= 1 / 1.5) if rel else tested["difference"].abs() >= 10.0
    assert (tested["flag"] == ((tested["q_value"] < 0.05) & big)).all()
    small = (tested["q_value"] < 0.05) & ~big
    assert (tested.loc[small, "status"] == "small difference").all()

    mix = t.groupby("rep_id").agg(
        high=("priority", lambda s: 100.0 * s.isin(["high", "urgent"]).mean()))
    np.testing.assert_allclose(got["high_urgent_pct"], mix["high"].reindex(got.index))
    for rep, row in got.iterrows():
        shares = t.loc[t["rep_id"] == rep, "domain"].value_counts(normalize=True)
        assert row["top_domain_pct"] == pytest.approx(100.0 * shares.max())
        assert shares[row["top_domain"]] == shares.max()


def test_mix_summary_columns(sample_wh):
    df = mix_summary(sample_wh, WINDOW)
    assert list(df.columns) == ["rep_id", "high_urgent_pct", "top_domain", "top_domain_pct"]
    assert df["high_urgent_pct"].between(0, 100).all()


# --- a planted, mix-controlled dataset ----------------------------------------------------------

CELL_HOURS = {("normal", "billing"): 20.0, ("normal", "network"): 30.0,
              ("urgent", "billing"): 3.0, ("urgent", "network"): 5.0}


def _planted(folder: Path) -> Path:
    """Six ordinary reps and one three times slower, all with the same mix; one rep with only
    urgent tickets and one with only normal ones, at everyone's speed; one with a handful."""
    rng = np.random.default_rng(3)
    start = datetime(2025, 1, 1)
    rows, reps = [], []
    plan = {f"R{i}": (list(CELL_HOURS), 30, 1.0) for i in range(1, 7)}
    plan["SLOW"] = (list(CELL_HOURS), 30, 3.0)
    plan["URGENT"] = ([c for c in CELL_HOURS if c[0] == "urgent"], 60, 1.0)
    plan["NORMAL"] = ([c for c in CELL_HOURS if c[0] == "normal"], 60, 1.0)
    plan["NEW"] = (list(CELL_HOURS), 3, 1.0)
    for rep, (cells, per_cell, factor) in plan.items():
        reps.append({"rep_id": rep, "name": f"Rep {rep}", "team": "Support", "manager": "Ann"})
        for priority, domain in cells:
            hours = CELL_HOURS[(priority, domain)] * factor * rng.lognormal(0, 0.5, per_cell)
            for h in hours:
                created = start + timedelta(minutes=int(rng.integers(0, 60 * 24 * 28)))
                rows.append({
                    "ticket_id": f"T{len(rows):05d}", "created_at": created, "status": "closed",
                    "resolved_at": created + timedelta(seconds=round(h * 3600)),
                    "priority": priority, "domain": domain, "rep_id": rep,
                })
    write_csv(folder, "tickets", rows)
    write_csv(folder, "representatives", reps)
    return folder


@pytest.fixture(scope="module")
def planted_wh(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    ingest(_planted(tmp / "src"), db=tmp / "wh.duckdb")
    wh = Warehouse(tmp / "wh.duckdb", read_only=True)
    yield wh
    wh.close()


def test_unusual_flags_the_slow_rep_and_not_the_mix(planted_wh):
    got = unusual(planted_wh, Filters(), "avg_resolution_h").set_index("rep_id")
    assert got.loc["SLOW", "flag"]
    assert got.loc["SLOW", "status"] == "worse than the mix predicts"
    assert got.loc["SLOW", "observed"] > 2 * got.loc["SLOW", "expected_from_mix"]
    assert got.index[0] == "SLOW"  # flagged reps come first
    overall = leaderboard(planted_wh, Filters(), "team")["avg_resolution_h"].iloc[0]
    # Raw figures far from everyone's, only because of the mix: not flagged.
    assert got.loc["URGENT", "observed"] < overall / 2
    assert got.loc["NORMAL", "observed"] > overall
    for rep in ("URGENT", "NORMAL"):
        assert not got.loc[rep, "flag"], rep
        assert got.loc[rep, "status"] == "as expected"
        assert got.loc[rep, "q_value"] > 0.05
        assert got.loc[rep, "observed"] == pytest.approx(got.loc[rep, "expected_from_mix"],
                                                         rel=0.1)
    assert got.loc["URGENT", "high_urgent_pct"] == 100.0
    assert got.loc["NORMAL", "high_urgent_pct"] == 0.0
    assert got.loc["NEW", "status"] == "too few tickets"
    assert pd.isna(got.loc["NEW", "q_value"])
    assert not got.loc["SLOW", "in_reference"]
    ordinary = got.loc[[f"R{i}" for i in range(1, 7)]]
    assert (ordinary["z"].abs() < 3).all()


def test_a_significant_but_small_difference_is_not_flagged(planted_wh):
    """SLOW is three times slower: flagged at the default 1.5×, not when 4× is required."""
    got = unusual(planted_wh, Filters(), "avg_resolution_h", min_effect=4.0).set_index("rep_id")
    assert got.loc["SLOW", "q_value"] < 0.05
    assert got.loc["SLOW", "observed"] < 4.0 * got.loc["SLOW", "expected_from_mix"]
    assert not got.loc["SLOW", "flag"]
    assert got.loc["SLOW", "status"] == "small difference"
    assert not got["flag"].any()


def test_rep_trend_is_rep_beside_team_median(planted_wh):
    df = rep_trend(planted_wh, Filters(), "SLOW", "avg_resolution_h")
    assert list(df.columns) == ["period", "rep", "team_median", "team_reps"]
    assert len(leaderboard(planted_wh, Filters(), "rep")) == 10
    assert df["team_reps"].max() == 10  # the rep with a handful of tickets skips a week
    assert (df["team_reps"] >= 9).all()
    assert (df["rep"] > df["team_median"]).all()
    with pytest.raises(CsMetricsError, match="no representative"):
        rep_trend(planted_wh, Filters(), "NOBODY", "avg_resolution_h")


def test_rep_trend_matches_pandas(sample_wh, prepared):
    tickets, _ = prepared
    rep = leaderboard(sample_wh, WINDOW, "rep").iloc[0]
    got = rep_trend(sample_wh, WINDOW, rep["rep_id"], "avg_resolution_h")
    t = _in_window(tickets)
    t = t[(t["team"] == rep["team"]) & t["rep_id"].notna()].copy()
    t["period"] = reference.bucket(t["created_at"], "week").dt.date
    per_rep = t.groupby(["period", "rep_id"])["res_h"].mean().dropna()
    median = per_rep.groupby(level="period").median()
    mine = per_rep.xs(rep["rep_id"], level="rep_id")
    assert list(got["period"]) == list(median.index)
    np.testing.assert_allclose(got["team_median"], median.to_numpy())
    np.testing.assert_allclose(got["rep"], mine.reindex(got["period"]).to_numpy())


# --- textbook values -------------------------------------------------------------------------


def test_benjamini_hochberg_textbook():
    p = pd.Series([0.01, 0.04, 0.03, 0.005, np.nan])
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q[:4], [0.02, 0.04, 0.04, 0.02])
    assert pd.isna(q[4])


def _two_reps(folder: Path, a: list[dict], b: list[dict]) -> Path:
    rows = []
    for rep, extra in (("A", a), ("B", b)):
        for i, e in enumerate(extra):
            created = datetime(2025, 1, 1) + timedelta(minutes=7 * len(rows))
            rows.append({"ticket_id": f"{rep}{i}", "created_at": created, "status": "closed",
                         "priority": "normal", "domain": "billing", "rep_id": rep,
                         "resolved_at": created + timedelta(seconds=e.pop("seconds", 3600)),
                         **e})
    write_csv(folder, "tickets", rows)
    return folder


def test_one_cell_proportions_are_the_two_proportion_z_test(tmp_path):
    # Rep A closes 60 of 100 at first contact, rep B 45 of 100.
    a = [{"contacts": 1 if i < 60 else 2, "reopened_count": 0} for i in range(100)]
    b = [{"contacts": 1 if i < 45 else 2, "reopened_count": 0} for i in range(100)]
    ingest(_two_reps(tmp_path / "src", a, b), db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    # 7.5 points from the pooled rate: below the default 10, so the rule is relaxed here
    got = unusual(wh, Filters(), "fcr_pct", min_effect=5.0).set_index("rep_id")
    wh.close()
    z, p = proportions_ztest([60, 45], [100, 100])
    assert p == pytest.approx(0.03367, abs=5e-5)  # pooled z = 2.124
    assert got.loc["A", "z"] == pytest.approx(z)
    assert got.loc["B", "z"] == pytest.approx(-z)
    assert got.loc["A", "p_value"] == pytest.approx(p)
    assert got.loc["A", "q_value"] == pytest.approx(p)  # two equal p-values: q = p
    assert got.loc["A", "expected_from_mix"] == pytest.approx(52.5)
    assert got.loc["A", "status"] == "better than the mix predicts"
    assert got.loc["B", "status"] == "worse than the mix predicts"


def test_one_cell_durations_are_a_z_test_on_log_hours(tmp_path):
    rng = np.random.default_rng(1)
    secs_a = np.round(3600 * rng.lognormal(0.0, 0.6, 40)).astype(int)
    secs_b = np.round(3600 * rng.lognormal(0.3, 0.6, 50)).astype(int)
    a = [{"seconds": int(s)} for s in secs_a]
    b = [{"seconds": int(s)} for s in secs_b]
    ingest(_two_reps(tmp_path / "src", a, b), db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    got = unusual(wh, Filters(), "avg_resolution_h").set_index("rep_id")
    wh.close()
    la, lb = np.log(secs_a / 3600 + 1 / 3600), np.log(secs_b / 3600 + 1 / 3600)
    s = np.concatenate([la, lb]).std(ddof=1)  # spread of the cell under "no difference"
    z = (la.mean() - lb.mean()) / (s * np.sqrt(1 / 40 + 1 / 50))
    assert got.loc["A", "z"] == pytest.approx(z)
    assert got.loc["A", "p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert got.loc["A", "observed"] == pytest.approx(secs_a.mean() / 3600)


def test_no_representatives_gives_empty_tables(tmp_path):
    write_csv(tmp_path / "src", "tickets", [
        {"ticket_id": "T1", "created_at": "2025-01-01 10:00:00", "status": "closed",
         "resolved_at": "2025-01-01 12:00:00"},
    ])
    ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    assert leaderboard(wh, Filters(), "rep").empty
    assert unusual(wh, Filters(), "avg_resolution_h").empty
    wh.close()


# --- what a lead reads: sentences, ranking, the effect-size rule ------------------------------


@pytest.mark.parametrize("metric", ["avg_resolution_h", "avg_first_response_min",
                                    "sla_resolution_pct"])
def test_sentences_carry_the_library_figures(sample_wh, metric):
    got = unusual(sample_wh, WINDOW, metric)
    flagged = got[got["flag"]]
    assert len(flagged) > 0
    assert (got.loc[~got["flag"], "sentence"] == "").all()
    label = get_metric(metric).label
    for _, row in flagged.iterrows():
        obs, exp = row["observed"], row["expected_from_mix"]
        unit = get_metric(metric).unit
        head = (f"{label} {obs:,.1f} {unit} against {exp:,.1f} {unit} expected for their mix"
                .replace(" % ", " % ").replace(" %", " %"))
        assert row["sentence"].startswith(head), row["sentence"]
        if TESTS[metric].kind == "duration":
            ratio = obs / exp
            want = f"({ratio:.1f}× as long)" if ratio >= 1 else f"({1 / ratio:.1f}× as fast)"
            assert row["effect"] == pytest.approx(max(ratio, 1 / ratio))
        else:
            diff = obs - exp
            want = f"({abs(diff):.1f} points {'higher' if diff >= 0 else 'lower'})"
            assert row["effect"] == pytest.approx(abs(diff))
        assert row["sentence"].endswith(want), row["sentence"]
    # ranked by the size of the difference, flagged first
    assert list(got["flag"]) == sorted(got["flag"], reverse=True)
    assert flagged["effect"].is_monotonic_decreasing


def test_unusual_sentence_example():
    assert unusual_sentence("avg_first_response_min", 42.0, 18.0) == \
        "Avg first response 42.0 min against 18.0 min expected for their mix (2.3× as long)"
    assert unusual_sentence("fcr_pct", 62.0, 75.25) == \
        "First-contact resolution 62.0 % against 75.2 % expected for their mix (13.2 points " \
        "lower)"


@pytest.mark.parametrize("metric", list(TESTS))
def test_only_a_handful_are_flagged_on_the_sample(sample_wh, metric):
    end = sample_wh.as_of().date() + timedelta(days=1)
    got = unusual(sample_wh, Filters(end - timedelta(days=90), end), metric)
    tested = got[got["status"] != "too few tickets"]
    assert int(got["flag"].sum()) < 0.25 * max(len(tested), 1), metric


def test_a_significant_but_tiny_difference_is_not_flagged(tmp_path):
    """B is 12 % slower than A on thousands of tickets: certain, and not worth a flag."""
    rng = np.random.default_rng(5)
    a = [{"seconds": int(s)} for s in np.round(3600 * rng.lognormal(0.0, 0.3, 1500))]
    b = [{"seconds": int(s)} for s in np.round(3600 * 1.12 * rng.lognormal(0.0, 0.3, 1500))]
    ingest(_two_reps(tmp_path / "src", a, b), db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    got = unusual(wh, Filters(), "avg_resolution_h").set_index("rep_id")
    wh.close()
    assert got.loc["B", "q_value"] < 1e-6  # clearly significant
    assert got.loc["B", "effect"] < FLAG_MIN_EFFECT["duration"]
    assert not got["flag"].any()
    assert got.loc["B", "status"] == "small difference"
    assert (got["sentence"] == "").all()


@pytest.mark.parametrize("q, text", [(3e-7, "< 0.0001"), (0.0, "< 0.0001"),
                                     (0.0001, "0.0001"), (0.04321, "0.0432"),
                                     (float("nan"), "–"), (None, "–")])
def test_format_q(q, text):
    assert format_q(q) == text

"""Cohorts against a pandas computation of their definitions (README, Customer feedback
analysis)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.cohorts import COHORT_COLUMNS, TENURE_BANDS, cohort_table
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import load_settings
from tests import reference
from tests.conftest import ticket, write_csv


@pytest.fixture(scope="module")
def ref(sample_dir):
    return reference.prepare(sample_dir, load_settings())


def expected(ref, filters: Filters, by: str, days: int, as_of) -> pd.DataFrame:
    tickets, feedback = ref
    live = tickets[~tickets["is_test"] & tickets["customer_id"].notna()]
    first = live.groupby("customer_id")["created_at"].min().dt.to_period("M").dt.start_time
    t = live.copy()
    if filters.date_from is not None:
        t = t[t["created_at"] >= pd.Timestamp(filters.date_from)]
    if filters.date_to is not None:
        t = t[t["created_at"] < pd.Timestamp(filters.date_to)]
    for dim, values in filters.where:
        t = t[t[dim].isin(values)]
    t = t.copy()
    t["cohort"] = t["customer_id"].map(first)
    months = ((t["created_at"].dt.year - t["cohort"].dt.year) * 12
              + t["created_at"].dt.month - t["cohort"].dt.month)
    t["tenure"] = None
    for label, lo in TENURE_BANDS:
        t.loc[months >= lo, "tenure"] = label
    # the customer's next ticket (any, not only the filtered ones)
    later = live[["customer_id", "created_at"]].sort_values(["customer_id", "created_at"])
    nxt = {}
    for cid, g in later.groupby("customer_id"):
        times = g["created_at"].to_numpy()
        for created in np.unique(times):
            after = times[times > created]  # strictly later
            nxt[(cid, created)] = after[0] if len(after) else pd.NaT
    t["next_at"] = [nxt[(c, np.datetime64(x))] for c, x in
                    zip(t["customer_id"], t["created_at"], strict=True)]
    window = pd.Timedelta(days=days)
    closed = (t["status"] == "closed") & t["resolved_at"].notna()
    t["in_window"] = closed & (t["resolved_at"] + window <= pd.Timestamp(as_of))
    t["recontacted"] = t["next_at"].notna() & (t["next_at"] <= t["resolved_at"] + window)
    csat = feedback.dropna(subset=["csat"])
    good = (csat["csat"] >= 4).groupby(csat["ticket_id"]).sum()
    n = csat.groupby("ticket_id").size()
    total = csat.groupby("ticket_id")["csat"].sum()
    t["csat_n"] = t["ticket_id"].map(n).fillna(0)
    t["csat_good"] = t["ticket_id"].map(good).fillna(0)
    t["csat_sum"] = t["ticket_id"].map(total).fillna(0)
    rows = []
    for key, g in t.groupby(by, sort=True):
        base = g[g["in_window"]]
        rows.append({
            by: key,
            "customers": g["customer_id"].nunique(),
            "tickets": len(g),
            "csat_responses": int(g["csat_n"].sum()),
            "csat_pct": 100 * g["csat_good"].sum() / g["csat_n"].sum() if g["csat_n"].sum()
            else np.nan,
            "csat_avg": g["csat_sum"].sum() / g["csat_n"].sum() if g["csat_n"].sum()
            else np.nan,
            "recontact_base": len(base),
            "recontacts": int(base["recontacted"].sum()),
        })
    return pd.DataFrame(rows)


@pytest.mark.parametrize("by", ["cohort", "customer_segment", "tenure"])
@pytest.mark.parametrize(
    "filters",
    [Filters(), Filters.build(date(2025, 1, 1), date(2025, 3, 1), channel=["chat", "phone"])],
    ids=["all", "window"],
)
def test_cohorts_match_pandas(sample_wh, ref, by, filters):
    got = cohort_table(sample_wh, filters, by, recontact_days=7)
    want = expected(ref, filters, by, 7, sample_wh.as_of())
    if by == "cohort":
        want["cohort"] = want["cohort"].dt.date
    if by == "tenure":
        order = [label for label, _ in TENURE_BANDS]
        want = want.set_index("tenure").reindex([o for o in order if o in set(want["tenure"])])
        want = want.reset_index()
    assert got[by].tolist() == want[by].tolist()
    for col in ("customers", "tickets", "csat_responses", "recontact_base", "recontacts"):
        assert got[col].tolist() == want[col].tolist(), col
    np.testing.assert_allclose(got["csat_pct"], want["csat_pct"], rtol=1e-9)
    np.testing.assert_allclose(got["csat_avg"], want["csat_avg"], rtol=1e-9)
    base = got["recontact_base"] > 0
    np.testing.assert_allclose(got.loc[base, "recontact_pct"],
                               100 * got.loc[base, "recontacts"] / got.loc[base, "recontact_base"])
    assert list(got.columns[1:len(COHORT_COLUMNS) + 1]) == list(COHORT_COLUMNS)
    assert (got.loc[got["csat_responses"] < 30, "note"] == "few responses").all()
    assert (got.loc[got["csat_responses"] >= 30, "note"] == "").all()
    if by == "cohort":  # the data's first month holds customers who came before it
        assert got["left_censored"].tolist() == [True] + [False] * (len(got) - 1)
    if by == "customer_segment":  # the same tickets as the registry counts
        reg = cs_metrics.query(sample_wh, ["csat_pct"], ["customer_segment"], filters=filters)
        merged = got.merge(reg, on="customer_segment", suffixes=("", "_reg"))
        np.testing.assert_allclose(merged["csat_pct"], merged["csat_pct_reg"], rtol=1e-9)


def test_cohort_by_month_adds_up(sample_wh):
    whole = cohort_table(sample_wh, None, "cohort")
    grid = cohort_table(sample_wh, None, "cohort", grain="month")
    assert {"cohort", "period"} <= set(grid.columns)
    assert (grid["period"] >= grid["cohort"]).all()  # no ticket before the first one
    summed = grid.groupby("cohort")[["tickets", "csat_responses", "recontacts"]].sum()
    assert summed["tickets"].tolist() == whole["tickets"].tolist()
    assert summed["recontacts"].tolist() == whole["recontacts"].tolist()


def test_recontact_window_and_a_dataset_without_customers(tmp_path):
    write_csv(tmp_path / "src", "tickets", [
        ticket("A1", "2025-01-01 10:00:00", "closed", resolved_at="2025-01-01 12:00:00",
               customer_id="C1"),
        ticket("A2", "2025-01-05 10:00:00", "closed", resolved_at="2025-01-05 11:00:00",
               customer_id="C1"),  # 4 days after A1 was resolved: a recontact within 7
        ticket("A3", "2025-02-20 10:00:00", "closed", resolved_at="2025-02-20 11:00:00",
               customer_id="C1"),  # 46 days after A2: none
        ticket("B1", "2025-01-10 10:00:00", "closed", resolved_at="2025-01-11 10:00:00",
               customer_id="C2"),
        ticket("B2", "2025-02-25 10:00:00", "open", customer_id="C2"),  # window not ended
        ticket("X1", "2025-03-01 10:00:00", "open"),
    ])
    cs_metrics.ingest(tmp_path / "src", db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    df = cohort_table(wh, None, "cohort", recontact_days=7).set_index("cohort")
    jan = df.loc[date(2025, 1, 1)]
    assert (jan["customers"], jan["tickets"]) == (2, 5)
    # A1 (recontacted), A2, B1 have complete windows; A3 ends 2025-02-27 < as of 03-01
    assert (jan["recontact_base"], jan["recontacts"]) == (4, 1)
    longer = cohort_table(wh, None, "cohort", recontact_days=50).set_index("cohort")
    # with 50 days only A1's and A2's windows have ended, and both were followed in them
    assert (longer.loc[date(2025, 1, 1), "recontact_base"],
            longer.loc[date(2025, 1, 1), "recontacts"]) == (2, 2)
    with pytest.raises(CsMetricsError, match="Group cohorts by"):
        cohort_table(wh, None, "planet")  # type: ignore[arg-type]
    wh.close()
    write_csv(tmp_path / "plain", "tickets", [ticket("T1")])
    cs_metrics.ingest(tmp_path / "plain", db=tmp_path / "plain.duckdb")
    wh = Warehouse(tmp_path / "plain.duckdb", read_only=True)
    with pytest.raises(CsMetricsError, match="no customer ids"):
        cohort_table(wh)
    wh.close()

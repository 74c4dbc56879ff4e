"""Year over year: the same dates a year earlier, in the library and in reports, only where
the data reaches back that far; figures checked against an independent pandas computation."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from cs_metrics import Filters, Warehouse, ingest, query
from cs_metrics.core.settings import load_settings
from cs_metrics.ops import reports as R
from simulations.generator import generate
from tests import reference

END = datetime(2025, 3, 1)  # the history covers [END - 500 days, END): from 18 Oct 2023
DAYS = 500
NAMES = ["ticket_count", "closed_count", "avg_first_response_min", "sla_first_response_pct",
         "avg_resolution_h", "fcr_pct", "csat_pct"]
DATA_BLOCK = re.compile(
    r'<script type="application/json" id="cs-metrics-report-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("yoy") / "src"
    generate(out, tickets=3000, days=DAYS, seed=23, end=END)
    return out


@pytest.fixture(scope="module")
def long_wh(long_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("yoy_wh") / "wh.duckdb"
    ingest(long_dir, db=db)
    wh = Warehouse(db, read_only=True)
    yield wh
    wh.close()


@pytest.fixture(scope="module")
def long_ref(long_dir) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    return reference.prepare(long_dir, load_settings())


def close(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return b is not None and not pd.isna(b) and math.isclose(float(a), float(b),
                                                             rel_tol=1e-9, abs_tol=1e-9)


# --- the dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("day", "want"), [
    (date(2024, 2, 29), date(2023, 2, 28)),  # no 29 February in 2023
    (date(2024, 3, 1), date(2023, 3, 1)),
    (date(2025, 2, 28), date(2024, 2, 28)),
    (date(2025, 1, 1), date(2024, 1, 1)),
    (date(1, 5, 5), None),  # no year before year 1
])
def test_the_same_day_a_year_earlier(day, want):
    assert R.year_earlier_day(day) == want


@pytest.mark.parametrize(("start", "end", "want"), [
    # February 2024 (29 days) -> February 2023 (28 days): the whole month either way
    (date(2024, 2, 1), date(2024, 3, 1), (date(2023, 2, 1), date(2023, 3, 1))),
    # a range starting on 29 February starts on 28 February a year earlier
    (date(2024, 2, 29), date(2024, 3, 6), (date(2023, 2, 28), date(2023, 3, 6))),
    # a range ending on 29 February ends on 28 February
    (date(2024, 2, 20), date(2024, 3, 1), (date(2023, 2, 20), date(2023, 3, 1))),
    # a week keeps its dates
    (date(2025, 2, 17), date(2025, 2, 24), (date(2024, 2, 17), date(2024, 2, 24))),
    (date(1, 1, 1), date(1, 2, 1), None),
])
def test_the_range_a_year_earlier(start, end, want):
    assert R.year_earlier_range(start, end) == want


def test_a_year_earlier_only_where_the_data_reaches_back(long_wh):
    first = long_wh.created_range()[0].date()
    assert first == date(2023, 10, 18)
    # January 2025 -> January 2024: inside the data
    assert R.year_earlier_in_data(long_wh, date(2025, 1, 1), date(2025, 2, 1)) == \
        (date(2024, 1, 1), date(2024, 2, 1))
    # from 18 Oct 2024 the year-earlier range starts on the data's first day
    assert R.year_earlier_in_data(long_wh, date(2024, 10, 18), date(2024, 11, 1)) == \
        (date(2023, 10, 18), date(2023, 11, 1))
    # a day earlier and the data does not reach the start of the year-earlier range
    assert R.year_earlier_in_data(long_wh, date(2024, 10, 17), date(2024, 11, 1)) is None
    assert R.year_earlier_in_data(long_wh, date(2024, 1, 1), date(2024, 2, 1)) is None


def test_year_earlier_figures_are_the_pandas_figures(long_wh, long_ref):
    tickets, feedback = long_ref
    start, end = date(2024, 12, 1), date(2025, 3, 1)
    shifted = R.year_earlier_in_data(long_wh, start, end)
    # the last day, 28 February 2025, is 28 February 2024: the 29th has no day a year later
    assert shifted == (date(2023, 12, 1), date(2024, 2, 29))
    got = query(long_wh, NAMES, filters=Filters(*shifted)).iloc[0]
    want = reference.compute(tickets, feedback, NAMES, [], None, *shifted).iloc[0]
    assert got["ticket_count"] == want["ticket_count"] > 400
    for name in NAMES:
        assert close(got[name], want[name]), name


# --- reports -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yoy_report(long_wh) -> R.RenderedReport:
    return R.render(R.build_report(long_wh, "executive", "2025-02"))


def test_the_report_compares_with_the_same_month_a_year_earlier(long_wh, long_ref, yoy_report):
    report = yoy_report.report
    # February 2025 -> 1 to 28 February 2024 (29 February 2024 has no day a year later)
    assert report.scope.year_earlier_range == (date(2024, 2, 1), date(2024, 2, 29))
    data = json.loads(yoy_report.json_text)
    period = data["scope"]["period"]
    assert (period["year_earlier_from"], period["year_earlier_to"]) == \
        ("2024-02-01", "2024-02-29")
    kpis = {r["metric"]: r for r in data["tables"]["kpis"]["rows"]}
    names = list(kpis)
    then = query(long_wh, names, filters=Filters(date(2024, 2, 1), date(2024, 2, 29))).iloc[0]
    now = query(long_wh, names, filters=Filters(date(2025, 2, 1), date(2025, 3, 1))).iloc[0]
    for name in names:
        assert close(kpis[name]["year_earlier"], then[name]), name
        if kpis[name]["year_earlier"] is not None and kpis[name]["value"] is not None:
            assert close(kpis[name]["year_change"], now[name] - then[name]), name
    tickets, feedback = long_ref
    ref = reference.compute(tickets, feedback, ["ticket_count", "csat_pct"], [], None,
                            date(2024, 2, 1), date(2024, 2, 29)).iloc[0]
    assert kpis["ticket_count"]["year_earlier"] == ref["ticket_count"] > 0
    assert close(kpis["csat_pct"]["year_earlier"], ref["csat_pct"])
    # the source the JSON names gives the same figures
    source = [s for s in data["tables"]["kpis"]["sources"] if s["column"] == "year_earlier"]
    assert len(source) == 1
    assert source[0]["filters"]["date_from"] == "2024-02-01"
    assert source[0]["filters"]["date_to"] == "2024-02-29"


def test_the_report_html_and_markdown_show_the_year_earlier_column(yoy_report):
    page = yoy_report.html
    embedded = json.loads(DATA_BLOCK.search(page).group(1))
    assert embedded["scope"]["period"]["year_earlier_from"] == "2024-02-01"
    kpis = yoy_report.report.kpis.df.set_index("metric")
    head = page.split('<section id="kpis">', 1)[1].split("</section>", 1)[0]
    assert "<th class=\"num\">A year earlier</th>" in head
    assert "Change over the year" in head
    count = int(kpis.loc["ticket_count", "year_earlier"])
    change = R.change_text(R.get_metric("ticket_count"), kpis.loc["ticket_count", "value"],
                           count)
    assert f"<td class=\"num\">{count:,d}</td>" in head
    assert change in head
    assert "01 Feb 2024 – 28 Feb 2024 (28 days)" in page
    md = yoy_report.markdown
    assert "| A year earlier | Change over the year |" in md
    assert f"| {count:,d} | {change} |" in md
    assert "Year over year | 01 Feb 2024 – 28 Feb 2024 (28 days)" in md


def test_no_year_earlier_column_where_the_data_does_not_reach_back(long_wh):
    # December 2023 -> December 2022, before the data starts (18 Oct 2023)
    rendered = R.render(R.build_report(long_wh, "executive", "2023-12"))
    report = rendered.report
    assert report.scope.year_earlier_range is None
    assert "year_earlier" not in report.kpis.df.columns
    data = json.loads(rendered.json_text)
    assert data["scope"]["period"]["year_earlier_from"] is None
    assert all("year_earlier" not in r for r in data["tables"]["kpis"]["rows"])
    assert not [s for s in data["tables"]["kpis"]["sources"] if s["column"] == "year_earlier"]
    assert "A year earlier" not in rendered.html
    assert "No data a year earlier (01 Dec 2022 – 31 Dec 2022 (31 days)) (the data starts " \
        "on 18 Oct 2023)" in report.kpis.note
    assert "no data a year earlier" in rendered.markdown


@pytest.mark.usefixtures("fresh_caches")
def test_the_reports_page_shows_the_year_earlier_figures(long_wh, yoy_report, monkeypatch,
                                                         tmp_path):
    import shutil

    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    kpis = yoy_report.report.kpis.df.set_index("metric")
    # a copy: this process holds the fixture's file read-only, the page opens it read-write
    db = tmp_path / "wh.duckdb"
    shutil.copy(long_wh.path, db)
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(str(REPO / "views" / "reports.py"), default_timeout=120)
    at.session_state["report_period"] = "month"
    at.session_state["report_month"] = "2025-02"
    at.run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    line = next(c.value for c in at.caption if c.value.startswith("Year over year"))
    assert line.startswith("Year over year, against 01 Feb 2024 – 28 Feb 2024: ")
    metric = R.get_metric("ticket_count")
    then = kpis.at["ticket_count", "year_earlier"]
    change = R.change_text(metric, kpis.at["ticket_count", "value"], then)
    assert f"{metric.label} {metric.display(then)} ({change})" in line
    # the preview holds the report's year-earlier column
    assert "A year earlier" in at.get("html")[0].value

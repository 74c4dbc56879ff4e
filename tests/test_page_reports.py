"""The Reports page, run headless: its preview shows the library's report, and it downloads."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from cs_metrics import Warehouse, get_metric, query
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ops import reports as R
from tests.conftest import REPO

PAGE = str(REPO / "views" / "reports.py")
TIMEOUT = 120

pytestmark = pytest.mark.usefixtures("fresh_caches")


def library(db: Path, audience: str = "executive", **kw) -> R.Report:
    wh = Warehouse(db)  # the page opens the file read-write: one configuration per process
    try:
        return R.build_report(wh, audience, kw.pop("period", "last-week"), **kw)
    finally:
        wh.close()


def run_page(monkeypatch, db: Path, **choices: object) -> AppTest:
    """The page's first run, with its widgets set to ``choices`` (key = value) beforehand."""
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    for key, value in choices.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("build the report" in i.value for i in at.info)  # nothing built unasked
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def shown_figures(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_preview_is_the_librarys_report(sample_db, monkeypatch, deferred_downloads):
    saved: dict[str, object] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if filename:
            saved[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    want = library(sample_db)
    at = run_page(monkeypatch, sample_db)
    assert at.subheader[0].value == "Executive performance report"
    kpis = want.kpis.df.set_index("metric")
    shown = shown_figures(at)
    for name in ("ticket_count", "sla_first_response_pct", "avg_resolution_h", "csat_pct"):
        metric = get_metric(name)
        assert shown[metric.label] == metric.display(kpis.at[name, "value"]), name
    # the preview: the report itself, every KPI of it
    [preview] = at.get("html")
    body = preview.value
    assert body.startswith('<div class="csm-report"><style>')
    assert want.scope.period.label in body
    for name, row in kpis.iterrows():
        metric = get_metric(name)
        assert f'<td>{metric.label}</td><td class="num">{metric.display(row["value"])}</td>' \
            in body, name
    assert "https://" not in body and "http://" not in body

    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download HTML", "Download Markdown (zip)", *R.REFERENCE_CHARTS,
                      "Download JSON"]
    stem = f"report_executive_{want.scope.period.slug}"
    html = saved[f"{stem}.html"]
    assert html.startswith(b"<!DOCTYPE html>") and b"https://" not in html
    assert f"{stem}_md.zip" not in saved  # the zip is made on click
    with zipfile.ZipFile(io.BytesIO(deferred_downloads[f"{stem}_md.zip"]())) as zf:
        assert {"report.md", "report.json", *R.REFERENCE_CHARTS} <= set(zf.namelist())
    for name in R.REFERENCE_CHARTS:
        assert saved[f"{stem}_{name}"][:8] == b"\x89PNG\r\n\x1a\n"


def test_a_team_report_of_one_team(sample_db, monkeypatch):
    wh = Warehouse(sample_db)
    team = wh.dimension_values("team")[0]
    wh.close()
    want = library(sample_db, "team", team=team, period="last-month")
    at = run_page(monkeypatch, sample_db, report_audience="team", report_team=team,
                  report_period="last-month")
    assert at.selectbox(key="report_team").value == team
    assert at.subheader[0].value == escape_markdown(f"Team performance report: {team}")
    count = want.kpis.df.set_index("metric").at["ticket_count", "value"]
    assert shown_figures(at)["Tickets"] == get_metric("ticket_count").display(count)
    body = at.get("html")[0].value
    for rep_name in want.representatives.df["rep_name"]:
        assert rep_name in body


def test_a_representative_and_a_calendar_month(sample_db, monkeypatch):
    wh = Warehouse(sample_db)
    rep_id = wh.dimension_values("rep_id")[0]
    month = f"{wh.created_range()[1]:%Y-%m}"
    wh.close()
    want = library(sample_db, "representative", rep=rep_id, period=month)
    at = run_page(monkeypatch, sample_db, report_audience="representative", report_rep=rep_id,
                  report_period="month", report_month=month)
    assert at.subheader[0].value == escape_markdown(want.scope.title)
    body = at.get("html")[0].value
    assert "Team median" in body and want.scope.period.label in body


def test_an_empty_scope_says_so(sample_db, monkeypatch):
    wh = Warehouse(sample_db)
    teams = query(wh, ["ticket_count"], by=["team", "rep_name"])
    wh.close()
    teams = teams.dropna()
    team = teams["team"].iloc[0]
    stranger = teams.loc[teams["team"] != team, "rep_name"].iloc[0]
    monkeypatch.setenv("CS_METRICS_DB", str(sample_db))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["report_audience"] = "team"
    at.session_state["report_team"] = team
    at.session_state["filter_rep_name"] = [stranger]
    at.run()
    at.button(key="report_build").click().run()
    assert not at.exception
    assert at.error and "No tickets were created" in at.error[0].value
    assert not at.get("download_button")

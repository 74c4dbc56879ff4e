"""The Customer feedback page, run headless: it shows the numbers the library computes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric
from cs_metrics.analysis.feedback import (
    FEEDBACK_METRICS,
    FEW_RESPONSES,
    feedback_breakdown,
    latest_comments,
    score_distribution,
)
from cs_metrics.core.safe_text import escape_markdown
from tests.conftest import REPO, ticket, write_csv

PAGE = str(REPO / "views" / "feedback.py")
TIMEOUT = 60
DEFAULT_DAYS = 90  # the sidebar's default range: the last 90 days of data

pytestmark = pytest.mark.usefixtures("fresh_caches")


def small_db(folder: Path, feedback: list[dict] | None) -> Path:
    write_csv(folder / "src", "tickets", [
        ticket("T1", "2025-01-10 10:00:00", "closed", resolved_at="2025-01-10 12:00:00",
               channel="email"),
        ticket("T2", "2025-01-12 09:30:00", "closed", resolved_at="2025-01-12 11:00:00",
               channel="chat"),
        ticket("T3", "2025-01-20 15:00:00", "open", channel="chat"),
    ])
    if feedback is not None:
        write_csv(folder / "src", "feedback", feedback)
    cs_metrics.ingest(folder / "src", db=folder / "wh.duckdb")
    return folder / "wh.duckdb"


def default_filters(wh: Warehouse) -> Filters:
    last = min(wh.created_range()[1].date(), wh.as_of().date())
    end = last + timedelta(days=1)
    return Filters(end - timedelta(days=DEFAULT_DAYS), end)


def run_page(monkeypatch, db: Path) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def library(db: Path, fn, *args, **kwargs):
    # Read-write, like the app: one process opens a DuckDB file with one configuration.
    wh = Warehouse(db)
    try:
        return fn(wh, default_filters(wh), *args, **kwargs)
    finally:
        wh.close()


def comments_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Comments "))


def test_cards_distributions_breakdown_and_comments(sample_db, monkeypatch,
                                                     deferred_downloads):
    want = library(sample_db, lambda wh, f: cs_metrics.query(wh, list(FEEDBACK_METRICS),
                                                             filters=f).iloc[0])
    at = run_page(monkeypatch, sample_db)
    shown = {m.label: m for m in at.metric}
    assert list(shown) == [get_metric(n).label for n in FEEDBACK_METRICS]
    for name in FEEDBACK_METRICS:
        metric = get_metric(name)
        assert shown[metric.label].value == metric.display(want[name]), name
        assert shown[metric.label].help == metric.description
    assert shown["CSAT"].value == f"{want['csat_pct']:.1f} %"

    # three score distributions and the breakdown chart
    assert len(at.get("vega_lite_chart")) >= 4
    csat = library(sample_db, score_distribution, "csat")
    wh = Warehouse(sample_db)
    filters = default_filters(wh)
    wh.close()
    name = (f"csat_distribution_{filters.date_from:%Y-%m-%d}_to_"
            f"{filters.date_to - timedelta(days=1):%Y-%m-%d}.csv")
    # dated file name; the content is made on click
    assert deferred_downloads[name]() == csat.to_csv(index=False).encode()

    # breakdown by customer segment (the first choice): the library's table
    table = at.dataframe[0].value
    lib = library(sample_db, feedback_breakdown, "customer_segment")
    lib = lib[lib["feedback_count"] > 0]
    assert table["customer_segment"].tolist() == lib["customer_segment"].tolist()
    assert table["csat_pct"].tolist() == pytest.approx(lib["csat_pct"].tolist())
    assert table["feedback_count"].tolist() == lib["feedback_count"].tolist()

    # by representative: small groups are marked, not ranked
    at.selectbox(key="fb_breakdown").select("Representative").run()
    reps = at.dataframe[0].value
    few = reps["note"] == FEW_RESPONSES
    assert few.any()
    assert reps.loc[few, "rank"].isna().all()
    assert (reps.loc[few, "feedback_count"] < 30).all()

    # latest comments, newest first, ten a page
    first = library(sample_db, latest_comments, limit=10)
    comments = at.dataframe[-1].value
    assert comments["ticket_id"].tolist() == first.rows["ticket_id"].tolist()
    assert comments_caption(at).startswith(f"Comments 1–10 of {first.total:,}")
    assert at.button(key="fb_prev").disabled
    at.button(key="fb_next").click().run()
    second = library(sample_db, latest_comments, limit=10, offset=10)
    assert at.dataframe[-1].value["ticket_id"].tolist() == second.rows["ticket_id"].tolist()
    assert comments_caption(at).startswith(f"Comments 11–20 of {first.total:,}")
    assert not at.button(key="fb_prev").disabled

    # a rating band starts again at the newest comments of that band
    at.radio(key="fb_band").set_value("Negative (CSAT 1–2)").run()
    negative = library(sample_db, latest_comments, min_csat=1, max_csat=2, limit=10)
    shown_rows = at.dataframe[-1].value
    assert shown_rows["ticket_id"].tolist() == negative.rows["ticket_id"].tolist()
    assert shown_rows["csat"].between(1, 2).all()
    assert comments_caption(at).startswith(f"Comments 1–10 of {negative.total:,}")


def test_trend_follows_the_grain(sample_db, monkeypatch, deferred_downloads):
    at = run_page(monkeypatch, sample_db)
    at.radio(key="fb_grain").set_value("Month").run()
    assert not at.exception
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert any("CSAT by month" in spec for spec in specs)
    assert any("NPS by month" in spec for spec in specs)
    wh = Warehouse(sample_db)
    filters = default_filters(wh)
    monthly = cs_metrics.query(wh, ["csat_pct", "nps", "feedback_count"], grain="month",
                               filters=filters)
    wh.close()
    assert [str(p) for p in monthly["period"]] == ["2024-12-01", "2025-01-01", "2025-02-01"]
    name = "feedback_by_month_2024-12-01_to_2025-02-28.csv"
    assert deferred_downloads[name]() == monthly.to_csv(index=False).encode()


def test_a_dataset_without_feedback_says_so(tmp_path, monkeypatch):
    at = run_page(monkeypatch, small_db(tmp_path, None))
    assert any(i.value.startswith("This dataset has no survey feedback.") for i in at.info)
    assert not at.metric
    assert not at.dataframe


def test_a_dataset_without_nps_or_ces_says_so(tmp_path, monkeypatch):
    db = small_db(tmp_path, [
        {"ticket_id": "T1", "submitted_at": "2025-01-10 13:00:00", "csat": 5,
         "comment": "Quick fix, thanks. Call me on 555-123-4567 if needed."},
        {"ticket_id": "T2", "submitted_at": "2025-01-12 12:00:00", "csat": 2,
         "comment": "Too slow; write to me at ann@example.org"},
    ])
    at = run_page(monkeypatch, db)
    at.selectbox(key="date_preset").select("All time").run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["CSAT"] == "50.0 %"
    assert shown["NPS"] == "–" and shown["CES (avg)"] == "–"
    infos = [i.value for i in at.info]
    assert "This dataset has no NPS scores." in infos
    assert "This dataset has no CES scores." in infos
    comments = at.dataframe[-1].value["comment"].tolist()
    assert comments == ["Too slow; write to me at [email]",
                        "Quick fix, thanks. Call me on [phone] if needed."]
    assert pd.Series(comments).str.contains("@|4567").sum() == 0


def test_selecting_a_breakdown_row_lists_that_groups_tickets(sample_db, monkeypatch):
    at = run_page(monkeypatch, sample_db)
    at.selectbox(key="fb_breakdown").set_value("Channel").run()
    table = next(d.value for d in at.dataframe if d.key == "fb_breakdown_table")
    at.session_state["fb_breakdown_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert not at.exception
    channel = table["channel"].iloc[0]
    page = library(sample_db, cs_metrics.ticket_page, extra={"channel": channel})
    shown = next(d.value for d in at.dataframe if d.value.columns[0] == "ticket_id")
    assert shown["ticket_id"].tolist() == page.rows["ticket_id"].tolist()
    label = escape_markdown(f"Tickets of channel {channel} (with or without a survey)")
    assert any(m.value == f"**{label}**" for m in at.markdown)
    assert f"Tickets 1–{len(shown)} of {page.total:,}, newest first" in \
        [c.value for c in at.caption]


# --- comment analysis, cohorts and comparisons (issue 8) -------------------------------------


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_text_analysis_cohorts_and_comparisons(sample_db, monkeypatch):
    from cs_metrics.analysis.cohorts import cohort_table
    from cs_metrics.analysis.compare import CAUSATION_CAVEAT, Group, compare_groups, resolution_csat
    from cs_metrics.analysis.topics import DEFAULT_K, emerging_issues, topics

    at = run_page(monkeypatch, sample_db)
    heads = [h.value for h in at.subheader]
    # one analysis at a time, sentiment first; the latest comments stay last
    assert heads[-2:] == ["Comment sentiment", "Latest comments"]
    assert "Topics" not in heads

    row = library(sample_db, lambda wh, f: cs_metrics.query(
        wh, ["sentiment_avg", "negative_comment_pct"], filters=f).iloc[0])
    line = next(m.value for m in at.markdown if m.value.startswith("Comment sentiment: "))
    assert get_metric("sentiment_avg").display(row["sentiment_avg"]) in line
    assert get_metric("negative_comment_pct").display(row["negative_comment_pct"]) in line
    assert any("Spearman's ρ" in c.value and "comments with a CSAT score" in c.value
               for c in at.caption)

    at.radio(key="fbx_view").set_value("Topics").run()
    assert not at.exception
    model = library(sample_db, topics, k=DEFAULT_K)
    shown = _frame(at, "examples")
    assert shown["name"].tolist() == model.topics["name"].tolist()
    assert shown["comments"].tolist() == model.topics["comments"].tolist()
    assert any(c.value.startswith(f"{model.k} topics of all {model.total:,} comments")
               for c in at.caption)
    at.slider(key="fbx_k").set_value(5).run()
    assert not at.exception
    assert len(_frame(at, "examples")) == len(library(sample_db, topics, k=5).topics)

    at.radio(key="fbx_view").set_value("Emerging issues").run()
    found = library(sample_db, emerging_issues, recent_days=14, baseline_days=56)
    boxes = [b.value for b in (*at.success, *at.warning)]
    assert escape_markdown(found.describe()) in boxes
    assert any(c.value.startswith("Test: " + escape_markdown("per term, a one-sided exact "
                                                             "conditional test"))
               for c in at.caption)

    at.radio(key="fbx_view").set_value("Cohorts").run()
    cohorts = library(sample_db, cohort_table, "cohort")
    table = _frame(at, "recontact_pct")
    assert table["tickets"].tolist() == cohorts["tickets"].tolist()
    assert table["csat_pct"].tolist() == pytest.approx(cohorts["csat_pct"].tolist(),
                                                       nan_ok=True)
    assert table["cohort"].iloc[0].endswith("(or before)")
    assert any("CSAT % by cohort and month" in c.proto.spec
               for c in at.get("vega_lite_chart"))
    at.radio(key="fbx_cohort_by").set_value("Customer segment").run()
    segments = library(sample_db, cohort_table, "customer_segment")
    # shown by the names the settings give them ([display.segments])
    names = {"M": "Mid-market", "S": "Small business"}
    assert _frame(at, "recontact_pct")["customer_segment"].tolist() == \
        [names.get(s, s) for s in segments["customer_segment"]]

    # the first comparable figure, the two biggest channels
    at.radio(key="fbx_view").set_value("Compare groups").run()
    wh = Warehouse(sample_db)
    channels = wh.dimension_values("channel")
    wh.close()
    result = library(sample_db, lambda wh, f: compare_groups(
        wh, "csat_pct", Group.build(channels[0], channel=channels[0]),
        Group.build(channels[1], channel=channels[1]), f))
    verdicts = [b.value for b in (*at.success, *at.info, *at.warning)]
    assert escape_markdown(result.verdict if result.difference is not None
                           else result.note) in verdicts
    at.radio(key="fbx_cmp_mode").set_value("Before and after a date").run()
    assert not at.exception
    assert any("for tickets created from " in v.value or "Too few" in v.value
               for v in (*at.success, *at.info, *at.warning))

    at.radio(key="fbx_view").set_value("Resolution time and CSAT").run()
    corr = library(sample_db, resolution_csat)
    assert escape_markdown(corr.summary) in [m.value for m in at.markdown]
    assert CAUSATION_CAVEAT in [i.value for i in at.info]


def test_a_dataset_without_comments_says_so(tmp_path, monkeypatch):
    db = small_db(tmp_path, [
        {"ticket_id": "T1", "submitted_at": "2025-01-10 13:00:00", "csat": 5},
        {"ticket_id": "T2", "submitted_at": "2025-01-12 12:00:00", "csat": 2},
    ])
    at = run_page(monkeypatch, db)
    at.selectbox(key="date_preset").select("All time").run()
    for view in ("Sentiment", "Topics", "Emerging issues"):
        at.radio(key="fbx_view").set_value(view).run()
        assert not at.exception and not at.error
        assert any(i.value.startswith("This dataset has no survey comments")
                   for i in at.info), view
    at.radio(key="fbx_view").set_value("Cohorts").run()
    assert escape_markdown("This dataset has no customer ids, so it has no customer "
                           "cohorts.") in [i.value for i in at.info]
    at.radio(key="fbx_view").set_value("Compare groups").run()
    assert not at.exception and not at.error


def test_comments_on_the_page_are_masked(tmp_path, monkeypatch):
    folder = tmp_path / "src"
    people = ["Ann Lee", "Omar Haddad", "Julia Costa"]
    write_csv(folder, "customers", [
        {"customer_id": f"C{i}", "name": n, "segment": "S", "city": "Austin"}
        for i, n in enumerate(people)])
    tickets, feedback = [], []
    topics_ = ["router keeps rebooting at night", "refund for the double invoice",
               "tv channels missing since Monday"]
    for i in range(90):
        day = 1 + i % 28
        tickets.append(ticket(f"T{i}", f"2025-01-{day:02d} 09:00:00", "closed",
                              resolved_at=f"2025-01-{day:02d} 15:00:00",
                              customer_id=f"C{i % 3}", channel="chat"))
        extra = [f" Call {people[i % 3]} on 555-{200 + i}-4411.",
                 f" Mail {people[i % 3].split()[0].lower()}@example.org please.", ""][i % 3]
        feedback.append({"ticket_id": f"T{i}", "submitted_at": f"2025-01-{day:02d} 18:00:00",
                         "csat": 1 + i % 5, "comment": f"My {topics_[i % 3]}.{extra}"})
    write_csv(folder, "tickets", tickets)
    write_csv(folder, "feedback", feedback)
    cs_metrics.ingest(folder, db=tmp_path / "wh.duckdb")
    at = run_page(monkeypatch, tmp_path / "wh.duckdb")
    at.selectbox(key="date_preset").select("All time").run()
    at.radio(key="fbx_view").set_value("Topics").run()
    assert not at.exception and not at.error
    cells = [v for frame in at.dataframe for col in frame.value.columns
             for v in frame.value[col].tolist() if isinstance(v, str)]
    assert any("[name]" in c for c in _frame(at, "examples")["examples"])
    assert any("[name]" in c for c in cells) and any("[email]" in c for c in cells)
    assert any("[phone]" in c for c in cells)
    text = " ".join(cells)
    assert "@example.org" not in text and "4411" not in text
    for person in people:
        assert person not in text
    assert "customer names are masked" in comments_caption(at)

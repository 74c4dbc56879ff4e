"""The Customer feedback page, run headless: it shows the numbers the library computes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import _calculate_file_id
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric
from cs_metrics.feedback import (
    FEEDBACK_METRICS,
    FEW_RESPONSES,
    feedback_breakdown,
    latest_comments,
    score_distribution,
)
from tests.conftest import REPO, ticket, write_csv

PAGE = str(REPO / "pages" / "feedback.py")
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


def test_cards_distributions_breakdown_and_comments(sample_db, monkeypatch):
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
    file_id = _calculate_file_id(csat.to_csv(index=False).encode(), "text/csv", name)
    urls = [b.proto.url for b in at.get("download_button")]
    assert f"/mock/media/{file_id}.csv" in urls  # content and dated file name

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


def test_trend_follows_the_grain(sample_db, monkeypatch):
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
    file_id = _calculate_file_id(monthly.to_csv(index=False).encode(), "text/csv", name)
    assert f"/mock/media/{file_id}.csv" in [b.proto.url for b in at.get("download_button")]


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
    assert any(m.value == f"**Tickets of channel {channel} (with or without a survey)**"
               for m in at.markdown)
    assert f"Tickets 1–{len(shown)} of {page.total:,}, newest first" in \
        [c.value for c in at.caption]

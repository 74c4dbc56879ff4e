"""Polish shared by every page: exports keep counts integer, missing values read "–", the
default range starts with the data, plurals, a representative without a name by id."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric, query
from cs_metrics.metrics.drilldown import rep_label, ticket_page
from simulations import generator
from tests.conftest import REPO, ticket, write_csv
from views import _drill, _exports, _filter_defs, _tables


def test_exports_keep_counts_integer():
    df = pd.DataFrame({
        "team": ["A", "B", None],
        "ticket_count": [7852, None, 3],  # a registry count, float because of the gap
        "responses": [12.0, 4.0, None],  # named as a count
        "csat_pct": [80.0, 75.5, None],  # a share stays as it is
        "first_response_min": [3.0, 4.0, 5.0],  # whole minutes, still a duration
        "avg_contacts": [1.0, 2.0, 1.0],  # an average of a count is not a count
    })
    assert df["ticket_count"].dtype == "float64"
    text = _exports.csv_bytes(df).decode()
    assert text.splitlines()[1] == "A,7852,12,80.0,3.0,1.0"
    assert ".0" not in "".join(line.split(",")[1] for line in text.splitlines()[1:])
    back = pd.read_csv(io.StringIO(text))
    assert back["ticket_count"].dropna().tolist() == [7852, 3]
    table = pq.read_table(io.BytesIO(_exports.parquet_bytes(df)))
    assert str(table.schema.field("ticket_count").type) == "int64"
    assert str(table.schema.field("responses").type) == "int64"
    assert str(table.schema.field("csat_pct").type) == "double"
    assert str(table.schema.field("avg_contacts").type) == "double"
    got = table.to_pandas()
    assert got["ticket_count"].tolist()[0] == 7852 and pd.isna(got["ticket_count"][1])
    assert df["ticket_count"].dtype == "float64"  # the caller's frame is not changed


def test_a_count_with_fractions_stays_float():
    df = pd.DataFrame({"ticket_count": [1.5, None]})
    assert _tables.integer_counts(df) is df


@pytest.mark.parametrize(("n", "word", "want"), [
    (1, "ticket", "1 ticket"), (0, "ticket", "0 tickets"), (2345, "ticket", "2,345 tickets"),
    (1, "entry", "1 entry"), (3, "entry", "3 entries"), (2, "day", "2 days"),
    (1, "survey response", "1 survey response"), (2, "person", "2 people"),
])
def test_plurals(n, word, want):
    assert _tables.plural(n, word, "people" if word == "person" else None) == want


def test_presets_start_with_the_data():
    end = date(2025, 3, 4)  # a 3-day export: 1-3 Mar 2025
    first = date(2025, 3, 1)
    for preset in ("Last 7 days", "Last 30 days", "Last 90 days", "Quarter to date",
                   "Year to date"):
        assert _filter_defs._preset_window(preset, end, first) == (first, end), preset
    assert _filter_defs._preset_window("Last 90 days", end) == (end - timedelta(days=90), end)
    assert _filter_defs._preset_window("All time", end, first) == (None, None)
    # a long history is not clipped
    assert _filter_defs._preset_window("Last 7 days", end, date(2020, 1, 1)) == (
        date(2025, 2, 25), end)


@pytest.mark.usefixtures("fresh_caches")
def test_default_range_on_a_three_day_export(monkeypatch, tmp_path):
    generator.generate(tmp_path / "s", tickets=300, days=3, seed=4, end=datetime(2025, 3, 4))
    cs_metrics.ingest(tmp_path / "s", db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb")
    try:
        first, last = (d.date() for d in wh.created_range())
        n = query(wh, ["ticket_count"], filters=Filters(first, last + timedelta(days=1)))
    finally:
        wh.close()
    assert (last - first).days <= 3
    monkeypatch.setenv("CS_METRICS_DB", str(tmp_path / "wh.duckdb"))
    at = AppTest.from_file(str(REPO / "views" / "overview.py"), default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    days = (last - first).days + 1
    want = (f"Tickets created {first:%d %b %Y} – {last:%d %b %Y} "
            f"({_tables.plural(days, 'day')})")
    assert want in [c.value for c in at.sidebar.caption]
    card = next(m.value for m in at.metric if m.label == "Tickets")
    assert card == get_metric("ticket_count").display(n["ticket_count"].iloc[0])


def test_a_representative_without_a_name_shows_the_id(tmp_path):
    src = tmp_path / "src"
    write_csv(src, "tickets", [
        ticket("T1", "2025-01-02 10:00:00", rep_id="r-17"),
        ticket("T2", "2025-01-02 11:00:00", rep_id="r-17"),
        ticket("T3", "2025-01-02 12:00:00"),
    ])
    cs_metrics.ingest(src, db=tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb")
    try:
        page = ticket_page(wh, Filters(), extra={"rep_id": "r-17"})
        everyone = ticket_page(wh, Filters())
    finally:
        wh.close()
    assert page.total == 2 and page.rows["rep_name"].isna().all()
    assert page.rows["rep_id"].tolist() == ["r-17", "r-17"]
    shown = _drill.shown_tickets(everyone.rows).set_index("ticket_id")
    assert "rep_id" not in shown.columns
    assert shown.loc["T1", "rep_name"] == "r-17" and pd.isna(shown.loc["T3", "rep_name"])
    assert rep_label(None, "r-17") == "r-17"
    assert rep_label(float("nan"), "r-17") == "r-17"
    assert rep_label("Rita", "r-17") == "Rita"
    assert rep_label(None, None) == "(none)"
    assert f"Representative: {rep_label(None, 'r-17')}" == "Representative: r-17"


def test_show_table_reads_missing_values_as_a_dash():
    def page() -> None:
        import pandas as pd
        import streamlit as st

        from views._tables import show_table

        show_table(pd.DataFrame({"team": ["A", None], "csat_pct": [80.0, None]}),
                   column_config={"team": st.column_config.TextColumn("Team")}, key="t")

    at = AppTest.from_function(page, default_timeout=30).run()
    assert not at.exception
    table = at.dataframe[0]
    assert table.proto.placeholder == _tables.MISSING == "–"
    assert table.value["team"].tolist()[0] == "A"

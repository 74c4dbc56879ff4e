"""Tags: the optional ``tags`` list column and the ``tag`` dimension, checked against pandas
(one row per ticket and tag, as ``DataFrame.explode`` gives)."""

from __future__ import annotations

import io
import json
import textwrap

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cs_metrics.cli.main import main
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import Filters, query
from tests.conftest import ticket, write_csv


def _tags(db, sql: str = "select ticket_id, tags from tickets order by 1") -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {tid: (list(tags) if tags is not None else None)
                for tid, tags in con.execute(sql).fetchall()}
    finally:
        con.close()


def test_csv_tags_are_trimmed_deduplicated_and_empty_ones_dropped(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [
        ticket("A", tags=" refund , vip,,refund"),
        ticket("B", tags=" , ,"),
        ticket("C"),
        ticket("D", tags="vip"),
    ])
    db = tmp_path / "wh.duckdb"
    report = ingest(folder, db=db)
    assert report.table("tickets").loaded == 4
    assert report.table("tickets").rejected_total == 0
    assert _tags(db) == {"A": ["refund", "vip"], "B": None, "C": None, "D": ["vip"]}


def test_mapping_names_another_tags_delimiter(tmp_path):
    (tmp_path / "export.csv").write_text(textwrap.dedent("""\
        id,opened,state,labels
        1,2024-03-01 09:00,open,billing | vip | billing
        2,2024-03-01 10:00,open,"a, b"
        3,2024-03-01 11:00,open,
        """))
    mapping = tmp_path / "map.toml"
    mapping.write_text(textwrap.dedent("""\
        [tickets]
        source = "export.csv"
        tags_delimiter = "|"
        [tickets.columns]
        ticket_id = "id"
        created_at = "opened"
        status = "state"
        tags = "labels"
        """))
    db = tmp_path / "wh.duckdb"
    ingest(tmp_path, mapping=mapping, db=db)
    assert _tags(db) == {"1": ["billing", "vip"], "2": ["a, b"], "3": None}


def test_a_tags_delimiter_must_be_text(tmp_path):
    from cs_metrics.core.errors import CsMetricsError
    from cs_metrics.ingestion.mapping import read_mapping

    (tmp_path / "export.csv").write_text("id,opened,state\n1,2024-03-01,open\n")
    mapping = tmp_path / "map.toml"
    mapping.write_text(textwrap.dedent("""\
        [tickets]
        source = "export.csv"
        tags_delimiter = ""
        [tickets.columns]
        ticket_id = "id"
        created_at = "opened"
        status = "state"
        """))
    with pytest.raises(CsMetricsError, match="tags_delimiter"):
        read_mapping(mapping)


def test_parquet_and_jsonl_lists(tmp_path):
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    pq.write_table(pa.table({
        "ticket_id": ["A", "B", "C"],
        "created_at": pa.array(pd.to_datetime(["2024-01-01"] * 3)),
        "status": ["open"] * 3,
        "tags": pa.array([[" vip", "refund", "vip", ""], [], None], pa.list_(pa.string())),
    }), pq_dir / "tickets.parquet")
    db = tmp_path / "pq.duckdb"
    ingest(pq_dir, db=db)
    assert _tags(db) == {"A": ["refund", "vip"], "B": None, "C": None}

    js_dir = tmp_path / "js"
    js_dir.mkdir()
    rows = [
        {"ticket_id": "A", "created_at": "2024-01-01 10:00", "status": "open",
         "tags": ["x", " y ", "x"]},
        # a text of labels in another row: split on commas like CSV
        {"ticket_id": "B", "created_at": "2024-01-01 10:00", "status": "open", "tags": "p, q"},
        {"ticket_id": "C", "created_at": "2024-01-01 10:00", "status": "open", "tags": None},
    ]
    (js_dir / "tickets.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = tmp_path / "js.duckdb"
    ingest(js_dir, db=db)
    assert _tags(db) == {"A": ["x", "y"], "B": ["p", "q"], "C": None}


def _exploded(wh: Warehouse) -> pd.DataFrame:
    """Non-test tickets, one row per ticket and tag (tickets without tags left out)."""
    t = wh.df("select ticket_id, tags, status, priority, first_response_min, resolution_h, "
              "sla_first_response_met, fb_csat_sum, fb_csat_n from tickets where not is_test")
    t["tag"] = t["tags"].map(lambda v: [] if v is None or v is pd.NA else list(v))
    return t.explode("tag").dropna(subset=["tag"])


def test_by_tag_counts_a_ticket_once_in_each_of_its_tags(sample_wh):
    ex = _exploded(sample_wh)
    assert ex["tag"].nunique() >= 8  # the sample has tags
    got = query(sample_wh, ["ticket_count", "avg_first_response_min", "median_resolution_h",
                            "csat_avg"], by=["tag"]).set_index("tag")
    g = ex.groupby("tag")
    want = pd.DataFrame({
        "ticket_count": g.size(),
        "avg_first_response_min": g["first_response_min"].mean(),
        "median_resolution_h": g["resolution_h"].median(),
        "csat_avg": g["fb_csat_sum"].sum() / g["fb_csat_n"].sum(),
    })
    assert sorted(got.index) == sorted(want.index)
    pd.testing.assert_frame_equal(got.sort_index(), want.sort_index()[got.columns],
                                  check_dtype=False, check_names=False, rtol=1e-9)
    # with several tags a ticket counts in each: more rows than tagged tickets
    assert got["ticket_count"].sum() == len(ex) > ex["ticket_id"].nunique()


def test_where_tag_keeps_the_tickets_with_that_tag(sample_wh):
    ex = _exploded(sample_wh)
    tag = ex["tag"].value_counts().index[0]
    ids = set(ex.loc[ex["tag"] == tag, "ticket_id"])
    tickets = sample_wh.df("select * from tickets where not is_test")
    mine = tickets[tickets["ticket_id"].isin(ids)]
    got = query(sample_wh, ["ticket_count", "sla_first_response_pct"], by=["priority"],
                filters=Filters.build(tag=tag)).set_index("priority")
    judged = mine.dropna(subset=["sla_first_response_met"])
    want_pct = judged.groupby("priority")["sla_first_response_met"].mean() * 100
    assert got["ticket_count"].to_dict() == mine.groupby("priority").size().to_dict()
    for p, v in want_pct.items():
        assert got.loc[p, "sla_first_response_pct"] == pytest.approx(v)
    # two values: tickets with either
    other = ex["tag"].value_counts().index[1]
    either = set(ex.loc[ex["tag"].isin([tag, other]), "ticket_id"])
    n = query(sample_wh, ["ticket_count"], filters=Filters.build(tag=[tag, other]))
    assert int(n["ticket_count"].iloc[0]) == len(either)


def test_backlog_by_tag(sample_wh):
    ex = _exploded(sample_wh)
    closed = sample_wh.df("select ticket_id, effective_resolved_at from tickets")
    ex = ex.merge(closed, on="ticket_id")
    got = query(sample_wh, ["backlog"], by=["tag"]).set_index("tag")["backlog"]
    want = ex[ex["effective_resolved_at"].isna()].groupby("tag").size()
    assert got[got > 0].to_dict() == want.to_dict()


def test_query_command_by_and_where_tag(sample_wh, capsys):
    ex = _exploded(sample_wh)
    tag = ex["tag"].value_counts().index[0]
    assert main(["query", "--metrics", "ticket_count", "--by", "tag", "--where", f"tag={tag}",
                 "--db", str(sample_wh.path)]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    ids = set(ex.loc[ex["tag"] == tag, "ticket_id"])
    # the tickets with the tag, counted once in each of their tags
    want = ex[ex["ticket_id"].isin(ids)].groupby("tag").size()
    assert list(out.columns) == ["tag", "ticket_count"]
    assert dict(zip(out["tag"], out["ticket_count"], strict=True)) == want.to_dict()
    assert list(out["tag"]) == sorted(out["tag"])


def test_tag_is_a_listed_dimension(sample_wh):
    values = sample_wh.dimension_values("tag")
    counts = _exploded(sample_wh)["tag"].value_counts()
    assert set(values) == set(counts.index)
    assert values[0] == counts.index[0]


def test_trends_page_reports_by_tag_with_other(sample_db, monkeypatch, fresh_caches):
    from tests.test_trends import default_filters, frame, library, trends

    filters = default_filters(sample_db)
    # read-write like the app: one configuration per process
    t = library(sample_db, lambda wh: wh.df(
        "select ticket_id, tags, first_response_min, resolution_h, fb_csat_good, fb_csat_n "
        "from tickets where not is_test and created_at >= ? and created_at < ?",
        [filters.date_from, filters.date_to]))
    t["tag"] = t["tags"].map(lambda v: [] if v is None or v is pd.NA else list(v))
    ex = t.explode("tag").dropna(subset=["tag"])

    def figures(rows: pd.DataFrame) -> dict:
        return {"ticket_count": len(rows),
                "avg_first_response_min": rows["first_response_min"].mean(),
                "avg_resolution_h": rows["resolution_h"].mean(),
                "csat_pct": 100 * rows["fb_csat_good"].sum() / rows["fb_csat_n"].sum()}

    counts = ex.groupby("tag").size().reset_index(name="n")
    order = counts.sort_values(["n", "tag"], ascending=[False, True])["tag"].tolist()
    assert len(order) > 10  # the sample has more tags than the report shows
    want = {tag: figures(ex[ex["tag"] == tag]) for tag in order[:10]}
    rest = ex[ex["tag"].isin(order[10:])]
    want[f"Other ({len(order) - 10} more)"] = figures(
        t[t["ticket_id"].isin(set(rest["ticket_id"]))])

    at = trends(monkeypatch, sample_db, open_data=False)
    shown = frame(at, "tag", "ticket_count")
    assert shown["tag"].tolist() == list(want)
    for row in shown.itertuples():
        for name, value in want[row.tag].items():
            assert getattr(row, name) == pytest.approx(value), (row.tag, name)
    assert any("counts once in each of them" in c.value for c in at.caption)
    # the sidebar offers the tags as a filter
    assert "Tag" in [m.label for m in at.multiselect]


def test_the_sidebar_tag_filter_narrows_the_pages(sample_db, monkeypatch, fresh_caches):
    from tests.test_trends import default_filters, library, metrics, trends

    filters = default_filters(sample_db)
    t = library(sample_db, lambda wh: wh.df(
        "select tags from tickets where not is_test and created_at >= ? and created_at < ?",
        [filters.date_from, filters.date_to]))
    has = t["tags"].map(lambda v: v is not None and v is not pd.NA and "refund" in list(v))
    at = trends(monkeypatch, sample_db, {"tag": "refund"}, open_data=False)
    assert at.multiselect(key="filter_tag").value == ["refund"]
    assert metrics(at)["Tickets created"] == f"{int(has.sum()):,}"

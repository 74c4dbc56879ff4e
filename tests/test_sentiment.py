"""Comment sentiment: scored once per distinct comment at load, stored, incremental, and in
agreement with the survey scores on generated data."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

import cs_metrics
import cs_metrics.core.comment_scores as sentiment
from cs_metrics import Warehouse
from cs_metrics.analysis.sentiment import (
    NEGATIVE_AT,
    score_texts,
    sentiment_by_csat,
    sentiment_label,
)
from tests.conftest import ticket, write_csv

VADER = SentimentIntensityAnalyzer()


def test_scores_are_vaders_compound_in_order():
    texts = ["Great service, thank you!", "Terrible. Still broken.", None, "Great service, "
             "thank you!", "The router arrived."]
    got = score_texts(texts)
    want = [VADER.polarity_scores(t)["compound"] if t else np.nan for t in texts]
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert got[0] > 0.5 and got[1] < -0.5 and got[4] == 0.0
    assert [sentiment_label(v) for v in (0.3, -0.05, 0.0, None)] == \
        ["positive", "negative", "neutral", None]


def _folder(tmp_path, comments: list[str | None]):
    rows = [ticket(f"T{i}", f"2025-01-{1 + i % 20:02d} 10:00:00", "closed",
                   resolved_at=f"2025-01-{1 + i % 20:02d} 12:00:00", channel="chat")
            for i in range(len(comments))]
    write_csv(tmp_path, "tickets", rows)
    write_csv(tmp_path, "feedback", [
        {"feedback_id": f"F{i}", "ticket_id": f"T{i}", "submitted_at": "2025-01-25 10:00:00",
         "csat": 1 + i % 5, "comment": c} for i, c in enumerate(comments)
    ])
    return tmp_path


def test_sentiment_is_stored_at_load_once_per_text(tmp_path, monkeypatch):
    comments = ["Awful, still broken.", "Great, thanks!", "Great, thanks!", None, "   ",
                "The agent was fantastic."]
    src = _folder(tmp_path / "src", comments)
    db = tmp_path / "wh.duckdb"
    scored: list[int] = []
    original = sentiment.score_texts

    def counting(texts):
        scored.append(len(texts))
        return original(texts)

    monkeypatch.setattr(sentiment, "score_texts", counting)
    cs_metrics.ingest(src, db=db)
    assert scored == [3]  # distinct, non-blank texts
    con = duckdb.connect(str(db), read_only=True)
    store = dict(con.execute("select comment, sentiment from comment_sentiment").fetchall())
    facts = con.execute("select feedback_id, sentiment from feedback_facts order by 1").fetchall()
    sums = con.execute("select sum(fb_sent_n), sum(fb_sent_sum), sum(fb_sent_neg) "
                       "from tickets").fetchall()[0]
    con.close()
    vader = {c: VADER.polarity_scores(c)["compound"] for c in set(comments) if c and c.strip()}
    assert store == pytest.approx(vader)
    got = dict(facts)
    assert got["F3"] is None and got["F4"] is None  # no comment, blank comment
    assert got["F1"] == pytest.approx(vader["Great, thanks!"])
    scores = [vader[c] for c in comments if c and c.strip()]
    assert sums[0] == 4
    assert sums[1] == pytest.approx(sum(scores))
    assert sums[2] == sum(s <= NEGATIVE_AT for s in scores)

    # a reload scores nothing; a new comment alone is scored; a gone comment is forgotten
    cs_metrics.ingest(src, db=db)
    assert scored == [3]
    _folder(tmp_path / "src2", ["Never again, awful.", "Great, thanks!"])
    cs_metrics.ingest(tmp_path / "src2", db=db, replace=True)
    assert scored == [3, 1]
    con = duckdb.connect(str(db), read_only=True)
    kept = {r[0] for r in con.execute("select comment from comment_sentiment").fetchall()}
    con.close()
    assert kept == {"Never again, awful.", "Great, thanks!"}


def test_another_model_version_rescores(tmp_path, monkeypatch):
    src = _folder(tmp_path / "src", ["Great, thanks!", "Awful."])
    db = tmp_path / "wh.duckdb"
    cs_metrics.ingest(src, db=db)
    monkeypatch.setattr(sentiment, "model_name", lambda: "vader-next")
    cs_metrics.ingest(src, db=db)
    con = duckdb.connect(str(db), read_only=True)
    models = con.execute("select distinct model from comment_sentiment").fetchall()
    con.close()
    assert models == [("vader-next",)]


def test_registry_metrics_and_a_dataset_without_comments(tmp_path):
    src = _folder(tmp_path / "src", ["Great, thanks!", "Awful, still broken.", None])
    wh_path = tmp_path / "wh.duckdb"
    cs_metrics.ingest(src, db=wh_path)
    wh = Warehouse(wh_path, read_only=True)
    row = cs_metrics.query(wh, ["sentiment_avg", "negative_comment_pct"]).iloc[0]
    a, b = (VADER.polarity_scores(t)["compound"] for t in ("Great, thanks!",
                                                            "Awful, still broken."))
    assert row["sentiment_avg"] == pytest.approx((a + b) / 2)
    assert row["negative_comment_pct"] == pytest.approx(50.0)
    wh.close()

    write_csv(tmp_path / "plain", "tickets", [ticket("T1", status="open")])
    cs_metrics.ingest(tmp_path / "plain", db=tmp_path / "plain.duckdb")
    wh = Warehouse(tmp_path / "plain.duckdb", read_only=True)
    metric = cs_metrics.get_metric("sentiment_avg")
    assert cs_metrics.missing_inputs(metric, wh) == ["feedback.comment"]
    assert pd.isna(cs_metrics.query(wh, ["sentiment_avg"])["sentiment_avg"].iloc[0])
    assert sentiment_by_csat(wh).rho is None
    wh.close()


def test_sentiment_tracks_csat_on_generated_data(sample_wh):
    """The generator writes comments whose tone follows the CSAT score (simulations/_text.py);
    VADER, which knows nothing of the generator, recovers it: Spearman's rho 0.54 and
    Pearson's r 0.72 between a comment's compound score and its CSAT on this sample."""
    result = sentiment_by_csat(sample_wh)
    pairs = sample_wh.df("select sentiment, csat from feedback_facts "
                         "where not is_test and sentiment is not null and csat is not null")
    rho = stats.spearmanr(pairs["sentiment"], pairs["csat"]).statistic
    assert result.rho == pytest.approx(rho)
    assert result.rho > 0.45
    assert stats.pearsonr(pairs["sentiment"], pairs["csat"]).statistic > 0.65
    table = result.table.set_index("csat")
    assert table["comments"].sum() == len(pairs)
    # the mean score rises with the rating, negative below 3, positive from 3 up
    means = table["sentiment_avg"].to_numpy()
    assert means[0] < 0 and means[1] < 0 and means[2] > 0
    assert means[4] > means[2] > means[1]
    assert table.loc[1, "negative_pct"] > 60 and table.loc[5, "negative_pct"] < 10

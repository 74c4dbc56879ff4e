"""Comment sentiment: the VADER compound score of every survey comment, computed at load.

VADER (vaderSentiment) is a lexicon and rule model that ships its lexicon in its wheel, so
nothing is downloaded at run time. Its compound score runs from -1 (most negative) to +1
(most positive); by its authors' convention a comment is negative at compound <= -0.05,
positive at >= 0.05 and neutral in between.

Scores are stored once per distinct comment text in the table ``comment_sentiment``
(comment, sentiment, model): survey comments repeat a lot (templates, "Thanks!"), so a text
is scored once however often it occurs, and a reload scores only texts it has not seen. The
per-ticket sums (``fb_sent_*`` on ``tickets``) and ``feedback_facts.sentiment`` are joined
from it when the warehouse rebuilds its derived tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

import duckdb
import numpy as np
import pandas as pd

from cs_metrics.core.errors import CsMetricsError

__all__ = [
    "NEGATIVE_AT",
    "POSITIVE_AT",
    "SENTIMENT_TABLE",
    "model_name",
    "score_texts",
    "sentiment_label",
    "update_comment_sentiment",
]

NEGATIVE_AT = -0.05  # compound <= this is negative (VADER's convention)
POSITIVE_AT = 0.05  # compound >= this is positive
SENTIMENT_TABLE = "comment_sentiment"

# VADER scores about 10,000 distinct comments a second on one core of this machine. It runs
# in this process: worker processes would have to start by spawning, and a spawned worker
# re-runs the parent's main script, which in the app is a page.
_BATCH = 200_000  # distinct texts read from the warehouse at a time, to bound memory


@lru_cache(maxsize=1)
def _analyzer():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:  # pragma: no cover - a requirement of the project
        raise CsMetricsError(
            "Comment sentiment needs the vaderSentiment package; run "
            "`pip install -r requirements.txt`."
        ) from exc
    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=1)
def model_name() -> str:
    """The model that produced stored scores; texts scored by another version are rescored."""
    try:
        return f"vader-{version('vaderSentiment')}"
    except PackageNotFoundError:  # pragma: no cover
        return "vader"


def _score_chunk(texts: list[str]) -> list[float]:
    analyzer = _analyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


def score_texts(texts: Sequence[str | None]) -> np.ndarray:
    """VADER compound score (-1..1) of each text, in order (NaN for None); each distinct text
    is scored once."""
    if len(texts) == 0:
        return np.zeros(0, dtype="float64")
    codes, uniques = pd.factorize(pd.Series(texts, dtype="object"), use_na_sentinel=True)
    distinct = ["" if u is None else str(u) for u in uniques]
    values = np.asarray(_score_chunk(distinct), dtype="float64")
    out = np.full(len(codes), np.nan)
    ok = codes >= 0
    out[ok] = values[codes[ok]]
    return out


def sentiment_label(compound: float | None) -> str | None:
    """negative / neutral / positive by VADER's thresholds; None without a score."""
    if compound is None or pd.isna(compound):
        return None
    if compound <= NEGATIVE_AT:
        return "negative"
    return "positive" if compound >= POSITIVE_AT else "neutral"


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = 'main'"
    ).fetchall()
    return {r[0] for r in rows}


def update_comment_sentiment(con: duckdb.DuckDBPyConnection, feedback: str = "feedback",
                             dropped: str | None = None) -> int:
    """Score the distinct comments of ``feedback`` that have no score from this model yet.

    Runs inside the caller's transaction (a load). ``feedback`` is the table, or a relation
    of the survey rows a small (live) load touched, so only those are looked at. Scores of
    texts no survey holds any more are removed, so deleted comments do not linger in the
    warehouse: after a look at the whole table, all of them; else those of the comments
    in ``dropped`` (a relation of the survey rows the load replaced), if any.
    Returns how many texts were scored.
    """
    con.execute(
        f"create table if not exists {SENTIMENT_TABLE} "
        "(comment varchar, sentiment double, model varchar)"
    )
    model = model_name()
    con.execute(f"delete from {SENTIMENT_TABLE} where model is distinct from ?", [model])
    whole = feedback == "feedback"
    if "feedback" not in _tables(con):
        con.execute(f"delete from {SENTIMENT_TABLE}")
        return 0
    # a blank comment is no comment: it is neither scored nor counted
    con.execute(
        f"""
        create or replace temp table sentiment_todo as
        select comment, row_number() over () as i from (
            select distinct comment from {feedback}
            where comment is not null and trim(comment) <> ''
            except
            select comment from {SENTIMENT_TABLE})
        """
    )
    todo = con.execute("select count(*) from sentiment_todo").fetchall()[0][0]
    for start in range(0, todo, _BATCH):
        texts = [r[0] for r in con.execute(
            "select comment from sentiment_todo where i > ? and i <= ? order by i",
            [start, start + _BATCH],
        ).fetchall()]
        scores = score_texts(texts)
        batch = pd.DataFrame({"comment": texts, "sentiment": scores, "model": model})
        con.register("sentiment_batch_df", batch)
        con.execute(f"insert into {SENTIMENT_TABLE} select * from sentiment_batch_df")
        con.unregister("sentiment_batch_df")
    con.execute("drop table if exists temp.main.sentiment_todo")
    if whole:
        con.execute(
            f"delete from {SENTIMENT_TABLE} s where not exists "
            "(select 1 from feedback f where f.comment = s.comment)"
        )
    elif dropped is not None:
        gone = [r[0] for r in con.execute(
            f"select distinct comment from {dropped} where comment is not null").fetchall()]
        if gone:  # usually none: a live survey is new, not a new version of a stored one
            con.execute(
                f"delete from {SENTIMENT_TABLE} s where s.comment = any(?) and not exists "
                "(select 1 from feedback f where f.comment = s.comment)", [gone])
    return int(todo)

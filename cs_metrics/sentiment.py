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
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

import duckdb
import numpy as np
import pandas as pd

from cs_metrics.errors import CsMetricsError

__all__ = [
    "NEGATIVE_AT",
    "POSITIVE_AT",
    "SENTIMENT_TABLE",
    "SentimentByScore",
    "model_name",
    "score_texts",
    "sentiment_by_csat",
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


# --- sentiment against the survey scores -------------------------------------------------------

MAX_CORRELATION_SAMPLE = 200_000


@dataclass(frozen=True)
class SentimentByScore:
    """Comment sentiment per CSAT score, and how closely the two agree.

    ``table``: ``csat`` (1-5), ``comments``, ``sentiment_avg``, ``negative_pct``,
    ``positive_pct``. ``rho`` is Spearman's rank correlation between a comment's compound
    score and its CSAT over ``n`` comments with both (a deterministic sample above
    ``MAX_CORRELATION_SAMPLE``); None with fewer than 3.
    """

    table: pd.DataFrame
    rho: float | None
    p_value: float | None
    n: int


def sentiment_by_csat(wh, filters=None) -> SentimentByScore:
    """See ``SentimentByScore``; ``wh`` a Warehouse, ``filters`` the page's Filters."""
    from scipy import stats

    from cs_metrics.metrics import Filters, filter_sql

    scale = pd.DataFrame({"csat": np.arange(1, 6, dtype="int64")})
    empty = scale.assign(comments=0, sentiment_avg=np.nan, negative_pct=np.nan,
                         positive_pct=np.nan)
    if not wh.has_table("feedback_facts") or "sentiment" not in wh.columns("feedback_facts"):
        return SentimentByScore(empty, None, None, 0)
    where, params = filter_sql(filters or Filters())
    cond = f"{where} and t.sentiment is not null and t.csat is not null"
    table = wh.df(
        f"select t.csat, count(*) as comments, avg(t.sentiment) as sentiment_avg, "
        f"100.0 * count(*) filter (where t.sentiment <= {NEGATIVE_AT}) / count(*) "
        f"as negative_pct, "
        f"100.0 * count(*) filter (where t.sentiment >= {POSITIVE_AT}) / count(*) "
        f"as positive_pct from feedback_facts t where {cond} group by t.csat",
        params,
    )
    table = scale.merge(table.astype({"csat": "int64"}), on="csat", how="left")
    table["comments"] = table["comments"].fillna(0).astype("int64")
    pairs = wh.df(
        f"select t.sentiment, t.csat from feedback_facts t where {cond} "
        "order by hash(t.feedback_id) limit ?",
        [*params, MAX_CORRELATION_SAMPLE],
    )
    if len(pairs) < 3 or pairs["sentiment"].nunique() < 2 or pairs["csat"].nunique() < 2:
        return SentimentByScore(table, None, None, len(pairs))
    rho, p = stats.spearmanr(pairs["sentiment"], pairs["csat"])
    return SentimentByScore(table, float(rho), float(p), len(pairs))

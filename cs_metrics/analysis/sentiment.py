"""Comment sentiment against the survey scores: do the comments' tones agree with CSAT?

The scores themselves are computed at load (``cs_metrics.core.comment_scores``); this module
reads them back per CSAT score with the page's filters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cs_metrics.core import _stats
from cs_metrics.core.comment_scores import (
    NEGATIVE_AT,
    POSITIVE_AT,
    SENTIMENT_TABLE,
    model_name,
    score_texts,
    sentiment_label,
    update_comment_sentiment,
)
from cs_metrics.metrics.registry import Filters, filter_sql

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
    rho, p = _stats.spearman(pairs["sentiment"], pairs["csat"])
    return SentimentByScore(table, rho, p, len(pairs))

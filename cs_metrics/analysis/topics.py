"""What customers write about: topics of the survey comments and emerging issues.

*Topics.* TF-IDF over words and word pairs of the comments in the filters, then non-negative
matrix factorisation (scikit-learn NMF, ``nndsvda`` start, deterministic) into ``k`` topics.
A topic is named by its heaviest terms; each comment belongs to its heaviest topic (a
comment with none of the topic words to "Other"). Above ``sample`` comments a deterministic
sample (a hash of the feedback id and the seed) is modelled and volumes are scaled to all
comments. The vocabulary leaves out English stop words and the generic words of support
feedback, tone ("great", "disappointed") and process ("quickly", "agent", "fixed"):
sentiment is measured apart, and topics should say what comments are about.

*Emerging issues.* Terms (words and word pairs of the topics' vocabulary) whose share of
comments in the latest
``recent_days`` rose against the ``baseline_days`` before. For each term with at least
``min_count`` recent comments: the one-sided exact conditional test of "recent share >
baseline share" (given the term's comments in both periods, the number in the recent period
is binomial with the recent period's share of all comments; exact where a z-test on small
counts finds too much), with the counts deflated by the over-dispersion the terms show
between the baseline's own periods (quasi-binomial; none when they vary as binomial counts
do). P-values are corrected for the number of terms tested (Benjamini-Hochberg); a term is
emerging when q < ``alpha`` and its share grew at least ``min_growth``-fold. Terms that
occur in the same comments are one issue. Comments are placed in time by their ticket's
creation, like every figure; the windows end at the filters' end (or the data's last
ticket).

Every comment shown or exported from here is masked (``mask_comment``), and PII is masked
before the vocabulary is built, so no e-mail address, phone number or customer name becomes a
term.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.decomposition import NMF
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer, TfidfVectorizer

from cs_metrics.analysis.feedback import mask_comment, name_mask
from cs_metrics.core import _stats
from cs_metrics.core.comment_scores import NEGATIVE_AT
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.core.zones import to_local, utc_moment
from cs_metrics.metrics.registry import Filters, filter_sql

__all__ = [
    "DEFAULT_K",
    "EmergingIssues",
    "TopicModel",
    "benjamini_hochberg",
    "emerging_issues",
    "topics",
]

DEFAULT_K = 15
DEFAULT_SAMPLE = 20_000
MIN_TOPIC_COMMENTS = 30  # fewer: shown, marked "few comments"
OTHER = "Other (no topic words)"

_TONE = """good great excellent fantastic amazing awesome brilliant perfect perfectly wonderful
superb happy pleased glad satisfied delighted love loved like liked nice friendly kind helpful
polite thanks thank thankful appreciate appreciated recommend recommended bad poor terrible
awful horrible worst worse useless rubbish unacceptable ridiculous disappointed disappointing
disappointment frustrated frustrating frustration annoyed annoying angry upset unhappy sad
nightmare shocking disgraceful pathetic fine okay ok average mixed feelings really very quite
extremely totally absolutely pretty bit lot""".split()
_PROCESS = """support agent agents service customer experience team staff issue issues problem
problems question request case ticket fixed fix fixing solved solve sorted resolved resolve
resolution handled quickly quick fast faster slow slowly time times took take long longer ages
forever days day minutes minute hours hour week weeks month months eventually immediately
instantly right away straight still again works working worked work contact contacted call
calls called phone answer answered response responses reply waited wait waiting way far expect
expected hope keep improve considering switching providers provider better stays stay closed
marked tries try second easy""".split()
TOPIC_STOP_WORDS: frozenset[str] = frozenset(ENGLISH_STOP_WORDS | set(_TONE) | set(_PROCESS))
# masks are not words of the comment
_PLACEHOLDER = re.compile(r"\[(?:email|phone|card|name)\]")
_TOKEN = r"(?u)\b[a-zA-Z][a-zA-Z]+\b"


def _masked(wh: Warehouse, texts: pd.Series) -> pd.Series:
    """Masked comments, each distinct text masked once."""
    names = name_mask(wh)
    codes, uniques = pd.factorize(texts)
    masked = np.array([mask_comment(u, names) for u in uniques], dtype=object)
    return pd.Series(masked[codes], index=texts.index, dtype=object)


def _model_text(masked: pd.Series) -> pd.Series:
    return masked.str.replace(_PLACEHOLDER, " ", regex=True)


def _need_comments(wh: Warehouse) -> None:
    if not wh.has_table("feedback_facts") or "comment" not in wh.columns("feedback_facts"):
        raise CsMetricsError("This dataset has no survey comments to analyse.")


def _has_sentiment(wh: Warehouse) -> bool:
    return "sentiment" in wh.columns("feedback_facts")


# --- topics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicModel:
    """Topics of the comments in some filters.

    ``topics`` has one row per topic, biggest first, "Other" last: ``topic`` (1..k, 0 for
    Other), ``name``, ``terms`` (the top terms, heaviest first), ``comments`` (in all the
    filtered comments; estimated from the sample when sampled), ``share_pct``,
    ``csat_responses``, ``csat_avg``, ``csat_pct``, ``sentiment_avg``, ``negative_pct``,
    ``main_domain``, ``main_domain_pct``, ``examples`` (up to three masked comments, " | "
    between them), ``note``.
    """

    topics: pd.DataFrame
    k: int
    seed: int
    modelled: int  # comments in the model (the sample)
    total: int  # comments in the filters

    @property
    def sampled(self) -> bool:
        return self.modelled < self.total


def _sample(wh: Warehouse, filters: Filters, sample: int, seed: int) -> tuple[pd.DataFrame, int]:
    where, params = filter_sql(filters)
    cond = f"{where} and t.comment is not null and trim(t.comment) <> ''"
    total = int(wh.scalar(f"select count(*) from feedback_facts t where {cond}", params) or 0)
    sent = "t.sentiment" if _has_sentiment(wh) else "cast(null as double)"
    rows = wh.df(
        f"select t.feedback_id, t.comment, t.csat, {sent} as sentiment, t.domain, t.location "
        f"from feedback_facts t where {cond} "
        # a hash of the id and the seed: the same sample every time, whatever the row order
        "order by hash(t.feedback_id, ?), t.feedback_id limit ?",
        [*params, int(seed), int(sample)],
    )
    return rows, total


def _name(terms: list[str], size: int = 3) -> list[str]:
    """The first ``size`` terms, a word left out when a chosen pair already holds it."""
    chosen: list[str] = []
    for term in terms:
        words = set(term.split())
        if any(words <= set(c.split()) for c in chosen):
            continue
        # a pair that contains a chosen word replaces it
        chosen = [c for c in chosen if not set(c.split()) <= words]
        chosen.append(term)
        if len(chosen) == size:
            break
    return chosen


def topics(
    wh: Warehouse,
    filters: Filters | None = None,
    *,
    k: int = DEFAULT_K,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 7,
    n_terms: int = 8,
    examples: int = 3,
) -> TopicModel:
    """TF-IDF + NMF topics of the comments in ``filters``; see the module notes."""
    _need_comments(wh)
    if not 2 <= k <= 50:
        raise CsMetricsError(f"Ask for 2 to 50 topics, not {k}.")
    if sample < 100:
        raise CsMetricsError(f"Model at least 100 comments, not {sample}.")
    rows, total = _sample(wh, filters or Filters(), sample, seed)
    if len(rows) < max(3 * k, 20):
        raise CsMetricsError(
            f"Only {len(rows):,} comments match these filters; topics need at least "
            f"{max(3 * k, 20)} (widen the date range or the filters, or ask for fewer topics)."
        )
    rows["masked"] = _masked(wh, rows["comment"])
    vec = TfidfVectorizer(
        stop_words=sorted(TOPIC_STOP_WORDS), token_pattern=_TOKEN, ngram_range=(1, 2),
        min_df=min(3, max(1, len(rows) // 500)), max_df=0.5, sublinear_tf=True,
    )
    text = _model_text(rows["masked"])
    try:
        x = vec.fit_transform(text)
    except ValueError as exc:  # nothing but stop words
        raise CsMetricsError("These comments hold too few distinct words for topics.") from exc
    # no more topics than distinct texts or words: the rest would be empty
    k_fit = min(k, x.shape[1], text.nunique())
    model = NMF(n_components=k_fit, init="nndsvda", random_state=seed, max_iter=400)
    w = model.fit_transform(x)
    terms = vec.get_feature_names_out()
    label = np.where(w.max(axis=1) > 0, w.argmax(axis=1) + 1, 0)
    rows["topic"] = label
    rows["weight"] = w.max(axis=1)
    rows["good"] = (rows["csat"] >= 4).where(rows["csat"].notna())
    rows["negative"] = (rows["sentiment"] <= NEGATIVE_AT).where(rows["sentiment"].notna())
    scale = total / len(rows)
    # one grouping for every figure: a filter per topic costs seconds on a big sample
    stats_ = rows.groupby("topic").agg(
        n=("feedback_id", "size"), csat_n=("csat", "count"), csat_avg=("csat", "mean"),
        csat_good=("good", "mean"), sentiment_avg=("sentiment", "mean"),
        negative=("negative", "mean"))
    main = (rows.groupby(["topic", "domain"]).size().rename("k").reset_index()
            .sort_values(["topic", "k", "domain"], ascending=[True, False, True])
            .drop_duplicates("topic").set_index("topic"))
    best = (rows.sort_values(["topic", "weight", "feedback_id"], ascending=[True, False, True])
            .drop_duplicates(["topic", "masked"]).groupby("topic")["masked"]
            .agg(lambda s: " | ".join(s.head(examples))))
    out = []
    for topic in [*range(1, k_fit + 1), 0]:
        if topic not in stats_.index:
            continue
        if topic:
            weights = model.components_[topic - 1]
            order = np.argsort(weights)[::-1]
            top = [terms[i] for i in order[:n_terms] if weights[i] > 0]
            # the name takes only terms that carry the topic, not its faint tail
            strong = [terms[i] for i in order[:n_terms] if weights[i] >= 0.25 * weights[order[0]]]
            name = " · ".join(_name(strong))
        else:
            top, name = [], OTHER
        st_ = stats_.loc[topic]
        n = int(st_["n"])
        has_main = topic in main.index
        out.append({
            "topic": topic,
            "name": name,
            "terms": ", ".join(top),
            "comments": int(round(n * scale)),
            "share_pct": 100.0 * n / len(rows),
            "csat_responses": int(round(st_["csat_n"] * scale)),
            "csat_avg": float(st_["csat_avg"]),
            "csat_pct": 100.0 * float(st_["csat_good"]),
            "sentiment_avg": float(st_["sentiment_avg"]),
            "negative_pct": 100.0 * float(st_["negative"]),
            "main_domain": main.loc[topic, "domain"] if has_main else None,
            "main_domain_pct": 100.0 * main.loc[topic, "k"] / n if has_main else np.nan,
            "examples": best.get(topic, ""),
            "note": "few comments" if n * scale < MIN_TOPIC_COMMENTS else "",
        })
    df = pd.DataFrame(out)
    named = df[df["topic"] > 0].sort_values(["comments", "topic"], ascending=[False, True])
    df = pd.concat([named, df[df["topic"] == 0]], ignore_index=True)
    return TopicModel(df, k_fit, seed, len(rows), total)


# --- emerging issues ---------------------------------------------------------------------------


def benjamini_hochberg(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order."""
    return _stats.benjamini_hochberg(p_values)


@dataclass(frozen=True)
class EmergingIssues:
    """Emerging issues in the latest period against the periods before.

    ``issues``: one row per issue, strongest first: ``issue`` (its top terms), ``terms``,
    ``recent_comments``, ``recent_share_pct``, ``baseline_comments``, ``baseline_share_pct``,
    ``growth`` (recent share / baseline share; inf for a new term), ``z``, ``p_value``,
    ``q_value`` (of its strongest term), ``domains`` and ``locations`` (where its recent
    comments concentrate: "billing 82 % (23 % of all)"), ``examples`` (masked).
    """

    issues: pd.DataFrame
    recent: tuple[datetime, datetime]  # [start, end) on the tickets' created_at
    baseline: tuple[datetime, datetime]
    recent_comments: int
    baseline_comments: int
    terms_tested: int
    test: str

    @property
    def found(self) -> bool:
        return not self.issues.empty

    def describe(self) -> str:
        """One paragraph for an alert or a caption."""
        period = (f"{self.recent[0]:%Y-%m-%d} to {self.recent[1] - timedelta(days=1):%Y-%m-%d}"
                  f" ({self.recent_comments:,} comments) against {self.baseline[0]:%Y-%m-%d} to "
                  f"{self.baseline[1] - timedelta(days=1):%Y-%m-%d} "
                  f"({self.baseline_comments:,})")
        if not self.found:
            return f"No emerging issues in {period}; {self.terms_tested:,} terms tested."
        top = self.issues.iloc[0]
        growth = "new" if np.isinf(top["growth"]) else f"×{top['growth']:.1f}"
        return (f"{len(self.issues)} emerging issue(s) in {period}. Strongest: "
                f"“{top['issue']}” in {top['recent_share_pct']:.1f} % of recent comments "
                f"against {top['baseline_share_pct']:.1f} % before ({growth}, "
                f"q = {top['q_value']:.2g}); mostly {top['domains']}.")


ISSUE_COLUMNS: tuple[str, ...] = (
    "issue", "terms", "recent_comments", "recent_share_pct", "baseline_comments",
    "baseline_share_pct", "growth", "z", "p_value", "q_value", "domains", "locations",
    "examples",
)


def _as_dt(d: date | datetime) -> datetime:
    return d if isinstance(d, datetime) else datetime(d.year, d.month, d.day)


def _window_end(wh: Warehouse, filters: Filters, end: date | datetime | None) -> datetime:
    # the end of a local day of the reporting zone, as a UTC moment like the stored ones
    if end is not None:
        return utc_moment(_as_dt(end), filters.tz)
    if filters.date_to is not None:
        return utc_moment(_as_dt(filters.date_to), filters.tz)
    rng = wh.created_range()
    if rng is None:
        raise CsMetricsError("The warehouse has no tickets yet.")
    last = to_local(rng[1], filters.tz)
    return utc_moment(datetime(last.year, last.month, last.day) + timedelta(days=1), filters.tz)


def _concentration(counts: pd.Series, overall: pd.Series, top: int = 3) -> str:
    total = counts.sum()
    if total == 0:
        return ""
    all_total = overall.sum()
    parts = []
    for value, n in counts.sort_values(ascending=False).head(top).items():
        base = 100.0 * overall.get(value, 0) / all_total if all_total else np.nan
        parts.append(f"{value} {100.0 * n / total:.0f} % ({base:.0f} % of all)")
    return ", ".join(parts)


def emerging_issues(
    wh: Warehouse,
    filters: Filters | None = None,
    *,
    end: date | datetime | None = None,
    recent_days: int = 14,
    baseline_days: int = 56,
    min_count: int = 10,
    min_growth: float = 2.0,
    alpha: float = 0.01,
    max_issues: int = 10,
    examples: int = 3,
) -> EmergingIssues:
    """Terms whose share of comments rose significantly in the latest period.

    The alert hook: ``emerging_issues(wh, end=now)`` looks at the last two weeks before
    ``now`` against the eight weeks before them; see the module notes for the test.
    """
    _need_comments(wh)
    if recent_days < 1 or baseline_days < 1:
        raise CsMetricsError("The recent and baseline periods must be at least one day long.")
    filters = filters or Filters()
    stop = _window_end(wh, filters, end)
    split = stop - timedelta(days=recent_days)
    start = split - timedelta(days=baseline_days)
    test = (f"per term, a one-sided exact conditional test of its share of comments in the "
            f"last {recent_days} days against the {baseline_days} days before (binomial, "
            f"counts deflated by the baseline's over-dispersion), Benjamini-Hochberg "
            f"q < {alpha:g}, at least {min_count} recent comments and a share at least "
            f"{min_growth:g} times the baseline's")
    # the windows replace the filters' date range; the other filters stay
    dims = Filters(None, None, filters.where)
    where, params = filter_sql(dims)
    cond = (f"{where} and t.comment is not null and trim(t.comment) <> '' "
            "and t.created_at >= ? and t.created_at < ?")
    # comments per distinct text and period: 0 is the recent period, 1, 2, ... the
    # baseline's periods of the same length, counted back from it
    texts = wh.df(
        f"select t.comment, cast(floor(date_diff('second', t.created_at, ?) / ?) as integer) "
        f"as period, count(*) as n "
        f"from feedback_facts t where {cond} group by all order by all",
        [stop, recent_days * 86_400, *params, start, stop],
    )
    n1 = int(texts.loc[texts["period"] == 0, "n"].sum())
    n0 = int(texts.loc[texts["period"] > 0, "n"].sum())
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in ISSUE_COLUMNS})
    result = dict(recent=(split, stop), baseline=(start, split), recent_comments=n1,
                  baseline_comments=n0, test=test)
    if n1 < min_count or n0 == 0:
        return EmergingIssues(empty, terms_tested=0, **result)
    periods = int(texts["period"].max()) + 1
    distinct = (texts.pivot_table(index="comment", columns="period", values="n",
                                  aggfunc="sum", fill_value=0)
                .reindex(columns=range(periods), fill_value=0))
    masked = _masked(wh, pd.Series(distinct.index, index=distinct.index))
    # the topics' vocabulary: an issue is what comments are about; a change of tone or of
    # speed is the CSAT, sentiment and response-time figures' business
    vec = CountVectorizer(stop_words=sorted(TOPIC_STOP_WORDS), token_pattern=_TOKEN,
                          ngram_range=(1, 2), binary=True)
    try:
        x = vec.fit_transform(_model_text(masked)).tocsc()
    except ValueError:  # no words at all
        return EmergingIssues(empty, terms_tested=0, **result)
    counts = distinct.to_numpy(dtype="float64")
    r = counts[:, 0]
    b = counts[:, 1:].sum(axis=1)
    x1 = np.asarray(x.T @ r).ravel()
    x0 = np.asarray(x.T @ b).ravel()
    tested = np.flatnonzero(x1 >= min_count)
    if len(tested) == 0:
        return EmergingIssues(empty, terms_tested=0, **result)
    p1, p0 = x1[tested] / n1, x0[tested] / n0
    # Comments are not independent draws (templates, outages, busy weeks): the spread of
    # the terms' shares between the baseline's own periods deflates the counts
    # (quasi-binomial), so ordinary ups and downs do not read as emerging.
    dispersion = _dispersion(x[:, tested], counts[:, 1:baseline_days // recent_days + 1])
    k1, k0 = x1[tested] / dispersion, x0[tested] / dispersion
    # Exact conditional test: of the term's comments in both periods, as many in the recent
    # one as its share of all comments allows, or more? (binomial; exact for small counts,
    # where the normal approximation would cry wolf)
    p = _stats.binomial_upper_tail(np.ceil(k1), np.round(k1 + k0), n1 / (n1 + n0))
    pooled = (x1[tested] + x0[tested]) / (n1 + n0)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0) * dispersion)
    z = np.where(se > 0, (p1 - p0) / np.where(se > 0, se, 1), 0.0)
    q = benjamini_hochberg(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(p0 > 0, p1 / np.where(p0 > 0, p0, 1), np.inf)
    hits = np.flatnonzero((q < alpha) & (growth >= min_growth))
    if len(hits) == 0:
        return EmergingIssues(empty, terms_tested=len(tested), **result)
    terms = vec.get_feature_names_out()
    # terms found in the same comments are one issue: group greedily, strongest term first
    recent_docs = r > 0
    groups: list[dict] = []
    for h in sorted(hits, key=lambda i: (-z[i], terms[tested[i]])):
        col = tested[h]
        docs = x[:, col].toarray().ravel().astype(bool) & recent_docs
        weight = r[docs].sum()
        for g in groups:
            overlap = r[docs & g["seed_docs"]].sum()
            if overlap >= 0.5 * min(weight, g["seed_weight"]):
                g["terms"].append(terms[col])
                g["docs"] |= x[:, col].toarray().ravel().astype(bool)
                break
        else:
            seed_docs = x[:, col].toarray().ravel().astype(bool)
            groups.append({"terms": [terms[col]], "h": h, "seed_docs": seed_docs & recent_docs,
                           "seed_weight": weight, "docs": seed_docs.copy()})
    groups = groups[:max_issues]
    overall = _where_counts(wh, cond, [*params, split, stop], None)
    rows = []
    for g in groups:
        h, docs = g["h"], g["docs"]
        chosen = list(distinct.index[docs & recent_docs])
        counts = _where_counts(wh, cond, [*params, split, stop], chosen)
        ex = (pd.DataFrame({"masked": masked[docs & recent_docs].to_numpy(),
                            "n": r[docs & recent_docs]})
              .sort_values(["n", "masked"], ascending=[False, True])["masked"]
              .drop_duplicates().head(examples))
        rows.append({
            "issue": " · ".join(_name(g["terms"])),
            "terms": ", ".join(g["terms"]),
            "recent_comments": int(r[docs].sum()),
            "recent_share_pct": 100.0 * r[docs].sum() / n1,
            "baseline_comments": int(b[docs].sum()),
            "baseline_share_pct": 100.0 * b[docs].sum() / n0,
            "growth": (float(r[docs].sum() / n1 / (b[docs].sum() / n0)) if b[docs].sum()
                       else float("inf")),
            "z": float(z[h]),
            "p_value": float(p[h]),
            "q_value": float(q[h]),
            "domains": _concentration(counts["domain"], overall["domain"]),
            "locations": _concentration(counts["location"], overall["location"]),
            "examples": " | ".join(ex),
        })
    return EmergingIssues(pd.DataFrame(rows, columns=list(ISSUE_COLUMNS)),
                          terms_tested=len(tested), **result)


def _dispersion(x: sparse.csc_matrix, counts: np.ndarray) -> float:
    """Over-dispersion of term shares between periods: the median over terms of Pearson's
    chi-square per degree of freedom, at least 1 (binomial); 1 with fewer than 3 periods."""
    if counts.shape[1] < 3:
        return 1.0
    per_period = np.asarray(x.T @ counts)  # terms x periods
    n = counts.sum(axis=0)
    keep = n > 0
    per_period, n = per_period[:, keep], n[keep]
    if len(n) < 3:
        return 1.0
    share = per_period.sum(axis=1, keepdims=True) / n.sum()
    expected = share * n
    var = expected * (1 - share)
    ok = (share[:, 0] > 0) & (share[:, 0] < 1)
    if not ok.any():
        return 1.0
    chi2 = ((per_period[ok] - expected[ok]) ** 2 / var[ok]).sum(axis=1) / (len(n) - 1)
    return max(1.0, float(np.median(chi2)))


def _where_counts(
    wh: Warehouse, cond: str, params: list, texts: list[str] | None
) -> dict[str, pd.Series]:
    """Recent comments per domain and per location: all of them, or those with ``texts``."""
    con = wh.connection()
    join = ""
    if texts is not None:
        con.register("emerging_texts_df", pd.DataFrame({"comment": texts}))
        join = "join emerging_texts_df e on e.comment = t.comment"
    try:
        df = wh.df(
            f"select t.domain, t.location, count(*) as n from feedback_facts t {join} "
            f"where {cond} "
            "group by grouping sets ((t.domain), (t.location))",
            params,
        )
    finally:
        if texts is not None:
            con.unregister("emerging_texts_df")
    out = {}
    for col, other in (("domain", "location"), ("location", "domain")):
        part = df[df[other].isna() & df[col].notna()]
        out[col] = part.set_index(col)["n"]
    return out

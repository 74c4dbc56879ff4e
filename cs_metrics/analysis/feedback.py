"""Customer feedback: score distributions, registry breakdowns and the latest survey comments.

Every figure attributes a survey to its ticket (period of the ticket's ``created_at``, its
dimensions), and test tickets are left out, like the registry's feedback metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import FEEDBACK_FACTS_SELECT, Warehouse
from cs_metrics.metrics.registry import DIMENSIONS, Filters, filter_sql, get_metric, query

Score = Literal["csat", "nps", "ces"]

# Each survey score and the values it can take (DATA_CONTRACT.md, feedback table).
SCORE_RANGES: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}

FEEDBACK_METRICS: tuple[str, ...] = (
    "csat_pct", "csat_avg", "nps", "ces_avg", "response_rate_pct", "feedback_count",
)
# Below this many responses a group's scores swing too much to rank it against others.
MIN_RESPONSES = 30
FEW_RESPONSES = "few responses"

MAX_COMMENT_PAGE = 200
COMMENT_COLUMNS: tuple[str, ...] = (
    "submitted_at", "ticket_id", "csat", "nps", "ces", "comment", "channel", "domain",
    "rep_name",
)


def nps_category(score: int) -> str:
    """Detractor (0-6), passive (7-8) or promoter (9-10), as the NPS metric counts them."""
    return "detractor" if score <= 6 else "passive" if score <= 8 else "promoter"


def _has_feedback(wh: Warehouse, column: str = "ticket_id") -> bool:
    return wh.has_table("feedback") and column in wh.columns("feedback")


def _facts(wh: Warehouse) -> str:
    """The survey rows with their ticket's dimensions: the table built at load, or the same
    rows joined on the fly for a warehouse written before that table existed."""
    if wh.has_table("feedback_facts"):
        return "feedback_facts"
    return f"({FEEDBACK_FACTS_SELECT})"


def score_distributions(
    wh: Warehouse, filters: Filters | None = None, scores: tuple[str, ...] = tuple(SCORE_RANGES)
) -> dict[str, pd.DataFrame]:
    """``score_distribution`` of each of ``scores``, counted in one pass over the surveys."""
    for score in scores:
        if score not in SCORE_RANGES:
            raise CsMetricsError(f"Unknown score {score!r}; use {', '.join(SCORE_RANGES)}.")
    present = [s for s in scores if _has_feedback(wh, s)] if wh.has_table("tickets") else []
    counts: dict[str, pd.DataFrame] = {}
    if present:
        where, params = filter_sql(filters or Filters())
        # score names are the allow-listed keys of SCORE_RANGES, never user text
        any_score = " or ".join(f"t.{s} is not null" for s in present)
        grouped = wh.df(
            f"select {', '.join(f't.{s}' for s in present)}, count(*) as responses "
            f"from {_facts(wh)} t where {where} and ({any_score}) "
            f"group by grouping sets ({', '.join(f'(t.{s})' for s in present)})",
            params,
        )
        for s in present:
            # a row of the (s) grouping set has s set and the other scores empty
            mask = grouped[s].notna()
            for other in present:
                if other != s:
                    mask &= grouped[other].isna()
            counts[s] = grouped.loc[mask, [s, "responses"]].rename(columns={s: "score"})
    return {s: _on_scale(s, counts.get(s)) for s in scores}


def _on_scale(score: str, counts: pd.DataFrame | None) -> pd.DataFrame:
    lo, hi = SCORE_RANGES[score]
    scale = pd.DataFrame({"score": np.arange(lo, hi + 1, dtype="int64")})
    if counts is None or counts.empty:
        counts = pd.DataFrame({"score": pd.Series(dtype="int64"),
                               "responses": pd.Series(dtype="int64")})
    counts = counts.astype({"score": "int64", "responses": "int64"})
    out = scale.merge(counts, on="score", how="left")
    out["responses"] = out["responses"].fillna(0).astype("int64")
    total = int(out["responses"].sum())
    out["share_pct"] = 100.0 * out["responses"] / total if total else np.nan
    out["share_pct"] = out["share_pct"].astype("float64")
    return out


def score_distribution(
    wh: Warehouse, filters: Filters | None = None, score: Score = "csat"
) -> pd.DataFrame:
    """Responses per score value, every value of the scale listed (zero when none).

    Columns ``score, responses, share_pct``; ``share_pct`` is the share of this score's
    responses (0-100), empty when there are none.
    """
    return score_distributions(wh, filters, (score,))[score]


@dataclass(frozen=True)
class CommentPage:
    """One page of survey comments, newest first, and how many match in all."""

    rows: pd.DataFrame
    total: int
    limit: int
    offset: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))

    @property
    def page(self) -> int:
        """This page's number, counting from 1."""
        return self.offset // self.limit + 1

    @property
    def has_previous(self) -> bool:
        return self.offset > 0

    @property
    def has_next(self) -> bool:
        return self.offset + self.limit < self.total


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13 to 19 digits, grouped or not by single spaces or dashes ("4111 1111 1111 1111",
# "3782-822463-10005"), not part of a longer run of digits, a word or a "+" number
_CARD = re.compile(r"(?<![\w@+])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![\w@])(?![ -]\d)")
# a run of digits with the separators phone numbers are written with; not inside a token
# with letters ("INV-2024-00017", "T000123-A")
_PHONE = re.compile(
    r"(?<![\w@])(?<!\w[-/.])\+?\(?\d[\d\s().\-/]{5,}\d(?![\w@])(?![-/][^\W\d_])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
# Words after which a number is an id, not a phone: "order 123456789", "order no. 555123",
# "my order number is 5551234567", "ticket #48213", "ref: 20240117", "#12345678".
_ID_CUE = re.compile(
    r"(?:\b(?:order|ticket|invoice|inv|ref|reference|case|booking|tracking|confirmation|"
    r"reservation|account|acct|claim|receipt|transaction|shipment|parcel|po|incident)s?\b"
    r"\.?\s*(?:(?:no|nr|num|number|id)\b\.?\s*)?(?:(?:is|was)\s+)?[:#]?\s*|#\s*)$",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check that payment card numbers carry."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if luhn_valid(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    if digits < 7 or digits > 15 or _DATE.fullmatch(text.strip()):
        return text
    # an order, ticket or invoice number is kept: the words just before it say so
    if _ID_CUE.search(match.string[max(0, match.start() - 40):match.start()]):
        return text
    return "[phone]"


def mask_pii(text: str | None) -> str | None:
    """The text with e-mail addresses, payment card numbers and phone numbers replaced by
    ``[email]``, ``[card]`` and ``[phone]``.

    A card number is 13 to 19 digits, grouped by spaces or dashes or not, that pass the Luhn
    check (one passing by chance is masked too: the safe side). A phone number is 7 to 15
    digits written as phone numbers are; a number after a word that names an id ("order",
    "ticket", "invoice", "ref", "case", "#", ...), or inside a token with letters
    ("INV-2024-00017"), is an id and stays. Customer names are masked too where the
    customers are known: see ``mask_comment``.
    """
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return None
    return _PHONE.sub(_phone, _CARD.sub(_card, _EMAIL.sub("[email]", text)))


# a word: letters and digits, with inner apostrophes (O'Brien); hyphens and dots separate
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass(frozen=True)
class NameMask:
    """Customer names to find in free text, as sequences of lower-case words.

    A name matches as a whole, in any case and with any punctuation between its words
    ("Smith, Jones and Brown", "JOHN SMITH"); names of one word are left out, since a
    single word (a surname, "Will") matches ordinary words far too often.
    """

    names: frozenset[tuple[str, ...]] = frozenset()
    firsts: frozenset[str] = frozenset()  # first words, to skip most words at once
    lengths: tuple[int, ...] = ()  # name lengths in words, longest first

    @staticmethod
    def of(names: Iterable[str]) -> NameMask:
        found = set()
        for name in names:
            words = tuple(w.lower() for w in _WORD.findall(str(name)))
            if len(words) >= 2:
                found.add(words)
        return NameMask(frozenset(found), frozenset(w[0] for w in found),
                        tuple(sorted({len(w) for w in found}, reverse=True)))

    def __call__(self, text: str | None) -> str | None:
        if text is None or (not isinstance(text, str) and pd.isna(text)) or not self.names:
            return text
        words = [(m.start(), m.end(), m.group(0).lower()) for m in _WORD.finditer(text)]
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(words):
            if words[i][2] in self.firsts:
                for n in self.lengths:  # the longest name wins
                    if i + n <= len(words) and \
                            tuple(w[2] for w in words[i:i + n]) in self.names:
                        spans.append((words[i][0], words[i + n - 1][1]))
                        i += n - 1
                        break
            i += 1
        for start, end in reversed(spans):
            text = text[:start] + "[name]" + text[end:]
        return text


_NAME_MASKS: dict[tuple[str, str | None], NameMask] = {}


def name_mask(wh: Warehouse) -> NameMask:
    """The names of the warehouse's customers (table ``customers``), read once per load.

    Read from the unscoped warehouse: a scope hides names, and every name must be found.
    """
    wh = wh.base
    if not wh.has_table("customers") or "name" not in wh.columns("customers"):
        return NameMask()
    key = (str(wh.path), wh.meta("derived_at"))
    mask = _NAME_MASKS.get(key)
    if mask is None:
        rows = wh.connection().execute(
            "select distinct name from customers where name is not null"
        ).fetchall()
        mask = NameMask.of(r[0] for r in rows)
        if len(_NAME_MASKS) > 8:
            _NAME_MASKS.clear()
        _NAME_MASKS[key] = mask
    return mask


def mask_comment(text: str | None, names: NameMask | None = None) -> str | None:
    """``mask_pii`` and then customer names (``[name]``): how every comment is shown or
    exported."""
    masked = mask_pii(text)
    return names(masked) if names is not None else masked


def latest_comments(
    wh: Warehouse,
    filters: Filters | None = None,
    *,
    min_csat: int | None = None,
    max_csat: int | None = None,
    limit: int = 20,
    offset: int = 0,
) -> CommentPage:
    """Survey comments for the filtered tickets, newest submitted first, one page at a time.

    ``min_csat``/``max_csat`` (inclusive) keep comments in a CSAT band; a band leaves out
    comments without a CSAT score. Comments are masked (``mask_comment``: e-mail addresses,
    phone numbers and the names of the warehouse's customers), unless the warehouse is seen
    through a scope whose role may see customer details (``cs_metrics.core.access``).
    """
    if not 1 <= limit <= MAX_COMMENT_PAGE:
        raise CsMetricsError(f"Ask for 1 to {MAX_COMMENT_PAGE} comments at a time, not {limit}.")
    if offset < 0:
        raise CsMetricsError(f"The comment offset must be 0 or more, not {offset}.")
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in COMMENT_COLUMNS})
    if not _has_feedback(wh, "comment") or not wh.has_table("tickets"):
        return CommentPage(empty, 0, limit, offset)
    where, params = filter_sql(filters or Filters())
    own, own_params = wh.listing_sql("t")
    params += own_params
    clauses = [where, own, "t.comment is not null", "trim(t.comment) <> ''"]
    if min_csat is not None:
        clauses.append("t.csat >= ?")
        params.append(int(min_csat))
    if max_csat is not None:
        clauses.append("t.csat <= ?")
        params.append(int(max_csat))
    matching = f"from {_facts(wh)} t where {' and '.join(clauses)}"
    # the page is a top-N by submission time and the total a plain count: two cheap scans,
    # where a window count over every match would sort them all
    rows = wh.df(
        "select t.submitted_at, t.ticket_id, t.csat, t.nps, t.ces, t.comment, t.channel, "
        f"t.domain, t.rep_name {matching} "
        # feedback_id breaks ties, so pages neither repeat nor skip a comment
        "order by t.submitted_at desc nulls last, t.feedback_id desc limit ? offset ?",
        [*params, limit, offset],
    )
    if offset == 0 and len(rows) < limit:
        total = len(rows)
    else:
        total = int(wh.scalar(f"select count(*) {matching}", params) or 0)
    if wh.scope is None or not wh.scope.customer_details:
        names = name_mask(wh)
        rows["comment"] = rows["comment"].map(lambda c: mask_comment(c, names))
    return CommentPage(rows, total, limit, offset)


def feedback_breakdown(
    wh: Warehouse,
    filters: Filters | None = None,
    by: str = "channel",
    *,
    rank_by: str = "csat_pct",
    min_responses: int = MIN_RESPONSES,
) -> pd.DataFrame:
    """The feedback metrics per group of ``by``, ranked on ``rank_by`` (1 = best).

    A group with fewer than ``min_responses`` survey responses gets no rank and the note
    "few responses": its scores are shown, not compared.
    """
    if by not in DIMENSIONS:
        raise CsMetricsError(
            f"Unknown dimension {by!r}; valid dimensions: {', '.join(DIMENSIONS)}."
        )
    if rank_by not in FEEDBACK_METRICS:
        raise CsMetricsError(f"Rank on one of {', '.join(FEEDBACK_METRICS)}, not {rank_by!r}.")
    df = query(wh, list(FEEDBACK_METRICS), by=[by], filters=filters)
    reliable = (df["feedback_count"] >= min_responses) & df[rank_by].notna()
    ascending = get_metric(rank_by).direction == "lower"
    df["rank"] = df[rank_by].where(reliable).rank(ascending=ascending, method="min")
    df["rank"] = df["rank"].astype("Int64")
    df["note"] = np.where(df["feedback_count"] < min_responses, FEW_RESPONSES, "")
    return df.sort_values(["rank", "feedback_count"], ascending=[True, False],
                          na_position="last").reset_index(drop=True)


def feedback_trend(
    wh: Warehouse, filters: Filters | None = None, grain: str = "week"
) -> pd.DataFrame:
    """The feedback metrics per period of the tickets' creation."""
    return query(wh, list(FEEDBACK_METRICS), grain=grain, filters=filters)

"""Text from data, links, settings and mappings shown as text: never as Markdown, HTML,
Slack markup or a spreadsheet formula.

Each renderer has its own escaping; these are the only places it is written.
"""

from __future__ import annotations

import html
import re
import string
from typing import Any

import pandas as pd

__all__ = [
    "FORMULA_PREFIXES",
    "csv_cell",
    "escape_html",
    "escape_markdown",
    "escape_slack",
    "header_text",
    "markdown_code",
    "WORD_JOINER",
    "neutralize_csv",
    "REPLACEMENT_CHARACTER",
    "xml_safe",
]

# Every ASCII punctuation character may be escaped with a backslash in CommonMark, and an
# escaped one is always literal text. Escaping all of them (rather than a chosen few) also
# covers what Streamlit's Markdown adds on top: `:red[...]` colours, `:material/x:` icons,
# `:emoji:` codes and `$...$` maths.
_MD_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
# GitHub-flavoured renderers (Streamlit's remark-gfm among them) link bare URLs found in the
# text after escapes are resolved, so a backslash does not stop them (seen in chromium:
# `http\:\/\/evil\.example` rendered a live link). A WORD JOINER (U+2060: invisible, not a
# space) inside the marker does: after the `:` of `://`, before the `.` of `www.`. A bare
# e-mail address still becomes a mailto: link: only an invisible character could stop that
# too, and it would break an address copied from the page.
_AUTOLINK_MARKERS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def escape_markdown(value: Any) -> str:
    """``value`` as Markdown source that renders as exactly its text, on one line (a URL in
    it carries an invisible word joiner, so it is not made a link)."""
    text = "" if value is None else str(value)
    # a line break in data must not start a heading, list, quote or table
    text = " ".join(text.splitlines())
    text = _AUTOLINK_MARKERS.sub(WORD_JOINER, text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def markdown_code(value: Any) -> str:
    """``value`` (a path, a command) as a Markdown code span that shows exactly its text.

    Nothing inside a code span is Markdown except a run of backticks as long as the fence, so
    the fence is one longer than any run inside; the padding spaces are the ones CommonMark
    strips, so a value that begins or ends with a backtick keeps it."""
    text = " ".join(("" if value is None else str(value)).splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def escape_html(value: Any) -> str:
    """``value`` as HTML text or attribute content."""
    return html.escape("" if value is None else str(value), quote=True)


def escape_slack(value: Any) -> str:
    """``value`` as Slack message text: Slack's three control characters escaped as Slack
    documents, so ``<!channel>``, ``<@U123>`` and ``<http://x|text>`` are shown, not acted
    on."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header_text(value: Any) -> str:
    """``value`` as the text of one e-mail header, on one line: a line break in data must not
    end the header and start another (``x\\r\\nBcc: a@evil``), nor make the email package
    refuse the whole message."""
    text = "" if value is None else str(value)
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# A spreadsheet runs a cell that begins with one of these as a formula (OWASP's CSV
# injection guidance); tab and carriage return hide such a start from a quick look.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'``; anything else
    as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralize_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names cannot run in a spreadsheet.

    Only text columns change: numbers (a negative one begins with ``-``) and timestamps are
    written as they are. Parquet exports keep the values untouched.
    """
    out = frame.copy(deep=False)
    changed = False
    for col in out.columns:
        series = out[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)  # its categories are text like any other
        if not (pd.api.types.is_object_dtype(series.dtype)
                or pd.api.types.is_string_dtype(series.dtype)):
            continue
        text = series.astype("string")
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False)
        if risky.any():
            out[col] = series.where(~risky, "'" + text)
            changed = True
    names = [csv_cell(c) if isinstance(c, str) else c for c in out.columns]
    if names != list(out.columns):
        out.columns = names
        changed = True
    return out if changed else frame


# XML 1.0 allows tab, line feed, carriage return and U+0020 on, except the surrogates and
# U+FFFE/U+FFFF. vl-convert aborts the whole process (a Rust panic, not an exception) on any
# other character in a chart's text; DEL and the C1 controls are allowed but discouraged and
# show as nothing, so they are replaced too.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
REPLACEMENT_CHARACTER = "\ufffd"


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 does not allow (and DEL and the C1 controls)
    replaced by U+FFFD, the replacement character: the text a chart renderer is given."""
    return _NOT_XML.sub(REPLACEMENT_CHARACTER, text)

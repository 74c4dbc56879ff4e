"""Rendering a report: one self-contained HTML file, the in-page preview, Markdown and JSON.

The report's body is planned once, section by section (``_plan``), and drawn twice: as HTML
by the jinja2 templates in ``templates/`` (autoescaped: every value of the data is text in
the page), and as Markdown here, where values of the data go through ``escape_markdown``.
Charts are inline PNG and styles inline, so the HTML needs nothing from the network.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from cs_metrics.core.periods import range_label
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.metrics.registry import get_metric
from cs_metrics.ops.reports.build import REPS_SHOWN
from cs_metrics.ops.reports.cells import TEXT_KINDS, Column, _fmt
from cs_metrics.ops.reports.charts import chart_pngs
from cs_metrics.ops.reports.model import (
    DIMENSION_LABELS,
    Report,
    ReportTable,
    _describe_where,
    target_status,
)


@functools.cache
def _templates() -> jinja2.Environment:
    # autoescape: names, notes and filters come from the data and the settings, so every
    # value is escaped unless a template is told otherwise (only the JSON block and the
    # already-rendered body are); StrictUndefined: a misspelt name fails, not blanks out
    return jinja2.Environment(
        loader=jinja2.PackageLoader("cs_metrics.ops.reports", "templates"),
        autoescape=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
    )


def _cell_class(kind: str, value: Any, row: Any, column: str,
                targets: dict[str, float]) -> str:
    classes = []
    if kind not in TEXT_KINDS:
        classes.append("num")
    if column == "status" and value in ("met", "not met"):
        classes.append(value.replace(" ", "-"))
    if column in ("change", "year_change") and isinstance(row, (pd.Series, dict)):
        verdict = row.get(f"{column}_verdict")
        if verdict in ("better", "worse"):
            classes.append(verdict)
    if kind.startswith("metric:") and value is not None and not pd.isna(value):
        metric = get_metric(kind.split(":", 1)[1])
        status = target_status(metric, float(value), targets.get(metric.name))
        if status:
            classes.append(status.replace(" ", "-"))
    return " ".join(classes)


def _html_table(df: pd.DataFrame, columns: Sequence[Column], targets: dict[str, float],
                limit: int | None = None) -> dict[str, Any]:
    """A table's header and cells as text with their CSS classes (the template escapes)."""
    cols = [c for c in columns if c[0] in df.columns]
    head = [(header, "" if kind in TEXT_KINDS else "num") for _, header, kind in cols]
    body = []
    rows = df if limit is None else df.head(limit)
    for _, row in rows.iterrows():
        body.append([(_fmt(kind, row[col], row), _cell_class(kind, row[col], row, col, targets))
                     for col, _, kind in cols])
    return {"head": head, "rows": body}


def _md_cell(kind: str, value: Any, row: pd.Series) -> str:
    text = _fmt(kind, value, row)
    if kind in ("text", "segment") or isinstance(value, str) and kind != "label":
        # a value of the data: Markdown, HTML and a table's "|" in it are shown as text
        return escape_markdown(text)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame, columns: Sequence[Column], limit: int | None = None) -> str:
    cols = [c for c in columns if c[0] in df.columns]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for _, h, _ in cols) + " |",
             "|" + "|".join("---" if k in TEXT_KINDS else "---:" for _, _, k in cols)
             + "|"]
    rows = df if limit is None else df.head(limit)
    for _, row in rows.iterrows():
        lines.append("| " + " | ".join(_md_cell(k, row[c], row) for c, _, k in cols) + " |")
    return "\n".join(lines)


def _kpi_columns(report: Report) -> list[Column]:
    cols: list[Column] = [("label", "Metric", "label"), ("value", "This period", "row_metric")]
    if "team_median" in report.kpis.df.columns:
        cols += [("team_median", "Team median", "row_metric"),
                 ("team", "Whole team", "row_metric")]
    cols += [("previous", "Previous period", "row_metric"), ("change", "Change", "row_change")]
    # present only when the data reaches back a year (the columns exist only then)
    cols += [("year_earlier", "A year earlier", "row_metric"),
             ("year_change", "Change over the year", "row_year_change")]
    cols += [("target", "Target", "target"), ("status", "Status", "label")]
    return cols


def _metric_columns(names: Sequence[str]) -> list[Column]:
    return [(n, get_metric(n).label, f"metric:{n}") for n in names]


def _group_columns(dim: str, table: ReportTable) -> list[Column]:
    names = table.sources[0]["metrics"]
    kind = "segment" if dim == "customer_segment" else "text"
    return [(dim, DIMENSION_LABELS.get(dim, dim), kind), *_metric_columns(names),
            ("ticket_count__previous", "Tickets, previous period", "int"),
            ("share_pct", "Share of tickets", "pct")]


def _board_columns(table: ReportTable) -> list[Column]:
    keys = table.sources[0]["by"]
    key_cols = [(k, DIMENSION_LABELS.get(k, k), "text") for k in keys if k != "manager"
                or table.key == "managers"]
    return [*key_cols, *_metric_columns(table.sources[0]["metrics"])]


SUCCESS_COLUMNS: list[Column] = [
    ("label", "Metric", "label"), ("target", "Target", "target"),
    ("value", "This period", "row_metric"), ("gap", "Against target", "row_gap"),
    ("status", "Status", "label"), ("previous", "Previous period", "row_metric"),
]
CHANGE_COLUMNS: list[Column] = [("sentence", "Change", "text"), ("q_value", "q", "p")]
VOLUME_COLUMNS: list[Column] = [
    ("period", "Day", "date"), ("ticket_count", "Tickets", "int"),
    ("previous_period", "Previous period", "date"), ("previous", "Tickets then", "int"),
]


def _scope_rows(report: Report, esc: Callable[[Any], str] = str) -> list[tuple[str, str]]:
    """The scope table's rows; ``esc`` makes each value of the data or the settings (names,
    filters, file names) Markdown text, leaving the report's own dates and ids readable."""
    s = report.scope
    p = s.period
    rows = [
        ("Audience", {"executive": "Executive (whole organisation)",
                      "team": f"Team: {esc(s.subject)}",
                      "representative": f"Representative: {esc(s.subject)}"}[s.audience]),
        ("Period", p.label),
        ("Time zone", f"{s.filters.tz}: days, weeks and months are local days of this zone"),
        ("Compared with", range_label(p.previous_from, p.previous_to)),
        ("Year over year", range_label(*s.year_earlier_range) if s.year_earlier_range
         else "no data a year earlier"),
        ("Filters", esc(_describe_where(s.user_filters)) or "none"),
        ("Dataset", f"{esc(Path(s.dataset).name)}" + (
            f" (from {', '.join(esc(n) for n in s.sources)})" if s.sources else "")),
        ("Data", (f"tickets created {s.data_from:%Y-%m-%d %H:%M} – {s.data_to:%Y-%m-%d %H:%M}"
                  f", as of {s.data_as_of:%Y-%m-%d %H:%M} UTC")
         if s.data_from and s.data_to and s.data_as_of else "–"),
        ("Run id", s.run_id),
        ("Metric definitions", s.metric_version),
        ("Settings (targets)", esc(s.settings_source)),
        ("Generated", f"{s.generated_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    return rows


def _safe_text(text: str) -> str:
    """No text of a report reads as a web address a viewer would follow (values come from
    the data): the colon of ``http://`` becomes an entity in HTML."""
    return re.sub(r"(?i)\b(https?):(//)", r"\1&#58;\2", text)


def _json_block(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    # Inside <script> nothing may close the element or open a comment (``<!--<script>``
    # keeps the element open past its end tag), and no text may read as an address. JSON
    # reads the \\u escapes back as the same characters.
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, code)
    return re.sub(r"(?i)\b(https?):(//)", r"\1\\u003a\2", text)


@dataclass(frozen=True)
class RenderedReport:
    """A report in every format: the HTML document, the in-page preview (a fragment with its
    style scoped to ``.csm-report``), Markdown, the PNG charts by file name, and the JSON."""

    report: Report
    html: str
    preview_html: str
    markdown: str
    images: dict[str, bytes]
    json_text: str

    @property
    def stem(self) -> str:
        s = self.report.scope
        subject = re.sub(r"[^A-Za-z0-9]+", "-", s.subject or "").strip("-")
        parts = ["report", s.audience, subject, s.period.slug]
        return "_".join(p for p in parts if p)

    def markdown_zip(self) -> bytes:
        """report.md, its PNG charts and report.json, in one zip."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("report.md", self.markdown)
            zf.writestr("report.json", self.json_text)
            for name, data in self.images.items():
                zf.writestr(name, data)
        return buf.getvalue()


@dataclass(frozen=True)
class Block:
    """One piece of a report's section, the same in HTML and Markdown: a heading (``h2``,
    ``h3``), a paragraph (``para``, with its HTML class), a ``table``, an ``image`` (``name``,
    alt text in ``text``), the seasonality ``verdicts``, the ``scope`` table or the quality
    ``score``."""

    kind: str
    text: str = ""
    cls: str = "note"
    name: str = ""
    items: tuple[str, ...] = ()
    df: pd.DataFrame | None = None
    columns: tuple[Column, ...] = ()
    limit: int | None = None


Section = tuple[str, tuple[Block, ...]]  # (id, blocks)


def _plan(report: Report, images: dict[str, bytes]) -> list[Section]:
    """The report's body, section by section: what it says, not how it is drawn."""
    s = report.scope
    out: list[Section] = []

    def h2(text: str) -> Block:
        return Block("h2", text)

    def h3(text: str) -> Block:
        return Block("h3", text)

    def para(text: str, cls: str = "note") -> Block | None:
        # notes carry values of the data and the settings (names, paths): text, never markup
        return Block("para", text, cls) if text else None

    def table(df: pd.DataFrame, cols: Sequence[Column], limit: int | None = None) -> Block:
        return Block("table", df=df, columns=tuple(cols), limit=limit)

    def image(name: str, alt: str) -> Block | None:
        return Block("image", alt, name=name) if name in images else None

    def section(key: str, *parts: Block | None) -> None:
        out.append((key, tuple(p for p in parts if p is not None)))

    section("scope", h2("Scope"), Block("scope"))
    if report.notes:
        notes = report.notes
        section("notes", *(para(n) for n in notes))
    section("kpis", h2("Key figures"), table(report.kpis.df, _kpi_columns(report)),
            para(report.kpis.note))
    section("success", h2("Success metrics against targets"), para(report.success.note, "lead"),
            table(report.success.df, SUCCESS_COLUMNS),
            para(f"Targets come from the settings ({s.settings_source})."))
    section("volume", h2("Volume trend"), image("volume_trend.png", "Tickets created"),
            h3("Seasonality"), Block("verdicts", items=tuple(report.seasonality)),
            para(report.volume.note))
    section("charts", h2("KPI trend and business performance"),
            image("executive_kpis_trend.png", "KPI trend"),
            image("business_performance_dashboard.png", "Business performance dashboard"))
    if report.rep_trend is not None:
        section("rep_trend", h2("Against the team"), image("rep_vs_team.png",
                                                           "Against the team median"),
                para(report.rep_trend.note))
    section("segments", h2("Customer segments"),
            table(report.segments.df, _group_columns("customer_segment", report.segments)))
    people: list[Block | None] = []
    if report.managers is not None:
        people += [h3("Managers"), table(report.managers.df, _board_columns(report.managers))]
    if report.teams is not None:
        people += [h3("Teams"), table(report.teams.df, _board_columns(report.teams))]
    if report.representatives is not None:
        limit = REPS_SHOWN if s.audience == "executive" else None
        people += [h3("Representatives"),
                   table(report.representatives.df, _board_columns(report.representatives),
                         limit), para(report.representatives.note)]
    if people:
        section("people", h2("Managers, teams and representatives"), *people)
    section("top", h2("Top domains and locations"), h3("Domains"),
            table(report.domains.df, _group_columns("domain", report.domains)),
            para(report.domains.note), h3("Service locations"),
            table(report.locations.df, _group_columns("location", report.locations)),
            para(report.locations.note))
    if len(report.changes.df):
        changes = table(report.changes.df, CHANGE_COLUMNS)
    else:
        changes = para("No significant change of the size listed here against the previous "
                       "period.", "lead")
    section("changes", h2("Notable changes"), changes, para(report.changes.note))
    score = report.quality_score
    score_text = f"{score:.1f} / 100" if score is not None else "not available"
    section("quality", h2("Data quality"), Block("score", score_text),
            para("The warehouse's data-quality score: 100 × (0.6 × validity + 0.2 × "
                 "warning-free share + 0.2 × completeness), over the latest load of each "
                 "source (see the Data quality page)."))
    return out


def _html_block(block: Block, report: Report, images: dict[str, bytes],
                targets: dict[str, float]) -> dict[str, Any]:
    """What the template needs of one block: text only (it escapes), never markup."""
    if block.kind == "table":
        assert block.df is not None
        return {"kind": "table", **_html_table(block.df, block.columns, targets, block.limit)}
    if block.kind == "image":
        return {"kind": "image", "text": block.text,
                "data": base64.b64encode(images[block.name]).decode()}
    if block.kind == "scope":
        return {"kind": "scope", "rows": _scope_rows(report)}
    return {"kind": block.kind, "text": block.text, "cls": block.cls, "lines": block.items}


def _html_body(report: Report, images: dict[str, bytes]) -> Markup:
    """The report's title and sections as HTML: the body of the file and of the preview."""
    s = report.scope
    targets = dict(report.targets)
    sections = [{"key": key, "blocks": [_html_block(b, report, images, targets) for b in blocks]}
                for key, blocks in _plan(report, images)]
    body = _templates().get_template("body.html.j2").render(
        title=s.title, label=s.period.label, run_id=s.run_id,
        generated=f"{s.generated_at:%Y-%m-%d %H:%M}", sections=sections)
    # escaped by the template; _safe_text only turns an address's colon into an entity
    return Markup(_safe_text(body))


def _md_block(block: Block, report: Report) -> str:
    if block.kind == "h2":
        return f"## {block.text}"
    if block.kind == "h3":
        return f"### {block.text}"
    if block.kind == "para":
        return escape_markdown(block.text)
    if block.kind == "table":
        assert block.df is not None
        return _md_table(block.df, block.columns, block.limit)
    if block.kind == "image":
        return f"![{escape_markdown(block.text)}]({block.name})"
    if block.kind == "verdicts":
        return "\n".join(f"- {escape_markdown(v)}" for v in block.items)
    if block.kind == "scope":
        # escape_markdown turns a "|" of the data into "\|": the row keeps its two cells
        lines = "\n".join(f"| {k} | {v} |" for k, v in _scope_rows(report, escape_markdown))
        return f"| | |\n|---|---|\n{lines}"
    if block.kind == "score":
        return f"**{block.text}**"
    raise ValueError(f"unknown report block {block.kind!r}")  # pragma: no cover


def _markdown(report: Report, images: dict[str, bytes]) -> str:
    s = report.scope
    sections = []
    for _, blocks in _plan(report, images):
        parts = [_md_block(b, report) for b in blocks]
        sections.append("\n\n".join(p for p in parts if p))
    md_head = (f"# {escape_markdown(s.title)}\n\n{s.period.label} · run {s.run_id} · "
               f"generated {s.generated_at:%Y-%m-%d %H:%M} UTC\n")
    markdown = md_head + "\n\n" + "\n\n".join(p for p in sections if p)
    return markdown + "\n\nThe figures of this report, machine-readable: report.json.\n"


def render(report: Report) -> RenderedReport:
    """The report as HTML, preview HTML, Markdown, PNG charts and JSON."""
    images = chart_pngs(report)
    data = report.to_dict()
    json_text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    body = _html_body(report, images)
    templates = _templates()
    doc = templates.get_template("report.html.j2").render(
        title=report.scope.title, label=report.scope.period.label,
        metric_version=report.scope.metric_version, body=body,
        # inside <script> entities are not read, so the block is escaped as JSON instead
        # (``_json_block``: no "<", ">" or "&" left) and must not be escaped again
        data_json=Markup(_json_block(data)))
    preview = templates.get_template("preview.html.j2").render(body=body)
    return RenderedReport(report, doc, preview, _markdown(report, images), images, json_text)

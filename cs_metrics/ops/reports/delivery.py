"""Delivering a rendered report: its files in a folder, or an e-mail through the settings'
SMTP server (a plain-text summary with the HTML, or the Markdown and its charts, attached)."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.safe_text import header_text
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.metrics.registry import get_metric
from cs_metrics.ops.reports.charts import REFERENCE_CHARTS
from cs_metrics.ops.reports.model import Report
from cs_metrics.ops.reports.render import RenderedReport

FORMATS: tuple[str, ...] = ("html", "md")

def write_report(rendered: RenderedReport, out: str | Path, fmt: str = "html") -> list[Path]:
    """Write the report into the folder ``out``: ``report.html`` (or ``report.md``),
    ``report.json`` and the PNG charts. Returns the files written."""
    if fmt not in FORMATS:
        raise CsMetricsError(f"Unknown report format {fmt!r}; use {', '.join(FORMATS)}.")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise CsMetricsError(f"--out {folder} is a file; name a folder for the report.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        main = folder / f"report.{fmt}"
        main.write_text(rendered.html if fmt == "html" else rendered.markdown, encoding="utf-8")
        written.append(main)
        data = folder / "report.json"
        data.write_text(rendered.json_text, encoding="utf-8")
        written.append(data)
        names = rendered.images if fmt == "md" else {
            n: b for n, b in rendered.images.items() if n in REFERENCE_CHARTS}
        for name, content in names.items():
            path = folder / name
            path.write_bytes(content)
            written.append(path)
    except OSError as exc:
        raise CsMetricsError(f"Cannot write the report to {folder}: {exc}") from exc
    return written


def _plain_summary(report: Report) -> str:
    s = report.scope
    lines = [s.title, s.period.label, ""]
    for _, row in report.kpis.df.iterrows():
        m = get_metric(row["metric"])
        status = f" (target {row['status']})" if row["status"] else ""
        year = (f", a year earlier {m.display(row['year_earlier'])}"
                if "year_earlier" in row.index else "")
        lines.append(f"- {m.label}: {m.display(row['value'])}, previous "
                     f"{m.display(row['previous'])}{year}{status}")
    if len(report.changes.df):
        lines += ["", "Notable changes:"] + [f"- {t}" for t in report.changes.df["sentence"]]
    lines += ["", f"Run {s.run_id}; the full report is attached (report.html)."]
    return "\n".join(lines)


def send_report_email(
    rendered: RenderedReport,
    recipients: Sequence[str],
    settings: Settings | None = None,
    *,
    timeout: float | None = None,
    fmt: str = "html",
) -> tuple[str, ...]:
    """Email the report: a plain-text summary, the HTML as the message's HTML part and as the
    attachment ``report.html``, to ``recipients`` (default: the settings' recipients) through
    the SMTP server of ``[notifications.email]``. With ``fmt`` "md" the attachments are
    ``report.md`` and its PNG charts instead. Returns the recipients; raises CsMetricsError
    on failure."""
    settings = settings or load_settings()
    email = settings.notifications.email
    to = tuple(r.strip() for r in recipients if r and r.strip()) or email.recipients
    # a line break or space in an address would add a header or a recipient of its own
    bad = [r for r in to if "@" not in r or any(c.isspace() for c in r)]
    if bad:
        raise CsMetricsError(
            f"--email {', '.join(repr(b) for b in bad)}: not an email address.")
    if not email.host or not email.sender or not to:
        raise CsMetricsError(
            "Emailing a report needs notifications.email.host and sender in the settings "
            "(and recipients, in the settings or after --email)."
        )
    report = rendered.report
    msg = EmailMessage()
    # the title names a team or a representative of the data: one line, so it cannot add
    # a header (the HTML part and the attachment are escaped by ``render``)
    msg["Subject"] = header_text(f"{email.subject_prefix} {report.scope.title} · "
                                 f"{report.scope.period.label}")
    try:
        msg["From"] = email.sender
        msg["To"] = ", ".join(to)
    except ValueError as exc:  # the email package refuses a header that spans lines
        raise CsMetricsError(
            f"notifications.email.sender or the recipients are not plain addresses: {exc}."
        ) from None
    msg.set_content(_plain_summary(report))
    if fmt == "md":
        msg.add_attachment(rendered.markdown.encode("utf-8"), maintype="text",
                           subtype="markdown", filename=f"{rendered.stem}.md")
        for name, content in rendered.images.items():
            msg.add_attachment(content, maintype="image", subtype="png", filename=name)
    else:
        msg.add_alternative(rendered.html, subtype="html")
        msg.add_attachment(rendered.html.encode("utf-8"), maintype="text", subtype="html",
                           filename=f"{rendered.stem}.html")
    from cs_metrics.ops.notify import send_message

    wait = timeout if timeout is not None else settings.notifications.timeout_s
    send_message(email, msg, timeout=wait)  # a DeliveryError is a CsMetricsError
    return to

"""The report's charts: drawn with Altair and rendered to PNG here by vl-convert, so nothing
in a report points at the network. ``REFERENCE_CHARTS`` are the two written beside every
report (``executive_kpis_trend.png``, ``business_performance_dashboard.png``)."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.safe_text import xml_safe
from cs_metrics.metrics.registry import get_metric
from cs_metrics.ops.reports.cells import _fmt
from cs_metrics.ops.reports.model import Report, _num, target_status

REFERENCE_CHARTS: tuple[str, ...] = (
    "executive_kpis_trend.png", "business_performance_dashboard.png",
)


def _png(chart: Any) -> bytes:
    try:
        import vl_convert as vlc
    except ImportError as exc:  # pragma: no cover - a missing dependency, said plainly
        raise CsMetricsError(
            "Rendering report charts needs the vl-convert-python package; run "
            "`pip install -r requirements.txt`."
        ) from exc
    import altair as alt

    # compile with the Vega-Lite version Altair wrote the spec for, when vl-convert has it
    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    version = wanted if wanted in vlc.get_vegalite_versions() else None
    raw = vlc.vegalite_to_png(_xml_safe_spec(chart.to_dict()), vl_version=version, scale=2)
    return _compact_png(raw)


def _xml_safe_spec(value: Any) -> Any:
    """The spec with every text (titles, labels, the data values in ``datasets``, and the
    keys, so field names still match) made XML-safe: a control character from the data would
    otherwise abort the whole process inside vl-convert, which no ``except`` can catch."""
    if isinstance(value, str):
        return xml_safe(value)
    if isinstance(value, dict):
        return {_xml_safe_spec(k): _xml_safe_spec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_xml_safe_spec(v) for v in value]
    return value


def _compact_png(raw: bytes) -> bytes:
    """A chart's PNG on white with a 64-colour palette: a tenth of the size, no visible loss
    (charts hold a few flat colours and anti-aliased text), so the HTML stays small."""
    try:
        from PIL import Image  # installed with streamlit; without it the PNG stays as drawn
    except ImportError:  # pragma: no cover
        return raw
    with Image.open(io.BytesIO(raw)) as im:
        rgba = im.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        small = flat.convert("RGB").quantize(colors=64, method=Image.Quantize.FASTOCTREE)
        buf = io.BytesIO()
        small.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def _alt():
    import altair as alt

    return alt


def _chart_volume(report: Report) -> Any:
    alt = _alt()
    df = report.volume.df[["period", "ticket_count", "previous"]].copy()
    grain = report.volume.sources[0]["grain"]
    # one band per bucket, labelled like the table, in period order
    df["bucket"] = [f"{d:%a %d %b}" if grain == "day" else f"w/c {d:%d %b}"
                    for d in df["period"]]
    df = df.drop(columns="period")
    order = list(df["bucket"])
    x = alt.X("bucket:O", sort=order, title="Day" if grain == "day" else "Week (starting Monday)",
              axis=alt.Axis(labelAngle=-45 if len(order) > 10 else 0))
    bars = alt.Chart(df).mark_bar(color="#4c78a8", opacity=0.85).encode(
        x=x, y=alt.Y("ticket_count:Q", title="Tickets created (count)"))
    layers = [bars]
    if df["previous"].notna().any():
        prev = df[df["previous"].notna()]
        layers.append(alt.Chart(prev).mark_line(color="#f58518", point=True).encode(
            x=alt.X("bucket:O", sort=order), y=alt.Y("previous:Q")))
    subtitle = "Bars: this period · orange line: the previous period at the same offset"
    return alt.layer(*layers).properties(
        width=640, height=220,
        title=alt.Title(f"Tickets created per {grain}", subtitle=subtitle),
    )


def _chart_kpi_trend(report: Report) -> Any:
    alt = _alt()
    df = report.trend.df
    names = [m for m in report.trend.sources[0]["metrics"]]
    grain = report.trend.sources[0]["grain"]
    long = df.melt(id_vars="period", value_vars=names, var_name="metric", value_name="value")
    long["label"] = long["metric"].map(lambda n: f"{get_metric(n).label} "
                                                 f"({get_metric(n).unit or 'points'})")
    long["when"] = pd.to_datetime(long["period"])
    long = long.drop(columns="period")
    targets = dict(zip(report.kpis.df["metric"], report.kpis.df["target"], strict=True))
    long["target"] = long["metric"].map(lambda n: _num(targets.get(n)))
    base = alt.Chart(long).encode(
        x=alt.X("when:T", title=f"{grain.capitalize()} (start)",
                axis=alt.Axis(format="%d %b" if grain == "week" else "%b %Y")),
    )
    line = base.mark_line(point=True, color="#4c78a8").encode(
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)))
    rule = base.mark_line(strokeDash=[6, 4], color="#e45756").encode(y=alt.Y("target:Q"))
    return alt.layer(line, rule).properties(width=250, height=140).facet(
        facet=alt.Facet("label:N", title=None, sort=[
            f"{get_metric(n).label} ({get_metric(n).unit or 'points'})" for n in names]),
        columns=3,
        title=alt.Title(f"{_chart_title(report)}: KPI trend by {grain}",
                        subtitle=f"{report.trend.note} Dashed red: target."),
    ).resolve_scale(y="independent")


def _chart_title(report: Report) -> str:
    s = report.scope
    return s.subject or "All teams"


def _chart_dashboard(report: Report) -> Any:
    alt = _alt()
    s = report.scope
    targets = dict(zip(report.kpis.df["metric"], report.kpis.df["target"], strict=True))
    vol = report.volume.df[["period", "ticket_count"]].copy()
    vol["day"] = pd.to_datetime(vol["period"])
    vol = vol.drop(columns="period")
    volume = alt.Chart(vol).mark_area(line=True, opacity=0.3, color="#4c78a8").encode(
        x=alt.X("day:T", title=None, axis=alt.Axis(format="%d %b")),
        y=alt.Y("ticket_count:Q", title="Tickets (count)"),
    ).properties(width=300, height=170, title="Tickets created")

    def bars(df: pd.DataFrame, dim: str, metric: str, title: str) -> Any:
        m = get_metric(metric)
        data = df[[dim, metric]].dropna().copy()
        data[dim] = [_fmt("segment", v) for v in data[dim]] if dim == "customer_segment" \
            else data[dim].astype(str)
        target = _num(targets.get(metric))
        data["status"] = [target_status(m, float(v), target) or "no target"
                          for v in data[metric]]
        chart = alt.Chart(data).mark_bar().encode(
            y=alt.Y(f"{dim}:N", title=None, sort="-x"),
            x=alt.X(f"{metric}:Q", title=f"{m.label} ({m.unit})"),
            color=alt.Color("status:N", title="Target", scale=alt.Scale(
                domain=["met", "not met", "no target"],
                range=["#54a24b", "#e45756", "#4c78a8"]), legend=alt.Legend(orient="bottom")),
        )
        layers = [chart]
        if target is not None:
            layers.append(alt.Chart(pd.DataFrame({"target": [target]})).mark_rule(
                color="#e45756", strokeDash=[6, 4]).encode(x=alt.X("target:Q")))
        return alt.layer(*layers).properties(width=300, height=170, title=title)

    panels = [volume]
    if s.audience == "representative":
        group_df = report.domains.df
        group_dim, group_title = "domain", "SLA first response by domain"
    elif s.audience == "team" and report.representatives is not None:
        group_df = report.representatives.df.head(12)
        group_dim, group_title = "rep_name", "SLA first response by representative"
    else:
        group_df = report.teams.df if report.teams is not None else report.domains.df
        group_dim = "team" if report.teams is not None else "domain"
        group_title = f"SLA first response by {group_dim}"
    if "sla_first_response_pct" in group_df.columns:
        panels.append(bars(group_df, group_dim, "sla_first_response_pct",
                           f"{group_title} (dashed line: target)"))
    if "csat_pct" in report.segments.df.columns:
        panels.append(bars(report.segments.df, "customer_segment", "csat_pct",
                           "CSAT by customer segment (dashed line: target)"))
    dom = report.domains.df[["domain", "ticket_count"]].copy()
    dom["domain"] = dom["domain"].fillna("(none)").astype(str)
    panels.append(alt.Chart(dom).mark_bar(color="#4c78a8").encode(
        y=alt.Y("domain:N", title=None, sort="-x"),
        x=alt.X("ticket_count:Q", title="Tickets (count)"),
    ).properties(width=300, height=170, title="Top domains by tickets"))
    rows = [alt.hconcat(*panels[i:i + 2]) for i in range(0, len(panels), 2)]
    return alt.vconcat(*rows).properties(title=alt.Title(
        f"{_chart_title(report)}: business performance, {s.period.label}",
        subtitle=f"Run {s.run_id} · metric definitions {s.metric_version}"))


def _chart_rep_trend(report: Report) -> Any:
    alt = _alt()
    df = report.rep_trend.df
    long = df.melt(id_vars=["metric", "period"], value_vars=["rep", "team_median"],
                   var_name="series", value_name="value")
    long["series"] = long["series"].map({"rep": report.scope.subject or "Representative",
                                         "team_median": "Team median"})
    long["label"] = long["metric"].map(
        lambda n: f"{get_metric(n).label} ({get_metric(n).unit})")
    long["when"] = pd.to_datetime(long["period"])
    long = long.drop(columns="period")
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("when:T", title="Period (start)", axis=alt.Axis(format="%d %b")),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top")),
    ).properties(width=250, height=150).facet(
        facet=alt.Facet("label:N", title=None), columns=3,
        title=alt.Title("Against the team median", subtitle=report.rep_trend.note),
    ).resolve_scale(y="independent")


def chart_pngs(report: Report) -> dict[str, bytes]:
    """Every chart of the report as PNG bytes, by file name (the two reference charts too)."""
    charts = {
        "volume_trend.png": _chart_volume(report),
        "executive_kpis_trend.png": _chart_kpi_trend(report),
        "business_performance_dashboard.png": _chart_dashboard(report),
    }
    if report.rep_trend is not None and len(report.rep_trend.df):
        charts["rep_vs_team.png"] = _chart_rep_trend(report)
    return {name: _png(chart) for name, chart in charts.items()}

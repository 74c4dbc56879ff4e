"""How the pages draw charts and maps: titles that fit, bar heights, the "Other" fold of long
category lists, the map colours and the basemap (fetched only when reachable)."""

from __future__ import annotations

import functools
import os
import textwrap
import urllib.request
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

# Map colours of outage severities, shared by the Outages and What-if pages.
SEVERITY_COLOURS: dict[str, list[int]] = {
    "minor": [255, 193, 7], "major": [255, 112, 67], "critical": [211, 47, 47],
}
BASEMAP_PROBE = "https://basemaps.cartocdn.com/gl/positron-gl-style/style.json"


def show_chart(chart: alt.TopLevelMixin, *, where: object = st, **kwargs: Any) -> Any:
    """``where.altair_chart(chart, **kwargs)``, without Altair's check of the whole spec
    against Vega-Lite's JSON schema on every run: with the checks of parts as they are
    made (Altair's debug mode, off in app.py) it was an eighth of the interpreter's time
    over a visit of every page, and Streamlit runs it under a lock every session shares.
    The test suite checks every page's charts against the schema instead
    (tests/test_app.py::test_charts_build_cheaply_and_are_valid_vega_lite)."""
    chart = _fit_width(chart)
    # Streamlit calls chart.to_dict() with no arguments; Altair's own __setattr__ would
    # make "to_dict" a property of the spec, so the method is replaced on the instance.
    object.__setattr__(chart, "to_dict", functools.partial(chart.to_dict, validate=False))
    return where.altair_chart(chart, **kwargs)  # type: ignore[attr-defined]


def _fit_width(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """A single or layered chart fits the container's width and keeps its own height as the
    plot's height. Streamlit's default, "fit" in both directions, squeezes the plot into
    the height given to the whole chart (a title, subtitle and legend can leave it a few
    pixels) and makes Vega-Lite warn for a height in steps (``Dropping "fit-y"``). Facets
    and concatenations keep Streamlit's own choice (they cannot fit)."""
    if not isinstance(chart, alt.Chart | alt.LayerChart):
        return chart
    if chart.autosize is not alt.Undefined:
        return chart
    if isinstance(chart, alt.Chart) and isinstance(chart.encoding, alt.FacetedEncoding) and any(
            getattr(chart.encoding, channel, alt.Undefined) is not alt.Undefined
            for channel in ("row", "column", "facet")):
        return chart
    return chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


# The width a full-width chart has at least on a laptop's screen (px), and the average width
# of a character of a title and of a subtitle in the charts' theme: how long a title's line
# may be before it is wrapped (a line wider than its chart is cut off).
CHART_WIDTH_PX = 900
TITLE_CHAR_PX = 9.0
SUBTITLE_CHAR_PX = 6.6


def chart_title(text: str, subtitle: str | None = None, *, columns: int = 1) -> alt.TitleParams:
    """A chart's title and subtitle, anchored left and wrapped into lines that fit a chart
    in one of ``columns`` side-by-side columns."""
    width = CHART_WIDTH_PX / max(1, columns)
    lines = textwrap.wrap(text, max(16, int(width / TITLE_CHAR_PX)))
    params: dict[str, Any] = {"anchor": "start"}
    if subtitle:
        params["subtitle"] = textwrap.wrap(subtitle, max(24, int(width / SUBTITLE_CHAR_PX)))
    return alt.TitleParams(lines if len(lines) > 1 else text, **params)


# The least height of a chart's plot (px): lower, its marks and axis labels crowd together.
MIN_PLOT_HEIGHT = 140


def bar_height(bars: int, step: int = 22, minimum: int = 160) -> int:
    """The plot's height for ``bars`` bars side by side down the page: a step each, and at
    least ``minimum`` (an explicit height: a height in steps cannot fit Streamlit's chart)."""
    return max(minimum, step * bars)


# How many categories a chart shows before the rest are folded into one "Other" bar: a
# real export has a hundred or more domains or topics, too many bars to read.
TOP_CATEGORIES = 12


def fold_other(df: pd.DataFrame, by: str, counts: list[str], n: int = TOP_CATEGORIES,
               keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """An aggregated frame with its ``n`` largest values of ``by`` (by the sum of
    ``counts[0]``) and the rest as one value "Other (k more)", their ``counts`` summed per
    ``keys`` (the other columns of a long frame). Only for counts: the rate of "Other"
    would come from its numerators and denominators, never from the rates."""
    totals = df.groupby(by, dropna=False, sort=False)[counts[0]].sum().sort_values(
        ascending=False, kind="stable")
    if len(totals) <= n:
        return df
    keep = set(totals.index[:n])
    label = f"Other ({len(totals) - n} more)"
    folded = df.assign(**{by: df[by].where(df[by].isin(keep), label)})
    return folded.groupby([by, *keys], as_index=False, sort=False, dropna=False)[counts].sum()


# The map style Streamlit's frontend reads as "no basemap" (pydeck's own "no style given",
# when no map provider is named): the layers on a blank background and nothing fetched.
# Without it the frontend fetches Carto's style, which fails without a network (an error in
# the browser's console on every map).
NO_BASEMAP = "__MAP_STYLE__"


def basemap() -> dict[str, Any]:
    """The basemap arguments of a ``pydeck.Deck``: Carto's light tiles when they can be
    fetched, else none."""
    if basemap_reachable():
        return {"map_style": "light"}
    return {"map_style": NO_BASEMAP, "map_provider": None}


@st.cache_resource(ttl=3600, show_spinner=False)
def basemap_reachable() -> bool:
    """Whether the basemap tiles can be fetched (CS_METRICS_BASEMAP=on/off decides outright).

    Without a network the layers are drawn on a blank background instead of broken tiles."""
    forced = os.environ.get("CS_METRICS_BASEMAP", "").strip().lower()
    if forced in ("on", "off"):
        return forced == "on"
    try:
        with urllib.request.urlopen(BASEMAP_PROBE, timeout=1.5) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False

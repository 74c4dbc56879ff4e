"""Every chart fits, in a real browser: every page of the navigation (and What-if after a
run) opened in chromium at 1500×1100, failing on a console warning or error, a chart title
clipped or cut short, a chart without a title, or a plot under 120 px high."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser import (  # served_app: the fixture that serves the sample
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGE_TIMEOUT_MS,
    served_app,  # noqa: F401, F811
    wait_for_run,
)

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1500, "height": 1100}
MIN_PLOT_PX = 120
# The browser logs every failed request as a console error ("Failed to load resource"):
# those are checked by their address instead. Streamlit's frontend looks for its server
# under the page's path first (/trends/_stcore/health, then /_stcore/health): those 404s
# are expected, any other failed request is a problem.
FAILED_REQUEST = "Failed to load resource:"
# Chromium without a GPU reports its software GL's performance notes on the map pages.
# What Vega says of a chart drawn without data (see console_problems).
GL_NOTE = re.compile(r"^\[\.WebGL-0x[0-9a-f]+\]GL Driver Message \(OpenGL, Performance, ")
EXPECTED_404 = re.compile(r"/[^/]+/_stcore/(health|host-config)$")

# In the page: every Vega chart's titles (text, whether cut short with Vega's ellipsis,
# whether its box leaves the drawing) and the height of every plot (each innermost view's
# background rectangle, a unit chart's or a facet cell's).
MEASURE_JS = """
charts => charts.map(chart => {
  const svg = chart.querySelector('svg.marks');
  if (!svg) return {rendered: false};
  const frame = svg.getBoundingClientRect();
  const titles = [];
  for (const text of svg.querySelectorAll(
      'g.role-title-text text, g.role-title-subtitle text')) {
    const box = text.getBoundingClientRect();
    const lines = text.querySelectorAll('tspan').length
      ? Array.from(text.querySelectorAll('tspan'), t => t.textContent)
      : [text.textContent];
    titles.push({
      text: lines.join(' / '),
      subtitle: !!text.closest('g.role-title-subtitle'),
      ellipsis: lines.some(line => line.trim().endsWith('…')),
      overflow: box.left < frame.left - 1 || box.right > frame.right + 1,
    });
  }
  const plots = [];
  const views = 'g.mark-group.role-frame, g.mark-group.role-scope';
  const parts = ('.role-legend, .role-axis, .role-title, [class*="role-row-"], '
                 + '[class*="role-column-"]');
  for (const group of svg.querySelectorAll(views)) {
    if (group.closest(parts)) continue;  // a legend's entries are scopes too
    if (Array.from(group.querySelectorAll(views)).some(g => !g.closest(parts))) continue;
    for (const item of group.children) {
      const bg = item.querySelector(':scope > path.background');
      if (bg) plots.push(Math.round(bg.getBoundingClientRect().height));
    }
  }
  const marks = svg.querySelectorAll('g.role-mark > :not(g.role-mark)').length;
  return {rendered: true, titles, plots, marks, height: Math.round(frame.height)};
})
"""


@pytest.fixture(scope="module")
def served(served_app) -> str:  # noqa: F811 (the fixture imported above)
    """The address of the app serving the browser tests' small sample (one server for this
    module, started as tests/test_browser.py starts its own)."""
    return served_app[0]


def settle(page: Any) -> None:
    """Until the run has finished and every chart has drawn its SVG."""
    wait_for_run(page)
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('[data-testid="stVegaLiteChart"]'))
                 .every(c => c.querySelector('svg.marks'))""", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_timeout(500)  # a chart resizes to its container once after drawing


def chart_problems(page: Any, where: str) -> list[str]:
    """What is wrong with the charts on the page, one line each."""
    charts = page.get_by_test_id("stVegaLiteChart")
    measured = charts.evaluate_all(MEASURE_JS)
    problems: list[str] = []
    for number, chart in enumerate(measured, start=1):
        name = f"{where}, chart {number}"
        if not chart["rendered"]:
            problems.append(f"{name}: not drawn")
            continue
        main = [t for t in chart["titles"] if not t["subtitle"]]
        if main:
            name = f"{where}, {main[0]['text']!r}"
        else:
            problems.append(f"{name}: no title")
        for title in chart["titles"]:
            if title["ellipsis"]:
                problems.append(f"{name}: title cut short: {title['text']!r}")
            if title["overflow"]:
                problems.append(f"{name}: title wider than the chart: {title['text']!r}")
        if not chart["marks"]:
            problems.append(f"{name}: drawn without data")
        if not chart["plots"]:
            problems.append(f"{name}: no plot")
        for height in chart["plots"]:
            if height < MIN_PLOT_PX:
                problems.append(f"{name}: plot {height} px high (< {MIN_PLOT_PX})")
    return problems


def console_problems(messages: list[tuple[str, str]], failed: list[tuple[int, str]],
                     where: str) -> list[str]:
    """The console's warnings and errors and the failed requests, but for the browser's own
    notes above. (Every Vega warning counts: the cards' week-by-week lines are SVG images,
    because st.metric's own sparkline makes Vega warn "Infinite extent" on each draw.)"""
    return [f"{where}: console {kind}: {text}" for kind, text in messages
            if kind in ("warning", "error") and not text.startswith(FAILED_REQUEST)
            and not (kind == "warning" and GL_NOTE.match(text))] + [
        f"{where}: request failed ({status}): {address}" for status, address in failed
        if not (status == 404 and EXPECTED_404.search(address))]


def test_every_chart_fits(served, tmp_path_factory):
    from playwright import sync_api

    url = served
    shots: Path = tmp_path_factory.mktemp("chart_screenshots")
    print(f"chart screenshots: {shots}")
    problems: list[str] = []
    checked: dict[str, int] = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            messages: list[tuple[str, str]] = []
            failed: list[tuple[int, str]] = []
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("response", lambda r: r.status >= 400 and failed.append((r.status, r.url)))
            # a request that got no answer at all (the page must not reach outside the app)
            # (a blob: address is the page's own memory, never the network)
            page.on("requestfailed", lambda r: r.url.startswith("blob:")
                    or failed.append((0, r.url)))
            page.goto(url)
            wait_for_run(page)
            links = page.get_by_test_id("stSidebarNavLink")
            links.first.wait_for(timeout=PAGE_TIMEOUT_MS)
            nav = {links.nth(i).inner_text().strip().splitlines()[-1].strip():
                   links.nth(i).get_attribute("href") for i in range(links.count())}
            visits = [(title, href, False) for title, href in nav.items()]
            whatif = next(href for title, href in nav.items() if title.startswith("What-if"))
            visits.append(("What-if simulation (after a run)", whatif, True))
            for number, (title, href, run) in enumerate(visits, start=1):
                messages.clear()
                failed.clear()
                page.goto(href if href.startswith("http") else f"{url}/{href.lstrip('/')}")
                wait_for_run(page)
                page.get_by_test_id("stMain").get_by_text(
                    title.removesuffix(" (after a run)"), exact=True).first.wait_for(
                    timeout=PAGE_TIMEOUT_MS)
                if run:
                    page.get_by_role("button", name="Run the simulation").click()
                    page.get_by_text("Arrivals per hour", exact=False).first.wait_for(
                        timeout=PAGE_TIMEOUT_MS * 2)
                settle(page)
                assert page.get_by_test_id("stException").count() == 0, title
                problems += chart_problems(page, title)
                problems += console_problems(messages, failed, title)
                checked[title] = page.get_by_test_id("stVegaLiteChart").count()
                slug = "".join(c if c.isalnum() else "-" for c in title.lower())
                # the app scrolls inside its main block, not the document: the window is made
                # as tall as the page for the picture
                tall = page.get_by_test_id("stMain").evaluate("e => e.scrollHeight")
                page.set_viewport_size({"width": VIEWPORT["width"],
                                        "height": max(VIEWPORT["height"], min(tall, 12_000))})
                page.wait_for_timeout(300)
                page.screenshot(path=str(shots / f"{number:02d}_{slug}.png"), full_page=True)
                page.set_viewport_size(VIEWPORT)
        finally:
            browser.close()
    print(f"charts checked per page: {checked}")
    assert checked["What-if simulation (after a run)"] >= 5, checked
    assert sum(checked.values()) >= 25, checked
    assert not problems, "\n".join(problems)

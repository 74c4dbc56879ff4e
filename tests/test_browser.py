"""End to end: `streamlit run app.py` served for real and opened in Debian's chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric
from simulations import generator
from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
DEFAULT_DAYS = 90
# Every page the navigation must offer, and whether it draws at least one chart on the sample.
KNOWN_PAGES: dict[str, bool] = {
    "Overview": True,
    "Ticket trends": True,
    "Aging & SLA": True,
    "Representatives": True,
    "Customer feedback": True,
    "Seasonality & staffing": True,
    "Outages": True,
    "What-if simulation": False,  # nothing is drawn before a scenario runs
    "Alerts": False,
    "Reports": False,  # charts are PNG images inside the report preview
    "Data quality": True,
}
PAGE_TIMEOUT_MS = 30_000

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    pytest.fail(f"streamlit did not become healthy within {seconds} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    """A small warehouse and the app serving it on a free port, shared by this module's
    tests; yields (url, Tickets value)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package)")
    pytest.importorskip("playwright.sync_api",
                        reason="the playwright Python package is not installed")
    tmp_path = tmp_path_factory.mktemp("served")
    generator.generate(tmp_path / "sample", tickets=4000, days=90, seed=5,
                       end=datetime(2025, 3, 1))
    db = tmp_path / "wh.duckdb"
    cs_metrics.ingest(tmp_path / "sample", db=db)
    # Computed and closed before the server starts: DuckDB lets one process write a file.
    wh = Warehouse(db)
    end = wh.as_of().date() + timedelta(days=1)
    filters = Filters(end - timedelta(days=DEFAULT_DAYS), end)
    count = cs_metrics.query(wh, ["ticket_count"], filters=filters)["ticket_count"].iloc[0]
    wh.close()

    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "CS_METRICS_DB": str(db), "CS_METRICS_BASEMAP": "off"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, f"{url}/_stcore/health", log)
        yield url, get_metric("ticket_count").display(count)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_shared_link_opened_first_shows_the_apps_navigation(served_app):
    """The first visitor of a fresh server opening a deep link gets the app's pages in the
    sidebar (a folder named pages/ would make Streamlit list its files instead)."""
    from playwright import sync_api

    url, _ = served_app
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"{url}/trends?range=last-30-days")
            wait_for_run(page)
            links = page.get_by_test_id("stSidebarNavLink")
            links.first.wait_for(timeout=PAGE_TIMEOUT_MS)
            titles = {links.nth(i).inner_text().strip().splitlines()[-1].strip()
                      for i in range(links.count())}
            assert set(KNOWN_PAGES) <= titles, titles
        finally:
            browser.close()


def test_overview_in_chromium(served_app, tmp_path):
    from playwright import sync_api

    url, want = served_app
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(url)
            card = page.get_by_test_id("stMetric").filter(
                has=page.get_by_test_id("stMetricLabel").get_by_text("Tickets", exact=True)
            )
            value = card.get_by_test_id("stMetricValue")
            value.wait_for(timeout=30_000)
            assert value.inner_text().strip() == want
            assert page.get_by_text("Data as of 2025-02-28").first.is_visible()
            page.get_by_test_id("stVegaLiteChart").first.wait_for(timeout=30_000)
            assert page.get_by_test_id("stException").count() == 0
            page.screenshot(path=str(tmp_path / "overview.png"))

            # The trends page, opened from a shared link with a filter in it.
            page.goto(f"{url}/trends?range=last-30-days&channel=chat")
            page.get_by_text("Ticket trends", exact=True).first.wait_for(timeout=30_000)
            page.get_by_test_id("stVegaLiteChart").nth(5).wait_for(timeout=30_000)
            assert page.get_by_test_id("stVegaLiteChart").count() >= 6
            assert page.get_by_test_id("stException").count() == 0
            sidebar = page.get_by_test_id("stSidebar")
            assert sidebar.get_by_text("chat", exact=True).first.is_visible()
            assert sidebar.get_by_text("30 days", exact=False).first.is_visible()
            assert "channel=chat" in page.url
            page.screenshot(path=str(tmp_path / "trends.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "overview.png").stat().st_size > 10_000
    assert (tmp_path / "trends.png").stat().st_size > 10_000


def wait_for_run(page) -> None:
    """Until the page's script has finished (Streamlit marks the app root with its state)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=PAGE_TIMEOUT_MS)


def test_every_page_in_chromium(served_app, tmp_path_factory):
    from playwright import sync_api

    url, _ = served_app
    shots = tmp_path_factory.mktemp("page_screenshots")
    print(f"page screenshots: {shots}")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url)
            wait_for_run(page)
            links = page.get_by_test_id("stSidebarNavLink")
            links.first.wait_for(timeout=PAGE_TIMEOUT_MS)
            # a link reads "<icon name>\n<title>": the title is its last line
            nav = {links.nth(i).inner_text().strip().splitlines()[-1].strip():
                   links.nth(i).get_attribute("href") for i in range(links.count())}
            assert set(KNOWN_PAGES) <= set(nav), nav
            for number, (title, href) in enumerate(nav.items(), start=1):
                page.goto(href if href.startswith("http") else f"{url}/{href.lstrip('/')}")
                wait_for_run(page)
                page.get_by_test_id("stMain").get_by_text(title, exact=True).first.wait_for(
                    timeout=PAGE_TIMEOUT_MS)
                charts = page.locator('[data-testid="stVegaLiteChart"], canvas')
                if KNOWN_PAGES.get(title):
                    charts.first.wait_for(timeout=PAGE_TIMEOUT_MS)
                    assert charts.count() >= 1, title
                assert page.get_by_test_id("stException").count() == 0, title
                if title == "Outages":  # deck.gl draws the map's layers on a canvas
                    page.get_by_test_id("stDeckGlJsonChart").locator("canvas").first.wait_for(
                        timeout=PAGE_TIMEOUT_MS)
                slug = "".join(c if c.isalnum() else "-" for c in title.lower())
                shot = shots / f"{number:02d}_{slug}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000, title
        finally:
            browser.close()
    assert len(list(shots.glob("*.png"))) == len(nav) >= len(KNOWN_PAGES)


def test_clicking_a_bar_lists_its_tickets(served_app, tmp_path):
    """A click on the biggest bar of "Tickets by channel" lists that channel's tickets."""
    from playwright import sync_api

    url, _ = served_app
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(f"{url}/trends")
            wait_for_run(page)
            chart = page.get_by_test_id("stVegaLiteChart").filter(
                has_text="Tickets by channel").first
            if chart.count() == 0:  # canvas charts carry their title in the aria label
                chart = page.locator('[data-testid="stVegaLiteChart"]:has([aria-label*='
                                     '"Tickets by channel"])').first
            chart.wait_for(timeout=PAGE_TIMEOUT_MS)
            main = page.get_by_test_id("stMain")
            clicked = False
            # the bars sit under the title; the first (largest) one spans the plot's width
            for dy in range(30, 140, 6):
                # where the chart is now: the charts above it draw (and a click's rerun can
                # move the page) after it was first found
                chart.scroll_into_view_if_needed()
                box = chart.bounding_box()
                page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + dy)
                wait_for_run(page)
                try:  # the click's rerun may start after the wait above has returned
                    main.get_by_text("Channel: ", exact=False).first.wait_for(timeout=3000)
                except sync_api.TimeoutError:
                    continue
                clicked = True
                break
            page.screenshot(path=str(tmp_path / "drill.png"), full_page=True)
            assert clicked, "no click on the chart listed tickets"
            assert main.get_by_text("newest first", exact=False).first.is_visible()
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()


def test_a_download_is_made_when_clicked(served_app, tmp_path):
    """The chart and table files are made on click (a deferred download): the browser gets
    the file, with the figures the page shows."""
    import pandas as pd
    from playwright import sync_api

    url, want = served_app
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000},
                                    accept_downloads=True)
            page.goto(url)
            wait_for_run(page)
            page.get_by_text("Download the KPI figures", exact=True).click()
            button = page.get_by_test_id("stDownloadButton").filter(
                has_text="Download CSV").first
            button.wait_for(timeout=PAGE_TIMEOUT_MS)
            with page.expect_download(timeout=PAGE_TIMEOUT_MS) as info:
                button.click()
            download = info.value
            name = download.suggested_filename
            assert name.startswith("overview_kpis_") and name.endswith(".csv"), name
            saved = tmp_path / name
            download.save_as(saved)
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()
    kpis = pd.read_csv(saved).set_index("metric")
    assert get_metric("ticket_count").display(kpis.at["ticket_count", "value"]) == want


# A 1x1 transparent PNG: what the pixel server answers, so a fetch would succeed.
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478"
    "da63f8ffff3f0005fe02fea7d6a4b00000000049454e44ae426082")


def test_a_crafted_link_shows_its_text_and_fetches_nothing(served_app):
    """The issue's link: a phishing link and an image in URL parameters. The sidebar's note
    shows them as typed; there is no link to the phishing site in the page and no image from
    the pixel server, which is asked for nothing."""
    from playwright import sync_api

    url, _ = served_app
    fetched: list[str] = []

    class Pixel(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(PIXEL_PNG)

        def log_message(self, *args) -> None:  # quiet
            pass

    pixel = ThreadingHTTPServer(("127.0.0.1", 0), Pixel)
    threading.Thread(target=pixel.serve_forever, daemon=True).start()
    image = f"http://127.0.0.1:{pixel.server_address[1]}/pixel.png"
    phish = "[Session expired - sign in again](http://evil.example)"
    planted = f"![x]({image})"
    link = urlencode({"range": "last-30-days", "team": phish, "location": planted})
    try:
        # the image must be fetchable, or its absence below would prove nothing
        with urllib.request.urlopen(image, timeout=5) as resp:
            assert resp.read() == PIXEL_PNG
        fetched.clear()
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                requested: list[str] = []
                page.on("request", lambda r: requested.append(r.url))
                page.goto(f"{url}/trends?{link}")
                wait_for_run(page)
                note = page.get_by_test_id("stSidebar").get_by_text("Ignored in the link",
                                                                     exact=False).first
                note.wait_for(timeout=PAGE_TIMEOUT_MS)
                # as typed, but for the invisible word joiner that keeps a URL from being
                # linked (cs_metrics.core.safe_text.escape_markdown)
                text = note.inner_text().replace("\u2060", "")
                assert f"team={phish}" in text, text
                assert f"location={planted}" in text, text
                page.get_by_test_id("stVegaLiteChart").first.wait_for(timeout=PAGE_TIMEOUT_MS)
                anchors = page.locator('a[href*="evil.example"]')
                assert anchors.count() == 0, [anchors.nth(i).evaluate(
                    "a => a.parentElement.parentElement.outerHTML")
                    for i in range(anchors.count())]
                assert page.locator(f'img[src*="{pixel.server_address[1]}"]').count() == 0
                assert "<a href=\"http://evil.example" not in page.content()
                assert page.get_by_test_id("stException").count() == 0
                page.wait_for_timeout(1000)  # time for a late image request to arrive
                pixel_origin = f"http://127.0.0.1:{pixel.server_address[1]}/"
                assert not [r for r in requested
                            if r.startswith(("http://evil.example", pixel_origin))]
            finally:
                browser.close()
    finally:
        pixel.shutdown()
        pixel.server_close()
    assert fetched == []


def test_a_saved_view_is_found_again_in_the_sidebar(served_app):
    """Save the filters of a link under a name, open the page afresh, choose the name: the
    page has the link's filters again, in its address too."""
    from playwright import sync_api

    url, _ = served_app
    name = "Chat, last 30 days (browser)"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{url}/trends?range=last-30-days&channel=chat")
            wait_for_run(page)
            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_text("Save, share or delete a view").click()
            box = sidebar.get_by_placeholder("e.g. Chat, last 30 days")
            box.fill(name)
            box.press("Enter")
            wait_for_run(page)
            sidebar.get_by_role("button", name="Save current view").click()
            sidebar.get_by_text(f"Saved the view {name}.").wait_for(timeout=PAGE_TIMEOUT_MS)

            page.goto(f"{url}/trends")  # a new session, no filters
            wait_for_run(page)
            assert "channel=" not in page.url
            picker = sidebar.get_by_test_id("stSelectbox").filter(has_text="Saved views").first
            picker.scroll_into_view_if_needed()
            picker.locator("input").click()
            page.get_by_role("option").filter(has_text=name).first.click()
            sidebar.get_by_text(f"Showing the saved view {name}.").wait_for(
                timeout=PAGE_TIMEOUT_MS)
            wait_for_run(page)
            assert "range=last-30-days" in page.url and "channel=chat" in page.url
            assert sidebar.get_by_text("chat", exact=True).first.is_visible()
            assert page.get_by_test_id("stException").count() == 0
        finally:
            browser.close()

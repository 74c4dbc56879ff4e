"""The sessions benchmark's own arithmetic and parsing (the benchmark itself needs a served
app and chromium for minutes: bench/bench_sessions.py)."""

from __future__ import annotations

import random
import sys
from datetime import date, timedelta

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import bench_sessions  # noqa: E402


def test_every_page_of_the_navigation_with_its_url_path():
    pages = bench_sessions.app_pages()
    assert pages[0].title == "Overview" and pages[0].path == ""  # the default page lands
    paths = [p.path for p in pages]
    assert len(set(paths)) == len(paths)
    assert {"trends", "feedback", "data_quality"} <= set(paths)
    assert all((REPO / p.file).exists() for p in pages)


def test_percentile_interpolates_between_ranks():
    assert bench_sessions.percentile([3.0], 0.95) == 3.0
    assert bench_sessions.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert abs(bench_sessions.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) - 4.8) < 1e-12


def test_cache_compute_time_per_function_from_streamlits_metrics():
    metrics = {
        'cache_compute_duration_seconds_sum{cache="views._common._query",'
        'cache_type="st_cache_data",trigger="miss"}': 1.5,
        'cache_compute_duration_seconds_count{cache="views._common._query",'
        'cache_type="st_cache_data",trigger="miss"}': 6.0,
        'cache_compute_duration_seconds_bucket{cache="views._common._query",'
        'cache_type="st_cache_data",le="0.5",trigger="miss"}': 6.0,
        'cache_compute_duration_seconds_sum{cache="views._common._open_warehouse",'
        'cache_type="st_cache_resource",trigger="miss"}': 0.2,
    }
    assert bench_sessions.cache_totals(metrics) == {"_query sum": 1.5, "_query count": 6.0}


def test_each_session_has_its_own_range_and_starts_at_another_page():
    pages = bench_sessions.app_pages()
    last = date(2025, 1, 1)
    plans = bench_sessions.make_plans(pages, 3, 6, last, 10.0, 10.0, random.Random(1))
    assert [p.window for p in plans] == [
        (last - timedelta(days=n + 89), last - timedelta(days=n)) for n in (6, 7, 8)]
    assert [p.order[0] for p in plans] == pages[1:4]
    assert all(sorted(p.order, key=pages.index) == pages[1:] for p in plans)
    assert all(5.0 <= t <= 15.0 for p in plans for t in p.thinks)
    again = bench_sessions.make_plans(pages, 3, 30, last, 10.0, 10.0, random.Random(1),
                                      [p.window for p in plans])
    assert [p.window for p in again] == [p.window for p in plans]


def test_hosted_sessions_sign_in_as_the_lead_of_one_team_each(tmp_path):
    from cs_metrics.core.access import resolve_scope
    from cs_metrics.core.settings import load_settings

    hosted = bench_sessions.Hosted("http://localhost:1", ("Billing", "Mobile", 'Team "Q"'))
    path = tmp_path / "settings.toml"
    path.write_text(hosted.settings())
    settings = load_settings(path)
    seen = {}
    for number in range(6):
        email, group = hosted.who(number)
        scope = resolve_scope(email, [group], settings)
        assert scope is not None and scope.role == "team_lead"
        seen[number] = scope.teams
    assert seen == {0: ("Billing",), 1: ("Mobile",), 2: ('Team "Q"',),
                    3: ("Billing",), 4: ("Mobile",), 5: ('Team "Q"',)}
    assert resolve_scope("someone@example.com", ["leads-9"], settings) is None


def test_a_websocket_session_runs_pages_as_the_browser_asks_for_them(sample_db, tmp_path):
    """``--client websocket``: a session spoken to over Streamlit's protocol lands, keeps the
    query string the app writes, opens pages by their script hash, reads each run's time off
    the page profile and fails a visit whose page does not show what was asked for."""
    import asyncio
    import shutil

    db = tmp_path / "wh.duckdb"
    shutil.copyfile(sample_db, db)
    server = bench_sessions.Server(db, tmp_path / "streamlit.log", [])
    try:
        server.wait_healthy()
        pages = {p.path: p for p in bench_sessions.app_pages()}

        async def visits() -> list:
            client = bench_sessions.WsClient(server.url)
            V = bench_sessions.Visit
            out = [await client.visit(V("t", 1, "Overview", True), "Overview", "", "", 60)]
            out.append(set(client.hashes))
            out.append(client.query)
            trends = pages["trends"]
            out.append(await client.visit(V("t", 1, trends.title, False), trends.title,
                                          trends.path, None, 60))
            out.append(client.query)
            out.append(await client.visit(V("t", 1, "Audit log", False), "Audit log",
                                          pages["data_quality"].path, None, 60))
            out.append(bench_sessions.active_sessions(server.url))
            await client.close()
            return out

        landing, hashes, query, trends, query_after, wrong, active = asyncio.run(visits())
        deadline = bench_sessions.time.monotonic() + 20
        while bench_sessions.active_sessions(server.url) and (
                bench_sessions.time.monotonic() < deadline):
            bench_sessions.time.sleep(0.2)
        released = bench_sessions.active_sessions(server.url)
    finally:
        server.stop()
    assert landing.error is None and trends.error is None
    assert 0 < landing.script_s <= landing.server_s and 0 < trends.script_s <= trends.server_s
    assert landing.reruns == trends.reruns == 1
    assert hashes == set(pages)  # every page of the navigation, by its URL path
    assert query == "range=last-90-days"  # the app put its filters in the page's URL
    assert query_after == query  # and the sidebar click carried them to the next page
    assert wrong.error == "the page's heading 'Audit log' was not sent"
    assert active == 1 and released == 0  # one session while connected, none after


def _phase(name, times):
    visits = [bench_sessions.Visit(name, i, title, False, script_s=t, server_s=t)
              for title, ts in times.items() for i, t in enumerate(ts)]
    return bench_sessions.Phase(name, visits, 0.0, 10.0, 1.0, 0.1, 1.5, {}, {})


def test_the_goal_is_each_pages_median_and_the_p95_is_reported(capsys):
    """A page's median within 2x passes though its p95 is over (and is named as such); a
    median over 2x fails the page and the every-page goal."""
    import argparse
    pages = [bench_sessions.AppPage("Light", "l.py", "light"),
             bench_sessions.AppPage("Slow", "s.py", "slow")]
    single = _phase("single", {"Light": [0.02] * 5, "Slow": [0.1] * 5})
    wave = _phase("wave 1", {"Light": [0.03] * 20 + [0.09] * 5,  # median 1.5x, p95 4.5x
                             "Slow": [0.25] * 25})  # median 2.5x
    wave.peak_active, wave.release_s = 25, 0.1
    args = argparse.Namespace(sessions=25, settle=1.0)
    bench_sessions.report(args, pages, single, [wave], 400.0, 410.0)
    out = capsys.readouterr().out
    goals = {line.split(":")[0].strip(): line for line in out.splitlines()
             if "sessions within 2x the single-user time (median)" in line}
    assert goals["Light"].endswith("1.50x (p95 4.50x)  PASS")
    assert goals["Slow"].endswith("2.50x (p95 2.50x)  FAIL")
    assert "every page's median within 2x" in out and "1 pages miss  FAIL" in out
    assert "p95 within 2x the single-user p95 for 0 of 2 pages; over: Light, Slow" in out

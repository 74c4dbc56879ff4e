"""Benchmark: the served app with 25 concurrent browser sessions against one session alone.

    python bench/bench_sessions.py [--tickets 200000] [--sessions 25] [--think 10] [--dir bench/out]

Serves a copy of the bench warehouse for N tickets (``DIR/wh_N.duckdb``, built by
bench_metrics.py or bench_pages.py) with ``streamlit run app.py --server.headless true`` on a
free port and drives it with Playwright in Debian's chromium (``/usr/bin/chromium``): first a
few sessions one after another, then ``--sessions`` at once (one browser, a context each).
With ``--client websocket`` the sessions speak Streamlit's websocket protocol instead and no
browser draws the pages, as when the users' browsers are on their own machines. Every
session lands on the app with its own 90-day range in the link, then opens every other page
of app.py's navigation from the sidebar. Per page: the script run's time as the server
measures it (Streamlit's page profile) alone and under concurrency, and the ratio, beside the
time seen on the websocket; the server's memory during the run and after every session has
disconnected; Streamlit's own session count; st.cache_data compute times from
/_stcore/metrics. See bench/README.md, section "Sessions".
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import logging
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for folder in (ROOT, BENCH):  # run as a script from anywhere: the repo's library and benches
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

DEFAULT_TICKETS = 200_000
GOAL_SESSIONS = 25
# A page's time under concurrency (its median run) within twice the single-user one. The
# p95 is reported beside it, not held to the goal: see bench/README.md, "The goal".
GOAL_RATIO = 2.0
# Memory is "bounded" when the server's size after the sessions have left levels off: the
# last wave adds at most half of what the second added, or this much (allocator noise).
MEMORY_SLACK_MIB = 16.0
CHROMIUM = Path("/usr/bin/chromium")
# As tests/test_browser.py launches it, plus: no throttling of timers or rendering in
# contexts that are not in front (25 contexts, one of them "visible").
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
VIEWPORT = {"width": 1024, "height": 700}
# tests/test_browser.py's wait: Streamlit marks the app root with its script state.
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# An uncaught exception or an st.error on the page: the visit failed.
PROBLEMS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
CLICK_TIMEOUT_MS = 30_000  # the sidebar is missing when the app stopped before its navigation
WINDOW_DAYS = 90  # every session's date range: as long as the default "Last 90 days"
CLIENT_NICE = 19  # chromium's renderers yield the CPU to the server (see the README)
SETPRIV = Path("/usr/bin/setpriv")
SAMPLE_S = 0.25  # RSS sampling period
HEALTH_TIMEOUT_S = 90
RELEASE_TIMEOUT_S = 60


# --- the app's pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppPage:
    title: str
    file: str
    path: str  # URL path: st.Page's url_path, else the file's stem; "" for the default page


def app_pages(app: Path = ROOT / "app.py") -> list[AppPage]:
    """Every st.Page of app.py's navigation, in order, with its URL path."""
    tree = ast.parse(app.read_text(encoding="utf-8"))
    pages: list[AppPage] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "Page" and node.args
                and isinstance(node.args[0], ast.Constant)):
            continue
        file = str(node.args[0].value)
        kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
        path = "" if kw.get("default") else str(kw.get("url_path") or Path(file).stem)
        pages.append(AppPage(str(kw.get("title") or Path(file).stem), file, path))
    pages.sort(key=lambda p: (p.path != "",))  # stable: the default page first
    return pages


# --- the server process: start, memory, CPU, Streamlit's own metrics -------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of a process, from /proc/PID/status."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd on (after "comm")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(root: int, skip: int) -> list[int]:
    """Every live process under ``root`` (itself included), except ``skip`` and its children."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                parent[int(entry.name)] = int(fields[1])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid == skip:
            continue
        found.append(pid)
        todo += [child for child, ppid in parent.items() if ppid == pid]
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core, every user), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def read_metrics(url: str, families: tuple[str, ...] = ()) -> dict[str, float]:
    """Streamlit's /_stcore/metrics (OpenMetrics text) as {"name{labels}": value}."""
    query = "&".join(f"families={f}" for f in families)
    with urllib.request.urlopen(f"{url}/_stcore/metrics{'?' + query if query else ''}",
                                timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def active_sessions(url: str) -> int | None:
    try:
        return int(read_metrics(url, ("active_sessions",)).get("active_sessions", 0))
    except (OSError, ValueError):
        return None


class Server:
    """``streamlit run app.py`` on a free port, serving ``db``."""

    def __init__(self, db: Path, log: Path, options: list[str], port: int | None = None,
                 host: str = "127.0.0.1", env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self.log = log
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CS_METRICS_INBOX")},
               **(env or {})}
        env.update(CS_METRICS_DB=str(db), CS_METRICS_BASEMAP="off")  # no tile fetches offline
        cmd = [sys.executable, "-m", "streamlit", "run", "app.py",
               "--server.headless", "true", "--server.port", str(self.port),
               "--server.fileWatcherType", "none",
               # the page profile Streamlit sends after each run carries the run's time,
               # measured in the server (the browser is not told it otherwise)
               "--browser.gatherUsageStats", "true"]
        for option in options:  # KEY=VALUE -> --KEY VALUE
            key, _, value = option.partition("=")
            cmd += [f"--{key.removeprefix('--')}", value]
        self.cmd = cmd
        with log.open("w") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"streamlit exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise SystemExit(f"streamlit was not healthy within {HEALTH_TIMEOUT_S} s:\n"
                         f"{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Sampler(threading.Thread):
    """Samples the server's RSS every SAMPLE_S and Streamlit's active sessions every second."""

    def __init__(self, server: Server, nice_browser: bool = False,
                 whole_browser: bool = True) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.server = server
        self.nice_browser = nice_browser
        self.whole_browser = whole_browser
        self.rss: list[tuple[float, float, int]] = []  # (time, MiB, threads)
        self.active: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last_metrics = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            status = proc_status(self.server.pid)
            if "VmRSS" in status:
                self.rss.append((now, status["VmRSS"] / 1024, status.get("Threads", 0)))
            if now - last_metrics >= 1.0:
                last_metrics = now
                count = active_sessions(self.server.url)
                if count is not None:
                    self.active.append((now, count))
            if self.nice_browser:
                nice_renderers(self.server, self.whole_browser)
            self.stop.wait(SAMPLE_S)

    def peak(self, start: float, end: float) -> tuple[float, int]:
        inside = [(mib, threads) for t, mib, threads in self.rss if start <= t <= end]
        if not inside:
            return 0.0, 0
        return max(m for m, _ in inside), max(th for _, th in inside)

    def peak_active(self, start: float, end: float) -> int:
        return max((n for t, n in self.active if start <= t <= end), default=0)


def rss_mib(pid: int) -> float:
    return proc_status(pid).get("VmRSS", 0) / 1024


# --- a browser session -------------------------------------------------------------------------


@dataclass
class Visit:
    phase: str
    session: int
    page: str
    landing: bool
    script_s: float | None = None  # the run's time in the server (its page profile)
    server_s: float | None = None  # rerun request sent -> script finished received
    wait_s: float | None = None  # rerun request sent -> the run's first message (new_session)
    browser_s: float | None = None  # click (or goto) -> heading shown and the script idle
    reruns: int = 0  # full runs finished for this visit (1 normally)
    error: str | None = None


class Probe:
    """Reads a page's websocket: when a full rerun was requested (BackMsg rerun_script without
    a fragment) and when runs started (ForwardMsg new_session) and finished (script_finished)."""

    def __init__(self) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._back, self._fwd = BackMsg, ForwardMsg
        self._ok = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_SUCCESSFULLY")
        self.events: list[tuple[str, float, float]] = []

    def attach(self, ws: Any) -> None:
        ws.on("framesent", self._sent)
        ws.on("framereceived", self._received)

    def _sent(self, payload: Any) -> None:
        now = time.perf_counter()
        if isinstance(payload, (bytes, bytearray)):
            msg = self._back.FromString(bytes(payload))
            if msg.WhichOneof("type") == "rerun_script" and not msg.rerun_script.fragment_id:
                self.events.append(("request", now, 0.0))

    def _received(self, payload: Any) -> None:
        now = time.perf_counter()
        if not isinstance(payload, (bytes, bytearray)):
            return
        msg = self._fwd.FromString(bytes(payload))
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.events.append(("start", now, 0.0))
        elif kind == "page_profile" and not msg.page_profile.is_fragment_run:
            self.events.append(("profile", now, msg.page_profile.exec_time / 1e6))
        elif kind == "script_finished" and msg.script_finished == self._ok:
            self.events.append(("finished", now, 0.0))

    async def timing(self, mark: int, timeout_s: float = 10.0
                     ) -> tuple[float | None, float, float, int] | None:
        """(script s, server s, wait s, finished runs) of the first full run requested after
        event ``mark``; waits a little for the finish frame, which can trail the DOM's idle
        mark."""
        deadline = time.perf_counter() + timeout_s
        while True:
            events = self.events[mark:]
            req = next((i for i, (kind, _, _) in enumerate(events) if kind == "request"), None)
            if req is not None:
                after = events[req + 1:]
                done = [t for kind, t, _ in after if kind == "finished"]
                if done:
                    start = next((t for kind, t, _ in after if kind == "start"), done[0])
                    script = next((v for kind, _, v in after if kind == "profile"), None)
                    sent = events[req][1]
                    return script, done[0] - sent, start - sent, len(done)
            if time.perf_counter() > deadline:
                return None
            await asyncio.sleep(0.05)


async def open_visit(page: Any, probe: Probe, visit: Visit, title: str, url: str | None,
                     link: str | None, timeout_ms: int) -> Visit:
    """Open ``url`` (landing) or click the sidebar link ``link``; wait until the page's heading
    shows and the script is idle; read the server's timing off the websocket."""
    mark = len(probe.events)
    started = time.perf_counter()
    try:
        if url is not None:
            await page.goto(url, timeout=timeout_ms)
        else:
            # no_wait_after: the link navigates inside the app (history.pushState); under
            # load Playwright could wait its whole timeout for a navigation it "scheduled"
            # after the page had already changed
            await page.locator(link).click(timeout=min(timeout_ms, CLICK_TIMEOUT_MS),
                                           no_wait_after=True)
        heading = page.get_by_test_id("stMain").get_by_role("heading", name=title, exact=True)
        await heading.or_(page.locator(PROBLEMS)).first.wait_for(timeout=timeout_ms)
        await page.locator(IDLE).wait_for(timeout=timeout_ms)
        visit.browser_s = time.perf_counter() - started
        timing = await probe.timing(mark)
        if timing is None:
            visit.error = "no script-finished message seen on the websocket"
        else:
            visit.script_s, visit.server_s, visit.wait_s, visit.reruns = timing
        problems = page.locator(PROBLEMS)
        if await problems.count():
            text = (await problems.first.inner_text()).strip().splitlines()
            visit.error = f"shown on the page: {' '.join(text)[:300]}"
    except Exception as exc:  # noqa: BLE001 (a timeout or a crash is a failed visit)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # Playwright's call log says what it was waiting for (the link missing, not
        # visible, not stable, covered by another element...)
        visit.error = f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
        if len(lines) > 1:
            visit.error += f" [last: {lines[-1][:200]}]"
        visit.error += await page_state(page)
    return visit


PAGE_STATE_JS = """() => {
    const one = (id) => document.querySelector(`[data-testid="${id}"]`);
    const all = (id) => document.querySelectorAll(`[data-testid="${id}"]`).length;
    return {path: location.pathname,
            state: one("stApp")?.getAttribute("data-test-script-state") ?? null,
            links: all("stSidebarNavLink"), sidebar: !!one("stSidebar"),
            status: one("stStatusWidget")?.innerText ?? null,
            dialog: document.querySelector('[role="dialog"]')?.innerText?.slice(0, 120) ?? null,
            skeleton: all("stSkeleton")};
}"""


async def page_state(page: Any) -> str:
    """What the page showed when a visit failed: its path, Streamlit's script state, how many
    sidebar links it had and whether the connection-lost dialog or a skeleton was up."""
    try:
        return " " + str(await page.evaluate(PAGE_STATE_JS))
    except Exception as exc:  # noqa: BLE001 (the page may be gone)
        return f" (page state unreadable: {type(exc).__name__})"


# --- hosted mode: every session signs in as a team lead -------------------------------------


@dataclass(frozen=True)
class Hosted:
    """Sign-in through a local OpenID Connect provider (tests/oidc_harness.py): session
    ``number`` signs in as sessionNUMBER@example.com in group leads-K, the team lead of
    team K (of ``teams``, in turn), as the settings file written for the server says."""

    issuer: str
    teams: tuple[str, ...]
    # A wave's sessions signed in ahead of it (--client websocket): number -> cookies.
    signed_in: dict[int, dict[str, str]] = field(default_factory=dict, compare=False,
                                                 hash=False)

    def who(self, number: int) -> tuple[str, str]:
        return f"session{number}@example.com", f"leads-{number % len(self.teams)}"

    def settings(self) -> str:
        lines = ["[access]", "admins = []", "[access.team_leads]"]
        lines += [f'"group:leads-{k}" = [{json.dumps(team)}]'
                  for k, team in enumerate(self.teams)]
        return "\n".join(lines) + "\n"

    async def sign_in(self, page: Any, base_url: str, number: int, timeout_ms: int) -> None:
        """As tests/oidc_harness.sign_in, with Playwright's async API (untimed)."""
        from tests.oidc_harness import put_claims

        email, group = self.who(number)
        await page.goto(base_url, timeout=timeout_ms)
        await page.get_by_role("button", name="Sign in", exact=True).click(timeout=timeout_ms)
        await page.wait_for_url("**/oauth2/authorize?**", timeout=timeout_ms)
        await asyncio.to_thread(put_claims, self.issuer, email,
                                {"email": email, "email_verified": True,
                                 "groups": [group], "name": email})
        await page.get_by_placeholder("sub").fill(email)
        await page.get_by_role("button", name="Authorize").click(timeout=timeout_ms)
        await page.wait_for_url(
            lambda url: url.startswith(base_url) and "oauth2callback" not in url,
            timeout=timeout_ms)
        await page.locator(IDLE).wait_for(timeout=timeout_ms)

    async def cookies(self, browser: Any, base_url: str, number: int,
                      timeout_ms: int) -> dict[str, str]:
        """Session ``number``'s cookies, signed in through chromium in a context of its own,
        closed once they are taken."""
        context = await browser.new_context(viewport=VIEWPORT)
        try:
            page = await context.new_page()
            await self.sign_in(page, base_url, number, timeout_ms)
            return {c["name"]: c["value"] for c in await context.cookies(base_url)}
        finally:
            await context.close()


@dataclass
class SessionPlan:
    number: int
    window: tuple[date, date]  # inclusive days of its custom range
    order: list[AppPage]  # the pages it opens from the sidebar, after landing
    delay_s: float = 0.0  # before landing
    thinks: list[float] = field(default_factory=list)  # before each sidebar click


async def run_session(browser: Any, server_url: str, pages: list[AppPage], plan: SessionPlan,
                      phase: str, timeout_ms: int,
                      hold: asyncio.Event | None = None,
                      hosted: Hosted | None = None) -> tuple[list[Visit], Any]:
    """One user: land on the default page with their own range in the link, then open the
    other pages from the sidebar. Returns the visits and the still open context (the caller
    closes it, so the CPU of the browser's processes can be counted first)."""
    await asyncio.sleep(plan.delay_s)
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    probe = Probe()
    page.on("websocket", probe.attach)
    if hosted is not None:
        await hosted.sign_in(page, server_url, plan.number, timeout_ms)
    home = pages[0]
    start, end = plan.window
    url = (f"{server_url}/{home.path}?range=custom&from={start.isoformat()}"
           f"&to={end.isoformat()}")
    visits = [await open_visit(page, probe, Visit(phase, plan.number, home.title, True),
                               home.title, url, None, timeout_ms)]
    if visits[0].error:  # the landing failed: as a user would, open the link again
        try:
            await page.goto(url, timeout=timeout_ms)
            await page.locator(IDLE).wait_for(timeout=timeout_ms)
        except Exception:  # noqa: BLE001 (the next visit fails and says why)
            pass
    for target, think in zip(plan.order, plan.thinks, strict=True):
        await asyncio.sleep(think)
        link = f'[data-testid="stSidebarNavLink"][href$="/{target.path}"]'
        visit = await open_visit(page, probe, Visit(phase, plan.number, target.title, False),
                                 target.title, None, link, timeout_ms)
        visits.append(visit)
        if visit.error:  # as a user would: reload (a new Streamlit session, same link)
            try:
                await page.reload(timeout=timeout_ms)
                await page.locator(IDLE).wait_for(timeout=timeout_ms)
            except Exception:  # noqa: BLE001 (the next visit fails and says why)
                pass
    if hold is not None:
        await hold.wait()
    return visits, context


class WsClient:
    """One session spoken to over Streamlit's websocket protocol, as the browser's frontend
    does, without drawing anything: a rerun request (BackMsg ``rerun_script`` with the query
    string and the page's script hash) and the ForwardMsgs back until the run's
    ``script_finished``. The pages' hashes come from the server's ``navigation`` message,
    the query string from its ``page_info_changed`` (the app keeps the filters there). No
    widget states are sent: each page runs with the values its widgets keep in the session,
    as after a sidebar click. ``cookies`` (hosted mode) carry the sign-in and the XSRF
    token."""

    def __init__(self, server_url: str, cookies: dict[str, str] | None = None) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._back, self._fwd = BackMsg, ForwardMsg
        self._ok = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_SUCCESSFULLY")
        self.server_url = server_url
        self.cookies = cookies or {}
        self.hashes: dict[str, str] = {}  # URL path -> page script hash
        self.query = ""
        self.ws: Any = None

    async def connect(self, timeout_s: float) -> None:
        import websockets

        xsrf = self.cookies.get("_streamlit_xsrf")
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        self.ws = await websockets.connect(
            self.server_url.replace("http://", "ws://", 1) + "/_stcore/stream",
            subprotocols=["streamlit", xsrf] if xsrf else ["streamlit"],
            origin=self.server_url, additional_headers=headers if self.cookies else None,
            max_size=None, compression=None, open_timeout=timeout_s)

    async def visit(self, visit: Visit, title: str, path: str | None, query: str | None,
                    timeout_s: float) -> Visit:
        """Ask for a full run of the page at ``path`` ("" for the landing, with ``query``)
        and read the messages back until it finishes; the page's heading must be among
        them, and no exception or error box."""
        try:
            if self.ws is None:
                await self.connect(timeout_s)
            if query is not None:  # a link opened: its query string is the page's URL's
                self.query = query
            msg = self._back()
            msg.rerun_script.query_string = self.query
            if path:
                msg.rerun_script.page_script_hash = self.hashes[path]
            sent = time.perf_counter()
            await self.ws.send(msg.SerializeToString())
            await asyncio.wait_for(self._read_run(visit, title, sent), timeout_s)
        except Exception as exc:  # noqa: BLE001 (a timeout or a dropped socket fails the visit)
            visit.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return visit

    async def _read_run(self, visit: Visit, title: str, sent: float) -> None:
        started: float | None = None
        seen_title = False
        while True:
            fwd = self._fwd.FromString(await self.ws.recv())
            kind = fwd.WhichOneof("type")
            if kind == "new_session" and started is None:
                started = time.perf_counter()
            elif kind == "navigation":
                self.hashes = {p.url_pathname: p.page_script_hash
                               for p in fwd.navigation.app_pages}
            elif kind == "page_info_changed":
                self.query = fwd.page_info_changed.query_string
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                what = element.WhichOneof("type")
                if what == "heading" and element.heading.body == title:
                    seen_title = True
                elif what == "exception" and visit.error is None:
                    visit.error = (f"shown on the page: {element.exception.type}: "
                                   f"{element.exception.message[:250]}")
                elif (what == "alert" and element.alert.format == element.alert.ERROR
                      and visit.error is None):
                    visit.error = f"shown on the page: {element.alert.body[:300]}"
            elif kind == "page_profile" and not fwd.page_profile.is_fragment_run:
                visit.script_s = fwd.page_profile.exec_time / 1e6
            elif kind == "script_finished":
                if fwd.script_finished != self._ok:
                    status = self._fwd.ScriptFinishedStatus.Name(fwd.script_finished)
                    visit.error = visit.error or f"the run ended {status}"
                    return
                visit.server_s = time.perf_counter() - sent
                visit.wait_s = (started or time.perf_counter()) - sent
                visit.reruns = 1
                if not seen_title and visit.error is None:
                    visit.error = f"the page's heading {title!r} was not sent"
                return

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def run_ws_session(browser: Any, server_url: str, pages: list[AppPage],
                         plan: SessionPlan, phase: str, timeout_ms: int,
                         hold: asyncio.Event | None = None,
                         hosted: Hosted | None = None) -> tuple[list[Visit], Any]:
    """run_session over the websocket protocol (``--client websocket``): the same plan, the
    same landing link and sidebar order, with no browser drawing the pages. In hosted mode
    the sign-in still goes through chromium (untimed), whose context is closed once its
    cookies are taken; a wave's sessions are signed in before it starts (``signed_in``)."""
    await asyncio.sleep(plan.delay_s)
    cookies: dict[str, str] = {}
    if hosted is not None:
        cookies = (hosted.signed_in.pop(plan.number, None)
                   or await hosted.cookies(browser, server_url, plan.number, timeout_ms))
    client = WsClient(server_url, cookies)
    timeout_s = timeout_ms / 1000
    home = pages[0]
    start, end = plan.window
    query = f"range=custom&from={start.isoformat()}&to={end.isoformat()}"
    visits = [await client.visit(Visit(phase, plan.number, home.title, True), home.title,
                                 home.path, query, timeout_s)]
    for target, think in zip(plan.order, plan.thinks, strict=True):
        await asyncio.sleep(think)
        if client.ws is None or target.path not in client.hashes:  # the landing failed
            await client.close()
            client = WsClient(server_url, cookies)  # as a user would: open the link again
            await client.visit(Visit(phase, plan.number, home.title, True), home.title,
                               home.path, query, timeout_s)
        visits.append(await client.visit(Visit(phase, plan.number, target.title, False),
                                         target.title, target.path, None, timeout_s))
    if hold is not None:
        await hold.wait()
    return visits, client


# --- the run -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (as numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Phase:
    name: str
    visits: list[Visit]
    start: float
    end: float
    server_cpu_s: float
    client_cpu_s: float
    machine_cpu_s: float
    cache_before: dict[str, float]
    cache_after: dict[str, float]
    peak_rss_mib: float = 0.0
    peak_threads: int = 0
    peak_active: int = 0
    release_s: float | None = None
    rss_closed_mib: float = 0.0
    rss_released_mib: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start


def make_plans(pages: list[AppPage], count: int, first_number: int, last_day: date,
               think_s: float, stagger_s: float, rng: random.Random,
               windows: list[tuple[date, date]] | None = None) -> list[SessionPlan]:
    """``count`` sessions: each its own 90-day range (ending ``number`` days before the data's
    last day, unless ``windows`` are given), the non-default pages in a rotated order."""
    others = pages[1:]
    plans = []
    for i in range(count):
        number = first_number + i
        if windows is not None:
            window = windows[i]
        else:
            end = last_day - timedelta(days=number)
            window = (end - timedelta(days=WINDOW_DAYS - 1), end)
        shift = i % len(others) if others else 0
        order = others[shift:] + others[:shift]
        thinks = [think_s * rng.uniform(0.5, 1.5) for _ in order]
        delay = rng.uniform(0, stagger_s) if stagger_s > 0 else 0.0
        plans.append(SessionPlan(number, window, order, delay, thinks))
    return plans


CACHE_FAMILIES = ("cache_compute_duration_seconds",)


def cache_totals(metrics: dict[str, float]) -> dict[str, float]:
    """{"<function> sum"|"<function> count": value} of st.cache_data compute time (misses)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not key.startswith("cache_compute_duration_seconds_") or "st_cache_data" not in key:
            continue
        kind = "sum" if key.startswith("cache_compute_duration_seconds_sum") else (
            "count" if key.startswith("cache_compute_duration_seconds_count") else None)
        if kind is None:
            continue
        name = key.split('cache="', 1)[1].split('"', 1)[0].rsplit(".", 1)[-1]
        out[f"{name} {kind}"] = out.get(f"{name} {kind}", 0.0) + value
    return out


def safe_cache_totals(url: str) -> dict[str, float]:
    try:
        return cache_totals(read_metrics(url, CACHE_FAMILIES))
    except (OSError, ValueError):
        return {}


def client_cpu(server: Server) -> float:
    return sum(cpu_seconds(pid) for pid in descendants(os.getpid(), skip=server.pid))


async def run_phase(name: str, browser: Any, server: Server, sampler: Sampler,
                    pages: list[AppPage], plans: list[SessionPlan], concurrent: bool,
                    timeout_ms: int, settle_s: float, resident: int = 0,
                    hosted: Hosted | None = None, session: Any = run_session) -> Phase:
    """Run the sessions (all at once, or one after another), then close them all and wait
    until Streamlit counts no active session but the ``resident`` ones (kept open outside
    the phase); the server's RSS before and after that."""
    cache_before = safe_cache_totals(server.url)
    server_cpu0, machine0 = cpu_seconds(server.pid), machine_busy_seconds()
    client_s = 0.0
    start = time.monotonic()
    contexts: list[Any] = []
    visits: list[Visit] = []
    if concurrent:
        client0 = client_cpu(server)
        results = await asyncio.gather(*(session(browser, server.url, pages, plan, name,
                                                 timeout_ms, hosted=hosted)
                                         for plan in plans))
        for session_visits, context in results:
            visits += session_visits
            contexts.append(context)
        client_s = client_cpu(server) - client0  # before the contexts' processes exit
    else:
        for number, plan in enumerate(plans):
            client0 = client_cpu(server)
            session_visits, context = await session(browser, server.url, pages, plan, name,
                                                    timeout_ms, hosted=hosted)
            visits += session_visits
            client_s += client_cpu(server) - client0
            if number < len(plans) - 1:  # one user at a time: the last one leaves below
                await context.close()
            else:
                contexts.append(context)
    end = time.monotonic()
    phase = Phase(name, visits, start, end, cpu_seconds(server.pid) - server_cpu0,
                  client_s, machine_busy_seconds() - machine0,
                  cache_before, safe_cache_totals(server.url))
    phase.peak_rss_mib, phase.peak_threads = sampler.peak(start, end)
    phase.peak_active = sampler.peak_active(start, end) - resident
    closed = time.monotonic()
    await asyncio.gather(*(c.close() for c in contexts))
    phase.rss_closed_mib = rss_mib(server.pid)
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    while time.monotonic() < deadline:
        if (active_sessions(server.url) or 0) <= resident:
            phase.release_s = time.monotonic() - closed
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(settle_s)
    phase.rss_released_mib = rss_mib(server.pid)
    return phase


async def sign_in_ahead(browser: Any, server: Server, hosted: Hosted,
                        plans: list[SessionPlan], timeout_ms: int, name: str) -> None:
    """Sign a wave's sessions in, one after another, before its clock starts: 25 chromium
    pages signing in on the server's 2 cores while the wave runs are the bench's load, not
    the users' (their browsers and the identity provider are elsewhere). Waits until the
    sign-ins' own sessions are released, so the wave counts only its own."""
    started = time.monotonic()
    for plan in plans:
        hosted.signed_in[plan.number] = await hosted.cookies(browser, server.url, plan.number,
                                                             timeout_ms)
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    while (active_sessions(server.url) or 0) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    print(f"{name}: {len(plans)} sessions signed in ahead of it (untimed, one after "
          f"another): {time.monotonic() - started:.0f} s")


async def warm_up(browser: Any, server: Server, pages: list[AppPage], timeout_ms: int,
                  hosted: Hosted | None = None) -> tuple[Any, list[AppPage]]:
    """Untimed: one session through every page with the default filters, so Python's first
    imports, DuckDB's first reads and the first compile of each page are charged to no page.
    Returns its context, left open: Streamlit forgets the compiled pages whenever no session
    is connected, and a single user's later visits, as anyone's, find them compiled; and the
    pages its sidebar offers (in hosted mode a team lead's: no admin pages)."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    probe = Probe()
    page.on("websocket", probe.attach)
    if hosted is not None:
        await hosted.sign_in(page, server.url, 0, timeout_ms)
    await open_visit(page, probe, Visit("warm-up", -1, pages[0].title, True), pages[0].title,
                     f"{server.url}/", None, timeout_ms)
    links = await page.locator('[data-testid="stSidebarNavLink"]').evaluate_all(
        "links => links.map(a => new URL(a.href).pathname.replace(/^\\//, ''))")
    pages = [p for p in pages if p.path in links]
    for target in pages[1:]:
        link = f'[data-testid="stSidebarNavLink"][href$="/{target.path}"]'
        visit = await open_visit(page, probe, Visit("warm-up", -1, target.title, False),
                                 target.title, None, link, timeout_ms)
        if visit.error:
            print(f"warm-up: {target.title}: {visit.error}")
    return context, pages


def page_stats(visits: list[Visit], title: str, attr: str = "script_s") -> list[float]:
    return [getattr(v, attr) for v in visits
            if v.page == title and v.error is None and getattr(v, attr) is not None]


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def report(args: argparse.Namespace, pages: list[AppPage], single: Phase,
           waves: list[Phase], baseline_mib: float, hwm_mib: float) -> int:
    first = waves[0]
    width = max(len(p.title) for p in pages) + 12
    print()
    for ph in (single, *waves):
        views = len(ph.visits)
        b = [v.browser_s for v in ph.visits if v.browser_s is not None]
        print(f"{ph.name}: {views} page views in {ph.seconds:.0f} s "
              f"({views / ph.seconds:.2f}/s); CPU cores busy: server "
              f"{ph.server_cpu_s / ph.seconds:.2f}, {'browser' if b else 'client'} side "
              f"{ph.client_cpu_s / ph.seconds:.2f}, whole machine "
              f"{ph.machine_cpu_s / ph.seconds:.2f}; server CPU per page view "
              f"{ph.server_cpu_s / max(views, 1):.3f} s; peak active sessions {ph.peak_active}; "
              + ("click to heading shown and script idle in chromium, median "
                 f"{fmt(statistics.median(b) if b else None, '.2f')} s" if b else
                 "no browser"))
    print()
    print(f"{'run s (in the server)':<{width}}{'single':>16}"
          f"{f'{args.sessions} sessions':>18}{'ratio':>16}   {'seen s, median':>20}")
    print(f"{'page':<{width}}{'median':>8}{'p95':>8}{'median':>9}{'p95':>9}"
          f"{'median':>8}{'p95':>8}   {'single':>10}{'conc.':>10}  median <= {GOAL_RATIO:g}x"
          f"  p95")
    failed: list[str] = []
    tails: list[str] = []  # pages whose p95 is over GOAL_RATIO (reported, not the goal)
    lines: list[tuple[str, str, bool]] = []
    for p in pages:
        alone, busy = page_stats(single.visits, p.title), page_stats(first.visits, p.title)
        b_alone = page_stats(single.visits, p.title, "server_s")
        b_busy = page_stats(first.visits, p.title, "server_s")
        label = p.title + (" (landing)" if p.path == "" else "")
        if not alone or not busy:
            failed.append(p.title)
            print(f"{label:<{width}}  no complete visit")
            lines.append((f"{p.title}: within {GOAL_RATIO:g}x the single-user time",
                          "no complete visit", False))
            continue
        m1, q1 = statistics.median(alone), percentile(alone, 0.95)
        m2, q2 = statistics.median(busy), percentile(busy, 0.95)
        rm, rq = m2 / m1, q2 / q1
        ok = rm <= GOAL_RATIO
        if not ok:
            failed.append(p.title)
        if rq > GOAL_RATIO:
            tails.append(p.title)
        print(f"{label:<{width}}{m1:>8.3f}{q1:>8.3f}{m2:>9.3f}{q2:>9.3f}{rm:>7.2f}x{rq:>7.2f}x"
              f"   {statistics.median(b_alone):>10.3f}{statistics.median(b_busy):>10.3f}  "
              f"{'PASS' if ok else 'FAIL':>14}  {'within' if rq <= GOAL_RATIO else 'over'}")
        lines.append((f"{p.title}: {args.sessions} sessions within {GOAL_RATIO:g}x the "
                      "single-user time (median)", f"{rm:.2f}x (p95 {rq:.2f}x)", ok))
    print(f"samples per page: single {len(single.visits) // len(pages)}, "
          f"concurrent {len(first.visits) // len(pages)}")
    for extra in waves[1:]:
        print(f"{extra.name} (the same sessions and ranges again, results cached): "
              "run s median per page: "
              + ", ".join(f"{p.title} {fmt(statistics.median(s) if s else None, '.2f')}"
                          for p in pages
                          for s in [page_stats(extra.visits, p.title)]))

    # Where the time went: st.cache_data compute time per cached function (misses only).
    print()
    print("st.cache_data misses (from Streamlit's /_stcore/metrics): function, calls and mean "
          "compute s alone vs. under concurrency")
    rows = []
    for key in first.cache_after:
        if not key.endswith(" sum"):
            continue
        fn = key[:-4]

        def delta(ph: Phase, kind: str, fn: str = fn) -> float:
            return ph.cache_after.get(f"{fn} {kind}", 0.0) - ph.cache_before.get(
                f"{fn} {kind}", 0.0)

        n1, s1 = delta(single, "count"), delta(single, "sum")
        n2, s2 = delta(first, "count"), delta(first, "sum")
        if n2 > 0:
            rows.append((s2, fn, n1, s1 / n1 if n1 else None, n2, s2 / n2))
    for total, fn, n1, mean1, n2, mean2 in sorted(rows, reverse=True)[:12]:
        ratio = f"{mean2 / mean1:5.1f}x" if mean1 else "     -"
        print(f"  {fn:<28}{int(n1):>5} x {fmt(mean1)} s {int(n2):>6} x {mean2:.3f} s  "
              f"{ratio}  ({total:.1f} s in all)")

    errors = [v for ph in (single, *waves) for v in ph.visits if v.error]
    for v in errors[:10]:
        print(f"ERROR {v.phase} session {v.session} {v.page}: {v.error}")
    if len(errors) > 10:
        print(f"... {len(errors) - 10} more errors")
    if errors:  # the kinds of failure, by what Playwright last waited for
        kinds: dict[str, int] = {}
        for v in errors:
            kind = v.error.split(" {", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {count:>4} x {kind}")

    print()
    print(f"server memory (RSS, MiB): after the warm-up {baseline_mib:,.0f}")
    for ph in (single, *waves):
        print(f"  {ph.name:<10} peak {ph.peak_rss_mib:>7,.0f} (threads {ph.peak_threads}), "
              f"contexts closed {ph.rss_closed_mib:>7,.0f}, released "
              f"{fmt(ph.release_s, '.1f')} s later, after {args.settle:g} s more "
              f"{ph.rss_released_mib:>7,.0f}")
    print(f"  process peak (VmHWM) {hwm_mib:,.0f}")

    # goals
    print()
    print("goals")
    every = not failed
    lines.append((f"every page's median within {GOAL_RATIO:g}x the single-user time at "
                  f"{args.sessions} sessions",
                  "all pages" if every else f"{len(failed)} pages miss", every))
    lines.append((f"{args.sessions} sessions served at once (Streamlit's active_sessions)",
                  f"peak {first.peak_active}", first.peak_active >= args.sessions))
    released = all(ph.release_s is not None for ph in waves)
    lines.append(("sessions released on disconnect (active_sessions back to the idle one)",
                  ", ".join(f"{fmt(ph.release_s, '.1f')} s" for ph in waves), released))
    if len(waves) > 2:
        second = waves[1].rss_released_mib - first.rss_released_mib
        last = waves[-1].rss_released_mib - waves[-2].rss_released_mib
        allowed = max(MEMORY_SLACK_MIB, second / 2)
        lines.append((f"memory bounded: after wave {len(waves)} the server grew <= "
                      f"{allowed:,.0f} MiB (wave 2 added {second:+,.0f})",
                      f"{last:+,.0f} MiB", last <= allowed))
    lines.append(("every page opened without an error",
                  f"{sum(len(ph.visits) for ph in (single, *waves))} views, "
                  f"{len(errors)} errors", not errors))
    for text, figure, ok in lines:
        print(f"  {text:<74}{figure:>24}  {'PASS' if ok else 'FAIL'}")
    print(f"  reported, not a goal: p95 within {GOAL_RATIO:g}x the single-user p95 for "
          f"{len(pages) - len(tails)} of {len(pages)} pages"
          + (f"; over: {', '.join(tails)}" if tails else ""))
    return 0


def capped_chromium(folder: Path) -> Path:
    """A launcher for chromium without the CAP_SYS_NICE capability: as root, chromium raises
    its own processes' and threads' priority (nice 0, -8) over the server's; without the
    capability it can only lower them. Plain chromium without setpriv, or when not root."""
    if os.geteuid() != 0 or not SETPRIV.exists():
        return CHROMIUM
    launcher = folder / "chromium-capped"
    launcher.write_text(f'#!/bin/sh\nexec {SETPRIV} --bounding-set -sys_nice -- {CHROMIUM} "$@"\n')
    launcher.chmod(0o755)
    return launcher


NICED_TYPES = (b"--type=renderer", b"--type=gpu-process", b"--type=zygote")


def nice_renderers(server: Server, everything: bool = True) -> None:
    """The browser side to the SCHED_IDLE policy at nice CLIENT_NICE, every thread: with
    ``everything``, every chromium process and Playwright's driver; else only chromium's
    renderers, GPU process and zygotes (which fork the renderers). In a deployment the
    browsers run on their users' machines: here 25 pages drawing charts, and the browser
    and network processes carrying 25 pages' traffic, share the server's 2 cores and must
    not take the CPU from it (at plain nice 10, 25 runnable renderer threads still outweigh
    the server's one busy thread on its core). They still get every cycle the server leaves.
    This script stays at normal priority."""
    for pid in descendants(os.getpid(), skip=server.pid):
        if pid == os.getpid():
            continue
        try:
            # chromium's children rewrite their command line as one string
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            program = cmdline.split(b"\0")[0].split(b" ")[0]
            if everything:
                if not (program.endswith(b"chromium") or b"run-driver" in cmdline):
                    continue
            elif not program.endswith(b"chromium") or not any(t in cmdline
                                                              for t in NICED_TYPES):
                continue
            for task in Path(f"/proc/{pid}/task").iterdir():
                tid = int(task.name)
                if os.sched_getscheduler(tid) != os.SCHED_IDLE:
                    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
                if os.getpriority(os.PRIO_PROCESS, tid) < CLIENT_NICE:
                    os.setpriority(os.PRIO_PROCESS, tid, CLIENT_NICE)
        except (OSError, IndexError):
            continue


async def run(args: argparse.Namespace, server: Server, pages: list[AppPage],
              last_day: date, chromium: Path, hosted: Hosted | None = None
              ) -> tuple[Phase, list[Phase], float, list[AppPage]]:
    from playwright.async_api import async_playwright

    rng = random.Random(args.seed)
    timeout_ms = int(args.timeout * 1000)
    sampler = Sampler(server, nice_browser=chromium != CHROMIUM,
                      whole_browser=args.client_priority == "idle")
    session = run_ws_session if args.client == "websocket" else run_session
    sampler.start()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            try:
                started = time.monotonic()
                idle, pages = await warm_up(browser, server, pages, timeout_ms, hosted)
                baseline = rss_mib(server.pid)
                print(f"warm-up (untimed, default filters, every page): "
                      f"{time.monotonic() - started:.0f} s; server RSS {baseline:,.0f} MiB")
                plans = make_plans(pages, args.single, 1, last_day, args.single_think, 0.0, rng)
                single = await run_phase("single", browser, server, sampler, pages, plans,
                                         False, timeout_ms, args.settle, resident=1,
                                         hosted=hosted, session=session)
                print(f"single: {args.single} sessions one after another, "
                      f"{single.seconds:.0f} s; load average {load_average()}")
                waves: list[Phase] = []
                windows: list[tuple[date, date]] | None = None
                for wave in range(1, args.waves + 1):
                    plans = make_plans(pages, args.sessions, 1 + args.single, last_day,
                                       args.think, args.think, rng, windows)
                    windows = [plan.window for plan in plans]
                    if hosted is not None and session is run_ws_session:
                        await sign_in_ahead(browser, server, hosted, plans, timeout_ms,
                                            f"wave {wave}")
                    phase = await run_phase(f"wave {wave}", browser, server, sampler, pages,
                                            plans, True, timeout_ms, args.settle, resident=1,
                                            hosted=hosted, session=session)
                    waves.append(phase)
                    print(f"wave {wave}: {args.sessions} concurrent sessions, "
                          f"{phase.seconds:.0f} s; load average {load_average()}")
                await idle.close()
            finally:
                await browser.close()
    finally:
        sampler.stop.set()
        sampler.join()
    return single, waves, baseline, pages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=DEFAULT_TICKETS,
                    help=f"bench warehouse size, DIR/wh_N.duckdb (default {DEFAULT_TICKETS:,})")
    ap.add_argument("--dir", default=str(ROOT / "bench" / "out"),
                    help="where the bench warehouses are (default bench/out)")
    ap.add_argument("--db", help="serve a copy of this warehouse instead of DIR/wh_N.duckdb")
    ap.add_argument("--sessions", type=int, default=GOAL_SESSIONS,
                    help=f"concurrent sessions (default {GOAL_SESSIONS})")
    ap.add_argument("--single", type=int, default=5,
                    help="sessions run one after another for the single-user times (default 5)")
    ap.add_argument("--think", type=float, default=10.0,
                    help="mean seconds a concurrent user looks at a page before the next click "
                    "(uniform 0.5x-1.5x; default 10); 0 for a burst")
    ap.add_argument("--single-think", type=float, default=1.0,
                    help="seconds between pages for the single user (default 1)")
    ap.add_argument("--waves", type=int, default=3,
                    help="concurrent waves; wave 2+ repeats wave 1's sessions (default 3)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds after the sessions are released before the RSS is read")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a Streamlit option for the server, e.g. runner.postScriptGC=false "
                    "or server.disconnectedSessionTTL=30 (repeatable; default: the app's "
                    "config)")
    ap.add_argument("--client-priority", choices=("idle", "renderers"), default="idle",
                    help="idle (default): the whole browser side runs under SCHED_IDLE, as if "
                    "on the users' own machines; renderers: only chromium's renderers and "
                    "GPU process (the figures in bench/README.md before 2026-11-24)")
    ap.add_argument("--client", choices=("browser", "websocket"), default="browser",
                    help="browser (default): every session is a chromium page that draws what "
                    "it is sent; websocket: every session speaks Streamlit's websocket "
                    "protocol and draws nothing, so the 2 cores are the server's, as when "
                    "the users' browsers are on their own machines (the warm-up and, in "
                    "hosted mode, the sign-ins still use chromium)")
    ap.add_argument("--hosted", action="store_true",
                    help="sign-in on (a local OpenID Connect provider, oidc-provider-mock): "
                    "every session signs in as a team lead and sees its team only, through "
                    "the scoped warehouse")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per page at most")
    ap.add_argument("--seed", type=int, default=7, help="think times and start delays")
    args = ap.parse_args(argv)
    if args.sessions < 1 or args.single < 1 or args.waves < 1:
        ap.error("--sessions, --single and --waves must be at least 1")
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("error: the playwright Python package is not installed", file=sys.stderr)
        return 2
    source = Path(args.db) if args.db else Path(args.dir) / f"wh_{args.tickets}.duckdb"
    if not source.exists():
        print(f"error: {source} does not exist; build it first with "
              f"`python bench/bench_pages.py --tickets {args.tickets}`.", file=sys.stderr)
        return 2

    from importlib.metadata import version

    import duckdb
    import streamlit

    pages = app_pages()
    work = Path(tempfile.mkdtemp(prefix="sessions_", dir=source.parent))
    server: Server | None = None
    stack = ExitStack()  # the sign-in provider, in hosted mode
    try:
        db = work / "wh.duckdb"
        started = time.perf_counter()
        shutil.copyfile(source, db)  # the app opens its warehouse read-write
        if Path(f"{source}.wal").exists():
            shutil.copyfile(f"{source}.wal", f"{db}.wal")
        copy_s = time.perf_counter() - started
        from cs_metrics import Warehouse

        wh = Warehouse(db, read_only=True)
        span = wh.created_range()
        tickets = wh.scalar("select count(*) from tickets where not is_test")
        teams = tuple(wh.dimension_values("team"))
        wh.close()
        if span is None:
            print(f"error: {source} has no tickets", file=sys.stderr)
            return 2
        last_day = span[1].date()
        print(f"cs_metrics sessions benchmark: {tickets:,} tickets, {len(pages)} pages, "
              f"{args.single} single sessions, {args.sessions} concurrent, {args.waves} waves, "
              f"think {args.think:g} s, {os.cpu_count()} cores")
        print(f"Streamlit {streamlit.__version__}, DuckDB {duckdb.__version__}, Playwright "
              f"{version('playwright')}, Python {sys.version.split()[0]}; warehouse {source} "
              f"(copied in {copy_s:.1f} s to {db})")
        print(f"load average at start: {load_average()}")
        options, hosted, where = list(args.option), None, {}
        if args.hosted:
            from tests.oidc_harness import oidc_provider, write_auth_secrets

            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the provider's requests
            idp = stack.enter_context(oidc_provider())
            hosted = Hosted(idp.issuer, teams)
            port = free_port()
            options.append(f"secrets.files={write_auth_secrets(work, idp, port)}")
            settings = work / "settings.toml"
            settings.write_text(hosted.settings())
            # the app must be opened on the redirect_uri's host (tests/oidc_harness.py)
            where = {"port": port, "host": "localhost",
                     "env": {"CS_METRICS_SETTINGS": str(settings)}}
            print(f"hosted mode: sign-in at {idp.issuer} (oidc-provider-mock); every session "
                  f"signs in (untimed) as the team lead of one of {len(teams)} teams, in turn")
        server = Server(db, work / "streamlit.log", options, **where)
        server.wait_healthy()
        print(f"server: {' '.join(server.cmd[2:])} (pid {server.pid})")
        print("every session lands on the app with its own 90-day range in the link "
              "(?range=custom&from=...&to=..., ending 1, 2, 3... days before the last ticket "
              "day, so its filtered queries are its own and uncached), then opens the other "
              f"pages from the sidebar, each session starting at another page; "
              f"concurrent users start within the first {args.think:g} s and look at each page "
              f"{args.think * 0.5:g}-{args.think * 1.5:g} s")
        print("run s: the page's script run as the server times it (exec_time of the page "
              "profile Streamlit sends after each run; the goal is checked on it); seen s: "
              + ("from this script sending the rerun request to the script-finished message "
                 "arriving (every session speaks Streamlit's websocket protocol; no browser "
                 "draws the pages)" if args.client == "websocket" else
                 "from the browser sending the rerun request to the script-finished message "
                 "arriving, read off the websocket by chromium (late when its renderers are "
                 "starved of CPU)"))
        chromium = capped_chromium(work)
        if chromium != CHROMIUM:
            if args.client_priority == "idle":
                print("every chromium process and Playwright's driver under SCHED_IDLE at "
                      f"nice {CLIENT_NICE} (chromium runs without CAP_SYS_NICE, so they stay "
                      "there): the browsers take only the CPU the server leaves; this script "
                      "at normal priority, as the server")
            else:
                print("chromium's renderers and GPU process under SCHED_IDLE (chromium runs "
                      "without CAP_SYS_NICE, so they stay there); its browser process and "
                      "network service, Playwright and this script at normal priority, as "
                      "the server")
        else:
            print("chromium at its own priorities (no setpriv, or not root)")
        single, waves, baseline, pages = asyncio.run(run(args, server, pages, last_day,
                                                         chromium, hosted))
        hwm = proc_status(server.pid).get("VmHWM", 0) / 1024
        code = report(args, pages, single, waves, baseline, hwm)
        print(f"load average at the end: {load_average()}")
        return code
    finally:
        if server is not None:
            server.stop()
            kept = source.parent / "sessions_server.log"
            shutil.copyfile(server.log, kept)  # the work folder goes; the server's log stays
            print(f"server log: {kept}")
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Live event feed: new tickets, status changes, first responses, closures and feedback, written
as small canonical batches into an inbox folder that a loader ingests as they arrive.

``python -m cs_metrics feed --inbox DIR --rate R ...`` calls :func:`run_feed`.

Contract with the reader of the inbox
-------------------------------------
- ``DIR`` receives *batch folders* named ``batch-<UTC yyyymmddTHHMMSSffffff>-<seq 6 digits>``,
  for example ``batch-20250301T000002000000-000001``. The time is the feed moment the batch
  closes (its events happened before or at it); ``seq`` counts batches on from the previous run.
  Names sort in the order the batches were written: read them sorted by name.
- Each batch folder is a canonical folder that ``cs_metrics.ingest(batch, ...)`` loads
  with no mapping: ``tickets.csv`` (always present, since a canonical folder needs it),
  ``ticket_events.csv`` and ``feedback.csv`` (when the batch has such rows), with the canonical
  column names of ``cs_metrics.core.schema.TABLES`` in that order.
- ``tickets.csv`` holds the *whole* current row of every ticket the batch touches: a new
  ticket, a status change (with its new ``status``, ``first_response_at``, ``resolved_at``,
  ``rep_id``, ``contacts``, ``reopened_count``, ``handle_time_s``) and the closed ticket a
  survey answers (unchanged). Loading is an upsert by ``ticket_id``, so loading batches in
  name order leaves every ticket as the feed last described it. Each status change also has
  a ``ticket_events`` row (``rep_id`` empty on ``open``, as in the sample).
- A batch is written into ``DIR/.tmp-<name>/`` and only then renamed (``os.rename``) to
  ``DIR/<name>/``: a reader never sees half a batch. Names starting with ``.`` are never to be
  read (``.tmp-*`` folders, the state file ``.feed_state.json``).
- Timestamps are UTC, naive, ``YYYY-MM-DD HH:MM:SS`` like the generator's CSV files. Empty
  cells are nulls; booleans are ``true``/``false``.

Time
----
"Now" is the wall clock (UTC) unless ``now`` is given, but never earlier than the warehouse's
as-of moment nor the last batch of a previous run: the feed starts at the later of the three
(rounded up to a whole second) and keeps that offset to the clock. Events arrive as a Poisson
process of ``rate`` per second; every ``batch_s`` seconds the events of the elapsed window
are written as one batch (a window without events writes nothing). ``sleep`` and ``now`` are
injectable, so a test runs an hour of feed in no time and gets the same bytes every time.

State
-----
At start the feed reads, read-only and then closes at once (so the app can still open the
file read-write), the warehouse ``db``: its open and in-progress tickets, tickets closed in
the last few days (candidates for surveys and reopens), representatives, customers, the
as-of moment and the highest feed ids. DuckDB refuses a read-only open while another process
(the app) holds the file read-write, and the file may not exist: then the feed continues from
``DIR/.feed_state.json`` alone, which holds the tickets the feed created or changed that are
still active, with their full rows and status, the next ticket and feedback numbers, the
batch counter, the last feed moment, and the representatives and (up to 200) customers seen.
Without either it starts fresh: no earlier tickets, the built-in representatives
``R0001``..``R0016`` (ids every generated sample has) and anonymous customers in a dozen US
cities. When both the warehouse and the state file are there, ids continue after the higher
of the two, and a ticket the state file describes at least as recently as the warehouse wins
(its latest batch may not be loaded yet).

The feed's own ids are ``L-T00000001``, ``L-F00000001``...: the sample's are ``T0000001`` and
``F0000001``, so they never collide. The state file is replaced atomically before each batch
is renamed into place and names that batch as pending; a run that died between the two is
completed (the batch renamed) at the next start, and stray ``.tmp-*`` folders are removed.
One feed per inbox.

Events
------
A ticket goes ``open`` -> ``in_progress`` (first response: a representative of a team that
handles its domain; ``first_response_at`` set once) -> ``closed`` (``resolved_at`` set) and
now and then ``closed`` -> ``open`` again (reopened: ``resolved_at`` cleared,
``reopened_count`` + 1). A ticket changes at most once every ``MIN_GAP_S`` seconds, so
``resolved_at >= first_response_at >= created_at`` and its events have distinct times.
Surveys answer closed tickets only (not test tickets, one per ticket), with scores that
follow how the ticket went and comments, for some, written like the sample's. An outage
(``LAT,LON,RADIUS_KM``) adds, on top of ``rate``, new ``network``/``internet`` tickets
located inside the circle at ``OUTAGE_RATE_FACTOR * rate`` per second.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import KM_PER_DEGREE_LAT, haversine_km
from cs_metrics.core.schema import PRIORITIES, TABLES
from cs_metrics.core.warehouse import Warehouse
from simulations import _text
from simulations.generator import (
    AFFINITY,
    CHANNEL_P,
    CHANNELS,
    COMMENT_SHARE,
    CSAT_CUTS,
    DOMAIN_P,
    DOMAINS,
    HANDLE_DOMAIN_MULT,
    HANDLE_MEDIAN_S,
    NULL_SHARE,
    OUTAGE_DOMAIN_P,
    OUTAGE_DOMAINS,
    OVERFLOW_SHARE,
    PRIORITY_P,
    RES_MEDIAN_H,
    SEGMENT_P,
    SEGMENTS,
    SURGE_CHANNEL_P,
    SURGE_PRIORITY_P,
    TEAMS,
    _cities,
    _comments,
    _jitter,
)

__all__ = [
    "BATCH_PREFIX",
    "EVENT_KINDS",
    "STATE_FILE",
    "TMP_PREFIX",
    "FeedOutage",
    "FeedSummary",
    "parse_outage",
    "run_feed",
]

BATCH_PREFIX = "batch-"
TMP_PREFIX = ".tmp-"
STATE_FILE = ".feed_state.json"
STATE_VERSION = 1
TICKET_PREFIX, FEEDBACK_PREFIX = "L-T", "L-F"
ID_DIGITS = 8

EVENT_KINDS: tuple[str, ...] = (
    "new_ticket", "outage_ticket", "first_response", "closed", "reopened", "feedback",
)
# Share of the base events by kind; new tickets and closures balance so the queue stays level.
# A kind with nothing to act on (no open ticket to answer, ...) becomes a new ticket.
KIND_P: dict[str, float] = {
    "new_ticket": 0.33,
    "first_response": 0.28,
    "closed": 0.27,
    "feedback": 0.095,
    "reopened": 0.025,
}
OUTAGE_RATE_FACTOR = 1.0  # surge tickets per second, per event per second of ``rate``
MIN_GAP_S = 5  # a ticket changes at most once in this many seconds
PICK_TRIES = 8
RECENT_CLOSED_DAYS = 3
CLOSED_KEEP = 2_000  # recently closed tickets kept as survey / reopen candidates
OPEN_LIMIT = 50_000  # newest open tickets read from a very large warehouse
STATE_CUSTOMERS = 200
BUILTIN_REPS = 16
BUILTIN_CITIES = 12
CLOSE_EXTRA_CONTACT = 0.15

_TICKET_COLS = TABLES["tickets"].column_names
_EVENT_COLS = TABLES["ticket_events"].column_names
_FEEDBACK_COLS = TABLES["feedback"].column_names
_TS_COLS = tuple(c.name for c in TABLES["tickets"].columns if c.type == "TIMESTAMP")


@dataclass(frozen=True)
class FeedOutage:
    """An outage circle: extra network/internet tickets are located inside it."""

    lat: float
    lon: float
    radius_km: float

    def __post_init__(self) -> None:
        ok = (
            all(math.isfinite(v) for v in (self.lat, self.lon, self.radius_km))
            and -90 <= self.lat <= 90
            and -180 <= self.lon <= 180
            and self.radius_km > 0
        )
        if not ok:
            raise CsMetricsError(
                f"The outage ({self.lat}, {self.lon}, {self.radius_km} km) is not a place: "
                "latitude must be -90..90, longitude -180..180 and the radius above 0 km."
            )


def parse_outage(text: str) -> FeedOutage:
    """``"LAT,LON,RADIUS_KM"`` (the ``--outage`` option) as a :class:`FeedOutage`."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise CsMetricsError(
            f"--outage {text!r} must be LAT,LON,RADIUS_KM, for example 40.71,-74.0,15."
        )
    return FeedOutage(*values)


@dataclass(frozen=True)
class FeedSummary:
    """What a run wrote: batches, events by kind, where its starting state came from."""

    inbox: Path
    source: str  # "warehouse", "state" or "fresh"
    note: str | None  # why the warehouse was not used, when it was not
    started_at: datetime  # feed time of the start and the end of the last complete window
    ended_at: datetime
    batches: int
    first_batch: str | None
    last_batch: str | None
    events: tuple[tuple[str, int], ...]  # (kind, count) for every kind of EVENT_KINDS
    interrupted: bool = False

    def count(self, kind: str) -> int:
        return dict(self.events)[kind]

    @property
    def total_events(self) -> int:
        return sum(n for _, n in self.events)

    def text(self) -> str:
        kinds = ", ".join(f"{k} {n:,d}" for k, n in self.events)
        lines = [
            f"feed: {self.batches:,d} batches, {self.total_events:,d} events "
            f"({kinds}) written to {self.inbox}",
            f"feed time {self.started_at.isoformat(sep=' ')} to "
            f"{self.ended_at.isoformat(sep=' ')}; started from {_SOURCES[self.source]}"
            + (" (interrupted)" if self.interrupted else ""),
        ]
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)


_SOURCES = {"warehouse": "the warehouse", "state": "the state file", "fresh": "scratch"}


def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)



# Every event is generated and written in this one process; far above a contact centre's
# busiest hour it only fills memory and the disk faster than a batch can be written.
MAX_RATE = 1_000

def run_feed(
    inbox: str | Path,
    rate: float,
    duration: float | None = None,
    seed: int | None = None,
    outage: FeedOutage | str | None = None,
    db: str | Path | None = None,
    *,
    batch_s: float = 2.0,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] | None = None,
) -> FeedSummary:
    """Write batches of live events into ``inbox`` for ``duration`` seconds (None: until
    interrupted); see the module docstring for the folder contract.

    ``rate`` is base events per second (Poisson), ``batch_s`` the seconds between batches,
    ``db`` the warehouse to start from (default: the app's). ``now`` returns the UTC-naive
    wall clock and ``sleep`` waits: tests inject both. Same seed, clock and starting state
    give the same files. Ctrl-C stops cleanly after the last complete batch.
    """
    try:
        rate = float(rate)
        batch_s = float(batch_s)
        duration = None if duration is None else float(duration)
    except (TypeError, ValueError) as exc:
        raise CsMetricsError(f"--rate, --duration and the batch interval are numbers: {exc}") \
            from None
    if not (math.isfinite(rate) and 0 < rate <= MAX_RATE):
        raise CsMetricsError(
            f"--rate must be events per second above 0 and at most {MAX_RATE:,}, not {rate}; "
            "a feed is a live helpdesk's pace, not a bulk load (use generate and ingest).")
    if not (math.isfinite(batch_s) and batch_s > 0):
        raise CsMetricsError(f"The batch interval must be above 0 seconds, not {batch_s}.")
    if duration is not None and not (math.isfinite(duration) and duration >= 0):
        raise CsMetricsError(f"--duration must be 0 seconds or more, not {duration}.")
    if isinstance(outage, str):
        outage = parse_outage(outage)
    inbox = Path(inbox)
    if inbox.exists() and not inbox.is_dir():
        raise CsMetricsError(f"--inbox {inbox} is a file; pass a folder for the batches.")
    inbox.mkdir(parents=True, exist_ok=True)
    clock = now or _utc_now
    say = log or (lambda _msg: None)

    feed = _Feed(inbox, np.random.default_rng(seed), outage)
    feed.load(db)
    feed.recover()
    wall = clock()
    floor = max(t for t in (wall, feed.as_of, feed.time) if t is not None)
    start = _ceil_second(floor)
    offset = start - wall  # the feed runs on the clock, shifted to start after the data
    feed.time = start
    say(feed.describe(start))

    def feed_now() -> datetime:
        return clock() + offset

    stop = None if duration is None else start + timedelta(seconds=duration)
    surge_rate = OUTAGE_RATE_FACTOR * rate if outage is not None else 0.0
    rng = feed.rng
    next_base = rng.exponential(1.0 / rate)
    next_surge = rng.exponential(1.0 / surge_rate) if surge_rate else math.inf
    window_end = done = start
    k = 0
    interrupted = False
    try:
        while stop is None or window_end < stop:
            k += 1
            window_end = start + timedelta(seconds=k * batch_s)
            if stop is not None and window_end > stop:
                window_end = stop
            end_s = (window_end - start).total_seconds()
            while True:
                remaining = (window_end - feed_now()).total_seconds()
                if remaining <= 0:
                    break
                sleep(remaining)
            while min(next_base, next_surge) <= end_s:
                if next_surge < next_base:
                    feed.new_ticket(start + timedelta(seconds=math.floor(next_surge)), True)
                    next_surge += rng.exponential(1.0 / surge_rate)
                else:
                    feed.base_event(start + timedelta(seconds=math.floor(next_base)))
                    next_base += rng.exponential(1.0 / rate)
            if feed.has_batch():
                feed.write_batch(window_end)
            done = window_end
    except KeyboardInterrupt:
        # batches already renamed are complete; a half-written one is finished or removed
        # at the next start (see recover)
        interrupted = True
    return FeedSummary(
        inbox=inbox,
        source=feed.source,
        note=feed.note,
        started_at=start,
        ended_at=done,
        batches=len(feed.written),
        first_batch=feed.written[0] if feed.written else None,
        last_batch=feed.written[-1] if feed.written else None,
        events=tuple((kind, feed.counts[kind]) for kind in EVENT_KINDS),
        interrupted=interrupted,
    )


def _ceil_second(t: datetime) -> datetime:
    whole = t.replace(microsecond=0)
    return whole if whole == t else whole + timedelta(seconds=1)


class _Pool:
    """Ticket ids of one status: O(1) add, remove and random pick, in a deterministic order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, tid: str) -> bool:
        return tid in self.pos

    def add(self, tid: str) -> None:
        if tid not in self.pos:
            self.pos[tid] = len(self.ids)
            self.ids.append(tid)

    def remove(self, tid: str) -> None:
        i = self.pos.pop(tid, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != tid:
            self.ids[i] = last
            self.pos[last] = i

    def pick(self, rng: np.random.Generator) -> str:
        return self.ids[int(rng.integers(len(self.ids)))]


class _Feed:
    """The feed's knowledge of the queue and the rows of the batch being assembled."""

    def __init__(self, inbox: Path, rng: np.random.Generator, outage: FeedOutage | None):
        self.inbox = inbox
        self.rng = rng
        self.outage = outage
        self.source = "fresh"
        self.note: str | None = None
        self.as_of: datetime | None = None
        self.time: datetime | None = None  # last batch of a previous run, then this run's
        self.next_ticket = 1
        self.next_feedback = 1
        self.seq = 0
        self.pending: str | None = None
        self.tickets: dict[str, dict[str, Any]] = {}
        self.pools = {s: _Pool() for s in ("open", "in_progress", "closed")}
        self.closed_order: deque[str] = deque()
        self.reps: list[tuple[str, str | None]] = []
        self.customers: list[tuple[str | None, str | None, float, float, str | None]] = []
        self.counts = dict.fromkeys(EVENT_KINDS, 0)
        self.written: list[str] = []
        self.batch_tickets: dict[str, None] = {}
        self.batch_events: list[tuple] = []
        self.batch_feedback: list[tuple] = []

    # --- starting state -------------------------------------------------------------------

    def load(self, db: str | Path | None) -> None:
        saved = self._read_state()
        data = None
        try:
            wh = Warehouse(db, read_only=True)
        except CsMetricsError as exc:
            self.note = f"{exc} The feed continues without it."
        else:
            try:
                data = _from_warehouse(wh)
            except (duckdb.Error, CsMetricsError) as exc:
                self.note = f"Could not read the warehouse {wh.path} ({exc}); continuing " \
                    "without it."
            finally:
                wh.close()  # a reader's lock would keep the app from opening it read-write
        rows: list[dict[str, Any]] = []
        if data is not None:
            self.source = "warehouse"
            self.as_of = data["as_of"]
            self.next_ticket = data["max_ticket"] + 1
            self.next_feedback = data["max_feedback"] + 1
            self.reps = data["reps"]
            self.customers = data["customers"]
            rows = data["tickets"]
        if saved is not None:
            if data is None:
                self.source = "state"
            self.next_ticket = max(self.next_ticket, int(saved["next_ticket"]))
            self.next_feedback = max(self.next_feedback, int(saved["next_feedback"]))
            self.seq = int(saved["seq"])
            self.pending = saved.get("pending")
            self.time = _ts(saved.get("time"))
            self.reps = self.reps or [(r[0], r[1]) for r in saved.get("reps", [])]
            self.customers = self.customers or [tuple(c) for c in saved.get("customers", [])]
            known = {r["ticket_id"]: i for i, r in enumerate(rows)}
            for row in saved.get("tickets", []):
                row = _row_from_json(row)
                i = known.get(row["ticket_id"])
                if i is None:
                    rows.append(row)  # created by the feed, maybe not loaded yet
                elif row["_at"] >= rows[i]["_at"]:
                    rows[i] = row  # its latest batch may not be loaded yet
        if not self.reps:
            self.reps = [(f"R{i + 1:04d}", TEAMS[i % len(TEAMS)]) for i in range(BUILTIN_REPS)]
        if not self.customers:
            self.customers = _builtin_customers()
        for row in rows:
            self._track(row)
        self._cap_closed()
        self._prepare_lookups()

    def _read_state(self) -> dict | None:
        path = self.inbox / STATE_FILE
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CsMetricsError(
                f"The feed state {path} cannot be read ({exc}); move it away to start the "
                "feed afresh (new ids continue after the warehouse's)."
            ) from exc
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise CsMetricsError(
                f"The feed state {path} is not a version {STATE_VERSION} state file; move it "
                "away to start the feed afresh."
            )
        return state

    def _track(self, row: dict[str, Any]) -> None:
        tid = row["ticket_id"]
        self.tickets[tid] = row
        for s, pool in self.pools.items():
            if s == row["status"]:
                pool.add(tid)
            else:
                pool.remove(tid)
        if row["status"] == "closed":
            self.closed_order.append(tid)

    def _cap_closed(self) -> None:
        closed = self.pools["closed"]
        while len(closed) > CLOSED_KEEP and self.closed_order:
            tid = self.closed_order.popleft()
            if tid in closed and tid not in self.batch_tickets:
                closed.remove(tid)
                del self.tickets[tid]

    def _prepare_lookups(self) -> None:
        self.by_team: dict[str | None, list[str]] = {}
        for rep_id, team in self.reps:
            self.by_team.setdefault(team, []).append(rep_id)
        lat = np.array([c[2] for c in self.customers], dtype=float)
        lon = np.array([c[3] for c in self.customers], dtype=float)
        self.inside: list[int] = []
        self.area: str | None = None
        if self.outage is None:
            return
        o = self.outage
        dist = haversine_km(o.lat, o.lon, lat, lon) if len(lat) else np.array([])
        self.inside = [int(i) for i in np.flatnonzero(dist <= o.radius_km)]
        if len(dist):
            # anonymous surge tickets are named after the nearest known place, if close
            near = int(np.argmin(dist))
            if dist[near] <= max(2 * o.radius_km, 25.0):
                self.area = self.customers[near][1]

    def recover(self) -> None:
        """Finish the batch a previous run wrote but did not rename; drop other leftovers."""
        for tmp in sorted(self.inbox.glob(TMP_PREFIX + "*")):
            name = tmp.name[len(TMP_PREFIX):]
            if name == self.pending and not (self.inbox / name).exists():
                os.rename(tmp, self.inbox / name)
            elif tmp.is_dir():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()

    def describe(self, start: datetime) -> str:
        waiting = len(self.pools["open"])
        working = len(self.pools["in_progress"])
        where = {
            "warehouse": "the warehouse",
            "state": f"{self.inbox / STATE_FILE} (the warehouse was not available)",
            "fresh": "nothing (no warehouse, no state file)",
        }[self.source]
        text = (
            f"feed: starting at {start.isoformat(sep=' ')} from {where}: {waiting:,d} open and "
            f"{working:,d} in-progress tickets, next id {self._ticket_id(self.next_ticket)}"
        )
        if self.note:
            text += f"\nnote: {self.note}"
        return text

    # --- events ---------------------------------------------------------------------------

    def base_event(self, t: datetime) -> None:
        kinds = list(KIND_P)
        p = np.array([KIND_P[k] for k in kinds])
        kind = kinds[int(self.rng.choice(len(kinds), p=p / p.sum()))]
        done = False
        if kind == "first_response":
            done = self._first_response(t)
        elif kind == "closed":
            done = self._close(t)
        elif kind == "reopened":
            done = self._reopen(t)
        elif kind == "feedback":
            done = self._feedback(t)
        if not done:
            self.new_ticket(t, False)

    def _pick(self, status: str, t: datetime, ok=None) -> dict[str, Any] | None:
        pool = self.pools[status]
        if not len(pool):
            return None
        latest = t - timedelta(seconds=MIN_GAP_S)
        for _ in range(PICK_TRIES):
            row = self.tickets[pool.pick(self.rng)]
            if row["_at"] <= latest and (ok is None or ok(row)):
                return row
        return None

    def _changed(self, row: dict[str, Any], t: datetime, status: str | None, kind: str) -> None:
        row["_at"] = t
        row["_touched"] = True
        self.batch_tickets[row["ticket_id"]] = None
        self.counts[kind] += 1
        if status is not None:
            row["status"] = status
            rep = None if status == "open" else row["rep_id"]
            self.batch_events.append((row["ticket_id"], t, status, rep))
            self._track(row)

    def new_ticket(self, t: datetime, surge: bool) -> None:
        rng = self.rng
        if surge:
            d = OUTAGE_DOMAINS.index
            net = np.array([OUTAGE_DOMAIN_P[d("network")], OUTAGE_DOMAIN_P[d("internet")]])
            domain = ("network", "internet")[int(rng.choice(2, p=net / net.sum()))]
            cust, lat, lon = self._surge_place()
            channel = CHANNELS[int(rng.choice(len(CHANNELS), p=SURGE_CHANNEL_P))]
            priority = PRIORITIES[int(rng.choice(len(PRIORITIES), p=SURGE_PRIORITY_P))]
            subjects = _text.OUTAGE_SUBJECTS.get(domain, _text.SUBJECTS[domain])
        else:
            di = int(rng.choice(len(DOMAINS), p=DOMAIN_P))
            domain = DOMAINS[di]
            cust = self.customers[int(rng.integers(len(self.customers)))]
            lat, lon = cust[2], cust[3]
            channel = CHANNELS[int(rng.choice(len(CHANNELS), p=CHANNEL_P[di]))]
            seg = SEGMENTS.index(cust[4]) if cust[4] in SEGMENTS else len(SEGMENTS) - 1
            priority = PRIORITIES[int(rng.choice(len(PRIORITIES), p=PRIORITY_P[seg]))]
            subjects = _text.SUBJECTS[domain]
        tid = self._ticket_id(self.next_ticket)
        self.next_ticket += 1
        row = dict.fromkeys(_TICKET_COLS)
        row.update(
            ticket_id=tid,
            created_at=t,
            status="open",
            priority=priority,
            channel=channel,
            domain=domain,
            location=cust[1],
            location_lat=float(lat),
            location_lon=float(lon),
            customer_id=cust[0],
            customer_location=cust[1],
            customer_segment=cust[4],
            reopened_count=0,
            subject=subjects[int(rng.integers(len(subjects)))],
            is_test=False,
            _fb=False,
        )
        self._changed(row, t, "open", "outage_ticket" if surge else "new_ticket")

    def _surge_place(self) -> tuple[tuple, float, float]:
        if self.inside:
            cust = self.customers[self.inside[int(self.rng.integers(len(self.inside)))]]
            return cust, cust[2], cust[3]
        # no known customer there: an anonymous caller somewhere inside the circle
        o = self.outage
        while True:
            r = 0.95 * o.radius_km * math.sqrt(self.rng.random())
            a = 2 * math.pi * self.rng.random()
            lat = o.lat + r * math.cos(a) / KM_PER_DEGREE_LAT
            lon = o.lon + r * math.sin(a) / (KM_PER_DEGREE_LAT * math.cos(math.radians(o.lat)))
            lat, lon = round(lat, 5), round((lon + 180) % 360 - 180, 5)
            if haversine_km(o.lat, o.lon, lat, lon) <= o.radius_km:
                return (None, self.area, lat, lon, None), lat, lon

    def _first_response(self, t: datetime) -> bool:
        row = self._pick("open", t)
        if row is None:
            return False
        if row["rep_id"] is None:
            row["rep_id"] = self._rep_for(row["domain"])
        if row["first_response_at"] is None:  # a reopened ticket keeps its first response
            row["first_response_at"] = t
        row["contacts"] = max(row["contacts"] or 0, 1)
        row["handle_time_s"] = (row["handle_time_s"] or 0) + self._handle_s(row)
        self._changed(row, t, "in_progress", "first_response")
        return True

    def _close(self, t: datetime) -> bool:
        row = self._pick("in_progress", t)
        if row is None:
            return False
        if row["first_response_at"] is None:  # a foreign row in progress without one
            row["first_response_at"] = t
        row["resolved_at"] = t
        if self.rng.random() < CLOSE_EXTRA_CONTACT:
            row["contacts"] = (row["contacts"] or 1) + 1
        row["handle_time_s"] = (row["handle_time_s"] or 0) + self._handle_s(row) // 2
        self._changed(row, t, "closed", "closed")
        self._cap_closed()
        return True

    def _reopen(self, t: datetime) -> bool:
        row = self._pick("closed", t)
        if row is None:
            return False
        row["resolved_at"] = None  # null unless closed (DATA_CONTRACT)
        row["reopened_count"] = (row["reopened_count"] or 0) + 1
        row["contacts"] = (row["contacts"] or 1) + 1
        self._changed(row, t, "open", "reopened")
        return True

    def _feedback(self, t: datetime) -> bool:
        row = self._pick("closed", t, ok=lambda r: not r.get("_fb") and not r["is_test"])
        if row is None:
            return False
        rng = self.rng
        pri = PRIORITIES.index(row["priority"]) if row["priority"] in PRIORITIES else 1
        res_h = (row["resolved_at"] - row["created_at"]).total_seconds() / 3600
        slow = float(np.clip(np.log(max(res_h, 1 / 60) / RES_MEDIAN_H[pri]), -2.0, 4.0))
        reopened = int(row["reopened_count"] or 0)
        extra = max(int(row["contacts"] or 1) - 1 - reopened, 0)
        # the sample's survey model (generator._feedback), without the rep's skill
        z = 1.0 - 0.45 * slow - 0.9 * min(reopened, 2) - 0.3 * extra
        csat = 1 + int(np.searchsorted(CSAT_CUTS, z + rng.normal(0.0, 0.8)))
        nps = int(np.clip(round(6.7 + 2.0 * (z + rng.normal(0.0, 0.9))), 0, 10))
        ces = int(np.clip(round(3.1 - 1.1 * (z + rng.normal(0.0, 0.9))), 1, 7))
        nps_null = rng.random() < NULL_SHARE["nps"]
        ces_null = rng.random() < NULL_SHARE["ces"]
        has_comment = rng.random() < COMMENT_SHARE and row["domain"] in DOMAINS
        csat_null = rng.random() < NULL_SHARE["csat"] and not (
            nps_null and ces_null and not has_comment
        )
        comment = None
        if has_comment:
            tone = 0 if csat <= 2 else 1 if csat == 3 else 2
            comment = _comments(
                rng, np.array([tone]), np.array([DOMAINS.index(row["domain"])]),
                np.array([slow]), np.array([reopened]),
            )[0]
        fid = f"{FEEDBACK_PREFIX}{self.next_feedback:0{ID_DIGITS}d}"
        self.next_feedback += 1
        self.batch_feedback.append((
            fid, row["ticket_id"], t,
            None if csat_null else csat, None if nps_null else nps, None if ces_null else ces,
            comment,
        ))
        row["_fb"] = True
        # the ticket row goes with its survey: a canonical folder needs a tickets file
        self._changed(row, t, None, "feedback")
        return True

    def _rep_for(self, domain: str | None) -> str | None:
        rng = self.rng
        teams = AFFINITY.get(domain or "", ())
        members = [r for team in teams for r in self.by_team.get(team, [])]
        if not members or rng.random() < OVERFLOW_SHARE:
            members = [r for r, _ in self.reps]
        return members[int(rng.integers(len(members)))] if members else None

    def _handle_s(self, row: dict[str, Any]) -> int:
        ch = CHANNELS.index(row["channel"]) if row["channel"] in CHANNELS else 0
        dom = DOMAINS.index(row["domain"]) if row["domain"] in DOMAINS else 0
        median = HANDLE_MEDIAN_S[ch] * HANDLE_DOMAIN_MULT[dom]
        return max(int(round(median * self.rng.lognormal(0.0, 0.45))), 30)

    @staticmethod
    def _ticket_id(n: int) -> str:
        return f"{TICKET_PREFIX}{n:0{ID_DIGITS}d}"

    # --- batches and state ----------------------------------------------------------------

    def has_batch(self) -> bool:
        return bool(self.batch_tickets)

    def write_batch(self, end: datetime) -> str:
        self.seq += 1
        name = f"{BATCH_PREFIX}{end:%Y%m%dT%H%M%S%f}-{self.seq:06d}"
        final, tmp = self.inbox / name, self.inbox / (TMP_PREFIX + name)
        if final.exists():
            raise CsMetricsError(
                f"The batch {final} already exists: is another feed writing to {self.inbox}? "
                "Run one feed per inbox."
            )
        rows = [self.tickets[tid] for tid in self.batch_tickets]
        self.time = end
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            _write_csv(tmp / "tickets.csv", _TICKET_COLS,
                       [[r[c] for c in _TICKET_COLS] for r in rows])
            if self.batch_events:
                _write_csv(tmp / "ticket_events.csv", _EVENT_COLS, self.batch_events)
            if self.batch_feedback:
                _write_csv(tmp / "feedback.csv", _FEEDBACK_COLS, self.batch_feedback)
            # the state names the batch before it appears: a run dying in between is
            # finished by the next one instead of reusing the batch's ids
            self._write_state(name)
            os.rename(tmp, final)
        except OSError as exc:
            raise CsMetricsError(
                f"Cannot write the batch {name} into {self.inbox} ({exc}); free the disk or "
                "fix the folder's permissions and start the feed again (it finishes a batch "
                "that was written but not yet renamed)."
            ) from exc
        self.written.append(name)
        self.batch_tickets = {}
        self.batch_events = []
        self.batch_feedback = []
        self._cap_closed()
        return name

    def _write_state(self, pending: str) -> None:
        touched = sorted(
            (r for r in self.tickets.values() if r.get("_touched")), key=lambda r: r["ticket_id"]
        )
        state = {
            "version": STATE_VERSION,
            "time": self.time.isoformat(sep=" "),
            "next_ticket": self.next_ticket,
            "next_feedback": self.next_feedback,
            "seq": self.seq,
            "pending": pending,
            "tickets": [_row_to_json(r) for r in touched],
            "reps": [list(r) for r in self.reps],
            "customers": [list(c) for c in self.customers[:STATE_CUSTOMERS]],
        }
        path = self.inbox / STATE_FILE
        tmp = self.inbox / (STATE_FILE + ".tmp")
        # compact: the C encoder keeps a state of a few thousand tickets to milliseconds
        tmp.write_text(json.dumps(state, sort_keys=True, separators=(",", ":")) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)


# --- warehouse, rows and files -----------------------------------------------------------------


def _from_warehouse(wh: Warehouse) -> dict[str, Any]:
    con = wh.connection()
    tables = wh.tables()
    out: dict[str, Any] = {
        "as_of": wh.as_of(), "tickets": [], "reps": [], "customers": [],
        "max_ticket": 0, "max_feedback": 0,
    }
    src = "tickets_src" if "tickets_src" in tables else "tickets" if "tickets" in tables else None
    if src is not None:
        have = set(wh.columns(src))
        cols = ", ".join(c if c in have else f"null as {c}" for c in _TICKET_COLS)
        has_fb = "feedback" in tables
        fb = ("exists (select 1 from feedback f where f.ticket_id = t.ticket_id)"
              if has_fb else "false")
        since = (out["as_of"] or datetime(1970, 1, 1)) - timedelta(days=RECENT_CLOSED_DAYS)
        sql = f"""
            with active as (
                select {cols}, {fb} as _fb from {src} t
                where status in ('open', 'in_progress')
                order by created_at desc, ticket_id desc limit ?
            ),
            recent_closed as (
                select {cols}, {fb} as _fb from {src} t
                where status = 'closed' and resolved_at >= ?
                order by resolved_at desc, ticket_id desc limit ?
            ),
            final as (select * from active union all select * from recent_closed)
            select * from final order by created_at, ticket_id
        """
        cur = con.execute(sql, [OPEN_LIMIT, since, CLOSED_KEEP])
        names = [d[0] for d in cur.description]
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            row["is_test"] = bool(row["is_test"])
            row["_at"] = max(row[c] for c in _TS_COLS if row[c] is not None)
            row["_touched"] = False
            out["tickets"].append(row)
        out["max_ticket"] = _max_id(con, src, "ticket_id", TICKET_PREFIX)
        if has_fb:
            out["max_feedback"] = _max_id(con, "feedback", "feedback_id", FEEDBACK_PREFIX)
    if "representatives" in tables:
        out["reps"] = [
            (r[0], r[1]) for r in con.execute(
                "select rep_id, team from representatives order by rep_id"
            ).fetchall()
        ]
    if "customers" in tables:
        out["customers"] = [
            (r[0], r[1], float(r[2]), float(r[3]), r[4]) for r in con.execute(
                "select customer_id, city, lat, lon, segment from customers "
                "where lat is not null and lon is not null order by customer_id"
            ).fetchall()
        ]
    return out


def _max_id(con: duckdb.DuckDBPyConnection, table: str, column: str, prefix: str) -> int:
    # ``table``/``column`` are fixed names from this module; the pattern is a parameter
    value = con.execute(
        f"select max(try_cast(regexp_extract({column}, ?, 1) as bigint)) from {table}",
        [f"^{prefix}(\\d+)$"],
    ).fetchall()[0][0]
    return int(value or 0)


def _builtin_customers() -> list[tuple[str | None, str | None, float, float, str | None]]:
    # anonymous callers around real US places (the generator's city list, fixed seed)
    rng = np.random.default_rng(0)
    cities = _cities(rng, BUILTIN_CITIES)
    idx = np.repeat(np.arange(len(cities["name"])), 5)
    lat, lon = _jitter(rng, cities["lat"][idx], cities["lon"][idx], 3.0)
    seg = rng.choice(len(SEGMENTS), size=len(idx), p=SEGMENT_P)
    return [
        (None, cities["name"][c], float(a), float(o), SEGMENTS[s])
        for c, a, o, s in zip(idx, lat, lon, seg, strict=True)
    ]


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _row_to_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat(sep=" ") if isinstance(v, datetime) else v for k, v in row.items()}


def _row_from_json(data: dict[str, Any]) -> dict[str, Any]:
    row = dict.fromkeys(_TICKET_COLS)
    row.update(data)
    for c in (*_TS_COLS, "_at"):
        row[c] = _ts(row.get(c))
    row["is_test"] = bool(row.get("is_test"))
    row["_touched"] = True
    return row


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")  # fractions only when the source had them
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _write_csv(path: Path, columns: tuple[str, ...], rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)

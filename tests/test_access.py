"""Roles and their row-level scope (cs_metrics.core.access), proved on every library path.

Every scoped figure is set against an independent computation on the same rows: the full
tables read through a plain ``Warehouse`` and filtered in pandas, or the same library call on
the plain warehouse with the scope's teams as an ordinary filter.
"""

from __future__ import annotations

import ast
import json
import shutil
import threading
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

import cs_metrics
from cs_metrics import Filters, Warehouse, query
from cs_metrics.analysis.feedback import feedback_breakdown, latest_comments, score_distributions
from cs_metrics.core.access import LOCAL, Scope, ScopedWarehouse, resolve_scope, scoped
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import haversine_km
from cs_metrics.core.settings import AccessSettings, load_settings
from cs_metrics.metrics.drilldown import ticket_page
from tests.conftest import REPO

LEAD = "lee@example.com"
REP = "rob@example.com"
FEB = (date(2025, 2, 1), date(2025, 3, 1))  # "last-month" of the sample
RAW_TABLES = ("tickets", "tickets_src", "feedback", "feedback_facts", "ticket_events",
              "customers", "comment_sentiment", "representatives")


# --- the data and the scopes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(sample_db) -> Warehouse:
    wh = Warehouse(sample_db, read_only=True)
    yield wh
    wh.close()


@pytest.fixture(scope="module")
def full(plain) -> dict[str, pd.DataFrame]:
    """Every table the scope rules cover, read whole through the plain warehouse."""
    return {t: plain.df(f"select * from {t}") for t in RAW_TABLES}


@pytest.fixture(scope="module")
def teams(plain) -> tuple[tuple[str, str], str]:
    """Two real teams for the team lead (not the biggest), and the biggest as "another"."""
    names = plain.dimension_values("team")
    assert len(names) >= 4
    return (names[1], names[3]), names[0]


@pytest.fixture(scope="module")
def mine(teams) -> tuple[str, str]:
    return teams[0]


@pytest.fixture(scope="module")
def other(teams) -> str:
    return teams[1]


@pytest.fixture(scope="module")
def lead(plain, mine) -> Warehouse:
    wh = scoped(plain, Scope("team_lead", LEAD, teams=mine))
    yield wh
    wh.close()


@pytest.fixture(scope="module")
def rep_id(full, mine) -> str:
    """The busiest representative of the lead's first team."""
    t = full["tickets"]
    counts = t[t["team"] == mine[0]].groupby("rep_id").size().sort_values(ascending=False)
    return str(counts.index[0])


@pytest.fixture(scope="module")
def rep(plain, rep_id) -> Warehouse:
    wh = scoped(plain, Scope("representative", REP, rep_id=rep_id))
    yield wh
    wh.close()


def _in(full, teams) -> pd.DataFrame:
    """Tickets of ``teams``, test tickets included (as the raw table holds them)."""
    t = full["tickets"]
    return t[t["team"].isin(teams)]


def _counted(full, teams) -> pd.DataFrame:
    """Tickets of ``teams`` as the registry counts them: test tickets left out."""
    t = _in(full, teams)
    return t[~t["is_test"]]


def _team_filter(teams, **kw) -> Filters:
    return Filters.build(team=list(teams), **kw)


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.sort_values(by).reset_index(drop=True)


# --- 1. who gets which scope --------------------------------------------------------------------

SETTINGS = """
[access]
admins = ["Ada@Example.com", "group:cs-admins"]
managers = ["mia@example.com", "group:cs-managers"]
customer_details = ["admin"]
[access.team_leads]
"Lee@Example.com" = ["Alpha"]
"group:leads-beta" = ["Beta", "Gamma"]
"tia@example.com" = "Gamma"
[access.representatives]
"rob@example.com" = "R0004"
"group:night-shift" = "R0009"
"""


@pytest.fixture(scope="module")
def access(tmp_path_factory) -> AccessSettings:
    path = tmp_path_factory.mktemp("access") / "settings.toml"
    path.write_text(SETTINGS, encoding="utf-8")
    return load_settings(path).access


@pytest.mark.parametrize(("email", "groups", "role", "teams", "rep", "details"), [
    ("ada@example.com", [], "admin", None, None, True),
    ("  ADA@example.COM ", [], "admin", None, None, True),  # any case, spaces trimmed
    ("x@example.com", ["cs-admins"], "admin", None, None, True),
    ("mia@example.com", [], "manager", None, None, False),
    (None, ["cs-managers"], "manager", None, None, False),
    ("lee@example.com", [], "team_lead", ("Alpha",), None, False),
    ("LEE@EXAMPLE.COM", [], "team_lead", ("Alpha",), None, False),
    ("x@example.com", ["leads-beta"], "team_lead", ("Beta", "Gamma"), None, False),
    ("tia@example.com", [], "team_lead", ("Gamma",), None, False),  # one team as a string
    # several entries: the union of their teams, each once
    ("lee@example.com", ["leads-beta"], "team_lead", ("Alpha", "Beta", "Gamma"), None, False),
    ("tia@example.com", ["leads-beta"], "team_lead", ("Beta", "Gamma"), None, False),
    ("rob@example.com", [], "representative", (), "R0004", False),
    ("x@example.com", ["night-shift"], "representative", (), "R0009", False),
    # the widest role wins
    ("lee@example.com", ["cs-managers"], "manager", None, None, False),
    ("mia@example.com", ["cs-admins"], "admin", None, None, True),
    ("rob@example.com", ["leads-beta"], "team_lead", ("Beta", "Gamma"), None, False),
    ("ada@example.com", ["night-shift", "leads-beta"], "admin", None, None, True),
])
def test_roles_resolve_from_the_settings(access, email, groups, role, teams, rep, details):
    scope = resolve_scope(email, groups, access)
    assert scope is not None
    assert (scope.role, scope.teams, scope.rep_id, scope.customer_details) == \
        (role, teams, rep, details)
    assert scope.full == (role in ("admin", "manager"))


@pytest.mark.parametrize(("email", "groups"), [
    ("nobody@example.com", []),
    ("nobody@example.com", ["some-other-group"]),
    (None, []),
    ("", []),
    ("lee@example.org", []),  # another domain is another person
    ("x@example.com", ["Alpha"]),  # a team name is not a group
])
def test_unknown_people_get_no_scope(access, email, groups):
    assert resolve_scope(email, groups, access) is None


def test_resolve_scope_reads_a_settings_object_too(access, tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS, encoding="utf-8")
    settings = load_settings(path)
    assert resolve_scope("lee@example.com", (), settings) == \
        resolve_scope("lee@example.com", (), access)
    assert resolve_scope("ada@example.com", (), settings).actor == "ada@example.com"


def test_customer_details_follow_the_roles_listed(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text(SETTINGS.replace('customer_details = ["admin"]',
                                     'customer_details = ["manager", "team_lead"]'))
    access = load_settings(path).access
    assert not resolve_scope("ada@example.com", (), access).customer_details
    assert resolve_scope("mia@example.com", (), access).customer_details
    assert resolve_scope("lee@example.com", (), access).customer_details
    assert not resolve_scope("rob@example.com", (), access).customer_details


@pytest.mark.parametrize(("section", "message"), [
    ('[access]\nadmins = ["lee"]', "neither an e-mail address nor group:NAME"),
    ('[access]\nmanagers = ["group:  "]', "empty group name"),
    ('[access.team_leads]\n"lee@example.com" = []', "non-empty list of team names"),
    ('[access.team_leads]\n"lee@example.com" = ["Alpha", " "]', "non-empty list of team names"),
    ('[access.team_leads]\n"lee@example.com" = 3', "non-empty list of team names"),
    ('[access.team_leads]\n"lee" = ["Alpha"]', "neither an e-mail address nor group:NAME"),
    ('[access.representatives]\n"rob@example.com" = ""', "must be a rep_id string"),
    ('[access.representatives]\n"rob@example.com" = ["R1"]', "must be a rep_id string"),
    ('[access]\ncustomer_details = ["boss"]', "unknown values ['boss']"),
    ('[access]\nowners = ["ada@example.com"]', "unknown keys ['owners']"),
    ('[access]\nadmins = "ada@example.com"', "a list of strings"),
    ('[access]\nteam_leads = ["lee@example.com"]', "a table of identity"),
])
def test_bad_access_settings_are_explained(tmp_path, section, message):
    path = tmp_path / "settings.toml"
    path.write_text(section + "\n", encoding="utf-8")
    with pytest.raises(CsMetricsError, match=None) as err:
        load_settings(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)  # the file to fix is named


def test_a_scope_checks_its_role_and_representative():
    with pytest.raises(CsMetricsError, match="Unknown role 'boss'"):
        Scope("boss", "x@example.com")
    with pytest.raises(CsMetricsError, match="needs their rep_id"):
        Scope("representative", "x@example.com")
    with pytest.raises(CsMetricsError, match="Unknown permission"):
        LOCAL.may("fly")
    lead = Scope("team_lead", LEAD, teams=("A",))
    assert not lead.may("view_audit") and not lead.may("view_quality")
    assert Scope("admin", "a@example.com").may("view_audit")
    assert not Scope("manager", "m@example.com").may("view_audit")


# --- 2. a team lead ------------------------------------------------------------------------------


def test_every_registry_metric_is_the_filtered_figure(plain, lead, mine):
    names = list(cs_metrics.METRICS)
    f = _team_filter(mine)
    pd.testing.assert_frame_equal(query(lead, names), query(plain, names, filters=f))
    pd.testing.assert_frame_equal(
        _sorted(query(lead, names, by=["team"]), ["team"]),
        _sorted(query(plain, names, by=["team"], filters=f), ["team"]))
    pd.testing.assert_frame_equal(
        query(lead, names, grain="week"), query(plain, names, grain="week", filters=f))
    # and the scope really narrows: the whole warehouse counts more
    assert query(plain, ["ticket_count"])["ticket_count"].iloc[0] > \
        query(lead, ["ticket_count"])["ticket_count"].iloc[0]


def test_counts_csat_and_first_response_equal_pandas(lead, full, mine):
    t = _counted(full, mine)
    fb = full["feedback"].merge(t[["ticket_id", "team"]], on="ticket_id")
    minutes = (t["first_response_at"] - t["created_at"]).dt.total_seconds() / 60
    names = ["ticket_count", "csat_avg", "avg_first_response_min"]
    overall = query(lead, names).iloc[0]
    assert overall["ticket_count"] == len(t) > 0
    assert overall["csat_avg"] == pytest.approx(fb["csat"].mean())
    assert overall["avg_first_response_min"] == pytest.approx(minutes.mean())
    by = query(lead, names, by=["team"]).set_index("team")
    assert set(by.index) == set(mine)
    for team in mine:
        rows = t[t["team"] == team]
        assert by.at[team, "ticket_count"] == len(rows)
        assert by.at[team, "csat_avg"] == pytest.approx(fb[fb["team"] == team]["csat"].mean())
        assert by.at[team, "avg_first_response_min"] == \
            pytest.approx(minutes[t["team"] == team].mean())


def test_a_crafted_filter_cannot_widen_the_scope(lead, full, mine, other):
    for f in (Filters.build(team=[other]), Filters.build(team=[other], channel=["email"])):
        got = query(lead, ["ticket_count"], filters=f)
        assert got["ticket_count"].sum() == 0
        assert query(lead, ["ticket_count"], by=["team"], filters=f).empty
    # naming another team beside one's own gives one's own only
    both = query(lead, ["ticket_count"], filters=Filters.build(team=[other, mine[0]]))
    assert both["ticket_count"].iloc[0] == len(_counted(full, mine[:1]))
    # another team's manager or representative finds nothing either
    t = full["tickets"]
    outsider = t[(t["team"] == other) & t["rep_id"].notna()].iloc[0]
    checked = 0
    for dim in ("manager", "rep_id", "rep_name"):
        if t[t["team"].isin(mine)][dim].eq(outsider[dim]).any():
            continue  # shared with the lead's teams: not a stranger's value
        f = Filters.build(**{dim: [outsider[dim]]})
        assert query(lead, ["ticket_count"], filters=f)["ticket_count"].sum() == 0
        assert ticket_page(lead, f).total == 0
        checked += 1
    assert checked >= 2


def test_filter_lists_hold_only_the_scope(plain, lead, full, mine):
    assert sorted(lead.dimension_values("team")) == sorted(mine)
    reps = set(_counted(full, mine)["rep_id"].dropna())
    assert set(lead.dimension_values("rep_id")) == reps
    # ordered by the scope's own counts (most tickets first, then by value)
    counts = _counted(full, mine)["channel"].value_counts()
    expected = sorted(counts.index, key=lambda v: (-counts[v], v))
    assert lead.dimension_values("channel") == expected
    assert set(plain.dimension_values("team")) > set(mine)


def test_ticket_lists_stay_in_scope(lead, full, mine, other):
    page = ticket_page(lead, Filters(), limit=1000)
    counted = _counted(full, mine)
    assert page.total == len(counted)
    assert set(page.rows["team"]) <= set(mine)
    rest = ticket_page(lead, Filters(), limit=1000, offset=1000)
    listed = set(page.rows["ticket_id"]) | set(rest.rows["ticket_id"])
    while rest.has_next:
        rest = ticket_page(lead, Filters(), limit=1000, offset=rest.offset + 1000)
        listed |= set(rest.rows["ticket_id"])
    assert listed == set(counted["ticket_id"])
    for kw in ({"extra": {"team": other}}, {"extra": {"team": None}}):
        crafted = ticket_page(lead, Filters(), **kw)
        assert crafted.total == 0 and crafted.rows.empty
    assert ticket_page(lead, Filters.build(team=[other])).total == 0
    backlog = ticket_page(lead, Filters(), open_at=lead.as_of(), limit=1000)
    assert set(backlog.rows["team"]) <= set(mine)
    assert backlog.total == query(lead, ["backlog"])["backlog"].iloc[0]


@pytest.mark.parametrize("name", [*RAW_TABLES, "main.tickets", "main.tickets_src",
                                  "main.feedback"])
def test_raw_sql_sees_only_rows_in_scope(lead, full, mine, name):
    table = name.removeprefix("main.")
    got = lead.df(f"select * from {name}")
    tickets = _in(full, mine)
    ids = set(tickets["ticket_id"])
    if table in ("tickets", "tickets_src"):
        expected = tickets
    elif table in ("feedback", "ticket_events"):
        expected = full[table][full[table]["ticket_id"].isin(ids)]
    elif table == "feedback_facts":
        expected = full[table][full[table]["team"].isin(mine)]
    elif table == "customers":
        expected = full[table][full[table]["customer_id"].isin(set(tickets["customer_id"]))]
    elif table == "comment_sentiment":
        comments = set(full["feedback"][full["feedback"]["ticket_id"].isin(ids)]["comment"])
        expected = full[table][full[table]["comment"].isin(comments)]
    else:
        expected = full[table][full[table]["team"].isin(mine)]
    assert len(got) == len(expected) > 0
    assert len(got) < len(full[table])
    assert list(got.columns) == list(full[table].columns)
    key = {"customers": "customer_id", "comment_sentiment": "comment",
           "representatives": "rep_id", "feedback": "feedback_id",
           "feedback_facts": "feedback_id"}.get(table)
    if key is not None:
        assert set(got[key]) == set(expected[key])
    elif table == "ticket_events":
        assert sorted(map(tuple, got[["ticket_id", "event_at"]].astype(str).values)) == \
            sorted(map(tuple, expected[["ticket_id", "event_at"]].astype(str).values))
    else:
        assert set(got["ticket_id"]) == ids


def test_raw_sql_naming_another_team_finds_nothing(lead, other):
    for sql in ("select count(*) from tickets where team = ?",
                "select count(*) from main.tickets where team = ?",
                "select count(*) from feedback_facts where team = ?",
                "select count(*) from representatives where team = ?",
                "select count(*) from tickets_src s join tickets t using (ticket_id) "
                "where t.team = ?"):
        assert lead.scalar(sql, [other]) == 0


@pytest.fixture()
def writable(sample_db, tmp_path) -> Warehouse:
    """A copy of the sample, open read-write, with the private tables filled."""
    db = tmp_path / "wh.duckdb"
    shutil.copy(sample_db, db)
    wh = Warehouse(db)
    yield wh
    wh.close()


def _fill_private(wh: Warehouse, inside: str, outside: str, other: str) -> None:
    from cs_metrics.ops.notify import ensure_deliveries_table

    con = wh.connection()
    con.execute("insert into rejects by name select 'tickets' as table_name, "
                "'bad_date' as reason, 'T-x,2025-13-01' as raw")
    con.execute("create table audit_log (seq integer, actor varchar, action varchar)")
    con.execute("insert into audit_log values (1, 'ada@example.com', 'export')")
    ensure_deliveries_table(con)
    cols = [r[0] for r in con.execute("describe alert_deliveries").fetchall()]
    con.execute(f"insert into alert_deliveries ({cols[0]}) values ('x')")
    con.execute("create table alerts (alert_id varchar, rule varchar, title varchar)")
    con.executemany("insert into alerts values (?, ?, ?)", [
        ("outage:O0001", "outage", "public"),
        (f"ticket_reopened:{inside}", "ticket_reopened", "mine"),
        (f"ticket_reopened:{outside}", "ticket_reopened", "theirs"),
        (f"csat_drop:{other}", "csat_drop", "team figure"),
    ])


def test_private_tables_follow_the_role(writable, full, mine, other):
    inside = _counted(full, mine)["ticket_id"].iloc[0]
    outside = _counted(full, [other])["ticket_id"].iloc[0]
    _fill_private(writable, inside, outside, other)
    counts = {}
    for role in ("team_lead", "manager", "admin"):
        wh = scoped(writable, Scope(role, "x@example.com",
                                    teams=mine if role == "team_lead" else None))
        counts[role] = {t: wh.scalar(f"select count(*) from {t}")
                        for t in ("rejects", "audit_log", "alert_deliveries")}
        counts[role]["alerts"] = sorted(wh.df("select title from alerts")["title"])
        wh.close()
    assert counts["team_lead"] == {"rejects": 0, "audit_log": 0, "alert_deliveries": 0,
                                   "alerts": ["mine", "public"]}
    everything = ["mine", "public", "team figure", "theirs"]
    assert counts["manager"] == {"rejects": 1, "audit_log": 0, "alert_deliveries": 1,
                                 "alerts": everything}
    assert counts["admin"] == {"rejects": 1, "audit_log": 1, "alert_deliveries": 1,
                               "alerts": everything}


def test_a_table_created_later_is_not_readable(writable, mine, monkeypatch):
    monkeypatch.setattr(ScopedWarehouse, "_RECHECK_S", 3600.0)  # no second look yet
    wh = scoped(writable, Scope("team_lead", LEAD, teams=mine))
    assert wh.scalar("select count(*) from tickets") > 0  # views in place
    writable.connection().execute(
        "create table payroll as select 'Alice' as rep_name, 99000 as salary")
    assert not wh.has_table("payroll")
    for name in ("payroll", "main.payroll"):
        with pytest.raises(CsMetricsError, match="payroll"):
            wh.df(f"select * from {name}")
    # once the connection looks again, the new table is shadowed by an empty view
    monkeypatch.setattr(ScopedWarehouse, "_RECHECK_S", 0.0)
    assert wh.has_table("payroll")
    assert wh.df("select * from payroll").empty
    assert wh.df("select * from main.payroll").empty
    assert len(writable.df("select * from payroll")) == 1
    wh.close()


def test_a_new_connection_makes_its_views_whatever_the_machines_uptime(writable, mine,
                                                                      monkeypatch):
    """time.monotonic() starts near 0 when the machine boots: a new connection must look at
    the tables on first use even when the clock is smaller than the recheck interval."""
    from types import SimpleNamespace

    import cs_metrics.core.access as access_module

    clock = SimpleNamespace(now=5.0)  # five seconds after boot
    monkeypatch.setattr(access_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    monkeypatch.setattr(ScopedWarehouse, "_RECHECK_S", 3600.0)
    want = writable.scalar("select count(*) from tickets where team in (?, ?)", list(mine))
    wh = scoped(writable, Scope("team_lead", LEAD, teams=mine))
    try:
        assert wh.scalar("select count(*) from tickets") == want
        writable.connection().execute("create table payroll as select 99000 as salary")
        clock.now = 5.0 + 3599.0  # not yet due: the new table is out of reach
        with pytest.raises(CsMetricsError, match="payroll"):
            wh.df("select * from payroll")
        clock.now = 5.0 + 3600.0  # due: shadowed by an empty view
        assert wh.df("select * from payroll").empty
    finally:
        wh.close()


def test_runs_on_new_threads_reuse_a_connection_and_its_views(writable, mine, monkeypatch):
    """Streamlit runs every script run on a new thread: the scoped connection and its views
    outlive the thread, for the next run, and follow the warehouse's tables and columns."""
    monkeypatch.setattr(ScopedWarehouse, "_RECHECK_S", 0.0)  # look at the tables every time
    wh = scoped(writable, Scope("team_lead", LEAD, teams=mine))
    expected = writable.scalar("select count(*) from tickets where team in (?, ?)", list(mine))
    seen: list[tuple[int, int]] = []
    made: list[int] = []
    real_view = ScopedWarehouse._view

    def counting_view(self, *args, **kwargs):
        made.append(1)
        return real_view(self, *args, **kwargs)

    monkeypatch.setattr(ScopedWarehouse, "_view", counting_view)

    def run(sql: str = "select count(*) from tickets") -> None:
        seen.append((id(wh.connection()), wh.scalar(sql)))

    def in_thread(target, *args) -> None:
        thread = threading.Thread(target=target, args=args)
        thread.start()
        thread.join()

    for _ in range(4):
        in_thread(run)
    assert [count for _, count in seen] == [expected] * 4
    assert len({con for con, _ in seen}) == 1  # one connection, handed from run to run
    first_views = len(made)
    assert first_views == len(writable.tables()) and first_views > 5  # made once

    # a run that stops inside a transaction leaves none open for the next
    def stuck() -> None:
        wh.connection().execute("begin")

    in_thread(stuck)
    in_thread(run)
    assert seen[-1][1] == expected
    in_thread(lambda: wh.connection().execute("begin").execute("commit"))

    # the catalog (views and their columns) is read once and handed on with the connection
    catalog: list[tuple[bool, bool, tuple[str, ...]]] = []

    def look() -> None:
        catalog.append((wh.has_table("tickets"), wh.has_table("scratch"),
                        tuple(wh.columns("outages"))))

    in_thread(look)
    in_thread(look)
    assert catalog[0] == catalog[1] and catalog[0][:2] == (True, False)
    assert "note" not in catalog[0][2]
    reads: list[object] = []
    real_read = ScopedWarehouse._lease_catalog

    def counting_read(self, key, read):
        return real_read(self, key, lambda con: reads.append(key) or read(con))

    monkeypatch.setattr(ScopedWarehouse, "_lease_catalog", counting_read)
    in_thread(look)
    assert reads == []  # the next run asks nothing of the database

    # a column added to a table: the views are made again, with it
    writable.connection().execute("alter table outages add column note varchar")
    in_thread(run, "select count(*) from outages where note is null")
    assert len(made) > first_views
    in_thread(look)
    assert "note" in catalog[-1][2] and ("columns", "outages") in reads
    # a table dropped: its view goes too, so it cannot be read through a stale view
    writable.connection().execute("create table scratch as select 1 as a")
    in_thread(run, "select count(*) from scratch")
    assert seen[-1][1] == 0  # a new table's rows are out of scope
    in_thread(look)
    assert catalog[-1][1]
    writable.connection().execute("drop table scratch")
    in_thread(look)
    assert not catalog[-1][1]
    errors: list[Exception] = []

    def gone() -> None:
        try:
            wh.scalar("select count(*) from scratch")
        except CsMetricsError as exc:
            errors.append(exc)

    in_thread(gone)
    assert len(errors) == 1 and "scratch" in str(errors[0])
    writable.connection().execute("alter table outages drop column note")
    wh.close()
    assert wh._pool == []  # closed with its idle connections


def test_another_thread_is_scoped_as_well(lead, full, mine):
    seen = {}

    def count() -> None:
        seen["tickets"] = lead.scalar("select count(*) from tickets")
        seen["team"] = lead.dimension_values("team")

    thread = threading.Thread(target=count)
    thread.start()
    thread.join()
    assert seen["tickets"] == len(_in(full, mine))
    assert sorted(seen["team"]) == sorted(mine)


def test_a_scoped_warehouse_cannot_be_scoped_again(lead, plain, mine):
    with pytest.raises(CsMetricsError, match="cannot be scoped again"):
        ScopedWarehouse(lead, Scope("manager", "m@example.com"))
    assert lead.base is plain
    # scoped() always starts from the base: a second scope replaces, never nests
    again = scoped(lead, Scope("team_lead", LEAD, teams=mine[:1]))
    assert again.base is plain
    assert again.dimension_values("team") == [mine[0]]
    again.close()


# --- 3. a representative ------------------------------------------------------------------------


def test_a_representative_sees_their_team_without_colleagues_names(rep, rep_id, full, mine):
    assert rep.scope.teams == (mine[0],)
    team = _counted(full, mine[:1])
    reps = full["representatives"].set_index("rep_id")["name"]
    board = query(rep, ["ticket_count"], by=["rep_id", "rep_name"])
    own = board[board["rep_id"] == rep_id]
    assert len(own) == 1
    assert own["rep_name"].iloc[0] == reps[rep_id]
    assert own["ticket_count"].iloc[0] == (team["rep_id"] == rep_id).sum()
    others = board[(board["rep_id"] != rep_id) & board["rep_id"].notna()]
    assert len(others) > 0
    assert others["rep_id"].str.startswith("colleague-").all()
    assert others["rep_name"].str.startswith("Colleague ").all()
    assert not set(board["rep_name"].dropna()) & (set(reps.drop(rep_id)))
    assert not set(board["rep_id"].dropna()) & (set(reps.index) - {rep_id})
    # the team's figures are whole: same total, same counts per (unnamed) colleague
    assert board["ticket_count"].sum() == len(team)
    expected = team[team["rep_id"].notna() & (team["rep_id"] != rep_id)]
    assert sorted(others["ticket_count"]) == sorted(expected.groupby("rep_id").size())
    assert query(rep, ["ticket_count"])["ticket_count"].iloc[0] == len(team)
    # the pseudonyms hold from one query and one warehouse to the next
    again = scoped(rep.base, Scope("representative", REP, rep_id=rep_id))
    pd.testing.assert_frame_equal(
        _sorted(board, ["rep_id"]),
        _sorted(query(again, ["ticket_count"], by=["rep_id", "rep_name"]), ["rep_id"]))
    again.close()


def test_a_representative_finds_no_colleague_by_real_id_or_name(rep, rep_id, full, mine, other):
    t = _counted(full, mine[:1])
    colleague = t[t["rep_id"].notna() & (t["rep_id"] != rep_id)].iloc[0]
    for f in (Filters.build(rep_id=[colleague["rep_id"]]),
              Filters.build(rep_name=[colleague["rep_name"]]),
              Filters.build(team=[other])):
        assert query(rep, ["ticket_count"], filters=f)["ticket_count"].sum() == 0
    names = set(full["representatives"]["name"])
    own_name = full["representatives"].set_index("rep_id").at[rep_id, "name"]
    for table, col in (("tickets", "rep_name"), ("feedback_facts", "rep_name"),
                       ("representatives", "name")):
        shown = set(rep.df(f"select distinct {col} from {table}")[col].dropna())
        assert shown & names <= {own_name}, table
    for table in ("tickets", "ticket_events", "feedback_facts", "representatives",
                  "tickets_src"):
        ids = set(rep.df(f"select distinct rep_id from {table}")["rep_id"].dropna())
        assert rep_id in ids
        assert all(i == rep_id or i.startswith("colleague-") for i in ids), table


def test_a_representative_lists_only_their_own_tickets(rep, rep_id, full, mine):
    own = _counted(full, mine[:1])
    own = own[own["rep_id"] == rep_id]
    page = ticket_page(rep, Filters(), limit=1000)
    assert page.total == len(own) > 0
    assert set(page.rows["ticket_id"]) <= set(own["ticket_id"])
    assert len(page.rows) == min(1000, len(own))
    name = full["representatives"].set_index("rep_id").at[rep_id, "name"]
    assert set(page.rows["rep_name"]) == {name}
    # a colleague's pseudonym as a filter lists nothing
    colleague = next(r for r in rep.dimension_values("rep_id") if r != rep_id)
    assert ticket_page(rep, Filters.build(rep_id=[colleague])).total == 0
    assert ticket_page(rep, Filters(), extra={"rep_id": colleague}).total == 0


def test_a_representative_reads_only_their_own_comments(rep, rep_id, full, mine):
    own = _counted(full, mine[:1])
    own_ids = set(own[own["rep_id"] == rep_id]["ticket_id"])
    fb = full["feedback"]
    expected = fb[fb["ticket_id"].isin(own_ids) & fb["comment"].notna()
                  & (fb["comment"].str.strip() != "")]
    page = latest_comments(rep, limit=200)
    assert page.total == len(expected) > 0
    assert set(page.rows["ticket_id"]) <= own_ids
    assert set(page.rows["rep_name"]) == {
        full["representatives"].set_index("rep_id").at[rep_id, "name"]}


def test_a_representatives_other_ticket_lists_are_their_own(writable, full, mine, rep_id):
    """At-risk tickets and an outage's tickets: their team's colleagues have some too (made
    so in a copy of the sample), yet the representative lists only their own."""
    from cs_metrics.analysis.outages import outage_impact, outage_tickets
    from cs_metrics.metrics.live import at_risk_tickets, live_snapshot

    t = _counted(full, mine[:1])
    t = t[t["rep_id"].notna()]
    own = t[t["rep_id"] == rep_id]["ticket_id"].tolist()
    theirs = t[t["rep_id"] != rep_id]["ticket_id"].tolist()
    waiting, located = own[:3] + theirs[:3], own[3:6] + theirs[3:6]
    con = writable.connection()
    marks = ", ".join("?" for _ in waiting)
    con.execute(
        "update tickets set status = 'open', first_response_at = null, created_at = "
        "cast(? as timestamp) - to_microseconds(cast(0.9 * sla_first_response_target_min "
        f"* 60000000 as bigint)) where ticket_id in ({marks})", [writable.as_of(), *waiting])
    # the stored deadline moves with the creation time (the target is in elapsed time)
    con.execute(
        "update tickets set sla_first_response_deadline = created_at + to_microseconds("
        "cast(sla_first_response_target_min * 60000000 as bigint)) "
        f"where ticket_id in ({marks})", waiting)
    o = writable.df("select * from outages order by outage_id limit 1").iloc[0]
    con.execute(
        "update tickets set created_at = ?, location_lat = ?, location_lon = ? "
        f"where ticket_id in ({marks})",
        [o["started_at"] + pd.Timedelta(minutes=10), o["lat"], o["lon"], *located])
    wh = scoped(writable, Scope("representative", REP, rep_id=rep_id))
    lead = scoped(writable, Scope("team_lead", LEAD, teams=mine[:1]))

    team_risk = set(at_risk_tickets(lead, limit=500)["ticket_id"])
    assert set(waiting) <= team_risk
    assert set(at_risk_tickets(wh, limit=500)["ticket_id"]) == team_risk & set(own)
    assert live_snapshot(wh).waiting == live_snapshot(lead).waiting >= 6  # a team figure

    team_page = set(outage_tickets(lead, o["outage_id"], limit=1000).rows["ticket_id"])
    assert set(located) <= team_page
    page = outage_tickets(wh, o["outage_id"], limit=1000)
    assert set(page.rows["ticket_id"]) == team_page & set(own)
    assert page.total == len(team_page & set(own)) >= 3
    impact = outage_impact(wh).set_index("outage_id")
    assert impact.at[o["outage_id"], "tickets_in_window"] == \
        outage_impact(lead).set_index("outage_id").at[o["outage_id"], "tickets_in_window"] >= 6
    wh.close()
    lead.close()


def test_an_unknown_representative_sees_nothing(plain):
    wh = scoped(plain, Scope("representative", REP, rep_id="R9999"))
    assert wh.scope.teams == ()
    assert query(wh, ["ticket_count"])["ticket_count"].sum() == 0
    assert wh.scalar("select count(*) from tickets") == 0
    assert wh.scalar("select count(*) from customers") == 0
    wh.close()


# --- 4. the other library paths -----------------------------------------------------------------


def test_reports_hold_the_scope(lead, plain, full, mine, other):
    from cs_metrics.ops.reports import build_report

    report = build_report(lead, "executive", "last-month")
    kpis = report.kpis.df.set_index("metric")
    feb = _team_filter(mine, date_from=FEB[0], date_to=FEB[1])
    counted = _counted(full, mine)
    in_feb = counted[(counted["created_at"] >= pd.Timestamp(FEB[0]))
                     & (counted["created_at"] < pd.Timestamp(FEB[1]))]
    assert kpis.at["ticket_count", "value"] == len(in_feb)
    assert kpis.at["ticket_count", "value"] == \
        query(plain, ["ticket_count"], filters=feb)["ticket_count"].iloc[0]
    assert set(report.teams.df["team"]) <= set(mine)
    strangers = set(full["representatives"]["rep_id"]) - set(_in(full, mine)["rep_id"])
    assert not set(report.representatives.df["rep_id"]) & strangers
    data = json.dumps(report.to_dict())
    names = full["representatives"]
    for name in names[~names["team"].isin(mine)]["name"]:
        assert name not in data
    # a team report on one's own team, not on another's
    team = build_report(lead, "team", "last-month", team=mine[0])
    assert team.kpis.df.set_index("metric").at["ticket_count", "value"] == \
        (in_feb["team"] == mine[0]).sum()
    with pytest.raises(CsMetricsError, match="no team or manager"):
        build_report(lead, "team", "last-month", team=other)


def test_a_representatives_report_is_their_own(rep, rep_id, full, mine):
    from cs_metrics.ops.reports import build_report, render

    t = _counted(full, mine[:1])
    feb = t[(t["created_at"] >= pd.Timestamp(FEB[0])) & (t["created_at"] < pd.Timestamp(FEB[1]))]
    report = build_report(rep, "representative", "last-month", rep=rep_id)
    kpis = report.kpis.df.set_index("metric")
    assert kpis.at["ticket_count", "value"] == (feb["rep_id"] == rep_id).sum()
    assert kpis.at["ticket_count", "team"] == len(feb)  # the team's own figure, whole
    colleague = t[t["rep_id"].notna() & (t["rep_id"] != rep_id)]["rep_id"].iloc[0]
    with pytest.raises(CsMetricsError, match="no representative"):
        build_report(rep, "representative", "last-month", rep=colleague)
    team = build_report(rep, "team", "last-month", team=mine[0])
    board = team.representatives.df
    assert set(board["rep_id"]) - {rep_id} and \
        all(r.startswith("colleague-") for r in set(board["rep_id"]) - {rep_id})
    assert board["ticket_count"].sum() == feb["rep_id"].notna().sum()
    # the exported files: HTML, Markdown and JSON name no colleague
    out = render(team)
    reps = full["representatives"]
    colleagues = reps[reps["rep_id"] != rep_id]
    for text in (out.html, out.markdown, out.json_text):
        assert not [n for n in colleagues["name"] if n in text]
        assert not [r for r in colleagues["rep_id"] if r in text]


def test_outages_count_only_tickets_in_scope(lead, plain, mine):
    from cs_metrics.analysis.outages import outage_impact, outage_tickets

    got = outage_impact(lead).set_index("outage_id")
    expected = outage_impact(plain, _team_filter(mine)).set_index("outage_id")
    assert len(got) > 0
    assert got["tickets_in_window"].to_dict() == expected["tickets_in_window"].to_dict()
    assert got["tickets_in_window"].sum() < \
        outage_impact(plain).set_index("outage_id")["tickets_in_window"].sum()
    busiest = got["tickets_in_window"].idxmax()
    page = outage_tickets(lead, busiest, limit=1000)
    assert page.total == outage_tickets(plain, busiest, _team_filter(mine), limit=1000).total
    assert page.total == got.at[busiest, "tickets_in_window"] > 0
    assert set(page.rows["team"]) <= set(mine)


def test_the_live_panel_counts_only_the_scope(lead, plain, full, mine):
    from cs_metrics.metrics.live import at_risk_tickets, live_snapshot

    assert live_snapshot(lead) == live_snapshot(plain, _team_filter(mine))
    assert live_snapshot(lead).open_now < live_snapshot(plain).open_now
    got = at_risk_tickets(lead, limit=500)
    pd.testing.assert_frame_equal(got, at_risk_tickets(plain, _team_filter(mine), limit=500))
    assert set(got["ticket_id"]) <= set(_in(full, mine)["ticket_id"])


def test_leaderboards_hold_the_scope(lead, plain, full, mine):
    from cs_metrics.analysis.leaderboard import leaderboard, mix_summary, rep_trend, unusual

    teams = leaderboard(lead, level="team").set_index("team")
    counted = _counted(full, mine)
    assert teams["ticket_count"].to_dict() == counted.groupby("team").size().to_dict()
    reps = leaderboard(lead, level="rep")
    pd.testing.assert_frame_equal(reps, leaderboard(plain, _team_filter(mine), level="rep"))
    in_scope = set(counted["rep_id"].dropna())
    assert set(mix_summary(lead)["rep_id"]) == in_scope
    assert set(unusual(lead, metric="avg_first_response_min", min_tickets=5)["rep_id"]) <= \
        in_scope
    someone = reps["rep_id"].iloc[0]
    trend = rep_trend(lead, None, someone, "ticket_count")
    assert trend["rep"].sum() == (counted["rep_id"] == someone).sum()
    stranger = (set(full["tickets"]["rep_id"].dropna()) - set(_in(full, mine)["rep_id"])).pop()
    with pytest.raises(CsMetricsError, match="no representative"):
        rep_trend(lead, None, stranger, "ticket_count")


def test_feedback_figures_hold_the_scope(lead, plain, full, mine):
    got = feedback_breakdown(lead, by="team").set_index("team")
    expected = feedback_breakdown(plain, _team_filter(mine), by="team").set_index("team")
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index())
    fb = full["feedback"].merge(_counted(full, mine)[["ticket_id", "team"]], on="ticket_id")
    assert got["feedback_count"].to_dict() == fb.groupby("team").size().to_dict()
    dist = score_distributions(lead)["csat"]
    counts = dict(zip(dist["score"], dist["responses"], strict=True))
    assert {k: v for k, v in counts.items() if v} == fb["csat"].value_counts().to_dict()


def test_seasonality_staffing_flow_and_maps_hold_the_scope(lead, plain, full, mine):
    from cs_metrics.analysis.maps import customer_cells, ticket_density
    from cs_metrics.analysis.seasonality import arrival_heatmap, daily_series
    from cs_metrics.analysis.staffing import current_staffing
    from cs_metrics.metrics.flow import resolved_per_period

    f = _team_filter(mine)
    series = daily_series(lead, Filters())
    pd.testing.assert_series_equal(series, daily_series(plain, f))
    counted = _counted(full, mine)
    days = counted["created_at"].dt.normalize().value_counts()
    assert series.to_dict() == {d: int(days.get(d, 0)) for d in series.index}
    pd.testing.assert_frame_equal(arrival_heatmap(lead, Filters()), arrival_heatmap(plain, f))
    pd.testing.assert_frame_equal(current_staffing(lead, Filters()),
                                  current_staffing(plain, f))
    pd.testing.assert_frame_equal(resolved_per_period(lead, Filters(), "week"),
                                  resolved_per_period(plain, f, "week"))
    density = ticket_density(lead)
    assert density["tickets"].sum() == counted["location_lat"].notna().sum() > 0
    cells = customer_cells(lead)
    cust = full["customers"]
    mine_cust = cust[cust["customer_id"].isin(set(_in(full, mine)["customer_id"]))]
    assert cells["customers"].sum() == mine_cust["lat"].notna().sum() > 0
    assert cells["customers"].sum() < cust["lat"].notna().sum()


def test_comment_analysis_holds_the_scope(lead, plain, full, mine):
    from cs_metrics.analysis.compare import resolution_csat
    from cs_metrics.analysis.sentiment import sentiment_by_csat

    fb = full["feedback"].merge(_counted(full, mine)[["ticket_id"]], on="ticket_id")
    with_comment = fb[fb["comment"].notna() & (fb["comment"].str.strip() != "")]
    model = cs_metrics.comment_topics(lead, k=3, sample=100)
    assert model.total == len(with_comment) > 0
    assert model.total == cs_metrics.comment_topics(plain, _team_filter(mine), k=3,
                                                    sample=100).total
    a, b = sentiment_by_csat(lead), sentiment_by_csat(plain, _team_filter(mine))
    pd.testing.assert_frame_equal(a.table, b.table)
    assert (a.rho, a.n) == (b.rho, b.n)
    assert a.table["comments"].sum() == with_comment["csat"].notna().sum()
    a, b = resolution_csat(lead), resolution_csat(plain, _team_filter(mine))
    pd.testing.assert_frame_equal(a.bands, b.bands)
    assert (a.rho, a.n, a.total) == (b.rho, b.n, b.total)


def test_the_what_if_baseline_comes_from_the_scoped_tickets(lead, plain, full, mine):
    from cs_metrics.analysis.seasonality import daily_series, forecast_daily, forecast_hourly
    from cs_metrics.analysis.whatif import OutageScenario, affected_customers, simulate_outage

    o = plain.df("select lat, lon from outages order by outage_id limit 1").iloc[0]
    lat, lon = float(o["lat"]), float(o["lon"])
    scenario = OutageScenario(start=datetime(2025, 3, 3, 10), hours=3, severity="major",
                              radius_km=40.0, lat=lat, lon=lon)
    result = simulate_outage(lead, scenario, runs=20, seed=3)
    # the baseline: the forecast of the lead's tickets, as the plain warehouse filtered gives
    f = _team_filter(mine)
    hourly = forecast_hourly(plain, f, forecast_daily(daily_series(plain, f), 14))
    expected = hourly.set_index("hour")["arrivals"].reindex(result.hours["hour"])
    assert np.allclose(result.hours["baseline_arrivals"].to_numpy(), expected.to_numpy())
    whole = forecast_hourly(plain, Filters(), forecast_daily(daily_series(plain, Filters()), 14))
    assert result.hours["baseline_arrivals"].sum() < \
        whole.set_index("hour")["arrivals"].reindex(result.hours["hour"]).sum()
    # the customers affected: those of the scope within the radius
    cust = full["customers"]
    cust = cust[cust["customer_id"].isin(set(_in(full, mine)["customer_id"]))
                & cust["lat"].notna()]
    near = haversine_km(lat, lon, cust["lat"].to_numpy(), cust["lon"].to_numpy()) <= 40.0
    assert result.affected_customers == int(near.sum()) == \
        affected_customers(lead, lat, lon, 40.0)
    assert result.affected_customers <= affected_customers(plain, lat, lon, 40.0)


def test_the_quality_report_shows_no_rejected_rows_to_a_team_lead(lead):
    from cs_metrics.ingestion.quality import latest_rejects, quality_report

    assert latest_rejects(lead).empty
    assert quality_report(lead).rejects_by_reason.empty


# --- 5. masking --------------------------------------------------------------------------------


def test_customer_names_need_customer_details(plain, full, mine):
    real = full["customers"].set_index("customer_id")["name"]
    assert real.notna().any()
    for scope in (Scope("team_lead", LEAD, teams=mine), Scope("manager", "m@example.com"),
                  Scope("admin", "a@example.com", customer_details=False)):
        wh = scoped(plain, scope)
        names = wh.df("select customer_id, name from customers")
        assert len(names) > 0 and (names["name"] == "[name]").all(), scope.role
        wh.close()
    for scope in (Scope("admin", "a@example.com", customer_details=True),
                  Scope("team_lead", LEAD, teams=mine, customer_details=True)):
        wh = scoped(plain, scope)
        names = wh.df("select customer_id, name from customers").set_index("customer_id")
        assert names["name"].to_dict() == real.reindex(names.index).to_dict()
        wh.close()
    assert plain.df("select name from customers")["name"].tolist() == \
        full["customers"]["name"].tolist()  # local mode unchanged


def test_comments_are_masked_unless_customer_details(writable, full, mine):
    t = _counted(full, mine)
    fb = full["feedback"]
    target = fb[fb["ticket_id"].isin(set(t["ticket_id"])) & fb["comment"].notna()].iloc[0]
    customer = t.set_index("ticket_id").at[target["ticket_id"], "customer_id"]
    name = full["customers"].set_index("customer_id").at[customer, "name"]
    # the generated comments hold no e-mail address or phone number: add one
    assert not fb["comment"].dropna().str.contains("@").any()
    text = f"This is {name}: write to jane.roe@example.com or call +1 (555) 123-4567."
    newest = fb["submitted_at"].max() + timedelta(hours=1)
    con = writable.connection()
    for table in ("feedback", "feedback_facts"):
        con.execute(f"update {table} set comment = ?, submitted_at = ? where feedback_id = ?",
                    [text, newest, target["feedback_id"]])

    def first(wh: Warehouse) -> str:
        page = latest_comments(wh, limit=5)
        assert page.rows["ticket_id"].iloc[0] == target["ticket_id"]
        return page.rows["comment"].iloc[0]

    masked = "This is [name]: write to [email] or call [phone]."
    lead = scoped(writable, Scope("team_lead", LEAD, teams=mine))
    assert first(lead) == masked
    assert first(writable) == masked  # local mode masks the comments it shows too
    manager = scoped(writable, Scope("manager", "m@example.com"))
    assert first(manager) == masked
    admin = scoped(writable, Scope("admin", "a@example.com", customer_details=True))
    assert first(admin) == text
    for wh in (lead, manager, admin):
        wh.close()


# --- 6. local mode and 7. cache keys -------------------------------------------------------------


def test_local_mode_is_the_plain_warehouse(plain, sample_db, mine):
    names = list(cs_metrics.METRICS)
    before = query(plain, names, by=["team"])
    assert scoped(plain, None) is plain
    assert scoped(plain, LOCAL) is plain
    assert plain.scope is None and plain.base is plain
    assert plain.cache_key == str(sample_db)
    assert plain.listing_sql("t") == ("true", [])
    # scoped warehouses beside it change nothing it sees
    lead = scoped(plain, Scope("team_lead", LEAD, teams=mine))
    query(lead, names, by=["team"])
    pd.testing.assert_frame_equal(query(plain, names, by=["team"]), before)
    assert len(plain.dimension_values("team")) > len(mine)
    assert "tickets" in plain.tables() and plain.scalar(
        "select count(*) from duckdb_views() where temporary and not internal") == 0
    lead.close()
    # the full roles see what local mode sees
    for scope in (Scope("admin", "a@example.com", customer_details=True),
                  Scope("manager", "m@example.com")):
        wh = scoped(plain, scope)
        pd.testing.assert_frame_equal(query(wh, names, by=["team"]), before)
        assert ticket_page(wh, Filters()).total == ticket_page(plain, Filters()).total
        wh.close()


def test_cache_keys_tell_scopes_apart(plain, mine, rep_id):
    def key(scope: Scope) -> str:
        wh = scoped(plain, scope)
        try:
            return wh.cache_key
        finally:
            wh.close()

    a = key(Scope("team_lead", LEAD, teams=mine))
    assert a == key(Scope("team_lead", LEAD, teams=mine))
    assert a == key(Scope("team_lead", "other@example.com", teams=mine))  # same rows
    others = [
        key(Scope("team_lead", LEAD, teams=mine[:1])),
        key(Scope("team_lead", LEAD, teams=mine, customer_details=True)),
        key(Scope("manager", "m@example.com")),
        key(Scope("admin", "a@example.com")),
        key(Scope("admin", "a@example.com", customer_details=True)),
        key(Scope("representative", REP, rep_id=rep_id)),
        plain.cache_key,
    ]
    assert len({a, *others}) == len(others) + 1
    assert all(k.startswith(str(plain.path)) for k in others)


# --- every query goes through Warehouse.connection() ---------------------------------------------

# modules that open connections of their own: the warehouse and the scope themselves, and
# in-memory ones (no path) for reading files
_OWN_CONNECTIONS = {"cs_metrics/core/warehouse.py", "cs_metrics/core/access.py"}


def _bypasses() -> set[tuple[str, str, int]]:
    found = set()
    for folder in ("cs_metrics", "simulations"):
        for path in sorted((REPO / folder).glob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in _OWN_CONNECTIONS:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in ast.walk(tree):
                if not isinstance(fn, ast.FunctionDef):
                    continue
                for node in ast.walk(fn):
                    if not isinstance(node, ast.Call) or \
                            not isinstance(node.func, ast.Attribute):
                        continue
                    cursor = node.func.attr == "cursor"
                    connect = (node.func.attr == "connect"
                               and isinstance(node.func.value, ast.Name)
                               and node.func.value.id == "duckdb" and node.args)
                    if cursor or connect:
                        found.add((rel, fn.name, node.lineno))
    return found


def test_no_library_query_bypasses_the_scoped_connection():
    """DuckDB's ``cursor()`` (like ``duckdb.connect(path)``) is a new connection without the
    scope's temporary views: it would read the whole warehouse."""
    found = _bypasses()
    assert not found, f"queries that bypass Warehouse.connection(): {sorted(found)}"


def test_the_tag_filter_list_holds_only_the_scope(lead, full, mine):
    """A list dimension is counted over the scoped tickets too: a tag once per ticket."""
    tags = _counted(full, mine)["tags"].dropna().explode().dropna()
    assert len(tags) > 0
    counts = tags.value_counts()
    expected = sorted(counts.index, key=lambda v: (-counts[v], v))
    assert lead.dimension_values("tag") == expected

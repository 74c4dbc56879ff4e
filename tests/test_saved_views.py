"""Saved views: the store (per person, per machine, hostile files) and the sidebar's UI."""

from __future__ import annotations

import json
import os
import stat
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import CsMetricsError, Filters, Warehouse, get_metric, query
from cs_metrics.ops.saved_views import (
    MAX_NAME,
    MAX_VIEWS,
    VIEWS_ENV,
    ViewStore,
    clean_name,
    default_path,
    person_key,
)
from simulations import generator
from tests.conftest import REPO

ANA = person_key("ana@example.com", "https://idp.example.com", "sub-1")
BEN = person_key("ben@example.com", "https://idp.example.com", "sub-2")
LOCAL = person_key("local")


@pytest.fixture
def store(tmp_path) -> ViewStore:
    return ViewStore(tmp_path / "conf" / "views.json")


def test_save_list_delete(store):
    assert store.views(ANA).views == () and not store.path.exists()
    view = store.save(ANA, "  Chat\n last\t30 days ", {"range": ["last-30-days"],
                                                        "channel": ["chat", "email"]})
    assert view.name == "Chat last 30 days"
    listed = store.views(ANA)
    assert listed.names == ["Chat last 30 days"] and listed.notes == ()
    assert listed.get("Chat last 30 days").query == {"range": ["last-30-days"],
                                                      "channel": ["chat", "email"]}
    assert view.link("/trends") == "/trends?range=last-30-days&channel=chat&channel=email"
    # the file: private, written whole, keyed by a hash (no identity in it)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    text = store.path.read_text()
    assert "ana@example.com" not in text and ANA in text
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".views.json.")]
    with pytest.raises(CsMetricsError, match="exists already"):
        store.save(ANA, "Chat last 30 days", {"range": ["all-time"]})
    store.save(ANA, "Chat last 30 days", {"range": ["all-time"]}, replace=True)
    assert store.views(ANA).get("Chat last 30 days").query == {"range": ["all-time"]}
    assert store.delete(ANA, "Chat last 30 days") is True
    assert store.delete(ANA, "Chat last 30 days") is False
    assert store.views(ANA).views == ()


def test_people_do_not_see_each_other(store):
    store.save(ANA, "Mine", {"team": ["Billing"]})
    store.save(BEN, "Mine", {"team": ["Network"]})
    assert store.views(ANA).get("Mine").query == {"team": ["Billing"]}
    assert store.views(BEN).get("Mine").query == {"team": ["Network"]}
    assert store.views(LOCAL).views == ()
    store.delete(BEN, "Mine")
    assert store.views(ANA).names == ["Mine"] and store.views(BEN).names == []
    # one address claimed at two providers: two people
    assert person_key("a@x.com", "idp1", "s") != person_key("a@x.com", "idp2", "s")
    assert person_key("A@X.com") == person_key("a@x.com")


def test_per_machine_file(monkeypatch, tmp_path):
    monkeypatch.delenv(VIEWS_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_path() == tmp_path / "cfg" / "cs-metrics" / "saved_views.json"
    monkeypatch.setenv(VIEWS_ENV, str(tmp_path / "elsewhere.json"))
    assert default_path() == tmp_path / "elsewhere.json"
    ViewStore().save(LOCAL, "A", {"range": ["all-time"]})
    assert ViewStore(tmp_path / "elsewhere.json").views(LOCAL).names == ["A"]


def test_names_are_checked(store):
    assert clean_name("a\x00b\u202ec\u200b d") == "abc d"
    for bad in ("", "   ", "\n\t", 7, None, "x" * (MAX_NAME + 1)):
        with pytest.raises(CsMetricsError):
            store.save(LOCAL, bad, {"range": ["all-time"]})
    with pytest.raises(CsMetricsError, match="cannot be saved"):
        store.save(LOCAL, "bad key", {"channel); drop table tickets; --": ["x"]})
    with pytest.raises(CsMetricsError, match="cannot be saved"):
        store.save(LOCAL, "control", {"channel": ["a\nb"]})
    for n in range(MAX_VIEWS):
        store.save(LOCAL, f"v{n}", {"range": ["all-time"]})
    with pytest.raises(CsMetricsError, match="delete one first"):
        store.save(LOCAL, "one too many", {"range": ["all-time"]})
    assert len(store.views(LOCAL).views) == MAX_VIEWS


@pytest.mark.parametrize("content", [
    "{not json", "[]", '{"people": []}', "\x00\x01", '"text"', "[" * 100_000,
])
def test_an_unreadable_file_is_a_note_and_left_alone(store, content):
    store.path.parent.mkdir(parents=True)
    store.path.write_text(content)
    listed = store.views(LOCAL)
    assert listed.views == () and len(listed.notes) == 1
    assert "was not read" in listed.notes[0]
    with pytest.raises(CsMetricsError, match="Move it away"):
        store.save(LOCAL, "A", {"range": ["all-time"]})
    assert store.path.read_text() == content  # nothing overwritten


def test_hostile_entries_are_left_out_with_a_note(store):
    good = {"name": "Good", "params": {"channel": ["chat"]}}
    entries = [
        good,
        {"name": "x" * 10_000, "params": {}},
        {"name": "Unknown dimension", "params": {"password": ["x"]}},
        {"name": "SQL key", "params": {"channel = 'x' or 1=1 --": ["x"]}},
        {"name": "Not a list", "params": {"channel": {"a": 1}}},
        {"name": "Huge value", "params": {"channel": ["x" * 5000]}},
        {"name": ["list"], "params": {}},
        {"name": "Good", "params": {}},  # a duplicate name
        "not a view",
        # plain text that looks like SQL or Markdown is a value like any other: the
        # filters check it against the dataset when the view is opened
        {"name": "**bold** <script>alert(1)</script>",
         "params": {"channel": ["chat'); drop table tickets; --"]}},
    ]
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"version": 1, "people": {LOCAL: entries}}))
    listed = store.views(LOCAL)
    assert listed.names == ["Good", "**bold** <script>alert(1)</script>"]
    assert len(listed.notes) == len(entries) - 2
    assert all(len(n) < 200 for n in listed.notes)
    assert any("unknown parameter 'password'" in n for n in listed.notes)
    # saving keeps the good views, keeps the bad ones as they were written (after the
    # views: nothing is lost), and leaves other people's entries alone
    other = [{"name": "Theirs", "params": {"team": ["Billing"]}, "saved_at": ""}]
    data = json.loads(store.path.read_text())
    data["people"][ANA] = other
    store.path.write_text(json.dumps(data))
    store.save(LOCAL, "New", {"range": ["all-time"]})
    data = json.loads(store.path.read_text())
    saved = data["people"][LOCAL]
    assert [e["name"] for e in saved[:3]] == [
        "Good", "**bold** <script>alert(1)</script>", "New"]
    left_out = [e for e in entries if e not in (entries[0], entries[-1])]
    assert saved[3:] == left_out
    assert data["people"][ANA] == other
    # and they are still left out, with their notes
    assert store.views(LOCAL).names == ["Good", "**bold** <script>alert(1)</script>", "New"]


# --- the sidebar ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("views")
    generator.generate(tmp / "sample", tickets=3000, days=90, seed=21, end=datetime(2025, 3, 1))
    cs_metrics.ingest(tmp / "sample", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


def open_page(monkeypatch, db: Path, views: Path, **params: str | list[str]) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv(VIEWS_ENV, str(views))
    at = AppTest.from_file(str(REPO / "views" / "overview.py"), default_timeout=90)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def tickets_card(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == "Tickets")


def expected_tickets(db: Path, channel: str) -> str:
    """The Tickets card of the default range (the last 90 days of data) and ``channel``."""
    wh = Warehouse(db)
    try:
        first, last = wh.created_range()
        end = last.date() + timedelta(days=1)
        start = max(end - timedelta(days=90), first.date())
        n = query(wh, ["ticket_count"], filters=Filters.build(start, end, channel=channel))
    finally:
        wh.close()
    return get_metric("ticket_count").display(n["ticket_count"].iloc[0])


@pytest.mark.usefixtures("fresh_caches")
def test_save_clear_and_reopen_a_view(monkeypatch, db, tmp_path):
    views = tmp_path / "views.json"
    at = open_page(monkeypatch, db, views)
    everyone = tickets_card(at)
    assert at.selectbox(key="saved_view").options == []
    at.multiselect(key="filter_channel").select("chat").run()
    filtered = tickets_card(at)
    assert filtered == expected_tickets(db, "chat") != everyone
    at.text_input(key="view_name").input("Chat *only* <b>").run()
    at.button(key="view_save").click().run()
    assert not at.exception
    saved = ViewStore(views).views(LOCAL).get("Chat *only* <b>")
    assert saved.query == {"range": ["last-90-days"], "channel": ["chat"]}
    # a second save under the name asks before replacing
    at.text_input(key="view_name").input("Chat *only* <b>").run()
    at.button(key="view_save").click().run()
    assert any("exists already" in e.value for e in at.error)
    assert at.button(key="view_replace")

    at.button(key="filters_clear").click().run()
    assert at.multiselect(key="filter_channel").value == []
    assert tickets_card(at) == everyone
    assert at.selectbox(key="saved_view").value is None  # the filters moved away from it

    at.selectbox(key="saved_view").select("Chat *only* <b>").run()
    assert not at.exception
    assert at.multiselect(key="filter_channel").value == ["chat"]
    assert tickets_card(at) == filtered
    link = [c.value for c in at.code]
    assert link == ["?range=last-90-days&channel=chat"]

    # the link opens the same filters in a new session
    params = urllib.parse.parse_qs(link[0].lstrip("?"))
    again = open_page(monkeypatch, db, views, **params)
    assert again.multiselect(key="filter_channel").value == ["chat"]
    assert tickets_card(again) == filtered

    at.button(key="view_delete").click().run()
    assert ViewStore(views).views(LOCAL).views == ()
    assert at.selectbox(key="saved_view").options == []


@pytest.mark.usefixtures("fresh_caches")
def test_a_tampered_view_is_checked_like_a_link(monkeypatch, db, tmp_path):
    views = tmp_path / "views.json"
    views.write_text(json.dumps({"version": 1, "people": {LOCAL: [
        {"name": "Tampered", "params": {"channel": ["chat", "nope'); drop table x; --"],
                                        "range": ["last-1000-years"], "tz": ["Mars/Base"]}},
        {"name": "Unknown key", "params": {"sql": ["select 1"]}},
    ]}}))
    at = open_page(monkeypatch, db, views)
    assert at.selectbox(key="saved_view").options == ["Tampered"]
    assert any("Saved view 2 was left out" in t.value for t in at.text)
    at.selectbox(key="saved_view").select("Tampered").run()
    assert not at.exception
    assert at.multiselect(key="filter_channel").value == ["chat"]
    assert at.selectbox(key="date_preset").value == "Last 90 days"
    assert tickets_card(at) == expected_tickets(db, "chat")
    notes = " ".join(c.value for c in at.caption)
    assert "Ignored in the link" in notes and "drop table" in notes and "Mars" in notes


# --- planted files -----------------------------------------------------------------------


def test_a_pipe_or_a_device_as_the_views_file_is_refused_at_once(tmp_path):
    """A named pipe would block every page's read forever, /dev/zero would never end: only a
    regular file is read."""
    import threading

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero):
        got: list = []
        t = threading.Thread(target=lambda p=path, g=got: g.append(ViewStore(p).views(LOCAL)),
                             daemon=True)
        t.start()
        t.join(10)
        assert got, f"reading {path.name} did not return"
        assert got[0].names == [] and "not a regular file" in got[0].notes[0]
        assert str(tmp_path) not in got[0].notes[0]  # no server path shown to people
        with pytest.raises(CsMetricsError, match="Move it away"):
            ViewStore(path).save(LOCAL, "A", {"range": ["all-time"]})


def test_a_symlink_at_the_lock_file_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere" / "created-by-the-app"
    target.parent.mkdir()
    views = tmp_path / "v" / "views.json"
    views.parent.mkdir()
    (views.parent / "views.json.lock").symlink_to(target)
    with pytest.raises(CsMetricsError, match="cannot be written"):
        ViewStore(views).save(LOCAL, "A", {"range": ["all-time"]})
    assert not target.exists()


def test_deleting_one_of_sixty_planted_views_loses_none_of_the_others(tmp_path):
    path = tmp_path / "views.json"
    entries = [{"name": f"V{i}", "params": {"range": ["all-time"]}} for i in range(60)]
    path.write_text(json.dumps({"version": 1, "people": {LOCAL: entries}}))
    store = ViewStore(path)
    assert len(store.views(LOCAL).names) == MAX_VIEWS
    assert store.delete(LOCAL, "V3")
    names = [e["name"] for e in json.loads(path.read_text())["people"][LOCAL]]
    assert sorted(names) == sorted(f"V{i}" for i in range(60) if i != 3)

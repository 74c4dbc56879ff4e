"""Attacks on saved views, the ``compare=`` link parameter, exports and the activity walk, as
a hostile user would try them. Each test is a defence that holds against the current code."""

from __future__ import annotations

import io
import json
import multiprocessing
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import CsMetricsError
from cs_metrics.ops.saved_views import (
    MAX_NAME,
    MAX_VIEWS,
    VIEWS_ENV,
    ViewStore,
    clean_name,
    person_key,
)
from simulations import generator
from tests.conftest import REPO

LOCAL = person_key("local")
ANA = person_key("ana@example.com", "https://idp.example.com", "sub-1")
BEN = person_key("ben@example.com", "https://idp.example.com", "sub-2")


@pytest.fixture
def store(tmp_path) -> ViewStore:
    return ViewStore(tmp_path / "conf" / "views.json")


# --- names and values -----------------------------------------------------------------------


@pytest.mark.parametrize("raw, want", [
    ("\u202eevil\u202c name", "evil name"),  # RTL override out
    ("a\u200b\u200db", "ab"),  # zero-width characters out
    ("line\r\nbreak\x00\x1b[31m", "line break[31m"),  # controls out, escape's text kept
    ("\ue000private", "private"),  # private-use out
    ("**bold** <img src=x onerror=alert(1)>", "**bold** <img src=x onerror=alert(1)>"),
])
def test_names_lose_invisible_and_control_characters(store, raw, want):
    assert clean_name(raw) == want
    view = store.save(LOCAL, raw, {"range": ["all-time"]})
    assert store.views(LOCAL).names == [want] and view.name == want


@pytest.mark.parametrize("raw", ["\u202e\u200b\x00", "x" * (MAX_NAME + 1), 12, None, ["a"],
                                 "\u0301" * (MAX_NAME + 1)])
def test_empty_long_or_non_text_names_are_refused(store, raw):
    with pytest.raises(CsMetricsError):
        store.save(LOCAL, raw, {"range": ["all-time"]})
    assert not store.path.exists()


def test_sql_like_values_are_kept_as_data_and_keys_are_a_fixed_list(store):
    value = "x'); drop table tickets; --"
    store.save(LOCAL, "sql", {"channel": [value]})
    assert store.views(LOCAL).get("sql").query == {"channel": [value]}
    for params in ({"channel) or 1=1 --": ["x"]}, {"__proto__": ["x"]},
                   {"channel": ["x" * 201]}, {"channel": ["a\x00b"]},
                   {"channel": [f"v{i}" for i in range(201)]}, {"channel": [""]}):
        with pytest.raises(CsMetricsError, match="cannot be saved"):
            store.save(LOCAL, "bad", params)
    assert store.views(LOCAL).names == ["sql"]


# --- tampered files -------------------------------------------------------------------------


def test_tampered_entries_are_left_out_never_raised(store):
    entries = [
        {"name": "ok", "params": {"range": "all-time"}},  # one text: a list of one
        {"name": "nested", "params": {"channel": [["chat"]]}},
        {"name": "dict value", "params": {"channel": [{"a": 1}]}},
        {"name": "number", "params": {"channel": [1]}},
        {"name": "bool", "params": {"channel": True}},
        {"name": "null", "params": None},
        {"name": "10k values", "params": {"channel": [f"c{i}" for i in range(10_000)]}},
        {"name": "path", "params": {"range": ["../../etc/passwd"], "tz": ["../../bad"]}},
        {"name": 1e308, "params": {}},
        {"name": "saved_at", "params": {}, "saved_at": {"x": 1}},
        None, 7, [],
    ]
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"version": 1, "people": {LOCAL: entries}}))
    listed = store.views(LOCAL)
    # values that are text pass the store: the filters check them against the data
    assert listed.names == ["ok", "path", "saved_at"]
    assert listed.get("saved_at").saved_at == ""
    assert len(listed.notes) == len(entries) - 3
    assert all(len(n) < 200 for n in listed.notes)


@pytest.mark.parametrize("content", [
    '{"people": {"k": ' + "9" * 5000 + "}}",  # past Python's integer digits limit
    '{"people": ' + "[" * 50_000 + "]" * 50_000 + "}",
    '{"people": "text"}', '{"people": null}', "\ufeff{}", "",
])
def test_hostile_file_contents_are_a_note_and_never_overwritten(store, content):
    store.path.parent.mkdir(parents=True)
    store.path.write_text(content)
    listed = store.views(LOCAL)
    assert listed.views == ()
    if listed.notes:
        assert "was not read" in listed.notes[0]
        with pytest.raises(CsMetricsError):
            store.save(LOCAL, "A", {"range": ["all-time"]})
        assert store.path.read_text() == content


def test_a_file_past_the_size_limit_is_not_read(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"people": {LOCAL: []}, "pad": "x" * 5_000_001}))
    assert "larger than" in store.views(LOCAL).notes[0]


def test_a_symlinked_file_is_replaced_never_written_through(tmp_path):
    target = tmp_path / "precious.json"
    target.write_text(json.dumps({"version": 1, "people": {}}))
    before = target.read_text()
    link = tmp_path / "views.json"
    link.symlink_to(target)
    ViewStore(link).save(LOCAL, "A", {"range": ["all-time"]})
    assert target.read_text() == before  # the link's target is untouched
    assert not link.is_symlink() and ViewStore(link).views(LOCAL).names == ["A"]


def test_a_symlink_to_a_non_json_file_is_not_overwritten(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("precious")
    link = tmp_path / "views.json"
    link.symlink_to(target)
    assert "was not read" in ViewStore(link).views(LOCAL).notes[0]
    with pytest.raises(CsMetricsError, match="Move it away"):
        ViewStore(link).save(LOCAL, "A", {"range": ["all-time"]})
    assert target.read_text() == "precious" and link.is_symlink()


def test_a_directory_in_the_files_place_is_a_note_and_an_error(tmp_path):
    where = tmp_path / "views.json"
    where.mkdir()
    assert "was not read" in ViewStore(where).views(LOCAL).notes[0]
    with pytest.raises(CsMetricsError):
        ViewStore(where).save(LOCAL, "A", {"range": ["all-time"]})
    assert where.is_dir()


def test_a_folder_the_app_cannot_create_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CsMetricsError, match="cannot be written"):
        ViewStore(blocker / "sub" / "views.json").save(LOCAL, "A", {"range": ["all-time"]})


# --- people, quota and races ----------------------------------------------------------------


def test_keys_of_email_and_subject_never_meet():
    # an address equal to someone's subject, or issuer, is another person
    assert person_key("sub-1") != person_key("x@y.z", "https://idp.example.com", "sub-1")
    assert person_key("https://idp.example.com") != ANA
    # a subject differs by case: another account (subjects are case-sensitive)
    assert person_key("", "i", "Sub") != person_key("", "i", "sub")
    # the issuer tells providers apart, and the e-mail is not part of an OIDC key
    assert person_key("a@x", "i1", "s") != person_key("a@x", "i2", "s")
    assert person_key("a@x", "i", "s") == person_key("b@x", "i", "s")


def test_one_person_cannot_read_or_delete_anothers_views(store):
    store.save(ANA, "Ana's", {"team": ["Billing"]})
    assert store.views(BEN).views == ()
    assert store.delete(BEN, "Ana's") is False
    store.save(BEN, "Ana's", {"team": ["Other"]})  # the same name is Ben's own view
    assert store.views(ANA).get("Ana's").query == {"team": ["Billing"]}
    assert store.views(BEN).get("Ana's").query == {"team": ["Other"]}


def test_quota_holds_for_names_that_clean_to_one_and_for_planted_files(store):
    for n in range(MAX_VIEWS):
        store.save(LOCAL, f"v{n}", {"range": ["all-time"]})
    with pytest.raises(CsMetricsError, match="delete one first"):
        store.save(LOCAL, "v\u200b0x", {"range": ["all-time"]})
    # replacing is not a new view: allowed at the limit; a name that cleans to a taken one
    # is that view
    store.save(LOCAL, "v\u200b0", {"range": ["last-7-days"]}, replace=True)
    assert len(store.views(LOCAL).views) == MAX_VIEWS
    assert store.views(LOCAL).get("v0").query == {"range": ["last-7-days"]}
    data = json.loads(store.path.read_text())
    data["people"][LOCAL] += [{"name": f"w{i}", "params": {}} for i in range(500)]
    store.path.write_text(json.dumps(data))
    listed = store.views(LOCAL)
    assert len(listed.views) == MAX_VIEWS and any("first 50" in n for n in listed.notes)


def test_threads_saving_at_once_lose_no_view(tmp_path):
    path = tmp_path / "views.json"
    people = [person_key(f"p{i}@x.com") for i in range(8)]
    errors: list[BaseException] = []

    def work(person: str) -> None:
        try:
            for n in range(6):
                ViewStore(path).save(person, f"v{n}", {"range": ["all-time"]})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for p in people:
        assert ViewStore(path).views(p).names == [f"v{n}" for n in range(6)]


def _save_many(path: str, who: str) -> None:
    for n in range(5):
        ViewStore(Path(path)).save(who, f"v{n}", {"range": ["all-time"]})


def test_processes_saving_at_once_lose_no_view(tmp_path):
    path = tmp_path / "views.json"
    people = [person_key(f"q{i}@x.com") for i in range(4)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(str(path), p)) for p in people]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    for p in people:
        assert ViewStore(path).views(p).names == [f"v{n}" for n in range(5)]


# --- exports --------------------------------------------------------------------------------


def test_csv_export_neutralises_formulas_in_count_columns_and_keeps_numbers():
    from views._exports import csv_bytes
    from views._tables import integer_counts

    df = pd.DataFrame({
        "ticket_count": ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "7"],
        "tickets": [1.0, np.nan, 3.0, 4.0, 5.0],
        "n_big": [float(2**63), 1.0, 2.0, 3.0, 4.0],
        "rows": [np.inf, -np.inf, np.nan, 1.0, 2.0],
        "count": [-1.0, -2.0, 0.0, 1.0, 2.0],
    })
    out = pd.read_csv(io.BytesIO(csv_bytes(df)), dtype=str, keep_default_na=False)
    assert out["ticket_count"].tolist() == ["'=1+1", "'+cmd|' /C calc'!A0", "'-2+3",
                                            "'@SUM(A1)", "7"]
    assert out["tickets"].tolist() == ["1", "", "3", "4", "5"]
    assert out["n_big"].iloc[0] in ("9.223372036854776e+18", "9223372036854775808.0")
    assert out["rows"].tolist()[:3] == ["inf", "-inf", ""]
    assert out["count"].tolist() == ["-1", "-2", "0", "1", "2"]  # numbers, not neutralised
    counts = integer_counts(df)
    assert counts["n_big"].dtype == float and counts["rows"].dtype == float


def test_csv_export_neutralises_formula_column_names():
    from views._exports import csv_bytes

    df = pd.DataFrame({"=HYPERLINK(\"http://x\")": ["a"], "tickets": [1.0]})
    head = csv_bytes(df).decode().splitlines()[0]
    assert head.startswith("\"'=HYPERLINK") or head.startswith("'=HYPERLINK")


# --- the app: compare= and saved views in the page ------------------------------------------


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("views23")
    generator.generate(tmp / "sample", tickets=1500, days=60, seed=23, end=datetime(2025, 3, 1))
    cs_metrics.ingest(tmp / "sample", db=tmp / "wh.duckdb")
    return tmp / "wh.duckdb"


def _page(monkeypatch, db: Path, views: Path, **params) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv(VIEWS_ENV, str(views))
    at = AppTest.from_file(str(REPO / "views" / "overview.py"), default_timeout=90)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


@pytest.mark.usefixtures("fresh_caches")
@pytest.mark.parametrize("params", [
    {"compare": ["year", "previous", "<script>"], "range": ["all-time"]},
    {"compare": "year", "from": "0001-01-01", "to": "0001-12-31"},
    {"compare": "year", "from": "0002-02-29", "to": "9999-12-31"},
    {"compare": "year", "from": "2024-02-29", "to": "2024-02-29"},
    {"compare": "previous", "from": "0001-01-02", "to": "2025-03-01"},
    {"compare": "**x**\u202e", "range": "../../etc", "tz": "../../../etc/passwd",
     "channel": ["x'; drop table tickets; --", "\u0000"], "from": "2025-13-45"},
])
def test_hostile_link_parameters_never_raise(monkeypatch, db, tmp_path, params):
    at = _page(monkeypatch, db, tmp_path / "v.json", **params)
    assert not at.exception, [e.value for e in at.exception]
    assert at.segmented_control(key="compare").value in ("previous", "year")
    assert "Traceback" not in " ".join(str(e.value) for e in (*at.error, *at.caption))


@pytest.mark.usefixtures("fresh_caches")
def test_a_view_with_hostile_text_is_shown_as_text(monkeypatch, db, tmp_path):
    views = tmp_path / "views.json"
    views.write_text(json.dumps({"version": 1, "people": {LOCAL: [
        {"name": "[x](javascript:alert(1)) :red[big] $x$",
         "params": {"range": ["all-time"], "tz": ["Mars/Base"],
                    "channel": ["[y](http://evil.example)"] + [f"c{i}" for i in range(150)]}},
    ]}}))
    at = _page(monkeypatch, db, views)
    name = "[x](javascript:alert(1)) :red[big] $x$"
    assert at.selectbox(key="saved_view").options == [name]
    at.selectbox(key="saved_view").select(name).run()
    assert not at.exception
    assert at.multiselect(key="filter_channel").value == []
    shown = " ".join(m.value for m in (*at.caption, *at.info, *at.success, *at.markdown))
    assert "](http" not in shown and "](javascript" not in shown
    assert "javascript" not in " ".join(c.value for c in at.caption)


AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "cs-metrics", "client_secret": "secret",
        "server_metadata_url": "http://localhost:1/.well-known/openid-configuration"}


def _hosted(monkeypatch, db: Path, views: Path, user: dict) -> AppTest:
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv(VIEWS_ENV, str(views))
    at = AppTest.from_file(str(REPO / "views" / "overview.py"), default_timeout=90)
    at.secrets["auth"] = AUTH
    at.user = user
    return at.run()


def _user(email: str, sub: str, iss: str = "https://id.example.com") -> dict:
    return {"is_logged_in": True, "email": email, "email_verified": True, "groups": [],
            "iss": iss, "sub": sub}


@pytest.mark.usefixtures("fresh_caches")
def test_hosted_people_keep_their_views_apart(monkeypatch, db, tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text('[access]\nadmins = ["ada@example.com", "bob@example.com", '
                        '"sub-ada@example.com"]\n')
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(settings))
    views = tmp_path / "views.json"
    at = _hosted(monkeypatch, db, views, _user("ada@example.com", "sub-ada"))
    assert not at.exception, [e.value for e in at.exception]
    at.multiselect(key="filter_channel").select("chat").run()
    at.text_input(key="view_name").input("Ada's").run()
    at.button(key="view_save").click().run()
    assert not at.exception
    assert "ada@example.com" not in views.read_text() and "sub-ada" not in views.read_text()
    # another person; one whose address is Ada's subject; Ada at another provider; Ada's
    # address in capitals with another subject: none sees Ada's view
    for user in (_user("bob@example.com", "sub-bob"), _user("sub-ada@example.com", "x"),
                 _user("ada@example.com", "sub-ada", "https://other.example.com"),
                 _user("ADA@example.com", "sub-ada2")):
        other = _hosted(monkeypatch, db, views, user)
        assert not other.exception, [e.value for e in other.exception]
        assert other.selectbox(key="saved_view").options == [], user
    again = _hosted(monkeypatch, db, views, _user("ada@example.com", "sub-ada"))
    assert again.selectbox(key="saved_view").options == ["Ada's"]


def _events_dir(tmp: Path) -> Path:
    out = tmp / "data"
    out.mkdir()
    t = pd.DataFrame({
        "ticket_id": ["T1", "T2", "T3", "T4"],
        "created_at": pd.to_datetime(["2025-01-01 09:00"] * 4),
        "status": ["closed"] * 4,
        "resolved_at": pd.to_datetime(["2025-01-02 09:00"] * 4),
        "rep_id": ["R1"] * 4,
    })
    t.to_csv(out / "tickets.csv", index=False)
    pd.DataFrame({"rep_id": ["R1", "R2"], "name": ["Rae", "Rob"],
                  "team": ["A", "A"]}).to_csv(out / "representatives.csv", index=False)
    n = 200_000
    big = pd.DataFrame({  # one ticket with many events, some at one moment
        "ticket_id": "T1",
        "event_at": pd.Timestamp("2025-01-01 09:00") + pd.to_timedelta(
            np.arange(n) // 2, unit="s"),
        "status": np.where(np.arange(n) % 2 == 0, "in_progress", "open"),
        "rep_id": np.where(np.arange(n) % 4 < 2, "R1", "R2"),
    })
    tail = pd.DataFrame({
        "ticket_id": ["T1", "T2", "T2", "T3", "NOPE", None],
        "event_at": pd.to_datetime(["2025-01-02 09:00", "2025-01-01 10:00", "2025-01-01 10:00",
                                    "2025-01-01 10:00", "2025-01-01 10:00",
                                    "2025-01-01 10:00"]),
        "status": ["closed", "closed", "open", "closed", "closed", "closed"],
        "rep_id": ["R1", "R1", "R1", None, "R1", "R1"],
    })
    pd.concat([big, tail]).to_csv(out / "ticket_events.csv", index=False)
    return out


def test_hostile_event_histories_give_defined_figures(tmp_path):
    src = _events_dir(tmp_path)
    cs_metrics.ingest(src, db=tmp_path / "wh.duckdb")
    wh = cs_metrics.Warehouse(tmp_path / "wh.duckdb", read_only=True)
    try:
        from cs_metrics.analysis.activity import activity

        got = activity(wh, level="rep")
        per = cs_metrics.query(wh, ["touches_per_ticket", "one_touch_pct",
                                    "event_reopen_pct"], by=["rep_id"])
    finally:
        wh.close()
    assert list(got["rep_id"]) == ["R1"]
    # T1 (200,001 events), T2 (closed and opened at one moment: open sorts first, so it ends
    # closed), T3 (one closed event, no rep); T4 has no events: left out; NOPE and null ids
    # belong to no ticket
    row = per.iloc[0]
    assert row["touches_per_ticket"] == pytest.approx((200_001 + 2 + 1) / 3)
    assert np.isfinite(got[[c for c in got.columns if c.endswith(("_h", "_pct"))]]
                       .astype(float).fillna(0).to_numpy()).all()

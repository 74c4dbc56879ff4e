"""The "Your data" page, run headless: upload, validate, load, switch; every page follows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import CsMetricsError, Warehouse, get_metric
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ingestion import datasets as ds
from tests.conftest import REPO, ticket, write_csv

APP = str(REPO / "app.py")
PAGE = "views/data_sources.py"
OVERVIEW = "views/overview.py"
TIMEOUT = 60
STAGED = "ds_staged"  # the page's (upload fingerprint, staged folder)

GOOD = [
    ticket("U1", "2025-02-10 10:00:00", "closed", resolved_at="2025-02-10 12:00:00"),
    ticket("U2", "2025-02-12 09:30:00", "open"),
    ticket("U3", "2025-02-20 15:00:00", "in_progress"),
]
BAD = [
    ticket("U4", "2025-02-21 08:00:00", "wontfix"),
    ticket("U5", "yesterday", "open"),
]
EXPORT = b"Key,Opened,State\nA1,2025-01-10 10:00:00,Done\nA2,2025-01-11 10:00:00,New\n"
BAD_MAPPING = b"""
[tickets]
source = "export.csv"
[tickets.columns]
ticket_id = "Key"
created_at = "Opened"
status = "Stat"
"""

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture
def env(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """The app's default warehouse (four January tickets) and an empty datasets folder."""
    write_csv(tmp_path / "src", "tickets", [
        ticket(f"T{i}", f"2025-01-{10 + i} 10:00:00", "open") for i in range(4)
    ])
    db = tmp_path / "default.duckdb"
    cs_metrics.ingest(tmp_path / "src", db=db)
    root = tmp_path / "datasets"
    monkeypatch.setenv("CS_METRICS_DB", str(db))
    monkeypatch.setenv(ds.DATASETS_ENV, str(root))
    return db, root


def csv_bytes(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(page: str = PAGE, state: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    ok(at.run())
    return ok(at.switch_page(page).run()) if page != OVERVIEW else at


def tickets_card(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == get_metric("ticket_count").label)


def ticket_count(db: Path) -> str:
    wh = Warehouse(db)  # read-write, like the app: one configuration per process
    try:
        return get_metric("ticket_count").display(
            cs_metrics.query(wh, ["ticket_count"]).iloc[0]["ticket_count"])
    finally:
        wh.close()


def texts(at: AppTest) -> str:
    return "\n".join(x.value for x in [*at.markdown, *at.caption, *at.info, *at.success])


def validate(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    at.file_uploader(key="ds_files").set_value([(n, b, "text/csv") for n, b in files])
    ok(at.run())
    at.button(key="ds_validate").click()
    return ok(at.run())


def test_empty_states(env):
    db, root = env
    at = open_page()
    assert not at.error
    body = texts(at)
    assert "Upload at least one data file" in body
    assert "No dataset loaded yet" in body
    assert f"**{escape_markdown(f'{db.stem} (CS_METRICS_DB)')}**" in body
    assert "data/mappings/la311_2017.toml" in body  # the committed examples are quoted
    assert not [b for b in at.button if b.key and b.key.startswith("ds_switch")]


def test_validate_shows_what_would_load_before_anything_is_loaded(env):
    _, root = env
    at = validate(open_page(), [("tickets.csv", csv_bytes(GOOD + BAD))])
    assert not at.error
    cards = {m.label: m.value for m in at.metric}
    assert cards["Rows read"] == "5"
    assert cards["Rows that would load"] == "3"
    assert cards["Rows that would be rejected"] == "2"
    want = ds.validate(at.session_state[STAGED][1])
    assert cards["Quality score (0–100)"] == f"{want.quality.score:.1f}"
    frames = [d.value for d in at.dataframe]
    per_table = next(f for f in frames if "would" not in f.columns and "files" in f.columns)
    assert per_table.iloc[0][["table", "read", "loaded", "rejected"]].tolist() == [
        "tickets", 5, 3, 2]
    reasons = next(f for f in frames if "meaning" in f.columns and "reason" in f.columns)
    assert set(reasons["reason"]) == {"unknown_status", "unparseable_timestamp"}
    assert reasons["meaning"].notna().all()
    rejects = next(f for f in frames if "source_row" in f.columns)
    assert rejects["source_row"].tolist() == [4, 5]
    assert rejects["value"].tolist() == ["wontfix", "yesterday"]
    assert any(b.label == "Download rejected rows (CSV)" for b in at.get("download_button"))
    assert ds.list_datasets(root) == []  # validated, not loaded
    assert at.button(key="ds_load").disabled  # no name yet


def test_a_bad_mapping_shows_the_command_line_message(env):
    _, root = env
    at = open_page()
    at.radio(key="ds_how").set_value("An export plus my mapping file")
    ok(at.run())
    at.file_uploader(key="ds_mapping").set_value(("mine.toml", BAD_MAPPING, "text/plain"))
    at = validate(at, [("export.csv", EXPORT)])
    folder = at.session_state[STAGED][1]
    with pytest.raises(CsMetricsError) as exc:
        cs_metrics.ingest(folder, folder / ds.MAPPING_NAME, db=root / "cli.duckdb")
    # the command line's sentence, with the server's staging folder written as the uploads
    want = str(exc.value).replace(str(folder / ds.MAPPING_NAME), "mine.toml") \
        .replace(f"{folder}/", "")
    assert want.startswith("mine.toml, table tickets, column status")
    assert [e.value for e in at.error] == [escape_markdown(want)]
    assert str(root) not in at.error[0].value
    assert not [b for b in at.button if b.key == "ds_load"]  # nothing to load
    assert ds.list_datasets(root) == []


def test_load_and_switch_then_every_page_follows(env):
    db, root = env
    at = validate(open_page(), [("tickets.csv", csv_bytes(GOOD + BAD))])
    at.text_input(key="ds_name").input("Uploaded Feb")
    ok(at.run())
    at.button(key="ds_load").click()
    ok(at.run())
    loaded = root / "uploaded-feb.duckdb"
    assert ds.list_datasets(root) == [loaded]
    assert Path(at.session_state["dataset_db"]) == loaded
    assert f"Loaded {escape_markdown('uploaded-feb')} and switched to it" in texts(at)
    assert not list((root / ds.UPLOADS).iterdir())  # the staged upload is cleaned up
    at.switch_page(OVERVIEW).run()
    assert ok(at) and tickets_card(at) == ticket_count(loaded) == "3"
    assert f"Dataset: **{escape_markdown('uploaded-feb')}**" in \
        "\n".join(c.value for c in at.sidebar.caption)
    # back to the default with the page's Switch control
    ok(at.switch_page(PAGE).run())
    at.button(key="ds_switch__default").click()
    ok(at.run())
    assert "dataset_db" not in at.session_state
    ok(at.switch_page(OVERVIEW).run())
    assert tickets_card(at) == ticket_count(db) == "4"


def test_switching_the_session_dataset_changes_the_overview(env):
    db, root = env
    folder = ds.stage_upload({"tickets.csv": csv_bytes(GOOD)}, None, root)
    other = ds.load(folder, None, "other", root)
    at = open_page(OVERVIEW)
    assert tickets_card(at) == ticket_count(db) == "4"
    at.session_state["dataset_db"] = str(other)
    ok(at.run())
    assert tickets_card(at) == ticket_count(other) == "3"
    ok(at.switch_page(PAGE).run())
    assert "**other**" in texts(at)
    assert [b.key for b in at.button if b.key and b.key.startswith("ds_switch")] == [
        "ds_switch__default"]  # the active dataset has no Switch button


def test_a_deleted_dataset_falls_back_to_the_default(env):
    db, root = env
    at = open_page(OVERVIEW, {"dataset_db": str(root / "gone.duckdb")})
    assert tickets_card(at) == ticket_count(db)
    assert any("no longer exists" in w.value for w in at.warning)
    assert "dataset_db" not in at.session_state


def test_a_dataset_without_tickets_is_an_error_not_a_sample(env, monkeypatch):
    _, root = env
    monkeypatch.delenv("CS_METRICS_DB")  # the default is the sample warehouse again
    root.mkdir()
    empty = root / "empty.duckdb"
    Warehouse(empty).close()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["dataset_db"] = str(empty)
    ok(at.run())
    assert [e.value for e in at.error] == [
        f"The warehouse {escape_markdown(empty)} has no tickets yet. Load data into it with "
        "the Your data page."
    ]
    # no sample generated (the open database may keep its write-ahead log beside it)
    assert sorted(p.name for p in root.iterdir() if p.suffix != ".wal") == ["empty.duckdb"]


# --- hostile and broken uploads ----------------------------------------------------------------

MAPPING_OK = """
[tickets]
source = "export.csv"
[tickets.columns]
ticket_id = "Key"
created_at = "Opened"
status = "State"
[tickets.values]
status = { closed = ["Done"], open = ["New"] }
"""
DEEP = "../" * 30  # from any staging folder, past the root of the file system


def try_validate(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    """Upload ``files`` and press Validate when the page offers it (a refused upload has
    no Validate button)."""
    at.file_uploader(key="ds_files").set_value([(n, b, "text/csv") for n, b in files])
    ok(at.run())
    if any(b.key == "ds_validate" for b in at.button):
        at.button(key="ds_validate").click()
        ok(at.run())
    return at


def with_mapping(mapping: bytes, files: list[tuple[str, bytes]],
                 name: str = "mine.toml") -> AppTest:
    """The page after uploading ``files`` with the mapping ``mapping`` and pressing Validate."""
    at = open_page()
    at.radio(key="ds_how").set_value("An export plus my mapping file")
    ok(at.run())
    at.file_uploader(key="ds_mapping").set_value((name, mapping, "text/plain"))
    ok(at.run())
    return try_validate(at, files)


def everything_shown(at: AppTest) -> str:
    """Every text the page shows, tables included."""
    parts = [str(x.value) for x in [*at.markdown, *at.caption, *at.info, *at.success,
                                    *at.warning, *at.error, *at.metric, *at.title,
                                    *at.subheader]]
    parts += [d.value.to_csv() for d in at.dataframe]
    return "\n".join(parts)


def nothing_leaked(at: AppTest, root: Path) -> None:
    shown = everything_shown(at)
    assert "root:" not in shown and "/bin/" not in shown
    assert ds.list_datasets(root) == []  # nothing loaded
    for path in root.rglob("*"):  # the staged upload holds only what was uploaded
        if path.is_file() and path.suffix != ".toml":
            assert b"root:" not in path.read_bytes(), path
    assert not [b for b in at.button if b.key == "ds_load"]
    validation = at.session_state[VALIDATION]
    assert not validation[1].ok and validation[1].rejects.empty


VALIDATION = "ds_validation"


@pytest.mark.parametrize(("mapping", "refusal"), [
    # a source outside the staging folder, relative or absolute
    (f'[tickets]\nsource = "{DEEP}etc/passwd"\nformat = "csv"\ndelimiter = ":"\n'
     '[tickets.columns]\nticket_id = "column0"\ncreated_at = "column2"\nstatus = "column1"\n',
     f"Mapping file mine.toml, table tickets: source '{DEEP}etc/passwd' leads out of the "
     "uploaded files"),
    ('[tickets]\nsource = "/etc/passwd"\nformat = "csv"\ndelimiter = ":"\n'
     '[tickets.columns]\nticket_id = "column0"\ncreated_at = "column2"\nstatus = "column1"\n',
     "Mapping file mine.toml, table tickets: source '/etc/passwd' is an absolute path; write "
     "it relative to the uploaded files"),
    (f'[tickets]\nsource = "{DEEP}etc/pass*"\nformat = "csv"\n'
     '[tickets.columns]\nticket_id = "column0"\ncreated_at = "column0"\nstatus = "column0"\n',
     f"Mapping file mine.toml, table tickets: source '{DEEP}etc/pass*' leads out of the "
     "uploaded files"),
    # an expression that reads a file of the server
    ('[tickets]\nsource = "export.csv"\n[tickets.columns]\nticket_id = "Key"\n'
     'created_at = "Opened"\nstatus = "State"\n'
     "subject = \"(select content from read_text('/etc/passwd'))\"\n",
     "mine.toml, table tickets, column subject: a query"),
    ('[tickets]\nsource = "export.csv"\n[tickets.columns]\nticket_id = "Key"\n'
     "created_at = \"Opened\"\nstatus = \"(select content from read_text('/etc/passwd'))\"\n",
     "mine.toml, table tickets, column status: a query"),
    ('[tickets]\nsource = "export.csv"\n[tickets.columns]\nticket_id = "Key"\n'
     "created_at = \"Opened\"\nstatus = \"State\"\nsubject = \"read_text('/etc/passwd')\"\n",
     "mine.toml, table tickets, column subject"),
], ids=["dotdot-source", "absolute-source", "dotdot-glob", "read_text-subquery-subject",
        "read_text-subquery-status", "read_text-function"])
def test_a_mapping_cannot_reach_outside_the_upload(env, mapping, refusal):
    _, root = env
    at = with_mapping(mapping.encode(), [("export.csv", EXPORT)])
    assert len(at.error) == 1, everything_shown(at)
    assert at.error[0].value.replace("\\", "").startswith(refusal)
    nothing_leaked(at, root)


def test_an_uploaded_name_cannot_leave_the_staging_folder(env, tmp_path):
    _, root = env
    at = try_validate(open_page(), [(f"{DEEP}{tmp_path}/tickets.csv", csv_bytes(GOOD)),
                                    ("..\\..\\feedback.csv", b"")])
    assert "feedback.csv is empty (0 bytes)" in at.error[0].value.replace("\\", "")
    at = validate(open_page(), [(f"{DEEP}{tmp_path}/tickets.csv", csv_bytes(GOOD))])
    assert not at.error
    assert {m.label: m.value for m in at.metric}["Rows that would load"] == "3"
    folder = at.session_state[STAGED][1]
    assert folder.parent == root / ds.UPLOADS
    assert [p.name for p in folder.iterdir()] == ["tickets.csv"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("tickets.csv")) == [
        folder.relative_to(tmp_path) / "tickets.csv", Path("src/tickets.csv")]
    at = validate(open_page(), [(".hidden.csv", csv_bytes(GOOD))])
    assert [e.value for e in at.error] == [escape_markdown(
        "'.hidden.csv' is not a plain file name; upload files such as tickets.csv.")]


def _misuse(root: Path) -> dict[str, tuple[Callable[[], AppTest], str]]:
    tickets = b"ticket_id,created_at,status\nA,2025-01-01 10:00:00,open\n"
    bad_values = MAPPING_OK.replace('status = { closed = ["Done"], open = ["New"] }',
                                    'status = ["Done"]')
    return {
        "empty data file": (lambda: try_validate(open_page(), [("tickets.csv", b"")]),
                            "tickets.csv is empty (0 bytes); upload the file with its rows."),
        "mapping not TOML": (lambda: with_mapping(b"this is = not [toml",
                                                  [("export.csv", EXPORT)]),
                             "Mapping file mine.toml is not valid TOML"),
        "mapping not UTF-8": (lambda: with_mapping(MAPPING_OK.encode("utf-16"),
                                                   [("export.csv", EXPORT)]),
                              "mine.toml is not UTF-8 text; save the mapping file as UTF-8"),
        "empty mapping": (lambda: with_mapping(b"  \n", [("export.csv", EXPORT)]),
                          "mine.toml is empty; upload the mapping file"),
        "source is a folder": (lambda: with_mapping(
            MAPPING_OK.replace('"export.csv"', '"."').encode(), [("export.csv", EXPORT)]),
            "mine.toml, table tickets: source '.'"),
        "values not a list": (lambda: with_mapping(bad_values.encode(),
                                                   [("export.csv", EXPORT)]),
                              "mine.toml"),
        "latin-1 data": (lambda: validate(open_page(), [(
            "tickets.csv", "ticket_id,created_at,status\nÉ,2025-01-01 10:00:00,open\n"
            .encode("latin-1"))]), "tickets.csv"),
        "a name too long": (lambda: validate(open_page(), [("t" * 300 + ".csv", tickets)]),
                            "Could not save the upload (File name too long); rename the "
                            "files with short plain names and try again."),
    }


@pytest.mark.parametrize("case", ["empty data file", "mapping not TOML", "mapping not UTF-8",
                                  "empty mapping", "source is a folder", "values not a list",
                                  "latin-1 data", "a name too long"])
def test_misuse_is_one_sentence_never_a_traceback(env, case):
    _, root = env
    make, words = _misuse(root)[case]
    at = make()  # `ok` inside: no exception on any run
    assert len(at.error) == 1, everything_shown(at)
    message = at.error[0].value
    plain = message.replace("\\", "")
    assert words in plain
    assert "Traceback" not in message and "\n" not in message
    assert str(root) not in plain  # the server's folders stay out of the message
    assert ds.list_datasets(root) == []


def test_a_huge_upload_is_validated_or_refused_in_one_sentence(env):
    _, root = env
    huge = (b"ticket_id,created_at,status,subject\nA,2025-01-01 10:00:00,open,hi\n"
            b"B,2025-01-01 10:00:00,open," + b"x" * 5_000_000 + b"\n")
    at = try_validate(open_page(), [("tickets.csv", huge)])  # `ok`: no exception
    if at.error:  # over the reader's line limit: named, in one sentence
        assert len(at.error) == 1 and "\n" not in at.error[0].value
        assert "tickets.csv" in at.error[0].value.replace("\\", "")
        assert str(root) not in at.error[0].value.replace("\\", "")
    else:
        assert {m.label: m.value for m in at.metric}["Rows read"] == "2"
    assert ds.list_datasets(root) == []


# --- validating and loading are audited --------------------------------------------------------


def _audit(db: Path, action: str) -> list[dict]:
    from cs_metrics.core import audit as audit_log

    wh = Warehouse(db)
    try:
        log = audit_log.entries(wh, action=action)
        assert audit_log.verify(wh).ok
    finally:
        wh.close()
    return [dict(row, detail=json.loads(row["detail"])) for row in log.to_dict("records")]


def test_validating_and_loading_a_mapping_are_audited_with_its_hash(env):
    db, root = env
    at = with_mapping(MAPPING_OK.encode(), [("export.csv", EXPORT)])
    assert not at.error
    files = [{"name": "export.csv", "bytes": len(EXPORT),
              "sha256": hashlib.sha256(EXPORT).hexdigest()}]
    mapping_sha = hashlib.sha256(MAPPING_OK.encode()).hexdigest()
    [entry] = _audit(db, "dataset_validated")
    assert (entry["actor"], entry["role"], entry["target"]) == ("local", "local", "mine.toml")
    assert entry["detail"] == {"files": files, "mapping": "mine.toml",
                               "mapping_sha256": mapping_sha, "ok": True, "loaded": 2,
                               "rejected": 0}
    at.text_input(key="ds_name").input("mapped")
    ok(at.run())
    at.button(key="ds_load").click()
    ok(at.run())
    [entry] = _audit(db, "dataset_loaded")
    assert entry["target"] == "mapped"
    assert entry["detail"] == {"file": str(root / "mapped.duckdb"), "files": files,
                               "mapping": "mine.toml", "mapping_sha256": mapping_sha}


def test_a_refused_validation_is_audited_too(env):
    db, _ = env
    at = with_mapping(BAD_MAPPING, [("export.csv", EXPORT)], name="bad.toml")
    assert len(at.error) == 1
    [entry] = _audit(db, "dataset_validated")
    detail = entry["detail"]
    assert detail["ok"] is False and detail["mapping"] == "bad.toml"
    assert detail["mapping_sha256"] == hashlib.sha256(BAD_MAPPING).hexdigest()
    assert detail["error"].startswith("bad.toml, table tickets, column status")
    # canonical files: no mapping to hash
    validate(open_page(), [("tickets.csv", csv_bytes(GOOD))])
    entries = _audit(db, "dataset_validated")
    assert entries[0]["target"] == "canonical files"
    assert entries[0]["detail"]["mapping"] is None
    assert "mapping_sha256" not in entries[0]["detail"]
    assert entries[0]["detail"]["files"][0]["sha256"] == \
        hashlib.sha256(csv_bytes(GOOD)).hexdigest()


def test_a_signed_in_admins_validation_names_them_and_their_provider(env, tmp_path,
                                                                     monkeypatch):
    db, _ = env
    settings = tmp_path / "settings.toml"
    settings.write_text('[access]\nadmins = ["ada@example.com"]\n')
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(settings))
    at = AppTest.from_file(str(REPO / PAGE), default_timeout=TIMEOUT)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback",
                          "cookie_secret": "x" * 32, "client_id": "c", "client_secret": "s",
                          "server_metadata_url": "http://localhost:1/.well-known/x"}
    at.user = {"is_logged_in": True, "email": "ada@example.com", "email_verified": True,
               "iss": "https://id.example.com", "sub": "ada-1"}
    ok(at.run())
    at = validate(at, [("tickets.csv", csv_bytes(GOOD))])
    [entry] = _audit(db, "dataset_validated")
    assert [entry[k] for k in ("actor", "role", "issuer", "subject")] == [
        "ada@example.com", "admin", "https://id.example.com", "ada-1"]

"""Reading sources right: zones in text timestamps, encodings, long lines, JSON ids, empty
files, and the rejects cap that keeps a pathological file from being stored twice."""

from __future__ import annotations

import codecs
import csv
import json
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.ingestion.quality import quality_report


def _rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _mapping(folder: Path, body: str, name: str = "map.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _times(db: Path) -> dict[str, str]:
    return {t: str(c) for t, c in _rows(db, "select ticket_id, created_at from tickets_src")}


# --- 1. an explicit offset or zone in a text timestamp wins over the section's timezone ----

# text in the file -> UTC when the section's zone is UTC, and when it is America/New_York
ZONED = {
    "plus2": ("2024-01-01 10:00+02:00", "2024-01-01 08:00:00", "2024-01-01 08:00:00"),
    "minus5": ("2024-01-01 10:00-05:00", "2024-01-01 15:00:00", "2024-01-01 15:00:00"),
    "zulu": ("2024-01-01 10:00Z", "2024-01-01 10:00:00", "2024-01-01 10:00:00"),
    "iso_zulu": ("2024-01-01T10:00:00z", "2024-01-01 10:00:00", "2024-01-01 10:00:00"),
    "spaced": ("2024-01-01 10:00:00 +05:30", "2024-01-01 04:30:00", "2024-01-01 04:30:00"),
    "pst": ("2024-01-01 10:00 PST", "2024-01-01 18:00:00", "2024-01-01 18:00:00"),
    "est": ("2024-01-01 10:00 EST", "2024-01-01 15:00:00", "2024-01-01 15:00:00"),
    "named": ("2024-01-01 10:00 Europe/Berlin", "2024-01-01 09:00:00", "2024-01-01 09:00:00"),
    "utc": ("2024-01-01 10:00 UTC", "2024-01-01 10:00:00", "2024-01-01 10:00:00"),
    # no zone: the section's timezone (New York is UTC-5 in winter, UTC-4 in summer)
    "naive": ("2024-01-01 10:00:00", "2024-01-01 10:00:00", "2024-01-01 15:00:00"),
    "summer": ("2024-07-01 10:00:00", "2024-07-01 10:00:00", "2024-07-01 14:00:00"),
    "date": ("2024-01-01", "2024-01-01 00:00:00", "2024-01-01 05:00:00"),
}


def _zoned_csv(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"ticket_id": k, "created_at": v[0], "status": "open"} for k, v in ZONED.items()]
    # a zone DuckDB does not know, and trailing words, are not read as if they were absent
    rows += [{"ticket_id": "edt", "created_at": "2024-07-01 10:00 EDT", "status": "open"},
             {"ticket_id": "words", "created_at": "2024-01-01 10:00 tomorrow", "status": "open"}]
    path = folder / "tickets.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_csv_offsets_and_zones_win_over_the_sections_timezone(tmp_path, zone):
    src = tmp_path / "src"
    _zoned_csv(src)
    db = tmp_path / "wh.duckdb"
    if zone == "UTC":
        report = ingest(src, db=db)  # a canonical folder: UTC
    else:
        mapping = _mapping(tmp_path, f"""
            [tickets]
            source = "tickets.csv"
            timezone = "{zone}"
            [tickets.columns]
            ticket_id = "ticket_id"
            created_at = "created_at"
            status = "status"
        """)
        report = ingest(src, mapping=mapping, db=db)
    want = {k: (v[1] if zone == "UTC" else v[2]) for k, v in ZONED.items()}
    assert _times(db) == want
    assert dict(report.table("tickets").rejected) == {"unparseable_timestamp": 2}
    assert sorted(_rows(db, "select value from rejects")) == [
        ("2024-01-01 10:00 tomorrow",), ("2024-07-01 10:00 EDT",)]


def test_expressions_giving_an_offset_and_strptime_with_z(tmp_path):
    (tmp_path / "export.csv").write_text(
        "Id,Day,Time,Offset,Stamp\n"
        "1,2024-01-01,10:00,+02:00,2024-01-01 10:00 +0200\n"
        "2,2024-01-01,10:00,-05:00,2024-01-01 10:00 -0500\n"
    )
    mapping = _mapping(tmp_path, """
        [tickets]
        source = "export.csv"
        timezone = "America/New_York"
        [tickets.columns]
        ticket_id = "'T' || Id"
        created_at = "Day || ' ' || Time || Offset"
        first_response_at = "strptime(Stamp, '%Y-%m-%d %H:%M %z')"
        status = "'open'"
    """)
    db = tmp_path / "wh.duckdb"
    ingest(tmp_path, mapping=mapping, db=db)
    rows = _rows(db, "select ticket_id, created_at, first_response_at from tickets_src "
                     "order by 1")
    # the offset in the text is used, not New York's -5 hours
    assert [(t, str(c), str(f)) for t, c, f in rows] == [
        ("T1", "2024-01-01 08:00:00", "2024-01-01 08:00:00"),
        ("T2", "2024-01-01 15:00:00", "2024-01-01 15:00:00"),
    ]


def test_jsonl_offsets_read_alike(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.jsonl").write_text(
        '{"ticket_id": "a", "created_at": "2024-01-01 10:00+02:00", "status": "open"}\n'
        '{"ticket_id": "b", "created_at": "2024-01-01 10:00:00", "status": "open"}\n'
    )
    db = tmp_path / "wh.duckdb"
    ingest(src, db=db)
    assert _times(db) == {"a": "2024-01-01 08:00:00", "b": "2024-01-01 10:00:00"}


# --- 2. encodings ----------------------------------------------------------------------------

ACCENTED = "ticket_id,created_at,status,subject\nT1,2024-01-01 10:00:00,open,José\n" \
           "T2,2024-01-01 11:00:00,closed,Müller\n"


def _subjects(db: Path) -> list[str]:
    return [r[0] for r in _rows(db, "select subject from tickets_src order by ticket_id")]


@pytest.mark.parametrize(
    "encoding, data",
    [
        ("latin-1", ACCENTED.encode("latin-1")),
        ("utf-16", codecs.BOM_UTF16_LE + ACCENTED.encode("utf-16-le")),
        ("utf-16", codecs.BOM_UTF16_BE + ACCENTED.encode("utf-16-be")),  # DuckDB reads LE only
        ("cp1252", (ACCENTED + "T3,2024-01-01 12:00:00,open,€ 5\n").encode("cp1252")),
        ("utf-8", codecs.BOM_UTF8 + ACCENTED.encode("utf-8")),
    ],
    ids=["latin-1", "utf-16-le", "utf-16-be", "cp1252", "utf-8-bom"],
)
def test_mapping_encoding_reads_accented_names(tmp_path, encoding, data):
    (tmp_path / "export.csv").write_bytes(data)
    mapping = _mapping(tmp_path, f"""
        [tickets]
        source = "export.csv"
        encoding = "{encoding}"
        [tickets.columns]
        ticket_id = "ticket_id"
        created_at = "created_at"
        status = "status"
        subject = "upper(subject)"
    """)
    db = tmp_path / "wh.duckdb"
    report = ingest(tmp_path, mapping=mapping, db=db)
    want = ["JOSÉ", "MÜLLER"] + (["€ 5"] if encoding == "cp1252" else [])
    assert _subjects(db) == want
    assert report.table("tickets").rejected == ()
    # a UTF-8 copy made for the load (cp1252, big-endian UTF-16) is removed after it
    folders = sys.modules["cs_metrics.ingestion.text_encodings"]._COPIES_DIR
    assert [p for f in folders for p in f.glob("*/export.csv")] == []


def test_utf16_with_a_byte_order_mark_needs_no_setting(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_bytes(codecs.BOM_UTF16_BE + ACCENTED.encode("utf-16-be"))
    db = tmp_path / "wh.duckdb"
    ingest(src, db=db)
    assert _subjects(db) == ["José", "Müller"]


def test_canonical_folder_takes_format_toml(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_bytes(ACCENTED.replace(",", ";").encode("latin-1"))
    (src / "_format.toml").write_text('encoding = "latin-1"\ndelimiter = ";"\n')
    db = tmp_path / "wh.duckdb"
    ingest(src, db=db)
    assert _subjects(db) == ["José", "Müller"]
    # and the encoding may come from the caller instead (the CLI's --encoding)
    (src / "_format.toml").write_text('delimiter = ";"\n')
    db2 = tmp_path / "wh2.duckdb"
    ingest(src, db=db2, encoding="latin-1")
    assert _subjects(db2) == ["José", "Müller"]


def test_a_file_that_is_not_utf8_is_named_with_its_line_and_the_setting(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = "".join(f"T{i},2024-01-01 10:00:00,open,plain\n" for i in range(40_000))
    # the bad byte lies far past what DuckDB samples to sniff the file's dialect
    (src / "tickets.csv").write_bytes(
        b"ticket_id,created_at,status,subject\n" + good.encode()
        + "T9,2024-01-01 10:00:00,open,Jos\xe9\n".encode("latin-1"))
    db = tmp_path / "wh.duckdb"
    with pytest.raises(CsMetricsError) as err:
        ingest(src, db=db)
    message = str(err.value)
    assert str(src / "tickets.csv") in message and "table tickets" in message
    assert "not UTF-8" in message and "line 40002" in message
    assert 'encoding = "latin-1"' in message and "_format.toml" in message
    assert "\n" not in message and "Jos" not in message  # never the reader's dump of the line
    # found while loading: the load rolled back
    assert _rows(db, "select count(*) from information_schema.tables "
                     "where table_name in ('tickets', 'tickets_src')") == [(0,)]


def test_mapping_not_utf8_hint_names_the_mapping_section(tmp_path):
    (tmp_path / "export.csv").write_bytes(ACCENTED.encode("latin-1"))
    mapping = _mapping(tmp_path, """
        [tickets]
        source = "export.csv"
        [tickets.columns]
        ticket_id = "ticket_id"
        created_at = "created_at"
        status = "status"
    """)
    with pytest.raises(CsMetricsError) as err:
        ingest(tmp_path, mapping=mapping, db=tmp_path / "wh.duckdb")
    message = str(err.value)
    assert "line 2" in message and f"[tickets] section of {mapping}" in message


@pytest.mark.parametrize(
    "setting, words",
    [
        ('encoding = "klingon"', ["encoding 'klingon'", "not a known text encoding"]),
        ('encoding = "base64"', ["encoding 'base64'", "not a known text encoding"]),
        ("encoding = 8", ["encoding 8"]),
        ("max_line_size = -1", ["max_line_size -1", "number of bytes"]),
        ('max_line_size = "big"', ["max_line_size 'big'"]),
    ],
)
def test_bad_encoding_or_line_size_settings_are_fatal(tmp_path, setting, words):
    (tmp_path / "e.csv").write_text(ACCENTED)
    mapping = _mapping(tmp_path, f"""
        [tickets]
        source = "e.csv"
        {setting}
        [tickets.columns]
        ticket_id = "ticket_id"
        created_at = "created_at"
        status = "status"
    """)
    with pytest.raises(CsMetricsError) as err:
        ingest(tmp_path, mapping=mapping, db=tmp_path / "wh.duckdb")
    message = str(err.value)
    assert f"{mapping}, table tickets" in message
    for word in words:
        assert word in message
    assert not (tmp_path / "wh.duckdb").exists()


def test_format_toml_with_an_unknown_key_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_text(ACCENTED)
    (src / "_format.toml").write_text('encodng = "latin-1"\n')
    with pytest.raises(CsMetricsError, match=r"_format.toml: unknown keys \['encodng'\]"):
        ingest(src, db=tmp_path / "wh.duckdb")


# --- 3. a line over the reader's limit -------------------------------------------------------


def test_a_5mb_field_loads_by_default(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_text(
        "ticket_id,created_at,status,subject\nA,2024-01-01 10:00:00,open,short\n"
        f"B,2024-01-01 10:00:00,open,{'x' * 5_000_000}\n")
    db = tmp_path / "wh.duckdb"
    ingest(src, db=db)
    assert _rows(db, "select ticket_id, length(subject) from tickets_src order by 1") == [
        ("A", 5), ("B", 5_000_000)]


def test_a_line_over_the_limit_names_its_real_line_the_limit_and_the_key(tmp_path):
    # a quoted value over two lines comes first: the line an editor shows is not the
    # record number a CSV reader counts
    head = 'Id,Opened,State,Text\n1,2024-01-01 10:00:00,open,"two\nlines"\n'
    body = "".join(f"{i},2024-01-01 10:00:00,open,t\n" for i in range(2, 3000))
    (tmp_path / "export.csv").write_text(
        head + body + f"X,2024-01-01 10:00:00,open,{'y' * 300_000}\n")
    mapping = _mapping(tmp_path, """
        [tickets]
        source = "export.csv"
        max_line_size = 100000
        [tickets.columns]
        ticket_id = "Id"
        created_at = "Opened"
        status = "State"
        subject = "Text"
    """)
    db = tmp_path / "wh.duckdb"
    with pytest.raises(CsMetricsError) as err:
        ingest(tmp_path, mapping=mapping, db=db)
    message = str(err.value)
    assert str(tmp_path / "export.csv") in message and "table tickets" in message
    assert "line 3002 is 300,027 bytes long" in message  # record 3001, line 3002
    assert "limit of 100,000 bytes" in message
    assert f"set max_line_size = 1000000 in the [tickets] section of {mapping}" in message
    assert "yyyy" not in message
    assert not db.exists()
    # raised as the message says, the file loads
    mapping.write_text(mapping.read_text().replace("100000", "1000000"))
    report = ingest(tmp_path, mapping=mapping, db=db)
    assert report.table("tickets").loaded == 3000


# --- 4. JSON ids are the text of the value ---------------------------------------------------


def test_jsonl_mixed_ids_store_their_text_and_match_a_later_csv(tmp_path):
    src = tmp_path / "json"
    src.mkdir()
    (src / "tickets.jsonl").write_text(
        '{"ticket_id": 1, "created_at": "2024-01-01 10:00:00", "status": "open", '
        '"rep_id": 7, "customer_id": 70, "channel": "email"}\n'
        '{"ticket_id": "A-2", "created_at": "2024-01-01 11:00:00", "status": "open", '
        '"rep_id": "R-8", "customer_id": "C-80", "channel": 5}\n'
    )
    db = tmp_path / "wh.duckdb"
    ingest(src, db=db)
    assert _rows(db, "select ticket_id, rep_id, customer_id, channel from tickets_src "
                     "order by 1") == [
        ("1", "7", "70", "email"), ("A-2", "R-8", "C-80", "5")]
    # the same ticket again, from a CSV: an update, not a second ticket
    csv_src = tmp_path / "csv"
    csv_src.mkdir()
    (csv_src / "tickets.csv").write_text(
        "ticket_id,created_at,status\nA-2,2024-01-01 11:00:00,closed\n1,2024-01-01 10:00:00,"
        "closed\n")
    ingest(csv_src, db=db)
    assert _rows(db, "select ticket_id, status from tickets_src order by 1") == [
        ("1", "closed"), ("A-2", "closed")]


# --- 5. empty files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tickets.csv", "tickets.jsonl"])
def test_a_zero_byte_file_says_it_is_empty(tmp_path, name):
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_bytes(b"")
    with pytest.raises(CsMetricsError) as err:
        ingest(src, db=tmp_path / "wh.duckdb")
    message = str(err.value)
    assert f"{src / name}, table tickets: {src / name} is empty" in message
    assert "missing" not in message
    assert not (tmp_path / "wh.duckdb").exists()


def test_an_empty_dimension_file_names_its_table(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_text(ACCENTED)
    (src / "outages.csv").write_bytes(b"")
    with pytest.raises(CsMetricsError, match=r"table outages: .*outages.csv is empty"):
        ingest(src, db=tmp_path / "wh.duckdb")


def test_a_header_without_rows_is_empty(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_text("ticket_id,created_at,status\n")
    db = tmp_path / "wh.duckdb"
    with pytest.raises(CsMetricsError) as err:
        ingest(src, db=db, replace=True)  # it would otherwise empty the warehouse
    assert "Nothing to load" in str(err.value) and str(src / "tickets.csv") in str(err.value)
    assert not db.exists()
    # a header of other names (here one column: the delimiter cannot be told) is empty too,
    # not a missing column
    (src / "tickets.csv").write_text("Ticket;Created;State\n")
    with pytest.raises(CsMetricsError) as err:
        ingest(src, db=db)
    assert "has no rows" in str(err.value) and "table tickets" in str(err.value)


def test_a_header_only_file_beside_rows_elsewhere_loads_nothing_from_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_text(ACCENTED)
    (src / "feedback.csv").write_text("ticket_id,csat,comment\n")
    db = tmp_path / "wh.duckdb"
    report = ingest(src, db=db)
    assert report.table("tickets").loaded == 2 and report.table("feedback").read == 0


# --- 10. many rejects of one reason are counted, a bounded number listed ------------------


def test_rejects_past_the_cap_are_counted_not_listed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = ["ticket_id,created_at,status"] + [
        f"B{i},2024-01-01 10:00:00,waiting" for i in range(12)] + [
        "G1,2024-01-01 10:00:00,open", "G1,2024-01-01 11:00:00,open",
        "X1,yesterday,open"]
    (src / "tickets.csv").write_text("\n".join(rows) + "\n")
    db = tmp_path / "wh.duckdb"
    out = tmp_path / "rejects.csv"
    report = ingest(src, db=db, rejects_csv=out, list_rejects=5)
    t = report.table("tickets")
    assert dict(t.rejected) == {"unknown_status": 12, "duplicate_key": 1,
                                "unparseable_timestamp": 1}
    assert report.rejects_listed == 7 and report.rejects_capped
    # the first five of the repeated reason, in source order, with their raw rows
    listed = _rows(db, "select reason, source_row, raw from rejects order by source_row")
    assert [(r, n) for r, n, _ in listed] == [
        ("unknown_status", 1), ("unknown_status", 2), ("unknown_status", 3),
        ("unknown_status", 4), ("unknown_status", 5), ("duplicate_key", 14),
        ("unparseable_timestamp", 15)]
    assert json.loads(listed[0][2])["ticket_id"] == "B0"
    with open(out, newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 7
    # the quality report counts all of them and says how many are listed
    wh = Warehouse(db, read_only=True)
    try:
        q = quality_report(wh).rejects_by_reason.set_index("reason")
    finally:
        wh.close()
    assert q.loc["unknown_status", "rows"] == 12 and q.loc["unknown_status", "listed"] == 5
    assert "the first 10,000 of each source file are listed" not in \
        q.loc["duplicate_key", "meaning"]
    assert "are listed" in q.loc["unknown_status", "meaning"]
    assert q.loc["duplicate_key", "rows"] == q.loc["duplicate_key", "listed"] == 1
    assert report.table("tickets").loaded == 1


def test_duplicates_among_many_rows_keep_the_first_good_row(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rows = ["ticket_id,created_at,status,subject"]
    rows += [f"T{i},2024-01-01 10:00:00,open,first" for i in range(3000)]
    rows += ["T5,bad,open,bad-first", "T5,2024-01-02 10:00:00,open,second",
             "T2999,2024-01-03 10:00:00,closed,second", "N1,2024-01-01 10:00:00,open,new"]
    (src / "tickets.csv").write_text("\n".join(rows) + "\n")
    db = tmp_path / "wh.duckdb"
    report = ingest(src, db=db)
    assert dict(report.table("tickets").rejected) == {
        "duplicate_key": 2, "unparseable_timestamp": 1}
    assert _rows(db, "select source_row, reason, value from rejects order by 1") == [
        (3001, "unparseable_timestamp", "bad"), (3002, "duplicate_key", "T5"),
        (3003, "duplicate_key", "T2999")]
    assert _rows(db, "select count(*), count(*) filter (where subject = 'first') "
                     "from tickets_src") == [(3001, 3000)]


def test_a_glob_of_files_with_different_byte_order_marks(tmp_path):
    (tmp_path / "a.csv").write_bytes(codecs.BOM_UTF16_LE + ACCENTED.encode("utf-16-le"))
    (tmp_path / "b.csv").write_bytes(
        codecs.BOM_UTF16_BE
        + "ticket_id,created_at,status,subject\nT3,2024-01-02,open,Zoë\n".encode("utf-16-be"))
    mapping = _mapping(tmp_path, """
        [tickets]
        source = "*.csv"
        [tickets.columns]
        ticket_id = "ticket_id"
        created_at = "created_at"
        status = "status"
        subject = "subject"
    """)
    db = tmp_path / "wh.duckdb"
    ingest(tmp_path, mapping=mapping, db=db)
    assert _subjects(db) == ["José", "Müller", "Zoë"]

"""The audit log: exact entries, the hash chain, tampering found, concurrent writers, wiring."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from cs_metrics.cli.main import main
from cs_metrics.core import audit
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import SETTINGS_ENV, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ops.alerts import acknowledge, alert_history, mute, run_alerts, unmute
from tests.conftest import REPO
from tests.test_alerts import T0, _build, _only, _sla_tickets

GENESIS = "0" * 64
ISS = "https://id.example.com"


def _independent_hash(prev: str, seq: int, at: str, actor: str, role: str, action: str,
                      target: str, detail: str, issuer: str = "", subject: str = "") -> str:
    """The documented scheme written out again, so a change to it fails here: issuer and
    subject enter only when not empty."""
    fields = {"seq": seq, "at": at, "actor": actor, "role": role, "action": action,
              "target": target, "detail": detail}
    if issuer:
        fields["issuer"] = issuer
    if subject:
        fields["subject"] = subject
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + text).encode("utf-8")).hexdigest()


def _wh(tmp_path: Path, name: str = "wh.duckdb") -> Warehouse:
    return Warehouse(tmp_path / name)


def _log(tmp_path: Path, n: int) -> Warehouse:
    wh = _wh(tmp_path)
    start = datetime(2025, 1, 1, 9, 0)
    for i in range(1, n + 1):
        audit.record(wh, f"user{i}@example.com", "viewer", "export", f"file{i}.csv",
                     {"rows": i}, at=start + timedelta(minutes=i))
    return wh


def _count(wh: Warehouse) -> int:
    return wh.scalar("select count(*) from audit_log")


# --- writing and reading -----------------------------------------------------------------------


def test_entries_are_written_and_read_back_exactly(tmp_path):
    wh = _wh(tmp_path)
    # an aware time is stored in UTC; detail values that JSON lacks become text, sets sorted
    first = audit.record(
        wh, " ana@example.com ", "admin", "sign_in", "app",
        {"method": "oidc", "day": date(2025, 1, 2), "pages": {"b", "a"}},
        at=datetime(2025, 1, 2, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
    )
    assert first.seq == 1 and first.prev_hash == GENESIS
    assert first.at == datetime(2025, 1, 2, 8, 30, 0, 123456)
    assert first.actor == "ana@example.com" and first.role == "admin"
    assert first.detail == '{"day":"2025-01-02","method":"oidc","pages":["a","b"]}'
    assert first.details == {"day": "2025-01-02", "method": "oidc", "pages": ["a", "b"]}
    assert first.hash == _independent_hash(GENESIS, 1, "2025-01-02T08:30:00.123456",
                                           "ana@example.com", "admin", "sign_in", "app",
                                           first.detail)
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    second = audit.record(wh, "bo@example.com", "viewer", "export", "tickets.csv",
                          {"rows": 120, "format": "csv", "filters": {"channel": ["chat"]}})
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert second.seq == 2 and second.prev_hash == first.hash
    assert before <= second.at <= after  # "now" is UTC
    third = audit.record(wh, audit.LOCAL_ACTOR, "", "report", "executive 2025-01")
    assert third.detail == "{}" and third.seq == 3

    df = audit.entries(wh)
    assert list(df.columns) == list(audit.COLUMNS)
    assert df["seq"].tolist() == [3, 2, 1]  # newest first
    row = df.iloc[1]
    assert (row["seq"], row["actor"], row["role"], row["action"], row["target"]) == (
        2, "bo@example.com", "viewer", "export", "tickets.csv")
    assert json.loads(row["detail"]) == {"rows": 120, "format": "csv",
                                         "filters": {"channel": ["chat"]}}
    assert (row["prev_hash"], row["hash"]) == (first.hash, second.hash)
    assert pd.Timestamp(df.iloc[2]["at"]).to_pydatetime() == first.at

    assert audit.entries(wh, limit=1)["seq"].tolist() == [3]
    assert audit.entries(wh, action="export")["seq"].tolist() == [2]
    assert audit.entries(wh, actor="ana@example.com")["seq"].tolist() == [1]
    assert audit.entries(wh, since=date(2025, 1, 3))["seq"].tolist() == [3, 2]
    assert audit.entries(wh, since=datetime(2025, 1, 2, 8, 30, 0, 123457))["seq"].tolist() \
        == [3, 2]
    assert audit.entries(wh, action="sign_out").empty


def test_unknown_action_and_bad_input_are_refused_and_nothing_is_written(tmp_path):
    wh = _log(tmp_path, 1)
    with pytest.raises(CsMetricsError, match="Unknown audit action 'delete_everything'.*sign_in"):
        audit.record(wh, "ana", "admin", "delete_everything")
    with pytest.raises(CsMetricsError, match="Say who acted"):
        audit.record(wh, "  ", "admin", "sign_in")
    with pytest.raises(CsMetricsError, match="must be a table"):
        audit.record(wh, "ana", "admin", "export", "x.csv", ["not", "a", "dict"])
    with pytest.raises(CsMetricsError, match="not object"):
        audit.record(wh, "ana", "admin", "export", "x.csv", {"what": object()})
    with pytest.raises(CsMetricsError, match="Unknown audit action 'bogus'"):
        audit.entries(wh, action="bogus")
    with pytest.raises(CsMetricsError, match="limit"):
        audit.entries(wh, limit=0)
    assert _count(wh) == 1
    assert audit.verify(wh).ok


def test_no_way_to_change_or_remove_entries_is_offered():
    public = {name for name in audit.__all__ if callable(getattr(audit, name))}
    assert not {n for n in public if any(w in n for w in ("delete", "update", "remove",
                                                          "clear", "edit", "truncate"))}


def test_empty_log_reads_and_verifies(tmp_path):
    wh = _wh(tmp_path)
    assert audit.entries(wh).empty and list(audit.entries(wh).columns) == list(audit.COLUMNS)
    result = audit.verify(wh)
    assert (result.ok, result.checked, result.head_seq) == (True, 0, None)
    assert result.summary() == "The audit log is empty."


def test_a_failed_transaction_leaves_neither_change_nor_entry(tmp_path):
    wh = _log(tmp_path, 2)
    wh.connection().execute("create table things (x integer)")
    with pytest.raises(RuntimeError):
        with audit.appending(wh) as log:
            log.con.execute("insert into things values (1)")
            log.record("ana", "admin", "export", "x.csv")
            raise RuntimeError("boom")
    assert wh.scalar("select count(*) from things") == 0 and _count(wh) == 2
    # nested use joins the outer transaction: one commit, consecutive seqs
    with audit.appending(wh) as log:
        log.record("ana", "admin", "export", "a.csv")
        assert audit.record(wh, "ana", "admin", "export", "b.csv").seq == 4
    assert audit.entries(wh)["target"].tolist()[:2] == ["b.csv", "a.csv"]
    assert audit.verify(wh).ok


def test_read_only_warehouse_refuses_writes_but_reads_and_verifies(tmp_path):
    wh = _log(tmp_path, 3)
    wh.close()
    ro = Warehouse(tmp_path / "wh.duckdb", read_only=True)
    with pytest.raises(CsMetricsError, match="read-only"):
        audit.record(ro, "ana", "admin", "sign_in")
    with pytest.raises(CsMetricsError, match="read-only"):
        audit.record_settings(ro)
    assert audit.entries(ro)["seq"].tolist() == [3, 2, 1]
    assert audit.verify(ro).ok
    ro.close()


# --- the chain ---------------------------------------------------------------------------------


def test_chain_verifies_and_reports_its_head(tmp_path):
    wh = _log(tmp_path, 5)
    result = audit.verify(wh)
    last = audit.entries(wh, limit=1).iloc[0]
    assert (result.ok, result.checked, result.broken_seq, result.reason) == (True, 5, None, "")
    assert (result.head_seq, result.head_hash) == (5, last["hash"])
    assert "intact: 5 entries" in result.summary()
    assert audit.verify(wh, anchor=(5, last["hash"])).ok
    assert audit.verify(wh, anchor=(3, audit.entries(wh)["hash"].tolist()[2])).ok


@pytest.mark.parametrize("sql, seq, words", [
    ("update audit_log set actor = 'someone@else' where seq = 3", 3, "was changed"),
    ("update audit_log set detail = '{\"rows\":999}' where seq = 4", 4, "was changed"),
    ("update audit_log set \"at\" = \"at\" + interval 1 second where seq = 2", 2, "was changed"),
    ("update audit_log set action = 'sign_in' where seq = 1", 1, "was changed"),
    ("delete from audit_log where seq = 2", 2, "entry 2 is missing"),
    ("delete from audit_log where seq in (2, 3)", 2, "entries 2 to 3 are missing"),
    ("delete from audit_log where seq = 1", 1, "entry 1 is missing"),
])
def test_tampering_with_sql_is_found_at_the_right_entry(tmp_path, sql, seq, words):
    wh = _log(tmp_path, 5)
    assert audit.verify(wh).ok
    wh.connection().execute(sql)
    result = audit.verify(wh)
    assert not result.ok
    assert result.broken_seq == seq
    assert words in result.reason
    assert f"broken at entry {seq}" in result.summary()


def test_a_changed_entry_with_its_hash_recomputed_breaks_the_next_link(tmp_path):
    wh = _log(tmp_path, 5)
    row = audit.entries(wh).set_index("seq").loc[3]
    forged = audit.entry_hash(row["prev_hash"], 3, pd.Timestamp(row["at"]).to_pydatetime(),
                              "forger", row["role"], row["action"], row["target"],
                              row["detail"])
    wh.connection().execute("update audit_log set actor = 'forger', hash = ? where seq = 3",
                            [forged])
    result = audit.verify(wh)
    assert (result.ok, result.broken_seq) == (False, 4)
    assert "prev_hash does not match the hash of entry 3" in result.reason


def test_deleting_the_newest_entries_needs_an_anchor_to_be_seen(tmp_path):
    wh = _log(tmp_path, 5)
    head = audit.verify(wh)
    wh.connection().execute("delete from audit_log where seq >= 4")
    assert audit.verify(wh).ok  # the limit the module docstring states
    result = audit.verify(wh, anchor=(head.head_seq, head.head_hash))
    assert (result.ok, result.broken_seq) == (False, 5)
    assert "ends at entry 3" in result.reason
    # a log rewritten from the start with fresh hashes is caught by an anchor as well
    wh.connection().execute("delete from audit_log")
    for i in range(1, 6):
        audit.record(wh, "forger", "admin", "export", f"f{i}.csv")
    assert audit.verify(wh).ok
    result = audit.verify(wh, anchor=(head.head_seq, head.head_hash))
    assert (result.ok, result.broken_seq) == (False, 5)
    assert "anchored head" in result.reason


# --- issuer and subject ------------------------------------------------------------------------


def test_issuer_and_subject_tell_apart_two_accounts_with_one_email(tmp_path):
    wh = _wh(tmp_path)
    at = datetime(2025, 3, 1, 8, 0)
    real = audit.record(wh, "ada@example.com", "admin", "sign_in", "", {}, at=at,
                        issuer=ISS, subject="real-ada")
    other = audit.record(wh, "ada@example.com", "admin", "sign_in", "", {}, at=at,
                         issuer="https://other-idp.example.org", subject=" 42 ")
    assert (real.issuer, real.subject) == (ISS, "real-ada")
    assert (other.issuer, other.subject) == ("https://other-idp.example.org", "42")
    assert real.hash == _independent_hash(GENESIS, 1, "2025-03-01T08:00:00.000000",
                                          "ada@example.com", "admin", "sign_in", "", "{}",
                                          ISS, "real-ada")
    # the same fields without issuer and subject hash as entries always did
    assert real.hash != _independent_hash(GENESIS, 1, "2025-03-01T08:00:00.000000",
                                          "ada@example.com", "admin", "sign_in", "", "{}")
    df = audit.entries(wh, actor="ada@example.com")
    assert df[["issuer", "subject"]].values.tolist() == [
        ["https://other-idp.example.org", "42"], [ISS, "real-ada"]]
    assert audit.verify(wh).ok
    with pytest.raises(CsMetricsError, match="issuer and subject must be text"):
        audit.record(wh, "ada@example.com", "admin", "sign_in", subject=42)  # type: ignore
    assert _count(wh) == 2


_OLD_DDL = """create table audit_log (
    seq bigint primary key, "at" timestamp not null, actor varchar not null,
    role varchar not null, action varchar not null, target varchar not null,
    detail varchar not null, prev_hash varchar not null, hash varchar not null)"""


def _old_log(db: Path, n: int) -> list[str]:
    """A log as the version before issuer and subject wrote it: its table and its hashes."""
    wh = Warehouse(db)
    con = wh.connection()
    con.execute(_OLD_DDL)
    prev, hashes = GENESIS, []
    for seq in range(1, n + 1):
        at = datetime(2025, 1, 1, 9, seq)
        fields = (f"user{seq}@example.com", "admin", "export", f"f{seq}.csv", "{}")
        digest = _independent_hash(prev, seq, at.isoformat(timespec="microseconds"), *fields)
        con.execute("insert into audit_log values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [seq, at, *fields, prev, digest])
        hashes.append(digest)
        prev = digest
    wh.close()
    return hashes


def test_a_log_written_before_issuer_and_subject_still_verifies(tmp_path, capsys):
    db = tmp_path / "old.duckdb"
    hashes = _old_log(db, 3)
    ro = Warehouse(db, read_only=True)  # as `audit --verify` opens it: nothing to migrate
    result = audit.verify(ro)
    assert (result.ok, result.checked, result.head_hash) == (True, 3, hashes[-1])
    df = audit.entries(ro)
    assert list(df.columns) == list(audit.COLUMNS)
    assert df[["issuer", "subject"]].values.tolist() == [["", ""]] * 3
    ro.close()
    assert cli(capsys, "audit", "--verify", "--db", str(db)).returncode == 0
    # the next write gives the table the new columns; old entries keep their hashes
    wh = Warehouse(db)
    new = audit.record(wh, "ada@example.com", "admin", "sign_in", issuer=ISS, subject="s-1")
    assert new.seq == 4 and new.prev_hash == hashes[-1]
    assert audit.entries(wh)["hash"].tolist()[1:] == hashes[::-1]
    result = audit.verify(wh)
    assert (result.ok, result.checked) == (True, 4)
    assert audit.entries(wh, limit=1)[["issuer", "subject"]].values.tolist() == [[ISS, "s-1"]]
    wh.close()


@pytest.mark.parametrize("sql, seq", [
    ("update audit_log set issuer = 'https://evil.example' where seq = 2", 2),  # old entry
    ("update audit_log set subject = 'someone-else' where seq = 4", 4),
    ("update audit_log set subject = '' where seq = 4", 4),  # cleared
    ("update audit_log set issuer = '' where seq = 4", 4),
])
def test_tampering_with_issuer_or_subject_is_found(tmp_path, sql, seq):
    db = tmp_path / "old.duckdb"
    _old_log(db, 3)
    wh = Warehouse(db)
    audit.record(wh, "ada@example.com", "admin", "sign_in", issuer=ISS, subject="s-1")
    assert audit.verify(wh).ok
    wh.connection().execute(sql)
    result = audit.verify(wh)
    assert (result.ok, result.broken_seq) == (False, seq)
    assert "was changed" in result.reason
    wh.close()


def test_concurrent_writers_from_eight_threads_keep_one_chain(tmp_path):
    wh = _wh(tmp_path)
    other = Warehouse(tmp_path / "wh.duckdb")  # a second object on the same file
    per_thread, errors = 20, []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        target = wh if i % 2 else other
        try:
            barrier.wait()
            for j in range(per_thread):
                audit.record(target, f"t{i}", "viewer", "export", f"{i}-{j}")
        except Exception as exc:  # collected: an exception in a thread would pass unseen
            errors.append(exc)
        finally:
            target.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    df = audit.entries(wh).sort_values("seq")
    assert df["seq"].tolist() == list(range(1, 8 * per_thread + 1))
    assert df["prev_hash"].tolist()[1:] == df["hash"].tolist()[:-1]
    for i in range(8):  # each thread's entries in the order it wrote them
        mine = df[df["actor"] == f"t{i}"]["target"].tolist()
        assert mine == [f"{i}-{j}" for j in range(per_thread)]
    result = audit.verify(wh)
    assert (result.ok, result.checked) == (True, 8 * per_thread)


# --- alerts ------------------------------------------------------------------------------------


def test_acknowledge_mute_and_unmute_write_entries_with_their_actor(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    run_alerts(wh, _only(load_settings(), "sla"), now=T0, notifier=None)
    when = datetime(2024, 1, 10, 12, 5)
    assert acknowledge(wh, "sla_breached:all", "lead@example.com", at=when, role="manager") == 1
    assert acknowledge(wh, "sla_breached:all", "lead@example.com") == 0  # nothing new: no entry
    with pytest.raises(CsMetricsError, match="no alert"):
        acknowledge(wh, "nope:1", "lead@example.com")
    until = mute(wh, "sla_at_risk", timedelta(hours=2), "ops@example.com", reason="known",
                 role="admin")
    assert unmute(wh, "sla_at_risk", by="ops@example.com", role="admin") == 1
    assert unmute(wh, "sla_at_risk", by="ops@example.com") == 0  # nothing lifted: no entry
    mute(wh, "sla_breached:all", timedelta(hours=1), "ops@example.com")
    assert unmute(wh, "sla_breached:all") == 1  # who is not known

    df = audit.entries(wh).sort_values("seq")
    got = df[["seq", "actor", "role", "action", "target"]].values.tolist()
    assert got == [
        [1, "lead@example.com", "manager", "alert_acknowledged", "sla_breached:all"],
        [2, "ops@example.com", "admin", "alert_muted", "sla_at_risk"],
        [3, "ops@example.com", "admin", "alert_unmuted", "sla_at_risk"],
        [4, "ops@example.com", "", "alert_muted", "sla_breached:all"],
        [5, "unknown", "", "alert_unmuted", "sla_breached:all"],
    ]
    details = [json.loads(d) for d in df["detail"]]
    assert details[0] == {"occurrences": ["sla_breached:all#1"],
                          "acknowledged_at": "2024-01-10T12:05:00"}
    assert details[1] == {"until": until.isoformat(), "reason": "known"}
    assert details[2] == {"lifted": 1}
    assert audit.verify(wh).ok


def test_an_alert_change_is_undone_when_its_entry_cannot_be_written(tmp_path, monkeypatch):
    wh = _build(tmp_path, _sla_tickets())
    run_alerts(wh, _only(load_settings(), "sla"), now=T0, notifier=None)

    def fail(*args, **kwargs):
        raise CsMetricsError("the audit log is full")

    monkeypatch.setattr(audit.AuditLog, "record", fail)
    with pytest.raises(CsMetricsError, match="full"):
        acknowledge(wh, "sla_breached:all", "lead@example.com")
    row = alert_history(wh).set_index("alert_id").loc["sla_breached:all"]
    assert pd.isna(row["acknowledged_at"])  # the acknowledgement was rolled back with it
    with pytest.raises(CsMetricsError, match="full"):
        mute(wh, "sla_at_risk", timedelta(hours=2), "ops@example.com")
    assert wh.scalar("select count(*) from alert_mutes") == 0


# --- settings ----------------------------------------------------------------------------------


def test_record_settings_once_per_change_with_the_sections_that_changed(tmp_path, monkeypatch):
    wh = _wh(tmp_path)
    path = tmp_path / "settings.toml"
    path.write_text("[targets]\ncsat_pct = 85\n", encoding="utf-8")
    assert audit.record_settings(wh, path, "admin@example.com", "admin") is True
    assert audit.record_settings(wh, path, "admin@example.com", "admin") is False
    first = audit.entries(wh, action="settings_changed")
    assert len(first) == 1
    row = first.iloc[0]
    assert (row["actor"], row["role"], row["target"]) == (
        "admin@example.com", "admin", str(path.resolve()))
    d = json.loads(row["detail"])
    assert d["first"] is True and d["changed"] == d["added"] == d["removed"] == []
    assert d["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "targets.csat_pct" in d["sections"] and "alerts.outage" in d["sections"]

    # a changed target, a changed default and a new key; the file is written again unchanged
    path.write_text("[targets]\ncsat_pct = 80\nmy_metric = 1\n\n[staffing]\nshrinkage = 0.25\n",
                    encoding="utf-8")
    assert audit.record_settings(wh, path, "admin@example.com", "admin") is True
    assert audit.record_settings(wh, path, "admin@example.com", "admin") is False
    d = audit.entries(wh, action="settings_changed").iloc[0]["detail"]
    d = json.loads(d)
    assert d["first"] is False
    assert d["changed"] == ["staffing.shrinkage", "targets.csat_pct"]
    assert d["added"] == ["targets.my_metric"] and d["removed"] == []

    # the key removed again, the rest as before: only the removal is named
    path.write_text("[targets]\ncsat_pct = 80\n\n[staffing]\nshrinkage = 0.25\n",
                    encoding="utf-8")
    assert audit.record_settings(wh, path, "admin@example.com", "admin") is True
    d = json.loads(audit.entries(wh, action="settings_changed").iloc[0]["detail"])
    assert (d["changed"], d["added"], d["removed"]) == ([], [], ["targets.my_metric"])

    # a comment changes the file but no setting: recorded, with nothing named
    path.write_text("# tuned in March\n[targets]\ncsat_pct = 80\n\n[staffing]\n"
                    "shrinkage = 0.25\n", encoding="utf-8")
    assert audit.record_settings(wh, path, "admin@example.com", "admin") is True
    d = json.loads(audit.entries(wh, action="settings_changed").iloc[0]["detail"])
    assert (d["changed"], d["added"], d["removed"]) == ([], [], [])
    assert len(audit.entries(wh, action="settings_changed")) == 4

    # the default path is found as load_settings finds it: $CS_METRICS_SETTINGS ...
    monkeypatch.setenv(SETTINGS_ENV, str(path))
    assert audit.record_settings(wh, actor="admin@example.com") is False
    # ... else ./settings.toml, else the defaults alone
    monkeypatch.delenv(SETTINGS_ENV)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert audit.record_settings(wh, actor="admin@example.com") is True
    row = audit.entries(wh, action="settings_changed").iloc[0]
    d = json.loads(row["detail"])
    assert row["target"] == "defaults" and d["file"] == "" and d["file_sha256"] == ""
    assert d["changed"] == ["staffing.shrinkage", "targets.csat_pct"]
    assert audit.record_settings(wh, actor="admin@example.com") is False
    with pytest.raises(CsMetricsError, match="does not exist"):
        audit.record_settings(wh, tmp_path / "missing.toml")
    assert audit.verify(wh).ok


def test_record_settings_stores_hashes_not_values(tmp_path):
    wh = _wh(tmp_path)
    path = tmp_path / "settings.toml"
    path.write_text('[notifications.webhook]\nurls = ["https://hooks.example.com/T0/s3cr3t"]\n',
                    encoding="utf-8")
    assert audit.record_settings(wh, path)
    row = audit.entries(wh).iloc[0]
    assert row["actor"] == audit.LOCAL_ACTOR and row["action"] == "settings_changed"
    assert "s3cr3t" not in row["detail"] and "hooks.example.com" not in row["detail"]
    assert len(json.loads(row["detail"])["sections"]["notifications.webhook"]) == 16


# --- command line ------------------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cs_metrics", *args], cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """The command in this process (starting Python costs seconds per call): same result."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


def test_cli_prints_entries_as_csv_and_json(tmp_path, capsys):
    wh = _log(tmp_path, 3)
    audit.record(wh, "ana@example.com", "admin", "sign_in", "app", {"method": "oidc"},
                 at=datetime(2025, 1, 1, 10, 0), issuer=ISS, subject="u-1")
    wh.close()
    db = str(tmp_path / "wh.duckdb")
    res = cli(capsys, "audit", "--db", db)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(io.StringIO(res.stdout), dtype=str, keep_default_na=False)
    assert list(df.columns) == list(audit.COLUMNS)
    assert df["seq"].tolist() == ["4", "3", "2", "1"]
    assert df.iloc[0][["at", "actor", "issuer", "subject", "role", "action", "target",
                       "detail"]].tolist() == [
        "2025-01-01T10:00:00.000000", "ana@example.com", ISS, "u-1", "admin", "sign_in",
        "app", '{"method":"oidc"}']
    assert df.iloc[1][["issuer", "subject"]].tolist() == ["", ""]
    # the CSV carries every field as hashed, so the chain can be checked from a download
    prev = GENESIS
    for _, row in df.iloc[::-1].iterrows():
        assert row["prev_hash"] == prev
        assert _independent_hash(prev, int(row["seq"]), row["at"], row["actor"], row["role"],
                                 row["action"], row["target"], row["detail"], row["issuer"],
                                 row["subject"]) == row["hash"]
        prev = row["hash"]

    res = cli(capsys, "audit", "--db", db, "--action", "export", "--limit", "2")
    assert res.returncode == 0, res.stderr
    assert pd.read_csv(io.StringIO(res.stdout))["target"].tolist() == ["file3.csv", "file2.csv"]

    out = tmp_path / "audit.json"
    res = cli(capsys, "audit", "--db", db, "--format", "json", "--out", str(out))
    assert res.returncode == 0 and res.stdout == ""
    records = json.loads(out.read_text(encoding="utf-8"))
    assert [r["seq"] for r in records] == [4, 3, 2, 1]
    assert records[0]["at"] == "2025-01-01T10:00:00.000000"
    assert records[0]["detail"] == '{"method":"oidc"}'
    assert (records[0]["issuer"], records[0]["subject"]) == (ISS, "u-1")


def test_cli_verify_exit_codes(tmp_path, capsys):
    wh = _log(tmp_path, 4)
    wh.close()
    db = str(tmp_path / "wh.duckdb")
    res = run("audit", "--verify", "--db", db)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("The audit log is intact: 4 entries, head 4 ")
    res = cli(capsys, "audit", "--verify", "--format", "json", "--db", db)
    assert res.returncode == 0
    assert json.loads(res.stdout)["ok"] is True

    wh = Warehouse(db)
    wh.connection().execute("update audit_log set target = 'other.csv' where seq = 2")
    wh.close()
    res = run("audit", "--verify", "--db", db)
    assert res.returncode == 1  # a finding, told apart from bad usage (2)
    assert "broken at entry 2" in res.stdout and "changed" in res.stdout
    res = cli(capsys, "audit", "--verify", "--format", "json", "--db", db)
    assert res.returncode == 1
    got = json.loads(res.stdout)
    assert (got["ok"], got["broken_seq"], got["checked"]) == (False, 2, 2)


@pytest.mark.parametrize("args, words", [
    (["--verify", "--limit", "3"], ["--verify checks the whole audit log"]),
    (["--action", "bogus"], ["Unknown audit action 'bogus'", "sign_in"]),
    (["--limit", "0"], ["limit"]),
    (["--format", "xml"], ["invalid choice"]),
])
def test_cli_bad_usage_exits_2_with_one_sentence(tmp_path, capsys, args, words):
    wh = _log(tmp_path, 1)
    wh.close()
    res = cli(capsys, "audit", *args, "--db", str(tmp_path / "wh.duckdb"))
    assert res.returncode == 2
    assert res.stdout == "" and "Traceback" not in res.stderr
    for w in words:
        assert w in res.stderr


def test_cli_without_a_log_or_a_warehouse(tmp_path, capsys):
    db = tmp_path / "wh.duckdb"
    Warehouse(db).close()
    res = cli(capsys, "audit", "--verify", "--db", str(db))
    assert res.returncode == 0 and res.stdout == "The audit log is empty.\n"
    res = cli(capsys, "audit", "--db", str(db))
    assert res.returncode == 0 and res.stdout.strip() == ",".join(audit.COLUMNS)
    res = cli(capsys, "audit", "--db", str(tmp_path / "none.duckdb"))
    assert res.returncode == 2 and "no warehouse" in res.stderr


# --- loads on the command line -------------------------------------------------------------------

_EXPORT = "Key,Opened,State\nA1,2025-01-10 10:00:00,open\nA2,2025-01-11 10:00:00,in_progress\n"
_MAPPING = """[tickets]
source = "export.csv"
[tickets.columns]
ticket_id = "Key"
created_at = "Opened"
status = "State"
"""


def test_a_mapped_load_on_the_command_line_is_logged_with_the_mappings_hash(tmp_path, capsys):
    (tmp_path / "export.csv").write_text(_EXPORT, encoding="utf-8")
    mapping = tmp_path / "mine.toml"
    mapping.write_text(_MAPPING, encoding="utf-8")
    db = tmp_path / "wh.duckdb"
    res = cli(capsys, "ingest", str(tmp_path), "--mapping", str(mapping), "--db", str(db))
    assert res.returncode == 0, res.stderr
    wh = Warehouse(db)
    log = audit.entries(wh)
    assert audit.verify(wh).ok
    wh.close()
    assert log[["actor", "role", "action", "target", "issuer"]].values.tolist() == [
        ["local", "", "dataset_loaded", "wh.duckdb", ""]]
    detail = json.loads(log["detail"].iloc[0])
    assert detail["via"] == "command line"
    assert detail["mapping"] == str(mapping.resolve())
    assert detail["mapping_sha256"] == hashlib.sha256(mapping.read_bytes()).hexdigest()
    assert [Path(f["name"]).name for f in detail["files"]] == ["export.csv"]
    assert detail["files"][0]["bytes"] == len(_EXPORT.encode())
    assert (detail["loaded"], detail["rejected"], detail["replace"]) == (2, 0, False)


def test_a_canonical_load_is_logged_and_a_failed_entry_says_the_load_committed(
        tmp_path, capsys, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tickets.csv").write_text(
        "ticket_id,created_at,status\nT1,2025-01-10 10:00:00,open\n", encoding="utf-8")
    db = tmp_path / "wh.duckdb"
    assert cli(capsys, "ingest", str(src), "--db", str(db)).returncode == 0
    wh = Warehouse(db)
    detail = audit.entries(wh, action="dataset_loaded")["detail"].tolist()
    wh.close()
    assert len(detail) == 1 and "mapping_sha256" not in json.loads(detail[0])

    def refuse(*args, **kwargs):
        raise CsMetricsError("the disk is full")

    monkeypatch.setattr(audit, "record", refuse)
    res = cli(capsys, "ingest", str(src), "--db", str(db), "--replace")
    assert res.returncode == 0
    assert ("warning: the load committed, but it could not be written to the audit log: "
            "the disk is full") in res.stderr
    wh = Warehouse(db)
    assert wh.scalar("select count(*) from tickets") == 1
    wh.close()

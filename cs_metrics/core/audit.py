"""The audit log: who signed in, exported, built a report, changed a setting or handled an alert.

Entries live in the warehouse table ``audit_log`` (created on the first write), one row per
action: ``seq`` (1, 2, ...), ``at`` (UTC), ``actor`` (an e-mail address or identity; ``local``
when the app runs without sign-in), ``issuer`` and ``subject`` (the identity provider's ``iss``
and ``sub`` claims of who signed in, empty without sign-in: they tell apart two accounts that
claim one e-mail address), ``role``, ``action`` (one of ``ACTIONS``), ``target`` (what was
acted on: a file name, an alert id, a page), ``detail`` (JSON: filters, row count, format),
``prev_hash`` and ``hash``.

The log is append-only: this module writes new entries and offers no way to change or remove
one. It is also tamper-evident: every entry's ``hash`` is the SHA-256 of the previous entry's
hash followed by the canonical JSON of the entry's own fields (see ``entry_hash``), so an entry
changed or deleted afterwards with plain SQL breaks the chain at that entry, and ``verify``
names it. The first entry's ``prev_hash`` is ``GENESIS``. ``issuer`` and ``subject`` came
later: they enter the hash only when not empty, so entries written before them (and logs
whose table has no such columns) verify as they always did, and setting either on an old
entry, or clearing it on a new one, breaks the chain there.

What the chain does not protect against: the hash has no secret in it, so someone with write
access to the warehouse file who recomputes the hashes from the changed entry onwards, or who
deletes the newest entries, leaves a chain that verifies. Noting the head (``seq`` and
``hash`` that ``verify`` reports) somewhere else and passing it back as ``anchor`` catches a
shortened or rewritten log up to that point; protection beyond that needs the log copied off
the machine.

One process writes a warehouse at a time (DuckDB's file lock), and within it a process-wide
lock serialises appends, so threads of the app cannot interleave: reading the last hash and
inserting the next entry happen in one transaction under that lock.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.warehouse import Warehouse, catalog_changed

__all__ = [
    "ACTIONS",
    "COLUMNS",
    "GENESIS",
    "LOCAL_ACTOR",
    "TABLE",
    "UNKNOWN_ACTOR",
    "AuditEntry",
    "AuditLog",
    "VerifyResult",
    "appending",
    "entries",
    "entry_hash",
    "record",
    "record_settings",
    "signed_in",
    "to_csv_bytes",
    "to_records",
    "verify",
]

TABLE = "audit_log"

# A closed list: an entry whose action is not here is refused, so the log's vocabulary stays
# something an admin can filter on and a reviewer can read.
ACTIONS: tuple[str, ...] = (
    "sign_in",
    "sign_out",
    "access_denied",
    "export",
    "report",
    "alert_acknowledged",
    "alert_muted",
    "alert_unmuted",
    "settings_changed",
    "dataset_validated",
    "dataset_loaded",
)

LOCAL_ACTOR = "local"  # the actor when the app runs without sign-in
UNKNOWN_ACTOR = "unknown"  # when a caller did not say who acted
GENESIS = "0" * 64  # prev_hash of the first entry

COLUMNS: tuple[str, ...] = (
    "seq", "at", "actor", "issuer", "subject", "role", "action", "target", "detail",
    "prev_hash", "hash",
)
_IDENTITY_COLUMNS = ("issuer", "subject")  # added later: a log made before lacks them

_DDL = f"""create table if not exists {TABLE} (
    seq bigint primary key, "at" timestamp not null, actor varchar not null,
    issuer varchar not null default '', subject varchar not null default '',
    role varchar not null, action varchar not null, target varchar not null,
    detail varchar not null, prev_hash varchar not null, hash varchar not null)"""

# One lock for the whole process: every Warehouse object on the same file shares the DuckDB
# database, so a lock per object would let two of them append with the same seq.
_LOCK = threading.RLock()
_active = threading.local()  # the AuditLog of the transaction this thread has open, if any


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    detail: str  # canonical JSON text, exactly as hashed
    prev_hash: str
    hash: str
    issuer: str = ""
    subject: str = ""

    @property
    def details(self) -> Any:
        """``detail`` parsed."""
        return json.loads(self.detail)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # entries read
    broken_seq: int | None  # the first entry that is not as it was written
    reason: str  # why, or "" when ok
    head_seq: int | None  # the newest entry: note it elsewhere to pass back as an anchor
    head_hash: str | None

    def summary(self) -> str:
        if not self.ok:
            return f"The audit log is broken at entry {self.broken_seq}: {self.reason}"
        if not self.checked:
            return "The audit log is empty."
        return (f"The audit log is intact: {self.checked:,d} entries, head {self.head_seq} "
                f"{self.head_hash}.")


# --- hashing -----------------------------------------------------------------------------------


def _format_at(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def entry_hash(prev_hash: str | None, seq: int | None, at: datetime | None, actor: str | None,
               role: str | None, action: str | None, target: str | None,
               detail: str | None, *, issuer: str | None = None,
               subject: str | None = None) -> str:
    """SHA-256 (hex) of ``prev_hash`` followed by the canonical JSON of the entry's fields.

    ``at`` enters as ISO text with microseconds (``2025-01-02T03:04:05.000006``), ``detail``
    as the stored JSON text; the CSV of ``to_csv_bytes`` carries both in exactly that form,
    so a download can be checked without the warehouse. ``issuer`` and ``subject`` enter
    only when not empty (None and "" alike), which keeps the hashes of entries written
    before the log had them.
    """
    fields = {
        "seq": seq, "at": _format_at(at) if at is not None else None, "actor": actor,
        "role": role, "action": action, "target": target, "detail": detail,
    }
    if issuer:
        fields["issuer"] = issuer
    if subject:
        fields["subject"] = subject
    return hashlib.sha256(((prev_hash or "") + _canonical(fields)).encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    """``value`` with what JSON cannot hold turned into text or plain numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=_canonical) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise CsMetricsError(
        f"Audit detail values must be text, numbers, dates, lists or tables, not "
        f"{type(value).__name__}."
    )


def _detail_text(detail: Mapping[str, Any] | None) -> str:
    if detail is None:
        return "{}"
    if not isinstance(detail, Mapping):
        raise CsMetricsError(
            f"Audit detail must be a table of names and values (a dict), not "
            f"{type(detail).__name__}."
        )
    return _canonical(_plain(detail))


def _utc(at: datetime | None) -> datetime:
    """A naive UTC timestamp (the column's form): aware times are converted, naive ones are
    taken as UTC already."""
    if at is None:
        return datetime.now(timezone.utc).replace(tzinfo=None)
    if not isinstance(at, datetime):
        raise CsMetricsError(f"An audit time must be a datetime, not {type(at).__name__}.")
    if at.tzinfo is not None:
        return at.astimezone(timezone.utc).replace(tzinfo=None)
    return at


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise CsMetricsError(
            f"Unknown audit action {action!r}; valid actions: {', '.join(ACTIONS)}."
        )


# --- writing -----------------------------------------------------------------------------------


class AuditLog:
    """The open append transaction of one thread (see ``appending``)."""

    def __init__(self, wh: Warehouse, con: duckdb.DuckDBPyConnection) -> None:
        self.wh = wh
        self.con = con

    def record(self, actor: str, role: str, action: str, target: str = "",
               detail: Mapping[str, Any] | None = None,
               at: datetime | None = None, *, issuer: str = "",
               subject: str = "") -> AuditEntry:
        """Append one entry inside this transaction; it is visible to others at commit."""
        _check_action(action)
        if not isinstance(actor, str) or not actor.strip():
            raise CsMetricsError(
                "Say who acted for the audit log (an e-mail address or identity, or "
                f"{LOCAL_ACTOR!r} without sign-in)."
            )
        if not isinstance(issuer, str) or not isinstance(subject, str):
            raise CsMetricsError("An audit entry's issuer and subject must be text.")
        detail_text = _detail_text(detail)
        when = _utc(at)
        actor, role, target = actor.strip(), (role or "").strip(), str(target or "")
        issuer, subject = issuer.strip(), subject.strip()
        last = self.con.execute(
            f"select seq, hash from {TABLE} order by seq desc limit 1"
        ).fetchall()
        seq, prev = (last[0][0] + 1, last[0][1]) if last else (1, GENESIS)
        digest = entry_hash(prev, seq, when, actor, role, action, target, detail_text,
                            issuer=issuer, subject=subject)
        # columns by name: a log made before issuer and subject has them last
        self.con.execute(
            f"insert into {TABLE} ({', '.join(_quoted(c) for c in COLUMNS)}) "
            f"values ({', '.join('?' for _ in COLUMNS)})",
            [seq, when, actor, issuer, subject, role, action, target, detail_text, prev,
             digest],
        )
        return AuditEntry(seq, when, actor, role, action, target, detail_text, prev, digest,
                          issuer, subject)


def _writable(wh: Warehouse, what: str) -> duckdb.DuckDBPyConnection:
    if wh.read_only:
        raise CsMetricsError(
            f"Cannot {what}: the warehouse {wh.path} is open read-only; the audit log is "
            "written by the process that holds it read-write (the app)."
        )
    con = wh.connection()
    try:
        con.execute(_DDL)
        have = {r[0] for r in con.execute(
            "select column_name from duckdb_columns() where database_name = "
            "current_database() and schema_name = 'main' and table_name = ?", [TABLE]
        ).fetchall()}
        for column in _IDENTITY_COLUMNS:
            if column not in have:  # a log made before them: old entries get ""
                con.execute(f"alter table {TABLE} add column {column} varchar "
                            "not null default ''")
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot create the audit log in {wh.path}: {exc}") from exc
    finally:
        catalog_changed()
    return con


@contextmanager
def appending(wh: Warehouse, what: str = "write the audit log") -> Iterator[AuditLog]:
    """One transaction that can change other tables and append audit entries together.

    ``with appending(wh, "acknowledge an alert") as log:`` runs ``log.con.execute(...)`` and
    ``log.record(...)`` atomically: either the change and its entries are committed, or
    neither. Nested use in the same thread joins the outer transaction. ``what`` completes
    the sentence of the read-only error ("Cannot acknowledge an alert: ...").
    """
    outer = getattr(_active, "log", None)
    if outer is not None and outer.wh is wh:
        yield outer
        return
    with _LOCK:
        con = _writable(wh, what)
        log = AuditLog(wh, con)
        try:
            con.execute("begin transaction")
        except duckdb.Error as exc:
            raise CsMetricsError(f"Cannot {what} in {wh.path}: {exc}") from exc
        _active.log = log
        try:
            yield log
            con.execute("commit")
        except BaseException as exc:
            try:
                con.execute("rollback")
            except duckdb.Error:
                pass  # a failed commit has already ended the transaction
            if isinstance(exc, duckdb.Error):
                raise CsMetricsError(f"Cannot {what} in {wh.path}: {exc}") from exc
            raise
        finally:
            _active.log = outer


def record(wh: Warehouse, actor: str, role: str, action: str, target: str = "",
           detail: Mapping[str, Any] | None = None, at: datetime | None = None, *,
           issuer: str = "", subject: str = "") -> AuditEntry:
    """Append one entry and commit it; returns the entry as stored.

    ``action`` must be one of ``ACTIONS``; ``detail`` is a dict of JSON-able values (dates
    become ISO text); ``at`` defaults to now (UTC; a naive time is taken as UTC);
    ``issuer`` and ``subject`` are the identity provider's ``iss`` and ``sub`` of a
    signed-in actor.
    """
    with appending(wh) as log:
        return log.record(actor, role, action, target, detail, at, issuer=issuer,
                          subject=subject)


def signed_in(wh: Warehouse) -> dict[str, str]:
    """The identity provider's issuer and subject of whoever ``wh`` is scoped to, as keyword
    arguments of ``record``: for writers that are handed a scoped warehouse and write to
    its base (empty without a scope or sign-in)."""
    scope = wh.scope
    return {"issuer": getattr(scope, "issuer", "") or "",
            "subject": getattr(scope, "subject", "") or ""}


# --- reading -----------------------------------------------------------------------------------


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    frame["seq"] = frame["seq"].astype("int64")
    frame["at"] = frame["at"].astype("datetime64[us]")
    return frame


def entries(wh: Warehouse, limit: int | None = None, actor: str | None = None,
            action: str | None = None, since: datetime | date | None = None) -> pd.DataFrame:
    """Entries newest first, with the columns of ``COLUMNS``; works read-only too.

    ``actor`` and ``action`` match exactly, ``since`` keeps entries at or after it (UTC; a
    date means its midnight), ``limit`` keeps the newest ``limit``.
    """
    if action is not None:
        _check_action(action)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise CsMetricsError(f"An audit log limit must be a whole number of 1 or more, "
                             f"not {limit!r}.")
    if not wh.has_table(TABLE):
        return _empty()
    where, params = [], []
    if actor is not None:
        where.append("actor = ?")
        params.append(actor)
    if action is not None:
        where.append("action = ?")
        params.append(action)
    if since is not None:
        if not isinstance(since, datetime):
            since = datetime(since.year, since.month, since.day)
        where.append('"at" >= ?')
        params.append(_utc(since))
    sql = f"select {_select_list(wh)} from {TABLE}"
    if where:
        sql += " where " + " and ".join(where)
    sql += " order by seq desc"
    if limit is not None:
        sql += " limit ?"
        params.append(limit)
    return wh.df(sql, params)


def _quoted(column: str) -> str:
    return f'"{column}"'


def _select_list(wh: Warehouse) -> str:
    """``COLUMNS`` to select, with "" for the identity columns of a log made before them
    (read-only, it cannot be given them)."""
    have = set(wh.columns(TABLE))
    return ", ".join(
        (f"coalesce({_quoted(c)}, '') as {_quoted(c)}" if c in have else f"'' as {_quoted(c)}")
        if c in _IDENTITY_COLUMNS else _quoted(c)
        for c in COLUMNS)


def _check_rows(rows: Iterable[tuple], anchor: tuple[int, str] | None) -> VerifyResult:
    expected, prev = 1, GENESIS
    checked, head_seq, head_hash = 0, None, None
    anchored = anchor is None
    for seq, at, actor, issuer, subject, role, action, target, detail, prev_hash, stored \
            in rows:
        checked += 1
        why = ""
        if seq is None or seq < expected:
            seq, why = expected, "an entry has no seq, or one seq appears twice."
        elif seq > expected:
            gap = (f"entry {expected} is missing" if seq == expected + 1
                   else f"entries {expected} to {seq - 1} are missing")
            seq, why = expected, f"{gap} (deleted?)."
        elif prev_hash != prev:
            why = (f"its prev_hash does not match the hash of entry {seq - 1} (an entry "
                   "before it was changed or removed).")
        elif entry_hash(prev_hash, seq, at, actor, role, action, target, detail,
                        issuer=issuer, subject=subject) != stored:
            why = "its hash does not match its content (the entry was changed)."
        elif anchor is not None and seq == anchor[0]:
            if stored != anchor[1]:
                why = "its hash differs from the anchored head (the log was rewritten)."
            anchored = True
        if why:
            return VerifyResult(False, checked, seq, why, head_seq, head_hash)
        expected, prev = seq + 1, stored
        head_seq, head_hash = seq, stored
    if not anchored:
        return VerifyResult(False, checked, anchor[0],
                            f"the log ends at entry {head_seq or 0}, before the anchored entry "
                            f"{anchor[0]} (newer entries were deleted).", head_seq, head_hash)
    return VerifyResult(True, checked, None, "", head_seq, head_hash)


def verify(wh: Warehouse, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the chain from entry 1: every seq present once, every ``prev_hash`` the previous
    entry's hash, every hash recomputed from the entry's fields.

    ``anchor`` is a (seq, hash) head noted earlier: the entry must still exist with that hash,
    which also catches the newest entries being deleted. Works read-only.
    """
    if wh.scope is not None and not wh.scope.may("view_audit"):
        raise CsMetricsError(f"Your role ({wh.scope.role}) may not read the audit log.")
    if not wh.has_table(TABLE):
        if anchor is not None:
            return VerifyResult(False, 0, anchor[0], "there is no audit log any more.",
                                None, None)
        return VerifyResult(True, 0, None, "", None, None)
    try:
        # read in batches on the warehouse's own connection (a cursor would be another
        # connection, outside any scope)
        cursor = wh.connection().execute(
            f"select {_select_list(wh)} from {TABLE} order by seq nulls first")
    except duckdb.Error as exc:
        raise CsMetricsError(f"Cannot read the audit log of {wh.path}: {exc}") from exc

    def rows() -> Iterator[tuple]:
        while batch := cursor.fetchmany(10_000):
            yield from batch

    return _check_rows(rows(), anchor)


def _at_text(value: Any) -> str:
    return _format_at(pd.Timestamp(value).to_pydatetime()) if pd.notna(value) else ""


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``entries`` as plain dicts (for JSON): ``at`` in the ISO form that is hashed, ``detail``
    as its stored JSON text, so each record can be checked against the chain."""
    return [
        {c: (_at_text(row[c]) if c == "at" else int(row[c]) if c == "seq" else row[c])
         for c in frame.columns}
        for row in frame.to_dict("records")
    ]


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """``entries`` as UTF-8 CSV, ``at`` in the ISO form that is hashed, so a download can be
    checked against the chain.

    A text cell a spreadsheet would run as a formula (an actor or target beginning with
    ``=``, ``+``, ``-``, ``@``, tab or carriage return) is written with a leading ``'``:
    drop that one character before hashing such a cell.
    """
    from cs_metrics.core.safe_text import neutralize_csv

    out = frame.copy()
    if "at" in out.columns:
        out["at"] = [_at_text(t) for t in out["at"]]
    return neutralize_csv(out).to_csv(index=False, lineterminator="\n").encode("utf-8")


# --- settings ----------------------------------------------------------------------------------


def _settings_file(path: str | Path | None) -> Path | None:
    """The user settings file in force, found as ``load_settings`` finds it."""
    from cs_metrics.core.settings import SETTINGS_ENV

    if path is None:
        env = os.environ.get(SETTINGS_ENV)
        if env:
            path = env
        elif Path("settings.toml").is_file():
            path = "settings.toml"
    return Path(path) if path is not None else None


def _section_hashes(raw: Mapping[str, Any]) -> dict[str, str]:
    """A short hash per top-level key, and per key of a top-level table (``targets.csat_pct``,
    ``alerts.outage``): enough to name what changed without storing the values, since a
    settings file can hold webhook URLs and addresses. A guessable value (a number, a
    yes/no) can still be confirmed from its hash: the hashes are not a secret."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping) and value:
            for sub, inner in value.items():
                out[f"{key}.{sub}"] = _short_hash(inner)
        else:
            out[key] = _short_hash(value)
    return out


def _short_hash(value: Any) -> str:
    return hashlib.sha256(_canonical(_plain(value)).encode("utf-8")).hexdigest()[:16]


def record_settings(wh: Warehouse, path: str | Path | None = None, actor: str = LOCAL_ACTOR,
                    role: str = "") -> bool:
    """Record ``settings_changed`` when the settings in force differ from the last record.

    ``path`` is the settings file (default: as ``load_settings`` finds it, $CS_METRICS_SETTINGS
    or ./settings.toml; none means the defaults alone). The entry holds the file's SHA-256,
    a hash of the merged settings in force and one short hash per section; the first record,
    or a change of file, content or merged settings (a new version's defaults), records again
    with the sections ``changed``, ``added`` and ``removed`` since the last record. Values are
    never stored. Returns whether it recorded.
    """
    from cs_metrics.core.settings import DEFAULT_SETTINGS_FILE, _merge, _parse_toml, _read_text

    file = _settings_file(path)
    raw = _parse_toml(_read_text(DEFAULT_SETTINGS_FILE), DEFAULT_SETTINGS_FILE)
    file_sha = ""
    if file is not None:
        try:
            content = file.read_bytes()
        except FileNotFoundError:
            raise CsMetricsError(f"Settings file {file} does not exist.") from None
        except OSError as exc:
            raise CsMetricsError(f"Cannot read the settings file {file}: {exc}.") from exc
        file_sha = hashlib.sha256(content).hexdigest()
        raw = _merge(raw, _parse_toml(content.decode("utf-8"), file))
    sections = _section_hashes(raw)
    settings_sha = hashlib.sha256(_canonical(_plain(raw)).encode("utf-8")).hexdigest()
    file_name = str(file.resolve()) if file is not None else ""
    with appending(wh, "record a settings change") as log:
        last = log.con.execute(
            f"select detail from {TABLE} where action = 'settings_changed' "
            "order by seq desc limit 1"
        ).fetchall()
        before = json.loads(last[0][0]) if last else None
        if before is not None and (
            before.get("file"), before.get("file_sha256"), before.get("settings_sha256")
        ) == (file_name, file_sha, settings_sha):
            return False
        old = (before or {}).get("sections") or {}
        detail = {
            "file": file_name,
            "file_sha256": file_sha,
            "settings_sha256": settings_sha,
            "sections": sections,
            "first": before is None,
            "changed": sorted(k for k in sections if k in old and old[k] != sections[k]),
            "added": sorted(k for k in sections if k not in old) if before else [],
            "removed": sorted(k for k in old if k not in sections),
        }
        log.record(actor, role, "settings_changed", file_name or "defaults", detail)
    return True

"""Source file encodings: which ones DuckDB reads itself, UTF-8 copies of the others, and
read errors explained in terms of the file and the mapping setting to change."""

from __future__ import annotations

import atexit
import codecs
import gzip
import io
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO

import duckdb

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.ingestion.mapping import (
    FORMAT_FILE,
    MAX_LINE_SIZE,
    Mapping,
    TableMapping,
)

# Encodings DuckDB's CSV reader decodes itself, by Python codec name: DuckDB's own name
# (None: UTF-8, its default, which skips a UTF-8 byte order mark). DuckDB reads UTF-16 as
# little-endian when there is no byte order mark. Every other text encoding Python knows is
# decoded into a UTF-8 copy first (``_utf8_copy``).
_NATIVE_ENCODINGS: dict[str, str | None] = {
    "utf-8": None, "utf-8-sig": None, "iso8859-1": "latin-1", "utf-16": "utf-16",
    "utf-16-le": "utf-16",
}


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _sniff_bom(path: Path) -> str | None:
    """The encoding a file's byte order mark declares (UTF-16 only: UTF-8 is the default)."""
    try:
        with _open_bytes(path) as fh:
            head = fh.read(2)
    except (OSError, EOFError):
        return None  # the read reports what is wrong
    return "utf-16" if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else None


def _csv_source(file: Path, encoding: str | None, native: bool = True
                ) -> tuple[str, str | None]:
    """(path DuckDB reads, DuckDB's encoding option) for a CSV file in ``encoding`` (a
    Python codec name; None: UTF-8, or UTF-16 when its byte order mark says so). Not
    ``native``: a UTF-8 copy unless the file is UTF-8 already."""
    encoding = encoding or _sniff_bom(file) or "utf-8"
    if not native and encoding not in ("utf-8", "utf-8-sig"):
        return str(_utf8_copy(file, encoding)), None
    if encoding in ("utf-16", "utf-16-le"):
        try:
            with _open_bytes(file) as fh:
                big_endian = fh.read(2) == codecs.BOM_UTF16_BE  # DuckDB reads LE only
        except (OSError, EOFError):
            big_endian = False
        if not big_endian:
            return str(file), "utf-16"
    elif encoding in _NATIVE_ENCODINGS:
        return str(file), _NATIVE_ENCODINGS[encoding]
    return str(_utf8_copy(file, encoding)), None


def _csv_sources(tm: TableMapping) -> tuple[tuple[str, ...], str | None]:
    """(paths DuckDB reads, the encoding option they share) for ``tm``'s CSV files. One
    reader has one encoding: files whose byte order marks disagree are all read from UTF-8
    copies."""
    sources = [_csv_source(f, tm.encoding) for f in tm.files]
    if len({enc for _, enc in sources}) > 1:
        sources = [_csv_source(f, tm.encoding, native=False) for f in tm.files]
    return tuple(path for path, _ in sources), sources[0][1]


def read_paths(tm: TableMapping) -> tuple[str, ...]:
    """The files DuckDB reads for ``tm``: its own, or UTF-8 copies of CSV files in another
    encoding (made once per file version)."""
    if tm.fmt != "csv":
        return tuple(str(f) for f in tm.files)
    return _csv_sources(tm)[0]


# UTF-8 copies of CSV files in other encodings: (real path, size, mtime, encoding) -> copy.
# They live in one folder of this process, removed at exit; a changed file gets a new copy.
_COPIES: dict[tuple, Path] = {}


_COPIES_GUARD = threading.Lock()


_COPIES_DIR: list[Path] = []


def _copies_dir() -> Path:
    if not _COPIES_DIR:
        folder = Path(tempfile.mkdtemp(prefix="cs_metrics_utf8_"))
        atexit.register(shutil.rmtree, folder, True)
        _COPIES_DIR.append(folder)
    return _COPIES_DIR[0]


def _utf8_copy(file: Path, encoding: str) -> Path:
    """A UTF-8 copy of ``file`` decoded from ``encoding``, written in a streaming way (the
    file is never held whole in memory)."""
    try:
        st = os.stat(file)
    except OSError:
        return file  # the read reports what is wrong
    key = (os.path.realpath(file), st.st_size, st.st_mtime_ns, encoding)
    with _COPIES_GUARD:
        known = _COPIES.get(key)
        if known is not None and known.exists():
            return known
        for old in [k for k in _COPIES if k[0] == key[0] and k[3] == encoding]:
            shutil.rmtree(_COPIES.pop(old).parent, ignore_errors=True)  # an older version
        # a folder of its own keeps the file's name (messages) and is all a sandbox may read
        folder = Path(tempfile.mkdtemp(dir=_copies_dir()))
        name = file.name[:-3] if file.name.lower().endswith(".gz") else file.name
        copy = folder / name
        try:
            with _open_bytes(file) as raw, \
                    io.TextIOWrapper(raw, encoding=encoding, newline="") as src, \
                    open(copy, "w", encoding="utf-8", newline="") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        except UnicodeDecodeError:
            shutil.rmtree(folder, ignore_errors=True)
            line = _first_bad_line(file, encoding)
            raise CsMetricsError(
                f"{file} is not {encoding} text{f' (line {line})' if line else ''}; set the "
                "encoding it was saved in (a Windows export is often cp1252)."
            ) from None
        except (OSError, EOFError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise CsMetricsError(f"Cannot read {file} ({exc}); check the file.") from exc
        _COPIES[key] = copy
        return copy


def release_copies(mapping: Mapping) -> None:
    """Remove the UTF-8 copies made for ``mapping``'s files (made again if read again)."""
    wanted = {os.path.realpath(f) for tm in mapping.tables for f in tm.files}
    with _COPIES_GUARD:
        for key in [k for k in _COPIES if k[0] in wanted]:
            shutil.rmtree(_COPIES.pop(key).parent, ignore_errors=True)


def _first_bad_line(file: Path, encoding: str) -> int | None:
    """The first line (1 = the header) of ``file`` that does not decode in ``encoding``;
    read as a stream, on the error path only."""
    try:
        with _open_bytes(file) as raw, io.TextIOWrapper(
                raw, encoding=encoding, errors="surrogateescape", newline="") as fh:
            for number, line in enumerate(fh, start=1):
                # undecodable bytes come back as lone surrogates, which valid text never has
                if any("\udc80" <= ch <= "\udcff" for ch in line):
                    return number
    except (OSError, EOFError, UnicodeError):
        return None
    return None


def _first_long_line(path: str, limit: int) -> tuple[int, int] | None:
    """(line, length in bytes) of the first line of ``path`` longer than ``limit`` bytes,
    scanned in chunks (a 1 GB line is never held whole)."""
    number, length = 1, 0
    try:
        with _open_bytes(Path(path)) as fh:
            while chunk := fh.read(1 << 20):
                start = 0
                while (end := chunk.find(b"\n", start)) >= 0:
                    length += end - start
                    if length > limit:
                        return number, length
                    number, length, start = number + 1, 0, end + 1
                length += len(chunk) - start
        return (number, length) if length > limit else None
    except (OSError, EOFError):
        return None


def _setting_hint(tm: TableMapping, key: str, value: str | int) -> str:
    """Where ``key`` is set for ``tm``'s source: its mapping section, or _format.toml (or,
    for the encoding, the --encoding flag)."""
    toml = f'"{value}"' if isinstance(value, str) else str(value)
    if tm.columns:
        return f"set {key} = {toml} in the [{tm.table}] section of {tm.origin}"
    folder = tm.files[0].parent
    also = f" (or pass --encoding {value})" if key == "encoding" else ""
    return f"add {key} = {toml} to {folder / FORMAT_FILE}{also}"


def _looks_binary(file: Path) -> bool:
    """NUL bytes in the first 8 KB and no UTF-16 byte order mark: not text."""
    try:
        with _open_bytes(file) as fh:
            head = fh.read(8192)
    except (OSError, EOFError):
        return False
    return b"\x00" in head and head[:2] not in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_error(tm: TableMapping, exc: duckdb.Error) -> CsMetricsError:
    """The sentence for a source DuckDB could not read: which file and line, and what to set
    (an encoding, a longer line limit), never the reader's own dump of the line."""
    text = str(exc)
    where = f"{tm.origin}, table {tm.table}"
    read = read_paths(tm) if tm.fmt == "csv" else tuple(str(f) for f in tm.files)
    named = re.search(r"^\s*file = (.+)$", text, re.MULTILINE)
    index = read.index(named.group(1).strip()) if named and named.group(1).strip() in read \
        else 0
    file = tm.files[index]
    first = text.splitlines()[0] if text else type(exc).__name__
    if not os.access(file, os.R_OK):
        reason = "it does not exist" if not file.exists() else "permission denied"
        return CsMetricsError(f"{where}: cannot read {file} ({reason}); check the file.")
    if tm.fmt == "csv" and not tm.encoding and _looks_binary(file):
        return CsMetricsError(
            f"{where}: {file} is not CSV text (it holds NUL bytes: a binary file, or UTF-16 "
            f"without a byte order mark); export it as CSV, or if it is UTF-16, "
            f"{_setting_hint(tm, 'encoding', 'utf-16')}."
        )
    if tm.fmt == "csv" and ("not utf-8 encoded" in text or "Invalid unicode" in text):
        line = _first_bad_line(file, tm.encoding or "utf-8")
        at = f"line {line} holds" if line else "it holds"
        return CsMetricsError(
            f"{where}: {file} is not UTF-8 text ({at} bytes that are not UTF-8); if it was "
            "saved in another encoding (latin-1, cp1252 or utf-16, say), "
            f"{_setting_hint(tm, 'encoding', 'latin-1')}, naming the file's own encoding."
        )
    if tm.fmt == "csv" and "is not" in first and "encoded" in first:
        return CsMetricsError(
            f"{where}: {file} is not {tm.encoding or 'UTF-8'} text ({first}); a Windows export "
            f"is often cp1252: {_setting_hint(tm, 'encoding', 'cp1252')}, or name the file's "
            "own encoding."
        )
    limit = int(tm.max_line_size or MAX_LINE_SIZE)
    too_long = "Maximum line size" in text
    # a long line within the rows DuckDB samples fails the sniffing, which does not say why
    found = _first_long_line(read[index], limit) if tm.fmt == "csv" and (
        too_long or "sniffing" in text) else None
    if found or too_long:
        reported = re.search(r"CSV Error on Line: (\d+)", text)
        if found:
            at = f"line {found[0]} is {found[1]:,d} bytes long"
        else:  # a quoted value over several lines: DuckDB's count of records
            at = f"record {reported.group(1) if reported else '?'} is longer than that"
        # twice the longest line seen, in whole megabytes
        need = -(-2 * max(found[1] if found else 0, limit) // 1_000_000) * 1_000_000
        return CsMetricsError(
            f"{where}: {file} has a line over the reader's limit of {limit:,d} bytes ({at}); "
            f"to read it, {_setting_hint(tm, 'max_line_size', need)}."
        )
    return CsMetricsError(
        f"{where}: cannot read {file} as {tm.fmt} ({first}); check the file and the "
        "format/delimiter settings."
    )

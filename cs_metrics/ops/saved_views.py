"""Saved views: named sets of the pages' filters, per person, in one JSON file.

A view holds the query parameters the sidebar's filters write into a page's link
(``range``, ``from``, ``to``, ``tz`` and one key per dimension filter), so restoring it
is the same as opening that link, and a view can be shared as that link.

Where: one file per machine, ``$CS_METRICS_VIEWS`` or else ``saved_views.json`` in the
user's configuration folder (``$XDG_CONFIG_HOME/cs-metrics``, default
``~/.config/cs-metrics``): not next to the warehouse, which may be read-only. In hosted
mode the people signed in to the one server share the file, each under a key that is a
SHA-256 of their identity (identity provider and subject, else e-mail address): the
identity is never a file or folder name, and no one's entry names them in clear text.

Everything read from the file is checked as a link's parameters are: a view with a name
or a parameter that does not fit is left out with a note, never an error; the values are
validated by the filters that apply them (unknown ones are ignored there, with a note).
The file is written whole to a temporary file and moved into place (mode 0600), under a
lock, so a crash or two sessions saving at once never leave half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
import threading
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cs_metrics.core.access import ascii_lower
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.metrics.registry import DIMENSIONS

try:  # a lock between processes where the platform has one (not on Windows)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MAX_NAME",
    "MAX_VIEWS",
    "PARAM_KEYS",
    "VIEWS_ENV",
    "SavedView",
    "ViewList",
    "ViewStore",
    "clean_name",
    "default_path",
    "person_key",
    "view_link",
]

VIEWS_ENV = "CS_METRICS_VIEWS"
MAX_NAME = 60  # characters of a view's name
MAX_VIEWS = 50  # views per person
MAX_VALUES = 200  # values of one parameter
MAX_VALUE = 200  # characters of one value
MAX_FILE_BYTES = 5_000_000  # a larger file is not read (a file this size is not ours)
# The parameters a view may hold: the date range, the zone and the dimension filters.
PARAM_KEYS: frozenset[str] = frozenset({"range", "from", "to", "tz", *DIMENSIONS})
_VERSION = 1
_lock = threading.Lock()


def default_path() -> Path:
    """The file this machine keeps saved views in (``$CS_METRICS_VIEWS`` names another)."""
    named = os.environ.get(VIEWS_ENV, "").strip()
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    folder = Path(base) if base else Path.home() / ".config"
    return folder / "cs-metrics" / "saved_views.json"


def person_key(actor: str, issuer: str = "", subject: str = "") -> str:
    """The key a person's views are kept under: a SHA-256 of who signed in (the identity
    provider's issuer and subject when known, as the audit log tells accounts apart, else
    the e-mail address in lower case; "local" without sign-in)."""
    raw = (f"oidc\0{issuer}\0{subject}" if subject
           else f"actor\0{ascii_lower(str(actor).strip())}")
    return hashlib.sha256(raw.encode()).hexdigest()


def _plain(text: str) -> str:
    # control, format and private-use characters out; any run of spaces one space
    kept = "".join(
        " " if c.isspace() or unicodedata.category(c).startswith("Z") else c
        for c in text if c.isspace() or not unicodedata.category(c).startswith("C"))
    return re.sub(r"\s+", " ", kept).strip()


def clean_name(name: object) -> str:
    """A view's name as stored: control characters removed, spaces collapsed; 1 to
    ``MAX_NAME`` characters or a CsMetricsError saying what is wrong."""
    if not isinstance(name, str):
        raise CsMetricsError("A view's name is text.")
    text = _plain(name)
    if not text:
        raise CsMetricsError("Give the view a name.")
    if len(text) > MAX_NAME:
        raise CsMetricsError(f"A view's name has at most {MAX_NAME} characters, not "
                             f"{len(text)}.")
    return text


def _clean_params(params: object, keys: frozenset[str]) -> dict[str, list[str]]:
    """Checked parameters (known keys, a few short text values each) or ValueError."""
    if not isinstance(params, Mapping):
        raise ValueError("its filters are not a list of parameters")
    out: dict[str, list[str]] = {}
    for key, values in params.items():
        if key not in keys:
            raise ValueError(f"unknown parameter {str(key)[:40]!r}")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or len(values) > MAX_VALUES:
            raise ValueError(f"the parameter {key} is not a short list of values")
        for v in values:
            if (not isinstance(v, str) or not v or len(v) > MAX_VALUE
                    or any(unicodedata.category(c) == "Cc" for c in v)):
                raise ValueError(f"a value of {key} is not short plain text")
        if values:
            out[key] = list(dict.fromkeys(values))
    return out


def view_link(params: Mapping[str, Iterable[str]], page: str = "") -> str:
    """The relative link that opens ``page`` with these parameters (``page?range=…``)."""
    query = urllib.parse.urlencode([(k, v) for k, vs in params.items() for v in vs])
    return f"{page}?{query}" if query else page


@dataclass(frozen=True)
class SavedView:
    """One named set of filters: the link's query parameters, in the order saved."""

    name: str
    params: tuple[tuple[str, tuple[str, ...]], ...]
    saved_at: str = ""  # ISO time in UTC

    @property
    def query(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.params}

    def link(self, page: str = "") -> str:
        return view_link(self.query, page)


@dataclass(frozen=True)
class ViewList:
    """A person's views, and what was left out of the file (plain text, for a note)."""

    views: tuple[SavedView, ...]
    notes: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.views]

    def get(self, name: str) -> SavedView | None:
        return next((v for v in self.views if v.name == name), None)


class ViewStore:
    """The saved views of everyone who uses this machine's app, in the file ``path``."""

    def __init__(self, path: Path | str | None = None,
                 keys: Iterable[str] = PARAM_KEYS) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.keys = frozenset(keys)

    # --- reading -------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        """The file's content, {} when there is none; ValueError when it cannot be used.

        Read through one descriptor: a regular file only (a planted pipe or device, which
        would block or never end, is refused), never through a symlink's target's growth:
        at most MAX_FILE_BYTES + 1 bytes are read."""
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ValueError(f"it cannot be opened ({exc.strerror or exc})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("it is not a regular file")
            chunks, size = [], 0
            while size <= MAX_FILE_BYTES:
                chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise ValueError(f"it cannot be read ({exc.strerror or exc})") from None
        finally:
            os.close(fd)
        if size > MAX_FILE_BYTES:
            raise ValueError(f"it is larger than {MAX_FILE_BYTES // 1_000_000} MB")
        try:
            data = json.loads(b"".join(chunks).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
            # ValueError: an integer too long to convert (its message names Python's limit)
            raise ValueError(f"it is not valid JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict) or not isinstance(data.get("people", {}), dict):
            raise ValueError("it is not a saved views file")
        return data

    def _parse(self, entries: object) -> ViewList:
        return self._split(entries)[0]

    def _split(self, entries: object) -> tuple[ViewList, list[Any]]:
        """The views of ``entries``, and the raw entries left out (kept as they are)."""
        if not isinstance(entries, list):
            return ViewList((), ("Your saved views could not be read and are left out.",)), \
                [entries]
        views: list[SavedView] = []
        notes: list[str] = []
        left: list[Any] = []
        for n, entry in enumerate(entries, 1):
            if len(views) >= MAX_VIEWS:
                notes.append(f"Only the first {MAX_VIEWS} saved views are shown.")
                left.extend(entries[n - 1:])
                break
            try:
                if not isinstance(entry, dict):
                    raise ValueError("it is not a view")
                name = clean_name(entry.get("name"))
                if any(v.name == name for v in views):
                    raise ValueError("its name is taken by an earlier one")
                params = _clean_params(entry.get("params"), self.keys)
                saved_at = entry.get("saved_at")
                saved_at = saved_at[:40] if isinstance(saved_at, str) else ""
            except (CsMetricsError, ValueError) as exc:
                reason = str(exc).rstrip(".")
                notes.append(f"Saved view {n} was left out: {reason[:120]}.")
                left.append(entry)
                continue
            views.append(SavedView(name, tuple((k, tuple(v)) for k, v in params.items()),
                                   saved_at))
        return ViewList(tuple(views), tuple(notes)), left

    def views(self, person: str) -> ViewList:
        """``person``'s views (a key from ``person_key``). Never raises: an unreadable file
        or entry is left out, and the returned notes say so."""
        try:
            data = self._read()
        except ValueError as exc:
            return ViewList((), (f"The saved views file was not read: {exc}. It is left as "
                                 f"it is (the server's {VIEWS_ENV} or configuration folder "
                                 "names it).",))
        return self._parse(data.get("people", {}).get(person, []))

    # --- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        with _lock:
            if fcntl is None:
                yield
                return
            lock_path = self.path.with_name(self.path.name + ".lock")
            try:
                # never through a planted symlink: it would create a file where it points
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                             0o600)
            except OSError as exc:
                raise self._cannot_write(exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def _cannot_write(self, exc: OSError) -> CsMetricsError:
        return CsMetricsError(
            f"The saved views file cannot be written ({exc.strerror or exc}). Whoever runs "
            f"the server can set {VIEWS_ENV} to a file in a folder this app may write to.")

    def _change(self, person: str, change: Any) -> Any:
        """Apply ``change(views) -> (views, result)`` to ``person``'s views and write."""
        with self._locked():
            try:
                data = self._read()
            except ValueError as exc:
                raise CsMetricsError(
                    f"The saved views file was not read: {exc}. Move it away (or delete it) "
                    "on the server to save views again; nothing was changed.") from None
            people = data.get("people", {})
            # the entries left out of the list stay in the file as they were (after the
            # views), so a save or a delete never loses what could not be read
            parsed, kept = self._split(people.get(person, []))
            views, result = change(list(parsed.views))
            people = {**people, person: [
                {"name": v.name, "params": v.query, "saved_at": v.saved_at} for v in views
            ] + kept}
            if not people[person]:
                del people[person]
            self._write({"version": _VERSION, "people": people})
        return result

    def _write(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=True, indent=1)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._cannot_write(exc) from None

    def save(self, person: str, name: str, params: Mapping[str, Iterable[str]], *,
             replace: bool = False) -> SavedView:
        """Save ``params`` as ``person``'s view ``name``. A name already taken is an error
        unless ``replace``; so is a person's view past ``MAX_VIEWS``."""
        name = clean_name(name)
        try:
            checked = _clean_params({k: list(v) for k, v in params.items()}, self.keys)
        except ValueError as exc:
            raise CsMetricsError(f"These filters cannot be saved: {exc}.") from None
        view = SavedView(name, tuple((k, tuple(v)) for k, v in checked.items()),
                         datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

        def change(views: list[SavedView]) -> tuple[list[SavedView], SavedView]:
            at = next((i for i, v in enumerate(views) if v.name == name), None)
            if at is not None:
                if not replace:
                    raise CsMetricsError(f"A view named {name} exists already; replace it "
                                         "or choose another name.")
                views[at] = view
            elif len(views) >= MAX_VIEWS:
                raise CsMetricsError(f"You have {MAX_VIEWS} saved views, the most there may "
                                     "be; delete one first.")
            else:
                views.append(view)
            return views, view

        return self._change(person, change)

    def delete(self, person: str, name: str) -> bool:
        """Delete ``person``'s view ``name``; False when there is none of that name."""

        def change(views: list[SavedView]) -> tuple[list[SavedView], bool]:
            kept = [v for v in views if v.name != name]
            return kept, len(kept) != len(views)

        return self._change(person, change)

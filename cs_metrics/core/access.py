"""Who may see what: roles, their scope of rows, and a warehouse that enforces it.

In the hosted app people sign in, and the ``[access]`` section of the settings maps each
identity (an e-mail address, or ``group:NAME`` for a group claim) to a role. The e-mail comes
from the identity provider's claims only as ``identity_from_claims`` allows: by default only
when the provider marks it verified; a name or username the person chose never matches.

- ``admin``: every row, customer details when ``customer_details`` lists the role, the
  audit log, loading data and the rejected rows;
- ``manager``: every row;
- ``team_lead``: the tickets of their teams, and what hangs off them (events, surveys, the
  customers who wrote them, ticket alerts);
- ``representative``: their team's tickets for team figures, with every other
  representative's id and name replaced by a stable pseudonym, and only their own tickets in
  ticket lists.

The scope is enforced in the warehouse, not in the pages: ``ScopedWarehouse`` opens its own
connections, on which temporary views named like the warehouse's tables shadow them. Every
query of the library - metrics, drill-downs, exports, reports, simulations - runs through
``Warehouse.connection()`` and so sees only the rows in scope, whatever filters a page or a
crafted link asks for. A table this module does not know is shadowed by an empty view, so a
new table is private until it is given a rule here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import threading
import time
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import IDENTITY_CLAIMS, ROLES, AccessSettings, Settings, load_settings
from cs_metrics.core.warehouse import Warehouse, dimension_counts

__all__ = [
    "PERMISSIONS",
    "LOCAL",
    "Identity",
    "Scope",
    "ScopedWarehouse",
    "identity_from_claims",
    "resolve_scope",
    "scoped",
]

# What a role may do besides reading its rows.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "view_audit": ("admin", "local"),
    "manage_data": ("admin", "local"),  # load data, switch datasets
    # the load's counts over every team, and rejected rows with raw source lines
    "view_quality": ("admin", "manager", "local"),
    "view_deliveries": ("admin", "manager", "local"),
    "mute_alerts": ("admin", "manager", "local"),
    "all_alerts": ("admin", "manager", "local"),  # alerts computed over every team
}

# Alert rules about a place or a topic rather than about teams: every role sees them.
_PUBLIC_ALERT_RULES = ("outage", "emerging_issue")
# Alert rules about one ticket: their id is "rule:ticket_id".
_TICKET_ALERT_RULES = ("ticket_reopened", "vip_closed_unanswered")

# Tables that hold nothing about a team or a person: shown as they are.
_PUBLIC_TABLES = frozenset({"meta", "outages", "inbox_manifest", "alert_runs"})


@dataclass(frozen=True)
class Scope:
    """The rows and rights of one person. ``teams`` None means every team."""

    role: str  # local, admin, manager, team_lead or representative
    actor: str  # e-mail address, or "local"
    teams: tuple[str, ...] | None = None
    rep_id: str | None = None  # a representative's own id
    customer_details: bool = False
    # who the identity provider says signed in (its ``iss`` and ``sub`` claims): two
    # accounts that claim one e-mail address are told apart by these in the audit log
    issuer: str = ""
    subject: str = ""

    def __post_init__(self) -> None:
        if self.role not in ("local", *ROLES):
            raise CsMetricsError(f"Unknown role {self.role!r}; roles: {', '.join(ROLES)}.")
        if self.role == "representative" and not self.rep_id:
            raise CsMetricsError("A representative's scope needs their rep_id.")

    @property
    def full(self) -> bool:
        """Every row: the roles that see every team. Any other role sees only its teams,
        and no team at all when it has none."""
        return self.role in ("local", "admin", "manager")

    def may(self, permission: str) -> bool:
        try:
            return self.role in PERMISSIONS[permission]
        except KeyError:
            raise CsMetricsError(
                f"Unknown permission {permission!r}; valid: {', '.join(PERMISSIONS)}."
            ) from None

    @property
    def key(self) -> str:
        """A short stable text that tells two scopes apart, for cache keys (the rows they
        see: issuer and subject do not change them)."""
        raw = repr((self.role, self.teams, self.rep_id, self.customer_details))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def describe(self) -> str:
        if self.role == "local":
            return "local mode: every team"
        if self.full:
            return f"{self.role}: every team"
        if self.rep_id is not None:
            return (f"representative {self.rep_id}: your own tickets, and your team's figures "
                    "without colleagues' names")
        teams = ", ".join(self.teams or ()) or "no team"
        return f"team lead: {teams}"


LOCAL = Scope(role="local", actor="local")


@dataclass(frozen=True)
class Identity:
    """Who signed in, as far as the identity provider's claims may be trusted."""

    email: str  # the address that may match [access] entries, lower-case; "" when none may
    groups: tuple[str, ...]
    issuer: str  # the provider (``iss``)
    subject: str  # the account at that provider (``sub``), stable and never reassigned
    claimed_email: str = ""  # the ``email`` claim as sent, when it may not be used
    refusal: str = ""  # why no e-mail may be used ("" when one may, or none was sent)


def _email_text(value: Any) -> str | None:
    """``value`` as one e-mail address, or None when it is not plausibly one."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if (not 3 <= len(text) <= 320 or text.count("@") != 1 or text.startswith("@")
            or text.endswith("@")
            or any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text)):
        return None
    return text


def _claim_text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def identity_from_claims(claims: Mapping[str, Any],
                         claim: str = "verified_email") -> Identity:
    """The identity in an OpenID Connect ID token's ``claims`` (``st.user``).

    ``claim`` is the ``access.identity_claim`` setting: ``"verified_email"`` uses the
    ``email`` claim only when ``email_verified`` is true (the boolean, or the text "true"
    that some providers send); ``"email"`` uses it as sent. ``preferred_username``, ``name``
    and the like are never used: people choose them. Groups come from the ``groups`` claim
    (a list, or one text of names separated by spaces or commas).
    """
    if claim not in IDENTITY_CLAIMS:
        raise CsMetricsError(f"Unknown identity claim {claim!r}; use one of "
                             f"{', '.join(IDENTITY_CLAIMS)}.")
    raw_groups = claims.get("groups") or ()
    if isinstance(raw_groups, str):
        raw_groups = raw_groups.replace(",", " ").split()
    elif not isinstance(raw_groups, (list, tuple)):
        raw_groups = ()
    groups = tuple(g.strip() for g in raw_groups if isinstance(g, str) and g.strip())
    issuer, subject = _claim_text(claims.get("iss")), _claim_text(claims.get("sub"))
    sent = claims.get("email")
    email = _email_text(sent)
    shown = sent.strip() if isinstance(sent, str) else ""
    refusal = ""
    if sent in (None, ""):
        refusal = "the identity provider sent no e-mail address"
    elif email is None:
        refusal = "the identity provider's e-mail claim is not an e-mail address"
    elif claim == "verified_email":
        verified = claims.get("email_verified")
        if not (verified is True or
                (isinstance(verified, str) and verified.strip().lower() == "true")):
            refusal = (f"the identity provider does not mark the e-mail address {email} as "
                       "verified")
    if refusal:
        return Identity("", groups, issuer, subject, shown, refusal)
    return Identity(ascii_lower(email), groups, issuer, subject)


def ascii_lower(text: str) -> str:
    """``text`` with its ASCII letters in lower case and every other character kept: the
    case of an address is ignored, but str.lower() would also turn a sign such as U+212A
    (KELVIN SIGN) into "k", making "\u212aate@example.com" the address of kate@."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _matches(ident: str, email: str, groups: Iterable[str]) -> bool:
    if ident.startswith("group:"):
        return ident[6:] in set(groups)
    return ident == email


def resolve_scope(
    email: str | None,
    groups: Iterable[str] = (),
    settings: Settings | AccessSettings | None = None,
    *,
    issuer: str = "",
    subject: str = "",
) -> Scope | None:
    """The scope of a signed-in person, or None when the settings give them no role.

    ``email`` must be one the identity provider vouches for (``identity_from_claims``).
    The widest role wins: admin, then manager, then team lead (the teams of every entry
    that matches, by e-mail or group), then representative. ``issuer`` and ``subject`` are
    kept on the scope for the audit log.
    """
    access = settings if isinstance(settings, AccessSettings) else \
        (settings or load_settings()).access
    email = ascii_lower((email or "").strip())
    groups = tuple(str(g).strip() for g in groups)
    if not email and not groups:
        return None
    details = access.customer_details

    def scope(role: str, **kw: object) -> Scope:
        return Scope(role=role, actor=email or "unknown", customer_details=role in details,
                     issuer=issuer, subject=subject, **kw)  # type: ignore[arg-type]

    if any(_matches(i, email, groups) for i in access.admins):
        return scope("admin")
    if any(_matches(i, email, groups) for i in access.managers):
        return scope("manager")
    teams = [t for ident, ts in access.team_leads if _matches(ident, email, groups) for t in ts]
    if teams:
        return scope("team_lead", teams=tuple(dict.fromkeys(teams)))
    for ident, rep_id in access.representatives:
        if _matches(ident, email, groups):
            return scope("representative", rep_id=rep_id, teams=())  # team filled on use
    return None


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _in_list(values: Iterable[str]) -> str:
    items = [_lit(v) for v in values]
    return f"({', '.join(items)})" if items else "(null)"  # `in (null)` matches nothing


# pseudonyms hold within one server run; a random salt keeps them from being reversed by
# hashing every rep_id
_PSEUDONYM_SALT = secrets.token_hex(16)


class _Lease:
    """A connection a thread of a ScopedWarehouse holds, with the state of its views; when
    the thread ends (and its thread-local storage with it) the connection goes back to the
    pool."""

    __slots__ = ("con", "db", "layout", "checked", "catalog", "_owner")

    def __init__(self, owner: ScopedWarehouse, con: duckdb.DuckDBPyConnection, db: str,
                 layout: tuple, checked: float | None) -> None:
        self._owner = weakref.ref(owner)
        self.con: duckdb.DuckDBPyConnection | None = con
        self.db = db
        self.layout = layout  # the tables and columns the views were made for
        # time.monotonic() of the last look at the tables; None: never looked, so the first
        # use looks whatever the clock says (monotonic time starts near 0 at boot)
        self.checked = checked
        # what the views are: their names, and each one's columns; kept until they are
        # made again (they change with the layout alone)
        self.catalog: dict[object, object] = {}

    def __del__(self) -> None:
        owner = self._owner()
        if owner is not None and self.con is not None:
            owner._give_back(self)
        elif self.con is not None:
            self.con.close()


class ScopedWarehouse(Warehouse):
    """The same warehouse file, seen through ``scope``.

    Reads only: writes (alerts acknowledged, audit entries) go to ``base``, after the
    caller has checked the row is in scope.
    """

    _RECHECK_S = 1.0  # how often a connection looks for tables created since
    _POOL_MAX = 4  # idle connections kept for the next runs (per scope)

    def __init__(self, base: Warehouse, scope: Scope) -> None:
        if base.scope is not None and not base.scope.full:
            raise CsMetricsError("A scoped warehouse cannot be scoped again; scope its base.")
        self.path = base.path
        self.read_only = base.read_only
        self._local = threading.local()
        self._pool: list[_Lease] = []
        self._pool_lock = threading.Lock()
        self._base = base
        self._scope = scope
        if scope.rep_id is not None:
            team = base.scalar(
                "select team from representatives where rep_id = ?", [scope.rep_id]
            ) if base.has_table("representatives") else None
            if team is None and base.has_table("tickets"):
                team = base.scalar(
                    "select team from tickets where rep_id = ? and team is not null "
                    "group by team order by count(*) desc limit 1", [scope.rep_id])
            self._scope = dataclasses.replace(scope, teams=(team,) if team else ())
        self.connection()

    @property
    def scope(self) -> Scope:
        return self._scope

    @property
    def base(self) -> Warehouse:
        return self._base

    @property
    def cache_key(self) -> str:
        return f"{self.path}#{self._scope.key}"

    def listing_sql(self, alias: str = "t") -> tuple[str, list]:
        if self._scope.rep_id is None:
            return "true", []
        return f"{alias}.rep_id = ?", [self._scope.rep_id]

    def connection(self) -> duckdb.DuckDBPyConnection:
        lease = getattr(self._local, "lease", None)
        if lease is None:
            lease = self._lease()
            self._local.lease = lease
        now = time.monotonic()
        if lease.checked is None or now - lease.checked >= self._RECHECK_S:
            self._shadow(lease)
            lease.checked = now
        return lease.con

    def _lease(self) -> _Lease:
        """An idle connection with its views from the pool, else a new one. Streamlit runs
        each script run on a new thread: without the pool every run would open a connection
        and create its views again."""
        with self._pool_lock:
            while self._pool:
                idle = self._pool.pop()
                con, idle.con = idle.con, None
                if con is not None:  # a new lease: an object's __del__ runs only once
                    lease = _Lease(self, con, idle.db, idle.layout, idle.checked)
                    lease.catalog = idle.catalog
                    return lease
        try:
            con = duckdb.connect(str(self.path), read_only=self.read_only)
        except duckdb.Error as exc:
            raise CsMetricsError(f"Cannot open the warehouse {self.path}: {exc}") from exc
        # unqualified names resolve to the views alone: a table created later stays
        # out of reach (an error, not a leak) until it has a view
        db = con.execute("select current_database()").fetchone()[0]
        con.execute("set search_path = 'temp.main'")
        return _Lease(self, con, db, (), None)

    def _give_back(self, lease: _Lease) -> None:
        """The thread holding ``lease`` has ended: its connection waits for the next one."""
        if lease.con is None:
            return
        try:
            lease.con.execute("rollback")  # a run that stopped inside a transaction
        except duckdb.Error:
            pass  # none was open
        with self._pool_lock:
            if len(self._pool) < self._POOL_MAX:
                self._pool.append(lease)
                return
        lease.con.close()

    def close(self) -> None:
        """Close this thread's connection and the idle ones."""
        lease = getattr(self._local, "lease", None)
        self._local.lease = None
        with self._pool_lock:
            idle, self._pool = self._pool, []
        for held in ([lease] if lease is not None else []) + idle:
            if held.con is not None:
                held.con.close()
                held.con = None

    def _lease_catalog(self, key: object, read: Callable[[duckdb.DuckDBPyConnection], Any]
                       ) -> Any:
        con = self.connection()  # may make the views again, and forget what they were
        catalog = self._local.lease.catalog
        if key not in catalog:
            catalog[key] = read(con)
        return catalog[key]

    def _read_tables(self) -> frozenset[str]:
        return self._lease_catalog("tables", lambda con: frozenset(r[0] for r in con.execute(
            "select view_name from duckdb_views() where temporary and not internal "
            "and schema_name = 'main'"
        ).fetchall()))

    def _read_columns(self, table: str) -> tuple[str, ...]:
        return self._lease_catalog(("columns", table), lambda con: tuple(
            r[0] for r in con.execute(
                "select column_name from duckdb_columns() where database_name = 'temp' "
                "and schema_name = 'main' and table_name = ? order by column_index", [table]
            ).fetchall()))

    # -- the views ------------------------------------------------------------------------

    def _shadow(self, lease: _Lease) -> None:
        """(Re)create the connection's views when the warehouse's tables or their columns
        differ from those it last made them for."""
        con, db = lease.con, lease.db
        columns: dict[str, list[str]] = {}
        # the warehouse's views too (tickets_src): else they have no rule, no view
        for table, column in con.execute(
            "select table_name, column_name from duckdb_columns() where database_name = ? "
            "and schema_name = 'main' order by table_name, column_index", [db]
        ).fetchall():
            columns.setdefault(table, []).append(column)
        layout = tuple((table, tuple(cols)) for table, cols in columns.items())
        if layout == lease.layout:
            return
        tables = frozenset(columns)
        # tickets, then feedback: the other views select from them
        first = {"tickets": 0, "feedback": 1}
        order = sorted(tables, key=lambda t: (first.get(t, 2), t))
        try:
            con.execute("begin")
            for table in order:
                sql = self._view(table, f'"{db}".main."{table}"', columns.get(table, []),
                                 tables)
                con.execute(f'create or replace temp view "{table}" as {sql}')
            # views of tables that are gone would fail on use: drop them
            for (stale,) in con.execute(
                "select view_name from duckdb_views() where temporary and not internal "
                "and schema_name = 'main'"
            ).fetchall():
                if stale not in tables:
                    con.execute(f'drop view "{stale}"')
            con.execute("commit")
        except duckdb.Error as exc:
            con.execute("rollback")
            raise CsMetricsError(f"Cannot apply the access scope to {self.path}: {exc}") from exc
        lease.layout = layout
        lease.catalog = {}

    def _rep_columns(self, cols: list[str]) -> str:
        """``* replace (...)`` hiding other representatives' ids and names."""
        me = _lit(self._scope.rep_id or "")
        code = f"upper(substr(md5(rep_id || {_lit(_PSEUDONYM_SALT)}), 1, 5))"
        parts = []
        if "rep_id" in cols:
            parts.append(f"case when rep_id is null or rep_id = {me} then rep_id "
                         f"else 'colleague-' || lower({code}) end as rep_id")
        for name in ("rep_name", "name"):
            if name in cols and "rep_id" in cols:
                parts.append(f"case when rep_id is null or rep_id = {me} then {name} "
                             f"else 'Colleague ' || {code} end as {name}")
        return f"* replace ({', '.join(parts)})" if parts else "*"

    def _view(self, table: str, src: str, cols: list[str], tables: frozenset[str]) -> str:
        s = self._scope
        teams = _in_list(s.teams or ())
        rep = s.rep_id is not None
        if table in _PUBLIC_TABLES:
            return f"select * from {src}"
        if table == "audit_log":
            return f"select * from {src}" + ("" if s.may("view_audit") else " where false")
        if table == "rejects":
            return f"select * from {src}" + ("" if s.may("view_quality") else " where false")
        if table == "alert_deliveries":
            return f"select * from {src}" + ("" if s.may("view_deliveries") else " where false")
        if table == "ingest_log":  # row counts of the whole load
            return f"select * from {src}" + ("" if s.may("view_quality") else " where false")
        if table == "column_stats" and not s.full:
            # which columns hold values (pages adapt to it), not how many rows the load has
            return (f"select table_name, column_name, cast(null as bigint) as total, "
                    f"cast(non_null > 0 as bigint) as non_null from {src}")
        if table == "alert_mutes" and not s.may("mute_alerts"):
            # the mutes that hide alerts this scope sees, without who set them
            return (f"select * replace (cast(null as varchar) as muted_by) from {src} "
                    f"where {self._visible_alert('target')}")
        if s.full:  # every row; only customer details may be hidden
            if table == "customers" and not s.customer_details and "name" in cols:
                return f"select * replace ('[name]' as name) from {src}"
            return f"select * from {src}"
        in_tickets = "ticket_id in (select ticket_id from tickets)"
        if table in ("tickets", "feedback_facts"):
            select = self._rep_columns(cols) if rep else "*"
            return f"select {select} from {src} where team in {teams}"
        if table in ("tickets_src", "feedback", "ticket_events"):
            select = self._rep_columns(cols) if rep else "*"
            return f"select {select} from {src} where {in_tickets}"
        if table == "comment_sentiment":
            return f"select * from {src} where comment in (select comment from feedback)"
        if table == "customers":
            name = "" if s.customer_details or "name" not in cols else " replace ('[name]' as name)"
            return (f"select *{name} from {src} where customer_id in "
                    "(select customer_id from tickets)")
        if table == "representatives":
            if not rep:
                return f"select * from {src} where team in {teams}"
            # colleagues keep a pseudonym, their team and manager; nothing that names them
            me = _lit(s.rep_id or "")
            hidden = [c for c in cols if c not in ("rep_id", "name", "team", "manager")]
            extra = ", ".join(f"case when rep_id = {me} then {c} end as {c}" for c in hidden)
            select = self._rep_columns(cols)
            if extra:
                select = select[:-1] + ", " + extra + ")" if select != "*" else \
                    f"* replace ({extra})"
            return f"select {select} from {src} where team in {teams}"
        if table == "dimension_values":
            return self._dimension_values(cols)
        if table == "alerts":
            if s.may("all_alerts"):
                return f"select * from {src}"
            return f"select * from {src} where {self._visible_alert('alert_id')}"
        return f"select * from {src} where false"  # unknown: private until given a rule

    @staticmethod
    def _visible_alert(column: str) -> str:
        """Whether an alert id or mute target (``rule`` or ``rule:subject``) is one a
        team-scoped role sees: a place or topic rule, or a ticket of theirs."""
        rule = f"split_part({column}, ':', 1)"
        subject = f"substr({column}, strpos({column}, ':') + 1)"
        return (f"({rule} in {_in_list(_PUBLIC_ALERT_RULES)} or ({rule} in "
                f"{_in_list(_TICKET_ALERT_RULES)} and strpos({column}, ':') > 0 and "
                f"{subject} in (select ticket_id from tickets)))")

    def _dimension_values(self, cols: list[str]) -> str:
        # the filter lists, counted over the scoped tickets exactly as the warehouse counts
        # its own (list dimensions such as tags included)
        return f"select dimension, value, tickets from ({dimension_counts('tickets')})"


def scoped(wh: Warehouse, scope: Scope | None) -> Warehouse:
    """``wh`` as ``scope`` sees it: itself for local mode, else a ``ScopedWarehouse``."""
    if scope is None or scope.role == "local":
        return wh
    return ScopedWarehouse(getattr(wh, "base", wh), scope)

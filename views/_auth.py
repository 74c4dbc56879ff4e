"""Sign-in and roles for the pages.

Sign-in is on when ``.streamlit/secrets.toml`` has an ``[auth]`` section (Streamlit's OIDC:
``st.login``, ``st.user``); the ``[access]`` section of the settings gives each identity a
role and its scope (``cs_metrics.access``). Without ``[auth]`` the app runs in local mode:
no sign-in, every row, and it says so in the sidebar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from cs_metrics import CsMetricsError, load_settings
from cs_metrics.access import LOCAL, Scope, resolve_scope
from cs_metrics.warehouse import Warehouse

_log = logging.getLogger(__name__)

SIGNED_IN_KEY = "_audited_sign_in"  # the identity whose sign-in this session recorded


def hosted() -> bool:
    """Whether sign-in is configured (an ``[auth]`` section in the secrets)."""
    try:
        return bool(st.secrets.load_if_toml_exists()) and "auth" in st.secrets
    except Exception:  # noqa: BLE001 (unreadable secrets: local mode, as without them)
        return False


def providers() -> list[str]:
    """Named identity providers (``[auth.NAME]`` sections); empty for the single default."""
    auth = st.secrets.get("auth", {})
    return [k for k, v in auth.items() if isinstance(v, Mapping) and "client_id" in v]


def _groups(user: Any) -> tuple[str, ...]:
    raw = user.get("groups") or ()
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    return tuple(str(g) for g in raw)


def identity() -> tuple[str, tuple[str, ...]] | None:
    """(e-mail, groups) of the signed-in person, or None when nobody is signed in."""
    user = st.user
    if not getattr(user, "is_logged_in", False):
        return None
    email = str(user.get("email") or user.get("preferred_username") or "").strip().lower()
    return email, _groups(user)


def current_scope() -> Scope | None:
    """Local mode's full scope, the signed-in person's scope, or None (no sign-in yet, or
    no role in the settings)."""
    if not hosted():
        return LOCAL
    who = identity()
    if who is None:
        return None
    return resolve_scope(who[0], who[1], load_settings())


def audit(wh: Warehouse, scope: Scope, action: str, target: str = "",
          detail: Mapping[str, Any] | None = None) -> None:
    """Append to the audit log; a failure is shown, never raised into the page."""
    from cs_metrics import audit as audit_log

    try:
        audit_log.record(wh.base, scope.actor, scope.role, action, target, dict(detail or {}))
    except CsMetricsError as exc:
        _log.warning("Could not write the audit log: %s", exc)
        st.warning(f"This action could not be written to the audit log: {exc}")


def _sign_in_page() -> None:
    st.title("Customer service metrics")
    st.write("Sign in to see your team's figures.")
    named = providers()
    if named:
        for name in named:
            st.button(f"Sign in with {name}", key=f"login_{name}", on_click=st.login,
                      args=(name,), type="primary")
    else:
        st.button("Sign in", key="login", on_click=st.login, type="primary")


def gate(warehouse: Callable[[], Warehouse]) -> Scope:
    """The scope of this session; shows the sign-in page (and stops) when nobody is signed
    in, and a refusal when the signed-in person has no role. ``warehouse`` opens the
    unscoped warehouse, for the audit log (local mode does not open it here)."""
    if not hosted():
        return LOCAL
    who = identity()
    if who is None:
        _sign_in_page()
        st.stop()
    scope = resolve_scope(who[0], who[1], load_settings())
    if scope is None:
        if st.session_state.get(SIGNED_IN_KEY) != ("denied", who[0]):
            st.session_state[SIGNED_IN_KEY] = ("denied", who[0])
            from cs_metrics import audit as audit_log

            try:
                audit_log.record(warehouse(), who[0] or "unknown", "", "access_denied", "",
                                 {"groups": list(who[1])})
            except CsMetricsError as exc:
                _log.warning("Could not write the audit log: %s", exc)
        st.title("No access yet")
        st.error(f"You are signed in as {who[0] or 'an account without an e-mail'}, but the "
                 "settings give this account no role. Ask an administrator to add it to the "
                 "[access] section of the settings file.")
        st.button("Sign out", on_click=st.logout)
        st.stop()
    if st.session_state.get(SIGNED_IN_KEY) != ("ok", scope.actor):
        st.session_state[SIGNED_IN_KEY] = ("ok", scope.actor)
        audit(warehouse(), scope, "sign_in", "",
              {"groups": list(who[1]), "scope": scope.describe()})
    return scope


def _sign_out(warehouse: Callable[[], Warehouse], scope: Scope) -> None:
    audit(warehouse(), scope, "sign_out")
    st.session_state.pop(SIGNED_IN_KEY, None)
    st.logout()


def account_sidebar(warehouse: Callable[[], Warehouse], scope: Scope) -> None:
    """Who is signed in and what they see, with a sign-out button; local mode says so."""
    with st.sidebar:
        if scope.role == "local":
            st.caption("Local mode: no sign-in, every team visible. Add an [auth] section to "
                       ".streamlit/secrets.toml to make people sign in.")
            return
        st.caption(f"Signed in as **{scope.actor}** · {scope.describe()}")
        st.button("Sign out", key="logout", on_click=_sign_out,
                  args=(warehouse, scope))


def require(scope: Scope, permission: str, what: str) -> None:
    """Stop the page unless ``scope`` has ``permission``."""
    if not scope.may(permission):
        st.error(f"Your role ({scope.role}) may not {what}.")
        st.stop()


def settings_audit(warehouse: Callable[[], Warehouse]) -> None:
    """Compare the settings in force with the audit log's last record of them, at most once a
    minute per warehouse, and record a change (by ``app``: the file changed under it)."""
    from cs_metrics import audit as audit_log

    wh = warehouse()
    minute = int(time.time() // 60)
    if _SETTINGS_SEEN.get(str(wh.path)) == minute:
        return
    _SETTINGS_SEEN[str(wh.path)] = minute
    try:
        audit_log.record_settings(wh.base, actor="app", role="")
    except CsMetricsError as exc:
        _log.warning("Could not compare the settings with the audit log: %s", exc)


_SETTINGS_SEEN: dict[str, int] = {}  # warehouse -> the minute it was last compared

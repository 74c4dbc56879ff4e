"""Sign-in and roles for the pages.

Sign-in is on when ``.streamlit/secrets.toml`` has an ``[auth]`` section (Streamlit's OIDC:
``st.login``, ``st.user``); the ``[access]`` section of the settings gives each identity a
role and its scope (``cs_metrics.core.access``). Only claims the identity provider vouches for
can match a role: the e-mail address when the provider marks it verified (or as sent, when
``access.identity_claim = "email"``), and groups; never a name or username the person chose.
Without ``[auth]`` the app runs in local mode: no sign-in, every row, and it says so in the
sidebar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import streamlit as st

from cs_metrics import CsMetricsError, load_settings
from cs_metrics.core.access import LOCAL, Identity, Scope, identity_from_claims, resolve_scope
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.core.warehouse import Warehouse

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


def identity() -> Identity | None:
    """Who is signed in, as far as the identity provider's claims may be trusted (the
    settings' ``access.identity_claim``), or None when nobody is signed in."""
    user = st.user
    if not getattr(user, "is_logged_in", False):
        return None
    return identity_from_claims(user, load_settings().access.identity_claim)


def _scope_of(who: Identity) -> Scope | None:
    return resolve_scope(who.email, who.groups, load_settings(), issuer=who.issuer,
                         subject=who.subject)


def current_scope() -> Scope | None:
    """Local mode's full scope, the signed-in person's scope, or None (no sign-in yet, or
    no role in the settings)."""
    if not hosted():
        return LOCAL
    who = identity()
    if who is None:
        return None
    return _scope_of(who)


def audit(wh: Warehouse, scope: Scope, action: str, target: str = "",
          detail: Mapping[str, Any] | None = None) -> None:
    """Append to the audit log; a failure is shown, never raised into the page."""
    from cs_metrics.core import audit as audit_log

    try:
        audit_log.record(wh.base, scope.actor, scope.role, action, target, dict(detail or {}),
                         issuer=scope.issuer, subject=scope.subject)
    except CsMetricsError as exc:
        _log.warning("Could not write the audit log: %s", exc)
        st.warning("This action could not be written to the audit log: "
                   f"{escape_markdown(exc)}")


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
    try:
        who = identity()
        scope = _scope_of(who) if who is not None else None
    except CsMetricsError as exc:
        # the sentence names the settings file and key: for the server's log, not for
        # whoever signed in
        _log.error("Sign-in cannot resolve roles: %s", exc)
        st.title("Sign-in is unavailable")
        st.error("The app's settings have a mistake, so nobody can be given a role until an "
                 "administrator fixes it; the server's log names the file and the setting.")
        st.stop()
    if who is None:
        _sign_in_page()
        st.stop()
    if scope is None:
        _refuse(warehouse, who)
    if st.session_state.get(SIGNED_IN_KEY) != ("ok", scope.actor, who.issuer, who.subject):
        st.session_state[SIGNED_IN_KEY] = ("ok", scope.actor, who.issuer, who.subject)
        detail = {"groups": list(who.groups), "scope": scope.describe()}
        if who.refusal:  # a role by group; the e-mail sent could not be used
            detail.update(unusable_email=who.claimed_email, why=who.refusal)
        audit(warehouse(), scope, "sign_in", "", detail)
    return scope


def _refuse(warehouse: Callable[[], Warehouse], who: Identity) -> NoReturn:
    """The page of a signed-in person without a role: why, and the way out; logged once
    per session and identity."""
    key = ("denied", who.email, who.issuer, who.subject)
    if st.session_state.get(SIGNED_IN_KEY) != key:
        st.session_state[SIGNED_IN_KEY] = key
        from cs_metrics.core import audit as audit_log

        detail: dict[str, Any] = {"groups": list(who.groups)}
        if who.refusal:
            detail.update(unusable_email=who.claimed_email, why=who.refusal)
        try:
            audit_log.record(warehouse(), who.email or audit_log.UNKNOWN_ACTOR, "",
                             "access_denied", "", detail, issuer=who.issuer,
                             subject=who.subject)
        except CsMetricsError as exc:
            _log.warning("Could not write the audit log: %s", exc)
    st.title("No access yet")
    if who.refusal:
        # the claim is the provider's data: shown as text, never as Markdown
        st.error(f"You are signed in, but {escape_markdown(who.refusal)}, so this account "
                 "cannot be given a role. Verify the address with your identity provider "
                 "and sign in again, or ask an administrator to give your group a role.")
    else:
        st.error(f"You are signed in as {escape_markdown(who.email)}, but the settings give "
                 "this account no role. Ask an administrator to add it to the [access] "
                 "section of the settings file.")
    st.button("Sign out", on_click=st.logout)
    st.stop()


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
        st.caption(f"Signed in as **{escape_markdown(scope.actor)}** · "
                   f"{escape_markdown(scope.describe())}")
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
    from cs_metrics.core import audit as audit_log

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

"""The sidebar's saved views: the filters under a name, per person
(``cs_metrics.ops.saved_views``), opened as their link would open."""

from __future__ import annotations

import urllib.parse

import streamlit as st

from cs_metrics import CsMetricsError
from cs_metrics.core.access import LOCAL
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ops.saved_views import MAX_NAME, ViewStore, clean_name, person_key
from views._auth import current_scope
from views._filter_defs import DATE_PARAMS, FILTER_DIMENSIONS
from views._filter_parts import _clear_filters

VIEW_PICK = "saved_view"


def _view_person() -> str:
    scope = current_scope() or LOCAL
    if scope.role == "local":
        return person_key("local")
    return person_key(scope.actor, scope.issuer, scope.subject)


def _view_store() -> ViewStore:
    return ViewStore(keys=(*DATE_PARAMS, *(dim for dim, _ in FILTER_DIMENSIONS)))


def _apply_view() -> None:
    """Open the chosen view as its link would open: its parameters in the URL, read back
    through the same checks as a shared link's (``_read_url``) on this run."""
    name = st.session_state.get(VIEW_PICK)
    view = _view_store().views(_view_person()).get(name) if name else None
    if view is None:
        return
    _clear_filters()
    for key in ("date_preset", "date_custom", "report_tz",
                *(f"filter_{dim}" for dim, _ in FILTER_DIMENSIONS)):
        st.session_state.pop(key, None)
    for key in (*DATE_PARAMS, *(dim for dim, _ in FILTER_DIMENSIONS)):
        if key in st.query_params:
            del st.query_params[key]
    for key, values in view.query.items():
        st.query_params[key] = values
    st.session_state.pop("_filters_url_read", None)  # filters_ui reads the URL again
    st.session_state.pop("_filters_url_wanted", None)  # and keeps the note on what it ignored
    st.session_state["_views_message"] = ("info", f"Showing the saved view {name}.")


def _save_view(replace: bool) -> None:
    wanted = st.session_state.get("_filters_url_wanted")
    name = st.session_state.get("view_name", "")
    if not wanted:
        return
    try:
        view = _view_store().save(_view_person(), name, wanted, replace=replace)
    except CsMetricsError as exc:
        taken = not replace and "exists already" in str(exc)
        st.session_state["_views_replace"] = clean_name(name) if taken else None
        st.session_state["_views_message"] = ("error", str(exc))
        return
    st.session_state["_views_replace"] = None
    st.session_state["_views_message"] = ("success", f"Saved the view {view.name}.")
    st.session_state[VIEW_PICK] = view.name
    st.session_state["view_name"] = ""


def _delete_view() -> None:
    name = st.session_state.get(VIEW_PICK)
    if not name:
        return
    try:
        _view_store().delete(_view_person(), name)
    except CsMetricsError as exc:
        st.session_state["_views_message"] = ("error", str(exc))
        return
    st.session_state[VIEW_PICK] = None
    st.session_state["_views_message"] = ("success", f"Deleted the view {name}.")


def saved_views_ui(wanted: dict[str, list[str]] | None) -> str | None:
    """The sidebar's saved views (under the filters): choose one to open it, save the
    current filters (``wanted``, the link's parameters) under a name, delete the chosen
    one, copy its link. Names and notes are the user's or the file's text: shown only
    as widget options and plain text (``st.text``, ``st.code``), never as Markdown.
    Returns the name of the view chosen, if any."""
    listed = _view_store().views(_view_person())
    shown = listed.get(st.session_state.get(VIEW_PICK) or "")
    if shown is None or shown.query != wanted:
        # deleted elsewhere, or the filters changed since: choosing it again reopens it
        st.session_state[VIEW_PICK] = None
    chosen = st.selectbox(
        "Saved views", listed.names, index=None, key=VIEW_PICK, on_change=_apply_view,
        placeholder="Choose a view" if listed.views else "No saved views yet",
        disabled=not listed.views,
        help="Filters saved under a name, kept for you on this app's server (on this "
        "machine in local mode). Choosing one sets the filters as its link would.")
    with st.expander("Save, share or delete a view"):
        st.text_input("Name of the view", key="view_name", max_chars=MAX_NAME,
                      placeholder="e.g. Chat, last 30 days")
        st.button("Save current view", key="view_save", on_click=_save_view, args=(False,),
                  disabled=not wanted, icon=":material/bookmark_add:")
        if st.session_state.get("_views_replace"):
            st.text(f"Replace the view {st.session_state['_views_replace']}?")
            st.button("Replace it", key="view_replace", on_click=_save_view, args=(True,))
        if chosen:
            view = listed.get(chosen)
            if view is not None:
                path = urllib.parse.urlsplit(st.context.url or "").path
                st.caption("Its link (add it to the app's address to share the view):")
                st.code(view.link(path), language=None, wrap_lines=True)
            st.button("Delete the chosen view", key="view_delete", on_click=_delete_view,
                      icon=":material/delete:")
    message = st.session_state.pop("_views_message", None)
    if message:
        getattr(st, message[0])(escape_markdown(message[1]))
    for note in listed.notes:
        st.text(note)
    return chosen

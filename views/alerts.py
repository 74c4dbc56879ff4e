"""Alerts: what needs attention now, what was raised before, the rules in force and where the
notifications went."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pandas as pd
import streamlit as st

from cs_metrics import CsMetricsError, Warehouse, load_settings
from cs_metrics.core.access import LOCAL, Scope
from cs_metrics.core.safe_text import escape_markdown
from cs_metrics.ops.alerts import (
    RULES,
    acknowledge,
    active_alerts,
    alert_history,
    alert_schedule,
    alert_schedule_error,
    last_evaluation,
    mute,
    mutes,
    rules_in_force,
    rules_without_inputs,
    run_alerts,
    unmute,
)
from cs_metrics.ops.notify import deliveries
from views._exports import download_buttons
from views._filter_defs import no_filters
from views._filter_parts import as_of_text
from views._session import ensure_data, who
from views._tables import INPUT_NAMES, show_table

SEVERITY_ICONS = {"critical": ":material/error:", "warning": ":material/warning:",
                  "info": ":material/info:"}
MUTE_HOURS = {"1 hour": 1, "8 hours": 8, "1 day": 24, "1 week": 168}


def _evaluate(wh: Warehouse) -> None:
    try:
        run = run_alerts(wh.base, load_settings())
    except CsMetricsError as exc:
        st.session_state["_alerts_run"] = f"The rules could not run: {exc}"
        return
    st.session_state["_alerts_run"] = run.summary().splitlines()[0]


def _not_run_text(wh: Warehouse) -> str | None:
    """Which enabled rules this dataset cannot feed, and what it lacks; None when none."""
    enabled = set(rules_in_force(load_settings()).query("enabled")["rule"])
    lines = [
        f"- {RULES[rule].label}: this dataset has no "
        f"{' or '.join(INPUT_NAMES.get(n, n) for n in needs)}."
        for rule, needs in rules_without_inputs(wh).items() if rule in enabled
    ]
    if not lines:
        return None
    return "These rules do not run and never fire on this dataset, because their inputs " \
           "are missing:\n" + "\n".join(lines)


def _schedule(wh: Warehouse) -> bool:
    """Say when the rules last ran on the app's schedule and run next; whether they have
    been evaluated at all (on the schedule, on a refresh or on the button)."""
    settings = load_settings()
    last, upcoming = alert_schedule(wh, settings)
    error = alert_schedule_error(wh)
    every = f"{settings.alerts.every:g} minute" + ("" if settings.alerts.every == 1 else "s")
    if last is not None and upcoming is not None:
        text = (f"Rules last ran at {last:%Y-%m-%d %H:%M} UTC; next run at "
                f"{upcoming:%Y-%m-%d %H:%M} UTC (every {every}).")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        if now > upcoming + timedelta(minutes=1):
            text += " That run is overdue: is the app's server running?"
        st.caption(text)
    elif upcoming is not None:
        st.caption(f"The rules have not run on the schedule yet; next attempt at "
                   f"{upcoming:%Y-%m-%d %H:%M} UTC.")
    else:
        st.caption(f"The rules have not run on the schedule yet: the app evaluates them "
                   f"within seconds of its start, then every {every}.")
    if error:
        st.warning(f"The last scheduled evaluation failed: {escape_markdown(error)}",
                   icon=":material/warning:")
    return last is not None or last_evaluation(wh) is not None


def _role(wh: Warehouse) -> str:
    return (wh.scope or LOCAL).role


def _ack(wh: Warehouse, alert_id: str) -> None:
    acknowledge(wh, alert_id, who(), role=_role(wh))


def _mute(wh: Warehouse, target: str, key: str) -> None:
    hours = MUTE_HOURS[st.session_state[key]]
    mute(wh, target, timedelta(hours=hours), who(), reason="muted on the Alerts page",
         role=_role(wh))


def _app_link(link: str | None) -> str | None:
    """A stored alert's link as a Markdown link target: only a path of this app (a link to
    another site is not offered), percent-encoded so that no character of it (a parenthesis,
    a space, a bracket) ends the target early."""
    if not link or not link.startswith("/") or link.startswith("//"):
        return None
    return quote(link, safe="/?&=%+-._~")


def _active(wh: Warehouse, scope: Scope, evaluated: bool) -> None:
    df = active_alerts(wh)
    st.subheader(f"Active alerts ({len(df)})")
    if df.empty and not evaluated:
        # no alert yet only means no rule has looked: never reassure before one has
        st.info("The rules have not run yet, so nothing is known to need attention or not; "
                "they run on the schedule above, or now with the button.",
                icon=":material/schedule:")
        return
    if df.empty:
        st.success("Nothing needs attention: no active alert.")
        return
    for row in df.itertuples():
        with st.container(border=True):
            icon = SEVERITY_ICONS.get(row.severity, ":material/notifications:")
            # title and message quote the data (a location, a segment, a term): text only
            st.markdown(f"{icon} **{escape_markdown(row.title)}** · "
                        f"{escape_markdown(row.severity)} · raised "
                        f"{pd.Timestamp(row.created_at):%Y-%m-%d %H:%M}"
                        + (f" · seen {row.seen_count} times" if row.seen_count > 1 else ""))
            st.markdown(escape_markdown(row.message))
            if link := _app_link(row.link):
                st.markdown(f"[Open the filtered view]({link})")
            figures = json.loads(row.figures) if row.figures else {}
            with st.expander("Figures behind it"):
                st.json(figures, expanded=False)
            if row.acknowledged_by:
                st.caption(f"Acknowledged by {escape_markdown(row.acknowledged_by)} at "
                           f"{pd.Timestamp(row.acknowledged_at):%Y-%m-%d %H:%M}")
            with st.container(horizontal=True):
                st.button("Acknowledge", key=f"ack_{row.occurrence_id}",
                          disabled=bool(row.acknowledged_by), on_click=_ack,
                          args=(wh, row.occurrence_id), icon=":material/done:")
                if scope.may("mute_alerts"):
                    choice = f"mute_for_{row.occurrence_id}"
                    st.selectbox("Mute for", list(MUTE_HOURS), key=choice,
                                 label_visibility="collapsed")
                    st.button("Mute this alert", key=f"mute_{row.occurrence_id}",
                              on_click=_mute, args=(wh, row.alert_id, choice),
                              icon=":material/notifications_off:")
                    st.button(f"Mute rule {escape_markdown(row.rule)}",
                              key=f"mute_rule_{row.occurrence_id}",
                              on_click=_mute, args=(wh, row.rule, choice))
            if row.deliveries:
                st.caption(f"Notifications: {escape_markdown(row.deliveries)}")


def _tables(wh: Warehouse, scope: Scope) -> None:
    history, rules, muted, sent = st.tabs(["History", "Rules in force", "Mutes",
                                           "Deliveries"])
    with history:
        df = alert_history(wh)
        if df.empty:
            seen = "" if scope.may("all_alerts") else " that you may see"
            st.caption(f"No alert{seen} has fired yet. The rules run on the app's schedule, "
                       "after every refresh of live data and on the button above; what they "
                       "find stays listed here, with who acknowledged it.")
        else:
            show_table(df, hide_index=True, key="alert_history")
            download_buttons(df, "alert_history", no_filters())
    with rules:
        st.caption("From the settings file (`[alerts]`); change them there.")
        df = rules_in_force(load_settings())
        show_table(df, hide_index=True, key="alert_rules")
        not_run = _not_run_text(wh)
        if not_run:
            st.caption(not_run)
    with muted:
        df = mutes(wh)
        if df.empty:
            st.caption("Nothing is muted.")
        else:
            show_table(df, hide_index=True, key="alert_mutes")
            if scope.may("mute_alerts"):
                target = st.selectbox("Unmute", df.iloc[:, 0].tolist(), key="unmute_target")
                if st.button("Unmute", key="unmute"):
                    unmute(wh, target, by=who(), role=_role(wh))
                    st.rerun()
    with sent:
        if not scope.may("view_deliveries"):
            st.caption("Notification deliveries are shown to managers and admins.")
            return
        df = deliveries(wh)
        if df.empty:
            st.caption("No notification has been sent yet (the in-app channel shows alerts "
                       "as pop-ups; e-mail and webhooks are set in `[notifications]`).")
        else:
            show_table(df, hide_index=True, key="alert_deliveries")
            download_buttons(df, "alert_deliveries", no_filters())


def main() -> None:
    st.title("Alerts")
    try:
        wh = ensure_data()
        scope = wh.scope or LOCAL
        st.caption(f"{as_of_text(wh)} · Rules run at the app's start and on a schedule "
                   "(`[alerts] every`), after every refresh of live data, on this button, or "
                   "with `python -m cs_metrics alerts --once` from cron.")
        evaluated = _schedule(wh)
        if scope.may("all_alerts"):
            st.button("Evaluate the rules now", on_click=_evaluate, args=(wh,),
                      key="alerts_run", icon=":material/refresh:", type="primary")
        else:
            st.caption("You see the alerts about places and topics, and those about your "
                       "tickets; alerts over every team are shown to managers and admins.")
        if st.session_state.get("_alerts_run"):
            st.caption(escape_markdown(st.session_state["_alerts_run"]))
        not_run = _not_run_text(wh)
        if not_run:
            st.info(not_run, icon=":material/info:")
        _active(wh, scope, evaluated)
        _tables(wh, scope)
    except CsMetricsError as exc:
        st.error(escape_markdown(exc))


main()

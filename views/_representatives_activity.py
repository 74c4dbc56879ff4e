"""Representatives page, the activity section: touches, reopens and handoffs from the status
history, by representative, team and manager."""

from __future__ import annotations

import streamlit as st

import cs_metrics
from cs_metrics import Filters, Warehouse
from cs_metrics.analysis.activity import ACTIVITY_METRICS, activity, has_status_history
from cs_metrics.analysis.leaderboard import (
    LEVELS,
)
from views._cache import cached
from views._representatives_format import (
    board_format,
    downloads,
)
from views._tables import show_table

KEY_LABELS = {"rep_id": "Rep id", "rep_name": "Representative", "team": "Team",
              "manager": "Manager"}


KEY_WIDTHS = {"rep_name": 125, "team": 125, "manager": 140}


# Agent activity columns: short labels with their unit (the registry's label and
# description are in each column's help)
ACTIVITY_LABELS: dict[str, str] = {
    "ticket_count": "Tickets", "closed_count": "Closed",
    "touches_per_ticket": "Touches / ticket", "reassignments_per_ticket": "Reassign. / ticket",
    "median_open_h": "Open med. (h)", "median_in_progress_h": "In prog. med. (h)",
    "one_touch_pct": "One-touch (%)", "event_reopen_pct": "Reopen hist. (%)",
    "reopen_pct": "Reopen (%)",
}


# the activity figures are over closed tickets: their count is the column shown; the table
# is still sorted by all tickets (in the downloads)
ACTIVITY_SHOWN: tuple[str, ...] = tuple(m for m in ACTIVITY_METRICS if m != "ticket_count")


ACTIVITY_LEVELS_SHOWN: tuple[tuple[str, str, str], ...] = (
    ("rep", "Per representative", "activity_representatives"),
    ("team", "Per team", "activity_teams"),
)


NO_HISTORY = ("This dataset has no status history (ticket_events), so touches, "
              "reassignments, time in each status, one-touch resolution and reopens from the "
              "history are empty (–).")


_activity = cached(activity)


def _activity_section(wh: Warehouse, filters: Filters) -> None:
    st.subheader("Agent activity")
    st.caption("From the status history of the closed tickets created in the range, per "
               "assigned representative and team: touches are status events, a reassignment "
               "is a change of representative, time in a status runs from its event to the "
               "next one, and one-touch tickets were closed in one pass by one representative "
               "(see the README's \"Agent activity\").")
    if not has_status_history(wh):
        st.caption(NO_HISTORY)
    # one table under the other: a lead compares a representative with their team's row
    for level, title, kind in ACTIVITY_LEVELS_SHOWN:
        st.markdown(f"**{title}**")
        _activity_table(wh, filters, level, kind)


def _activity_table(wh: Warehouse, filters: Filters, level: str, kind: str) -> None:
    df = _activity(wh, filters, level)
    if df.empty:
        who = "representatives" if level == "rep" else "teams"
        st.info(f"No tickets of {who} were created in this date range.")
        return
    keys = [k for k in LEVELS[level] if k != "manager"]
    if level == "rep" and df["rep_name"].notna().all():
        keys.remove("rep_id")  # a name is known for everyone; the id is in the downloads
    config: dict[str, object] = {
        k: st.column_config.TextColumn(KEY_LABELS[k], width=KEY_WIDTHS.get(k)) for k in keys}
    for name in ACTIVITY_SHOWN:
        m, label = cs_metrics.get_metric(name), ACTIVITY_LABELS[name]
        # as wide as the label, so the table fits a 1500 px window without scrolling
        config[name] = st.column_config.NumberColumn(
            label, help=f"{m.label}: {m.description}", format=board_format(m),
            width=max(56, round(6.4 * len(label)) + 10))
    # a figure without inputs (or a group without such tickets) is "–", never 0 or "None"
    show_table(df, column_config=config, column_order=[*keys, *ACTIVITY_SHOWN],
               key=f"activity_{level}")
    downloads(df, kind, filters)

"""Audit log: sign-ins, exports, reports, alert acknowledgements and mutes, setting changes,
dataset validations and loads; for admins, with a check of the hash chain and a download."""

from __future__ import annotations

from datetime import date, timedelta

import streamlit as st

from cs_metrics import CsMetricsError
from cs_metrics.core import audit as audit_log
from cs_metrics.core.access import LOCAL
from views._auth import require
from views._exports import export_button
from views._session import ensure_data
from views._tables import plural, show_table

PAGE_ROWS = 500


def main() -> None:
    st.title("Audit log")
    try:
        wh = ensure_data()
        require(wh.scope or LOCAL, "view_audit", "read the audit log")
        base = wh.base
        st.caption("Every sign-in, export, report, alert acknowledgement or mute, settings "
                   "change and dataset validation or load, appended and chained by hash: a "
                   "changed or deleted entry breaks the chain below. Issuer and subject are "
                   "the identity provider's names for the account that signed in: two "
                   "accounts that claim one e-mail address differ there.")
        result = audit_log.verify(base)
        if result.ok:
            st.success(f"The chain is intact: {plural(result.checked, 'entry')} checked.",
                       icon=":material/verified:")
        else:
            st.error(f"The chain is broken at entry {result.broken_seq}: {result.reason}",
                     icon=":material/gpp_bad:")
        left, mid, right = st.columns(3)
        action = left.selectbox("Action", ["(any)", *audit_log.ACTIONS], key="audit_action")
        actor = mid.text_input("Who (exact e-mail)", key="audit_actor").strip().lower()
        since = right.date_input("Since", value=date.today() - timedelta(days=30),
                                 key="audit_since")
        df = audit_log.entries(
            base, limit=PAGE_ROWS, actor=actor or None,
            action=None if action == "(any)" else action, since=since,
        )
        show_table(df.drop(columns=["prev_hash"]), hide_index=True, key="audit_entries",
                     column_config={
                         "detail": st.column_config.TextColumn("detail", width="large"),
                         "issuer": st.column_config.TextColumn(
                             "issuer", help="The identity provider (its iss claim)."),
                         "subject": st.column_config.TextColumn(
                             "subject", help="The account at that provider (its sub claim)."),
                     })
        st.caption(f"The newest {plural(min(len(df), PAGE_ROWS), 'entry')} that match.")
        export_button("Download the whole log (CSV)",
                      lambda: audit_log.to_csv_bytes(audit_log.entries(base)),
                      "audit_log.csv", "text/csv", key="audit_csv")
    except CsMetricsError as exc:
        st.error(str(exc))


main()

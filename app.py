"""Customer-service metrics: the app's pages. Run with `streamlit run app.py`."""

from __future__ import annotations

import streamlit as st

from pages._common import ensure_data

st.set_page_config(page_title="Customer service metrics", page_icon="📞", layout="wide")

page = st.navigation(
    [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("pages/trends.py", title="Ticket trends", icon=":material/trending_up:"),
        st.Page("pages/representatives.py", title="Representatives", icon=":material/groups:"),
        st.Page("pages/feedback.py", title="Customer feedback", icon=":material/reviews:"),
        st.Page("pages/seasonality.py", title="Seasonality & staffing",
                icon=":material/calendar_month:"),
        st.Page("pages/outages.py", title="Outages", icon=":material/map:"),
        st.Page("pages/whatif.py", title="What-if simulation", icon=":material/science:"),
        st.Page("pages/reports.py", title="Reports", icon=":material/summarize:"),
        st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications:"),
        st.Page("pages/data_quality.py", title="Data quality", icon=":material/fact_check:"),
        st.Page("pages/data_sources.py", title="Your data", icon=":material/upload_file:"),
    ]
)
ensure_data()  # the first start generates and loads the sample dataset
page.run()

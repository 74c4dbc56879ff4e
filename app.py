"""Customer-service metrics: the app's pages. Run with `streamlit run app.py`."""

from __future__ import annotations

import streamlit as st

from views._common import ensure_data

st.set_page_config(page_title="Customer service metrics", page_icon="📞", layout="wide")

page = st.navigation(
    [
        st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("views/trends.py", title="Ticket trends", icon=":material/trending_up:"),
        st.Page("views/representatives.py", title="Representatives", icon=":material/groups:"),
        st.Page("views/feedback.py", title="Customer feedback", icon=":material/reviews:"),
        st.Page("views/seasonality.py", title="Seasonality & staffing",
                icon=":material/calendar_month:"),
        st.Page("views/outages.py", title="Outages", icon=":material/map:"),
        st.Page("views/whatif.py", title="What-if simulation", icon=":material/science:"),
        st.Page("views/reports.py", title="Reports", icon=":material/summarize:"),
        st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:"),
        st.Page("views/data_quality.py", title="Data quality", icon=":material/fact_check:"),
        st.Page("views/data_sources.py", title="Your data", icon=":material/upload_file:"),
    ]
)
ensure_data()  # the first start generates and loads the sample dataset
page.run()

"""Independent pandas computations of the metric definitions in DATA_CONTRACT.md.

Written from the contract's words, not from the SQL, so a test comparing the two checks the
compiler against the definitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cs_metrics.core.settings import BusinessCalendar, Settings


def read_table(folder: Path, name: str) -> pd.DataFrame | None:
    for ext in (".parquet", ".csv"):
        path = folder / f"{name}{ext}"
        if path.exists():
            return pd.read_parquet(path) if ext == ".parquet" else pd.read_csv(path)
    return None


def prepare(folder: Path, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Tickets with the contract's defaults and joins applied; feedback as read."""
    t = read_table(folder, "tickets").copy()
    for col in ("created_at", "first_response_at", "resolved_at"):
        t[col] = pd.to_datetime(t[col])
    customers = read_table(folder, "customers")
    reps = read_table(folder, "representatives")
    feedback = read_table(folder, "feedback")
    events = read_table(folder, "ticket_events")
    if feedback is not None:
        # a survey row with no score and no comment is not a response (README)
        feedback = feedback[feedback[["csat", "nps", "ces", "comment"]].notna().any(axis=1)]
        feedback = feedback.assign(sentiment=vader_compound(feedback["comment"]))
    if customers is not None:
        c = customers.set_index("customer_id")
        t["customer_segment"] = t["customer_segment"].fillna(t["customer_id"].map(c["segment"]))
        t["customer_location"] = t["customer_location"].fillna(t["customer_id"].map(c["city"]))
    t["customer_segment"] = t["customer_segment"].fillna("Unknown")
    if reps is not None:
        r = reps.set_index("rep_id")
        t["rep_name"] = t["rep_id"].map(r["name"])
        t["team"] = t["rep_id"].map(r["team"])
        t["manager"] = t["rep_id"].map(r["manager"])
    t["priority"] = t["priority"].fillna("normal")
    t["is_test"] = t["is_test"].fillna(False).astype(bool)
    # The data's "now": its latest timestamp.
    stamps = [t["created_at"].max(), t["first_response_at"].max(), t["resolved_at"].max()]
    if events is not None:
        stamps.append(pd.to_datetime(events["event_at"]).max())
    as_of = max(s for s in stamps if pd.notna(s))
    closed = t["status"] == "closed"
    t.loc[~closed, "resolved_at"] = pd.NaT
    t["fr_min"] = (t["first_response_at"] - t["created_at"]).dt.total_seconds() / 60
    t["res_h"] = np.where(
        closed, (t["resolved_at"] - t["created_at"]).dt.total_seconds() / 3600, np.nan
    )
    cal = settings.calendar()
    t["fr_bmin"] = business_seconds(t["created_at"], t["first_response_at"], cal) / 60
    t["res_bh"] = np.where(
        closed, business_seconds(t["created_at"], t["resolved_at"], cal) / 3600, np.nan
    )
    fr_target, res_target = [], []
    for p, s in zip(t["priority"], t["customer_segment"], strict=True):
        a, b, _ = settings.sla_targets(p, s)
        fr_target.append(a)
        res_target.append(b)
    t["fr_target"] = pd.array(fr_target, dtype="Float64")
    t["res_target"] = pd.array(res_target, dtype="Float64")

    fr_deadline = t["created_at"] + pd.to_timedelta(t["fr_target"].astype(float) * 60, "s")
    res_deadline = t["created_at"] + pd.to_timedelta(t["res_target"].astype(float) * 3600, "s")
    fr_met, res_met = [], []
    for i in range(len(t)):
        fr, tgt, dl = t["fr_min"].iat[i], t["fr_target"].iat[i], fr_deadline.iat[i]
        if pd.isna(tgt):
            fr_met.append(pd.NA)
        elif pd.notna(fr):
            fr_met.append(bool(fr <= tgt))
        else:
            fr_met.append(False if dl < as_of else pd.NA)
        rh, tgt, dl = t["res_h"].iat[i], t["res_target"].iat[i], res_deadline.iat[i]
        is_closed = bool(closed.iat[i])
        if pd.isna(tgt):
            res_met.append(pd.NA)
        elif is_closed:
            res_met.append(pd.NA if pd.isna(rh) else bool(rh <= tgt))
        else:
            res_met.append(False if dl < as_of else pd.NA)
    t["fr_met"] = pd.array(fr_met, dtype="boolean")
    t["res_met"] = pd.array(res_met, dtype="boolean")
    t["eff_resolved"] = t["resolved_at"].where(closed, pd.NaT)
    t.loc[closed & t["eff_resolved"].isna(), "eff_resolved"] = t["created_at"]
    if feedback is not None:
        t["has_feedback"] = t["ticket_id"].isin(set(feedback["ticket_id"]))
    else:
        t["has_feedback"] = False
    activity = event_activity(events)
    t = t.merge(activity, how="left", left_on="ticket_id", right_index=True)
    return t, feedback


EVENT_STATUS_ORDER = {"open": 0, "in_progress": 1, "closed": 2}
ACTIVITY_COLUMNS = ["ev_n", "ev_reassignments", "ev_reopens", "ev_in_progress_n",
                    "ev_ended_closed", "ev_open_h", "ev_in_progress_h"]


def event_activity(events: pd.DataFrame | None) -> pd.DataFrame:
    """Per ticket, from its status events walked in order (README "Agent activity"): events,
    reassignments (a named representative followed, at the next named one, by another),
    reopens (a closed event followed by a non-closed one), in-progress events, whether the
    last event is closed, and the hours spent in open and in progress (each event to the
    next). Tickets without events are absent."""
    if events is None or events.empty:
        return pd.DataFrame(columns=ACTIVITY_COLUMNS, index=pd.Index([], name="ticket_id"))
    e = events.copy()
    e["event_at"] = pd.to_datetime(e["event_at"])
    e["rep_id"] = e["rep_id"].astype(object).where(e["rep_id"].notna(), None)
    e["rank"] = e["status"].map(EVENT_STATUS_ORDER)
    e["rep_key"] = e["rep_id"].map(lambda r: (0, "") if r is None else (1, r))
    e = e.sort_values(["ticket_id", "event_at", "rank", "rep_key"], kind="stable")
    rows = {}
    for ticket_id, g in e.groupby("ticket_id", sort=False):
        statuses = g["status"].tolist()
        times = g["event_at"].tolist()
        reps = [r for r in g["rep_id"].tolist() if r is not None]
        hours = {"open": 0.0, "in_progress": 0.0}
        for i in range(len(statuses) - 1):
            if statuses[i] in hours:
                hours[statuses[i]] += (times[i + 1] - times[i]).total_seconds() / 3600
        rows[ticket_id] = {
            "ev_n": len(statuses),
            "ev_reassignments": sum(a != b for a, b in zip(reps, reps[1:], strict=False)),
            "ev_reopens": sum(a == "closed" and b != "closed"
                              for a, b in zip(statuses, statuses[1:], strict=False)),
            "ev_in_progress_n": statuses.count("in_progress"),
            "ev_ended_closed": statuses[-1] == "closed",
            "ev_open_h": hours["open"],
            "ev_in_progress_h": hours["in_progress"],
        }
    out = pd.DataFrame.from_dict(rows, orient="index", columns=ACTIVITY_COLUMNS)
    out.index.name = "ticket_id"
    return out


def business_seconds(start: pd.Series, end: pd.Series, cal: BusinessCalendar) -> np.ndarray:
    """Seconds from ``start`` to ``end`` (naive UTC) inside the calendar's open hours, in
    local wall-clock time (README): the open parts of the first and the last local day, plus
    the open hours of each weekday times numpy.busday_count of that weekday between them.
    NaN where either moment is missing; negative when ``end`` is before ``start``. Wall-clock
    arithmetic: right for calendars whose open hours never contain a daylight-saving change
    (every calendar these tests hand it)."""
    out = np.full(len(start), np.nan)
    ok = (start.notna() & end.notna()).to_numpy()
    if not ok.any():
        return out

    def local(x: pd.Series) -> pd.Series:
        return x[ok].dt.tz_localize("UTC").dt.tz_convert(cal.timezone).dt.tz_localize(None)

    a, b = local(start).to_numpy(), local(end).to_numpy()
    sign = np.where(b < a, -1.0, 1.0)
    a, b = np.minimum(a, b), np.maximum(a, b)
    a_day, b_day = a.astype("datetime64[D]"), b.astype("datetime64[D]")
    a_tod = (a - a_day).astype("timedelta64[us]").astype(float) / 1e6
    b_tod = (b - b_day).astype("timedelta64[us]").astype(float) / 1e6
    opens = np.array([h[0] if h else 0 for h in cal.hours], dtype=float)
    closes = np.array([h[1] if h else 0 for h in cal.hours], dtype=float)
    holidays = np.array(cal.holidays, dtype="datetime64[D]")

    def open_between(day: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        weekday = (day.astype("int64") + 3) % 7  # Monday 0: 1970-01-01 was a Thursday
        o, c = opens[weekday], closes[weekday]
        shut = np.isin(day, holidays)
        return np.where(shut, 0.0, np.clip(np.minimum(c, hi) - np.maximum(o, lo), 0, None))

    same = a_day == b_day
    total = np.where(same, open_between(a_day, a_tod, b_tod),
                     open_between(a_day, a_tod, np.full(len(a), 86400.0))
                     + open_between(b_day, np.zeros(len(a)), b_tod))
    for weekday in range(7):
        if closes[weekday] > opens[weekday]:
            mask = "".join("1" if d == weekday else "0" for d in range(7))
            whole = np.busday_count(a_day + 1, b_day, weekmask=mask, holidays=holidays)
            total += np.where(same, 0, np.maximum(whole, 0)) * (closes[weekday] - opens[weekday])
    out[ok] = sign * total
    return out


def vader_compound(comments: pd.Series) -> pd.Series:
    """VADER's compound score of each non-blank comment (NaN for none), straight from the
    package: the README defines comment sentiment as exactly this."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    text = comments.where(comments.notna() & (comments.astype(str).str.strip() != ""))
    scores = {c: analyzer.polarity_scores(c)["compound"] for c in text.dropna().unique()}
    return text.map(scores).astype("float64")


def _pct(num: pd.Series, den: pd.Series) -> float:
    d = int(den.sum())
    return np.nan if d == 0 else 100.0 * int((num & den).sum()) / d


def _q(s: pd.Series, q: float) -> float:
    s = s.dropna()
    return np.nan if s.empty else float(np.quantile(s.to_numpy(dtype=float), q))


def ticket_metric(name: str, g: pd.DataFrame) -> float:
    closed = g["status"] == "closed"
    match name:
        case "ticket_count":
            return len(g)
        case "open_count" | "in_progress_count" | "closed_count":
            return int((g["status"] == name.removesuffix("_count")).sum())
        case "avg_first_response_min":
            return g["fr_min"].mean()
        case "median_first_response_min":
            return _q(g["fr_min"], 0.5)
        case "p90_first_response_min":
            return _q(g["fr_min"], 0.9)
        case "avg_resolution_h":
            return g["res_h"].mean()
        case "median_resolution_h":
            return _q(g["res_h"], 0.5)
        case "p90_resolution_h":
            return _q(g["res_h"], 0.9)
        case "avg_first_response_business_min":
            return g["fr_bmin"].mean()
        case "median_first_response_business_min":
            return _q(g["fr_bmin"], 0.5)
        case "p90_first_response_business_min":
            return _q(g["fr_bmin"], 0.9)
        case "avg_resolution_business_h":
            return g["res_bh"].mean()
        case "median_resolution_business_h":
            return _q(g["res_bh"], 0.5)
        case "sla_first_response_pct":
            m = g["fr_met"]
            return _pct(m.fillna(False).astype(bool), m.notna())
        case "sla_resolution_pct":
            m = g["res_met"]
            return _pct(m.fillna(False).astype(bool), m.notna())
        case "fcr_pct":
            known = closed & g["contacts"].notna()
            ok = (g["contacts"] == 1) & (g["reopened_count"].fillna(0) == 0)
            return _pct(ok.fillna(False).astype(bool), known)
        case "reopen_pct":
            known = closed & g["reopened_count"].notna()
            return _pct((g["reopened_count"] > 0).fillna(False).astype(bool), known)
        case "aht_min":
            return g["handle_time_s"].mean() / 60
        case "customer_count":
            return g["customer_id"].nunique()
        case "response_rate_pct":
            return _pct(g["has_feedback"], closed)
    return activity_metric(name, g)


def activity_metric(name: str, g: pd.DataFrame) -> float:
    """The agent-activity figures over the group's closed tickets with a status history."""
    c = g[(g["status"] == "closed") & g["ev_n"].notna()]
    # time in a status is known for a closed ticket whose last event closed it
    done = c[c["ev_ended_closed"].astype(bool)]
    match name:
        case "touches_per_ticket":
            return np.nan if c.empty else float(c["ev_n"].astype(float).mean())
        case "reassignments_per_ticket":
            return np.nan if c.empty else float(c["ev_reassignments"].astype(float).mean())
        case "median_open_h":
            return _q(done["ev_open_h"].astype(float), 0.5)
        case "median_in_progress_h":
            return _q(done["ev_in_progress_h"].astype(float), 0.5)
        case "one_touch_pct":
            if c.empty:
                return np.nan
            one = ((c["ev_reassignments"] == 0) & (c["ev_reopens"] == 0)
                   & (c["ev_in_progress_n"] <= 1))
            return 100.0 * float(one.sum()) / len(c)
        case "event_reopen_pct":
            return np.nan if c.empty else 100.0 * float((c["ev_reopens"] > 0).sum()) / len(c)
    raise KeyError(name)


def feedback_metric(name: str, g: pd.DataFrame) -> float:
    match name:
        case "feedback_count":
            return len(g)
        case "csat_avg":
            return g["csat"].mean()
        case "csat_pct":
            c = g["csat"].dropna()
            return np.nan if c.empty else 100.0 * (c >= 4).sum() / len(c)
        case "nps":
            n = g["nps"].dropna()
            return np.nan if n.empty else 100.0 * ((n >= 9).sum() - (n <= 6).sum()) / len(n)
        case "ces_avg":
            return g["ces"].mean()
        case "sentiment_avg":
            return g["sentiment"].mean()
        case "negative_comment_pct":
            c = g["sentiment"].dropna()
            return np.nan if c.empty else 100.0 * (c <= -0.05).sum() / len(c)
    raise KeyError(name)


FEEDBACK_METRICS = {"feedback_count", "csat_avg", "csat_pct", "nps", "ces_avg", "sentiment_avg",
                    "negative_comment_pct"}


def bucket(ts: pd.Series, grain: str) -> pd.Series:
    ts = pd.to_datetime(ts)
    if grain == "day":
        return ts.dt.floor("D")
    if grain == "week":  # weeks start on Monday
        return (ts.dt.floor("D") - pd.to_timedelta(ts.dt.day_of_week, unit="D"))
    return ts.dt.to_period("M").dt.start_time


def localize(tickets: pd.DataFrame, tz: str | None) -> pd.DataFrame:
    """The tickets with ``created_at`` and ``eff_resolved`` as naive wall-clock times of
    ``tz`` (pandas' zone rules), so days, weeks, months and date bounds are local ones."""
    if tz is None or tz == "UTC":
        return tickets
    out = tickets.copy()
    for col in ("created_at", "eff_resolved"):
        if col in out.columns:
            out[col] = (pd.to_datetime(out[col]).dt.tz_localize("UTC").dt.tz_convert(tz)
                        .dt.tz_localize(None))
    return out


def compute(
    tickets: pd.DataFrame,
    feedback: pd.DataFrame | None,
    metrics: list[str],
    by: list[str],
    grain: str | None,
    date_from=None,
    date_to=None,
    where: dict[str, list[str]] | None = None,
    tz: str | None = None,
) -> pd.DataFrame:
    """Sparse result (groups that have tickets), like the contract's query output; with
    ``tz``, periods and date bounds are local days of that zone."""
    t = localize(tickets, tz)
    t = t[~t["is_test"]]
    for dim, values in (where or {}).items():
        t = t[t[dim].isin(values)]
    if date_from is not None:
        t = t[t["created_at"] >= pd.Timestamp(date_from)]
    if date_to is not None:
        t = t[t["created_at"] < pd.Timestamp(date_to)]
    t = t.copy()
    keys = list(by)
    if grain:
        t["period"] = bucket(t["created_at"], grain)
        keys.append("period")
    rows = []
    groups = t.groupby(keys, dropna=False, sort=True) if keys else [((), t)]
    fb = None
    if feedback is not None and any(m in FEEDBACK_METRICS for m in metrics):
        fb = feedback.merge(t, on="ticket_id", how="inner")
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        for m in metrics:
            if m in FEEDBACK_METRICS:
                if fb is None:
                    row[m] = np.nan if m != "feedback_count" else 0
                    continue
                mask = pd.Series(True, index=fb.index)
                for k, v in row.items():
                    if k in keys:
                        mask &= fb[k].isna() if pd.isna(v) else fb[k] == v
                row[m] = feedback_metric(m, fb[mask])
            else:
                row[m] = ticket_metric(m, g)
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + list(metrics))


def backlog(
    tickets: pd.DataFrame,
    by: list[str],
    grain: str | None,
    date_from=None,
    date_to=None,
    where: dict[str, list[str]] | None = None,
    tz: str | None = None,
) -> pd.DataFrame:
    """Tickets open at the end of each period (all earlier tickets count); with ``tz``,
    periods end at local midnights of that zone."""
    t = localize(tickets, tz)
    t = t[~t["is_test"]]
    for dim, values in (where or {}).items():
        t = t[t[dim].isin(values)]
    groups = t.groupby(by, dropna=False, sort=True) if by else [((), t)]
    rows = []
    if grain is None:
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            if date_to is None:
                n = int(g["eff_resolved"].isna().sum())
            else:
                end = pd.Timestamp(date_to)
                n = int(((g["created_at"] < end) &
                         (g["eff_resolved"].isna() | (g["eff_resolved"] >= end))).sum())
            rows.append({**dict(zip(by, key, strict=True)), "backlog": n})
        return pd.DataFrame(rows, columns=[*by, "backlog"])
    lo = pd.Timestamp(date_from) if date_from is not None else t["created_at"].min()
    hi = (pd.Timestamp(date_to) - pd.Timedelta(microseconds=1)) if date_to is not None \
        else t["created_at"].max()
    start = bucket(pd.Series([lo]), grain).iloc[0]
    stop = bucket(pd.Series([hi]), grain).iloc[0]
    freq = {"day": "D", "week": "W-MON", "month": "MS"}[grain]
    periods = pd.date_range(start, stop, freq=freq)
    step = {"day": pd.DateOffset(days=1), "week": pd.DateOffset(weeks=1),
            "month": pd.DateOffset(months=1)}[grain]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for p in periods:
            end = p + step
            n = int(((g["created_at"] < end) &
                     (g["eff_resolved"].isna() | (g["eff_resolved"] >= end))).sum())
            rows.append({**dict(zip(by, key, strict=True)), "period": p, "backlog": n})
    return pd.DataFrame(rows, columns=[*by, "period", "backlog"])


def resolved(
    tickets: pd.DataFrame,
    by: list[str],
    grain: str | None,
    date_from=None,
    date_to=None,
    where: dict[str, list[str]] | None = None,
    tz: str | None = None,
) -> pd.DataFrame:
    """Closed tickets counted in the period of their ``resolved_at`` (README: a metric whose
    time dimension is resolved_at), the date range applying to ``resolved_at``; a closed
    ticket without one is in no period. Sparse, like ``compute``: groups with such tickets."""
    t = tickets[~tickets["is_test"] & (tickets["status"] == "closed")
                & tickets["resolved_at"].notna()]
    if tz is not None and tz != "UTC":
        t = t.assign(resolved_at=pd.to_datetime(t["resolved_at"]).dt.tz_localize("UTC")
                     .dt.tz_convert(tz).dt.tz_localize(None))
    for dim, values in (where or {}).items():
        t = t[t[dim].isin(values)]
    if date_from is not None:
        t = t[t["resolved_at"] >= pd.Timestamp(date_from)]
    if date_to is not None:
        t = t[t["resolved_at"] < pd.Timestamp(date_to)]
    t = t.copy()
    keys = list(by)
    if grain:
        t["period"] = bucket(t["resolved_at"], grain)
        keys.append("period")
    if not keys:
        return pd.DataFrame({"resolved_count": [len(t)]})
    out = t.groupby(keys, dropna=False, sort=True).size().rename("resolved_count")
    return out.reset_index()[[*keys, "resolved_count"]]

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date, datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cs_metrics.core.schema import PRIORITIES, SCORE_RANGES, SEVERITIES, STATUSES, TABLES
from simulations import _text
from simulations.generator import GenerationResult, generate

END = datetime(2025, 3, 1)
START = END - timedelta(days=120)
ARGS = {"tickets": 40_000, "days": 120, "seed": 7, "end": END}
ARROW = {
    "VARCHAR": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
    "DOUBLE": pa.float64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "VARCHAR[]": pa.list_(pa.string()),
}
RES_NORM_H = {"low": 30.0, "normal": 14.0, "high": 5.0, "urgent": 2.0}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> GenerationResult:
    return generate(tmp_path_factory.mktemp("parquet"), **ARGS)


@pytest.fixture(scope="module")
def frames(dataset) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(dataset.out / f"{name}.parquet") for name in TABLES}


@pytest.fixture(scope="module")
def tickets(frames) -> pd.DataFrame:
    return frames["tickets"]


def _haversine_km(lat1, lon1, lat2, lon2):
    lat1, lon1, lat2, lon2 = (
        np.radians(np.asarray(x, dtype=float)) for x in (lat1, lon1, lat2, lon2)
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * np.arcsin(np.sqrt(a))


def test_same_arguments_same_bytes_other_seed_other_bytes(tmp_path):
    small = {"tickets": 3_000, "days": 45, "end": END}
    a = generate(tmp_path / "a", seed=3, **small)
    b = generate(tmp_path / "b", seed=3, **small)
    c = generate(tmp_path / "c", seed=4, **small)
    assert [p.name for p in a.files] == [p.name for p in b.files]
    for pa_, pb in zip(a.files, b.files, strict=True):
        assert pa_.read_bytes() == pb.read_bytes(), pa_.name
    assert a.counts == b.counts and a.truth == b.truth
    for pa_, pc in zip(a.files, c.files, strict=True):
        if pa_.stem in ("tickets", "ticket_events", "feedback", "customers", "truth"):
            assert pa_.read_bytes() != pc.read_bytes(), pa_.name


def test_result_lists_every_table_and_truth(dataset):
    assert isinstance(dataset, GenerationResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.seconds = 0.0  # type: ignore[misc]
    expected = [dataset.out / f"{name}.parquet" for name in TABLES] + [dataset.out / "truth.json"]
    assert list(dataset.files) == expected
    assert all(p.is_file() for p in dataset.files)
    assert set(dataset.counts) == set(TABLES)
    for name in TABLES:
        assert pq.read_metadata(dataset.out / f"{name}.parquet").num_rows == dataset.counts[name]
    assert dataset.counts["tickets"] == ARGS["tickets"]
    truth = json.loads((dataset.out / "truth.json").read_text())
    assert truth == dataset.truth
    assert truth["tickets"] == ARGS["tickets"] and truth["seed"] == 7
    assert truth["end"] == "2025-03-01 00:00:00" and truth["days"] == 120
    assert set(truth["outage_excess_per_customer_hour"]) == set(SEVERITIES)
    assert len(truth["weekday_factors"]) == 7
    assert "weekly_amplitude" in truth["definitions"]


@pytest.mark.parametrize("name", list(TABLES))
def test_canonical_columns_order_and_types(dataset, name):
    schema = pq.read_schema(dataset.out / f"{name}.parquet")
    table = TABLES[name]
    assert tuple(schema.names) == table.column_names
    for column in table.columns:
        assert schema.field(column.name).type == ARROW[column.type], column.name


def test_ticket_invariants(tickets, frames):
    t = tickets
    assert t["ticket_id"].is_unique
    assert t["ticket_id"].iloc[0] == "T0000001"
    assert t["created_at"].is_monotonic_increasing  # ids follow creation order
    assert set(t["status"]) <= set(STATUSES)
    assert set(t["priority"]) <= set(PRIORITIES)
    for col in ("created_at", "first_response_at", "resolved_at"):
        ts = t[col].dropna()
        assert (ts < END).all() and (ts >= START).all(), col
        assert (ts.dt.microsecond == 0).all(), col
    fr, res, created = t["first_response_at"], t["resolved_at"], t["created_at"]
    assert (fr.dropna() >= created[fr.notna()]).all()
    assert (res.dropna() >= created[res.notna()]).all()
    assert (res.dropna() >= fr[res.notna()]).all()
    closed = t["status"] == "closed"
    assert res[~closed].isna().all()
    assert res[closed].notna().all()
    assert fr[t["status"] == "in_progress"].notna().all()
    assert t["reopened_count"].min() == 0 and t["contacts"].dropna().min() >= 1
    assert 0.03 < (t["reopened_count"] > 0).mean() < 0.2
    assert (t["handle_time_s"].dropna() > 0).all()
    # The loader fills these from customers, so about a tenth are left empty.
    missing = t["customer_location"].isna() & t["customer_id"].notna()
    assert 0.07 < missing.mean() < 0.13
    assert 0.003 < t["is_test"].mean() < 0.008
    assert t.loc[t["is_test"], "subject"].str.contains("test", case=False).all()
    assert not t.loc[~t["is_test"], "subject"].str.contains("test", case=False).any()
    # The ticket is about the customer's service location.
    c = frames["customers"].set_index("customer_id")
    real = t[t["customer_id"].notna()]
    assert (real["location"].to_numpy() == c.loc[real["customer_id"], "city"].to_numpy()).all()
    assert np.allclose(real["location_lat"], c.loc[real["customer_id"], "lat"])
    has_segment = real["customer_segment"].notna()
    assert (
        real.loc[has_segment, "customer_segment"].to_numpy()
        == c.loc[real.loc[has_segment, "customer_id"], "segment"].to_numpy()
    ).all()
    assert set(t["channel"]) == {"phone", "chat", "email", "web", "social"}


def test_reps_take_tickets_only_after_hire(tickets, frames):
    reps = frames["representatives"].set_index("rep_id")
    assigned = tickets[tickets["rep_id"].notna()]
    hired = pd.to_datetime(reps.loc[assigned["rep_id"], "hired_at"]).to_numpy()
    assert (hired <= assigned["created_at"].to_numpy()).all()
    assert 40 <= len(reps) <= 120
    assert reps.groupby("team")["manager"].nunique().eq(1).all()
    assert 6 <= reps["team"].nunique() <= 10
    hired_during = pd.to_datetime(reps["hired_at"]) >= START
    assert 0 < hired_during.sum() < len(reps)
    # Fresh hires are slower than people who know the job.
    tenure_days = (assigned["created_at"].to_numpy() - hired) / np.timedelta64(1, "D")
    rel = (assigned["resolved_at"] - assigned["created_at"]).dt.total_seconds() / 3600
    rel = rel / assigned["priority"].map(RES_NORM_H)
    new, old = rel[tenure_days < 30].median(), rel[tenure_days > 365].median()
    assert new > 1.2 * old


def test_recent_tickets_open_old_tickets_closed(tickets):
    recent = tickets[tickets["created_at"] >= END - timedelta(hours=12)]
    old = tickets[tickets["created_at"] < END - timedelta(days=30)]
    assert len(recent) > 20
    assert (recent["status"] != "closed").mean() > 0.5
    assert (old["status"] == "closed").mean() > 0.98
    stuck = (old["status"] == "in_progress").sum()
    assert 0 < stuck < 0.01 * len(old)


def test_events_match_ticket_history(tickets, frames):
    ev = frames["ticket_events"]
    assert set(ev["status"]) <= set(STATUSES)
    assert (ev["event_at"] < END).all()
    assert ev["ticket_id"].is_monotonic_increasing
    assert ev.groupby("ticket_id", sort=False)["event_at"].apply(
        lambda s: s.is_monotonic_increasing
    ).all()
    t = tickets.set_index("ticket_id")
    g = ev.groupby("ticket_id", sort=False)
    last, first = g.last(), g.first()
    assert (last.loc[t.index, "status"] == t["status"]).all()
    assert (first.loc[t.index, "status"] == "open").all()
    assert (first.loc[t.index, "event_at"] == t["created_at"]).all()
    opens = ev[ev["status"] == "open"].groupby("ticket_id").size()
    assert (opens.loc[t.index] - 1 == t["reopened_count"]).all()
    closed = t[t["status"] == "closed"]
    assert (last.loc[closed.index, "event_at"] == closed["resolved_at"]).all()
    firsts = ev[ev["status"] == "in_progress"].groupby("ticket_id")["event_at"].first()
    responded = t[t["first_response_at"].notna()]
    assert (firsts.loc[responded.index] == responded["first_response_at"]).all()
    assert ev.loc[ev["status"] == "open", "rep_id"].isna().all()
    assert ev.loc[ev["status"] != "open", "rep_id"].notna().all()


def test_feedback_invariants(tickets, frames):
    fb = frames["feedback"]
    assert fb["feedback_id"].is_unique and fb["feedback_id"].iloc[0] == "F0000001"
    for col, (lo, hi) in SCORE_RANGES.items():
        values = fb[col].dropna()
        assert values.between(lo, hi).all() and values.nunique() == hi - lo + 1, col
    assert 0.1 < fb["nps"].isna().mean() < 0.3 and 0.2 < fb["ces"].isna().mean() < 0.4
    assert 0.5 < fb["comment"].notna().mean() < 0.7
    t = tickets.set_index("ticket_id")
    own = t.loc[fb["ticket_id"]]
    assert (own["status"] == "closed").all() and not own["is_test"].any()
    assert (fb["submitted_at"].to_numpy() > own["resolved_at"].to_numpy()).all()
    assert (fb["submitted_at"] < END).all()
    rate = fb["ticket_id"].nunique() / (t["status"] == "closed").sum()
    assert 0.25 < rate < 0.45


def test_feedback_falls_when_slow_or_reopened(tickets, frames):
    fb = frames["feedback"].merge(tickets, on="ticket_id")
    hours = (fb["resolved_at"] - fb["created_at"]).dt.total_seconds() / 3600
    rel = hours / fb["priority"].map(RES_NORM_H)
    fast, slow = rel <= rel.quantile(0.25), rel >= rel.quantile(0.75)
    for col in ("csat", "nps"):
        assert fb.loc[fast, col].mean() > fb.loc[slow, col].mean() + 0.5, col
    # CES is effort (lower is easier, as the metric registry reads it): it rises instead.
    assert fb.loc[slow, "ces"].mean() > fb.loc[fast, "ces"].mean() + 0.5
    reopened = fb["reopened_count"] > 0
    assert fb.loc[~reopened, "csat"].mean() > fb.loc[reopened, "csat"].mean() + 0.8
    assert fb.loc[reopened, "ces"].mean() > fb.loc[~reopened, "ces"].mean() + 0.5
    answered = fb[["csat", "nps", "ces", "comment"]].notna().any(axis=1)
    assert answered.all()


def test_comments_match_score_tone_and_domain(tickets, frames):
    fb = frames["feedback"].merge(tickets[["ticket_id", "domain"]], on="ticket_id")
    fb = fb[fb["comment"].notna() & fb["csat"].notna()]
    tone = np.where(fb["csat"] <= 2, 0, np.where(fb["csat"] == 3, 1, 2))
    for (domain, t), group in fb.groupby([fb["domain"], tone]):
        topics = [s[0].upper() + s[1:] for s in _text.TOPICS[domain][t]]
        others = [
            s[0].upper() + s[1:]
            for d, tones in _text.TOPICS.items()
            for k, sentences in enumerate(tones)
            if (d, k) != (domain, t)
            for s in sentences
        ]
        ok = group["comment"].apply(lambda c, ts=topics: any(s in c for s in ts))
        assert ok.all(), (domain, t)
        wrong = group["comment"].apply(lambda c, ts=others: any(s in c for s in ts))
        assert not wrong.any(), (domain, t)
    assert fb["comment"].nunique() > 1_000


def test_weekly_seasonality_matches_truth(dataset, tickets):
    t = tickets[~tickets["is_test"]]
    daily = t.groupby(t["created_at"].dt.normalize()).size()
    daily = daily[~daily.index.strftime("%Y-%m-%d").isin(dataset.truth["holiday_dates"])]
    by_day = daily.groupby(daily.index.day_of_week).mean()
    factors = dataset.truth["weekday_factors"]
    assert by_day[0] > 1.5 * by_day[6]
    observed = by_day[0] / by_day[6]
    assert observed == pytest.approx(factors[0] / factors[6], rel=0.2)
    weekdays, weekend = by_day[:5].mean(), by_day[5:].mean()
    assert weekdays / weekend == pytest.approx(
        np.mean(factors[:5]) / np.mean(factors[5:]), rel=0.15
    )
    # Office hours dominate the intraday curve.
    hours = t["created_at"].dt.hour
    assert hours.between(9, 16).mean() > 3 * hours.between(0, 5).mean()


def test_outage_surge_inside_radius_only(dataset, tickets, frames):
    truth = dataset.truth
    assert sum(o["generated_excess_tickets"] for o in truth["outages"]) == truth["surge_tickets"]
    outages = frames["outages"].set_index("outage_id")
    assert outages.index[0] == "O0001" and set(outages["severity"]) <= set(SEVERITIES)
    assert outages["radius_km"].between(5, 60).all()
    assert (outages["started_at"] < END).all()
    ended = outages["ended_at"].dropna()
    assert (ended > outages.loc[ended.index, "started_at"]).all() and (ended < END).all()
    assert outages["description"].str.contains("service").all()
    biggest = max(truth["outages"], key=lambda o: o["generated_excess_tickets"])
    assert biggest["generated_excess_tickets"] >= 50
    o = outages.loc[biggest["outage_id"]]
    stop = o["ended_at"] if pd.notna(o["ended_at"]) else END
    t = tickets[tickets["customer_id"].notna()]
    distance = _haversine_km(o["lat"], o["lon"], t["location_lat"], t["location_lon"])
    inside = distance <= o["radius_km"]
    same_domain = t["domain"] == biggest["domain"]

    def count(mask, weeks_back: int) -> int:
        shift = timedelta(weeks=weeks_back)
        when = (t["created_at"] >= o["started_at"] - shift) & (t["created_at"] < stop - shift)
        return int((mask & when).sum())

    during = count(inside & same_domain, 0)
    baseline = np.mean([count(inside & same_domain, w) for w in (1, 2, 3)])
    assert during >= biggest["generated_excess_tickets"]
    assert during > 5 * max(baseline, 1.0)
    outside_during = count(~inside, 0)
    outside_baseline = np.mean([count(~inside, w) for w in (1, 2, 3)])
    assert outside_during / outside_baseline == pytest.approx(1.0, abs=0.4)
    affected = frames["customers"]
    near = _haversine_km(o["lat"], o["lon"], affected["lat"], affected["lon"]) <= o["radius_km"]
    assert int(near.sum()) == biggest["affected_customers"]
    # Customers hit by an outage escalate: surge tickets are more urgent than usual.
    when = (t["created_at"] >= o["started_at"]) & (t["created_at"] < stop)
    surge = t[inside & same_domain & when]
    urgent_share = surge["priority"].isin(["high", "urgent"]).mean()
    assert urgent_share > t["priority"].isin(["high", "urgent"]).mean() + 0.2


def test_customers_live_near_real_cities(frames):
    c = frames["customers"]
    assert c["customer_id"].is_unique and c["customer_id"].iloc[0] == "C000001"
    shares = c["segment"].value_counts(normalize=True, dropna=False)
    assert shares["S"] == pytest.approx(0.73, abs=0.04)
    assert shares["M"] == pytest.approx(0.25, abs=0.04)
    assert c["segment"].isna().mean() == pytest.approx(0.02, abs=0.015)
    assert 30 <= c["city"].nunique() <= 60
    centre = c.groupby("city")[["lat", "lon"]].transform("median")
    dist = _haversine_km(c["lat"], c["lon"], centre["lat"], centre["lon"])
    assert np.quantile(dist, 0.99) < 20
    assert c["lat"].between(18, 72).all() and c["lon"].between(-170, -60).all()
    value = c.groupby("segment")["annual_value"].median()
    assert value["M"] > 3 * value["S"]
    assert c["name"].nunique() > 0.5 * len(c)


def test_csv_holds_the_same_data_as_parquet(dataset, tmp_path):
    res = generate(tmp_path, fmt="csv", **ARGS)
    assert [p.name for p in res.files] == [f"{n}.csv" for n in TABLES] + ["truth.json"]
    assert res.truth == dataset.truth
    con = duckdb.connect()
    for name, table in TABLES.items():
        csv_path = tmp_path / f"{name}.csv"
        header, first = csv_path.read_text().splitlines()[:2]
        assert header == ",".join(table.column_names)
        if any(c.type == "TIMESTAMP" for c in table.columns):
            assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(,|$)", first)
            assert not re.search(r"\d\d:\d\d:\d\d\.\d", first)
        # a list (tags) is text separated by commas in CSV: compared as that text
        types = ", ".join(f"'{c.name}': '{'VARCHAR' if c.type.endswith('[]') else c.type}'"
                          for c in table.columns)
        cols = ", ".join(f"array_to_string({c.name}, ',') as {c.name}" if c.type.endswith("[]")
                         else c.name for c in table.columns)
        csv_sql = f"select * from read_csv(?, header = true, columns = {{{types}}})"
        pq_sql = f"select {cols} from read_parquet(?)"
        for a, b in ((csv_sql, pq_sql), (pq_sql, csv_sql)):
            params = [str(csv_path), str(dataset.out / f"{name}.parquet")]
            if a == pq_sql:
                params.reverse()
            diff = con.execute(
                f"select count(*) from ({a} except all {b})", params
            ).fetchone()
            assert diff == (0,), name
        rows = con.execute(f"select count(*) from ({csv_sql})", [str(csv_path)]).fetchone()
        assert rows == (dataset.counts[name],)


def test_default_size_end_and_progress(tmp_path, capsys):
    today = datetime.now(timezone.utc).date()
    res = generate(tmp_path / "quiet", tickets=400, days=10)
    assert capsys.readouterr().err == ""
    assert res.truth["end"] in {f"{d} 00:00:00" for d in (today, today + timedelta(days=1))}
    generate(tmp_path / "loud", tickets=400, days=10, end=date(2024, 1, 1), progress=True)
    assert "generate" in capsys.readouterr().err
    ts = pd.read_parquet(tmp_path / "loud" / "tickets.parquet")["created_at"]
    assert ts.max() < datetime(2024, 1, 1) and ts.min() >= datetime(2023, 12, 22)


def test_default_ticket_count_scales_with_days(tmp_path):
    res = generate(tmp_path, days=20, end=END)
    assert res.counts["tickets"] == 275 * 20
    assert res.truth["tickets"] == 275 * 20


@pytest.mark.parametrize(
    "kwargs",
    [{"fmt": "xlsx"}, {"days": 0}, {"tickets": 0}],
)
def test_bad_arguments_are_rejected(tmp_path, kwargs):
    args = {"tickets": 100, "days": 10, "end": END} | kwargs
    with pytest.raises(ValueError):
        generate(tmp_path, **args)

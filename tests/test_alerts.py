from __future__ import annotations

import dataclasses
import math
import shutil
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.ops.alerts import (
    RULES,
    Alert,
    acknowledge,
    active_alerts,
    alert_history,
    evaluate,
    mark_in_app_shown,
    mute,
    mutes,
    outage_scan,
    pending_in_app,
    poisson_sf,
    rules_in_force,
    run_alerts,
    two_proportion_z,
    unmute,
)
from tests.conftest import ticket, write_csv

FMT = "%Y-%m-%d %H:%M:%S"


def _settings(**rules) -> Settings:
    """Defaults with some rule fields replaced: _settings(outage={"min_count": 1})."""
    s = load_settings()
    cfg = s.alerts
    for name, changes in rules.items():
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name),
                                                                     **changes)})
    return dataclasses.replace(s, alerts=cfg)


def _only(s: Settings, *enabled: str) -> Settings:
    """Only the named rule sections enabled, so a test sees its own rule's alerts."""
    cfg = s.alerts
    for name in ("outage", "sla", "watch", "csat"):
        rule = getattr(cfg, name)
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(
            rule, enabled=name in enabled)})
    return dataclasses.replace(s, alerts=cfg)


def _build(tmp_path, tickets: list[dict], **tables) -> Warehouse:
    folder = tmp_path / "src"
    write_csv(folder, "tickets", tickets)
    for name, rows in tables.items():
        write_csv(folder, name, rows)
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)
    return Warehouse(db)


class Recorder:
    """A notifier that records what it was given."""

    def __init__(self) -> None:
        self.calls: list[list[Alert]] = []

    def __call__(self, wh, alerts, settings):
        self.calls.append(list(alerts))
        return ()


# --- the statistics on textbook values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "mu", "expected"),
    [
        (0, 3.0, 1.0),
        (1, 2.0, 1 - math.exp(-2)),
        (3, 2.0, 1 - 5 * math.exp(-2)),  # 1 - e^-2 (1 + 2 + 2)
        (5, 1.0, 0.003659846827343713),  # 1 - e^-1 (1 + 1 + 1/2 + 1/6 + 1/24)
        (60, 5.0, 7.649610081149458e-43),  # far tail: no 1 - cdf cancellation
        (130, 100.0, 0.0022820930543169544),
        (51, 100.0, 0.9999999759840776),
        (4, 0.0, 0.0),
    ],
)
def test_poisson_tail(k, mu, expected):
    assert poisson_sf(k, mu) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_two_proportion_z_textbook():
    # 80/100 against 90/100: pooled p = 0.85, se = sqrt(0.85 * 0.15 * (2/100)) = 0.050498
    z, p = two_proportion_z(80, 100, 90, 100)
    assert z == pytest.approx(-0.10 / math.sqrt(0.85 * 0.15 * 0.02), rel=1e-12)
    assert z == pytest.approx(-1.98030, abs=1e-5)
    assert p == pytest.approx(0.023835, abs=1e-6)  # Phi(-1.9803)
    z_up, p_up = two_proportion_z(90, 100, 80, 100)
    assert z_up == pytest.approx(-z) and p_up == pytest.approx(1 - p)


# --- outage ------------------------------------------------------------------------------------

NOW = datetime(2024, 3, 1, 12, 0)
LOCATIONS = ("Austin", "Boston", "Denver")
DOMAINS = ("internet", "billing", "tv")


@pytest.fixture(scope="module")
def history_db(tmp_path_factory):
    """Five weeks of steady Poisson arrivals (3 per hour per location), seeded."""
    rng = np.random.default_rng(7)
    tmp = tmp_path_factory.mktemp("outage")
    start = NOW - timedelta(weeks=5)
    rows = []
    for hour in range(5 * 7 * 24):
        base = start + timedelta(hours=hour)
        for loc in LOCATIONS:
            for _ in range(rng.poisson(3.0)):
                at = base + timedelta(seconds=int(rng.integers(1, 3600)))
                rows.append(ticket(f"H{len(rows):06d}", at.strftime(FMT), "closed",
                                   location=loc, domain=str(rng.choice(DOMAINS)),
                                   first_response_at=(at + timedelta(minutes=5)).strftime(FMT),
                                   resolved_at=(at + timedelta(minutes=30)).strftime(FMT)))
    write_csv(tmp / "history", "tickets", rows)
    ingest(tmp / "history", db=tmp / "calm.duckdb")
    shutil.copy(tmp / "calm.duckdb", tmp / "burst.duckdb")
    burst = [
        ticket(f"B{i:03d}", (NOW - timedelta(minutes=50) + timedelta(minutes=i)).strftime(FMT),
               "open", location="Austin", domain="internet", priority="low",
               first_response_at=(NOW - timedelta(minutes=5)).strftime(FMT))
        for i in range(30)
    ]
    write_csv(tmp / "burst", "tickets", burst)
    ingest(tmp / "burst", db=tmp / "burst.duckdb")
    return tmp


def test_outage_fires_on_a_burst_in_one_location(history_db, tmp_path):
    shutil.copy(history_db / "burst.duckdb", tmp_path / "wh.duckdb")
    wh = Warehouse(tmp_path / "wh.duckdb")
    s = _only(load_settings(), "outage")
    found = {a.id: a for a in evaluate(wh, s, now=NOW)}
    assert set(found) == {"outage:location=Austin", "outage:domain=internet"}
    austin = found["outage:location=Austin"]
    assert austin.rule == "outage" and austin.severity == "critical"
    assert austin.figures["observed"] >= 30
    assert austin.figures["weeks"] == 4  # week 5 starts before the data's first ticket
    assert austin.figures["groups_tested"] == 6
    assert "Poisson exact test" in austin.message and "Bonferroni" in austin.message
    assert austin.link == "/trends?range=last-7-days&location=Austin"
    scan = outage_scan(wh, s, NOW)
    assert (scan["threshold"] == 0.001 / len(scan)).all()
    # the stated test: P(X >= observed) under Poisson((history + 0.5) / weeks)
    assert (scan["expected"] == (scan["history"] + 0.5) / 4).all()
    for row in scan.itertuples():
        assert row.p_value == pytest.approx(poisson_sf(row.observed, row.expected), rel=1e-12)
    row = scan.set_index("value").loc["Austin"]
    assert austin.figures["observed"] == row["observed"]
    assert austin.figures["p_value"] == pytest.approx(row["p_value"])
    boston = scan[scan["value"] == "Boston"].iloc[0]
    assert not boston["flagged"] and boston["p_value"] > 0.001 / len(scan)
    # once the burst is over, the stored alert resolves
    run = run_alerts(wh, s, now=NOW, notifier=None)
    assert {a.id for a in run.raised} == set(found)
    later = run_alerts(wh, s, now=NOW + timedelta(hours=2), notifier=None)
    assert later.raised == () and set(later.resolved) == {f"{k}#1" for k in found}
    assert active_alerts(wh).empty


def test_outage_stays_silent_on_steady_poisson_history(history_db):
    wh = Warehouse(history_db / "calm.duckdb", read_only=True)
    # only the test decides: no minimum count, no minimum ratio
    s = _only(_settings(outage={"min_count": 1, "min_ratio": 1.0}), "outage")
    smallest = 1.0
    for hours in range(0, 72, 3):
        now = NOW - timedelta(hours=hours)
        scan = outage_scan(wh, s, now)
        assert len(scan) == 6 and not scan["flagged"].any(), now
        smallest = min(smallest, float((scan["p_value"] * len(scan)).min()))
        assert evaluate(wh, s, now=now) == []
    assert smallest > 0.001  # no Bonferroni-adjusted p-value near the threshold either


def test_outage_needs_enough_history(history_db):
    wh = Warehouse(history_db / "calm.duckdb", read_only=True)
    s = _only(_settings(outage={"min_history_weeks": 5}), "outage")
    assert outage_scan(wh, s, NOW).empty
    assert evaluate(wh, s, now=NOW) == []


# --- SLA ---------------------------------------------------------------------------------------

T0 = datetime(2024, 1, 10, 12, 0)


def _at(minutes_before: float) -> str:
    return (T0 - timedelta(minutes=minutes_before)).strftime(FMT)


def _sla_tickets(answer_all: bool = False) -> list[dict]:
    reply = {"first_response_at": _at(1)} if answer_all else {}
    return [
        ticket("U1", _at(30), "open", priority="urgent", **reply),  # 30 >= 15: breached
        ticket("H1", _at(50), "in_progress", priority="high", **reply),  # 50 >= 48: at risk
        ticket("H2", _at(20), "open", priority="high", **reply),  # 20 < 48: fine
        ticket("M1", _at(120), "open", priority="normal", customer_segment="M",
               **reply),  # segment M, 60-min target: breached
        ticket("N1", _at(360), "open", priority="normal"),  # out of scope: normal, not M
        ticket("A1", _at(120), "open", priority="urgent", first_response_at=_at(100)),
        ticket("C1", _at(300), "closed", priority="urgent", resolved_at=_at(200)),
        ticket("X1", _at(300), "open", priority="urgent", is_test=True),
    ]


def test_sla_breached_and_at_risk(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    found = {a.rule: a for a in evaluate(wh, _only(load_settings(), "sla"), now=T0)}
    assert set(found) == {"sla_breached", "sla_at_risk"}
    breached, at_risk = found["sla_breached"], found["sla_at_risk"]
    assert breached.id == "sla_breached:all" and breached.severity == "critical"
    assert breached.figures["count"] == 2
    assert breached.figures["ticket_ids"] == ("M1", "U1")  # oldest first
    assert breached.figures["oldest_ticket_id"] == "M1"
    assert breached.figures["oldest_waited_min"] == 120
    assert breached.figures["oldest_target_min"] == 60
    assert breached.message.startswith("2 high/urgent-priority or segment M tickets")
    assert "the oldest, M1 (normal, segment M), has waited 2.0 h against a 60-min target" in (
        breached.message)
    assert breached.link == "/trends?range=last-7-days"  # mixed priorities and segments
    assert dict(breached.figures["by_priority"]) == {"normal": 1, "urgent": 1}
    assert at_risk.severity == "warning" and at_risk.figures["ticket_ids"] == ("H1",)
    assert at_risk.link == "/trends?range=last-7-days&priority=high"


def test_sla_silent_when_answered(tmp_path):
    wh = _build(tmp_path, _sla_tickets(answer_all=True))
    assert evaluate(wh, _only(load_settings(), "sla"), now=T0) == []


def test_sla_scope_comes_from_settings(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    s = _only(_settings(sla={"priorities": ("urgent",), "segments": ()}), "sla")
    found = {a.rule: a for a in evaluate(wh, s, now=T0)}
    assert set(found) == {"sla_breached"}
    assert found["sla_breached"].figures["ticket_ids"] == ("U1",)


# --- cooldown, acknowledgement, muting ----------------------------------------------------------


def test_cooldown_suppresses_a_duplicate_then_raises_again(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    s = _only(load_settings(), "sla")  # cooldown 60 min
    notified = Recorder()
    first = run_alerts(wh, s, now=T0, notifier=notified)
    assert sorted(a.occurrence_id for a in first.raised) == ["sla_at_risk:all#1",
                                                            "sla_breached:all#1"]
    again = run_alerts(wh, s, now=T0 + timedelta(minutes=5), notifier=notified)
    assert again.raised == () and len(again.suppressed) == 2
    assert len(notified.calls) == 1  # the repeat is not notified
    hist = alert_history(wh).set_index("occurrence_id")
    assert hist.loc["sla_breached:all#1", "seen_count"] == 2
    assert hist.loc["sla_breached:all#1", "last_seen_at"] == T0 + timedelta(minutes=5)
    after = run_alerts(wh, s, now=T0 + timedelta(minutes=61), notifier=notified)
    assert "sla_breached:all#2" in {a.occurrence_id for a in after.raised}
    assert len(notified.calls) == 2
    assert len(alert_history(wh)) == 3  # at 13:01 nothing is merely at risk any more


def test_acknowledge(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    run_alerts(wh, _only(load_settings(), "sla"), now=T0, notifier=None)
    assert set(active_alerts(wh)["alert_id"]) == {"sla_breached:all", "sla_at_risk:all"}
    when = datetime(2024, 1, 10, 12, 5)
    assert acknowledge(wh, "sla_breached:all", "lead@example.com", at=when) == 1
    assert acknowledge(wh, "sla_breached:all", "lead@example.com") == 0  # already done
    assert set(active_alerts(wh)["alert_id"]) == {"sla_at_risk:all"}
    row = alert_history(wh).set_index("alert_id").loc["sla_breached:all"]
    assert row["acknowledged_by"] == "lead@example.com" and row["acknowledged_at"] == when
    with pytest.raises(CsMetricsError, match="no alert 'nope:1'"):
        acknowledge(wh, "nope:1", "lead")
    with pytest.raises(CsMetricsError, match="who acknowledges"):
        acknowledge(wh, "sla_at_risk:all", " ")


def test_mute_a_rule_until_a_time(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    s = _only(load_settings(), "sla")
    notified = Recorder()
    run_alerts(wh, s, now=T0, notifier=notified)
    until = mute(wh, "sla_breached", timedelta(hours=2), "lead", reason="known backlog")
    assert until == T0 + timedelta(hours=2)  # on the data's clock: the last run
    assert list(mutes(wh)["target"]) == ["sla_breached"]
    assert set(active_alerts(wh)["alert_id"]) == {"sla_at_risk:all"}
    # after the cooldown the breach is stored again, but muted: not notified
    run = run_alerts(wh, s, now=T0 + timedelta(minutes=90), notifier=notified)
    assert [a.occurrence_id for a in run.muted] == ["sla_breached:all#2"] and run.raised == ()
    assert len(notified.calls) == 1
    assert alert_history(wh).set_index("occurrence_id").loc["sla_breached:all#2", "muted"]
    # once the mute is over it is raised and notified again
    run = run_alerts(wh, s, now=T0 + timedelta(hours=3), notifier=notified)
    assert [a.occurrence_id for a in run.raised] == ["sla_breached:all#3"]
    assert [a.id for a in notified.calls[-1]] == ["sla_breached:all"]
    assert set(active_alerts(wh)["alert_id"]) == {"sla_breached:all"}


def test_mute_one_alert_id_and_unmute(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    s = _only(load_settings(), "sla")
    run_alerts(wh, s, now=T0, notifier=None)
    mute(wh, "sla_at_risk:all", T0 + timedelta(days=1), "lead")
    assert set(active_alerts(wh)["alert_id"]) == {"sla_breached:all"}
    assert unmute(wh, "sla_at_risk:all") == 1
    assert set(active_alerts(wh)["alert_id"]) == {"sla_breached:all", "sla_at_risk:all"}
    with pytest.raises(CsMetricsError, match="name a rule"):
        mute(wh, "sla", timedelta(hours=1), "lead")
    with pytest.raises(CsMetricsError, match="already at 2024-01-10 12:00"):
        mute(wh, "sla_at_risk", T0 - timedelta(hours=1), "lead")


def test_storing_needs_a_writable_warehouse(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    wh.close()
    ro = Warehouse(wh.path, read_only=True)
    assert len(evaluate(ro, _only(load_settings(), "sla"), now=T0)) == 2  # reading is fine
    with pytest.raises(CsMetricsError, match="read-only"):
        run_alerts(ro, load_settings(), now=T0)
    assert active_alerts(ro).empty and alert_history(ro).empty


def test_in_app_notifications_are_pending_until_shown(tmp_path):
    wh = _build(tmp_path, _sla_tickets())
    run = run_alerts(wh, _only(load_settings(), "sla"), now=T0)  # default channels: in_app
    assert {d.status for d in run.deliveries} == {"pending"}
    pending = pending_in_app(wh)
    assert set(pending["occurrence_id"]) == {"sla_breached:all#1", "sla_at_risk:all#1"}
    assert mark_in_app_shown(wh, ["sla_breached:all#1"]) == 1
    assert list(pending_in_app(wh)["occurrence_id"]) == ["sla_at_risk:all#1"]
    assert alert_history(wh).set_index("occurrence_id").loc[
        "sla_breached:all#1", "deliveries"] == "in_app: shown"


# --- watched tickets ---------------------------------------------------------------------------


def _watch_warehouse(tmp_path) -> Warehouse:
    tickets = [
        ticket("R1", _at(240), "open", priority="urgent", domain="internet", location="Austin",
               first_response_at=_at(230)),
        ticket("R2", _at(240), "open", priority="normal", first_response_at=_at(230)),
        ticket("R3", _at(600), "open", priority="urgent", first_response_at=_at(590)),
        # reopened long ago, only moved to in progress in the window: not a new reopening
        ticket("R4", _at(600), "in_progress", priority="urgent", first_response_at=_at(590)),
        ticket("V1", _at(240), "closed", priority="normal", customer_segment="M",
               resolved_at=_at(15)),
        ticket("V2", _at(240), "closed", priority="normal", customer_segment="M",
               first_response_at=_at(200), resolved_at=_at(15)),
        ticket("V3", _at(240), "closed", priority="normal", customer_segment="S",
               resolved_at=_at(15)),
    ]
    events = []
    for tid, reopened in (("R1", 30), ("R2", 30), ("R3", 300), ("R4", 300)):
        events += [
            {"ticket_id": tid, "event_at": _at(reopened + 100), "status": "open"},
            {"ticket_id": tid, "event_at": _at(reopened + 60), "status": "closed"},
            {"ticket_id": tid, "event_at": _at(reopened), "status": "open"},
        ]
    events.append({"ticket_id": "R4", "event_at": _at(10), "status": "in_progress"})
    for tid in ("V1", "V2", "V3"):
        events += [{"ticket_id": tid, "event_at": _at(240), "status": "open"},
                   {"ticket_id": tid, "event_at": _at(15), "status": "closed"}]
    return _build(tmp_path, tickets, ticket_events=events)


def test_watched_ticket_changes(tmp_path):
    wh = _watch_warehouse(tmp_path)
    s = _only(load_settings(), "watch")
    found = {a.id: a for a in evaluate(wh, s, now=T0, since=T0 - timedelta(minutes=60))}
    assert set(found) == {"ticket_reopened:R1", "vip_closed_unanswered:V1"}
    reopened = found["ticket_reopened:R1"]
    assert reopened.figures["reopened_at"] == T0 - timedelta(minutes=30)
    assert "Urgent ticket R1 (internet, Austin) was reopened at 2024-01-10 11:30" in (
        reopened.message)
    assert reopened.link == "/trends?range=last-7-days&priority=urgent"
    assert found["vip_closed_unanswered:V1"].message == (
        "Segment M ticket V1 (normal priority) was closed at 2024-01-10 11:45 without any "
        "first response.")
    # only changes since the given moment count
    later = {a.id for a in evaluate(wh, s, now=T0, since=T0 - timedelta(minutes=20))}
    assert later == {"vip_closed_unanswered:V1"}


def test_watch_window_starts_at_the_last_run(tmp_path):
    wh = _watch_warehouse(tmp_path)
    s = _only(_settings(watch={"cooldown_min": 0}), "watch")
    first = run_alerts(wh, s, now=T0 - timedelta(minutes=20), notifier=None)  # looks back 60'
    assert {a.id for a in first.raised} == {"ticket_reopened:R1"}
    second = run_alerts(wh, s, now=T0, notifier=None)  # since the first run only
    assert {a.id for a in second.raised} == {"vip_closed_unanswered:V1"}
    # event alerts stay active for active_h hours, then expire
    assert set(active_alerts(wh)["alert_id"]) == {"ticket_reopened:R1",
                                                  "vip_closed_unanswered:V1"}
    expired = run_alerts(wh, s, now=T0 + timedelta(hours=25), notifier=None)
    assert len(expired.resolved) == 2 and active_alerts(wh).empty


# --- CSAT --------------------------------------------------------------------------------------


def _csat_warehouse(tmp_path, recent_good: int) -> Warehouse:
    """200 baseline responses (180 good) 8-34 days back, 100 recent ones with recent_good."""
    tickets, feedback = [], []
    plan = [(8 + (i % 26), i < 180) for i in range(200)]
    plan += [(1 + (i % 6), i < recent_good) for i in range(100)]
    for i, (days, good) in enumerate(plan):
        at = T0 - timedelta(days=days, hours=1)
        tickets.append(ticket(f"F{i:03d}", at.strftime(FMT), "closed", priority="normal",
                              first_response_at=(at + timedelta(minutes=5)).strftime(FMT),
                              resolved_at=(at + timedelta(minutes=30)).strftime(FMT)))
        feedback.append({"feedback_id": f"FB{i:03d}", "ticket_id": f"F{i:03d}",
                         "submitted_at": (at + timedelta(minutes=40)).strftime(FMT),
                         "csat": 5 if good else 2})
    return _build(tmp_path, tickets, feedback=feedback)


def test_csat_drop_fires(tmp_path):
    wh = _csat_warehouse(tmp_path, recent_good=70)
    [alert] = evaluate(wh, _only(load_settings(), "csat"), now=T0)
    z, p = two_proportion_z(70, 100, 180, 200)
    assert alert.id == "csat_drop:all" and alert.severity == "warning"
    assert dict(alert.figures).items() >= {"recent_pct": 70.0, "baseline_pct": 90.0,
                                           "drop_points": 20.0, "recent_n": 100,
                                           "baseline_n": 200}.items()
    assert alert.figures["z"] == pytest.approx(z, abs=1e-4) and z < -4
    assert alert.figures["p_value"] == pytest.approx(p)
    assert "two-proportion z-test" in alert.message and "70.0 %" in alert.message
    assert alert.link == "/feedback?range=custom&from=2023-12-06&to=2024-01-10"


def test_csat_steady_or_small_drop_is_silent(tmp_path):
    wh = _csat_warehouse(tmp_path, recent_good=88)
    s = _only(load_settings(), "csat")
    assert evaluate(wh, s, now=T0) == []  # 2 points lower, not significant
    # significant but smaller than the required drop
    strict = _only(_settings(csat={"p_value": 0.5, "min_drop_points": 5.0}), "csat")
    assert evaluate(wh, strict, now=T0) == []
    loose = _only(_settings(csat={"p_value": 0.5, "min_drop_points": 1.0}), "csat")
    assert [a.id for a in evaluate(wh, loose, now=T0)] == ["csat_drop:all"]


# --- value objects and settings ----------------------------------------------------------------


def test_alert_is_frozen_and_hashable():
    alert = Alert("csat_drop:all", "csat_drop", "warning", "t", "m", {"ids": ["a"]}, "/x", T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.severity = "info"  # type: ignore[misc]
    with pytest.raises(TypeError):
        alert.figures["ids"] = 1  # type: ignore[index]
    assert alert.figures["ids"] == ("a",)
    assert hash(alert) == hash(dataclasses.replace(alert))
    with pytest.raises(CsMetricsError, match="Unknown severity"):
        Alert("x:1", "csat_drop", "loud", "t", "m", {}, "/x", T0)


def test_rules_in_force_follow_settings(tmp_path):
    custom = tmp_path / "settings.toml"
    custom.write_text("[alerts.csat]\nenabled = false\n[alerts.outage]\np_value = 0.0001\n")
    table = rules_in_force(load_settings(custom))
    assert list(table["rule"]) == list(RULES)
    by_rule = table.set_index("rule")
    assert not by_rule.loc["csat_drop", "enabled"] and by_rule.loc["outage", "enabled"]
    assert "p < 0.0001" in by_rule.loc["outage", "condition"]
    assert isinstance(table, pd.DataFrame) and isinstance(hash(load_settings(custom)), int)


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[alerts.outage]\np_value = 2\n", r"alerts\.outage\.p_value .* must be a probability"),
        ("[alerts.outage]\ndimensions = ['planet']\n", r"alerts\.outage\.dimensions"),
        ("[alerts.outage]\nmin_history_weeks = 9\n", r"alerts\.outage\.min_history_weeks"),
        ("[alerts.sla]\npriorities = ['asap']\n", r"alerts\.sla\.priorities .*'asap'"),
        ("[alerts.sla]\nat_risk_share = 1.5\n", r"alerts\.sla\.at_risk_share"),
        ("[alerts.watch]\nseverity = 'loud'\n", r"alerts\.watch\.severity .* 'critical'"),
        ("[alerts.csat]\nrecent = 3\n", r"\[alerts\.csat\] .* unknown keys \['recent'\]"),
        ("[alerts.csat]\nenabled = 'yes'\n", r"alerts\.csat\.enabled .* true or false"),
        ("[alerts]\nsla = 3\n", r"\[alerts\.sla\] .* must be a table"),
    ],
)
def test_bad_alert_settings_name_the_key(tmp_path, toml, match):
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    with pytest.raises(CsMetricsError, match=match) as info:
        load_settings(bad)
    assert str(bad) in str(info.value)

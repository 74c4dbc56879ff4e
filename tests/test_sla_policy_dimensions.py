"""SLA policies chosen per channel and per team too (``channels = [...]``, ``teams = [...]``):
targets, policy names, calendars, business durations, deadlines and verdicts against a pandas
computation that walks the policies of the settings file on its own, small loads equal to a
rebuild, and the values a policy may list."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from cs_metrics.core._derive import _derived_sql
from cs_metrics.core._derive_sla import _sla_dimensions, _sla_targets
from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from tests.conftest import ticket, write_csv
from tests.test_business_hours import day_by_day, local
from tests.test_sla_business_hours import deadline_walk

SETTINGS = """
[business_hours.chat_desk]
timezone = "America/New_York"
holidays = ["2025-11-27"]
[business_hours.chat_desk.hours]
mon = "08:00-20:00"
tue = "08:00-20:00"
wed = "08:00-20:00"
thu = "08:00-20:00"
fri = "08:00-20:00"
sat = "10:00-14:00"

[[sla.policies]]
name = "Urgent"
priorities = ["urgent"]
first_response_min = 15
resolution_h = 4

[[sla.policies]]
name = "Chat"
channels = ["chat"]
business_hours = "chat_desk"
first_response_min = { high = 30, normal = 60 }  # low passes on to the next rule
resolution_h = 8

[[sla.policies]]
name = "Team X"
teams = ["Team X"]
first_response_min = 90
resolution_h = { high = 12, normal = 24, low = 48 }

[[sla.policies]]
name = "Standard"
first_response_min = 240
resolution_h = 72
"""

REPS = [
    {"rep_id": "RX1", "name": "Ann", "team": "Team X"},
    {"rep_id": "RX2", "name": "Bob", "team": "Team X"},
    {"rep_id": "RY1", "name": "Cat", "team": "Team Y"},
    {"rep_id": "RN", "name": "Dan", "team": None},  # a representative without a team
]
# RZZ is on tickets but not in the representatives table: no team
REP_IDS = ["RX1", "RX2", "RY1", "RN", "RZZ", None]
CHANNELS = ["chat", "email", "phone", "social", None]

AS_OF = pd.Timestamp("2025-12-15 16:00:00")  # Monday 11:00 in New York

COLUMNS = ("ticket_id, status, priority, channel, team, customer_segment, created_at, "
           "first_response_at, resolved_at, sla_policy, first_response_business_min, "
           "resolution_business_h, sla_first_response_deadline, sla_resolution_deadline, "
           "sla_first_response_met, sla_resolution_met, sla_first_response_target_min, "
           "sla_resolution_target_h")


def _random_tickets(n: int, seed: int, prefix: str = "T") -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        recent = rng.random() < 0.25  # still waiting, mostly
        created = AS_OF - pd.Timedelta(hours=1 if recent else 24) - pd.Timedelta(
            seconds=int(rng.integers(0, (3 if recent else 120) * 86400)))
        first = created + pd.Timedelta(seconds=int(rng.choice([900, 3600, 4 * 3600, 86400])
                                                   * rng.random()))
        resolved = first + pd.Timedelta(seconds=int(rng.integers(0, 4 * 86400)))
        status = str(rng.choice(["closed", "open", "in_progress"]))
        answered = first < AS_OF - pd.Timedelta(hours=1) and rng.random() < 0.75
        if status == "closed" and not (answered and resolved < AS_OF - pd.Timedelta(hours=1)):
            status = "open"
        rows.append(ticket(
            f"{prefix}{i:04d}", str(created), status,
            priority=str(rng.choice(["low", "normal", "high", "urgent"])),
            channel=CHANNELS[int(rng.integers(0, len(CHANNELS)))],
            rep_id=REP_IDS[int(rng.integers(0, len(REP_IDS)))],
            customer_segment=str(rng.choice(["M", "L"])),
            first_response_at=str(first) if answered else None,
            resolved_at=str(resolved) if status == "closed" else None))
    return rows


FIXED = [
    # chat, normal (60 min on the chat desk): Saturday 13:30 -> 30 min Saturday, Monday
    # 08:00-08:30; answered Monday 08:20 (50 open minutes): met, though 43 h passed
    ticket("CHAT", local("2025-12-06 13:30"), "closed", priority="normal", channel="chat",
           rep_id="RY1", first_response_at=local("2025-12-08 08:20"),
           resolved_at=local("2025-12-08 12:00")),
    # chat, low: the Chat rule has no low first response, so Team X gives it (90 min of
    # elapsed time), while the resolution (8 h) stays on the chat desk
    ticket("CHATLOW", local("2025-12-09 10:00"), "closed", priority="low", channel="chat",
           rep_id="RX1", first_response_at=local("2025-12-09 11:00"),
           resolved_at=local("2025-12-09 19:00")),
    # Team X by email: 90 elapsed minutes; answered after 100: late
    ticket("TEAMX", local("2025-12-10 10:00"), "closed", priority="normal", channel="email",
           rep_id="RX2", first_response_at=local("2025-12-10 11:40"),
           resolved_at=local("2025-12-10 12:00")),
    # no channel, no team: Standard
    ticket("BARE", local("2025-12-10 10:00"), "closed", priority="normal",
           first_response_at=local("2025-12-10 13:00"), resolved_at=local("2025-12-10 14:00")),
    # waiting inside their targets: no verdict yet
    ticket("PENDCHAT", local("2025-12-13 13:50"), "open", priority="normal", channel="chat",
           rep_id="RY1"),  # 10 open minutes on Saturday, 08:00-11:00 Monday: 190 of 60
    ticket("PENDCHAT2", local("2025-12-15 10:30"), "open", priority="normal", channel="chat",
           rep_id="RY1"),  # 30 of 60 open minutes
    ticket("PENDX", "2025-12-15 15:00:00", "open", priority="normal", channel="phone",
           rep_id="RX1"),  # 60 of 90 elapsed minutes
    # sets "now"
    ticket("LAST", "2025-12-15 15:00:00", "closed", priority="urgent", channel="chat",
           rep_id="RX1", first_response_at="2025-12-15 15:10:00", resolved_at=str(AS_OF)),
]


def _walk(raw: dict, priority: str, segment: str, channel, team) -> dict:
    """The first matching rule with a target, per target, read from the settings text."""
    found: dict = {}
    for i, pol in enumerate(raw["sla"]["policies"]):
        if any(key in pol and value not in pol[key] for key, value in (
                ("priorities", priority), ("segments", segment), ("channels", channel),
                ("teams", team))):
            continue
        for key, name in (("fr", "first_response_min"), ("res", "resolution_h")):
            target = pol.get(name)
            if isinstance(target, dict):
                target = target.get(priority)
            if key not in found and target is not None:
                found[key] = (float(target), pol["name"], pol.get("business_hours"), i)
    return found


def oracle(got: pd.DataFrame, settings, as_of: pd.Timestamp) -> pd.DataFrame:
    raw = tomllib.loads(SETTINGS)
    teams = {r["rep_id"]: r["team"] for r in REPS}
    out = []
    for r in got.itertuples():
        channel = None if pd.isna(r.channel) else r.channel
        team = None if pd.isna(r.rep_id) else teams.get(r.rep_id)
        found = _walk(raw, r.priority, r.customer_segment, channel, team)
        # the rules giving the targets, in the settings' order
        names = [name for _, name, _, _ in sorted(found.values(), key=lambda f: f[3])]
        names = list(dict.fromkeys(names))
        row = {"ticket_id": r.ticket_id, "team": team,
               "policy": " / ".join(names) if names else None}
        for key, scale, end, waiting in (
                ("fr", 60, r.first_response_at, pd.isna(r.first_response_at)),
                ("res", 3600, r.resolved_at if r.status == "closed" else pd.NaT,
                 r.status != "closed")):
            target, _, cal_name, _ = found.get(key, (None, None, None, None))
            cal = settings.calendar(cal_name or "default")
            row[f"{key}_business"] = day_by_day(r.created_at, end, cal) / scale
            row[f"{key}_target"] = np.nan if target is None else target
            if target is None:
                row[f"{key}_deadline"], row[f"{key}_met"] = pd.NaT, None
                continue
            if cal_name is None:
                row[f"{key}_deadline"] = r.created_at + pd.Timedelta(seconds=target * scale)
                spent = ((as_of if waiting else end) - r.created_at).total_seconds()
            else:
                row[f"{key}_deadline"] = deadline_walk(r.created_at, target * scale, cal)
                spent = day_by_day(r.created_at, as_of if waiting else end, cal)
            row[f"{key}_met"] = (spent <= target * scale) if not waiting else (
                False if spent > target * scale else None)
        out.append(row)
    return pd.DataFrame(out).set_index("ticket_id")


def _rows(wh: Warehouse) -> pd.DataFrame:
    return wh.df(f"select {COLUMNS}, rep_id from tickets order by ticket_id")


def _values(column: pd.Series) -> list:
    return column.astype(object).where(column.notna(), None).tolist()


def _assert_like_oracle(got: pd.DataFrame, settings, as_of: pd.Timestamp) -> pd.DataFrame:
    want = oracle(got, settings, as_of)
    row = got.set_index("ticket_id")
    for mine, theirs in (("team", "team"), ("sla_policy", "policy")):
        assert _values(row[mine]) == _values(want[theirs]), mine
    np.testing.assert_array_equal(row["sla_first_response_target_min"].astype(float),
                                  want["fr_target"].astype(float))
    np.testing.assert_array_equal(row["sla_resolution_target_h"].astype(float),
                                  want["res_target"].astype(float))
    for key, column in (("fr", "first_response"), ("res", "resolution")):
        met = row[f"sla_{column}_met"].astype(object).where(row[f"sla_{column}_met"].notna(),
                                                            None)
        assert met.tolist() == want[f"{key}_met"].tolist(), column
        np.testing.assert_array_equal(row[f"sla_{column}_deadline"].to_numpy(),
                                      want[f"{key}_deadline"].to_numpy())
    np.testing.assert_allclose(row["first_response_business_min"].astype(float),
                               want["fr_business"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(row["resolution_business_h"].astype(float),
                               want["res_business"], rtol=0, atol=1e-8)
    return want


@pytest.fixture(scope="module")
def dims(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sla_dims")
    write_csv(folder / "src", "tickets", FIXED + _random_tickets(400, seed=22))
    write_csv(folder / "src", "representatives", REPS)
    custom = folder / "settings.toml"
    custom.write_text(SETTINGS)
    settings = load_settings(custom)
    ingest(folder / "src", db=folder / "wh.duckdb", settings=settings)
    wh = Warehouse(folder / "wh.duckdb", read_only=True)
    yield wh, settings, _rows(wh)
    wh.close()


def test_fixed_cases_by_hand(dims):
    wh, _, got = dims
    assert wh.as_of() == AS_OF
    row = got.set_index("ticket_id")
    assert row.loc["CHAT", "sla_policy"] == "Chat"
    assert row.loc["CHAT", "first_response_business_min"] == pytest.approx(50)
    assert row.loc["CHAT", "sla_first_response_met"] == True  # noqa: E712 (not null)
    assert row.loc["CHAT", "sla_first_response_deadline"] == pd.Timestamp(
        local("2025-12-08 08:30"))
    # the two targets from two rules, each duration on its own rule's calendar
    assert row.loc["CHATLOW", "sla_policy"] == "Chat / Team X"
    assert row.loc["CHATLOW", "sla_first_response_target_min"] == 90
    assert row.loc["CHATLOW", "sla_resolution_target_h"] == 8
    assert row.loc["CHATLOW", "sla_first_response_deadline"] == pd.Timestamp(
        local("2025-12-09 11:30"))
    assert row.loc["CHATLOW", "resolution_business_h"] == pytest.approx(9)
    assert row.loc["CHATLOW", "sla_resolution_met"] == False  # noqa: E712
    assert row.loc["TEAMX", "sla_policy"] == "Team X"
    assert row.loc["TEAMX", "sla_first_response_met"] == False  # noqa: E712
    assert row.loc["TEAMX", "sla_resolution_target_h"] == 24
    assert row.loc["BARE", "sla_policy"] == "Standard"
    assert row.loc["BARE", "sla_first_response_met"] == True  # noqa: E712
    assert row.loc["LAST", "sla_policy"] == "Urgent"


def test_every_kind_of_ticket_matches_a_pandas_walk(dims):
    _, settings, got = dims
    want = _assert_like_oracle(got, settings, AS_OF)
    # each kind of ticket happened, with met, breached and pending verdicts
    assert {"Urgent", "Chat", "Team X", "Standard", "Chat / Team X"} <= set(want["policy"])
    for name in ("Chat", "Team X", "Standard"):
        mine = want[want["policy"] == name]
        assert (mine["fr_met"] == True).any() and (mine["fr_met"] == False).any(), name  # noqa: E712
    assert want["fr_met"].isna().sum() >= 3
    assert want.loc[["PENDCHAT2", "PENDX"], "fr_met"].isna().all()
    assert want.loc["PENDCHAT", "fr_met"] is False
    # a representative with no team, or missing from the table, is no team's
    rep = got.set_index("ticket_id")["rep_id"]
    assert want.loc[rep.isin(["RN", "RZZ"]), "team"].isna().all()


def test_settings_answer_by_channel_and_team_and_stay_compatible(dims):
    _, settings, _ = dims
    assert settings.sla_targets("normal", "M") == (240, 72, "Standard")
    assert settings.sla_targets("normal", "M", channel="chat") == (60, 8, "Chat")
    assert settings.sla_targets("low", "M", channel="chat", team="Team X") == \
        (90, 8, "Chat / Team X")
    assert settings.sla_targets("high", "L", team="Team X") == (90, 12, "Team X")
    assert settings.sla_calendars("low", "M", channel="chat", team="Team X") == \
        (None, "chat_desk")
    assert settings.sla_targets("normal", "M", channel="Chat") == (240, 72, "Standard")


def test_the_common_case_keeps_priority_by_segment(tmp_path):
    import duckdb

    defaults = load_settings(tmp_path / "none.toml" if (tmp_path / "none.toml").write_text(
        "") == 0 else None)
    assert _sla_dimensions(defaults) == {}
    con = duckdb.connect()
    _sla_targets(con, defaults, set(), ["M", "S"])
    columns = [r[0] for r in con.execute("describe sla_targets").fetchall()]
    assert "channel" not in columns and "team" not in columns
    con.close()
    sql = _derived_sql(set(), "src")
    assert "sla_channel" not in sql and "sla_team" not in sql and " rt " not in sql
    custom = tmp_path / "settings.toml"
    custom.write_text(SETTINGS)
    settings = load_settings(custom)
    assert _sla_dimensions(settings) == {"channel": ["chat"], "team": ["Team X"]}
    con = duckdb.connect()
    _sla_targets(con, settings, set(), ["M"])
    # as small as the settings: listed names and '' (any other value, or none)
    assert con.execute("select count(*) from sla_targets").fetchall()[0][0] == 4 * 2 * 2 * 2
    con.close()


def test_small_loads_pick_policies_like_a_rebuild(tmp_path, monkeypatch):
    from tests.test_warehouse import _incremental_and_rebuild

    custom = tmp_path / "settings.toml"
    custom.write_text(SETTINGS)
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(custom))
    write_csv(tmp_path / "base", "tickets", FIXED + _random_tickets(300, seed=5))
    write_csv(tmp_path / "base", "representatives", REPS)
    later = AS_OF + pd.Timedelta(days=1)
    write_csv(tmp_path / "batch", "tickets", [
        ticket("NEWCHAT", local("2025-12-16 09:00"), "open", priority="high", channel="chat",
               rep_id="RY1"),
        ticket("NEWX", local("2025-12-16 09:30"), "open", priority="low", channel="email",
               rep_id="RX2"),
        ticket("NEWBARE", local("2025-12-16 09:30"), "open", priority="normal",
               channel="social", rep_id="RZZ"),
        # an answer that moves a ticket from the Chat rule to Team X's
        ticket("TEAMX", local("2025-12-10 10:00"), "closed", priority="normal", channel="chat",
               rep_id="RX2", first_response_at=local("2025-12-10 10:40"),
               resolved_at=local("2025-12-10 12:00")),
        ticket("LAST2", str(later - pd.Timedelta(minutes=5)), "closed", priority="urgent",
               first_response_at=str(later - pd.Timedelta(minutes=1)), resolved_at=str(later)),
    ])
    inc, _ = _incremental_and_rebuild(tmp_path / "base", [tmp_path / "batch"], tmp_path,
                                      monkeypatch)
    got = inc["tickets"][[c.strip() for c in COLUMNS.split(",")] + ["rep_id"]] \
        .sort_values("ticket_id").reset_index(drop=True)
    row = got.set_index("ticket_id")
    assert row.loc["NEWCHAT", "sla_policy"] == "Chat"
    assert row.loc["NEWX", "sla_policy"] == "Team X"
    assert row.loc["NEWBARE", "sla_policy"] == "Standard"
    assert row.loc["TEAMX", "sla_policy"] == "Chat"
    assert row.loc["TEAMX", "sla_first_response_met"] == True  # noqa: E712
    _assert_like_oracle(got, load_settings(custom), later)


@pytest.mark.parametrize("key, value", [
    ("channels", '"chat"'),
    ("channels", "[]"),
    ("channels", '["chat", 3]'),
    ("teams", '[""]'),
    ("teams", '["  "]'),
    ("teams", "true"),
])
def test_invalid_channels_and_teams_are_refused(tmp_path, key, value):
    custom = tmp_path / "settings.toml"
    custom.write_text(SETTINGS.replace('channels = ["chat"]', f"{key} = {value}"))
    with pytest.raises(CsMetricsError, match=rf"SLA policy 2 \(Chat\) in .*settings\.toml: "
                                             rf"{key} must be a list of one or more non-empty "):
        load_settings(custom)

from __future__ import annotations

import dataclasses

import pytest

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.settings import Settings, load_settings
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import ingest
from cs_metrics.metrics.registry import METRICS, metric_target, query
from tests.conftest import ticket, write_csv


def test_default_policies_match_the_contract():
    s = load_settings()
    assert s.sla_targets("normal", "M")[0] == 60  # first response under 1 hour for M and S
    assert s.sla_targets("low", "S")[0] == 60
    assert s.sla_targets("urgent", "Unknown")[:2] == (15, 4)
    assert s.sla_targets("normal", "Unknown")[:2] == (240, 72)
    assert metric_target(METRICS["csat_pct"], s) == 90
    assert metric_target(METRICS["fcr_pct"], s) == 95
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.source = "x"  # type: ignore[misc]


def test_user_settings_change_sla_verdicts_and_targets(tmp_path):
    folder = tmp_path / "src"
    write_csv(folder, "tickets", [
        ticket("A", "2024-01-01 10:00:00", "closed", first_response_at="2024-01-01 10:30:00",
               resolved_at="2024-01-01 11:00:00", priority="normal"),
        ticket("B", "2024-01-01 10:00:00", "closed", first_response_at="2024-01-01 12:00:00",
               resolved_at="2024-01-01 13:00:00", priority="normal"),
    ])
    custom = tmp_path / "settings.toml"
    custom.write_text(
        "[[sla.policies]]\nname = 'Strict'\nfirst_response_min = 20\nresolution_h = 2\n"
        "[targets]\ncsat_pct = 80\n"
    )
    db = tmp_path / "wh.duckdb"
    ingest(folder, db=db)  # defaults: normal/Unknown has 240 min -> both met
    wh = Warehouse(db)
    assert query(wh, ["sla_first_response_pct"]).iloc[0, 0] == 100
    wh.close()
    s = load_settings(custom)
    ingest(folder, db=db, settings=s)
    wh = Warehouse(db)
    got = query(wh, ["sla_first_response_pct", "sla_resolution_pct"]).iloc[0].tolist()
    assert got == [0.0, 50.0]
    assert metric_target(METRICS["csat_pct"], s) == 80
    assert wh.scalar("select distinct sla_policy from tickets") == "Strict"


def test_bad_settings_are_clear(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text("[[sla.policies]]\nname='x'\nfirst_response_min = {soon = 3}\n")
    with pytest.raises(CsMetricsError, match="unknown priorities"):
        load_settings(bad)
    bad.write_text("[targets]\ncsat_pct = 'high'\n")
    with pytest.raises(CsMetricsError, match="must be numbers"):
        load_settings(bad)


def test_settings_are_parsed_once_per_content_and_follow_edits(tmp_path, monkeypatch):
    custom = tmp_path / "settings.toml"
    custom.write_text("[targets]\ncsat_pct = 80\n")
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(custom))
    first = load_settings()
    assert first is load_settings()  # the hosted app asks on every run: parsed once
    assert first.target("csat_pct") == 80
    # rewritten at once with the same size: the new content applies, however coarse the
    # file system's modification times
    custom.write_text("[targets]\ncsat_pct = 85\n")
    assert load_settings().target("csat_pct") == 85
    custom.write_text("[targets\n")
    with pytest.raises(CsMetricsError, match="not valid TOML"):
        load_settings()
    custom.unlink()
    with pytest.raises(CsMetricsError, match="does not exist"):
        load_settings()



def test_identity_claim_defaults_to_verified_email(tmp_path):
    assert load_settings().access.identity_claim == "verified_email"
    custom = tmp_path / "settings.toml"
    custom.write_text('[access]\nidentity_claim = "email"\n')
    assert load_settings(custom).access.identity_claim == "email"


@pytest.mark.parametrize(("toml", "value"), [
    ('"preferred_username"', "preferred_username"),
    ('"sub"', "sub"),
    ('"Email"', "Email"),
    ("true", True),
    ('["email"]', ["email"]),
])
def test_a_bad_identity_claim_is_one_sentence_naming_the_file(tmp_path, toml, value):
    custom = tmp_path / "settings.toml"
    custom.write_text(f"[access]\nidentity_claim = {toml}\n")
    with pytest.raises(CsMetricsError) as err:
        load_settings(custom)
    message = str(err.value)
    assert message.startswith(f"Setting access.identity_claim in {custom} must be "
                              '"verified_email"')
    assert '"email"' in message and message.endswith(f"not {value!r}.")


def test_business_hours_default_calendar_and_whole_replacement(tmp_path):
    cal = load_settings().calendar()
    assert cal.timezone == "UTC" and cal.holidays == ()
    assert cal.hours == ((9 * 3600, 17 * 3600),) * 5 + (None, None)
    # a Settings built by hand gets the same calendar as the shipped defaults
    assert {f.name: f.default for f in dataclasses.fields(Settings)}["business_hours"] == \
        load_settings().business_hours
    custom = tmp_path / "settings.toml"
    custom.write_text('[business_hours.default]\ntimezone = "America/New_York"\n'
                      'hours = { mon = "08:00-12:30", sat = "10:00-24:00" }\n'
                      'holidays = ["2025-12-25", 2026-01-01]\n'
                      '[business_hours.emea]\ntimezone = "Europe/Paris"\n'
                      'hours = { tue = "00:00-24:00" }\n')
    s = load_settings(custom)
    cal = s.calendar()
    # the user's calendar replaces the default's: Tuesday to Friday are closed, not merged
    assert cal.hours == ((8 * 3600, 12 * 3600 + 1800), None, None, None, None,
                         (10 * 3600, 86400), None)
    assert [str(d) for d in cal.holidays] == ["2025-12-25", "2026-01-01"]
    assert s.calendar("emea").timezone == "Europe/Paris"
    with pytest.raises(CsMetricsError, match="No business-hours calendar 'apac'"):
        s.calendar("apac")


@pytest.mark.parametrize(("toml", "words"), [
    ('timezone = "Mars/Olympus"\nhours = { mon = "09:00-17:00" }',
     "Setting business_hours.default.timezone in {f} must be an IANA time zone"),
    ('timezone = 5\nhours = { mon = "09:00-17:00" }',
     "Setting business_hours.default.timezone in {f} must be an IANA time zone"),
    ('timezone = "localtime"\nhours = { mon = "09:00-17:00" }',
     "Setting business_hours.default.timezone in {f} must be an IANA time zone"),
    ('timezone = "UTC"\nhours = { monday = "09:00-17:00" }',
     "Setting business_hours.default.hours in {f} names unknown days ['monday']"),
    ('timezone = "UTC"\nhours = { mon = "17:00-09:00" }',
     "Setting business_hours.default.hours.mon in {f} must be opening and closing times"),
    ('timezone = "UTC"\nhours = { mon = "9-17" }',
     "Setting business_hours.default.hours.mon in {f} must be opening and closing times"),
    ('timezone = "UTC"\nhours = { mon = "09:00-24:30" }',
     "Setting business_hours.default.hours.mon in {f} must be opening and closing times"),
    ('timezone = "UTC"\nhours = { mon = 9 }',
     "Setting business_hours.default.hours.mon in {f} must be opening and closing times"),
    ('timezone = "UTC"\nhours = {}',
     "Setting business_hours.default.hours in {f} must open on at least one day"),
    ('timezone = "UTC"\nhours = "weekdays"',
     "Setting business_hours.default.hours in {f} must be a table by weekday"),
    ('timezone = "UTC"\nhours = { mon = "09:00-17:00" }\nholidays = ["25/12/2025"]',
     "Setting business_hours.default.holidays[0] in {f} must be a day from 1900-01-01"),
    ('timezone = "UTC"\nhours = { mon = "09:00-17:00" }\nholidays = "2025-12-25"',
     "Setting business_hours.default.holidays in {f} must be a list of days"),
    ('timezone = "UTC"\nhours = { mon = "09:00-17:00" }\nopen = true',
     "Section [business_hours.default] in {f} has unknown keys ['open']"),
])
def test_bad_business_hours_are_one_sentence_naming_file_and_key(tmp_path, toml, words):
    custom = tmp_path / "settings.toml"
    custom.write_text(f"[business_hours.default]\n{toml}\n")
    with pytest.raises(CsMetricsError) as err:
        load_settings(custom)
    message = str(err.value)
    assert message.startswith(words.format(f=custom)), message
    one_sentence = message.replace("e.g. ", "").count(". ") == 0
    assert message.endswith(".") and "\n" not in message and one_sentence


def test_business_hours_calendar_names_are_checked(tmp_path):
    custom = tmp_path / "settings.toml"
    custom.write_text('[business_hours."a b"]\ntimezone = "UTC"\nhours = { mon = "09:00-17:00" }\n')
    with pytest.raises(CsMetricsError, match=r"\[business_hours.a b\] in .* must be named"):
        load_settings(custom)


@pytest.mark.parametrize("command", ["query", "report"])
def test_an_unreadable_settings_file_exits_2_naming_it(tmp_path, command):
    import os
    import subprocess
    import sys

    write_csv(tmp_path / "src", "tickets", [ticket("T1")])
    db = tmp_path / "w.duckdb"
    ingest(tmp_path / "src", db=db)
    args = {
        "query": ["query", "--metrics", "ticket_count", "--db", str(db)],
        "report": ["report", "--audience", "executive", "--period", "last-month", "--db",
                   str(db), "--out", str(tmp_path / "out"), "--format", "md"],
    }[command]
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"x = 1\n\xff")
    for settings, words in ((bad, "must be UTF-8 text"), (tmp_path, "cannot be read")):
        env = {**os.environ, "CS_METRICS_SETTINGS": str(settings)}
        res = subprocess.run([sys.executable, "-m", "cs_metrics", *args,
                              *(["--settings", str(settings)] if command == "report" else [])],
                             capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        assert str(settings) in res.stderr and words in res.stderr

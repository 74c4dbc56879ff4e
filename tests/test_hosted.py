"""Hosted mode in the app: the sign-in gate, roles and their scope on the pages, the audit
entries the pages write; and a real sign-in through a local OIDC provider in chromium."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

import cs_metrics
from cs_metrics import Filters, Warehouse, get_metric
from cs_metrics.core import audit as audit_log
from cs_metrics.core.access import Scope, ScopedWarehouse
from tests.conftest import REPO

APP = str(REPO / "app.py")
TIMEOUT = 90
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "cs-metrics", "client_secret": "secret",
        "server_metadata_url": "http://localhost:1/.well-known/openid-configuration"}
LEAD = "lee@example.com"
ADMIN = "ada@example.com"
ISSUER = "https://id.example.com"

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture()
def hosted_db(sample_db, tmp_path) -> Path:
    db = tmp_path / "wh.duckdb"
    shutil.copy(sample_db, db)
    return db


def _teams(db: Path) -> list[str]:
    wh = Warehouse(db)
    try:
        return wh.dimension_values("team")
    finally:
        wh.close()


@pytest.fixture()
def settings_file(hosted_db, tmp_path, monkeypatch) -> Path:
    teams = _teams(hosted_db)
    path = tmp_path / "settings.toml"
    path.write_text(
        "[access]\n"
        f'admins = ["{ADMIN}"]\n'
        'managers = ["group:cs-managers"]\n'
        '[access.team_leads]\n'
        f'"{LEAD}" = ["{teams[0]}"]\n'
    )
    monkeypatch.setenv("CS_METRICS_SETTINGS", str(path))
    monkeypatch.setenv("CS_METRICS_DB", str(hosted_db))
    return path


def hosted_app(user: dict | None, page: str = APP) -> AppTest:
    at = AppTest.from_file(page, default_timeout=TIMEOUT)
    at.secrets["auth"] = AUTH
    at.user = user if user is not None else {"is_logged_in": False}
    return at


def signed_in(email: str, groups: tuple[str, ...] = ()) -> dict:
    """The claims of a person whose provider vouches for their e-mail address."""
    return {"is_logged_in": True, "email": email, "email_verified": True,
            "groups": list(groups), "iss": ISSUER, "sub": f"sub-{email}"}


def default_filters(wh: Warehouse) -> Filters:
    end = wh.created_range()[1].date() + timedelta(days=1)
    return Filters(end - timedelta(days=90), end)


def tickets_card(at: AppTest) -> str:
    return next(m.value for m in at.metric if m.label == "Tickets")


def test_local_mode_is_unchanged_and_says_so(hosted_db, monkeypatch):
    monkeypatch.setenv("CS_METRICS_DB", str(hosted_db))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Local mode" in c.value for c in at.sidebar.caption)
    wh = Warehouse(hosted_db)
    want = cs_metrics.query(wh, ["ticket_count"], filters=default_filters(wh)).iloc[0, 0]
    wh.close()
    assert tickets_card(at) == get_metric("ticket_count").display(want)


def test_nobody_signed_in_sees_only_the_sign_in_button(settings_file):
    at = hosted_app(None).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric and not at.dataframe


def test_someone_without_a_role_is_refused_and_logged(settings_file, hosted_db):
    at = hosted_app(signed_in("stranger@example.com")).run()
    assert not at.exception
    assert "no role" in at.error[0].value
    assert not at.metric
    wh = Warehouse(hosted_db)
    log = audit_log.entries(wh, action="access_denied")
    wh.close()
    assert log[["actor", "issuer", "subject"]].values.tolist() == [
        ["stranger@example.com", ISSUER, "sub-stranger@example.com"]]


def test_a_team_lead_sees_their_team_only_even_with_a_crafted_link(settings_file, hosted_db):
    teams = _teams(hosted_db)
    base = Warehouse(hosted_db)
    scoped = ScopedWarehouse(base, Scope("team_lead", LEAD, teams=(teams[0],)))
    want = cs_metrics.query(scoped, ["ticket_count"], filters=default_filters(scoped))
    everyone = cs_metrics.query(base, ["ticket_count"], filters=default_filters(scoped))
    scoped.close()
    base.close()
    want_text = get_metric("ticket_count").display(want.iloc[0, 0])
    assert want.iloc[0, 0] < everyone.iloc[0, 0]

    at = hosted_app(signed_in(LEAD))
    at.query_params["team"] = teams[1]  # another team's figures, asked for in the link
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert tickets_card(at) == want_text
    assert any("Signed in as **lee\\@example\\.com**" in c.value for c in at.sidebar.caption)
    team_filter = next(w for w in at.sidebar.multiselect if w.label == "Team")
    assert team_filter.options == [teams[0]]
    at.run()  # a rerun is not a second sign-in
    wh = Warehouse(hosted_db)
    sign_ins = audit_log.entries(wh, action="sign_in")
    wh.close()
    assert sign_ins["actor"].tolist() == [LEAD]
    assert sign_ins["role"].tolist() == ["team_lead"]
    assert sign_ins[["issuer", "subject"]].values.tolist() == [[ISSUER, f"sub-{LEAD}"]]


@pytest.mark.parametrize("page", ["views/data_sources.py", "views/data_quality.py",
                                  "views/audit.py"])
def test_admin_pages_refuse_a_team_lead_even_when_run_directly(settings_file, page):
    at = hosted_app(signed_in(LEAD), str(REPO / page)).run()
    assert not at.exception
    assert any("may not" in e.value for e in at.error)
    assert not at.dataframe


def test_a_manager_by_group_sees_every_team(settings_file, hosted_db):
    at = hosted_app(signed_in("mia@example.com", ("cs-managers",))).run()
    assert not at.exception
    wh = Warehouse(hosted_db)
    want = cs_metrics.query(wh, ["ticket_count"], filters=default_filters(wh)).iloc[0, 0]
    wh.close()
    assert tickets_card(at) == get_metric("ticket_count").display(want)


def test_an_export_is_logged_with_who_made_it(settings_file, hosted_db, deferred_downloads):
    at = hosted_app(signed_in(LEAD)).run()
    assert not at.exception, [e.value for e in at.exception]
    button = next(b for b in at.get("download_button")
                  if b.proto.label == "Download Parquet")
    name = button.help.rsplit(": ", 1)[-1]
    assert name.endswith(".parquet") and button.proto.deferred_file_id
    wh = Warehouse(hosted_db)
    assert audit_log.entries(wh, action="export").empty  # showing the button is no export
    wh.close()
    # the click: the file is made then, outside the page's run, and logged as the lead's
    data = deferred_downloads[name]()
    meta = pq.read_schema(io.BytesIO(data)).metadata
    assert meta[b"exported_by"] == LEAD.encode() and meta[b"exported_role"] == b"team_lead"
    wh = Warehouse(hosted_db)
    exports = audit_log.entries(wh, action="export")
    assert audit_log.verify(wh).ok
    wh.close()
    assert exports["actor"].tolist() == [LEAD]
    assert exports[["issuer", "subject"]].values.tolist() == [[ISSUER, f"sub-{LEAD}"]]
    assert exports["target"].tolist() == [name]
    detail = json.loads(exports["detail"].iloc[0])
    assert detail["sha256"] == hashlib.sha256(data).hexdigest()
    assert detail["bytes"] == len(data)
    assert detail["rows"] == len(pq.read_table(io.BytesIO(data)))


def test_parquet_exports_carry_who_made_them(settings_file, monkeypatch):
    from views import _exports

    monkeypatch.setattr(_exports, "current_scope",
                        lambda: Scope("team_lead", LEAD, teams=("x",)))
    import pandas as pd

    data = _exports.parquet_bytes(pd.DataFrame({"a": [1, 2]}))
    meta = pq.read_schema(io.BytesIO(data)).metadata
    assert meta[b"exported_by"] == LEAD.encode()
    assert meta[b"exported_role"] == b"team_lead"


def test_an_admin_reads_the_audit_log(settings_file, hosted_db):
    at = hosted_app(signed_in(ADMIN)).run()
    assert not at.exception
    at.switch_page("views/audit.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("chain is intact" in s.value for s in at.success)
    shown = at.dataframe[0].value
    assert shown["action"].tolist()[-1] == "sign_in"
    assert shown.iloc[-1][["actor", "issuer", "subject"]].tolist() == [
        ADMIN, ISSUER, f"sub-{ADMIN}"]


# --- a real sign-in ------------------------------------------------------------------------

# the sign-in harness's fixture (skips with the reason when chromium or a package is missing)
from tests.test_oidc_harness import CHROMIUM, CHROMIUM_ARGS, harness  # noqa: E402, F401


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore:authlib.jose module is deprecated")
@pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
@pytest.mark.filterwarnings("ignore:get_jwt_config")
def test_a_team_lead_signs_in_in_a_browser_and_sees_only_their_team(
        harness, settings_file, hosted_db, tmp_path):  # noqa: F811 (the fixture)
    from playwright import sync_api

    teams = _teams(hosted_db)
    base = Warehouse(hosted_db)
    scoped = ScopedWarehouse(base, Scope("team_lead", LEAD, teams=(teams[0],)))
    want = get_metric("ticket_count").display(
        cs_metrics.query(scoped, ["ticket_count"], filters=default_filters(scoped)).iloc[0, 0])
    scoped.close()
    base.close()
    env = {"CS_METRICS_DB": str(hosted_db), "CS_METRICS_SETTINGS": str(settings_file)}
    with harness.oidc_provider() as idp:
        port = harness.free_port()
        secrets = harness.write_auth_secrets(tmp_path / "secrets", idp, port)
        with harness.run_streamlit(REPO / "app.py", port=port, secrets=secrets, cwd=REPO,
                                   env=env, log=tmp_path / "streamlit.log") as url, \
                sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url)
                page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
                assert page.get_by_test_id("stMetric").count() == 0
                harness.sign_in(page, url, LEAD, claims={"email_verified": True})
                sidebar = page.get_by_test_id("stSidebar")
                sidebar.get_by_text(f"Signed in as {LEAD}").wait_for(timeout=60_000)
                metric = page.get_by_test_id("stMetric").filter(has_text="Tickets").first
                metric.wait_for(timeout=60_000)
                value = metric.get_by_test_id("stMetricValue").inner_text().strip()
                assert value == want
                nav = sidebar.get_by_test_id("stSidebarNav").inner_text()
                assert "Overview" in nav and "Your data" not in nav
                assert "Audit log" not in nav and "Data quality" not in nav
            finally:
                browser.close()
    wh = Warehouse(hosted_db)
    sign_ins = audit_log.entries(wh, action="sign_in")
    wh.close()
    assert sign_ins["actor"].tolist() == [LEAD]
    # the harness's provider names the subject after the e-mail it was given
    assert sign_ins[["issuer", "subject"]].values.tolist() == [[idp.issuer, LEAD]]


# --- alerts through a scope ---------------------------------------------------------------


def _store_alerts(db: Path, rows: list[tuple[str, str]]) -> None:
    from cs_metrics.ops.alerts import _writable

    wh = Warehouse(db)
    con = _writable(wh, "store alerts")
    for i, (rule, alert_id) in enumerate(rows):
        con.execute(
            "insert into alerts (occurrence_id, alert_id, seq, rule, severity, title, message, "
            "figures, link, created_at, last_seen_at, seen_count, muted) values "
            "(?, ?, 1, ?, 'warning', ?, 'm', '{}', '/', ?, ?, 1, false)",
            [f"{alert_id}#1", alert_id, rule, f"alert {i}", "2025-02-28", "2025-02-28"])
    wh.close()


def test_alerts_through_a_team_leads_scope(hosted_db):
    from cs_metrics.ops.alerts import acknowledge, active_alerts, mute, run_alerts

    teams = _teams(hosted_db)
    base = Warehouse(hosted_db)
    mine = base.scalar("select ticket_id from tickets where team = ? limit 1", [teams[0]])
    theirs = base.scalar("select ticket_id from tickets where team = ? limit 1", [teams[1]])
    base.close()
    _store_alerts(hosted_db, [("ticket_reopened", f"ticket_reopened:{mine}"),
                              ("ticket_reopened", f"ticket_reopened:{theirs}"),
                              ("sla_breached", "sla_breached:all"),
                              ("outage", "outage:location=Springfield")])
    base = Warehouse(hosted_db)
    lead = ScopedWarehouse(base, Scope("team_lead", LEAD, teams=(teams[0],)))
    try:
        seen = set(active_alerts(lead)["alert_id"])
        assert seen == {f"ticket_reopened:{mine}", "outage:location=Springfield"}
        assert len(active_alerts(base)) == 4
        with pytest.raises(cs_metrics.CsMetricsError, match="among those you can see"):
            acknowledge(lead, f"ticket_reopened:{theirs}", LEAD, role="team_lead")
        assert acknowledge(lead, f"ticket_reopened:{mine}", LEAD, role="team_lead") == 1
        with pytest.raises(cs_metrics.CsMetricsError, match="may not mute"):
            mute(lead, "outage", timedelta(hours=1), LEAD)
        with pytest.raises(cs_metrics.CsMetricsError, match="may not run the alert rules"):
            run_alerts(lead)
        log = audit_log.entries(base, action="alert_acknowledged")
        assert log[["actor", "role", "target"]].values.tolist() == [
            [LEAD, "team_lead", f"ticket_reopened:{mine}"]]
        still = set(active_alerts(base)["alert_id"])
        assert f"ticket_reopened:{theirs}" in still and f"ticket_reopened:{mine}" not in still
    finally:
        lead.close()
        base.close()


# --- the command line as someone ------------------------------------------------------------


def test_query_as_a_team_lead_sees_their_team_only(settings_file, hosted_db, capsys):
    import io

    import pandas as pd

    from cs_metrics.cli.main import main

    teams = _teams(hosted_db)
    assert main(["query", "--metrics", "ticket_count", "--by", "team", "--db", str(hosted_db),
                 "--as", LEAD.upper(), "--where", f"team={teams[1]}"]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out)).empty  # another team: nothing
    assert main(["query", "--metrics", "ticket_count", "--by", "team", "--db",
                 str(hosted_db), "--as", LEAD]) == 0
    got = pd.read_csv(io.StringIO(capsys.readouterr().out))
    wh = Warehouse(hosted_db)
    want = wh.df("select team, count(*) as n from tickets where not is_test and team = ? "
                 "group by team", [teams[0]])
    wh.close()
    assert got["team"].tolist() == [teams[0]]
    assert got["ticket_count"].tolist() == want["n"].tolist()
    assert main(["query", "--metrics", "ticket_count", "--db", str(hosted_db),
                 "--as", "nobody@example.com"]) == 2
    assert "has no role" in capsys.readouterr().err


def test_a_changed_settings_file_is_recorded_once(settings_file, hosted_db):
    from views import _auth

    _auth._SETTINGS_SEEN.clear()
    hosted_app(signed_in(ADMIN)).run()
    settings_file.write_text(settings_file.read_text() + "\n[targets]\ncsat_pct = 91\n")
    _auth._SETTINGS_SEEN.clear()  # as a minute later
    hosted_app(signed_in(ADMIN)).run()
    _auth._SETTINGS_SEEN.clear()
    hosted_app(signed_in(ADMIN)).run()  # unchanged since: nothing new
    wh = Warehouse(hosted_db)
    changes = audit_log.entries(wh, action="settings_changed")
    wh.close()
    assert len(changes) == 2
    assert "targets" in changes["detail"].iloc[0]


def test_a_report_built_by_a_team_lead_is_logged_and_holds_their_team(settings_file, hosted_db):
    teams = _teams(hosted_db)
    at = hosted_app(signed_in(LEAD)).run()
    at.switch_page("views/reports.py").run()
    at.selectbox(key="report_audience").set_value("team").run()
    assert at.selectbox(key="report_team").options == [f"{teams[0]} (team)"]
    at.button(key="report_build").click().run()
    assert not at.exception, [e.value for e in at.exception]
    wh = Warehouse(hosted_db)
    reports = audit_log.entries(wh, action="report")
    wh.close()
    assert reports[["actor", "role", "target"]].values.tolist() == [
        [LEAD, "team_lead", "team report"]]
    assert f'"subject":"{teams[0]}"' in reports["detail"].iloc[0]


def test_signing_out_is_logged(settings_file, hosted_db):
    at = hosted_app(signed_in(LEAD)).run()
    at.sidebar.button(key="logout").click().run()
    assert not at.exception, [e.value for e in at.exception]
    wh = Warehouse(hosted_db)
    log = audit_log.entries(wh)
    wh.close()
    log = log[log["action"].isin(["sign_in", "sign_out"])]
    assert log[["action", "actor", "subject"]].values.tolist() == [
        ["sign_out", LEAD, f"sub-{LEAD}"], ["sign_in", LEAD, f"sub-{LEAD}"]]

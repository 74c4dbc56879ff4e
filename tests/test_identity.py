"""Roles come only from claims the identity provider vouches for: the claims read
(cs_metrics.core.access.identity_from_claims), the sign-in gate refusing self-chosen claims with a
reason, the audit log telling accounts apart by issuer and subject, and a real sign-in with
crafted claims through the local OIDC provider."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from cs_metrics import Warehouse
from cs_metrics.core import audit as audit_log
from cs_metrics.core.access import Identity, Scope, ScopedWarehouse, identity_from_claims
from cs_metrics.core.errors import CsMetricsError
from tests.conftest import REPO
from tests.test_hosted import (  # noqa: F401 (fixtures)
    ADMIN,
    hosted_app,
    hosted_db,
    settings_file,
)

ISS = "https://id.example.com"

pytestmark = pytest.mark.usefixtures("fresh_caches")


# --- the claims read -----------------------------------------------------------------------


@pytest.mark.parametrize(("claims", "claim", "email", "refusal"), [
    ({"email": "Ada@Example.com", "email_verified": True}, "verified_email",
     "ada@example.com", ""),
    ({"email": " ada@example.com ", "email_verified": "true"}, "verified_email",
     "ada@example.com", ""),  # some providers send the text
    ({"email": "ADA@Example.com", "email_verified": False}, "verified_email", "",
     "does not mark the e-mail address ADA@Example.com as verified"),
    ({"email": "ada@example.com", "email_verified": "yes"}, "verified_email", "",
     "as verified"),
    ({"email": "ada@example.com", "email_verified": 1}, "verified_email", "", "as verified"),
    ({"email": "ada@example.com"}, "verified_email", "", "as verified"),
    # self-chosen claims never stand in for the e-mail, whatever the setting
    ({"preferred_username": "ada@example.com"}, "verified_email", "", "sent no e-mail"),
    ({"preferred_username": "ada@example.com"}, "email", "", "sent no e-mail"),
    ({"name": "ada@example.com", "email": ""}, "email", "", "sent no e-mail"),
    ({"upn": "ada@example.com", "nickname": "ada@example.com"}, "email", "",
     "sent no e-mail"),
    # "email": trusted as sent
    ({"email": "ADA@Example.com", "email_verified": False}, "email", "ada@example.com", ""),
    ({"email": "ada@example.com"}, "email", "ada@example.com", ""),
    # not an address
    ({"email": "ada", "email_verified": True}, "email", "", "not an e-mail address"),
    ({"email": "ada@ex ample.com", "email_verified": True}, "verified_email", "",
     "not an e-mail address"),
    ({"email": "ada@example.com\nadmin", "email_verified": True}, "verified_email", "",
     "not an e-mail address"),
    ({"email": ["ada@example.com"], "email_verified": True}, "verified_email", "",
     "not an e-mail address"),
    ({"email": "a@b@example.com", "email_verified": True}, "email", "",
     "not an e-mail address"),
])
def test_only_a_vouched_for_email_is_an_identity(claims, claim, email, refusal):
    who = identity_from_claims({**claims, "iss": ISS, "sub": "s-1"}, claim)
    assert who.email == email
    assert (who.issuer, who.subject) == (ISS, "s-1")
    if refusal:
        assert refusal in who.refusal
    else:
        assert who.refusal == "" and who.claimed_email == ""


def test_groups_issuer_and_subject_are_read_as_text():
    who = identity_from_claims({"groups": "cs-managers, night-shift", "iss": ISS,
                                "sub": "abc"})
    assert who == Identity("", ("cs-managers", "night-shift"), ISS, "abc", "",
                           "the identity provider sent no e-mail address")
    who = identity_from_claims({"groups": ["a", 3, " ", "b "], "iss": 5, "sub": None,
                                "email": "x@example.com", "email_verified": True})
    assert (who.groups, who.issuer, who.subject, who.email) == (("a", "b"), "", "",
                                                                "x@example.com")
    assert identity_from_claims({"groups": {"admins": True}}).groups == ()
    with pytest.raises(CsMetricsError, match="Unknown identity claim 'preferred_username'"):
        identity_from_claims({}, "preferred_username")


# --- the sign-in gate ----------------------------------------------------------------------


def claims(**kw: object) -> dict:
    return {"is_logged_in": True, "iss": ISS, **kw}


def shown(markdown: str) -> str:
    """The text Markdown source with escaped punctuation renders as."""
    return re.sub(r"\\([!-/:-@[-`{-~])", r"\1", markdown)


def _log(db: Path, action: str | None = None):
    wh = Warehouse(db)
    try:
        return audit_log.entries(wh, action=action)
    finally:
        wh.close()


@pytest.mark.parametrize(("user", "why"), [
    (claims(sub="m-1", email="ADA@Example.com", email_verified=False),
     "does not mark the e-mail address ADA@Example.com as verified"),
    (claims(sub="m-2", preferred_username=ADMIN, name=ADMIN), "sent no e-mail address"),
    (claims(sub="m-3", email="ADA@Example.com", preferred_username=ADMIN),
     "does not mark the e-mail address"),
])
def test_an_unverified_or_self_chosen_admin_address_is_refused_and_logged(
        settings_file, hosted_db, user, why):  # noqa: F811 (fixtures)
    at = hosted_app(user).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["No access yet"]
    assert len(at.error) == 1 and why in shown(at.error[0].value)
    assert "cannot be given a role" in shown(at.error[0].value)
    assert not at.metric and not at.dataframe
    assert [b.label for b in at.button] == ["Sign out"]
    at.run()  # a rerun is not a second attempt
    denied = _log(hosted_db, "access_denied")
    assert denied[["actor", "issuer", "subject", "role"]].values.tolist() == [
        ["unknown", ISS, user["sub"], ""]]
    detail = json.loads(denied["detail"].iloc[0])
    assert detail["unusable_email"] == user.get("email", "")
    assert why in detail["why"]
    assert _log(hosted_db, "sign_in").empty


def test_a_verified_address_gets_its_role_any_case(settings_file, hosted_db):  # noqa: F811
    at = hosted_app(claims(sub="ada-1", email="ADA@Example.com", email_verified="true")).run()
    assert not at.exception and not at.error
    assert at.metric  # the overview
    assert any("admin: every team" in shown(c.value) for c in at.sidebar.caption)
    sign_ins = _log(hosted_db, "sign_in")
    assert sign_ins[["actor", "role", "issuer", "subject"]].values.tolist() == [
        [ADMIN, "admin", ISS, "ada-1"]]


def test_identity_claim_email_trusts_the_provider_but_never_a_username(
        settings_file, hosted_db):  # noqa: F811
    settings_file.write_text(settings_file.read_text().replace(
        "[access]\n", '[access]\nidentity_claim = "email"\n'))
    at = hosted_app(claims(sub="ada-2", email="Ada@Example.com")).run()
    assert not at.exception and not at.error
    assert any("admin: every team" in shown(c.value) for c in at.sidebar.caption)
    at = hosted_app(claims(sub="m-4", preferred_username=ADMIN)).run()
    assert [t.value for t in at.title] == ["No access yet"]
    assert "sent no e-mail address" in shown(at.error[0].value)
    assert _log(hosted_db, "sign_in")["subject"].tolist() == ["ada-2"]
    assert _log(hosted_db, "access_denied")["subject"].tolist() == ["m-4"]


def test_a_group_still_gives_a_role_when_the_address_is_unverified(
        settings_file, hosted_db):  # noqa: F811
    at = hosted_app(claims(sub="mia-1", email="mia@example.com", email_verified=False,
                           groups=["cs-managers"])).run()
    assert not at.exception and not at.error
    assert any("manager: every team" in shown(c.value) for c in at.sidebar.caption)
    sign_in = _log(hosted_db, "sign_in")
    assert sign_in[["actor", "role", "subject"]].values.tolist() == [
        ["unknown", "manager", "mia-1"]]
    detail = json.loads(sign_in["detail"].iloc[0])
    assert detail["unusable_email"] == "mia@example.com"
    assert "as verified" in detail["why"]


def test_two_accounts_claiming_one_address_are_told_apart(settings_file, hosted_db):  # noqa: F811
    for iss, sub in ((ISS, "ada-real"), ("https://other.example.org", "ada-other")):
        at = hosted_app(claims(iss=iss, sub=sub, email=ADMIN, email_verified=True)).run()
        assert not at.exception
    sign_ins = _log(hosted_db, "sign_in")
    assert sign_ins[["actor", "issuer", "subject"]].values.tolist() == [
        [ADMIN, "https://other.example.org", "ada-other"], [ADMIN, ISS, "ada-real"]]
    wh = Warehouse(hosted_db)
    assert audit_log.verify(wh).ok
    wh.close()


def test_a_claimed_address_is_shown_as_text(settings_file, hosted_db):  # noqa: F811
    crafted = "[Session_expired](http://evil.example/)![x](http://evil.example/i.png)@x.com"
    at = hosted_app(claims(sub="m-5", email=crafted, email_verified=False)).run()
    assert not at.exception
    source = at.error[0].value
    assert "](http" not in source and "\\[Session\\_expired\\]\\(http" in source
    # rendered as the text it is (a URL carries an invisible word joiner: no autolink)
    assert crafted in shown(source).replace("\u2060", "")
    # a verified but unlisted address: the same, in the "no role" sentence
    at = hosted_app(claims(sub="m-6", email="**bold**@example.com", email_verified=True)).run()
    assert "no role" in at.error[0].value
    assert "\\*\\*bold\\*\\*\\@example\\.com" in at.error[0].value


def test_a_bad_identity_claim_setting_is_one_sentence_on_the_page(settings_file):  # noqa: F811
    settings_file.write_text(settings_file.read_text().replace(
        "[access]\n", '[access]\nidentity_claim = "preferred_username"\n'))
    at = hosted_app(claims(sub="x", email=ADMIN, email_verified=True)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Sign-in is unavailable"]
    assert [e.value for e in at.error] == [
        "The app's settings have a mistake, so nobody can be given a role until an "
        "administrator fixes it; the server's log names the file and the setting."]
    assert not at.metric and not at.button
    assert str(settings_file) not in str(at)  # the file's path stays in the server's log


# --- alerts handled through a scope keep who signed in ---------------------------------------


def test_alert_entries_carry_the_scopes_issuer_and_subject(hosted_db):  # noqa: F811
    from cs_metrics.ops.alerts import acknowledge, mute, unmute
    from tests.test_hosted import _store_alerts

    _store_alerts(hosted_db, [("outage", "outage:location=Springfield")])
    base = Warehouse(hosted_db)
    manager = ScopedWarehouse(base, Scope("manager", "mia@example.com", issuer=ISS,
                                          subject="mia-1"))
    try:
        assert acknowledge(manager, "outage:location=Springfield", "mia@example.com",
                           role="manager") == 1
        mute(manager, "outage", timedelta(hours=1), "mia@example.com", role="manager")
        assert unmute(manager, "outage", by="mia@example.com", role="manager") == 1
        log = audit_log.entries(base)
        assert log[["action", "issuer", "subject"]].values.tolist() == [
            ["alert_unmuted", ISS, "mia-1"], ["alert_muted", ISS, "mia-1"],
            ["alert_acknowledged", ISS, "mia-1"]]
        assert audit_log.verify(base).ok
    finally:
        manager.close()
        base.close()


# --- a real sign-in with crafted claims ------------------------------------------------------

from tests.test_oidc_harness import CHROMIUM, CHROMIUM_ARGS, harness  # noqa: E402, F401


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore:authlib.jose module is deprecated")
@pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
@pytest.mark.filterwarnings("ignore:get_jwt_config")
def test_a_self_made_admin_address_is_refused_in_a_browser_and_the_real_one_is_not(
        harness, settings_file, hosted_db, tmp_path):  # noqa: F811 (fixtures)
    from playwright import sync_api

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
                # the subject "mallory" typed the admin's address in both places she can
                harness.sign_in(page, url, "mallory", claims={
                    "email": "ADA@Example.com", "email_verified": False,
                    "preferred_username": ADMIN, "name": ADMIN})
                main = page.get_by_test_id("stMain")
                main.get_by_text("No access yet").wait_for(timeout=60_000)
                text = main.inner_text()
                assert "does not mark the e-mail address ADA@Example.com as verified" in text
                assert page.get_by_test_id("stMetric").count() == 0
                assert page.get_by_test_id("stSidebarNav").count() == 0  # no page to open
                harness.sign_out(page, url)
                harness.sign_in(page, url, ADMIN, claims={"email_verified": True})
                page.get_by_test_id("stSidebar").get_by_text(
                    f"Signed in as {ADMIN}").wait_for(timeout=60_000)
            finally:
                browser.close()
    log = _log(hosted_db)
    log = log[log["action"].isin(["access_denied", "sign_in"])]
    assert log[["action", "actor", "issuer", "subject"]].values.tolist() == [
        ["sign_in", ADMIN, idp.issuer, ADMIN],
        ["access_denied", "unknown", idp.issuer, "mallory"]]


def test_a_lookalike_letter_does_not_become_another_persons_address():
    """str.lower() turns U+212A KELVIN SIGN into "k": only ASCII letters are folded."""
    from cs_metrics.core.access import identity_from_claims

    claims = {"email_verified": True, "iss": "https://idp.example", "sub": "s-1"}
    kelvin = identity_from_claims({**claims, "email": "\u212aate@example.com"})
    assert kelvin.email == "\u212aate@example.com" != "kate@example.com"
    assert identity_from_claims({**claims, "email": "Kate@Example.COM"}).email == \
        "kate@example.com"

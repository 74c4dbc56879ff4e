"""The sign-in harness end to end: a throwaway Streamlit script signs a person in through
the local OIDC provider in headless chromium, and sees their email and groups in st.user."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]

DEMO = '''\
import json

import streamlit as st

if not st.user.is_logged_in:
    st.button("Sign in", on_click=st.login)
else:
    st.write(f"email: {st.user.email}")
    st.write(f"groups: {', '.join(st.user.get('groups') or [])}")
    st.text("user: " + json.dumps(st.user.to_dict(), sort_keys=True, default=str))
    st.button("Sign out", on_click=st.logout)
'''

pytestmark = [
    pytest.mark.browser,
    # oidc-provider-mock (run in this process) uses Authlib APIs that Authlib deprecates.
    pytest.mark.filterwarnings("ignore:authlib.jose module is deprecated"),
    pytest.mark.filterwarnings("ignore:The httpx module is deprecated"),
    pytest.mark.filterwarnings("ignore:get_jwt_config"),
]


@pytest.fixture
def harness():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium package)")
    pytest.importorskip("playwright.sync_api",
                        reason="the playwright Python package is not installed")
    pytest.importorskip("authlib", reason="Authlib is not installed (requirements.txt)")
    with warnings.catch_warnings():
        # Importing this turns Authlib's deprecation warnings on for good (a filter ahead of
        # pytest's); imported here, that filter is dropped when the block ends.
        import authlib.deprecate  # noqa: F401
    pytest.importorskip("oidc_provider_mock",
                        reason="oidc-provider-mock is not installed (requirements-dev.txt)")
    from tests import oidc_harness

    return oidc_harness


def test_a_team_lead_signs_in_and_the_app_sees_their_email_and_groups(harness, tmp_path):
    import json

    from playwright import sync_api

    script = tmp_path / "demo.py"
    script.write_text(DEMO)
    with harness.oidc_provider() as idp:
        port = harness.free_port()
        secrets = harness.write_auth_secrets(tmp_path / "secrets", idp, port)
        with harness.run_streamlit(script, port=port, secrets=secrets, cwd=REPO,
                                   log=tmp_path / "streamlit.log") as url, \
                sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url)
                harness.sign_in(page, url, "lee@example.com", groups=["team-3-leads"],
                                name="Lee Lead")
                main = page.get_by_test_id("stMain")
                main.get_by_text("email: lee@example.com").wait_for()
                assert main.get_by_text("groups: team-3-leads").is_visible()
                user = json.loads(main.get_by_text("user: ").inner_text().removeprefix("user: "))
                assert user["is_logged_in"] is True
                assert user["sub"] == "lee@example.com"
                assert user["groups"] == ["team-3-leads"]
                assert user["name"] == "Lee Lead"
                assert user["iss"] == idp.issuer

                harness.sign_out(page, url)
                page.get_by_role("button", name="Sign in").wait_for()
                assert main.get_by_text("email:").count() == 0
            finally:
                browser.close()

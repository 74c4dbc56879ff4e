"""A real OpenID Connect sign-in for tests: a local provider, the secrets that point a
Streamlit server at it, and a Playwright helper that signs a person in through the browser.

Not a test module; import it from tests::

    from tests.oidc_harness import free_port, oidc_provider, run_streamlit, sign_in, \
        write_auth_secrets

    with oidc_provider() as idp:
        port = free_port()
        secrets = write_auth_secrets(tmp_path, idp, port)
        with run_streamlit(REPO / "app.py", port=port, secrets=secrets, cwd=REPO,
                           log=tmp_path / "streamlit.log") as base_url:
            ...  # a Playwright page, then:
            sign_in(page, base_url, "lee@example.com", groups=["team-3-leads"], name="Lee")

The provider is the `oidc-provider-mock` package (a dev requirement). It accepts any
client_id, client_secret and redirect_uri, and its authorization page asks only for the
subject (`sub`): every other claim of a subject is registered beforehand with
`PUT {issuer}/users/{sub}` (JSON), which `sign_in` does for you. A subject that was never
registered gets the claims {"email": sub}. Standard claims (email, name, ...) are
released by scope, and Streamlit asks for "openid email profile"; any other claim, such as
`groups`, is always released. They are put into the ID token, and Streamlit's `st.user`
holds the ID token's claims (iss, aud, exp, iat, nonce, at_hash, auth_time... included).

Gotchas the helpers take care of:
- The app must be opened on the same scheme://host:port as `redirect_uri`: open
  http://localhost:PORT, never http://127.0.0.1:PORT, when the redirect_uri says localhost.
  Streamlit keeps the pending login in a cookie of the host the app was opened on, so a
  callback to the other name is dropped ("Missing provider for OAuth callback"), and it
  ignores the identity cookie when the websocket's Origin is not the redirect_uri's.
- The provider names itself (`iss`) after the Host header it was reached with, so its
  metadata URL, the browser and Streamlit must all use the same host name (localhost).
- Plain HTTP works because localhost is a secure context for the browser; the cookie is
  SameSite=Lax, HttpOnly, not Secure.
- `--secrets.files` (a Streamlit config option) points the server at a secrets file
  anywhere, so it can run with cwd = the repo and keep reading .streamlit/config.toml.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

HOST = "localhost"
CLIENT_ID = "cs-metrics-test"
CLIENT_SECRET = "cs-metrics-test-secret"  # noqa: S105 - the mock accepts any secret
USER_COOKIE = "_streamlit_user"
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class OidcProvider:
    """A running mock provider."""

    issuer: str  # e.g. http://localhost:41234
    port: int

    @property
    def server_metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def set_claims(self, sub: str, claims: Mapping[str, Any]) -> None:
        """Register (or replace) every claim but `sub` that `sub` will sign in with."""
        put_claims(self.issuer, sub, claims)


def put_claims(issuer: str, sub: str, claims: Mapping[str, Any]) -> None:
    request = urllib.request.Request(
        f"{issuer}/users/{quote(sub, safe='')}", method="PUT",
        data=json.dumps(dict(claims)).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 204:
            raise RuntimeError(f"the OIDC provider refused the claims of {sub}: "
                               f"{response.status} {response.read()[:500]!r}")


@contextmanager
def oidc_provider(*, require_nonce: bool = False) -> Iterator[OidcProvider]:
    """Run oidc-provider-mock on a free port of localhost in a background thread."""
    import oidc_provider_mock

    with oidc_provider_mock.run_server_in_thread(require_nonce=require_nonce) as server:
        port = server.server_port
        yield OidcProvider(issuer=f"http://{HOST}:{port}", port=port)


def auth_section(provider: OidcProvider, app_port: int, *, host: str = HOST,
                 client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 cookie_secret: str | None = None) -> dict[str, str]:
    """The [auth] settings for an app served on http://{host}:{app_port}."""
    return {
        "redirect_uri": f"http://{host}:{app_port}/oauth2callback",
        # Signs the identity cookie; Streamlit warns below 14 bytes. Random per server.
        "cookie_secret": cookie_secret or _secrets.token_hex(32),
        "client_id": client_id,
        "client_secret": client_secret,
        "server_metadata_url": provider.server_metadata_url,
    }


def write_auth_secrets(directory: Path, provider: OidcProvider, app_port: int, *,
                       host: str = HOST, extra: str = "", **auth: str) -> Path:
    """Write `directory/secrets.toml` with an [auth] section for `provider` and return its
    path; pass it to the server as `--secrets.files PATH` (see `streamlit_args`).
    `extra` is TOML appended after the [auth] section (other secrets the app needs);
    keyword arguments override the [auth] settings (client_id, cookie_secret, ...)."""
    section = auth_section(provider, app_port, host=host, **auth)
    lines = ["[auth]", *(f"{key} = {json.dumps(value)}" for key, value in section.items())]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "secrets.toml"
    path.write_text("\n".join(lines) + "\n" + (f"\n{extra}\n" if extra else ""))
    return path


def streamlit_args(script: Path, port: int, secrets: Path) -> list[str]:
    """The command line of a headless Streamlit server for `script` reading `secrets`."""
    return [sys.executable, "-m", "streamlit", "run", str(script),
            "--server.headless", "true", "--server.port", str(port),
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
            "--secrets.files", str(secrets)]


@contextmanager
def run_streamlit(script: Path, *, port: int, secrets: Path, log: Path,
                  cwd: Path | None = None, env: Mapping[str, str] | None = None,
                  host: str = HOST, seconds: float = 30) -> Iterator[str]:
    """Serve `script` on `port` with `secrets`; yield its base URL (http://localhost:PORT)
    once healthy. Raises RuntimeError with the server's log if it dies or hangs."""
    base_url = f"http://{host}:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen(streamlit_args(script, port, secrets), cwd=cwd,
                                env={**os.environ, **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, f"{base_url}/_stcore/health", log, seconds)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit was not healthy within {seconds} s:\n{log.read_text()}")


def sign_in(page, base_url: str, email: str, groups: Iterable[str] = (),
            name: str | None = None, *, button: str = "Sign in",
            claims: Mapping[str, Any] | None = None, timeout_ms: int = TIMEOUT_MS) -> None:
    """Sign in through the app's sign-in button and the mock provider's form.

    Opens `base_url` unless the page is already on it, clicks the button labelled `button`
    (one that calls st.login()), registers the subject `email` with the claims
    email, groups (a list, empty if none), name (if given) and `claims` at the provider,
    submits the provider's form, and waits until the app has run again, signed in.
    Raises RuntimeError if Streamlit set no identity cookie (see the server's log)."""
    if not page.url.startswith(base_url):
        page.goto(base_url)
    page.get_by_role("button", name=button, exact=True).click(timeout=timeout_ms)
    page.wait_for_url("**/oauth2/authorize?**", timeout=timeout_ms)
    parts = urlsplit(page.url)
    redirect_uri = parse_qs(parts.query).get("redirect_uri", [""])[0]
    if not redirect_uri.startswith(base_url.rstrip("/") + "/"):
        # Streamlit keeps the login state in a cookie of the host the app was opened on;
        # a callback to another host name is dropped as "Missing provider".
        raise RuntimeError(f"the app at {base_url} signs in with redirect_uri "
                           f"{redirect_uri}: open it on that scheme://host:port")
    user_claims: dict[str, Any] = {"email": email, "groups": list(groups)}
    if name is not None:
        user_claims["name"] = name
    user_claims.update(claims or {})
    put_claims(f"{parts.scheme}://{parts.netloc}", email, user_claims)

    page.get_by_placeholder("sub").fill(email)
    page.get_by_role("button", name="Authorize").click(timeout=timeout_ms)
    page.wait_for_url(lambda url: url.startswith(base_url) and "oauth2callback" not in url,
                      timeout=timeout_ms)
    if not any(c["name"].startswith(USER_COOKIE) for c in page.context.cookies(base_url)):
        raise RuntimeError(f"no {USER_COOKIE} cookie after signing in as {email}: "
                           "Streamlit refused the sign-in (see its log)")
    wait_for_run(page, timeout_ms)


def sign_out(page, base_url: str, *, button: str = "Sign out",
             timeout_ms: int = TIMEOUT_MS) -> None:
    """Click the app's button calling st.logout(), confirm on the provider's end-session
    page, and wait until the app has run again, signed out."""
    page.get_by_role("button", name=button, exact=True).click(timeout=timeout_ms)
    page.wait_for_url("**/oauth2/end_session?**", timeout=timeout_ms)
    page.get_by_role("button", name="End session").click(timeout=timeout_ms)
    page.wait_for_url(lambda url: url.startswith(base_url) and "oauth2callback" not in url,
                      timeout=timeout_ms)
    if any(c["name"].startswith(USER_COOKIE) for c in page.context.cookies(base_url)):
        raise RuntimeError(f"the {USER_COOKIE} cookie is still set after signing out")
    wait_for_run(page, timeout_ms)


def wait_for_run(page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Until the page's script has finished a run."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=timeout_ms)

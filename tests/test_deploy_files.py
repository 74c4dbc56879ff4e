"""The deployment files stay valid and in step with the code: deploy/config.toml holds only
real Streamlit options with a server's values, the secrets template holds the keys Streamlit's
sign-in needs, the systemd units run the app with the variables it reads, and nginx passes
the websocket on."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import streamlit.config as st_config

from cs_metrics.core.settings import DEFAULT_SETTINGS_FILE, SETTINGS_ENV
from cs_metrics.core.warehouse import DB_ENV
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
CONFIG = DEPLOY / "config.toml"
APP_UNIT = DEPLOY / "cs-metrics.service"
IMPORT_UNIT = DEPLOY / "cs-metrics-import.service"
IMPORT_TIMER = DEPLOY / "cs-metrics-import.timer"
NGINX = DEPLOY / "nginx.conf"
SECRETS_EXAMPLE = REPO / ".streamlit" / "secrets.toml.example"
REPO_CONFIG = REPO / ".streamlit" / "config.toml"

# A commented-out example line of the secrets template: "# key = value" or "# [auth.NAME]".
COMMENTED_EXAMPLE = re.compile(r"^# (\w+ = .*|\[auth\.\w+\])$")


def flatten(table: dict, prefix: str = "") -> dict[str, object]:
    """{"server": {"port": 1}} -> {"server.port": 1}"""
    out: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def deploy_config() -> dict[str, object]:
    return flatten(tomllib.loads(CONFIG.read_text(encoding="utf-8")))


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}: continued lines are not expected"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in service.get("Environment", []):
        key, _, value = item.strip('"').partition("=")
        env[key] = value
    return env


def code_env_names() -> set[str]:
    """Every CS_METRICS_* name the library, the pages and the default settings mention."""
    files = [*(REPO / "cs_metrics").rglob("*.py"), *(REPO / "views").glob("*.py"),
             REPO / "app.py", DEFAULT_SETTINGS_FILE]
    names: set[str] = set()
    for f in files:
        names |= set(re.findall(r"\bCS_METRICS_[A-Z_]+\b", f.read_text(encoding="utf-8")))
    return names


def env_names_read_by_views() -> set[str]:
    """The variables the app's pages read with os.environ (directly or via a constant)."""
    text = "\n".join(f.read_text(encoding="utf-8") for f in (REPO / "views").glob("*.py"))
    consts = dict(re.findall(r'^([A-Z_]+)\s*=\s*"(CS_METRICS_[A-Z_]+)"', text, re.M))
    names = set(re.findall(r'os\.environ\.get\(\s*"(CS_METRICS_[A-Z_]+)"', text))
    for const in re.findall(r"os\.environ\.get\(\s*([A-Z_]+)", text):
        if const in consts:
            names.add(consts[const])
    return names


# --- nginx: a small parser of blocks and directives -------------------------------------------


def nginx_tree(text: str) -> list:
    """[(name, args, children)], children None for a simple directive."""
    text = re.sub(r"#[^\n]*", "", text)
    tokens = re.findall(r'"[^"]*"|\'[^\']*\'|[{};]|[^\s{};]+', text)
    pos = 0

    def block() -> list:
        nonlocal pos
        items: list = []
        words: list[str] = []
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if tok == ";":
                items.append((words[0], words[1:], None))
                words = []
            elif tok == "{":
                items.append((words[0], words[1:], block()))
                words = []
            elif tok == "}":
                assert not words, f"unterminated directive {words}"
                return items
            else:
                words.append(tok)
        assert not words, f"unterminated directive {words}"
        return items

    tree = block()
    assert pos == len(tokens), "unbalanced braces"
    return tree


def directives(items: list, name: str) -> list[list[str]]:
    return [args for n, args, children in items if n == name and children is None]


def blocks(items: list, name: str) -> list[tuple[list[str], list]]:
    return [(args, children) for n, args, children in items if n == name and children]


def megabytes(size: str) -> float:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", size)
    assert m, size
    return int(m.group(1)) * {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[
        m.group(2).lower()]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert m, value
    return int(m.group(1)) * {None: 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600,
                              "d": 86400}[m.group(2)]


def https_server(tree: list) -> list:
    servers = blocks(tree, "server")
    tls = [body for _, body in servers
           if any("ssl" in args for args in directives(body, "listen"))]
    assert len(tls) == 1, "one TLS server block"
    return tls[0]


# --- deploy/config.toml ------------------------------------------------------------------------


def test_deploy_config_holds_real_options_with_server_values():
    options = deploy_config()
    known = st_config._config_options_template
    unknown = sorted(set(options) - set(known))
    assert not unknown, f"not Streamlit config options: {unknown}"
    for name, value in options.items():
        expected = known[name].type
        if expected in (int, float) and not isinstance(value, bool):
            assert isinstance(value, (int, float)), f"{name} = {value!r} is not a number"
        else:
            assert isinstance(value, expected), f"{name} = {value!r} is not {expected}"
    assert options["server.headless"] is True
    assert options["server.enableXsrfProtection"] is True
    assert options["server.enableCORS"] is True
    assert options["server.fileWatcherType"] == "none"
    assert options["server.runOnSave"] is False
    assert options["browser.gatherUsageStats"] is False
    assert options["server.address"] == "127.0.0.1"  # only the proxy reaches it
    assert 1 <= options["server.maxUploadSize"] <= options["server.maxMessageSize"] * 10
    assert options["server.maxMessageSize"] >= 200  # never below Streamlit's default


def test_deploy_config_agrees_with_the_repository_config():
    """Streamlit layers the repository's config over the deployed one: no option may differ."""
    ours = deploy_config()
    repo = flatten(tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8")))
    clashes = {k: (ours[k], repo[k]) for k in set(ours) & set(repo) if ours[k] != repo[k]}
    assert not clashes


def test_repository_config_holds_real_options_and_the_serving_settings():
    repo = flatten(tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8")))
    unknown = sorted(set(repo) - set(st_config._config_options_template))
    assert not unknown, f"not Streamlit config options: {unknown}"
    # many sessions on one interpreter: no full collection after every run, no rewriting of
    # page code (bench/README.md, "Sessions")
    assert repo["runner.postScriptGC"] is False
    assert repo["runner.magicEnabled"] is False


def test_no_page_relies_on_magic():
    """With runner.magicEnabled off a bare expression in a page shows nothing: every page
    calls Streamlit for what it shows (docstrings aside)."""
    bare = []
    for path in [REPO / "app.py", *sorted((REPO / "views").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            body = getattr(node, "body", None)
            if not isinstance(body, list):
                continue
            for i, stmt in enumerate(body):
                if not isinstance(stmt, ast.Expr) or isinstance(
                        stmt.value, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom)):
                    continue
                if i == 0 and isinstance(stmt.value, ast.Constant) and isinstance(
                        stmt.value.value, str):
                    continue  # a docstring
                bare.append(f"{path.name}:{stmt.lineno}")
    assert not bare, f"bare expressions (magic is off, they show nothing): {bare}"


def test_streamlit_reads_the_deployed_config_without_warnings(tmp_path):
    """Installed as the service user's ~/.streamlit/config.toml, run from the repository:
    every option takes effect and Streamlit warns about none."""
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    shutil.copy(CONFIG, home / ".streamlit" / "config.toml")
    names = sorted(deploy_config())
    script = (
        "import json, streamlit.config as c\n"
        "c.get_config_options(force_reparse=True)\n"
        f"print(json.dumps({{n: [c.get_option(n), c._config_options[n].where_defined]"
        f" for n in {names!r}}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env["HOME"] = str(home)
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert "not a valid config option" not in run.stderr + run.stdout
    assert "Error parsing config" not in run.stderr + run.stdout
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    repo_keys = set(flatten(tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8"))))
    for name, value in deploy_config().items():
        got, where = seen[name]
        assert got == value, name
        if name not in repo_keys:
            assert where == str(home / ".streamlit" / "config.toml"), (name, where)


# --- the secrets template ----------------------------------------------------------------------


def test_secrets_example_has_every_auth_key():
    secrets = tomllib.loads(SECRETS_EXAMPLE.read_text(encoding="utf-8"))
    auth = secrets["auth"]
    for key in ("redirect_uri", "cookie_secret", "client_id", "client_secret",
                "server_metadata_url"):
        assert isinstance(auth.get(key), str) and auth[key], key
    assert auth["redirect_uri"].startswith("https://")
    assert auth["redirect_uri"].endswith("/oauth2callback")
    assert auth["server_metadata_url"].endswith("/.well-known/openid-configuration")
    assert isinstance(auth["client_kwargs"], dict)
    assert "client_kwargs" in auth and "expose_tokens" in SECRETS_EXAMPLE.read_text()


def uncommented_example() -> str:
    """The template with its commented-out keys and [auth.NAME] tables switched on."""
    lines = SECRETS_EXAMPLE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line[2:] if COMMENTED_EXAMPLE.match(line) else line for line in lines)


def test_secrets_example_commented_keys_are_valid_and_known():
    secrets = tomllib.loads(uncommented_example())
    providers = {k: v for k, v in secrets["auth"].items()
                 if isinstance(v, dict) and "client_id" in v}
    assert len(providers) >= 2, "the named-provider form is documented"
    for name, section in providers.items():
        assert "_" not in name, "Streamlit refuses provider names with an underscore"
        assert {"client_id", "client_secret", "server_metadata_url"} <= set(section), name
    assert secrets["auth"]["expose_tokens"]
    # Top-level keys become environment variables: each must be one the code reads.
    top = {k for k, v in secrets.items() if not isinstance(v, dict)}
    assert top, "the environment variables are documented"
    assert top <= code_env_names(), f"unknown variables: {sorted(top - code_env_names())}"
    defaults = tomllib.loads(DEFAULT_SETTINGS_FILE.read_text(encoding="utf-8"))
    notifications = defaults["notifications"]
    assert {notifications["email"]["password_env"], notifications["webhook"]["urls_env"],
            DB_ENV, SETTINGS_ENV} <= top


def test_streamlit_accepts_the_secrets_example(tmp_path):
    """Streamlit's own check of the sign-in settings, for the default and named providers."""
    path = tmp_path / "secrets.toml"
    path.write_text(uncommented_example(), encoding="utf-8")
    script = (
        "import streamlit.config as c\n"
        f"c.set_option('secrets.files', [{str(path)!r}])\n"
        "from streamlit.auth_util import validate_auth_credentials\n"
        "for name in ('default', 'google', 'microsoft'):\n"
        "    validate_auth_credentials(name)\n"
        "print('valid')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "valid" in run.stdout, run.stderr[-2000:]


def test_real_secrets_file_is_ignored_by_git():
    lines = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines()]
    assert ".streamlit/secrets.toml" in lines
    if shutil.which("git") and (REPO / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", ".streamlit/secrets.toml"],
                                 cwd=REPO)
        assert ignored.returncode == 0
        example = subprocess.run(["git", "check-ignore", "-q", str(SECRETS_EXAMPLE)],
                                 cwd=REPO)
        assert example.returncode == 1, "the template itself must be committed"


# --- systemd -----------------------------------------------------------------------------------


def test_app_unit_runs_the_app_with_the_variables_it_reads():
    sections = unit(APP_UNIT)
    service = sections["Service"]
    exec_start = service["ExecStart"]
    assert len(exec_start) == 1
    argv = exec_start[0].split()
    assert argv[1:] == ["-m", "streamlit", "run", "app.py"]
    workdir = service["WorkingDirectory"][0]
    assert argv[0] == f"{workdir}/.venv/bin/python"
    assert (REPO / "app.py").is_file()
    user = service["User"][0]
    assert user and user != "root"
    assert service["Restart"] == ["on-failure"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "ProtectHome": "yes"}.items():
        assert service.get(key) == [value], key

    env = environment(service)
    known = code_env_names()
    ours = {k for k in env if k.startswith("CS_METRICS_")}
    assert ours <= known, f"variables the code never reads: {sorted(ours - known)}"
    # the warehouse, the inbox the pages refresh from, uploaded datasets, the settings
    needed = {DB_ENV, SETTINGS_ENV, "CS_METRICS_DATASETS"} | env_names_read_by_views()
    needed.discard("CS_METRICS_BASEMAP")  # optional: decided from the network by default
    assert needed <= ours, f"missing: {sorted(needed - ours)}"
    # every data path in the one directory the sandbox lets the service write
    state = "/var/lib/" + service["StateDirectory"][0]
    for name in ("CS_METRICS_DB", "CS_METRICS_INBOX", "CS_METRICS_DATASETS"):
        assert env[name].startswith(state + "/"), name
    assert env["HOME"] == state  # where Streamlit finds ~/.streamlit/config.toml


def test_app_unit_start_up_call_matches_the_config():
    service = unit(APP_UNIT)["Service"]
    options = deploy_config()
    base = f"http://{options['server.address']}:{options['server.port']}/_stcore/"
    posts = " ".join(service.get("ExecStartPost", []))
    assert base + "health" in posts
    assert base + "script-health-check" in posts
    assert options["server.scriptHealthCheckEnabled"] is True
    assert all(p.startswith("-") for p in service["ExecStartPost"]), \
        "a failed start-up call must not fail the service"


def test_import_unit_loads_beside_the_running_app():
    app = unit(APP_UNIT)
    imp = unit(IMPORT_UNIT)
    # the load is handed to the running app: nothing stops or restarts it
    for key in ("Conflicts", "OnSuccess", "OnFailure"):
        assert key not in imp["Unit"], key
    assert imp["Unit"]["After"] == [APP_UNIT.name]
    service = imp["Service"]
    assert float(environment(service)["CS_METRICS_JOB_TIMEOUT"]) >= 3600
    assert service["Type"] == ["oneshot"]
    for key in ("User", "WorkingDirectory", "StateDirectory"):
        assert service[key] == app["Service"][key], key
    env = environment(service)
    app_env = environment(app["Service"])
    for name in ("CS_METRICS_DB", "CS_METRICS_SETTINGS", "HOME"):
        assert env[name] == app_env[name], name
    python = f"{service['WorkingDirectory'][0]}/.venv/bin/python"
    ingest, alerts = service["ExecStart"]
    assert ingest.split()[:4] == [python, "-m", "cs_metrics", "ingest"]
    assert "$INGEST_ARGS" in ingest.split() and "INGEST_ARGS" in env
    assert ingest.split()[-2:] == ["--db", "${CS_METRICS_DB}"]
    assert alerts.split() == [python, "-m", "cs_metrics", "alerts", "--once", "--db",
                              "${CS_METRICS_DB}"]
    timer = unit(IMPORT_TIMER)
    assert timer["Timer"]["Unit"] == [IMPORT_UNIT.name]
    assert timer["Timer"]["OnCalendar"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_parses_the_units():
    run = subprocess.run(["systemd-analyze", "verify", str(APP_UNIT), str(IMPORT_UNIT),
                          str(IMPORT_TIMER)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (run.stdout + run.stderr).splitlines()
                  if re.search(r"Unknown (key|section|lvalue)|Failed to parse|Invalid", line)]
    assert not complaints


# --- nginx -------------------------------------------------------------------------------------


def test_nginx_upgrades_the_websocket():
    tree = nginx_tree(NGINX.read_text(encoding="utf-8"))
    server = https_server(tree)
    streams = [body for args, body in blocks(server, "location") if args == ["/_stcore/stream"]]
    assert len(streams) == 1, "a location for Streamlit's websocket"
    stream = streams[0]
    headers = {args[0].lower(): args[1] for args in directives(stream, "proxy_set_header")}
    assert headers["upgrade"] == "$http_upgrade"
    connection = headers["connection"]
    maps = [body for args, body in blocks(tree, "map")
            if args == ["$http_upgrade", connection]]
    assert maps, f"no map of $http_upgrade to {connection}"
    assert ["default", "upgrade"] in [[n, *a] for n, a, _ in maps[0]]
    version = directives(stream, "proxy_http_version") or directives(server, "proxy_http_version")
    assert version == [["1.1"]]
    assert seconds(directives(stream, "proxy_read_timeout")[0][0]) >= 3600
    assert directives(stream, "proxy_buffering") == [["off"]]
    # Streamlit accepts the websocket when its Origin matches the Host it is given
    assert headers["host"] in ("$http_host", "$host")


def test_nginx_terminates_tls_and_matches_the_app():
    tree = nginx_tree(NGINX.read_text(encoding="utf-8"))
    server = https_server(tree)
    assert directives(server, "ssl_certificate") and directives(server, "ssl_certificate_key")
    protocols = directives(server, "ssl_protocols")[0]
    assert not {"SSLv3", "TLSv1", "TLSv1.1"} & set(protocols)
    options = deploy_config()
    upstreams = blocks(tree, "upstream")
    assert len(upstreams) == 1
    name, body = upstreams[0][0][0], upstreams[0][1]
    assert directives(body, "server")[0][0] == (
        f"{options['server.address']}:{options['server.port']}")
    for args, body in blocks(server, "location"):
        for target in directives(body, "proxy_pass"):
            assert target == [f"http://{name}"], args
    # uploads: the proxy lets through what Streamlit accepts, and not much more
    body_mb = megabytes(directives(server, "client_max_body_size")[0][0])
    assert options["server.maxUploadSize"] <= body_mb <= options["server.maxUploadSize"] * 1.2
    # the start-up call of the service runs the whole app: never from outside
    if options.get("server.scriptHealthCheckEnabled"):
        blocked = [body for args, body in blocks(server, "location")
                   if args == ["=", "/_stcore/script-health-check"]]
        assert blocked and directives(blocked[0], "return")[0][0] in ("403", "404")
    plain = [body for _, body in blocks(tree, "server") if body is not server]
    assert any(directives(loc, "return")[0][0] == "301"
               for b in plain for _, loc in blocks(b, "location") if directives(loc, "return"))


def test_readme_names_only_deploy_files_that_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "## Deployment" in readme
    named = set(re.findall(r"deploy/[\w.-]+", readme))
    assert {f"deploy/{p.name}" for p in (CONFIG, APP_UNIT, IMPORT_UNIT, NGINX)} <= named
    missing = sorted(n for n in named if not (REPO / n).exists())
    assert not missing


def _listening_addresses(port: int) -> set[str]:
    """The local addresses a socket listens on at ``port`` (IPv4 and IPv6), from /proc."""
    found = set()
    for name, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port and len(address) == width:
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_local_mode_listens_on_loopback_only(tmp_path):
    """`streamlit run app.py` with the repository's config has no sign-in: nobody else on the
    network may reach it. The socket must be bound to 127.0.0.1, not to every interface."""
    from tests.test_browser import free_port, wait_healthy

    repo = flatten(tomllib.loads(REPO_CONFIG.read_text(encoding="utf-8")))
    assert repo["server.address"] == "127.0.0.1"
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, DB_ENV: str(tmp_path / "wh.duckdb"), "CS_METRICS_BASEMAP": "off"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.fileWatcherType", "none"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/_stcore/health", log)
        addresses = _listening_addresses(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # 0100007F is 127.0.0.1 as /proc writes it; 00000000 (or all-zero IPv6) is every interface
    assert addresses == {"0100007F"}, addresses

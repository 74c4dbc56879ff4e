"""``cs-metrics app``: the dashboard starts from any folder, on loopback, with no shell."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cs_metrics.cli import app as app_command
from cs_metrics.cli.main import build_parser, main
from tests.test_browser import free_port

REPO = Path(__file__).resolve().parents[1]


def test_the_app_file_is_the_one_beside_the_library():
    assert app_command.app_file() == REPO / "app.py"


def test_the_command_is_an_argument_list_on_loopback_without_statistics(monkeypatch):
    calls = []
    monkeypatch.setattr(app_command.subprocess, "call", lambda argv: calls.append(argv) or 7)
    assert main(["app", "--port", "8600", "--headless"]) == 7
    (argv,) = calls
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py")]
    opts = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert opts == {"--server.address": "127.0.0.1", "--server.port": "8600",
                    "--server.headless": "true", "--browser.gatherUsageStats": "false"}


@pytest.mark.parametrize("port", ["0", "70000", "80; rm -rf /", "x"])
def test_a_bad_port_is_refused_before_anything_starts(port, monkeypatch, capsys):
    monkeypatch.setattr(app_command.subprocess, "call",
                        lambda argv: pytest.fail("started with a bad port"))
    with pytest.raises(SystemExit) as exc:
        main(["app", "--port", port])
    assert exc.value.code == 2
    assert "port" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["", "   ", "127.0.0.1 --server.enableCORS=false",
                                     "x;rm -rf /", "$(id)"])
def test_an_address_that_is_not_one_is_refused(address, monkeypatch, capsys):
    monkeypatch.setattr(app_command.subprocess, "call",
                        lambda argv: pytest.fail("started with a bad address"))
    with pytest.raises(SystemExit) as exc:
        main(["app", "--address", address])
    assert exc.value.code == 2
    assert "not an address" in capsys.readouterr().err


def test_a_missing_app_file_is_a_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(app_command, "app_file", lambda: tmp_path / "app.py")
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert "app file" in err and "Traceback" not in err


def test_it_is_listed_in_help():
    assert "app" in build_parser().format_help()


def test_the_app_serves_when_started_from_another_folder(sample_db, tmp_path):
    """Started from a folder that is not the checkout, the app answers its health check and
    serves its page; its data path comes from the environment."""
    port = free_port()
    env = {**os.environ, "CS_METRICS_DB": str(sample_db), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cs_metrics", "app", "--port", str(port), "--headless"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.5)
        assert body == b"ok", proc.stdout.read().decode() if proc.poll() is not None else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        assert not (tmp_path / "data").exists()  # the warehouse came from CS_METRICS_DB
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()

"""``app``: start the Streamlit app (the one ``streamlit run app.py`` starts), from any folder.

The app file ships beside the library (a checkout's root, or site-packages when installed);
an installed app has no ``.streamlit/config.toml`` beside the working directory, so the
options that matter are passed on the command line: local mode listens on loopback only and
sends no usage statistics.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from cs_metrics.core.errors import CsMetricsError


def app_file() -> Path:
    """Where ``app.py`` is: one folder above the ``cs_metrics`` package."""
    return Path(__file__).resolve().parents[2] / "app.py"


def streamlit_argv(args: argparse.Namespace) -> list[str]:
    """The command that runs the app: a list of arguments, never a shell line."""
    app = app_file()
    if not app.is_file():
        raise CsMetricsError(
            f"The app file {app} is missing: reinstall the package (pip install cs-metrics) "
            "or run `streamlit run app.py` from a checkout."
        )
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", args.address,
        "--server.port", str(args.port),
        "--server.headless", "true" if args.headless else "false",
        "--browser.gatherUsageStats", "false",
    ]


def cmd_app(args: argparse.Namespace) -> int:
    return subprocess.call(streamlit_argv(args))


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1 to 65535)")
    return port


def _address(text: str) -> str:
    # An empty address makes Streamlit listen on every interface: that must be said, not implied.
    text = text.strip()
    if not text or any(c.isspace() or c in "=;&|$`'\"" for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address to listen on; give one such as 127.0.0.1 (this "
            "machine only) or 0.0.0.0 (every interface: only with sign-in configured)")
    return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "app", help="start the dashboard app (streamlit) from any folder",
        description="Start the dashboard. The warehouse is $CS_METRICS_DB, else "
                    "data/warehouse.duckdb under the current folder (a sample is generated "
                    "there on the first start).",
    )
    a.add_argument("--port", type=_port, default=8501, help="port to listen on (default 8501)")
    a.add_argument("--address", type=_address, default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; a "
                        "hosted app needs sign-in configured, see the README)")
    a.add_argument("--headless", action="store_true",
                   help="do not open a browser window")
    a.set_defaults(func=cmd_app)

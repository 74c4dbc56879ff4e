"""The one error type users see: a sentence they can act on."""

from __future__ import annotations

from pathlib import Path


class CsMetricsError(Exception):
    """Bad input, a bad mapping or a warehouse problem, explained in one sentence.

    The command line prints it and exits with code 2; pages show it with ``st.error``.
    """


class WarehouseLocked(CsMetricsError):
    """The warehouse file is held open by another process (``path``: the file)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path

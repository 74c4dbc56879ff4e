"""The one error type users see: a sentence they can act on."""

from __future__ import annotations


class CsMetricsError(Exception):
    """Bad input, a bad mapping or a warehouse problem, explained in one sentence.

    The command line prints it and exits with code 2; pages show it with ``st.error``.
    """

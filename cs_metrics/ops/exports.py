"""Exports' audit trail: every file a person downloads is written to the audit log
(``cs_metrics.core.audit``) with what is needed to trace a file back to its export.

The app's download buttons call this (``views/_exports.py``); the library decides what an
export record holds, so every caller writes the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cs_metrics.core import audit as audit_log
from cs_metrics.core.access import Scope
from cs_metrics.core.warehouse import Warehouse

__all__ = ["export_detail", "record_export"]


def export_detail(data: bytes, rows: int | None, filters: str | None) -> dict:
    """What the audit log keeps of an exported file: its size and SHA-256, its rows and the
    filters it was made with (as the page describes them), when known."""
    detail: dict = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if rows is not None:
        detail["rows"] = int(rows)
    if filters is not None:
        detail["filters"] = filters
    return detail


def record_export(wh: Warehouse, scope: Scope, file_name: str,
                  detail: Mapping[str, Any]) -> None:
    """Write the export of ``file_name`` by ``scope``'s person to ``wh``'s audit log (its
    base: a scoped warehouse writes to the whole file). Raises ``CsMetricsError`` when the
    log cannot be written; the caller decides whether the file still goes out."""
    audit_log.record(wh.base, scope.actor, scope.role, "export", file_name, dict(detail),
                     issuer=scope.issuer, subject=scope.subject)

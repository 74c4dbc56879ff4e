"""Canonical tables: columns, types, required columns, keys and enumerations (one place)."""

from __future__ import annotations

from dataclasses import dataclass

STATUSES: tuple[str, ...] = ("open", "in_progress", "closed")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
SEVERITIES: tuple[str, ...] = ("minor", "major", "critical")

SCORE_RANGES: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type: VARCHAR, TIMESTAMP, DOUBLE, INTEGER, BOOLEAN, DATE, VARCHAR[]
    required: bool = False
    enum: tuple[str, ...] | None = None
    # a count, a duration or a distance: a negative value is rejected at load (negative_value)
    non_negative: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: str | None  # unique per row; duplicates are rejected

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name: str, type_: str = "VARCHAR", required: bool = False, enum=None,
       non_negative: bool = False) -> Column:
    return Column(name, type_, required, enum, non_negative)


TICKETS = Table(
    "tickets",
    (
        _c("ticket_id", required=True),
        _c("created_at", "TIMESTAMP", required=True),
        _c("status", required=True, enum=STATUSES),
        _c("first_response_at", "TIMESTAMP"),
        _c("resolved_at", "TIMESTAMP"),
        _c("priority", enum=PRIORITIES),
        _c("channel"),
        _c("domain"),
        _c("location"),
        _c("location_lat", "DOUBLE"),
        _c("location_lon", "DOUBLE"),
        _c("customer_id"),
        _c("customer_location"),
        _c("customer_segment"),
        _c("rep_id"),
        _c("contacts", "INTEGER", non_negative=True),
        _c("reopened_count", "INTEGER", non_negative=True),
        _c("handle_time_s", "INTEGER", non_negative=True),
        _c("subject"),
        _c("is_test", "BOOLEAN"),
        # labels: a list in Parquet and JSONL, delimited text in CSV (mapping tags_delimiter)
        _c("tags", "VARCHAR[]"),
        # the source system's own SLA due times: when present they decide the SLA verdicts
        _c("first_response_due_at", "TIMESTAMP"),
        _c("resolution_due_at", "TIMESTAMP"),
    ),
    key="ticket_id",
)

TICKET_EVENTS = Table(
    "ticket_events",
    (
        _c("ticket_id", required=True),
        _c("event_at", "TIMESTAMP", required=True),
        _c("status", required=True, enum=STATUSES),
        _c("rep_id"),
    ),
    key=None,
)

FEEDBACK = Table(
    "feedback",
    (
        _c("feedback_id"),
        _c("ticket_id", required=True),
        _c("submitted_at", "TIMESTAMP"),
        _c("csat", "INTEGER"),
        _c("nps", "INTEGER"),
        _c("ces", "INTEGER"),
        _c("comment"),
    ),
    key="feedback_id",
)

REPRESENTATIVES = Table(
    "representatives",
    (
        _c("rep_id", required=True),
        _c("name"),
        _c("team"),
        _c("manager"),
        _c("hired_at", "DATE"),
        _c("location"),
    ),
    key="rep_id",
)

CUSTOMERS = Table(
    "customers",
    (
        _c("customer_id", required=True),
        _c("name"),
        _c("segment"),
        _c("city"),
        _c("lat", "DOUBLE"),
        _c("lon", "DOUBLE"),
        _c("annual_value", "DOUBLE"),
    ),
    key="customer_id",
)

OUTAGES = Table(
    "outages",
    (
        _c("outage_id", required=True),
        _c("location"),
        _c("lat", "DOUBLE"),
        _c("lon", "DOUBLE"),
        _c("radius_km", "DOUBLE", non_negative=True),
        _c("started_at", "TIMESTAMP", required=True),
        _c("ended_at", "TIMESTAMP"),
        _c("severity", enum=SEVERITIES),
        _c("description"),
    ),
    key="outage_id",
)

TABLES: dict[str, Table] = {
    t.name: t for t in (TICKETS, TICKET_EVENTS, FEEDBACK, REPRESENTATIVES, CUSTOMERS, OUTAGES)
}

# Order in which tables load: dimensions first so ticket-derived columns can join them.
LOAD_ORDER: tuple[str, ...] = (
    "representatives",
    "customers",
    "outages",
    "tickets",
    "ticket_events",
    "feedback",
)

# Extensions a canonical folder may use, in order of preference.
FILE_EXTENSIONS: tuple[str, ...] = (".parquet", ".csv", ".csv.gz", ".jsonl")

# What figures can be grouped and filtered by: ticket columns, canonical or derived at load
# (the registry, cs_metrics.metrics.registry.DIMENSIONS, adds the LIST_DIMENSIONS below).
DIMENSIONS: tuple[str, ...] = (
    "channel", "priority", "domain", "location", "customer_location", "customer_segment",
    "rep_id", "rep_name", "team", "manager", "status",
)

# Dimensions over a list column: a ticket counts once in each of its values (group) and
# matches a filter when any of its values does. Dimension -> list column of ``tickets``.
LIST_DIMENSIONS: dict[str, str] = {"tag": "tags"}

"""Core: errors, the canonical schema, settings, the DuckDB warehouse, access and audit."""

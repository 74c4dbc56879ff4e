"""Ingest: mapping files, validation, loading, the inbox, uploaded datasets and data quality."""

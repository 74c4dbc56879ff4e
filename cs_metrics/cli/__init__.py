"""The command line (`python -m cs_metrics`, `cs-metrics`)."""

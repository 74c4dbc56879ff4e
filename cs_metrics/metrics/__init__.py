"""Metrics: the registry (metrics as data), its compiler to SQL, drill-downs and live figures."""

"""Great-circle distance, in numpy and as SQL text, with one Earth radius for both.

The generator places outage surges with the numpy form and the outage analytics count
customers and tickets with the SQL form, so both sides draw the same circle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EARTH_RADIUS_KM", "KM_PER_DEGREE_LAT", "haversine_km", "haversine_sql"]

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
KM_PER_DEGREE_LAT = EARTH_RADIUS_KM * np.pi / 180.0


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km between WGS84 points (arrays broadcast)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat = p2 - p1
    dlon = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def haversine_sql(lat1: str, lon1: str, lat2: str, lon2: str) -> str:
    """The same distance as a SQL expression over four column expressions (trusted text).

    Written term by term like ``haversine_km`` so a point on the edge of a circle falls on
    the same side in SQL and in numpy.
    """
    a = (
        f"pow(sin((radians({lat2}) - radians({lat1})) / 2), 2) "
        f"+ cos(radians({lat1})) * cos(radians({lat2})) "
        f"* pow(sin(radians({lon2} - {lon1}) / 2), 2)"
    )
    return f"(2 * {EARTH_RADIUS_KM!r} * asin(sqrt(least({a}, 1.0))))"

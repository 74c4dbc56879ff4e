"""Map layers aggregated in DuckDB: ticket density and customers as grid cells, never raw rows.

A map of 10M tickets must not send 10M points to the browser. Tickets and customers are
binned into square cells of ``cell_km`` on an equirectangular projection around the data's
mean latitude (a few percent of distortion across a country, none that a density map shows),
and each cell travels as one row: its centre, its count and what the tooltip says.
"""

from __future__ import annotations

import math

import pandas as pd

from cs_metrics.core.errors import CsMetricsError
from cs_metrics.core.geo import KM_PER_DEGREE_LAT
from cs_metrics.core.warehouse import Warehouse
from cs_metrics.ingestion.loader import coordinate_checks
from cs_metrics.metrics.registry import Filters, filter_sql

__all__ = ["DENSITY_COLUMNS", "SEGMENT_COLUMNS", "auto_cell_km", "customer_cells",
           "customer_cities", "customer_places", "ticket_density"]

DENSITY_COLUMNS: tuple[str, ...] = ("lat", "lon", "tickets", "top_domain", "share_pct")
SEGMENT_COLUMNS: tuple[str, ...] = ("segment", "lat", "lon", "customers")
MAX_CELLS = 5000  # what a browser draws smoothly; a finer grid is refused


def _check_cell(cell_km: float) -> float:
    if not cell_km > 0 or math.isinf(cell_km):
        raise CsMetricsError(f"A map cell must be a positive number of km, not {cell_km!r}.")
    return float(cell_km)


def auto_cell_km(span_km: float, cells_across: int = 60) -> float:
    """A cell size that draws about ``cells_across`` cells over ``span_km`` (at least 1 km),
    rounded to 1, 2 or 5 times a power of ten so legends read well."""
    raw = max(1.0, span_km / max(1, cells_across))
    power = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if raw <= step * power:
            return float(step * power)
    return float(10 * power)


def _binned(table: str, lat: str, lon: str, where: str, cell_km: float) -> str:
    """SQL: the rows of ``table`` with their cell (cx, cy) and the cell's centre.

    ``lat``/``lon``/``where`` are trusted fragments of this module; the cell size and the
    reference latitude is computed; the ``?`` order is the where clause's own, then cell_km
    twice."""
    return f"""
        with pts as (
            select *, {lat} as p_lat, {lon} as p_lon from {table} t
            where {where} and {lat} is not null and {lon} is not null
                and {lat} between -90 and 90 and {lon} between -180 and 180
        ),
        ref as (select cos(radians(coalesce(avg(p_lat), 0))) as k from pts),
        cells as (
            select pts.*,
                floor(p_lon * ref.k * {KM_PER_DEGREE_LAT!r} / ?) as cx,
                floor(p_lat * {KM_PER_DEGREE_LAT!r} / ?) as cy,
                ref.k as k
            from pts, ref
        )
    """


def _centres(df: pd.DataFrame, cell_km: float) -> pd.DataFrame:
    k = df["k"].where(df["k"] > 1e-6, 1e-6)
    df["lat"] = (df["cy"] + 0.5) * cell_km / KM_PER_DEGREE_LAT
    df["lon"] = (df["cx"] + 0.5) * cell_km / (KM_PER_DEGREE_LAT * k)
    return df


def ticket_density(wh: Warehouse, filters: Filters | None = None, cell_km: float = 25.0
                   ) -> pd.DataFrame:
    """Tickets per grid cell of their ``location_lat``/``location_lon``.

    Columns ``lat, lon`` (the cell's centre), ``tickets``, ``top_domain`` (the cell's most
    frequent domain) and ``share_pct`` (of the located tickets). Tickets without coordinates
    are left out; ``frame.attrs["unlocated"]`` counts them. So are tickets whose coordinate
    ingest warns about (out of range, exactly 0, 0, or a placeholder: the exact coordinate of
    many tickets, judged among all the warehouse's tickets); ``frame.attrs["suspect"]``
    counts them. Test tickets are left out and the filters apply as everywhere.
    """
    cell_km = _check_cell(cell_km)
    empty = pd.DataFrame({c: pd.Series(dtype="float64" if c != "top_domain" else "object")
                          for c in DENSITY_COLUMNS})
    if not wh.has_table("tickets"):
        raise CsMetricsError(f"The warehouse {wh.path} has no tickets yet; run "
                             "`python -m cs_metrics ingest SOURCE` first.")
    if not {"location_lat", "location_lon"} <= wh.nonempty_columns("tickets"):
        empty.attrs["unlocated"] = None
        empty.attrs["suspect"] = None
        return empty
    where, params = filter_sql(filters or Filters())
    off_range, placeholder = coordinate_checks("t.location_lat", "t.location_lon", "tickets")
    plotted = f"{where} and t.location_lat is not null and t.location_lon is not null " \
        f"and not {off_range} and not {placeholder}"
    sql = _binned("tickets", "t.location_lat", "t.location_lon", plotted, cell_km) + """,
        by_domain as (
            select cx, cy, any_value(k) as k, domain, count(*) as n
            from cells group by cx, cy, domain
        ),
        final as (
            select cx, cy, any_value(k) as k, sum(n) as tickets,
                arg_max(domain, n) as top_domain
            from by_domain group by cx, cy
        )
        select * from final order by tickets desc
    """
    df = wh.df(sql, [*params, cell_km, cell_km])
    if len(df) > MAX_CELLS:
        raise CsMetricsError(
            f"{len(df):,} map cells of {cell_km:g} km are too many to draw; use cells of at "
            f"least {cell_km * math.sqrt(len(df) / MAX_CELLS):.0f} km."
        )
    unlocated = wh.scalar(
        f"select count(*) from tickets t where {where} and "
        "(t.location_lat is null or t.location_lon is null)", params)
    suspect = wh.scalar(
        f"select count(*) from tickets t where {where} and t.location_lat is not null and "
        f"t.location_lon is not null and ({off_range} or {placeholder})", params)
    if df.empty:
        empty.attrs["unlocated"] = int(unlocated or 0)
        empty.attrs["suspect"] = int(suspect or 0)
        return empty
    df = _centres(df, cell_km)
    df["tickets"] = df["tickets"].astype("int64")
    df["share_pct"] = 100.0 * df["tickets"] / df["tickets"].sum()
    out = df[list(DENSITY_COLUMNS)].reset_index(drop=True)
    out.attrs["unlocated"] = int(unlocated or 0)
    out.attrs["suspect"] = int(suspect or 0)
    return out


def customer_cells(wh: Warehouse, cell_km: float = 25.0) -> pd.DataFrame:
    """Customers per grid cell and segment: columns ``segment, lat, lon, customers``.

    Customers without coordinates are left out; no customers table (or no coordinates) gives
    an empty frame.
    """
    cell_km = _check_cell(cell_km)
    empty = pd.DataFrame({"segment": pd.Series(dtype="object"),
                          "lat": pd.Series(dtype="float64"), "lon": pd.Series(dtype="float64"),
                          "customers": pd.Series(dtype="int64")})
    if not wh.has_table("customers") or \
            not {"lat", "lon"} <= wh.nonempty_columns("customers"):
        return empty
    sql = _binned("customers", "t.lat", "t.lon", "true", cell_km) + """,
        final as (
            select coalesce(segment, 'Unknown') as segment, cx, cy, any_value(k) as k,
                count(*) as customers
            from cells group by 1, cx, cy
        )
        select * from final order by customers desc
    """
    df = wh.df(sql, [cell_km, cell_km])
    if len(df) > MAX_CELLS:
        raise CsMetricsError(
            f"{len(df):,} customer cells of {cell_km:g} km are too many to draw; use cells of "
            f"at least {cell_km * math.sqrt(len(df) / MAX_CELLS):.0f} km."
        )
    if df.empty:
        return empty
    df = _centres(df, cell_km)
    df["customers"] = df["customers"].astype("int64")
    return df[list(SEGMENT_COLUMNS)].reset_index(drop=True)


def customer_places(wh: Warehouse, cell_km: float = 25.0) -> pd.DataFrame:
    """Customers per grid cell, every segment together: columns ``lat, lon, customers``
    (``customer_cells`` summed over the segments), for a map that picks a place."""
    cells = customer_cells(wh, cell_km)
    return cells.groupby(["lat", "lon"], as_index=False)["customers"].sum()


def customer_cities(wh: Warehouse) -> list[str]:
    """The cities of the customers with coordinates, most customers first, ties by name: the
    places a what-if outage can be centred on by name. No customers table or no city gives
    an empty list."""
    if not wh.has_table("customers") or "city" not in wh.nonempty_columns("customers"):
        return []
    df = wh.df("select city, count(*) as n from customers where city is not null "
               "and lat is not null group by city order by n desc, city")
    return [str(c) for c in df["city"]]

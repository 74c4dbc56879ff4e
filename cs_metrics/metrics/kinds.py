"""The kinds of metric the registry declares, each rendering its own SQL aggregate.

A metric is one declaration (``registry.Metric``) holding one of these frozen values; the
compiler (``compiler.py``) only asks a kind for its SQL, so adding a metric never touches the
compiler. Columns and conditions are plain SQL over the query table ``tickets`` (alias ``t``),
written by the registry, never by a user: values only ever travel as parameters.

A *flow* kind aggregates the tickets of a period (``stock`` is False); a *stock* kind
(``Cumulative``) counts what is open at each period's end, so earlier tickets count too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


def _literal(number: float) -> str:
    """A double literal as SQL reads it (``100.0``, ``0.5``): never an integer literal, so a
    division stays a division of doubles on every engine."""
    return repr(float(number))


@dataclass(frozen=True)
class Count:
    """Tickets (rows of the group), those meeting ``filter`` when one is given."""

    filter: str | None = None
    stock: ClassVar[bool] = False

    def sql(self) -> str:
        return "count(*)" if self.filter is None else f"count(*) filter (where {self.filter})"


@dataclass(frozen=True)
class CountDistinct:
    """Distinct non-null values of ``column``."""

    column: str
    stock: ClassVar[bool] = False

    def sql(self) -> str:
        return f"count(distinct {self.column})"


@dataclass(frozen=True)
class Sum:
    """The sum of ``column`` (per-ticket figures stored at load, such as survey sums)."""

    column: str
    stock: ClassVar[bool] = False

    def sql(self) -> str:
        return f"sum({self.column})"


@dataclass(frozen=True)
class Difference:
    """``left`` minus ``right`` (NPS: promoters minus detractors), as one term."""

    left: Sum | Count
    right: Sum | Count
    stock: ClassVar[bool] = False

    def sql(self) -> str:
        return f"({self.left.sql()} - {self.right.sql()})"


@dataclass(frozen=True)
class Ratio:
    """``scale`` x ``numerator`` / ``denominator``; null when the denominator is zero (no
    ticket to judge is unknown, not 0 %). The scale is a double literal written first, so
    integer counts and sums divide as decimals, never as integers."""

    numerator: Count | Sum | Difference
    denominator: Count | Sum
    scale: float = 100.0
    stock: ClassVar[bool] = False

    def sql(self) -> str:
        return (f"{_literal(self.scale)} * {self.numerator.sql()} "
                f"/ nullif({self.denominator.sql()}, 0)")


@dataclass(frozen=True)
class Mean:
    """The mean of ``column`` over the rows meeting ``filter``, divided by ``divisor`` (a
    unit change such as seconds to minutes). Nulls are left out, as ``avg`` does."""

    column: str
    filter: str | None = None
    divisor: float = 1.0
    stock: ClassVar[bool] = False

    def sql(self) -> str:
        text = f"avg({self.column})"
        if self.filter is not None:
            text += f" filter (where {self.filter})"
        if self.divisor != 1.0:
            text += f" / {_literal(self.divisor)}"
        return text


@dataclass(frozen=True)
class Quantile:
    """The continuous ``q`` quantile of ``column`` (``percentile_cont``, interpolated)."""

    column: str
    q: float
    stock: ClassVar[bool] = False

    def sql(self) -> str:
        return f"percentile_cont({self.q!r}) within group (order by {self.column})"


@dataclass(frozen=True)
class Cumulative:
    """A stock: tickets in at ``inflow`` and not yet out at ``outflow`` (null: not out yet).

    Per period it is the running sum of inflows minus outflows up to the period's end (the
    compiler builds that series); over no period it is the stock at a moment (``sql``).
    """

    inflow: str = "created_at"
    outflow: str = "effective_resolved_at"
    stock: ClassVar[bool] = True

    def sql(self, end: str | None = None) -> str:
        """The count still in at ``end`` (a SQL parameter reference), or now without one."""
        out = f"t.{self.outflow}"
        if end is None:
            return f"count(*) filter (where {out} is null)"
        return (f"count(*) filter (where t.{self.inflow} < {end} and ({out} is null or "
                f"{out} >= {end}))")


# What a metric declares (``Difference`` is only ever a ratio's numerator).
Kind = Count | CountDistinct | Sum | Ratio | Mean | Quantile | Cumulative

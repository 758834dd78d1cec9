"""The arithmetic of a cost estimate as text rows (what ``netvigil cost --explain`` prints). Pure."""

from __future__ import annotations

from netvigil.economics.model import CostEstimate, Factor
from netvigil.model import CostRange

__all__ = ["EXPLAIN_COLUMNS", "PARAM_COLUMNS", "usd", "factor_rows", "param_rows", "arithmetic_lines",
           "explain_lines"]

EXPLAIN_COLUMNS = ("year", "factor", "low", "central", "high", "unit", "source")
PARAM_COLUMNS = ("parameter", "low", "central", "high", "source")


def usd(value: float) -> str:
    """$1.23B, $45.6M, $789.0k, $12 — short enough for a table, precise to three or four digits."""
    a = abs(value)
    if a >= 1e9:
        return f"${value / 1e9:,.2f}B"
    if a >= 1e6:
        return f"${value / 1e6:,.1f}M"
    if a >= 1e3:
        return f"${value / 1e3:,.1f}k"
    return f"${value:,.0f}"


def _value(f: Factor, v: float) -> str:
    if f.id == "gdp-daily":
        return usd(v)
    if f.id == "days":
        return f"{v:.2f}"
    return f"{v:.4g}"


def factor_rows(est: CostEstimate) -> list[tuple[str, ...]]:
    """One row per factor per calendar-year segment: year, factor, low, central, high, unit, source (+ note)."""
    rows: list[tuple[str, ...]] = []
    for seg in est.segments:
        for f in seg.factors:
            source = f.source + (f"; {f.note}" if f.note else "")
            rows.append((str(seg.year), f"{f.id}: {f.label}", _value(f, f.low), _value(f, f.central),
                         _value(f, f.high), f.unit, source))
    return rows


def param_rows(est: CostEstimate) -> list[tuple[str, ...]]:
    """The method's parameters the estimate used, once each, with where their numbers come from."""
    return [(p.id, f"{p.low:g}", f"{p.central:g}", f"{p.high:g}", p.source + (f"; {p.note}" if p.note else ""))
            for p in est.params]


def _product(factors: list[Factor], end: str) -> str:
    return " x ".join(_value(f, getattr(f, end)) for f in factors)


def arithmetic_lines(est: CostEstimate) -> list[str]:
    """The multiplication for each end of the range, segment by segment, and the total."""
    lines: list[str] = []
    for seg in est.segments:
        per_day = [f for f in seg.factors if f.id != "days"]
        head = f"{seg.year}, {seg.days:.2f} days"
        if est.combine == "bounds":
            for end in ("low", "central", "high"):
                lines.append(f"{head}: {end:7} = {_product(per_day, end)} = {usd(getattr(seg.daily, end))}/day"
                             f" x {seg.days:.2f} d = {usd(getattr(seg.total, end))}")
        else:
            lines.append(f"{head}: central = {_product(per_day, 'central')} = {usd(seg.daily.central)}/day"
                         f" x {seg.days:.2f} d = {usd(seg.total.central)}")
            lines.append(f"{head}: low/high = central x exp(-/+ sqrt(sum of squared log distances of each "
                         f"factor's low/high from its central)) = {usd(seg.total.low)} / {usd(seg.total.high)}")
    if len(est.segments) > 1:
        lines.append("total = sum of the segments: " + _range_text(est.range))
    lines.append(f"per day over {est.days:.2f} days: " + _range_text(est.daily)
                 + f"; method {est.range.method}, ranges combined by {est.combine}")
    return lines


def _range_text(r: CostRange) -> str:
    return f"low {usd(r.low)}, central {usd(r.central)}, high {usd(r.high)}"


def explain_lines(est: CostEstimate) -> list[str]:
    """Plain-text explanation: header, factors, arithmetic, notes (for logs and Markdown)."""
    lines = [f"{est.country_name} ({est.country}) {est.type}, scope {est.scope}, "
             f"{est.start:%Y-%m-%d %H:%M} to {est.end:%Y-%m-%d %H:%M} UTC ({est.days:.2f} days): "
             + _range_text(est.range)]
    for row in factor_rows(est):
        lines.append("  " + " | ".join(row))
    lines += ["  parameter " + " | ".join(row) for row in param_rows(est)]
    lines += ["  " + line for line in arithmetic_lines(est)]
    lines += [f"  note: {n}" for n in est.notes]
    return lines

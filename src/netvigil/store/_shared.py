"""What every backend does the same way: filters -> WHERE terms, and which rows of a batch are new.

Backends differ only in how a value is bound (DuckDB's ``?``, ClickHouse's
typed ``{p0:String}``), so the filter semantics — a value, a list of values,
``None`` for NULL, ASNs given as numbers, ``since`` inclusive and ``until``
exclusive, export filters that go through the row's measurement — live here
once and give the same answers on every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from netvigil.model.measurement import Measurement
from netvigil.model.verdict import Verdict
from netvigil.store.base import EXPORT_TABLES, SEARCH_COLUMNS, FilterValue, to_utc_naive
from netvigil.store.schema import MEASUREMENTS, TABLES, VERDICTS, TableSpec

__all__ = [
    "Bind",
    "RAW_COLUMNS",
    "STREAM_COLUMNS",
    "STREAM_ORDER",
    "TIME_COLUMN",
    "export_columns",
    "export_predicates",
    "first_unknown",
    "normalize",
    "predicates",
    "rows_of",
    "search_sql",
    "search_verdict",
    "search_where",
    "stream_sql",
    "stream_verdict",
]

TIME_COLUMN = "measurement_start_time"
RAW_COLUMNS = ("raw", "raw_codec")

# (column the value is compared with, value) -> the placeholder to put in the SQL.
Bind = Callable[[str, Any], str]


def export_columns(table: str, fmt: str, include_raw: bool) -> tuple[TableSpec, list[str]]:
    """Check an export request the same way on every backend; the table's spec and the columns to write."""
    if table not in EXPORT_TABLES:
        raise ValueError(f"cannot export {table!r}; tables are {list(EXPORT_TABLES)}")
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"export format must be 'parquet' or 'csv', not {fmt!r}")
    if include_raw and fmt != "parquet":
        raise ValueError("include_raw needs parquet: raw bytes do not fit in CSV")
    spec = TABLES[table]
    return spec, [c for c in spec.column_names if include_raw or c not in RAW_COLUMNS]


def first_unknown(ms: Sequence[Measurement], known: set[str]) -> list[Measurement]:
    """Measurements not stored yet, each uid once (the first copy in the batch wins)."""
    seen = set(known)
    fresh = []
    for m in ms:
        if m.uid not in seen:
            seen.add(m.uid)
            fresh.append(m)
    return fresh


def rows_of(rows: Sequence[msgspec.Struct], uids: set[str], id_field: str, *, dedupe: bool) -> list[Any]:
    """Rows belonging to new measurements; ``dedupe`` drops repeated ids (a uid repeated in the batch)."""
    if not dedupe:
        return [r for r in rows if r.measurement_uid in uids]  # type: ignore[attr-defined]
    seen: set[str] = set()
    out = []
    for r in rows:
        rid = getattr(r, id_field)
        if r.measurement_uid in uids and rid not in seen:  # type: ignore[attr-defined]
            seen.add(rid)
            out.append(r)
    return out


def normalize(column: str, value: Any) -> Any:
    # ASNs are stored as OONI writes them ("AS123"); accept the bare number too.
    if column.endswith("_asn") and isinstance(value, int) and not isinstance(value, bool):
        return f"AS{value}"
    return value


def predicates(
    filters: Mapping[str, FilterValue],
    since: datetime | None,
    until: datetime | None,
    *,
    time_column: str | None,
    bind: Bind,
    prefix: str = "",
) -> list[str]:
    """WHERE terms; column names are validated by the callers, values go through ``bind``."""
    where: list[str] = []
    for column, value in filters.items():
        col = prefix + column
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        present = [normalize(column, v) for v in values if v is not None]
        terms = []
        if present:
            terms.append(f"{col} IN ({', '.join(bind(column, v) for v in present)})")
        if len(present) != len(values):
            terms.append(f"{col} IS NULL")
        where.append("(" + " OR ".join(terms) + ")" if terms else "FALSE")
    if time_column is not None:
        if since is not None:
            where.append(f"{prefix}{time_column} >= {bind(time_column, to_utc_naive(since))}")
        if until is not None:
            where.append(f"{prefix}{time_column} < {bind(time_column, to_utc_naive(until))}")
    return where


def export_predicates(
    spec: TableSpec,
    filters: Mapping[str, FilterValue],
    since: datetime | None,
    until: datetime | None,
    *,
    bind: Bind,
) -> list[str]:
    """Filter on the table's own columns; anything else goes through its measurement."""
    own_cols = set(spec.column_names) - set(RAW_COLUMNS)
    meta_cols = set(MEASUREMENTS.column_names) - set(RAW_COLUMNS)
    unknown = [c for c in filters if c not in own_cols and c not in meta_cols]
    if unknown:
        raise ValueError(f"cannot filter {spec.name} on {unknown}")
    own = {c: v for c, v in filters.items() if c in own_cols}
    via = {c: v for c, v in filters.items() if c not in own_cols}
    has_time = TIME_COLUMN in own_cols
    where = predicates(own, since if has_time else None, until if has_time else None,
                       time_column=TIME_COLUMN if has_time else None, bind=bind)
    if via or (not has_time and (since or until)):
        sub_where = predicates(via, since, until, time_column=TIME_COLUMN, bind=bind, prefix="m.")
        sub = "SELECT m.uid FROM measurements m"
        if sub_where:
            sub += " WHERE " + " AND ".join(sub_where)
        where.append(f"measurement_uid IN ({sub})")
    return where


# What the incident stage reads of a verdict (``decisive`` and ``detail`` stay in the store), and its order.
STREAM_COLUMNS = tuple(c for c in VERDICTS.column_names if c not in ("decisive", "detail"))
STREAM_ORDER = ("probe_cc", "probe_asn", TIME_COLUMN, "verdict_id")


def stream_sql(filters: Mapping[str, Any] | None, since: datetime | None, until: datetime | None, *, bind: Bind,
               final: str = "", nulls_last: str = "") -> str:
    """The verdict stream's query for both backends (``final``: ClickHouse's " FINAL"; ``nulls_last``: its
    " ASC NULLS LAST", DuckDB's default already)."""
    unknown = [c for c in filters or {} if c not in STREAM_COLUMNS]
    if unknown:
        raise ValueError(f"unknown verdict column(s) {unknown}")
    where = predicates(filters or {}, since, until, time_column=TIME_COLUMN, bind=bind)
    sql = f"SELECT {', '.join(STREAM_COLUMNS)} FROM verdicts{final}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY " + ", ".join(c + nulls_last for c in STREAM_ORDER)


def stream_verdict(row: Sequence[Any]) -> Verdict:
    """One streamed row (``STREAM_COLUMNS`` order) as a Verdict; the time back in OONI's text form."""
    values = dict(zip(STREAM_COLUMNS, row))
    when = values[TIME_COLUMN]
    values[TIME_COLUMN] = when.strftime("%Y-%m-%d %H:%M:%S") if isinstance(when, datetime) else when
    values["rule_ids"] = list(values["rule_ids"] or ())
    return Verdict(**values)


# -- the explorer's read: one page of verdicts, newest first --------------------------------------------------

VERDICT_COLUMNS = VERDICTS.column_names
SEARCH_ORDER = (f"{TIME_COLUMN} DESC", "verdict_id ASC")


def search_where(filters: Mapping[str, Any] | None, since: datetime | None, until: datetime | None, *,
                 bind: Bind) -> str:
    """`` WHERE …`` (or nothing) for ``search_verdicts``/``count_verdicts``; columns checked against
    ``SEARCH_COLUMNS`` so the dashboard's query string never names a column the SQL would take as text."""
    unknown = [c for c in filters or {} if c not in SEARCH_COLUMNS]
    if unknown:
        raise ValueError(f"unknown verdict column(s) {unknown}; choose from {list(SEARCH_COLUMNS)}")
    where = predicates(filters or {}, since, until, time_column=TIME_COLUMN, bind=bind)
    return " WHERE " + " AND ".join(where) if where else ""


def search_sql(filters: Mapping[str, Any] | None, since: datetime | None, until: datetime | None, limit: int,
               offset: int, *, bind: Bind, final: str = "", nulls_last: str = " NULLS LAST") -> str:
    """A page of whole verdicts (``VERDICT_COLUMNS``), newest measurement first, ties by verdict id; limit and
    offset are checked integers, written into the SQL (both backends plan a top-N sort for them)."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    where = search_where(filters, since, until, bind=bind)
    order = ", ".join(c + (nulls_last if c.endswith("DESC") else "") for c in SEARCH_ORDER)
    return (f"SELECT {', '.join(VERDICT_COLUMNS)} FROM verdicts{final}{where} ORDER BY {order} "
            f"LIMIT {int(limit)} OFFSET {int(offset)}")


def search_verdict(row: Sequence[Any]) -> Verdict:
    """One row of ``search_sql`` as a whole Verdict (decisive observations and detail included)."""
    values = dict(zip(VERDICT_COLUMNS, row))
    when = values[TIME_COLUMN]
    values[TIME_COLUMN] = when.strftime("%Y-%m-%d %H:%M:%S") if isinstance(when, datetime) else when
    values["rule_ids"] = list(values["rule_ids"] or ())
    values["decisive"] = list(values["decisive"] or ())
    values["detail"] = values["detail"] or ""
    for name in ("confidence", "confirmed", "rules_version"):
        if values[name] is None:
            values.pop(name)
    return Verdict(**values)

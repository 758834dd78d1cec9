"""Table layouts derived from the model's msgspec Structs.

Nobody keeps a schema copy in sync by hand: every column of ``observations`` and
``verdicts`` comes from the Struct's fields, and ``measurements`` takes its
envelope columns from ``MeasurementEnvelope``. Types are logical
(:class:`ColumnType`) so each backend maps them once (DuckDB here, ClickHouse
later) — the ``typing_to_clickhouse`` idea from ooni/data, without the per-table
copies. Adding a field to a Struct therefore changes the derived layout; an
existing store learns about it only through a numbered migration (see
``migrations.py``), and opening a store whose tables lag the derived layout
fails loudly instead of silently dropping the new field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec
import msgspec.inspect as mi

from netvigil.model.archival import MeasurementEnvelope
from netvigil.model.measurement import Measurement, SourceRef
from netvigil.model.observation import Observation
from netvigil.model.verdict import Verdict
from netvigil.model.userreport import REPORT_STATUSES, UserReport
from netvigil.store.base import USER_REPORT_FILTERS

__all__ = [
    "Column",
    "ColumnType",
    "TableSpec",
    "columns_from_struct",
    "ENVELOPE_COLUMNS",
    "MEASUREMENTS",
    "OBSERVATIONS",
    "VERDICTS",
    "TABLES",
    "RAW_CODEC",
    "USER_REPORTS",
    "user_report_of",
    "user_report_select",
    "user_report_values",
]

RAW_CODEC = "zstd"


class ColumnType(StrEnum):
    """Backend-neutral column types; each backend maps them to its own names."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING_LIST = "string_list"
    INT_LIST = "int_list"
    TIMESTAMP = "timestamp"  # UTC, stored without zone
    BYTES = "bytes"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One table: its columns in order, its key, and its natural order.

    ``sort_key`` orders exports, and is the clustering key a backend that has
    one would use (ClickHouse ``ORDER BY``); DuckDB relies on imports arriving
    roughly in time order for its per-row-group min/max to skip data.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: str | None = None
    sort_key: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


_SCALARS: dict[type, ColumnType] = {
    mi.StrType: ColumnType.STRING,
    mi.IntType: ColumnType.INT,
    mi.FloatType: ColumnType.FLOAT,
    mi.BoolType: ColumnType.BOOL,
}
_LISTS: dict[type, ColumnType] = {
    mi.StrType: ColumnType.STRING_LIST,
    mi.IntType: ColumnType.INT_LIST,
}


def _column_type(t: mi.Type, where: str) -> tuple[ColumnType, bool]:
    """Map one msgspec type to (column type, nullable); anything else is a schema error."""
    nullable = False
    if isinstance(t, mi.UnionType):
        others = [u for u in t.types if not isinstance(u, mi.NoneType)]
        nullable = len(others) != len(t.types)
        if len(others) != 1:
            raise TypeError(f"{where}: union {t} has no single column type; add an override")
        t = others[0]
    if type(t) in _SCALARS:
        return _SCALARS[type(t)], nullable
    if isinstance(t, mi.ListType) and type(t.item_type) in _LISTS:
        return _LISTS[type(t.item_type)], nullable
    raise TypeError(f"{where}: type {t} has no column type; add an override")


def columns_from_struct(
    struct: type[msgspec.Struct],
    *,
    include: Iterable[str] | None = None,
    overrides: Mapping[str, ColumnType] | None = None,
    prefix: str = "",
    not_null: Iterable[str] = (),
    nullable: bool = False,
) -> tuple[Column, ...]:
    """Columns for a Struct's fields, in field order (or in ``include`` order).

    Optional fields and fields without a default that allow None become
    nullable; ``not_null`` pins key columns and ``nullable`` relaxes them all
    (for a Struct that is itself optional on its parent). ``overrides`` covers fields whose
    Python type is looser than what is stored (``Any`` input, time strings).
    """
    overrides = dict(overrides or {})
    fields = {f.name: f for f in mi.type_info(struct).fields}  # type: ignore[union-attr]
    names = list(include) if include is not None else list(fields)
    pinned = set(not_null)
    out: list[Column] = []
    for name in names:
        field = fields[name]
        where = f"{struct.__name__}.{name}"
        if name in overrides:
            ctype, may_be_null = overrides[name], True
        else:
            ctype, may_be_null = _column_type(field.type, where)
            # A field with a default is stored nullable: older rows may predate it.
            may_be_null = may_be_null or not field.required or nullable
        out.append(Column(prefix + name, ctype, may_be_null and name not in pinned))
    return tuple(out)


# Envelope fields kept as columns: what queries filter and group on. The rest
# (annotations, test_helpers, test_keys, …) stays in the raw bytes. probe_ip is
# deliberately absent even though it is scrubbed upstream.
ENVELOPE_COLUMNS = (
    "report_id",
    "test_name",
    "test_version",
    "input",
    "probe_cc",
    "probe_asn",
    "probe_network_name",
    "resolver_asn",
    "software_name",
    "software_version",
    "measurement_start_time",
)

MEASUREMENTS = TableSpec(
    name="measurements",
    columns=(
        *columns_from_struct(Measurement, include=["uid"], not_null=["uid"]),
        *columns_from_struct(
            MeasurementEnvelope,
            include=ENVELOPE_COLUMNS,
            overrides={"input": ColumnType.STRING, "measurement_start_time": ColumnType.TIMESTAMP},
        ),
        # A measurement's SourceRef is optional, so its columns are too.
        *columns_from_struct(SourceRef, prefix="source_", nullable=True),
        Column("import_run_id", ColumnType.STRING),
        Column("imported_at", ColumnType.TIMESTAMP, nullable=False),
        Column("raw_codec", ColumnType.STRING, nullable=False),
        Column("raw", ColumnType.BYTES, nullable=False),
    ),
    primary_key="uid",
    sort_key=("measurement_start_time", "uid"),
)
OBSERVATIONS = TableSpec(
    name="observations",
    columns=columns_from_struct(Observation),
    sort_key=("measurement_uid", "observation_id"),
)

VERDICTS = TableSpec(
    name="verdicts",
    columns=columns_from_struct(Verdict, overrides={"measurement_start_time": ColumnType.TIMESTAMP}),
    sort_key=("measurement_start_time", "probe_cc", "probe_asn", "verdict_id"),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (MEASUREMENTS, OBSERVATIONS, VERDICTS)}

# People's reports of disruptions (docs/user-reports.md). Not one of TABLES: those are the measurement tiers that
# import, export, copy and stats go through by measurement uid; this one is made by migration 3 and kept beside them.
# ``updated_at`` is the time the row was last written (received or moderated): ClickHouse keeps the newest version of
# a report by it.
USER_REPORTS = TableSpec(
    name="user_reports",
    columns=(
        *columns_from_struct(
            UserReport,
            overrides={name: ColumnType.TIMESTAMP for name in ("received_at", "reported_at", "moderated_at")},
            not_null=("report_id", "received_at", "reported_at", "country", "symptom", "status"),
        ),
        Column("updated_at", ColumnType.TIMESTAMP, nullable=False),
    ),
    primary_key="report_id",
    sort_key=("reported_at", "report_id"),
)


# -- user report rows, the same on both backends ------------------------------------------------------------------


def user_report_values(report: UserReport, updated_at: datetime) -> dict[str, Any]:
    """The row of one report, every column of USER_REPORTS, times as naive UTC (how the store keeps them)."""
    values = {name: getattr(report, name) for name in UserReport.__struct_fields__}
    values["updated_at"] = updated_at
    for c in USER_REPORTS.columns:
        value = values[c.name]
        if c.type is ColumnType.TIMESTAMP and value is not None:
            values[c.name] = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return values


def user_report_of(row: Mapping[str, Any]) -> UserReport:
    """A stored row back as a UserReport (times aware UTC; NULL text and note as empty strings)."""
    values = {name: row[name] for name in UserReport.__struct_fields__}
    for name in ("received_at", "reported_at", "moderated_at"):
        value = values[name]
        if isinstance(value, datetime):
            values[name] = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    values["text"] = values["text"] or ""
    values["moderation_note"] = values["moderation_note"] or ""
    return UserReport(**values)


# (column, value) -> the placeholder the backend binds it with.
ReportBind = Callable[[str, Any], str]


def user_report_select(
    filters: Mapping[str, Any] | None,
    since: datetime | None,
    until: datetime | None,
    status: str | Sequence[str] | None,
    limit: int,
    offset: int,
    *,
    bind: ReportBind,
    final: str = "",
) -> str:
    """The ``list_user_reports`` query: newest ``reported_at`` first, ties by report id.

    Filter columns are checked against USER_REPORT_FILTERS (values are bound, never spliced); an ASN may be given
    as a number. ``since`` is inclusive and ``until`` exclusive over ``reported_at``; ``final`` is ClickHouse's
    " FINAL".
    """
    unknown = [c for c in filters or {} if c not in USER_REPORT_FILTERS]
    if unknown:
        raise ValueError(f"unknown user report column(s) {unknown}; choose from {list(USER_REPORT_FILTERS)}")
    if isinstance(limit, bool) or isinstance(offset, bool) or limit < 0 or offset < 0:
        raise ValueError("limit and offset must be integers, not negative")
    where: list[str] = []
    wanted = dict(filters or {})
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        bad = [x for x in statuses if x not in REPORT_STATUSES]
        if bad:
            raise ValueError(f"unknown status(es) {bad}; choose from {list(REPORT_STATUSES)}")
        wanted["status"] = statuses
    for column, value in wanted.items():
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        present = [_report_filter_value(column, v) for v in values if v is not None]
        terms = [f"{column} IN ({', '.join(bind(column, v) for v in present)})"] if present else []
        if len(present) != len(values):
            terms.append(f"{column} IS NULL")
        where.append("(" + " OR ".join(terms) + ")" if terms else "FALSE")
    if since is not None:
        where.append(f"reported_at >= {bind('reported_at', _naive_utc(since))}")
    if until is not None:
        where.append(f"reported_at < {bind('reported_at', _naive_utc(until))}")
    sql = f"SELECT {', '.join(USER_REPORTS.column_names)} FROM {USER_REPORTS.name}{final}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY reported_at DESC, report_id ASC LIMIT {int(limit)} OFFSET {int(offset)}"


def _report_filter_value(column: str, value: Any) -> Any:
    if column == "asn" and isinstance(value, int) and not isinstance(value, bool):
        return f"AS{value}"
    if column == "country" and isinstance(value, str):
        return value.upper()
    return value


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

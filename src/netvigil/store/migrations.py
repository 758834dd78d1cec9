"""Numbered DuckDB migrations, applied on open, recorded in ``schema_migrations``.

Each migration runs once, in its own transaction together with its record, so a
crash leaves the store at the previous version. Migration 1 creates the tables
from the derived layouts in ``schema.py``. When a model Struct gains a field,
add a migration that calls :func:`add_missing_columns` (a no-op on stores that
migration 1 just created with the field); :func:`check_schema` refuses to open a
store whose tables lag the derived layout, so a forgotten migration is caught
the first time anyone opens an old store, not after months of lost columns.

A migration that only adds a table no reader of measurements needs (migration 3,
``user_reports``) is marked ``needed_to_read=False``: a store that lacks it still
opens read-only (the report and the dashboard read old stores as they are), and
reads of the missing table return nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from netvigil.store.base import StoreError
from netvigil.store.schema import TABLES, USER_REPORTS, ColumnType, TableSpec

__all__ = [
    "DUCKDB_TYPES",
    "Migration",
    "MIGRATIONS",
    "LATEST_VERSION",
    "USER_REPORTS_VERSION",
    "add_missing_columns",
    "apply_migrations",
    "check_schema",
    "create_table_sql",
    "current_version",
]

DUCKDB_TYPES: dict[ColumnType, str] = {
    ColumnType.STRING: "VARCHAR",
    ColumnType.INT: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.BOOL: "BOOLEAN",
    ColumnType.STRING_LIST: "VARCHAR[]",
    ColumnType.INT_LIST: "BIGINT[]",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.BYTES: "BLOB",
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]
    needed_to_read: bool = True  # False: a read-only open of a store without it goes on (see the module doc)


def create_table_sql(spec: TableSpec) -> str:
    cols = []
    for c in spec.columns:
        ddl = f"{c.name} {DUCKDB_TYPES[c.type]}"
        if c.name == spec.primary_key:
            ddl += " PRIMARY KEY"
        elif not c.nullable:
            ddl += " NOT NULL"
        cols.append(ddl)
    return f"CREATE TABLE IF NOT EXISTS {spec.name} (\n  " + ",\n  ".join(cols) + "\n)"


def _create_tables(con: duckdb.DuckDBPyConnection) -> None:
    # No secondary ART indexes: aggregates are column scans (zonemaps skip row
    # groups on time filters), and each index slows every insert. The uid
    # primary key serves get_raw point lookups.
    for spec in TABLES.values():
        con.execute(create_table_sql(spec))


def _create_user_reports(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(create_table_sql(USER_REPORTS))


def add_missing_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Add columns the derived layout has and the tables lack (new Struct fields; always nullable).

    A table that does not exist yet is left to the migration that creates it.
    """
    for spec in (*TABLES.values(), USER_REPORTS):
        have = _table_columns(con, spec.name)
        if not have:
            continue
        for c in spec.columns:
            if c.name not in have:
                con.execute(f"ALTER TABLE {spec.name} ADD COLUMN {c.name} {DUCKDB_TYPES[c.type]}")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create measurements, observations, verdicts", _create_tables),
    Migration(2, "verdicts: report_id, probe_region", add_missing_columns),
    Migration(3, "user_reports", _create_user_reports, needed_to_read=False),
)
LATEST_VERSION = MIGRATIONS[-1].version
USER_REPORTS_VERSION = 3  # the first version with the user_reports table


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return {r[0] for r in rows}


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = 'schema_migrations'"
    ).fetchall()
    if not exists[0][0]:
        return 0
    return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0])


def apply_migrations(con: duckdb.DuckDBPyConnection, *, read_only: bool = False) -> int:
    """Bring the store to :data:`LATEST_VERSION`; return the version it is at."""
    version = current_version(con)
    if version > LATEST_VERSION:
        raise StoreError(
            f"store schema is version {version}, newer than this netvigil ({LATEST_VERSION}); upgrade netvigil"
        )
    if version == LATEST_VERSION:
        return version
    if read_only:
        if any(m.needed_to_read for m in MIGRATIONS if m.version > version):
            raise StoreError(
                f"store schema is version {version}, needs {LATEST_VERSION}; open it once for writing to migrate"
            )
        return version
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    for m in MIGRATIONS:
        if m.version <= version:
            continue
        con.begin()
        try:
            m.apply(con)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [m.version, m.name, datetime.now(UTC).replace(tzinfo=None)],
            )
            con.commit()
        except BaseException:
            con.rollback()
            raise
        version = m.version
    return version


def check_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Fail if a table lacks a column the model now has: a migration is missing."""
    missing = {
        spec.name: sorted(set(spec.column_names) - _table_columns(con, spec.name)) for spec in TABLES.values()
    }
    have = _table_columns(con, USER_REPORTS.name)
    if have:  # absent only in a store read as it is, from before migration 3
        missing[USER_REPORTS.name] = sorted(set(USER_REPORTS.column_names) - have)
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        raise StoreError(
            f"store tables lack columns the model defines: {missing}; add a migration calling "
            "netvigil.store.migrations.add_missing_columns"
        )

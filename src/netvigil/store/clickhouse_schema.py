"""ClickHouse tables from the same derived layouts as DuckDB's, and their numbered migrations.

``schema.TABLES`` says which columns exist and of which logical type; this
module says only how ClickHouse stores them: the type map, which strings are
``LowCardinality``, the MergeTree keys, and the engine. Tables are
``ReplacingMergeTree`` ordered by (probe_cc, probe_asn, test_name,
measurement_start_time, row id) and partitioned by day, so a country/network/
test/time query reads a narrow range and a row written twice (two collectors
racing, or a write retried after a crash between tables) collapses to one at
merge time; reads use ``FINAL`` so they never count it twice meanwhile (see
``clickhouse.py``).

The same statements, with ``cluster=`` set, give the multi-node layout of
``docs/deploy.md``: ``Replicated…`` local tables on every node and
``Distributed`` tables of the same names as the single-node ones in front of
them, sharded by measurement uid (a row and its duplicates land on one shard,
where ``FINAL`` sees them together). ``netvigil store ddl`` prints them.

``user_reports`` (migration 3) is small and written rarely: a
``ReplacingMergeTree`` versioned by ``updated_at``, so moderating a report is
inserting its new version; on a cluster it is one replicated table on every node
(no shards, no Distributed front), like ``schema_migrations``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from netvigil.store.base import StoreError
from netvigil.store.schema import TABLES, USER_REPORTS, Column, ColumnType, TableSpec

__all__ = [
    "CLICKHOUSE_TYPES",
    "LATEST_VERSION",
    "USER_REPORTS_VERSION",
    "MIGRATIONS",
    "ORDER_BY",
    "ClickHouseMigration",
    "add_missing_columns",
    "apply_migrations",
    "check_schema",
    "column_type",
    "current_version",
    "schema_statements",
]

# Microseconds like DuckDB's TIMESTAMP (imported_at has them); the range,
# 1900-2299, holds every OONI measurement. Times are UTC on every server.
TIMESTAMP_TYPE = "DateTime64(6, 'UTC')"
CLICKHOUSE_TYPES: dict[ColumnType, str] = {
    ColumnType.STRING: "String",
    ColumnType.INT: "Int64",
    ColumnType.FLOAT: "Float64",
    ColumnType.BOOL: "Bool",
    ColumnType.STRING_LIST: "Array(String)",
    ColumnType.INT_LIST: "Array(Int64)",
    ColumnType.TIMESTAMP: TIMESTAMP_TYPE,
    ColumnType.BYTES: "String",
}
_LISTS = (ColumnType.STRING_LIST, ColumnType.INT_LIST)

# Strings with few distinct values: dictionary-encoded, which makes them
# smaller and their GROUP BYs faster; clients see plain strings.
LOW_CARDINALITY = frozenset({
    "test_name", "test_version", "probe_cc", "probe_asn", "resolver_asn", "software_name", "software_version",
    "raw_codec", "origin", "kind", "failure", "dns_engine", "dns_query_type", "tls_version", "http_method",
    "outcome", "method", "fingerprint", "fingerprint_scope", "ooni_blocking",
})

# The MergeTree sorting key: what aggregates filter on first, then the row's own
# id, so that only true duplicates of a row share a key (ReplacingMergeTree
# keeps one row per key).
ORDER_BY: dict[str, tuple[str, ...]] = {
    "measurements": ("probe_cc", "probe_asn", "test_name", "measurement_start_time", "uid"),
    "observations": ("measurement_uid", "observation_id"),
    "verdicts": ("probe_cc", "probe_asn", "test_name", "measurement_start_time", "measurement_uid", "verdict_id"),
    "user_reports": ("country", "reported_at", "report_id"),
}
# ReplacingMergeTree's version column: of rows with one key, the one with the greatest value is kept.
VERSION_COLUMN: dict[str, str] = {"user_reports": "updated_at"}
PARTITION_BY: dict[str, str | None] = {
    "measurements": "toDate(measurement_start_time)",
    "observations": None,  # no time column; sorted by measurement uid, and small next to raw measurements
    "verdicts": "toDate(measurement_start_time)",
    "user_reports": None,
}
# Lookups by uid (dedup, get_raw, store copy) skip granules whose bloom filter rules the uid out.
SKIP_INDEXES: dict[str, tuple[str, ...]] = {
    "measurements": ("INDEX uid_bloom uid TYPE bloom_filter(0.001) GRANULARITY 1",),
    "observations": (),
    "verdicts": ("INDEX measurement_uid_bloom measurement_uid TYPE bloom_filter(0.001) GRANULARITY 1",),
    "user_reports": (),
}
SHARDING_KEY: dict[str, str] = {
    "measurements": "cityHash64(uid)",
    "observations": "cityHash64(measurement_uid)",
    "verdicts": "cityHash64(measurement_uid)",
}
RAW_CODEC_DDL = "CODEC(ZSTD(3))"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MIGRATIONS_TABLE = "schema_migrations"


def column_type(c: Column) -> str:
    """The ClickHouse type of a derived column.

    ClickHouse has no ``Nullable(Array(...))``: a missing list is stored as an
    empty one, the only place where the two backends' values differ.
    """
    base = CLICKHOUSE_TYPES[c.type]
    if c.type in _LISTS:
        return base
    if c.nullable:
        base = f"Nullable({base})"
    if c.name in LOW_CARDINALITY and c.type is ColumnType.STRING:
        base = f"LowCardinality({base})"
    return base


def _column_ddl(c: Column) -> str:
    ddl = f"{c.name} {column_type(c)}"
    if c.type is ColumnType.BYTES:
        ddl += f" {RAW_CODEC_DDL}"
    return ddl


def _on_cluster(cluster: str | None) -> str:
    return f" ON CLUSTER {_ident(cluster)}" if cluster else ""


def _ident(name: str) -> str:
    """A database, table or cluster name, backquoted (ClickHouse identifiers may need it)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _merge_tree(spec: TableSpec, engine: str) -> str:
    parts = [f"ENGINE = {engine}"]
    if PARTITION_BY[spec.name]:
        parts.append(f"PARTITION BY {PARTITION_BY[spec.name]}")
    parts.append(f"ORDER BY ({', '.join(ORDER_BY[spec.name])})")
    # Keys include nullable envelope columns (a measurement may lack probe_cc).
    parts.append("SETTINGS allow_nullable_key = 1")
    return "\n".join(parts)


def _table_body(spec: TableSpec) -> str:
    lines = [_column_ddl(c) for c in spec.columns] + list(SKIP_INDEXES[spec.name])
    return "(\n  " + ",\n  ".join(lines) + "\n)"


def table_statements(spec: TableSpec, database: str, *, cluster: str | None = None) -> list[str]:
    """CREATE statements for one table: single-node, or local replicated table plus Distributed front."""
    db = _ident(database)
    if cluster is None:
        return [f"CREATE TABLE IF NOT EXISTS {db}.{spec.name} {_table_body(spec)}\n"
                + _merge_tree(spec, "ReplacingMergeTree")]
    local = f"{spec.name}_local"
    replicated = f"ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}')"
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.{local}{_on_cluster(cluster)} {_table_body(spec)}\n"
        + _merge_tree(spec, replicated),
        f"CREATE TABLE IF NOT EXISTS {db}.{spec.name}{_on_cluster(cluster)} AS {db}.{local}\n"
        f"ENGINE = Distributed({_ident(cluster)}, {db}, {local}, {SHARDING_KEY[spec.name]})",
    ]


def user_reports_statement(database: str, *, cluster: str | None = None) -> str:
    """CREATE for ``user_reports``: on a cluster one replication group over all nodes, like the migrations table."""
    spec, version = USER_REPORTS, VERSION_COLUMN[USER_REPORTS.name]
    if cluster is None:
        engine = f"ReplacingMergeTree({version})"
    else:
        engine = (f"ReplicatedReplacingMergeTree('/clickhouse/tables/{database}/{spec.name}', '{{replica}}', "
                  f"{version})")
    return (f"CREATE TABLE IF NOT EXISTS {_ident(database)}.{spec.name}{_on_cluster(cluster)} {_table_body(spec)}\n"
            + _merge_tree(spec, engine))


def migrations_table_statement(database: str, *, cluster: str | None = None) -> str:
    body = "(version UInt32, name String, applied_at DateTime64(6, 'UTC'))"
    if cluster is None:
        engine = "ReplacingMergeTree"
    else:
        # One replication group over all nodes (no {shard}): every node knows the version.
        engine = f"ReplicatedReplacingMergeTree('/clickhouse/tables/{database}/{MIGRATIONS_TABLE}', '{{replica}}')"
    return (f"CREATE TABLE IF NOT EXISTS {_ident(database)}.{MIGRATIONS_TABLE}{_on_cluster(cluster)} {body}\n"
            f"ENGINE = {engine}\nORDER BY version")


def schema_statements(database: str, *, cluster: str | None = None) -> list[str]:
    """Every statement that makes an empty database a store at the latest version (what ``store ddl`` prints)."""
    for what, name in (("database", database), ("cluster", cluster)):
        if name is not None and not _NAME.fullmatch(name):
            raise ValueError(f"bad {what} name {name!r} (letters, digits and _)")
    statements = [f"CREATE DATABASE IF NOT EXISTS {_ident(database)}{_on_cluster(cluster)}",
                  migrations_table_statement(database, cluster=cluster)]
    for spec in TABLES.values():
        statements.extend(table_statements(spec, database, cluster=cluster))
    statements.append(user_reports_statement(database, cluster=cluster))
    for m in MIGRATIONS:
        statements.append(f"INSERT INTO {_ident(database)}.{MIGRATIONS_TABLE} (version, name, applied_at) "
                          f"VALUES ({m.version}, {_quote(m.name)}, now64(6))")
    return statements


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- migrations ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where migrations run: a client, its database, and the cluster if the layout is replicated."""

    client: Any  # a clickhouse_connect Client
    database: str
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class ClickHouseMigration:
    version: int
    name: str
    apply: Callable[[Target], None]
    needed_to_read: bool = True  # False: a read-only open of a database without it goes on (user_reports)


def _create_tables(t: Target) -> None:
    for spec in TABLES.values():
        for sql in table_statements(spec, t.database, cluster=t.cluster):
            t.client.command(sql)


def _create_user_reports(t: Target) -> None:
    t.client.command(user_reports_statement(t.database, cluster=t.cluster))


def add_missing_columns(t: Target) -> None:
    """Add columns the derived layout has and the tables lack (new Struct fields).

    With a cluster both the local tables and their Distributed fronts gain the column. A table that does not
    exist yet is left to the migration that creates it.
    """
    have = _table_columns(t)
    for spec in (*TABLES.values(), USER_REPORTS):
        if spec.name not in have:
            continue
        missing = [c for c in spec.columns if c.name not in have[spec.name]]
        sharded = t.cluster is not None and spec is not USER_REPORTS
        names = [f"{spec.name}_local", spec.name] if sharded else [spec.name]
        for c in missing:
            for name in names:
                t.client.command(f"ALTER TABLE {_ident(t.database)}.{name}{_on_cluster(t.cluster)} "
                                 f"ADD COLUMN IF NOT EXISTS {_column_ddl(c)}")


MIGRATIONS: tuple[ClickHouseMigration, ...] = (
    ClickHouseMigration(1, "create measurements, observations, verdicts", _create_tables),
    ClickHouseMigration(2, "verdicts: report_id, probe_region", add_missing_columns),
    ClickHouseMigration(3, "user_reports", _create_user_reports, needed_to_read=False),
)
LATEST_VERSION = MIGRATIONS[-1].version
USER_REPORTS_VERSION = 3  # the first version with the user_reports table


def _table_columns(t: Target) -> dict[str, set[str]]:
    rows = t.client.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String}", parameters={"db": t.database}
    ).result_rows
    out: dict[str, set[str]] = {}
    for table, name in rows:
        out.setdefault(table, set()).add(name)
    return out


def current_version(t: Target) -> int:
    exists = t.client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {name:String}",
        parameters={"db": t.database, "name": MIGRATIONS_TABLE},
    ).result_rows[0][0]
    if not exists:
        return 0
    rows = t.client.query(f"SELECT max(version) FROM {_ident(t.database)}.{MIGRATIONS_TABLE}").result_rows
    return int(rows[0][0] or 0)


def apply_migrations(t: Target, *, read_only: bool = False) -> int:
    """Bring the database to :data:`LATEST_VERSION`; return the version it is at.

    ClickHouse has no transactions: every step is idempotent (``IF NOT
    EXISTS``) and recorded after it succeeded, so a crash or two processes
    migrating at once end at the same tables and at most a repeated version row.
    """
    version = current_version(t)
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
    t.client.command(migrations_table_statement(t.database, cluster=t.cluster))
    for m in MIGRATIONS:
        if m.version <= version:
            continue
        m.apply(t)
        t.client.command(
            f"INSERT INTO {_ident(t.database)}.{MIGRATIONS_TABLE} (version, name, applied_at) "
            "VALUES ({version:UInt32}, {name:String}, {at:DateTime64(6, 'UTC')})",
            parameters={"version": m.version, "name": m.name, "at": datetime.now(UTC).replace(tzinfo=None)},
        )
        version = m.version
    return version


def check_schema(t: Target) -> None:
    """Fail if a table lacks a column the model now has: a migration is missing."""
    have = _table_columns(t)
    missing = {spec.name: sorted(set(spec.column_names) - have.get(spec.name, set())) for spec in TABLES.values()}
    if USER_REPORTS.name in have:  # absent only in a database read as it is, from before migration 3
        missing[USER_REPORTS.name] = sorted(set(USER_REPORTS.column_names) - have[USER_REPORTS.name])
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        raise StoreError(
            f"store tables lack columns the model defines: {missing}; add a migration calling "
            "netvigil.store.clickhouse_schema.add_missing_columns"
        )


def iter_types() -> Iterator[tuple[str, str, str]]:
    """(table, column, ClickHouse type) for every derived column: what tests and docs compare with."""
    for spec in (*TABLES.values(), USER_REPORTS):
        for c in spec.columns:
            yield spec.name, c.name, column_type(c)

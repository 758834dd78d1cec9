"""The embedded backend: one DuckDB file, one writing process.

DuckDB takes an exclusive file lock for a read-write connection, so exactly one
process writes a store at a time (readers may share it only while no writer
holds it, opened with ``read_only=True``). A second writer gets a
:class:`StoreError` naming the lock holder instead of DuckDB's IO error.

Writes are columnar: a batch becomes Arrow staging tables in one pass and each
table is filled by one ``INSERT … SELECT`` over the registered Arrow table.
``memory_limit`` and ``threads`` bound DuckDB's own memory; nothing is cached
between batches. A connection is not meant to be shared between threads.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import zstandard

from netvigil.model.verdict import Verdict
from netvigil.store._shared import TIME_COLUMN as _TIME_COLUMN
from netvigil.store._shared import (
    export_columns,
    export_predicates,
    predicates,
    search_sql,
    search_verdict,
    search_where,
    stream_sql,
    stream_verdict,
)
from netvigil.store._shared import first_unknown as _first_unknown
from netvigil.store._shared import rows_of as _rows_of
from netvigil.store._staging import STAGED_MEASUREMENT_COLUMNS, compress_raw, stage_measurements
from netvigil.store.base import (
    BulkWriter,
    ExportFormat,
    FilterValue,
    QueryResult,
    Store,
    StoreBatch,
    StoreError,
    VerdictQuery,
    WriteResult,
)
from netvigil.store.migrations import DUCKDB_TYPES, apply_migrations, check_schema, current_version
from netvigil.store.schema import MEASUREMENTS, OBSERVATIONS, RAW_CODEC, TABLES, VERDICTS, ColumnType, TableSpec
from netvigil.model.userreport import UserReport, check_user_report
from netvigil.store.migrations import USER_REPORTS_VERSION
from netvigil.store.schema import USER_REPORTS, user_report_of, user_report_select, user_report_values

__all__ = ["DuckDBStore"]

_OONI_TIME = "%Y-%m-%d %H:%M:%S"


class DuckDBStore(Store):
    """A store in one DuckDB file (or ``":memory:"``).

    ``memory_limit`` caps DuckDB's buffer manager (the rest of the process —
    Python objects, Arrow staging — comes on top); ``threads`` defaults to at
    most 4, which is enough for batch inserts and keeps per-thread buffers small.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        memory_limit: str = "64MB",
        threads: int | None = None,
        zstd_level: int = 1,
    ) -> None:
        self.path = str(path)
        self.read_only = read_only
        config: dict[str, Any] = {
            "memory_limit": memory_limit,
            "threads": threads or min(4, os.cpu_count() or 1),
            # Exports and inserts need no row order beyond the explicit ORDER BYs.
            "preserve_insertion_order": False,
            # A batch carries tens of MB of raw evidence: checkpointing after every
            # commit (the 16MB default) would rewrite the file once per batch.
            "checkpoint_threshold": "256MB",
        }
        try:
            self._con = duckdb.connect(self.path, read_only=read_only, config=config)
        except duckdb.IOException as exc:
            raise StoreError(_describe_open_error(self.path, exc)) from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        self._closed = False
        try:
            self.schema_version = apply_migrations(self._con, read_only=read_only)
            check_schema(self._con)
        except BaseException:
            self._con.close()
            raise
        # known_uids runs on its own cursor so an importer may look up uids on one
        # thread while write_batch commits on another (DuckDB cursors are separate
        # connections to the same database; each is used by one thread only).
        self._lookup = self._con.cursor()
        self._zstd_level = zstd_level
        self._compressor = zstandard.ZstdCompressor(level=zstd_level)
        self._decompressor = zstandard.ZstdDecompressor()
        # Rows are staged as NDJSON (msgspec encodes the structs in C) and parsed
        # by DuckDB's JSON reader, which runs without the GIL: an importer keeps
        # judging the next batch meanwhile.
        self._json = msgspec.json.Encoder()
        self._staging: Path | None = None  # made on the first write, removed on close

    # -- writing -----------------------------------------------------------

    def _staging_dir(self) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="netvigil-stage-"))
            # A store dropped without close() still removes its staging files.
            weakref.finalize(self, shutil.rmtree, self._staging, True)
        return self._staging

    def write_batch(self, batch: StoreBatch) -> WriteResult:
        """One batch, one transaction: the bulk path with a single group."""
        self._check_writable()
        writer = DuckDBBulkWriter(self, flush_every=len(batch.measurements) + 1)
        writer.add(batch)
        return writer.close()

    def bulk_writer(self) -> "DuckDBBulkWriter":
        self._check_writable()
        return DuckDBBulkWriter(self, single_threaded=True)

    # -- reading -----------------------------------------------------------

    def known_uids(self, uids: Sequence[str]) -> set[str]:
        return self._known(self._lookup, uids)

    @staticmethod
    def _known(lookup: duckdb.DuckDBPyConnection, uids: Iterable[str]) -> set[str]:
        wanted = list(uids)
        if not wanted:
            return set()
        rows = lookup.execute(
            "SELECT DISTINCT uid FROM measurements WHERE uid IN (SELECT unnest($uids::VARCHAR[]))", {"uids": wanted}
        ).fetchall()
        return {r[0] for r in rows}

    def query_verdicts(self, q: VerdictQuery) -> QueryResult:
        select: list[str] = []
        if q.bucket is not None:
            select.append(f"date_trunc('{q.bucket}', {_TIME_COLUMN}) AS bucket")
        select.extend(q.group_by)
        where, params = _predicates(q.filters, q.since, q.until, time_column=_TIME_COLUMN)
        sql = f"SELECT {', '.join([*select, 'count(*) AS count'])} FROM verdicts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if select:
            positions = ", ".join(str(i) for i in range(1, len(select) + 1))
            sql += f" GROUP BY {positions} ORDER BY {positions}"
        cur = self._con.execute(sql, params)
        columns = [d[0] for d in cur.description]
        return QueryResult(columns=columns, rows=cur.fetchall())

    @contextmanager
    def iter_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Iterator[Verdict]]:
        params: list[Any] = []
        sql = stream_sql(filters, since, until, bind=_bind_into(params))
        # A cursor of its own: DuckDB streams one result per connection.
        cursor = self._con.cursor()
        try:
            cursor.execute(sql, params)

            def rows() -> Iterator[Verdict]:
                while chunk := cursor.fetchmany(2048):
                    for row in chunk:
                        yield stream_verdict(row)

            yield rows()
        finally:
            cursor.close()

    def search_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Verdict]:
        # A top-N over the column scan: zonemaps skip row groups outside the time range, and only the page's
        # rows are materialised whole.
        params: list[Any] = []
        sql = search_sql(filters, since, until, limit, offset, bind=_bind_into(params))
        return [search_verdict(r) for r in self._con.execute(sql, params).fetchall()]

    def count_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        params: list[Any] = []
        sql = "SELECT count(*) FROM verdicts" + search_where(filters, since, until, bind=_bind_into(params))
        return int(self._con.execute(sql, params).fetchall()[0][0])

    def export(
        self,
        table: str,
        path: Path,
        fmt: ExportFormat = "parquet",
        *,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        include_raw: bool = False,
    ) -> int:
        spec, columns = export_columns(table, fmt, include_raw)
        where, params = _export_predicates(spec, filters or {}, since, until)
        query = f"SELECT {', '.join(columns)} FROM {table}"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY " + ", ".join(spec.sort_key)
        options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        target = str(path).replace("'", "''")
        rows = self._con.execute(f"COPY ({query}) TO '{target}' ({options})", params).fetchall()
        return int(rows[0][0]) if rows else 0

    def stats(self) -> dict[str, Any]:
        counts = {}
        for name in TABLES:
            counts[name] = int(self._con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])
        return {
            "backend": "duckdb",
            "path": self.path,
            "schema_version": current_version(self._con),
            "tables": counts,
        }

    def get_raw(self, uid: str) -> bytes | None:
        # fetchall, not fetchone: DuckDB 2 refuses new work while a result is unfinished.
        rows = self._con.execute("SELECT raw_codec, raw FROM measurements WHERE uid = ?", [uid]).fetchall()
        if not rows:
            return None
        codec, blob = rows[0]
        if codec == RAW_CODEC:
            return self._decompressor.decompress(blob)
        if codec in (None, "", "identity"):
            return bytes(blob)
        raise StoreError(f"measurement {uid}: unknown raw codec {codec!r}")

    def delete_measurements(self, uids: Sequence[str]) -> int:
        wanted = list(uids)
        if not wanted:
            return 0
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            before = con.execute("SELECT count(*) FROM measurements WHERE uid IN (SELECT unnest($u::VARCHAR[]))",
                                 {"u": wanted}).fetchall()[0][0]
            for table, column in (("verdicts", "measurement_uid"), ("observations", "measurement_uid"),
                                  ("measurements", "uid")):
                con.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT unnest($u::VARCHAR[]))", {"u": wanted})
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return int(before)

    # -- user reports ------------------------------------------------------

    def add_user_report(self, report: UserReport) -> None:
        self._check_writable()
        check_user_report(report)
        values = user_report_values(report, datetime.now(UTC))
        columns = USER_REPORTS.column_names
        try:
            self._con.execute(
                f"INSERT INTO {USER_REPORTS.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                [values[c] for c in columns],
            )
        except duckdb.ConstraintException:
            raise ValueError(f"a user report with id {report.report_id!r} is stored already") from None

    def list_user_reports(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[UserReport]:
        params: list[Any] = []
        sql = user_report_select(filters, since, until, status, limit, offset, bind=_bind_into(params))
        if self.schema_version < USER_REPORTS_VERSION:
            return []  # a store from before user reports, read as it is
        cur = self._con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [user_report_of(dict(zip(names, row))) for row in cur.fetchall()]

    def moderate_user_report(self, report_id: str, status: str, note: str = "") -> UserReport | None:
        self._check_writable()
        now = datetime.now(UTC)
        current = self.list_user_reports({"report_id": report_id}, limit=1)
        if not current:
            return None
        updated = msgspec.structs.replace(current[0], status=status, moderation_note=note, moderated_at=now)
        check_user_report(updated)
        values = user_report_values(updated, now)
        self._con.execute(
            f"UPDATE {USER_REPORTS.name} SET status = ?, moderation_note = ?, moderated_at = ?, updated_at = ? "
            "WHERE report_id = ?",
            [values["status"], values["moderation_note"], values["moderated_at"], values["updated_at"], report_id],
        )
        return updated

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._lookup.close()
            self._con.close()
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)

    def _check_writable(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        if self.read_only:
            raise StoreError(f"store {self.path} was opened read-only")

    def __repr__(self) -> str:
        return f"DuckDBStore({self.path!r}, read_only={self.read_only})"


# -- helpers: pure functions building SQL and filtering rows ----------------


def _describe_open_error(path: str, exc: duckdb.Error) -> str:
    text = str(exc)
    if "lock" not in text.lower():
        return f"cannot open store {path}: {text}"
    holder = re.search(r"PID (\d+)", text)
    who = f"process {holder.group(1)}" if holder else "another process"
    return (
        f"store {path} is locked by {who}: netvigil allows one writing process per store "
        "(stop the other importer, or open read-only when nothing writes)"
    )


def _insert_sql(spec: TableSpec, source: str) -> str:
    """``INSERT … SELECT`` naming every column, so table column order never matters."""
    staged = set(STAGED_MEASUREMENT_COLUMNS) if spec is MEASUREMENTS else set(spec.column_names)
    exprs = []
    for c in spec.columns:
        if c.name not in staged:
            exprs.append(f"${c.name}")  # computed per batch: import_run_id, imported_at, raw_codec
        elif c.type is ColumnType.TIMESTAMP:
            exprs.append(f"try_strptime({c.name}, '{_OONI_TIME}')")
        elif c.type is ColumnType.BYTES:
            exprs.append(f"from_base64({c.name})")
        else:
            exprs.append(c.name)
    return f"INSERT INTO {spec.name} ({', '.join(spec.column_names)}) SELECT {', '.join(exprs)} FROM {source}"


def _read_json_sql(spec: TableSpec, path: Path) -> str:
    """A ``read_json`` over staged rows with every staged column typed.

    Timestamps and bytes travel as text (OONI's time string, base64) and are
    converted on insert by :func:`_insert_sql`.
    """
    staged = STAGED_MEASUREMENT_COLUMNS if spec is MEASUREMENTS else spec.column_names
    by_name = {c.name: c for c in spec.columns}
    types = ", ".join(
        f"'{name}': '{'VARCHAR' if by_name[name].type in (ColumnType.TIMESTAMP, ColumnType.BYTES) else DUCKDB_TYPES[by_name[name].type]}'"
        for name in staged
    )
    quoted = str(path).replace("'", "''")
    return f"read_json('{quoted}', format='newline_delimited', columns={{{types}}})"


def _bind_into(params: list[Any]) -> Callable[[str, Any], str]:
    """DuckDB binds positionally: each value is appended in the order its ``?`` appears."""

    def bind(column: str, value: Any) -> str:
        params.append(value)
        return "?"

    return bind


def _predicates(
    filters: Mapping[str, FilterValue],
    since: datetime | None,
    until: datetime | None,
    *,
    time_column: str | None,
    prefix: str = "",
) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters (the semantics are shared with every backend: ``_shared.predicates``)."""
    params: list[Any] = []
    where = predicates(filters, since, until, time_column=time_column, bind=_bind_into(params), prefix=prefix)
    return where, params


def _export_predicates(
    spec: TableSpec,
    filters: Mapping[str, FilterValue],
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[str], list[Any]]:
    params: list[Any] = []
    return export_predicates(spec, filters, since, until, bind=_bind_into(params)), params


@dataclass(frozen=True, slots=True)
class _Staged:
    """A batch's NDJSON staging lines, made by ``DuckDBBulkWriter.prepare``."""

    observations: bytes
    verdicts: bytes
    measurements: bytes


class DuckDBBulkWriter(BulkWriter):
    """Groups many batches into one transaction.

    Each batch is staged at once — raw bytes compressed, rows encoded as NDJSON
    appended to the staging files — so the decoded records are freed right
    away and memory holds only compact staged bytes. Every ``flush_every``
    measurements or ``flush_bytes`` of staged rows (and on ``flush``) they are inserted with one
    statement per table and committed: DuckDB's fixed cost per statement and
    per commit is paid once per group, not once per batch.
    """

    def __init__(self, store: DuckDBStore, flush_every: int = 1000, flush_bytes: int = 16 << 20,
                 *, single_threaded: bool = False) -> None:
        super().__init__(store)
        self._db = store
        # A long import already keeps one core busy judging: DuckDB's own worker
        # threads would only compete with it for the other one, and its inserts of
        # a few thousand rows cost more CPU on two threads than on one.
        self._restore_threads: Any = None
        if single_threaded:
            self._restore_threads = store._con.execute("SELECT current_setting('threads')").fetchall()[0][0]
            store._con.execute("SET threads = 1")
        self._flush_every = flush_every
        # Also flush by staged size: a group of large measurements must not outgrow DuckDB's memory limit.
        self._flush_bytes = flush_bytes
        self._staged_bytes = 0
        self._pending: set[str] = set()
        self._pending_counts = [0, 0, 0]  # measurements, observations, verdicts
        self._skipped = 0
        tag = uuid.uuid4().hex[:12]  # writers of one store never share staging files
        staging = store._staging_dir()
        self._files = {spec.name: staging / f"{spec.name}-{tag}.ndjson" for spec in (MEASUREMENTS, OBSERVATIONS, VERDICTS)}
        self._handles = {name: path.open("wb") for name, path in self._files.items()}
        self._run_id: str | None = None
        # prepare() may run on another thread than add(): it has its own compressor and encoder.
        self._prep_compressor = zstandard.ZstdCompressor(level=store._zstd_level)
        self._prep_json = msgspec.json.Encoder()

    def prepare(self, batch: StoreBatch) -> StoreBatch:
        """Compress and encode the whole batch, as if every measurement in it were new.

        That is the usual case; ``add`` uses the result only when the lookups
        prove it (no measurement stored or repeated, no row of another
        measurement) and stages the rows itself otherwise. Runs on its own
        compressor and encoder, so it may overlap with ``add`` of the batch before.
        """
        if batch.measurements and batch.prepared is None:
            raws = compress_raw(batch.measurements, self._prep_compressor)
            encode = self._prep_json.encode_lines
            batch.prepared = _Staged(
                encode(batch.observations), encode(batch.verdicts),
                encode(stage_measurements(batch.measurements, raws)),
            )
        return batch

    def add(self, batch: StoreBatch) -> None:
        db = self._db
        db._check_writable()
        if not batch.measurements:
            return
        self._run_id = batch.import_run_id or self._run_id
        known = db._known(db._con, [m.uid for m in batch.measurements]) | self._pending
        fresh = _first_unknown(batch.measurements, known)
        self._skipped += len(batch.measurements) - len(fresh)
        if not fresh:
            return
        new_uids = {m.uid for m in fresh}
        repeated = len({m.uid for m in batch.measurements}) < len(batch.measurements)
        observations = _rows_of(batch.observations, new_uids, "observation_id", dedupe=repeated)
        verdicts = _rows_of(batch.verdicts, new_uids, "verdict_id", dedupe=repeated)
        prepared = batch.prepared
        if (isinstance(prepared, _Staged) and len(fresh) == len(batch.measurements)
                and len(observations) == len(batch.observations) and len(verdicts) == len(batch.verdicts)):
            staged = [prepared.observations, prepared.verdicts, prepared.measurements]
        else:
            encode = db._json.encode_lines
            raws = compress_raw(fresh, db._compressor)
            staged = [encode(observations), encode(verdicts), encode(stage_measurements(fresh, raws))]
        batch.prepared = None
        for spec, lines in zip((OBSERVATIONS, VERDICTS, MEASUREMENTS), staged):
            self._handles[spec.name].write(lines)
            self._staged_bytes += len(lines)
        self._pending |= new_uids
        counts = self._pending_counts
        counts[0] += len(fresh)
        counts[1] += len(observations)
        counts[2] += len(verdicts)
        if counts[0] >= self._flush_every or self._staged_bytes >= self._flush_bytes:
            self.flush()

    def flush(self) -> WriteResult:
        if self._pending_counts[0] or self._skipped:
            self._commit()
        return self.totals

    def _commit(self) -> None:
        db = self._db
        for handle in self._handles.values():
            handle.flush()
        con = db._con
        con.begin()
        try:
            if self._pending_counts[0]:
                for spec in (OBSERVATIONS, VERDICTS):
                    con.execute(_insert_sql(spec, _read_json_sql(spec, self._files[spec.name]))).fetchall()
                params = {
                    "import_run_id": self._run_id,
                    "imported_at": datetime.now(UTC).replace(tzinfo=None),
                    "raw_codec": RAW_CODEC,
                }
                con.execute(_insert_sql(MEASUREMENTS, _read_json_sql(MEASUREMENTS, self._files[MEASUREMENTS.name])), params).fetchall()
            con.commit()
        except BaseException as exc:
            con.rollback()
            if isinstance(exc, duckdb.Error):
                raise StoreError(f"write failed, nothing of this group was written: {exc}") from exc
            raise
        new, obs, ver = self._pending_counts
        self._count(WriteResult(new=new, skipped=self._skipped, observations=obs, verdicts=ver))
        self._pending.clear()
        self._pending_counts = [0, 0, 0]
        self._skipped = 0
        self._staged_bytes = 0
        for handle in self._handles.values():
            handle.seek(0)
            handle.truncate()

    def close(self) -> WriteResult:
        try:
            return self.flush()
        finally:
            for name, handle in self._handles.items():
                handle.close()
                self._files[name].unlink(missing_ok=True)
            if self._restore_threads is not None and not self._db._closed:
                self._db._con.execute(f"SET threads = {int(self._restore_threads)}")
                self._restore_threads = None

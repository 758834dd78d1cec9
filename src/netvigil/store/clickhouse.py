"""The scale-out backend: ClickHouse, through clickhouse-connect, on a server or in-process (chdb).

One client library, one SQL: ``clickhouse://user:pass@host:8123/db`` (and
``clickhouses://`` for TLS) talks HTTP to a server; ``chdb:///path/to/dir``
(and ``chdb://`` in memory) runs the ClickHouse engine inside this process
through clickhouse-connect's chdb interface. The statements, their parameters
and the result decoding are the same on both, so the tests that run against
chdb in CI run the SQL a server gets.

Idempotent writes. ClickHouse has neither a unique key nor transactions across
tables, so this store does two things:

- a batch's uids are looked up first and only new measurements are written
  (under a lock shared by the store's writers, which also see each other's
  not-yet-flushed uids): re-importing a file writes nothing, and ``WriteResult``
  counts are exact for a single writing process;
- the tables are ``ReplacingMergeTree`` keyed on (…, row id), and every read
  uses ``FINAL``. Two processes that write the same measurement at the same
  moment (two collectors behind a load balancer), or a write retried after a
  crash that had stored observations but not yet their measurement (the
  measurement row goes last, so the retry happens), leave a duplicate that
  merges away eventually and is never counted twice meanwhile.

Raw measurements are stored as they came, in a ``String`` column that
ClickHouse compresses with zstd per column block (similar measurements
compress together, better than one frame each). Rows travel as NDJSON
(``JSONEachRow``), which can carry text only: a record that is not valid UTF-8
is stored base64-encoded with ``raw_codec = 'base64'``; ``get_raw`` undoes
either, byte for byte.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from netvigil.model.measurement import Measurement
from netvigil.model.verdict import Verdict
from netvigil.store._shared import (
    TIME_COLUMN,
    export_columns,
    export_predicates,
    first_unknown,
    predicates,
    rows_of,
    search_sql,
    search_verdict,
    search_where,
    stream_sql,
    stream_verdict,
)
from netvigil.store._staging import stage_measurements
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
from netvigil.store.clickhouse_schema import (
    CLICKHOUSE_TYPES,
    Target,
    apply_migrations,
    check_schema,
    current_version,
)
from netvigil.store.schema import MEASUREMENTS, OBSERVATIONS, TABLES, VERDICTS, ColumnType
from netvigil.model.userreport import UserReport, check_user_report
from netvigil.store.clickhouse_schema import USER_REPORTS_VERSION
from netvigil.store.schema import USER_REPORTS, user_report_of, user_report_select, user_report_values

__all__ = ["ClickHouseLocation", "ClickHouseStore", "ClickHouseBulkWriter", "parse_clickhouse_url", "SCHEMES"]

SCHEMES = ("clickhouse", "clickhouses", "chdb")

# clickhouse-connect logs a warning before raising what we turn into StoreError; without a
# handler Python would print it on stderr beside the CLI's one-line error. Apps that
# configure logging still get it (records propagate past a NullHandler).
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
DEFAULT_DATABASE = "netvigil"
RAW_IDENTITY = "identity"
RAW_BASE64 = "base64"

_BUCKETS = {"hour": "toStartOfHour", "day": "toStartOfDay"}
# What DuckDB's strptime('%Y-%m-%d %H:%M:%S') accepts: 1-4 digit years, 1-2 digit fields, ASCII whitespace.
_WS = "[ \t\n\r\v\f]"
_OONI_TIME = re.compile(rf"{_WS}*(\d{{1,4}})-(\d{{1,2}})-(\d{{1,2}}){_WS}+(\d{{1,2}}):(\d{{1,2}}):(\d{{1,2}}){_WS}*")
# A column name -> its logical type, over all tables (a name means one type everywhere).
_COLUMN_TYPES: dict[str, ColumnType] = {c.name: c.type for spec in TABLES.values() for c in spec.columns}
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# -- where the store is ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClickHouseLocation:
    """A parsed store URL. ``path`` is set for chdb on disk, ``host`` for a server; neither: chdb in memory."""

    scheme: str
    database: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str = ""
    path: str | None = None
    cluster: str | None = None
    # chdb:// without a database: a database of this store's own, dropped on close.
    private: bool = False

    @property
    def in_process(self) -> bool:
        return self.scheme == "chdb"

    @property
    def in_memory(self) -> bool:
        return self.in_process and self.path is None

    def display(self) -> str:
        """The URL without its password: what stats() and error messages show."""
        if self.in_process:
            return f"chdb://{self.path or ''}" + ("" if self.private else f"?database={self.database}")
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.database}"


def parse_clickhouse_url(url: str) -> ClickHouseLocation:
    """``clickhouse[s]://[user[:password]@]host[:port][/database][?cluster=NAME]`` or ``chdb://[path][?database=NAME]``.

    The database defaults to ``netvigil`` and is created on first use; a
    server's port defaults to 8123 (8443 with TLS). ``chdb:///abs/dir`` and
    ``chdb://rel/dir`` name a directory; ``chdb://`` (or ``chdb://:memory:``)
    is a private in-memory database that goes with ``close()``;
    ``chdb://?database=NAME`` is a named one that stores of this process share.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise StoreError(f"not a ClickHouse store URL: {url!r} (use clickhouse://, clickhouses:// or chdb://)")
    target, _, query = rest.partition("?")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - ({"database"} if scheme == "chdb" else {"cluster"}))
    if unknown:
        raise StoreError(f"unknown option(s) {unknown} in store URL {_redact(url)}")
    if scheme == "chdb":
        # chdb keeps one in-memory engine per process: a private chdb:// store gets a database of its own in it.
        path = None if target in ("", ":memory:") else str(Path(unquote(target)).expanduser().absolute())
        private = path is None and not options.get("database")
        database = options.get("database") or (f"netvigil_mem_{uuid.uuid4().hex[:12]}" if private else DEFAULT_DATABASE)
        return ClickHouseLocation(scheme, _database_name(database, url), path=path, private=private)
    parts = urlsplit(f"{scheme}://{target}")
    if not parts.hostname:
        raise StoreError(f"store URL {_redact(url)} names no host")
    try:
        port = parts.port or (8443 if scheme == "clickhouses" else 8123)
    except ValueError:
        raise StoreError(f"store URL {_redact(url)} has a bad port") from None
    database = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    return ClickHouseLocation(
        scheme, _database_name(database, url), host=parts.hostname, port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else "",
        cluster=_database_name(options["cluster"], url) if options.get("cluster") else None,
    )


def _database_name(name: str, url: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise StoreError(f"bad database name {name!r} in store URL {_redact(url)} (letters, digits and _)")
    return name


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


# -- the store --------------------------------------------------------------------


class ClickHouseStore(Store):
    """A store in a ClickHouse database (a server's, or chdb's in this process).

    Unlike a DuckDB file, a server database takes any number of writing
    processes (collectors); see the module docstring for how writes stay
    idempotent. The store may be used from several threads (the importer looks
    up uids on one while another writes).
    """

    def __init__(
        self,
        location: ClickHouseLocation | str,
        *,
        read_only: bool = False,
        connect_timeout: float = 10,
        query_timeout: float = 300,
    ) -> None:
        self.location = parse_clickhouse_url(location) if isinstance(location, str) else location
        self.read_only = read_only
        self.database = self.location.database
        self._timeouts = (connect_timeout, query_timeout)
        self._closed = False
        if self.location.path is not None:
            _lock_directory(self.location)
        try:
            self._client = self._connect()
        except BaseException:
            _unlock_directory(self.location)
            raise
        try:
            with _errors(f"cannot open store {self.location.display()}"):
                if not read_only:
                    on_cluster = f" ON CLUSTER {self.location.cluster}" if self.location.cluster else ""
                    self._client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}{on_cluster}")
                self._client.database = self.database
                target = Target(self._client, self.database, self.location.cluster)
                self.schema_version = apply_migrations(target, read_only=read_only)
                check_schema(target)
        except BaseException:
            self._client.close()
            _unlock_directory(self.location)
            raise
        # Writers of this store check uids and mark the ones they will write under this lock.
        self._write_lock = threading.Lock()
        self._pending: set[str] = set()
        self._insert_settings: dict[str, Any] = {
            # An import may span many days; each day is a partition (0: no limit).
            "max_partitions_per_insert_block": 0,
        }
        if self.location.cluster:
            # Inserts into Distributed tables reach the shards before they return: durable when flushed.
            self._insert_settings["insert_distributed_sync"] = 1

    def _connect(self, database: str | None = None) -> Any:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError

        loc = self.location
        connect_timeout, query_timeout = self._timeouts
        try:
            if loc.in_process:
                try:
                    import chdb  # noqa: F401
                except ImportError:
                    raise StoreError("chdb:// stores need the chdb package (pip install chdb)") from None
                return clickhouse_connect.get_client(interface="chdb", path=loc.path, database=database)
            return clickhouse_connect.get_client(
                host=loc.host, port=loc.port, username=loc.username or "default", password=loc.password,
                database=database or "", interface="https" if loc.scheme == "clickhouses" else "http",
                connect_timeout=connect_timeout, send_receive_timeout=query_timeout,
                # No server session: requests are independent, so threads may share the client.
                autogenerate_session_id=False,
            )
        except StoreError:
            raise
        except ClickHouseError as exc:
            raise StoreError(_describe_connect_error(loc, exc)) from None

    # -- writing -----------------------------------------------------------

    def write_batch(self, batch: StoreBatch) -> WriteResult:
        """One batch, written before this returns (observations, verdicts, then measurements)."""
        self._check_writable()
        writer = ClickHouseBulkWriter(self, flush_every=len(batch.measurements) + 1, flush_bytes=1 << 62)
        try:
            writer.add(batch)
        finally:
            result = writer.close()
        return result

    def bulk_writer(self) -> "ClickHouseBulkWriter":
        self._check_writable()
        return ClickHouseBulkWriter(self)

    def delete_measurements(self, uids: Sequence[str]) -> int:
        """Lightweight DELETEs (rows vanish from reads at once, from disk at the next merge), verdicts and
        observations before the measurement, so a failure half-way leaves nothing that points nowhere."""
        self._check_writable()
        wanted = list(uids)
        gone = len(self.known_uids(wanted))
        with _errors("delete failed"):
            for chunk in _chunks(wanted):
                for table, column in (("verdicts", "measurement_uid"), ("observations", "measurement_uid"),
                                      ("measurements", "uid")):
                    self._client.command(f"DELETE FROM {table} WHERE {column} IN {{uids:Array(String)}}",
                                         parameters={"uids": chunk})
        return gone

    def _insert(self, table: str, ndjson: bytes) -> None:
        if ndjson:
            self._client.raw_insert(table, None, ndjson, fmt="JSONEachRow", settings=self._insert_settings)

    # -- reading -----------------------------------------------------------

    def known_uids(self, uids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        with _errors("uid lookup failed"):
            for chunk in _chunks(uids):
                known.update(r[0] for r in self._client.query(
                    "SELECT DISTINCT uid FROM measurements WHERE uid IN {uids:Array(String)}",
                    parameters={"uids": chunk}).result_rows)
        return known

    def query_verdicts(self, q: VerdictQuery) -> QueryResult:
        select: list[str] = []
        names: list[str] = []
        if q.bucket is not None:
            select.append(f"{_BUCKETS[q.bucket]}({TIME_COLUMN}) AS bucket")
            names.append("bucket")
        select.extend(q.group_by)
        names.extend(q.group_by)
        binder = _Binder()
        where = predicates(q.filters, q.since, q.until, time_column=TIME_COLUMN, bind=binder)
        sql = f"SELECT {', '.join([*select, 'count() AS count'])} FROM verdicts FINAL"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if names:
            # ORDER BY as DuckDB's default: ascending, NULLs last.
            sql += f" GROUP BY {', '.join(names)} ORDER BY {', '.join(n + ' ASC NULLS LAST' for n in names)}"
        with _errors("query failed"):
            result = self._client.query(sql, parameters=binder.params)
        # Named here, not taken from the result: an empty result carries no column names.
        return QueryResult(columns=[*names, "count"], rows=[tuple(r) for r in result.result_rows])

    def search_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Verdict]:
        """A top-N sort; filters on country, network and test narrow it to a range of the sorting key, the time
        range to the day partitions."""
        binder = _Binder()
        sql = search_sql(filters, since, until, limit, offset, bind=binder, final=" FINAL")
        with _errors("verdict search failed"):
            rows = self._client.query(sql, parameters=binder.params).result_rows
        return [search_verdict(r) for r in rows]

    def count_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        binder = _Binder()
        sql = "SELECT count() FROM verdicts FINAL" + search_where(filters, since, until, bind=binder)
        with _errors("verdict count failed"):
            return int(self._client.query(sql, parameters=binder.params).result_rows[0][0])

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
        """Written by ClickHouse's own Parquet/CSV writers, streamed to ``path`` (a ``.part`` file until complete)."""
        spec, columns = export_columns(table, fmt, include_raw)
        binder = _Binder()
        where = export_predicates(spec, filters or {}, since, until, bind=binder)
        source = f"FROM {table} FINAL" + (" WHERE " + " AND ".join(where) if where else "")
        order = ", ".join(f"{c} ASC NULLS LAST" for c in spec.sort_key)
        settings: dict[str, Any] = (
            {"output_format_parquet_compression_method": "zstd"} if fmt == "parquet"
            else {"format_csv_null_representation": ""}
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        with _errors(f"export of {table} failed"):
            count = int(self._client.query(f"SELECT count() {source}", parameters=binder.params).result_rows[0][0])
            stream = self._client.raw_stream(
                f"SELECT {', '.join(columns)} {source} ORDER BY {order}", parameters=binder.params,
                settings=settings, fmt="Parquet" if fmt == "parquet" else "CSVWithNames",
            )
            try:
                with partial.open("wb") as fh:
                    for chunk in stream:
                        fh.write(chunk)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            finally:
                stream.close()
        partial.replace(path)
        return count

    def stats(self) -> dict[str, Any]:
        with _errors("stats failed"):
            counts = {name: int(self._client.query(f"SELECT count() FROM {name} FINAL").result_rows[0][0])
                      for name in TABLES}
            version = current_version(Target(self._client, self.database, self.location.cluster))
        return {
            "backend": "chdb" if self.location.in_process else "clickhouse",
            "path": self.location.display(),
            "schema_version": version,
            "tables": counts,
        }

    def get_raw(self, uid: str) -> bytes | None:
        with _errors("raw lookup failed"):
            rows = self._client.query(
                "SELECT raw_codec, raw FROM measurements WHERE uid = {uid:String} LIMIT 1",
                parameters={"uid": uid}, column_formats={"raw": "bytes"},
            ).result_rows
        if not rows:
            return None
        return _decode_raw(uid, *rows[0])

    # -- user reports ------------------------------------------------------
    # A report's versions share its sorting key; ReplacingMergeTree keeps the newest ``updated_at`` and ``FINAL``
    # reads only that one, so moderating is inserting the new version.

    def add_user_report(self, report: UserReport) -> None:
        self._check_writable()
        check_user_report(report)
        with self._write_lock:
            if self._user_report_rows(report.report_id):
                raise ValueError(f"a user report with id {report.report_id!r} is stored already")
            self._insert_user_report(user_report_values(report, datetime.now(UTC)))

    def list_user_reports(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[UserReport]:
        params: dict[str, Any] = {}
        sql = user_report_select(filters, since, until, status, limit, offset, bind=_report_binder(params),
                                 final=" FINAL")
        if self.schema_version < USER_REPORTS_VERSION:
            return []  # a database from before user reports, read as it is
        with _errors("reading user reports failed"):
            result = self._client.query(sql, parameters=params)
        return [user_report_of(dict(zip(USER_REPORTS.column_names, row))) for row in result.result_rows]

    def moderate_user_report(self, report_id: str, status: str, note: str = "") -> UserReport | None:
        self._check_writable()
        with self._write_lock:
            rows = self._user_report_rows(report_id)
            if not rows:
                return None
            current = rows[0]
            now = datetime.now(UTC)
            previous = current["updated_at"].replace(tzinfo=UTC) if current["updated_at"].tzinfo is None \
                else current["updated_at"]
            # The new version must sort after the old one even if the clocks disagree.
            version = max(now, previous + timedelta(microseconds=1))
            updated = msgspec.structs.replace(user_report_of(current), status=status, moderation_note=note,
                                              moderated_at=now)
            check_user_report(updated)
            self._insert_user_report(user_report_values(updated, version))
        return updated

    def _user_report_rows(self, report_id: str) -> list[dict[str, Any]]:
        with _errors("reading user reports failed"):
            rows = self._client.query(
                f"SELECT {', '.join(USER_REPORTS.column_names)} FROM {USER_REPORTS.name} FINAL "
                "WHERE report_id = {id:String}", parameters={"id": report_id}).result_rows
        return [dict(zip(USER_REPORTS.column_names, r)) for r in rows]

    def _insert_user_report(self, values: dict[str, Any]) -> None:
        row = {k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for k, v in values.items()}
        with _errors("writing the user report failed"):
            self._client.raw_insert(USER_REPORTS.name, None, msgspec.json.encode(row) + b"\n", fmt="JSONEachRow")

    def raws(self, uids: Sequence[str]) -> dict[str, bytes]:
        """The original bytes of several measurements at once (what ``store copy`` reads per batch)."""
        out: dict[str, bytes] = {}
        with _errors("raw lookup failed"):
            for chunk in _chunks(uids):
                rows = self._client.query(
                    "SELECT uid, raw_codec, raw FROM measurements WHERE uid IN {uids:Array(String)} LIMIT 1 BY uid",
                    parameters={"uids": chunk}, column_formats={"raw": "bytes"},
                ).result_rows
                out.update((uid, _decode_raw(uid, codec, blob)) for uid, codec, blob in rows)
        return out

    @contextmanager
    def iter_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Iterator[Verdict]]:
        binder = _Binder()
        sql = stream_sql(filters, since, until, bind=binder, final=" FINAL", nulls_last=" ASC NULLS LAST")
        client = self._connect(self.database)

        def rows() -> Iterator[Verdict]:
            settings = {"max_bytes_before_external_sort": 256 << 20}
            with _errors("reading verdicts failed"), client.query_rows_stream(
                    sql, parameters=binder.params, settings=settings) as stream:
                for row in stream:
                    yield stream_verdict(row)

        it = rows()
        try:
            yield it
        finally:
            it.close()
            client.close()

    @contextmanager
    def iter_rows(self, table: str, columns: Sequence[str], order_by: Sequence[str]) -> Iterator[Iterator[dict]]:
        """Every row of a table (each once, as ``FINAL`` sees them) in ``order_by`` order, streamed.

        On a client of its own, so several tables can be streamed side by side
        (``store copy`` merges them by uid); a sort larger than 256 MB spills to disk.
        """
        if table not in TABLES or not set(columns) <= set(TABLES[table].column_names) - {"raw"}:
            raise ValueError(f"cannot stream {table} columns {list(columns)}")
        client = self._connect(self.database)
        sql = (f"SELECT {', '.join(columns)} FROM {table} FINAL "
               f"ORDER BY {', '.join(c + ' ASC NULLS LAST' for c in order_by)}")
        settings = {"max_bytes_before_external_sort": 256 << 20}

        def rows() -> Iterator[dict]:
            with _errors(f"reading {table} failed"), client.query_rows_stream(sql, settings=settings) as stream:
                for row in stream:
                    yield dict(zip(columns, row))

        it = rows()
        try:
            yield it
        finally:
            it.close()
            client.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.location.private:
                self._client.command(f"DROP DATABASE IF EXISTS {self.database}")
        finally:
            self._client.close()
            _unlock_directory(self.location)

    def _check_writable(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.location.display()} is closed")
        if self.read_only:
            raise StoreError(f"store {self.location.display()} was opened read-only")

    def __repr__(self) -> str:
        return f"ClickHouseStore({self.location.display()!r}, read_only={self.read_only})"


# -- helpers -----------------------------------------------------------------------

# chdb does not keep a second process out of its directory once the engine has
# started (it locks only while starting), and two engines writing one directory
# would corrupt it: a chdb store holds an flock on <dir>/netvigil.lock, shared
# by the stores of this process (they share its one engine anyway).
_DIR_LOCKS: dict[str, list[int]] = {}  # directory -> [fd, stores using it]
_DIR_LOCKS_GUARD = threading.Lock()


def _lock_directory(loc: ClickHouseLocation) -> None:
    assert loc.path is not None
    with _DIR_LOCKS_GUARD:
        held = _DIR_LOCKS.get(loc.path)
        if held is not None:
            held[1] += 1
            return
        os.makedirs(loc.path, exist_ok=True)
        fd = os.open(os.path.join(loc.path, "netvigil.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(
                f"store {loc.display()} is in use by process {holder}: chdb allows one process per directory "
                "(stop the other one, or use a ClickHouse server for several processes)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _DIR_LOCKS[loc.path] = [fd, 1]


def _unlock_directory(loc: ClickHouseLocation) -> None:
    if loc.path is None:
        return
    with _DIR_LOCKS_GUARD:
        held = _DIR_LOCKS.get(loc.path)
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _DIR_LOCKS[loc.path]
            os.close(held[0])  # releases the flock


def _chunks(uids: Sequence[str], size: int = 1000) -> Iterator[list[str]]:
    """Distinct uids in lists a server takes as one bound parameter.

    Large bindings travel as HTML form fields, which a server caps at
    ``http_max_field_value_size`` (128 KiB by default): 1,000 uids of OONI's
    length are about 40 KiB.
    """
    wanted = list(dict.fromkeys(uids))
    for i in range(0, len(wanted), size):
        yield wanted[i:i + size]


def _report_binder(params: dict[str, Any]) -> Any:
    """Typed parameters for user report queries (their columns are not among the measurement tables')."""

    def bind(column: str, value: Any) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return f"{{{name}:{CLICKHOUSE_TYPES[USER_REPORTS.column(column).type]}}}"

    return bind


class _Binder:
    """Typed server-side parameters (``{p0:String}``): values never become SQL text."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def __call__(self, column: str, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{CLICKHOUSE_TYPES[_COLUMN_TYPES.get(column, ColumnType.STRING)]}}}"


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """ClickHouse and chdb errors become StoreError (one line, no driver traceback for the CLI)."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        yield
    except ClickHouseError as exc:
        raise StoreError(f"{what}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe_connect_error(loc: ClickHouseLocation, exc: BaseException) -> str:
    text = _first_line(exc)
    if loc.in_process and "Another server instance in same directory" in str(exc):
        return (f"store {loc.display()} is in use by another process: chdb allows one process per directory "
                "(stop the other one, or use a ClickHouse server for several processes)")
    if loc.in_process and "already initialized with path" in text:
        return (f"cannot open store {loc.display()}: chdb runs one engine per process and another chdb store "
                f"with a different directory is open; close it first ({text})")
    if loc.in_process:
        return f"cannot open store {loc.display()}: {text}"
    # urllib3 wraps the reason ("[Errno 111] Connection refused") in retries and pool names.
    reason = re.search(r"\[Errno -?\d+\] [^'\")]+|timed out|Name or service not known", text)
    return f"cannot reach ClickHouse at {loc.display()}: {reason.group(0) if reason else text}"


def ooni_time(value: str | None) -> str | None:
    """OONI's ``YYYY-MM-DD hh:mm:ss`` (UTC), normalised, if ``value`` is one that ClickHouse can hold; else None.

    What DuckDB's ``try_strptime`` does on insert, done before the rows are
    encoded (ClickHouse's JSON reader would reject the whole insert instead).
    The one difference: DateTime64 holds the years 1900-2299, so a time
    outside them is NULL here and kept by DuckDB.
    """
    if value is None:
        return None
    match = _OONI_TIME.fullmatch(value)
    if match is None:
        return None
    try:
        t = datetime(*map(int, match.groups()))  # type: ignore[misc]
    except ValueError:
        return None
    return t.strftime("%Y-%m-%d %H:%M:%S") if 1900 <= t.year <= 2299 else None


def _decode_raw(uid: str, codec: str, blob: bytes) -> bytes:
    if codec == RAW_IDENTITY:
        return bytes(blob)
    if codec == RAW_BASE64:
        return base64.b64decode(blob)
    raise StoreError(f"measurement {uid}: unknown raw codec {codec!r}")


def _raw_text(raw: bytes) -> tuple[str, str]:
    """(text to store, codec): the bytes as they are when they are UTF-8, else base64."""
    try:
        return raw.decode("utf-8"), RAW_IDENTITY
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), RAW_BASE64


def _staged_verdicts(verdicts: Sequence[Verdict]) -> list[Verdict]:
    out = []
    for v in verdicts:
        t = v.measurement_start_time
        if t is not None and ooni_time(t) is None:
            v = msgspec.structs.replace(v, measurement_start_time=None)
        out.append(v)
    return out


def _staged_measurements(ms: Sequence[Measurement], run_id: str | None, imported_at: str) -> list[dict[str, Any]]:
    texts = [_raw_text(m.raw) for m in ms]
    rows = stage_measurements(ms, [t for t, _ in texts])
    for row, (_, codec) in zip(rows, texts, strict=True):
        row["raw_codec"] = codec
        row["import_run_id"] = run_id
        row["imported_at"] = imported_at
        row[TIME_COLUMN] = ooni_time(row.get(TIME_COLUMN))
    return rows


@dataclass(frozen=True, slots=True)
class _Staged:
    """A batch's NDJSON lines per table, made by ``ClickHouseBulkWriter.prepare``."""

    observations: bytes
    verdicts: bytes
    measurements: bytes
    run_id: str | None


class ClickHouseBulkWriter(BulkWriter):
    """Groups batches into few, large inserts (ClickHouse makes one part per insert and partition).

    ``prepare`` encodes a batch (no database); ``add`` keeps only measurements
    that are neither stored nor pending in any writer of this store, appends
    their rows to in-memory NDJSON buffers, and every ``flush_every``
    measurements or ``flush_bytes`` inserts them: observations and verdicts
    first, measurements last, so a measurement is only "known" once its rows
    are in.
    """

    def __init__(self, store: ClickHouseStore, flush_every: int = 1000, flush_bytes: int = 32 << 20) -> None:
        super().__init__(store)
        self._db = store
        self._flush_every = flush_every
        self._flush_bytes = flush_bytes
        self._buffers = {name: bytearray() for name in (OBSERVATIONS.name, VERDICTS.name, MEASUREMENTS.name)}
        self._mine: set[str] = set()  # uids this writer has buffered (and marked pending in the store)
        self._counts = [0, 0, 0]  # measurements, observations, verdicts
        self._skipped = 0
        self._prep_json = msgspec.json.Encoder()  # prepare() may run on another thread than add()
        self._json = msgspec.json.Encoder()

    def prepare(self, batch: StoreBatch) -> StoreBatch:
        """Encode the whole batch as if every measurement were new (``add`` checks that and re-stages if not)."""
        if batch.measurements and batch.prepared is None:
            batch.prepared = self._stage(batch.measurements, batch.observations, batch.verdicts,
                                         batch.import_run_id, self._prep_json)
        return batch

    @staticmethod
    def _stage(ms: Sequence[Measurement], obs: Sequence[Any], verdicts: Sequence[Verdict], run_id: str | None,
               encoder: msgspec.json.Encoder) -> _Staged:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        return _Staged(
            encoder.encode_lines(obs), encoder.encode_lines(_staged_verdicts(verdicts)),
            encoder.encode_lines(_staged_measurements(ms, run_id, now)), run_id,
        )

    def add(self, batch: StoreBatch) -> None:
        db = self._db
        db._check_writable()
        if not batch.measurements:
            return
        uids = [m.uid for m in batch.measurements]
        with db._write_lock:
            known = db.known_uids(uids) | db._pending
            fresh = first_unknown(batch.measurements, known)
            new_uids = {m.uid for m in fresh}
            db._pending |= new_uids
        self._mine |= new_uids
        self._skipped += len(batch.measurements) - len(fresh)
        if not fresh:
            batch.prepared = None
            return
        repeated = len(set(uids)) < len(uids)
        observations = rows_of(batch.observations, new_uids, "observation_id", dedupe=repeated)
        verdicts = rows_of(batch.verdicts, new_uids, "verdict_id", dedupe=repeated)
        prepared = batch.prepared
        if not (isinstance(prepared, _Staged) and prepared.run_id == batch.import_run_id
                and len(fresh) == len(batch.measurements) and len(observations) == len(batch.observations)
                and len(verdicts) == len(batch.verdicts)):
            prepared = self._stage(fresh, observations, verdicts, batch.import_run_id, self._json)
        batch.prepared = None
        for name, lines in ((OBSERVATIONS.name, prepared.observations), (VERDICTS.name, prepared.verdicts),
                            (MEASUREMENTS.name, prepared.measurements)):
            self._buffers[name] += lines
        self._counts[0] += len(fresh)
        self._counts[1] += len(observations)
        self._counts[2] += len(verdicts)
        if self._counts[0] >= self._flush_every or sum(map(len, self._buffers.values())) >= self._flush_bytes:
            self.flush()

    def flush(self) -> WriteResult:
        if self._counts[0] or self._skipped:
            self._insert()
        return self.totals

    def _insert(self) -> None:
        db = self._db
        counts, skipped = self._counts, self._skipped
        self._counts, self._skipped = [0, 0, 0], 0
        try:
            with _errors("write failed; measurements of this group were not stored and will be written again"):
                for name in (OBSERVATIONS.name, VERDICTS.name, MEASUREMENTS.name):
                    db._insert(name, bytes(self._buffers[name]))
        finally:
            # Written or not, these uids are no longer pending: after a failure
            # the next attempt finds them unknown and writes them again.
            self._release()
        new, obs, ver = counts
        self._count(WriteResult(new=new, skipped=skipped, observations=obs, verdicts=ver))

    def _release(self) -> None:
        with self._db._write_lock:
            self._db._pending -= self._mine
        self._mine = set()
        for buffer in self._buffers.values():
            buffer.clear()

    def close(self) -> WriteResult:
        try:
            return self.flush()
        finally:
            self._release()

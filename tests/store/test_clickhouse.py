"""ClickHouseStore: the store test cases again, on chdb and over HTTP (CI) and on a server (NETVIGIL_CLICKHOUSE_URL).

The backend-neutral cases of ``test_store.py`` are imported and run here with
this module's ``store`` fixture, so DuckDB and ClickHouse answer the same
assertions. What differs by nature (types, engines, raw encoding, many
writers) is tested below them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import msgspec
import pytest
from store_records import observations_for, replicate

# The backend-neutral cases, collected again here with this module's `store` fixture.
from test_store import (  # noqa: F401
    batch_of,
    test_export_filters_through_the_measurement,
    test_get_raw_returns_the_exact_bytes,
    test_iter_verdicts_streams_by_network_then_time,
    test_partly_known_batch_and_repeats_within_batch,
    test_query_filters,
    test_query_groups_and_buckets,
    test_rows_of_unknown_measurements_are_not_written,
    test_unparsable_start_time_is_null,
    test_write_then_rewrite_is_idempotent,
)

from netvigil.model.measurement import Measurement
from netvigil.store import Store, StoreBatch, StoreError, VerdictQuery, open_store, store_file
from netvigil.store.clickhouse import ClickHouseStore, ooni_time, parse_clickhouse_url
from netvigil.store.clickhouse_schema import LATEST_VERSION, ORDER_BY, iter_types, schema_statements
from netvigil.store.schema import OBSERVATIONS, TABLES

HAVE_CHDB = importlib.util.find_spec("chdb") is not None
SERVER_URL = os.environ.get("NETVIGIL_CLICKHOUSE_URL")


def require_chdb() -> None:
    """Skip without chdb; in CI (which installs the test extra) its absence is a failure, not a skip."""
    if not HAVE_CHDB:
        reason = "chdb is not installed (it comes with the test extra: pip install -e '.[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true")
        pytest.skip(reason)


def server_database_url(base: str, database: str) -> str:
    """The server URL with its database replaced: each test gets a database of its own."""
    loc = parse_clickhouse_url(base)
    user = ""
    if loc.username:
        user = loc.username + (f":{loc.password}" if loc.password else "") + "@"
    cluster = f"?cluster={loc.cluster}" if loc.cluster else ""
    return f"{loc.scheme}://{user}{loc.host}:{loc.port}/{database}{cluster}"


@pytest.fixture(params=["chdb", "http", "server"])
def ch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty ClickHouse store URL.

    ``chdb``: in-process, in memory. ``http``: clickhouse-connect's HTTP
    transport against ClickHouse's HTTP interface on loopback, answered by
    chdb (test_clickhouse_http.py). ``server``: a scratch database on the
    server named by NETVIGIL_CLICKHOUSE_URL.
    """
    if request.param == "chdb":
        require_chdb()
        yield "chdb://"
        return
    if request.param == "http":
        require_chdb()
        from test_clickhouse_http import clickhouse_http_endpoint

        with clickhouse_http_endpoint() as base:
            yield f"{base}/netvigil_test_{uuid.uuid4().hex[:10]}"
        return
    if not SERVER_URL:
        pytest.skip("NETVIGIL_CLICKHOUSE_URL is not set: no ClickHouse server to run against")
    database = f"netvigil_test_{uuid.uuid4().hex[:10]}"
    yield server_database_url(SERVER_URL, database)
    import clickhouse_connect

    loc = parse_clickhouse_url(SERVER_URL)
    client = clickhouse_connect.get_client(host=loc.host, port=loc.port, username=loc.username or "default",
                                           password=loc.password, secure=loc.scheme == "clickhouses")
    client.command(f"DROP DATABASE IF EXISTS {database}")
    client.close()


@pytest.fixture
def store(ch_url: str) -> Iterator[Store]:
    with open_store(ch_url) as s:
        yield s


@pytest.fixture
def chdb_dir(tmp_path: Path) -> str:
    """A chdb store on disk (one engine directory per process at a time: tests close what they open)."""
    require_chdb()
    return f"chdb://{tmp_path / 'ch'}"


# -- what differs by nature --------------------------------------------------------


def test_tables_engines_and_types_follow_the_derived_layout(store: ClickHouseStore) -> None:
    client = store._client
    rows = client.query("SELECT table, name, type FROM system.columns WHERE database = {db:String}",
                        parameters={"db": store.database}).result_rows
    have = {(t, n): ty for t, n, ty in rows}
    for table, column, ch_type in iter_types():
        assert have[(table, column)] == ch_type, (table, column)
    assert have[("observations", "dns_answers")] == "Array(String)"
    assert have[("observations", "port")] == "Nullable(Int64)"
    assert have[("verdicts", "measurement_start_time")] == "Nullable(DateTime64(6, 'UTC'))"
    assert have[("measurements", "probe_cc")] == "LowCardinality(Nullable(String))"
    assert ("measurements", "probe_ip") not in have
    engines = dict(client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
        parameters={"db": store.database}).result_rows)
    m = engines["measurements"]
    assert m.startswith("ReplacingMergeTree") and "PARTITION BY toDate(measurement_start_time)" in m
    assert f"ORDER BY ({', '.join(ORDER_BY['measurements'])})" in m
    assert f"ORDER BY ({', '.join(ORDER_BY['verdicts'])})" in engines["verdicts"]
    assert ORDER_BY["verdicts"][:4] == ("probe_cc", "probe_asn", "test_name", "measurement_start_time")
    raw = client.query("SELECT compression_codec FROM system.columns WHERE database = {db:String} "
                       "AND table = 'measurements' AND name = 'raw'", parameters={"db": store.database}).result_rows
    assert raw == [("CODEC(ZSTD(3))",)]


def test_day_partitions(store: ClickHouseStore, netem_qa: list[Measurement]) -> None:
    from test_store import query_store

    query_store(store, netem_qa)  # verdicts on 2024-02-12 and 2024-02-13
    parts = store._client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {db:String} AND table = 'verdicts' AND active",
        parameters={"db": store.database}).result_rows
    assert sorted(p for (p,) in parts) == ["2024-02-12", "2024-02-13"]


def test_raw_bytes_round_trip_including_non_utf8(store: ClickHouseStore, netem_qa: list[Measurement]) -> None:
    base = netem_qa[0]
    raws = [
        bytes(range(128)) + "é😀\u2028".encode(),          # every ASCII byte, control characters, non-BMP
        b'{"x": "\\u0000\\"quoted\\"", "y": "\xff\xfe"}',   # not UTF-8: stored as base64
        b"",
    ]
    ms = [msgspec.structs.replace(base, uid=f"raw{i}", raw=raw) for i, raw in enumerate(raws)]
    store.write_batch(StoreBatch(ms, [], []))
    assert [store.get_raw(m.uid) for m in ms] == raws
    codecs = dict(store._client.query("SELECT uid, raw_codec FROM measurements").result_rows)
    assert codecs == {"raw0": "identity", "raw1": "base64", "raw2": "identity"}


def test_export_round_trip(store: ClickHouseStore, netem_qa: list[Measurement], tmp_path: Path) -> None:
    """As on DuckDB, except that a missing list comes back empty (ClickHouse has no Nullable(Array))."""
    batch = batch_of(netem_qa)
    store.write_batch(batch)
    assert store.export("observations", tmp_path / "obs.parquet") == len(batch.observations)
    cur = duckdb.connect().execute(f"SELECT * FROM '{tmp_path / 'obs.parquet'}'")
    columns = [d[0] for d in cur.description]
    assert columns == list(OBSERVATIONS.column_names)
    lists = {c.name for c in OBSERVATIONS.columns if c.type in ("string_list", "int_list")}
    by_id = {o.observation_id: o for o in batch.observations}
    rows = cur.fetchall()
    assert len(rows) == len(by_id)
    for values in rows:
        row = dict(zip(columns, values))
        want = msgspec.structs.asdict(by_id[row["observation_id"]])
        want.update({c: want[c] or [] for c in lists})
        assert row == want

    blocked = sum(v.outcome == "blocked" for v in batch.verdicts)
    assert store.export("verdicts", tmp_path / "v.csv", "csv", filters={"outcome": "blocked"}) == blocked
    csv_rows = duckdb.connect().execute(f"SELECT verdict_id, outcome FROM read_csv('{tmp_path / 'v.csv'}')")
    got = csv_rows.fetchall()
    assert len(got) == blocked > 0 and {r[1] for r in got} == {"blocked"}
    assert not (tmp_path / "v.csv.part").exists()

    n = store.export("measurements", tmp_path / "m.csv", "csv")
    header = (tmp_path / "m.csv").read_text().splitlines()[0].replace('"', "").split(",")
    assert n == len(netem_qa) and "raw" not in header and "uid" in header


def test_export_with_raw_keeps_the_stored_text_and_its_codec(store: ClickHouseStore, netem_qa: list[Measurement],
                                                             tmp_path: Path) -> None:
    store.write_batch(batch_of(netem_qa[:3]))
    store.export("measurements", tmp_path / "m.parquet", include_raw=True)
    rows = duckdb.connect().execute(f"SELECT uid, raw_codec, raw FROM '{tmp_path / 'm.parquet'}'").fetchall()
    raw = {m.uid: m.raw for m in netem_qa[:3]}
    assert {uid: (codec, text.encode() if isinstance(text, str) else text) for uid, codec, text in rows} == {
        uid: ("identity", r) for uid, r in raw.items()}
    with pytest.raises(ValueError):
        store.export("measurements", tmp_path / "m.csv", "csv", include_raw=True)
    with pytest.raises(ValueError):
        store.export("schema_migrations", tmp_path / "x.csv", "csv")


def test_racing_writers_leave_duplicates_that_reads_never_count_twice(
    ch_url: str, netem_qa: list[Measurement]
) -> None:
    """Two stores (think: two collectors) write the same measurements before either sees the other's.

    Their uid checks both say "new", so the rows are in the tables twice; FINAL
    makes every read count them once, before any merge.
    """
    batch = batch_of(netem_qa[:10])
    with open_store(ch_url) as one:
        url = ch_url if not one.location.private else f"chdb://?database={one.database}"
        with ClickHouseStore(url) as two:
            w1, w2 = one.bulk_writer(), two.bulk_writer()
            w1.add(batch_of(netem_qa[:10]))
            w2.add(batch_of(netem_qa[:10]))
            assert (w1.close().new, w2.close().new) == (10, 10)
            physical = one._client.query("SELECT count() FROM verdicts").result_rows[0][0]
            assert physical == 20  # the race happened: without FINAL every count below would double
            assert one.stats()["tables"] == {"measurements": 10, "observations": len(batch.observations),
                                             "verdicts": 10}
            assert two.query_verdicts(VerdictQuery()).rows == [(10,)]
            by_outcome = one.query_verdicts(VerdictQuery(group_by=("outcome",)))
            assert sum(r[-1] for r in by_outcome.rows) == 10


def test_threads_of_one_process_never_write_a_uid_twice(store: ClickHouseStore, netem_qa: list[Measurement]) -> None:
    rows = list(replicate(netem_qa, 400))
    batches = [StoreBatch([m for m, _, _ in rows[i:i + 100]], [o for _, obs, _ in rows[i:i + 100] for o in obs],
                          [v for _, _, v in rows[i:i + 100]]) for i in range(0, 400, 100)]
    results = []

    def write(order: list[StoreBatch]) -> None:
        writer = store.bulk_writer()
        for b in order:
            writer.add(StoreBatch(b.measurements, b.observations, b.verdicts))
        results.append(writer.close())

    threads = [threading.Thread(target=write, args=(batches,)), threading.Thread(target=write, args=(batches[::-1],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sum(r.new for r in results) == 400 and sum(r.skipped for r in results) == 400
    physical = store._client.query("SELECT count(), uniqExact(uid) FROM measurements").result_rows[0]
    assert physical == (400, 400)


def test_lookups_of_many_uids(store: ClickHouseStore, netem_qa: list[Measurement]) -> None:
    """Thousands of uids at once (an import with --batch-size 20000): bound in chunks a server accepts."""
    store.write_batch(batch_of(netem_qa[:3]))
    many = [f"nv1_{i:032x}" for i in range(5000)] + [m.uid for m in netem_qa[:3]]
    assert store.known_uids(many) == {m.uid for m in netem_qa[:3]}
    assert store.raws(many[::-1]) == {m.uid: m.raw for m in netem_qa[:3]}


@pytest.mark.parametrize("known_first", [False, True])
def test_prepared_batches_store_the_same_rows(ch_url: str, netem_qa: list[Measurement], known_first: bool) -> None:
    head, tail = netem_qa[:8], netem_qa[8:20]
    stray = netem_qa[25]
    batches = [batch_of(tail[:6]), batch_of(tail[6:] + tail[:2])]
    batches[1].observations += observations_for(stray)
    if known_first:
        batches.append(batch_of(head[:3] + tail[:1]))
    results = []
    for prepare in (False, True):
        with open_store(ch_url) as store:
            if known_first:
                store.write_batch(batch_of(head))
            writer = store.bulk_writer()
            for b in batches:
                b = StoreBatch(b.measurements, b.observations, b.verdicts, b.import_run_id)
                writer.add(writer.prepare(b) if prepare else b)
            totals = writer.close()
            tables = {}
            for name, spec in TABLES.items():
                cols = [c for c in spec.column_names if c not in ("imported_at",)]
                tables[name] = store._client.query(
                    f"SELECT {', '.join(cols)} FROM {name} FINAL ORDER BY {', '.join(spec.sort_key)}").result_rows
            results.append((totals, tables))
            for name in TABLES:  # the server variant reuses its database: empty it for the next round
                store._client.command(f"TRUNCATE TABLE {name}")
    assert results[0] == results[1]
    assert results[0][0].new == len(tail)


def test_read_only_store_refuses_writes(ch_url: str, netem_qa: list[Measurement]) -> None:
    with open_store(ch_url) as s:
        s.write_batch(batch_of(netem_qa[:2]))
        url = ch_url if not s.location.private else f"chdb://?database={s.database}"
        with open_store(url, read_only=True) as ro:
            assert ro.get_raw(netem_qa[0].uid) == netem_qa[0].raw
            with pytest.raises(StoreError, match="read-only"):
                ro.write_batch(batch_of(netem_qa[2:3]))


# -- on disk, migrations ----------------------------------------------------------------


def test_chdb_directory_persists_and_migrates_once(chdb_dir: str, netem_qa: list[Measurement]) -> None:
    with open_store(chdb_dir) as s:
        assert s.write_batch(batch_of(netem_qa[:5])).new == 5
        assert s.stats()["schema_version"] == LATEST_VERSION
    with open_store(chdb_dir) as s:
        stats = s.stats()
        assert stats["tables"]["measurements"] == 5 and stats["backend"] == "chdb"
        versions = s._client.query("SELECT version, name FROM schema_migrations ORDER BY version").result_rows
        assert [v for v, _ in versions] == list(range(1, LATEST_VERSION + 1))
        assert s.write_batch(batch_of(netem_qa[:5])).skipped == 5


def test_missing_column_is_refused(chdb_dir: str) -> None:
    with open_store(chdb_dir) as s:
        s._client.command("ALTER TABLE verdicts DROP COLUMN detail")
    with pytest.raises(StoreError, match="detail"):
        open_store(chdb_dir)


def test_a_second_chdb_directory_in_one_process_is_a_clear_error(chdb_dir: str, tmp_path: Path) -> None:
    with open_store(chdb_dir):
        with pytest.raises(StoreError, match="one engine per process"):
            open_store(f"chdb://{tmp_path / 'other'}")


def test_a_chdb_directory_belongs_to_one_process(chdb_dir: str) -> None:
    """chdb itself locks its directory only while starting: the store keeps a second process out."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from netvigil.store import open_store
            s = open_store({chdb_dir!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=f"in use by process {holder.pid}: chdb allows one process"):
            open_store(chdb_dir, read_only=True)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    with open_store(chdb_dir) as a, open_store(chdb_dir, read_only=True) as b:  # one process: shared
        assert a.stats()["tables"] == b.stats()["tables"]
    open_store(chdb_dir).close()  # the lock went with the last store


def test_import_cli_into_chdb_with_threads(chdb_dir: str, netem_qa_dir: Path, fingerprints) -> None:
    """The importer's threads (uid lookups, prepare, write) on one ClickHouseStore."""
    from netvigil.tasks.importing import MakeImportParams, make_import

    with open_store(chdb_dir) as s:
        summary = make_import(MakeImportParams(paths=[netem_qa_dir], store=s, fingerprints=fingerprints,
                                               quarantine_dir=Path(chdb_dir[len("chdb://"):]) / "q", batch_size=7))
        assert summary.imported == s.stats()["tables"]["measurements"] > 0
        again = make_import(MakeImportParams(paths=[netem_qa_dir], store=s, fingerprints=fingerprints,
                                             quarantine_dir=Path(chdb_dir[len("chdb://"):]) / "q", batch_size=7))
        assert again.imported == 0 and again.duplicates == summary.imported


# -- opening ---------------------------------------------------------------------------------


def test_urls() -> None:
    loc = parse_clickhouse_url("clickhouse://nv:s3cr%40t@db.example:9123/observatory?cluster=nv")
    assert (loc.host, loc.port, loc.username, loc.password, loc.database, loc.cluster) == (
        "db.example", 9123, "nv", "s3cr@t", "observatory", "nv")
    assert "s3cr" not in loc.display() and loc.display() == "clickhouse://nv@db.example:9123/observatory"
    tls = parse_clickhouse_url("clickhouses://h")
    assert (tls.port, tls.database, tls.username) == (8443, "netvigil", None)
    assert parse_clickhouse_url("clickhouse://h").port == 8123
    assert parse_clickhouse_url("chdb://").in_memory and parse_clickhouse_url("chdb://:memory:").in_memory
    named = parse_clickhouse_url("chdb:///var/lib/nv?database=x")
    assert (named.path, named.database, named.private) == ("/var/lib/nv", "x", False)
    assert parse_clickhouse_url("chdb://").private and parse_clickhouse_url("chdb://").database.startswith("netvigil_mem_")
    assert parse_clickhouse_url("chdb:///var/lib/nv").database == "netvigil"
    for bad in ("clickhouse://h/db-1", "clickhouse:///db", "clickhouse://h:x/db", "chdb://x?cluster=a",
                "clickhouse://u:pw@h/db?nope=1"):
        with pytest.raises(StoreError) as exc:
            parse_clickhouse_url(bad)
        assert "pw" not in str(exc.value)


def test_store_file_is_none_for_clickhouse_and_mangled_urls_are_refused(tmp_path: Path) -> None:
    assert store_file("clickhouse://h/db") is None and store_file("chdb:///x") is None
    assert store_file(tmp_path / "a.duckdb") == tmp_path / "a.duckdb"
    for mangled in (Path("chdb:///x"), str(Path("clickhouse://h:8123/db")), Path("chdb://")):
        with pytest.raises(StoreError, match="went through a file path"):
            open_store(mangled)
    with pytest.raises(StoreError, match="unknown store scheme"):
        store_file("postgres://x/y")


def test_store_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    require_chdb()
    monkeypatch.setenv("NETVIGIL_STORE", "chdb://")
    with open_store() as s:
        assert s.stats()["backend"] == "chdb"


def test_unreachable_server_is_a_clear_error() -> None:
    import socket

    with socket.socket() as sock:  # a loopback port with nothing listening on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreError, match=f"cannot reach ClickHouse at clickhouse://u@127.0.0.1:{port}/nv"):
        ClickHouseStore(f"clickhouse://u:hidden@127.0.0.1:{port}/nv", connect_timeout=5)


def test_ooni_times_are_read_as_duckdb_reads_them() -> None:
    """The writer's time check (ClickHouse would reject a bad time) agrees with DuckDB's try_strptime."""
    cases = ["2024-02-12 20:07:00", "2024-02-30 20:07:00", "2024-02-12T20:07:00", "2024-02-12 20:07:00.5",
             "2024-02-12 24:00:00", "yesterday", "", "2024-13-01 00:00:00", "1999-12-31 23:59:59",
             "2024-W07-1 20:07", " 2024-02-12 20:07:0", "2024-2-3 1:2:3\n", "2024-02-12\t20:07:00",
             "02024-02-12 20:07:00", "2024-02-1220:07:00", "\xa02024-02-12 20:07:00", "2024-02-12 20:07:60"]
    con = duckdb.connect()
    for text in cases:
        parsed = con.execute("SELECT try_strptime(?, '%Y-%m-%d %H:%M:%S')", [text]).fetchall()[0][0]
        assert (ooni_time(text) is not None) == (parsed is not None), text
        if parsed is not None:
            assert datetime.fromisoformat(ooni_time(text) or "") == parsed
    # DateTime64's range is 1900-2299: older or later times are NULL on ClickHouse (DuckDB keeps them).
    assert ooni_time("1899-12-31 23:59:59") is None and ooni_time("0024-02-12 20:07:00") is None


def test_cluster_ddl_is_valid_clickhouse_sql() -> None:
    """The multi-node statements of docs/deploy.md parse (chdb has no Keeper to run them)."""
    require_chdb()
    statements = schema_statements("netvigil", cluster="nv")
    assert sum("ReplicatedReplacingMergeTree" in s for s in statements) == 5  # the three tables, schema_migrations, user_reports
    assert sum("ENGINE = Distributed(`nv`, `netvigil`" in s for s in statements) == 3
    with open_store("chdb://") as s:
        for sql in statements:
            formatted = s._client.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0]
            assert formatted


def test_copy_keeps_runs_raw_bytes_and_nulls(tmp_path: Path, netem_qa: list[Measurement]) -> None:
    """copy_store in small pages: interleaved import runs keep their ids, odd records survive, a rerun is a no-op."""
    require_chdb()
    from netvigil.store.copy import copy_store

    odd = msgspec.structs.replace(
        netem_qa[0], uid="odd", raw=b'{"bytes": "\xff\xfe"}', source=None,
        envelope=msgspec.structs.replace(netem_qa[0].envelope, measurement_start_time="not a time", probe_cc=None))
    ms = netem_qa[1:21]
    with open_store(tmp_path / "src.duckdb") as src:
        src.write_batch(batch_of(ms[0::2], run="run-even"))
        src.write_batch(batch_of(ms[1::2] + [odd], run="run-odd"))
        want = {t: src._con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
        runs = dict(src._con.execute("SELECT uid, import_run_id FROM measurements").fetchall())
        with open_store("chdb://") as dst:
            first = copy_store(src, dst, batch_size=3)
            assert (first.measurements, first.copied, first.skipped) == (21, 21, 0)
            assert dst.stats()["tables"] == want
            assert dict(dst._client.query("SELECT uid, import_run_id FROM measurements").result_rows) == runs
            assert all(dst.get_raw(m.uid) == m.raw for m in [*ms, odd])
            row = dst._client.query("SELECT measurement_start_time, probe_cc, source_path, raw_codec FROM measurements "
                                    "WHERE uid = 'odd'").result_rows
            assert row == [(None, None, None, "base64")]
            again = copy_store(src, dst, batch_size=7)
            assert (again.copied, again.skipped, again.observations) == (0, 21, 0)


def test_delete_measurements_removes_rows_of_every_table(store: ClickHouseStore, netem_qa: list[Measurement]) -> None:
    batch = batch_of(netem_qa[:3])
    store.write_batch(batch)
    gone = netem_qa[0].uid
    assert store.delete_measurements([gone, "no-such-uid"]) == 1
    assert store.get_raw(gone) is None and store.known_uids([m.uid for m in netem_qa[:3]]) == {
        m.uid for m in netem_qa[1:3]}
    for table in ("observations", "verdicts"):
        left = store._client.query(f"SELECT count() FROM {table} WHERE measurement_uid = {{u:String}}",
                                   parameters={"u": gone}).result_rows[0][0]
        assert left == 0
    assert store.delete_measurements([]) == 0

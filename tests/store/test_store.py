"""DuckDBStore against real netem-qa measurements and hand-built rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import msgspec
import pytest
from store_records import observations_for, verdict_for

from netvigil.model.measurement import Measurement
from netvigil.store import Store, StoreBatch, StoreError, VerdictQuery, open_store
from netvigil.store.migrations import LATEST_VERSION
from netvigil.store.schema import MEASUREMENTS, OBSERVATIONS, TABLES, VERDICTS


def batch_of(ms: list[Measurement], run: str | None = "run-1") -> StoreBatch:
    return StoreBatch(
        measurements=ms,
        observations=[o for m in ms for o in observations_for(m)],
        verdicts=[verdict_for(m) for m in ms],
        import_run_id=run,
    )


def test_write_then_rewrite_is_idempotent(store: Store, netem_qa: list[Measurement]) -> None:
    batch = batch_of(netem_qa)
    first = store.write_batch(batch)
    assert (first.new, first.skipped) == (len(netem_qa), 0)
    assert first.observations == len(batch.observations) > len(netem_qa)
    assert first.verdicts == len(netem_qa)

    again = store.write_batch(batch)
    assert (again.new, again.skipped, again.observations, again.verdicts) == (0, len(netem_qa), 0, 0)
    assert store.stats()["tables"] == {
        "measurements": len(netem_qa),
        "observations": len(batch.observations),
        "verdicts": len(netem_qa),
    }


def test_partly_known_batch_and_repeats_within_batch(store: Store, netem_qa: list[Measurement]) -> None:
    head, tail = netem_qa[:10], netem_qa[10:20]
    store.write_batch(batch_of(head))
    mixed = batch_of(head + tail + tail[:3])  # tail[:3] twice in the same batch
    result = store.write_batch(mixed)
    assert (result.new, result.skipped) == (10, 13)
    assert result.observations == sum(len(observations_for(m)) for m in tail)
    assert result.verdicts == 10
    assert store.stats()["tables"]["measurements"] == 20
    assert store.known_uids([m.uid for m in netem_qa[5:25]] + ["nope"]) == {m.uid for m in netem_qa[5:20]}


def test_rows_of_unknown_measurements_are_not_written(store: Store, netem_qa: list[Measurement]) -> None:
    m, stray = netem_qa[0], netem_qa[1]
    batch = StoreBatch([m], observations_for(m) + observations_for(stray), [verdict_for(m), verdict_for(stray)])
    result = store.write_batch(batch)
    assert (result.observations, result.verdicts) == (len(observations_for(m)), 1)


def test_get_raw_returns_the_exact_bytes(store: Store, netem_qa: list[Measurement]) -> None:
    store.write_batch(batch_of(netem_qa[:5]))
    for m in netem_qa[:5]:
        assert store.get_raw(m.uid) == m.raw
    assert store.get_raw("unknown") is None


def test_stored_columns(tmp_path: Path, netem_qa: list[Measurement]) -> None:
    m = netem_qa[0]
    with open_store(tmp_path / "s.duckdb") as s:
        s.write_batch(batch_of([m], run="run-7"))
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    row = con.execute(
        "SELECT probe_cc, probe_asn, measurement_start_time, source_path, source_line, import_run_id, raw_codec"
        " FROM measurements"
    ).fetchone()
    assert row == (
        m.envelope.probe_cc, m.envelope.probe_asn,
        datetime.strptime(m.envelope.measurement_start_time or "", "%Y-%m-%d %H:%M:%S"),
        m.source.path if m.source else None, 1, "run-7", "zstd",
    )
    cols = {r[0] for r in con.execute("DESCRIBE measurements").fetchall()}
    assert "probe_ip" not in cols
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns"
                             " WHERE table_name = 'observations'").fetchall())
    assert types["dns_answers"] == "VARCHAR[]" and types["dns_answer_asns"] == "BIGINT[]"
    assert types["port"] == "BIGINT" and types["t"] == "DOUBLE" and types["dns_bogon"] == "BOOLEAN"
    con.close()


def test_schema_follows_the_structs() -> None:
    from netvigil.model.observation import Observation
    from netvigil.model.verdict import Verdict

    assert OBSERVATIONS.column_names == Observation.__struct_fields__
    assert VERDICTS.column_names == Verdict.__struct_fields__
    assert VERDICTS.column("measurement_start_time").type == "timestamp"
    assert not OBSERVATIONS.column("observation_id").nullable and OBSERVATIONS.column("ip").nullable
    assert MEASUREMENTS.primary_key == "uid" and "probe_ip" not in MEASUREMENTS.column_names


def test_migrations_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    for _ in range(2):
        with open_store(path) as s:
            assert s.stats()["schema_version"] == LATEST_VERSION
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT version, name, applied_at FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))
    assert all(isinstance(r[2], datetime) for r in rows)
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert set(TABLES) | {"schema_migrations"} <= tables
    con.close()


def test_missing_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    open_store(path).close()
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE verdicts DROP COLUMN detail")
    con.close()
    with pytest.raises(StoreError, match="detail"):
        open_store(path)


# -- queries -----------------------------------------------------------------

T0 = datetime(2024, 2, 12, 20, 0, 0)


def query_store(store: Store, ms: list[Measurement]) -> None:
    """12 verdicts over 3 hours and 2 days, 2 countries, 3 networks, with known outcomes."""
    plan = [
        # (hours after T0, cc, asn, outcome, method)
        (0, "AZ", "AS28787", "blocked", "tls"),
        (0, "AZ", "AS28787", "blocked", "tls"),
        (0, "AZ", "AS31721", "ok", None),
        (1, "AZ", "AS28787", "blocked", "tls"),
        (1, "AZ", "AS31721", "blocked", "dns"),
        (1, "IT", "AS137", "ok", None),
        (2, "AZ", "AS28787", "ok", None),
        (2, "IT", "AS137", "ok", None),
        (26, "AZ", "AS28787", "blocked", "tls"),
        (26, "AZ", "AS28787", "throttled", "bandwidth"),
        (27, "IT", "AS137", "down", None),
        (27, "AZ", "AS31721", "ok", None),
    ]
    verdicts = []
    for m, (h, cc, asn, outcome, method) in zip(ms, plan, strict=False):
        start = (T0 + timedelta(hours=h, minutes=7)).strftime("%Y-%m-%d %H:%M:%S")
        verdicts.append(verdict_for(m, probe_cc=cc, probe_asn=asn, outcome=outcome, method=method,
                                    measurement_start_time=start, confirmed=outcome == "blocked"))
    store.write_batch(StoreBatch(ms[: len(plan)], [], verdicts))


def test_query_groups_and_buckets(store: Store, netem_qa: list[Measurement]) -> None:
    query_store(store, netem_qa)
    r = store.query_verdicts(VerdictQuery(group_by=("probe_cc", "outcome")))
    assert r.columns == ["probe_cc", "outcome", "count"]
    assert r.rows == [("AZ", "blocked", 5), ("AZ", "ok", 3), ("AZ", "throttled", 1),
                      ("IT", "down", 1), ("IT", "ok", 2)]

    r = store.query_verdicts(VerdictQuery(group_by=("probe_asn",), bucket="day",
                                          filters={"outcome": "blocked"}))
    assert r.columns == ["bucket", "probe_asn", "count"]
    assert r.rows == [(datetime(2024, 2, 12), "AS28787", 3), (datetime(2024, 2, 12), "AS31721", 1),
                      (datetime(2024, 2, 13), "AS28787", 1)]

    r = store.query_verdicts(VerdictQuery(group_by=("method",), bucket="hour",
                                          filters={"probe_cc": "AZ", "probe_asn": 28787}))
    assert r.as_dicts()[:2] == [
        {"bucket": datetime(2024, 2, 12, 20), "method": "tls", "count": 2},
        {"bucket": datetime(2024, 2, 12, 21), "method": "tls", "count": 1},
    ]
    assert len(r.rows) == 5


def test_query_filters(store: Store, netem_qa: list[Measurement]) -> None:
    query_store(store, netem_qa)

    def total(**kw: object) -> int:
        rows = store.query_verdicts(VerdictQuery(**kw)).rows  # type: ignore[arg-type]
        return rows[0][0]

    assert total() == 12
    assert total(filters={"outcome": ["blocked", "throttled"]}) == 6
    assert total(filters={"method": None}) == 6
    assert total(filters={"method": [None, "dns"]}) == 7
    assert total(filters={"confirmed": True, "probe_cc": "AZ"}) == 5
    assert total(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=26)) == 5
    aware = timezone(timedelta(hours=4))  # Baku time: 00:00+04 is 20:00 UTC
    assert total(since=datetime(2024, 2, 13, 0, 0, tzinfo=aware), until=T0 + timedelta(hours=1)) == 3
    assert total(since=T0.replace(tzinfo=UTC) + timedelta(days=1)) == 4


def test_query_rejects_unknown_columns() -> None:
    with pytest.raises(ValueError, match="unknown verdict column"):
        VerdictQuery(group_by=("probe_cc; DROP TABLE verdicts",))
    with pytest.raises(ValueError):
        VerdictQuery(filters={"detail": "x"})
    with pytest.raises(ValueError):
        VerdictQuery(bucket="week")  # type: ignore[arg-type]


def test_unparsable_start_time_is_null(store: Store, netem_qa: list[Measurement]) -> None:
    m = netem_qa[0]
    store.write_batch(StoreBatch([m], [], [verdict_for(m, measurement_start_time="yesterday")]))
    r = store.query_verdicts(VerdictQuery(bucket="day"))
    assert r.rows == [(None, 1)]


# -- export --------------------------------------------------------------------


def test_export_round_trip(store: Store, netem_qa: list[Measurement], tmp_path: Path) -> None:
    batch = batch_of(netem_qa)
    store.write_batch(batch)
    n = store.export("observations", tmp_path / "obs.parquet")
    assert n == len(batch.observations)
    cur = duckdb.connect().execute(f"SELECT * FROM '{tmp_path / 'obs.parquet'}'")
    columns = [d[0] for d in cur.description]
    assert columns == list(OBSERVATIONS.column_names)
    by_id = {o.observation_id: o for o in batch.observations}
    for values in cur.fetchall():
        row = dict(zip(columns, values))
        assert row == msgspec.structs.asdict(by_id[row["observation_id"]])

    assert store.export("verdicts", tmp_path / "v.csv", "csv", filters={"outcome": "blocked"}) == sum(
        v.outcome == "blocked" for v in batch.verdicts
    )
    con = duckdb.connect()
    rows = con.execute(f"SELECT verdict_id, outcome FROM read_csv('{tmp_path / 'v.csv'}')").fetchall()
    assert {r[1] for r in rows} == {"blocked"} and len(rows) > 0

    n = store.export("measurements", tmp_path / "m.csv", "csv")
    header = (tmp_path / "m.csv").read_text().splitlines()[0].split(",")
    assert n == len(netem_qa) and "raw" not in header and "uid" in header


def test_export_filters_through_the_measurement(store: Store, netem_qa: list[Measurement], tmp_path: Path) -> None:
    ms = [netem_qa[0], msgspec.structs.replace(netem_qa[1], envelope=msgspec.structs.replace(
        netem_qa[1].envelope, probe_cc="AZ", measurement_start_time="2020-10-01 10:00:00"))]
    store.write_batch(batch_of(ms))
    n_az = store.export("observations", tmp_path / "az.parquet", filters={"probe_cc": "AZ"})
    assert n_az == len(observations_for(ms[1]))
    n_old = store.export("observations", tmp_path / "old.parquet", until=datetime(2021, 1, 1))
    assert n_old == n_az
    assert store.export("measurements", tmp_path / "m.parquet", since=datetime(2021, 1, 1)) == 1


def test_export_with_raw_keeps_compressed_bytes(store: Store, netem_qa: list[Measurement], tmp_path: Path) -> None:
    import zstandard

    store.write_batch(batch_of(netem_qa[:3]))
    store.export("measurements", tmp_path / "m.parquet", include_raw=True)
    cur = duckdb.connect().execute(f"SELECT uid, raw FROM '{tmp_path / 'm.parquet'}'")
    rows = [{"uid": uid, "raw": raw} for uid, raw in cur.fetchall()]
    raw = {m.uid: m.raw for m in netem_qa[:3]}
    assert all(zstandard.ZstdDecompressor().decompress(r["raw"]) == raw[r["uid"]] for r in rows)
    with pytest.raises(ValueError):
        store.export("measurements", tmp_path / "m.csv", "csv", include_raw=True)
    with pytest.raises(ValueError):
        store.export("schema_migrations", tmp_path / "x.csv", "csv")


# -- opening -------------------------------------------------------------------


def test_default_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "deep" / "dir" / "nv.duckdb"
    monkeypatch.setenv("NETVIGIL_STORE", str(target))
    with open_store() as s:
        assert s.stats()["path"] == str(target)
    assert target.exists()


def test_default_path_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NETVIGIL_STORE", "NETVIGIL_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with open_store(None):
        pass
    assert (tmp_path / ".local" / "share" / "netvigil" / "netvigil.duckdb").exists()


def test_duckdb_url(tmp_path: Path) -> None:
    with open_store(f"duckdb://{tmp_path}/u.duckdb") as s:
        assert s.stats()["backend"] == "duckdb"
    assert (tmp_path / "u.duckdb").exists()


@pytest.mark.parametrize("url", ["postgres://x/y", "sqlite:///tmp/x.db"])
def test_unknown_scheme(url: str) -> None:
    with pytest.raises(StoreError, match="unknown store scheme"):
        open_store(url)


def test_read_only_store_refuses_writes(tmp_path: Path, netem_qa: list[Measurement]) -> None:
    path = tmp_path / "ro.duckdb"
    with open_store(path) as s:
        s.write_batch(batch_of(netem_qa[:2]))
    with open_store(path, read_only=True) as s:
        assert s.get_raw(netem_qa[0].uid) == netem_qa[0].raw
        with pytest.raises(StoreError, match="read-only"):
            s.write_batch(batch_of(netem_qa[2:3]))


def test_delete_measurements_removes_rows_of_every_table(tmp_path: Path, netem_qa: list[Measurement]) -> None:
    with open_store(tmp_path / "d.duckdb") as s:
        batch = batch_of(netem_qa[:3])
        s.write_batch(batch)
        before = s.stats()["tables"]
        gone = netem_qa[0].uid
        assert s.delete_measurements([gone, "no-such-uid"]) == 1
        assert s.get_raw(gone) is None
        after = s.stats()["tables"]
        assert after["measurements"] == before["measurements"] - 1
        assert after["observations"] == before["observations"] - sum(
            1 for o in batch.observations if o.measurement_uid == gone)
        assert after["verdicts"] == before["verdicts"] - sum(1 for v in batch.verdicts if v.measurement_uid == gone)


def test_second_writer_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from netvigil.store import open_store
            s = open_store({str(path)!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=f"locked by process {holder.pid}.*one writing process"):
            open_store(path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    open_store(path).close()  # the lock goes with the process


def _table_rows(store: Store, table: str) -> list[tuple]:
    spec = TABLES[table]
    cols = [c for c in spec.column_names if c not in ("imported_at", "import_run_id")]
    return store._con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(spec.sort_key)}").fetchall()


@pytest.mark.parametrize("known_first", [False, True])
def test_prepared_batches_store_the_same_rows(tmp_path: Path, netem_qa: list[Measurement], known_first: bool) -> None:
    """``prepare`` (done on another thread by the importer) changes nothing that is stored,
    also when the lookups prove it wrong (stored, repeated or stray rows) and ``add`` stages anew."""
    head, tail = netem_qa[:8], netem_qa[8:20]
    stray = netem_qa[25]
    batches = [batch_of(tail[:6]), batch_of(tail[6:] + tail[:2])]
    batches[1].observations += observations_for(stray)
    results = []
    for name, prepare in (("plain", False), ("prepared", True)):
        with open_store(tmp_path / f"{name}.duckdb") as store:
            if known_first:
                store.write_batch(batch_of(head))
                batches.append(batch_of(head[:3] + tail[:1]))
            writer = store.bulk_writer()
            for b in batches:
                b = StoreBatch(b.measurements, b.observations, b.verdicts, b.import_run_id)
                writer.add(writer.prepare(b) if prepare else b)
            totals = writer.close()
            results.append((totals, {t: _table_rows(store, t) for t in TABLES}))
            if known_first:
                batches.pop()
    assert results[0] == results[1]
    assert results[0][0].new == len(tail)


def test_bulk_writer_runs_duckdb_single_threaded_and_restores_it(store: Store, netem_qa: list[Measurement]) -> None:
    threads = store._con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    writer = store.bulk_writer()
    assert store._con.execute("SELECT current_setting('threads')").fetchall()[0][0] == 1
    writer.add(writer.prepare(batch_of(netem_qa[:3])))
    assert writer.close().new == 3
    assert store._con.execute("SELECT current_setting('threads')").fetchall()[0][0] == threads


def test_iter_verdicts_streams_by_network_then_time(store: Store, netem_qa: list[Measurement]) -> None:
    """The incident stage's read: every verdict once, ordered (country, ASN, time, id), filters as in queries."""
    query_store(store, netem_qa)
    with store.iter_verdicts() as rows:
        streamed = list(rows)
    assert len(streamed) == store.query_verdicts(VerdictQuery()).rows[0][0] == 12
    keys = [(v.probe_cc or "", v.probe_asn or "", v.measurement_start_time or "", v.verdict_id) for v in streamed]
    assert keys == sorted(keys)
    assert all(v.decisive == [] and v.detail == "" for v in streamed)
    assert all(isinstance(v.rule_ids, list) for v in streamed)
    with store.iter_verdicts({"probe_cc": "AZ", "outcome": ["blocked", "throttled"]},
                             since=T0 - timedelta(days=1)) as rows:
        az = list(rows)
    assert az and all(v.probe_cc == "AZ" and v.outcome in ("blocked", "throttled") for v in az)
    with pytest.raises(ValueError):
        store.iter_verdicts({"nonsense": 1}).__enter__()

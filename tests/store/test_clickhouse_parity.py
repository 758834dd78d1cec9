"""DuckDB and ClickHouse (chdb) give identical answers for the same imported data.

The real OONI samples (../shared/data/ooni/measurements: netem-qa and real)
are imported with the real CLI into a DuckDB file and into a chdb directory,
then asked the same questions: `netvigil query --format json`, a grid of
VerdictQuery group-bys/buckets/filters, the tables themselves, and the raw
bytes. `netvigil store copy` of the DuckDB file into a second chdb directory
must answer the same again, and copying twice must write nothing the second time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from itertools import combinations
from pathlib import Path

import duckdb
import pytest
from test_clickhouse import require_chdb

from netvigil.store import GROUP_COLUMNS, Store, VerdictQuery, open_store
from netvigil.store.schema import OBSERVATIONS, TABLES

# One chdb engine directory per process at a time: in-process checks open one, compare, close it.


def run(args: list[str], data_dir: Path, module: str = "netvigil") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NETVIGIL_DATA_DIR=str(data_dir), COLUMNS="200", TZ="Asia/Baku")  # not UTC on purpose
    for var in ("NETVIGIL_STORE", "NETVIGIL_FINGERPRINTS"):
        env.pop(var, None)
    done = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 3), done.stderr  # 3: the real samples include records that are quarantined
    return done


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, ooni_data: Path, fingerprints_dir: Path) -> dict[str, str]:
    """The same real measurements imported into DuckDB and chdb by the CLI."""
    require_chdb()
    root = tmp_path_factory.mktemp("parity")
    data_dir = root / "nv"
    (data_dir / "fingerprints").mkdir(parents=True)
    for name in ("fingerprints_dns.csv", "fingerprints_http.csv"):
        shutil.copy(fingerprints_dir / name, data_dir / "fingerprints" / name)
    urls = {"duckdb": f"duckdb://{root / 'nv.duckdb'}", "chdb": f"chdb://{root / 'ch'}"}
    summaries = {}
    for name, url in urls.items():
        done = run(["import", str(ooni_data / "measurements"), "--store", url, "--json"], data_dir)
        summaries[name] = json.loads(done.stdout)
    keys = ("records", "imported", "duplicates", "quarantined", "observations", "verdicts", "outcomes")
    assert {k: summaries["duckdb"][k] for k in keys} == {k: summaries["chdb"][k] for k in keys}
    assert summaries["chdb"]["imported"] > 80
    again = json.loads(run(["import", str(ooni_data / "measurements"), "--store", urls["chdb"], "--json"],
                           data_dir).stdout)
    assert again["imported"] == 0
    assert again["duplicates"] == summaries["chdb"]["imported"] + summaries["chdb"]["duplicates"]
    return {**urls, "data_dir": str(data_dir), "root": str(root)}


def cli_queries() -> list[list[str]]:
    return [
        ["--by", "outcome"],
        ["--by", "probe_cc,probe_asn,outcome", "--bucket", "day"],
        ["--by", "test_name,method", "--bucket", "hour", "--where", "outcome=blocked,down"],
        ["--by", "fingerprint,confirmed", "--where", "method=null",
         "--since", "2020-01-01", "--until", "2024-02-12T20:30"],
    ]


def test_netvigil_query_json_is_identical(stores: dict[str, str]) -> None:
    data_dir = Path(stores["data_dir"])
    for args in cli_queries():
        answers = [run(["query", *args, "--format", "json", "--store", stores[b]], data_dir).stdout
                   for b in ("duckdb", "chdb")]
        assert answers[0] == answers[1], args
        assert json.loads(answers[0]), args  # every question has an answer to compare


def verdict_queries() -> Iterator[VerdictQuery]:
    groups = [g for n in (0, 1, 2) for g in combinations(GROUP_COLUMNS, n)]
    for i, group in enumerate(groups):
        yield VerdictQuery(group_by=group, bucket=(None, "day", "hour")[i % 3])
    for filters in ({"outcome": "blocked"}, {"probe_cc": ["IT", "IR", None]}, {"method": None},
                    {"confirmed": True}, {"probe_asn": 137}, {"fingerprint": []}, {"test_name": "web_connectivity"}):
        yield VerdictQuery(group_by=("probe_cc", "outcome"), bucket="day", filters=filters)
    yield VerdictQuery(group_by=("test_name",), since=datetime(2021, 1, 1), until=datetime(2024, 2, 12, 21))


def answers(store: Store) -> list:
    return [(q, store.query_verdicts(q)) for q in verdict_queries()]


def test_verdict_queries_are_identical(stores: dict[str, str]) -> None:
    with open_store(stores["duckdb"], read_only=True) as duck:
        want = answers(duck)
    with open_store(stores["chdb"], read_only=True) as ch:
        got = answers(ch)
    assert len(want) > 50
    for (q, a), (_, b) in zip(want, got, strict=True):
        assert a.columns == b.columns, q
        assert a.rows == b.rows, q
        assert [type(v) for r in a.rows for v in r] == [type(v) for r in b.rows for v in r], q
    empty = [q for q, a in want if not a.rows]
    assert [q.filters for q in empty] == [{"fingerprint": []}]  # an empty IN list matches nothing, on both


def table_rows(store: Store, table: str, path: Path) -> list[tuple]:
    """A table as both backends export it (Parquet, read back by DuckDB), normalised where they differ by nature
    (and without what differs between two imports: when, and the run id)."""
    store.export(table, path)
    con = duckdb.connect()
    cur = con.execute(f"SELECT * EXCLUDE (imported_at, import_run_id) FROM '{path}'" if table == "measurements"
                      else f"SELECT * FROM '{path}'")
    columns = [d[0] for d in cur.description]
    lists = {c.name for c in TABLES[table].columns if c.type in ("string_list", "int_list")}
    rows = []
    for values in cur.fetchall():
        row = []
        for column, value in zip(columns, values):
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.replace(tzinfo=None)  # ClickHouse writes UTC-adjusted Parquet timestamps
            if column in lists and value is None:
                value = []  # ClickHouse has no NULL arrays
            row.append(value)
        rows.append(tuple(row))
    return rows


def test_tables_and_raw_bytes_are_identical(stores: dict[str, str], tmp_path: Path) -> None:
    with open_store(stores["duckdb"], read_only=True) as duck:
        want = {t: table_rows(duck, t, tmp_path / f"duck-{t}.parquet") for t in TABLES}
        uids = [r[0] for r in want["measurements"]]
        raws = {uid: duck.get_raw(uid) for uid in uids}
    with open_store(stores["chdb"], read_only=True) as ch:
        got = {t: table_rows(ch, t, tmp_path / f"ch-{t}.parquet") for t in TABLES}
        assert {uid: ch.get_raw(uid) for uid in uids} == raws
    for table in TABLES:
        assert got[table] == want[table], table
    assert len(want["observations"]) > len(want["measurements"]) > 80
    ip = OBSERVATIONS.column_names.index("ip")
    assert any(r[ip] is not None for r in want["observations"])  # real rows, not only NULLs, were compared


def test_store_copy_duckdb_to_chdb_answers_the_same(stores: dict[str, str], tmp_path: Path) -> None:
    data_dir = Path(stores["data_dir"])
    target = f"chdb://{tmp_path / 'copy'}"
    first = json.loads(run(["copy", stores["duckdb"], target, "--json", "--batch-size", "17"], data_dir,
                           module="netvigil.cli_store").stdout)
    with open_store(stores["duckdb"], read_only=True) as duck:
        want = answers(duck)
        tables = {t: table_rows(duck, t, tmp_path / f"duck-{t}.parquet") for t in ("observations", "verdicts")}
        counts = duck.stats()["tables"]
        raws = {r[0]: duck.get_raw(r[0]) for r in duck._con.execute("SELECT uid FROM measurements").fetchall()}
    assert (first["copied"], first["skipped"]) == (counts["measurements"], 0)
    assert (first["observations"], first["verdicts"]) == (counts["observations"], counts["verdicts"])
    with open_store(target, read_only=True) as copy:
        assert [(q, r.columns, r.rows) for q, r in answers(copy)] == [(q, r.columns, r.rows) for q, r in want]
        assert {t: table_rows(copy, t, tmp_path / f"copy-{t}.parquet") for t in tables} == tables
        assert {uid: copy.get_raw(uid) for uid in raws} == raws
        assert copy.stats()["tables"] == counts
    again = json.loads(run(["copy", stores["duckdb"], target, "--json"], data_dir, module="netvigil.cli_store").stdout)
    assert (again["copied"], again["skipped"], again["observations"]) == (0, counts["measurements"], 0)


def test_store_copy_chdb_back_to_duckdb(stores: dict[str, str], tmp_path: Path) -> None:
    """The other direction: a ClickHouse store read back into a DuckDB file (import_run_id kept)."""
    target = tmp_path / "back.duckdb"
    run(["copy", stores["chdb"], str(target), "--json"], Path(stores["data_dir"]), module="netvigil.cli_store")
    with open_store(stores["duckdb"], read_only=True) as duck:
        want = answers(duck)
        runs = duck._con.execute("SELECT uid, import_run_id FROM measurements ORDER BY uid").fetchall()
    with open_store(target, read_only=True) as back:
        assert [(r.columns, r.rows) for _, r in answers(back)] == [(r.columns, r.rows) for _, r in want]
        chdb_runs = back._con.execute("SELECT uid, import_run_id FROM measurements ORDER BY uid").fetchall()
    assert [u for u, _ in chdb_runs] == [u for u, _ in runs] and all(r for _, r in chdb_runs)


def test_copy_errors_are_one_line(stores: dict[str, str], tmp_path: Path) -> None:
    env = dict(os.environ, NETVIGIL_DATA_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "netvigil.cli_store", "copy", "postgres://x/y", str(tmp_path / "d")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 5 and "unknown store scheme" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "netvigil.cli_store", "copy", stores["duckdb"], stores["duckdb"]],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "same store" in done.stderr

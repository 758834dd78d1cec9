"""The import pipeline (reader, decoder, uid lookups, judge, prepare and write
threads) stores exactly what analysis makes, in order, once per measurement."""

from __future__ import annotations

from pathlib import Path

import duckdb
import msgspec
import orjson
import pytest

from netvigil.analysis import FingerprintDB, analyze
from netvigil.codec import BadRecord, decode_measurement
from netvigil.store import StoreBatch, open_store
from netvigil.store.base import BulkWriter
from netvigil.tasks.importing import MakeImportParams, make_import


def sample_lines(real_dir: Path, netem_qa_dir: Path) -> list[bytes]:
    """Every decodable real and QA measurement with a uid of its own, one JSON line each."""
    lines, uids = [], set()
    for path in sorted(real_dir.glob("*.json")) + sorted(netem_qa_dir.glob("*.json")):
        raw = path.read_bytes()
        try:
            uid = decode_measurement(raw).uid
        except BadRecord:
            continue
        if uid not in uids:
            uids.add(uid)
            lines.append(orjson.dumps(orjson.loads(raw)))
    return lines


def rows(path: Path, table: str, key: str) -> list[dict]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        cur = con.execute(f"SELECT * FROM {table} ORDER BY {key}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


def test_import_stores_what_analysis_makes(tmp_path: Path, real_dir: Path, netem_qa_dir: Path,
                                           fingerprints: FingerprintDB) -> None:
    lines = sample_lines(real_dir, netem_qa_dir)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    store_path = tmp_path / "s.duckdb"
    with open_store(store_path) as store:
        # Small batches: many lookups ahead, many prepared batches, several commits.
        summary = make_import(MakeImportParams(paths=[src], store=store, fingerprints=fingerprints,
                                               quarantine_dir=tmp_path / "q", batch_size=7))
    assert summary.imported == summary.records == len(lines)

    expected_obs, expected_verdicts = [], []
    for line in lines:
        observations, verdicts = analyze(decode_measurement(line), fingerprints)
        expected_obs += [msgspec.structs.asdict(o) for o in observations]
        expected_verdicts += verdicts
    assert summary.observations == len(expected_obs) and summary.verdicts == len(expected_verdicts)
    stored = rows(store_path, "observations", "observation_id")
    assert stored == sorted(expected_obs, key=lambda o: o["observation_id"])
    stored_verdicts = {v["verdict_id"]: (v["outcome"], v["rule_ids"], v["decisive"], v["detail"])
                       for v in rows(store_path, "verdicts", "verdict_id")}
    assert stored_verdicts == {v.verdict_id: (v.outcome, v.rule_ids, v.decisive, v.detail) for v in expected_verdicts}
    assert sum(summary.outcomes.values()) == len(expected_verdicts)


def test_repeats_within_and_across_batches_are_stored_once(tmp_path: Path, real_dir: Path, netem_qa_dir: Path,
                                                           fingerprints: FingerprintDB) -> None:
    lines = sample_lines(real_dir, netem_qa_dir)[:30]
    src = tmp_path / "in.jsonl"
    # Each record three times: twice in a row (same batch) and once 30 records later (another batch).
    src.write_bytes(b"".join(line + b"\n" + line + b"\n" for line in lines) + b"\n".join(lines) + b"\n")
    store_path = tmp_path / "s.duckdb"
    with open_store(store_path) as store:
        summary = make_import(MakeImportParams(paths=[src], store=store, fingerprints=fingerprints,
                                               quarantine_dir=tmp_path / "q", batch_size=8))
        again = make_import(MakeImportParams(paths=[src], store=store, fingerprints=fingerprints,
                                             quarantine_dir=tmp_path / "q", batch_size=8))
    assert (summary.records, summary.imported, summary.duplicates) == (90, 30, 60)
    assert (again.imported, again.duplicates, again.observations) == (0, 90, 0)
    assert len(rows(store_path, "measurements", "uid")) == 30


class _Recording(BulkWriter):
    """Writes through the store while recording what it was handed; fails on demand."""

    def __init__(self, inner: BulkWriter, fail_in: str | None = None) -> None:
        self.inner, self.fail_in, self.seen = inner, fail_in, []

    def prepare(self, batch: StoreBatch) -> StoreBatch:
        if self.fail_in == "prepare":
            raise RuntimeError("prepare failed")
        return self.inner.prepare(batch)

    def add(self, batch: StoreBatch) -> None:
        self.seen.append(batch)
        if self.fail_in == "add":
            raise RuntimeError("add failed")
        self.inner.add(batch)

    def close(self):
        return self.inner.close()


def test_batches_reach_the_store_in_order_without_decoded_test_keys(tmp_path: Path, real_dir: Path,
                                                                    netem_qa_dir: Path) -> None:
    lines = sample_lines(real_dir, netem_qa_dir)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    with open_store(tmp_path / "s.duckdb") as store:
        recording = _Recording(store.bulk_writer())
        store.bulk_writer = lambda: recording  # type: ignore[method-assign]
        make_import(MakeImportParams(paths=[src], store=store, fingerprints=FingerprintDB(),
                                     quarantine_dir=tmp_path / "q", batch_size=10))
    stored = [m for batch in recording.seen for m in batch.measurements]
    assert [m.uid for m in stored] == [decode_measurement(line).uid for line in lines]
    # The store keeps raw bytes and envelopes; decoded test keys are dropped once judged.
    assert all(m.test_keys is None for m in stored)


@pytest.mark.parametrize("stage", ["prepare", "add"])
def test_a_failing_writer_stops_the_import_with_its_error(tmp_path: Path, real_dir: Path, netem_qa_dir: Path,
                                                          stage: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(sample_lines(real_dir, netem_qa_dir)) + b"\n")
    with open_store(tmp_path / "s.duckdb") as store:
        recording = _Recording(store.bulk_writer(), fail_in=stage)
        store.bulk_writer = lambda: recording  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match=f"{stage} failed"):
            make_import(MakeImportParams(paths=[src], store=store, fingerprints=FingerprintDB(),
                                         quarantine_dir=tmp_path / "q", batch_size=5))

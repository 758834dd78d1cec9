"""Insertion rate and memory of DuckDBStore on synthetic measurements (not a pytest test).

    .venv/bin/python bench/store.py [N] [BATCH] [MEMORY_LIMIT]

Replicates the netem-qa records with fresh uids, writes them in batches with
``write_batch``, and reports measurements/s (with their observations and
verdicts), the ratio to ``json.loads`` of the same raw bytes timed in the same
run, and peak RSS. Generation time is excluded from the rate.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "store"))
from store_records import load_netem_qa, replicate  # noqa: E402

from netvigil.store import StoreBatch, open_store  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(n: int = 20_000, batch_size: int = 2_000, memory_limit: str = "96MB") -> None:
    templates = load_netem_qa()
    records = replicate(templates, n)
    raw_bytes = obs_rows = 0
    write_s = cpu_s = parse_s = 0.0
    with tempfile.TemporaryDirectory() as tmp, open_store(
        Path(tmp) / "bench.duckdb", memory_limit=memory_limit
    ) as store:
        base_rss = rss_mb()
        while chunk := list(islice(records, batch_size)):
            batch = StoreBatch(
                measurements=[m for m, _, _ in chunk],
                observations=[o for _, obs, _ in chunk for o in obs],
                verdicts=[v for _, _, v in chunk],
            )
            raw_bytes += sum(len(m.raw) for m in batch.measurements)
            obs_rows += len(batch.observations)
            t = time.perf_counter()
            for m in batch.measurements:  # the baseline: bare parsing of the same bytes
                json.loads(m.raw)
            parse_s += time.perf_counter() - t
            t, c = time.perf_counter(), time.process_time()
            store.write_batch(batch)
            write_s += time.perf_counter() - t
            cpu_s += time.process_time() - c
            del batch, chunk
        t = time.perf_counter()
        again = store.write_batch(StoreBatch(measurements=[m for m, _, _ in replicate(templates, batch_size)]))
        skip_s = time.perf_counter() - t
        stats = store.stats()
        db_size = (Path(tmp) / "bench.duckdb").stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory_limit {memory_limit}: {n} measurements ({raw_bytes / 1e6:.0f} MB raw), {obs_rows} observations, {n} verdicts, batch {batch_size}")
    print(f"write: {write_s:.2f} s = {n / write_s:,.0f} measurements/s ({raw_bytes / 1e6 / write_s:.0f} MB/s raw);"
          f" process CPU {cpu_s:.2f} s (all threads)")
    print(f"ratio write / json.loads of the same raw bytes = {parse_s / write_s:.2f}")
    print(f"re-write of {batch_size} known: {skip_s * 1000:.0f} ms (skipped {again.skipped})")
    print(f"rss after open {base_rss:.0f} MB, peak {peak:.0f} MB; file {db_size / 1e6:.0f} MB; {stats['tables']}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(int(a) for a in args[:2]), *args[2:3])

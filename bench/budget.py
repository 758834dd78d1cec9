"""Benchmark: where an import's CPU goes, and the best ratio to json.loads it allows.

Runs every stage of `netvigil import` on its own, one after another on one
thread, over the same replicated real samples as ``bench/analysis.py``, and
measures each stage's CPU time per measurement (``time.thread_time``):

  json.loads      the baseline: bare parsing of the same lines, batch by
                  batch right before the stages (so the host's swings fall
                  on both sides of every ratio)
  decode          msgspec: envelope + test keys (what analysis reads)
  analyze         observations + verdicts (with fingerprints)
  store prepare   the store's bulk writer: zstd of the raw bytes, NDJSON rows
  store add       the store's bulk writer: DuckDB read_json, insert, commit

These are the real code paths (the importer's own calls, in its batch size),
not models of them; the zstd part of ``store prepare`` is also timed on its
own. Decode, analyze and the NDJSON encoding hold CPython's one GIL, so the
import's ratio to json.loads cannot exceed json.loads / (their sum), however
many vCPUs it has: that is the "GIL ceiling".

Each repeat then runs the real import (``make_import``, as `netvigil import`
does) with every thread's scheduler counters read from /proc (Linux): per
measurement, how long each thread ran and waited for a vCPU, and how long the
judging thread slept (waiting for the GIL, for a store queue, or at the end
for the last commit); how much more CPU the same work took with the threads
side by side than stage by stage alone (two vCPUs that are hyperthreads of
one core slow each other down), and how busy the vCPUs were. The store's
threads are read every 20 ms while they live, so their last few ms are not
counted.

Usage: python bench/budget.py [--mb 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis import SHARED, build_jsonl, time_baseline

STAGES = ("json.loads", "decode", "analyze", "store prepare", "store add")
ZSTD = "  of which zstd"


def stage_cpu(path: Path, workdir: Path, batch_size: int = 500) -> tuple[int, dict[str, float]]:
    """CPU seconds of each stage of an import of ``path``, run one stage at a time on this thread."""
    import zstandard

    from netvigil.analysis import ANALYSED_TESTS, analyze
    from netvigil.codec import decode_measurement, decode_test_keys
    from netvigil.model.measurement import SourceRef
    from netvigil.store import StoreBatch, open_store
    from netvigil.store._staging import compress_raw
    from netvigil.tasks.fingerprints import load_fingerprints
    from netvigil.tasks.importing import import_tuning

    fps = load_fingerprints(SHARED / "fingerprints")
    cpu = dict.fromkeys((*STAGES, ZSTD), 0.0)
    lines = path.read_bytes().splitlines()
    clock = time.thread_time
    store_path = workdir / f"budget-{time.monotonic_ns()}.duckdb"
    with open_store(store_path) as store, import_tuning():
        writer = store.bulk_writer()
        zstd = zstandard.ZstdCompressor(level=store._zstd_level)
        for start in range(0, len(lines), batch_size):
            # The baseline first, on the same lines and within the same fraction of a second as the stages,
            # so that the host's swings (other tenants, a busy sibling vCPU) fall on both sides of the ratios.
            t = clock()
            for line in lines[start:start + batch_size]:
                json.loads(line)
            cpu["json.loads"] += clock() - t
            # As the importer does it: envelopes a batch at a time, each measurement's test keys decoded right
            # before it is judged and dropped right after (see netvigil.tasks.importing).
            t = clock()
            ms = [decode_measurement(line, SourceRef(str(path), start + i + 1), test_keys_for=())
                  for i, line in enumerate(lines[start:start + batch_size])]
            cpu["decode"] += clock() - t
            batch = StoreBatch(import_run_id="budget")
            for m in ms:
                t = clock()
                if m.test_name in ANALYSED_TESTS:
                    m.test_keys = decode_test_keys(m)
                t1 = clock()
                observations, verdicts = analyze(m, fps)
                m.test_keys = None
                batch.measurements.append(m)
                batch.observations.extend(observations)
                batch.verdicts.extend(verdicts)
                t2 = clock()
                cpu["decode"] += t1 - t
                cpu["analyze"] += t2 - t1
            t = clock()
            compress_raw(batch.measurements, zstd)  # the zstd share of prepare, timed apart
            cpu[ZSTD] += clock() - t
            t = clock()
            writer.prepare(batch)
            t1 = clock()
            writer.add(batch)
            cpu["store prepare"] += t1 - t
            cpu["store add"] += clock() - t1
        t = clock()
        writer.close()
        cpu["store add"] += clock() - t
    for suffix in ("", ".wal"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    return len(lines), cpu


def _schedstat(tid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of a thread of this process."""
    on_cpu, waiting, _ = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def thread_profile(path: Path, workdir: Path) -> tuple[int, float, dict[str, tuple[float, float]]]:
    """One real import; (measurements, wall seconds, {thread name: (on CPU, waiting for a CPU)} seconds)."""
    from netvigil.store import open_store
    from netvigil.tasks.fingerprints import load_fingerprints
    from netvigil.tasks.importing import MakeImportParams, make_import

    fps = load_fingerprints(SHARED / "fingerprints")
    seen: dict[str, tuple[float, float]] = {}
    done = threading.Event()

    def poll() -> None:  # the store's threads end with the import: keep their last reading
        while not done.wait(0.02):
            for t in threading.enumerate():
                if t.native_id is not None and t is not poller and t is not threading.main_thread():
                    try:
                        seen[t.name] = _schedstat(t.native_id)
                    except OSError:
                        pass

    poller = threading.Thread(target=poll, name="poller", daemon=True)
    main_id = threading.get_native_id()
    with open_store(workdir / f"profile-{time.monotonic_ns()}.duckdb") as store:
        poller.start()
        before = _schedstat(main_id)
        t0 = time.perf_counter()
        summary = make_import(MakeImportParams(paths=[path], store=store, fingerprints=fps,
                                               quarantine_dir=workdir / "q"))
        wall = time.perf_counter() - t0
        after = _schedstat(main_id)
        done.set()
        poller.join()
    threads = {"judging (main)": (after[0] - before[0], after[1] - before[1])}
    threads.update(sorted(seen.items()))
    return summary.records, wall, threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=64, help="size of the input file (MB)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats; the median of each figure is reported")
    args = ap.parse_args()
    if not Path("/proc/self/schedstat").exists():
        sys.exit("this benchmark reads the scheduler's per-thread counters from /proc: Linux only")
    with tempfile.TemporaryDirectory(prefix="nv-budget-") as tmp:
        workdir = Path(tmp)
        data = workdir / "bench.jsonl"
        n = build_jsonl(data, args.mb * 1_000_000)
        print(f"input: {n:,} measurements, {data.stat().st_size / 1e6:.1f} MB (real samples replicated)")
        runs = []
        for _ in range(args.repeat):
            _, cpu = stage_cpu(data, workdir)
            _, json_wall = time_baseline(data, json.loads)
            _, wall, threads = thread_profile(data, workdir)
            us = {k: v / n * 1e6 for k, v in cpu.items()}
            total = sum(us[k] for k in STAGES[1:])
            gil = us["decode"] + us["analyze"] + us["store prepare"] - us[ZSTD]
            run = {**us, "total": total, "gil": gil, "gil ceiling": us["json.loads"] / gil,
                   "import": json_wall / wall, "wall": wall / n * 1e6}
            for name, (on_cpu, waiting) in threads.items():
                run[f"{name} on"], run[f"{name} waiting"] = on_cpu / n * 1e6, waiting / n * 1e6
            main_thread = threads["judging (main)"]
            run["judging (main) asleep"] = (wall - main_thread[0] - main_thread[1]) / n * 1e6
            run["busy"] = sum(on_cpu for on_cpu, _ in threads.values()) / n * 1e6
            runs.append(run)
            print("  repeat: " + ", ".join(f"{k.strip()} {v:.0f} µs" for k, v in us.items())
                  + f"; GIL ceiling {run['gil ceiling']:.2f}; import {run['import']:.2f}", flush=True)
        med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
        print(f"\nCPU per measurement, one stage at a time on one thread (median of {len(runs)}):")
        for k in (*STAGES, ZSTD):
            share = "" if k == "json.loads" else f"  ({med[k] / med['total']:.0%} of the import)"
            print(f"  {k:16s} {med[k]:6.0f} µs{share}")
        print(f"  {'import total':16s} {med['total']:6.0f} µs = {med['total'] / med['json.loads']:.1f}× json.loads")
        print(f"  {'holding the GIL':16s} {med['gil']:6.0f} µs = {med['gil'] / med['json.loads']:.1f}× json.loads"
              " (decode, analyze, NDJSON encoding)")
        print(f"GIL ceiling / json.loads     = {med['gil ceiling']:.2f}")
        print(f"netvigil import / json.loads = {med['import']:.2f}  (same runs)")
        print(f"\nthe imports, {med['wall']:.0f} µs of wall time per measurement; each thread, per measurement:")
        for name in [k[:-3] for k in runs[0] if k.endswith(" on")]:
            line = f"  {name:26s} on a CPU {med[name + ' on']:4.0f} µs, waiting for one {med[name + ' waiting']:3.0f} µs"
            if name.startswith("judging"):
                line += f", asleep {med[name + ' asleep']:3.0f} µs"
            print(line)
        print(f"  all threads on a CPU {med['busy']:.0f} µs = {med['busy'] / med['total']:.2f}× the stages alone; "
              f"vCPUs busy {med['busy'] / (med['wall'] * (os.cpu_count() or 1)):.0%}")

if __name__ == "__main__":
    main()

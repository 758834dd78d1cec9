"""Benchmark: import + analyze vs bare JSON parsing of the same bytes.

Builds a JSONL file from the real OONI samples in ../shared/data (every valid
measurement, replicated with fresh ids so nothing is deduplicated), then, in
the same run and on the same bytes:

  baseline  json.loads of every line (stdlib; orjson shown for reference)
  analysis  decode + observations + verdicts (with fingerprints), no store
  netvigil  the full `netvigil import` path: read, decode, observations,
            verdicts, and the pipelined bulk write to a fresh DuckDB store

and prints measurements/s of each and the ratio netvigil / json.loads. Each
repeat runs the four phases back to back and its ratios are taken within that
repeat, so a busy moment on a shared machine slows both sides of a ratio; the
median over repeats is the figure to quote (the best is shown beside it).
The import is timed until ``make_import`` returns (everything committed); the
store's close (DuckDB's final checkpoint) is shown separately.
With --rss-mb N it also imports an N-MB file in a child process and reports
that process's peak RSS and wall time (the bounded-memory check).

Usage: python bench/analysis.py [--mb 128] [--rss-mb 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ooni"


def sample_lines() -> list[dict]:
    from netvigil.codec import BadRecord, decode_measurement

    out = []
    for path in sorted((SHARED / "measurements").rglob("*.json")):
        raw = path.read_bytes()
        try:
            decode_measurement(raw)
        except BadRecord:
            continue
        out.append(orjson.loads(raw))
    if not out:
        sys.exit(f"no samples under {SHARED}: this benchmark needs ../shared/data")
    return out


def build_jsonl(path: Path, target_bytes: int) -> int:
    """Replicate the samples until the file reaches target_bytes; each copy gets new ids."""
    samples = sample_lines()
    n = written = 0
    with path.open("wb") as fh:
        while written < target_bytes:
            for i, obj in enumerate(samples):
                obj = dict(obj)
                tag = f"{n:08d}"
                obj["report_id"] = f"{obj.get('report_id') or 'bench'}-{tag}"
                if obj.get("measurement_uid"):
                    obj["measurement_uid"] = f"{obj['measurement_uid']}-{tag}"
                line = orjson.dumps(obj) + b"\n"
                fh.write(line)
                written += len(line)
                n += 1
                if written >= target_bytes:
                    break
    return n


def time_baseline(path: Path, loads) -> tuple[int, float]:
    gc.collect()
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n, time.perf_counter() - t0


def time_analysis_only(path: Path) -> tuple[int, float]:
    """decode + observations + verdicts, no store: where the single-thread time goes."""
    from netvigil.analysis import analyze
    from netvigil.codec import decode_measurement
    from netvigil.tasks.fingerprints import load_fingerprints

    fps = load_fingerprints(SHARED / "fingerprints")
    gc.collect()
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            analyze(decode_measurement(line), fps)
            n += 1
    return n, time.perf_counter() - t0


def time_import(path: Path, workdir: Path) -> tuple[int, float, float]:
    """(records, seconds until make_import returned, seconds the store's close took)."""
    from netvigil.store import open_store
    from netvigil.tasks.fingerprints import load_fingerprints
    from netvigil.tasks.importing import MakeImportParams, make_import

    fps = load_fingerprints(SHARED / "fingerprints")
    store_path = workdir / f"bench-{time.monotonic_ns()}.duckdb"
    gc.collect()
    with open_store(store_path) as store:
        t0 = time.perf_counter()
        summary = make_import(MakeImportParams(paths=[path], store=store, fingerprints=fps,
                                               quarantine_dir=workdir / "q"))
        elapsed = time.perf_counter() - t0
    closed = time.perf_counter() - t0 - elapsed
    assert summary.imported == summary.records, summary.as_dict()
    for suffix in ("", ".wal"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    return summary.records, elapsed, closed


def cli_import_rss(path: Path, workdir: Path) -> dict:
    """Run the real `netvigil import` on the file in a child process; its wall time and peak RSS."""
    env = dict(os.environ, NETVIGIL_DATA_DIR=str(workdir / "cli"))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "netvigil", "import", str(path), "--json",
                           "--fingerprints", str(SHARED / "fingerprints")], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"netvigil import failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"records": summary["imported"], "seconds": seconds, "peak_rss_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=128, help="size of the throughput file (MB)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats; ratios are taken within each, median reported")
    ap.add_argument("--rss-mb", type=int, default=0, help="also import a file this large in a child and report peak RSS")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nv-bench-") as tmp:
        workdir = Path(tmp)
        data = workdir / "bench.jsonl"
        n = build_jsonl(data, args.mb * 1_000_000)
        size = data.stat().st_size
        print(f"input: {n:,} measurements, {size / 1e6:.1f} MB (real samples replicated)")
        runs: list[dict[str, float]] = []
        for _ in range(args.repeat):
            run = {"json": time_baseline(data, json.loads)[1], "orjson": time_baseline(data, orjson.loads)[1],
                   "only": time_analysis_only(data)[1]}
            _, run["import"], run["close"] = time_import(data, workdir)
            runs.append(run)
            print(f"  repeat: json.loads {n / run['json']:,.0f}/s, decode+analyze {n / run['only']:,.0f}/s, "
                  f"import {n / run['import']:,.0f}/s (+{run['close']:.1f} s close)  ->  "
                  f"ratios {run['json'] / run['only']:.2f} / {run['json'] / run['import']:.2f}", flush=True)
        best = {k: min(r[k] for r in runs) for k in runs[0]}
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for label, key in (("json.loads", "json"), ("orjson.loads", "orjson"),
                           ("decode+analyze only", "only"), ("netvigil import", "import")):
            print(f"{label:21s} {n / med[key]:>10,.0f} measurements/s  ({size / med[key] / 1e6:6.1f} MB/s)"
                  f"   best {n / best[key]:,.0f}/s")
        print(f"store close (final checkpoint) {med['close']:.2f} s (not in the import time)")

        def ratio(a: str, b: str) -> str:
            per_run = [r[a] / r[b] for r in runs]
            return f"{statistics.median(per_run):.2f} (median of {len(runs)}; best {max(per_run):.2f})"

        print(f"ratio decode+analyze / json.loads = {ratio('json', 'only')}")
        print(f"ratio import / json.loads   = {ratio('json', 'import')}")
        print(f"ratio import / orjson.loads = {ratio('orjson', 'import')}")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        data.unlink()
        if args.rss_mb:
            big = workdir / "big.jsonl"
            nbig = build_jsonl(big, args.rss_mb * 1_000_000)
            res = cli_import_rss(big, workdir)
            print(f"`netvigil import` of {big.stat().st_size / 1e9:.2f} GB ({nbig:,} measurements): "
                  f"{res['seconds']:.0f} s, peak RSS {res['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()

"""Benchmark: import + analyze vs bare JSON parsing of the same bytes.

Builds a JSONL file from the real OONI samples in ../shared/data (every valid
measurement, replicated with fresh ids so nothing is deduplicated), then, in
the same run and on the same bytes:

  baseline  json.loads of every line (stdlib; orjson shown for reference)
  analysis  decode + observations + verdicts (with fingerprints), no store
  netvigil  the full `netvigil import` path: read, decode, observations,
            verdicts, and the pipelined bulk write to a fresh DuckDB store

and prints measurements/s of each and the ratio netvigil / json.loads.
With --rss-mb N it also imports an N-MB file in a child process and reports
that process's peak RSS (the bounded-memory check).

Usage: python bench/analysis.py [--mb 128] [--rss-mb 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
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


def time_import(path: Path, workdir: Path) -> tuple[int, float]:
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
    assert summary.imported == summary.records, summary.as_dict()
    for suffix in ("", ".wal"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    return summary.records, elapsed


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
    ap.add_argument("--repeat", type=int, default=3, help="best of N for each side")
    ap.add_argument("--rss-mb", type=int, default=0, help="also import a file this large in a child and report peak RSS")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nv-bench-") as tmp:
        workdir = Path(tmp)
        data = workdir / "bench.jsonl"
        n = build_jsonl(data, args.mb * 1_000_000)
        size = data.stat().st_size
        print(f"input: {n:,} measurements, {size / 1e6:.1f} MB (real samples replicated)")
        base = min(time_baseline(data, json.loads)[1] for _ in range(args.repeat))
        fast = min(time_baseline(data, orjson.loads)[1] for _ in range(args.repeat))
        only = min(time_analysis_only(data)[1] for _ in range(args.repeat))
        ours = min(time_import(data, workdir)[1] for _ in range(args.repeat))
        print(f"json.loads            {n / base:>10,.0f} measurements/s  ({size / base / 1e6:6.1f} MB/s)")
        print(f"orjson.loads          {n / fast:>10,.0f} measurements/s  ({size / fast / 1e6:6.1f} MB/s)")
        print(f"decode+analyze only   {n / only:>10,.0f} measurements/s  ({size / only / 1e6:6.1f} MB/s)")
        print(f"netvigil import       {n / ours:>10,.0f} measurements/s  ({size / ours / 1e6:6.1f} MB/s)")
        print(f"ratio decode+analyze / json.loads = {base / only:.2f}")
        print(f"ratio import / json.loads   = {base / ours:.2f}")
        print(f"ratio import / orjson.loads = {fast / ours:.2f}")
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

"""Probe throughput in the lab: 1,000 URLs at the default concurrency vs one at a time (not a pytest test).

    sudo .venv/bin/python bench/probe.py [--concurrency N] [--serial-sample N] [--keep]

Brings up `bench/scenarios/probe-bench.toml` (50 sites with emulated server latency, ~10% of URLs censored by
assorted techniques, netvigil's control helper abroad), then runs the real CLI, `netvigil probe run`, inside
the lab's client twice over `bench/scenarios/probe-bench-urls.csv`: once at the default concurrency and once at
concurrency 1. Prints both rates (URLs/s), their ratio, and the failures caused by the probe itself: probe errors,
plus any verdict other than "ok" for a URL whose site the scenario does not censor (the lab's network is healthy,
so such a failure can only be the probe's), plus verdicts that differ between the two runs.
`--serial-sample N` measures only the first N URLs at concurrency 1 (the rate is per URL either way).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from netvigil.lab.runtime import Lab, lab_exec_argv
from netvigil.lab.scenario import load_scenario

HERE = Path(__file__).resolve().parent / "scenarios"
SCENARIO = HERE / "probe-bench.toml"
URLS = HERE / "probe-bench-urls.csv"
DEFAULT_CONCURRENCY = 32  # netvigil probe run's default


def censored_hosts() -> set[str]:
    scenario = load_scenario(str(SCENARIO))
    ids = {t for p in scenario.policies for t in p.targets}
    return {name for t in scenario.targets if t.id in ids for name in t.names}


def run(lab: Lab, urls_file: Path, concurrency: int, tmp: Path) -> dict:
    argv = [sys.executable, "-m", "netvigil", "probe", "run", "--json", "--file", str(urls_file),
            "--concurrency", str(concurrency), "--control", "https://control.example/",
            "--udp-resolver", "203.0.113.54:53", "--spool", str(tmp / f"spool-{concurrency}"),
            "--store", str(tmp / f"store-{concurrency}.duckdb")]
    r = subprocess.run(lab_exec_argv(lab.state, "isp1", argv), capture_output=True, text=True, timeout=7200)
    if r.returncode not in (0, 8):
        raise SystemExit(f"probe run failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def probe_caused(doc: dict, censored: set[str]) -> list[dict]:
    return [r for r in doc["results"]
            if r["probe_error"] or (urlsplit(r["url"]).hostname not in censored and r["outcome"] != "ok")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    ap.add_argument("--serial-sample", type=int, default=None, help="URLs measured at concurrency 1 (default: all)")
    args = ap.parse_args()
    censored = censored_hosts()
    lines = URLS.read_text().splitlines()
    with tempfile.TemporaryDirectory() as td, Lab(str(SCENARIO), lab="pbench") as lab:
        tmp = Path(td)
        serial_file = tmp / "serial.csv"
        serial_file.write_text("\n".join(lines[: 1 + (args.serial_sample or len(lines))]) + "\n")
        fast = run(lab, URLS, args.concurrency, tmp)
        slow = run(lab, serial_file, 1, tmp)
    same = {r["url"]: r["outcome"] for r in slow["results"]}
    differ = [r for r in fast["results"] if r["url"] in same and same[r["url"]] != r["outcome"]]
    bad_fast, bad_slow = probe_caused(fast, censored), probe_caused(slow, censored)
    ratio = fast["urls_per_second"] / slow["urls_per_second"]
    print(f"URLs: {fast['measured']} at concurrency {args.concurrency}, {slow['measured']} at concurrency 1")
    print(f"concurrency {args.concurrency}: {fast['urls_per_second']:.2f} URLs/s ({fast['seconds']:.1f} s)")
    print(f"concurrency 1: {slow['urls_per_second']:.2f} URLs/s ({slow['seconds']:.1f} s)")
    print(f"ratio: {ratio:.1f}x (goal >= 20x)")
    print(f"verdicts: {dict(sorted(fast['outcomes'].items()))}")
    print(f"failures caused by the probe: {len(bad_fast)} at concurrency {args.concurrency}, {len(bad_slow)} at 1; "
          f"verdicts differing between the runs: {len(differ)}")
    for r in (bad_fast + bad_slow + differ)[:20]:
        print(f"  {r['url']}: {r['outcome']} {r['method'] or ''} {r['rule'] or ''} {r['probe_error'] or ''}")


if __name__ == "__main__":
    main()

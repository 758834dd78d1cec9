"""The `throttling` and `speedtest` nettests in the censorship lab.

Must show, on the shipped scenarios: in `ru-2021-throttle` (Xue et al.: the censor polices TLS flows whose SNI names
twimg.com/twitter.com to 130 kbit/s on ISPs rostel and mts from 10:00 on 10 March) throttling is detected for
abs.twimg.com in >= 19 of 20 decisions (half on rostel, half on mts) with the plateau within 20 % of the policer's
130 kbit/s; in `baseline` (nothing throttled) 0 false throttling verdicts in 20 decisions against its large-file
server; every decision within 10 s. Each decision downloads from one server address with the target SNI, a random
SNI and no SNI, and decides with Wehe's statistics and a confirmation round. NETVIGIL_THR_RUNS sets the counts
(default 20); the four clients run at the same time. The figures (outcomes, plateaus, decision times) are printed;
run with -s to see them.

The speed test, against the real control helper's /speed endpoints, runs in tests/lab/scenarios/throttling.toml
(a copy of ru-2021-throttle with an untouched ISP `base` on a 20 Mbit/s line and mts held to 2 Mbit/s as a whole):
base measures near 20 Mbit/s, mts near 2 Mbit/s, so a network throttled as a whole shows as such.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import msgspec
import pytest

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement
from netvigil.lab.runtime import Lab, lab_exec_argv

pytestmark = pytest.mark.lab

SCENARIO = Path(__file__).with_name("scenarios") / "throttling.toml"
RUNS = int(os.environ.get("NETVIGIL_THR_RUNS", "20"))
RATE = 130_000
TARGET = "abs.twimg.com"
PATH = "/1000000000"          # the lab's largefile server sends that many bytes; a download stops by time first
CONTROL = "http://control.netvigil-lab.example/"

# Runs inside a lab client: `runs` throttling decisions one after the other, each printed as an OONI measurement
# (one JSON line), with the nettest's real options except the path of the large file.
CLIENT = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime
from netvigil.probe.envelope import ReportInfo, encode_measurement, make_report_id
from netvigil.probe.geo import ProbeLocation
from netvigil.probe.nettests import speedtest, throttling

args = json.loads(sys.argv[1])
loc = ProbeLocation(probe_cc="RU", probe_asn=args["asn"], source="lab")
if args["test"] == "throttling":
    mod, opts, target = throttling, throttling.ThrottlingOptions(path=args["path"]), args["target"]
else:
    mod, opts, target = speedtest, speedtest.SpeedtestOptions(
        control_url=args["control"], download_seconds=3.0, upload_seconds=3.0), None
started = datetime.now(UTC)
report = ReportInfo(test_name=mod.TEST_NAME, test_version=mod.TEST_VERSION, test_start_time=started, location=loc,
                    report_id=make_report_id(mod.TEST_NAME, loc, started), test_helpers=mod.test_helpers(opts))
for _ in range(args["runs"]):
    when, t0 = datetime.now(UTC), time.monotonic()
    keys = asyncio.run(mod.measure(target, opts))
    sys.stdout.buffer.write(encode_measurement(report, target, when, time.monotonic() - t0, keys) + b"\n")
    sys.stdout.flush()
"""

ASN = {"rostel": "AS64548", "mts": "AS64549", "base": "AS64550", "alpha": "AS64601", "beta": "AS64602"}
BASELINE_TARGET = "largefile.example"


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab(str(SCENARIO), "thr")
    try:
        yield lab
    finally:
        lab.down()


def _start(lab: Lab, where: str, out: Path, **args: object) -> subprocess.Popen:
    """Start the client; its measurements go to a file (a pipe would block a client the test is not reading yet,
    and the three must run at the same time)."""
    args.setdefault("asn", ASN[where.split("/")[0]])
    argv = lab_exec_argv(lab.state, where, [sys.executable, "-c", CLIENT, json.dumps(args)])
    proc = subprocess.Popen(argv, stdout=out.open("wb"), stderr=subprocess.PIPE, text=True)
    proc.out_path = out  # type: ignore[attr-defined]
    return proc


def _collect(proc: subprocess.Popen, timeout: float) -> list:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    lines = proc.out_path.read_bytes().splitlines()  # type: ignore[attr-defined]
    return [decode_measurement(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def ru_lab(labkit) -> Iterator[Lab]:
    """The shipped ru-2021-throttle, running until its SNI policers are on (10:00 scenario time, ~10 s in)."""
    lab = labkit.start_lab("ru-2021-throttle", "thrru")
    try:
        deadline = time.monotonic() + 60
        while not {"twitter-fixed", "twitter-mobile"} <= {r.policy for r in lab.truth() if r.state == "on"}:
            assert time.monotonic() < deadline, "the SNI policers never switched on"
            time.sleep(0.5)
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def base_lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab("baseline", "thrbase")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def decisions(ru_lab, base_lab, tmp_path_factory) -> dict[str, list]:
    """RUNS decisions on the throttled ISPs of ru-2021-throttle (split between rostel and mts) and RUNS in baseline
    (split between alpha and beta), all four clients at once."""
    tmp = tmp_path_factory.mktemp("thr")
    half = (RUNS + 1) // 2
    started = time.monotonic()
    procs = {
        "rostel": _start(ru_lab, "rostel", tmp / "rostel.jsonl", test="throttling", runs=half, target=TARGET,
                         path=PATH),
        "mts": _start(ru_lab, "mts", tmp / "mts.jsonl", test="throttling", runs=RUNS - half, target=TARGET,
                      path=PATH),
        "alpha": _start(base_lab, "alpha", tmp / "alpha.jsonl", test="throttling", runs=half,
                        target=BASELINE_TARGET, path=PATH),
        "beta": _start(base_lab, "beta", tmp / "beta.jsonl", test="throttling", runs=RUNS - half,
                       target=BASELINE_TARGET, path=PATH),
    }
    out = {isp: _collect(p, timeout=30 + 15 * RUNS) for isp, p in procs.items()}
    out["base"] = out.pop("alpha") + out.pop("beta")
    out["wall_seconds"] = time.monotonic() - started
    return out


def _keys(m) -> dict:
    """The test keys as plain JSON values (typed structs once the model registers the test, a dict before)."""
    return msgspec.to_builtins(m.test_keys) if isinstance(m.test_keys, msgspec.Struct) else m.test_keys


def _verdict(m):
    (v,) = analyze(m)[1]
    return v


def _report(name: str, ms: list) -> None:
    rows = []
    for m in ms:
        v = _verdict(m)
        k = _keys(m)
        s = k.get("summary", {})
        rows.append((v.outcome, round(m.envelope.test_runtime, 2), s.get("plateau_bps"), s.get("kind"),
                     [r.get("differentiation") for r in k.get("rounds", [])]))
    times = sorted(r[1] for r in rows)
    plateaus = sorted(r[2] for r in rows if r[0] == "throttled" and r[2] is not None)
    outcomes = {o: [r[0] for r in rows].count(o) for o in sorted({r[0] for r in rows})}
    print(f"\n{name}: {len(rows)} decisions; outcomes {outcomes}; decision seconds min/median/p90/max "
          f"{times[0]}/{statistics.median(times)}/{times[int(0.9 * (len(times) - 1))]}/{times[-1]}")
    if plateaus:
        print(f"    plateau bit/s min/median/max {plateaus[0]:.0f}/{statistics.median(plateaus):.0f}/{plateaus[-1]:.0f} "
              f"(policer {RATE}: {min(plateaus) / RATE - 1:+.1%} .. {max(plateaus) / RATE - 1:+.1%})")
    for r in rows:
        print("   ", r)
    print("    first verdict:", _verdict(ms[0]).rule_ids, _verdict(ms[0]).detail)


def test_throttled_isps_detect_twimg_with_the_policers_rate(decisions):
    throttled = decisions["rostel"] + decisions["mts"]
    _report("rostel+mts (throttled by SNI)", throttled)
    assert len(throttled) == RUNS
    verdicts = [_verdict(m) for m in throttled]
    detected = [(m, v) for m, v in zip(throttled, verdicts) if (v.outcome, v.method) == ("throttled", "bandwidth")]
    assert len(detected) >= RUNS - RUNS // 20, [v.detail for v in verdicts if v.outcome != "throttled"]
    for m, v in detected:
        k = _keys(m)
        plateau = k["summary"]["plateau_bps"]
        assert abs(plateau - RATE) <= 0.2 * RATE, (plateau, v.detail)
        assert v.target == TARGET and "plateau" in v.detail
        assert k["summary"]["kind"] == "policer", v.detail
        assert {d["variant"] for d in k["downloads"]} == {"target_sni", "random_sni", "no_sni"}
        assert len({d["address"] for d in k["downloads"]}) == 1          # the same server address
    assert all(m.envelope.test_runtime <= 10.0 for m in throttled)


def test_baseline_has_no_false_detection(decisions):
    base = decisions["base"]
    _report("baseline (nothing throttled)", base)
    sizes = [len(m.raw) for isp in ("rostel", "mts", "base") for m in decisions[isp]]
    print(f"wall time of all {2 * RUNS} decisions, four clients at once: {decisions['wall_seconds']:.1f} s; "
          f"measurement size median/max {statistics.median(sizes) / 1024:.0f}/{max(sizes) / 1024:.0f} KiB")
    assert len(base) == RUNS
    verdicts = [_verdict(m) for m in base]
    assert not [v for v in verdicts if v.outcome == "throttled"], [v.detail for v in verdicts]
    assert sum(v.outcome == "ok" for v in verdicts) >= RUNS - RUNS // 10, [v.detail for v in verdicts]
    assert all(m.envelope.test_runtime <= 10.0 for m in base)


def test_ground_truth_names_the_policers(ru_lab, base_lab):
    on = {(r.policy, r.isp, r.rate_bps) for r in ru_lab.truth() if r.state == "on"}
    assert {("twitter-fixed", "rostel", RATE), ("twitter-mobile", "mts", RATE)} <= on
    assert not any(r.technique.startswith("throttle") for r in base_lab.truth())


def test_speedtest_shows_the_whole_network_throttled(lab, decisions, tmp_path):
    procs = {isp: _start(lab, isp, tmp_path / f"{isp}.jsonl", test="speedtest", runs=1, control=CONTROL)
             for isp in ("base", "mts")}
    got = {isp: _collect(p, timeout=60)[0] for isp, p in procs.items()}
    summary = {isp: _keys(m)["summary"] for isp, m in got.items()}
    print(f"\nspeedtest: {json.dumps(summary)}")
    base, mts = summary["base"], summary["mts"]
    assert 12_000 <= base["download"] <= 22_000, base      # kbit/s on a 20 Mbit/s line
    assert 1_200 <= mts["download"] <= 2_200, mts          # the 2 Mbit/s whole-network throttle
    # Uploads cross nft byte policers (throttle_isp's upload side), which let through up to ~1.4x their rate here;
    # the order of magnitude is what shows: the throttled network's upload is a fraction of the line's.
    assert mts["upload"] <= 1.5 * 2_000 and base["upload"] > 4 * mts["upload"], summary
    for m in got.values():
        v = _verdict(m)
        assert v.outcome == "ok" and v.rule_ids[0] == "speedtest.measured", v.detail
        assert m.envelope.test_runtime <= 16.0

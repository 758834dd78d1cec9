"""The probe through a shutdown, and its privacy: nothing it writes or sends holds the client's address.

Scenario `tests/lab/scenarios/probe-shutdown.toml`: ISP alpha loses its international links for the first
75 s; the collector and the control helper are abroad. A run during the cut completes and keeps every measurement
in the spool; an upload during the cut delivers nothing and loses nothing; after the links come back one upload
delivers each measurement exactly once, and a second upload has nothing left to send.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.lab.runtime import Lab, lab_exec_argv

pytestmark = pytest.mark.lab

SCENARIO = str(Path(__file__).with_name("scenarios") / "probe-shutdown.toml")
COLLECTOR = "203.0.113.70"
COLLECTOR_SERVER = str(Path(__file__).parent.parent / "probe" / "collector_server.py")
URLS = ["http://news.example/", "http://gov.example/", "https://gov.example/"]


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab(SCENARIO, "pshut")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def collector(lab, tmp_path_factory) -> Iterator[Path]:
    """The test collector, abroad: a real HTTP server in the lab's internet namespace."""
    out = tmp_path_factory.mktemp("collector") / "stored.jsonl"
    proc = subprocess.Popen(
        lab_exec_argv(lab.state, "internet", [sys.executable, COLLECTOR_SERVER, "--host", COLLECTOR, "--port", "80",
                                              "--out", str(out)]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"collector did not start: {line!r} {proc.stderr.read()[-2000:]}"
        yield out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def netvigil(lab: Lab, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    argv = lab_exec_argv(lab.state, "alpha", [sys.executable, "-m", "netvigil", *args])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def client_addresses(lab: Lab) -> list[str]:
    r = subprocess.run(lab_exec_argv(lab.state, "alpha", ["ip", "-4", "-o", "addr", "show"]), capture_output=True,
                       text=True, check=True)
    addrs = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", r.stdout)
    return [a for a in addrs if not a.startswith("127.")]


def cut_is_on(lab: Lab) -> bool:
    states = [r.state for r in lab.truth() if r.policy == "shutdown"]
    return bool(states) and states[-1] == "on"


def test_measure_through_a_shutdown_then_deliver_exactly_once(lab, collector, tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store.duckdb"
    collector_url = f"http://{COLLECTOR}/"
    assert cut_is_on(lab)

    run = netvigil(lab, "probe", "run", "--json", "--control", "https://control.example/", "--budget", "12",
                   "--udp-resolver", "203.0.113.54:53", "--spool", str(spool), "--store", str(store),
                   *[a for u in URLS for a in ("--url", u)])
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout)
    assert doc["measured"] == doc["spooled"] == len(URLS) and doc["probe_errors"] == 0
    uids = {r["measurement_uid"] for r in doc["results"]}
    assert len(list(spool.glob("*.json"))) == len(URLS)

    during = netvigil(lab, "probe", "upload", "--json", "--collector", collector_url, "--spool", str(spool),
                      "--attempts", "1", "--timeout", "3")
    assert cut_is_on(lab), "the cut ended before the upload during it was tried: the lab is too slow"
    assert during.returncode == 9, during.stderr[-2000:]
    assert json.loads(during.stdout)["delivered"] == 0
    assert len(list(spool.glob("*.json"))) == len(URLS)
    assert not collector.exists() or collector.read_text() == ""

    deadline = time.monotonic() + 120
    while cut_is_on(lab):
        assert time.monotonic() < deadline, "the shutdown never ended"
        time.sleep(1)

    after = netvigil(lab, "probe", "upload", "--json", "--collector", collector_url, "--spool", str(spool))
    assert after.returncode == 0, after.stderr[-2000:]
    assert json.loads(after.stdout)["delivered"] == len(URLS)
    assert list(spool.glob("*.json")) == []
    again = netvigil(lab, "probe", "upload", "--json", "--collector", collector_url, "--spool", str(spool))
    assert again.returncode == 0 and json.loads(again.stdout)["delivered"] == 0

    stored = [json.loads(line) for line in collector.read_text().splitlines()]
    assert len(stored) == len(URLS)
    assert sorted(m["input"] for m in stored) == sorted(URLS)
    assert all(m["report_id"] and m["probe_ip"] == "127.0.0.1" for m in stored)
    delivered = [json.loads(line) for line in (spool / "delivered.jsonl").read_text().splitlines()]
    assert {d["uid"] for d in delivered} == uids

    # Privacy: nothing written or sent holds the client's own address.
    written = [*spool.rglob("*"), collector, store]
    exported = tmp_path / "export"
    exported.mkdir()
    for table in ("measurements", "observations", "verdicts"):
        r = subprocess.run([sys.executable, "-m", "netvigil", "export", table, str(exported / f"{table}.csv"),
                            "--store", str(store)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        written.append(exported / f"{table}.csv")
    from netvigil.store import open_store

    with open_store(store) as st:
        raws = [st.get_raw(uid) for uid in uids]
    assert all(raws)
    blobs = [p.read_bytes() for p in written if p.is_file()] + raws
    for ip in client_addresses(lab):
        needle = ip.encode()
        leaks = [str(p) for p in written if p.is_file() and needle in p.read_bytes()]
        assert not leaks and not any(needle in b for b in blobs), f"client address {ip} found in {leaks}"

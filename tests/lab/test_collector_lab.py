"""End to end in the lab: a probe in an ISP namespace uploads to netvigil's collector on the internet side, and the
collector's verdicts are queryable through its token API, equal to the probe's own.

Scenario `baseline` (no censorship): the collector runs at 203.0.113.70 (`collector.example`), a `host` target the
lab routes but starts nothing on.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.lab.runtime import Lab, lab_exec_argv

pytestmark = pytest.mark.lab

COLLECTOR = "203.0.113.70"
URLS = ["http://news.example/", "https://news.example/", "http://gov.example/", "https://largefile.example/"]
QUERY = """
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(req, timeout=10) as resp:
    sys.stdout.write(resp.read().decode())
"""


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab("baseline", "pcol")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def collector(lab, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`netvigil collector serve` abroad, with its own store and a read token."""
    d = tmp_path_factory.mktemp("collector")
    token = secrets.token_urlsafe(24)
    (d / "token").write_text(token + "\n")
    argv = [sys.executable, "-m", "netvigil", "collector", "serve", "--host", COLLECTOR, "--port", "80",
            "--data-dir", str(d / "data"), "--store", str(d / "collector.duckdb"), "--token-file", str(d / "token")]
    proc = subprocess.Popen(lab_exec_argv(lab.state, "internet", argv), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), f"collector did not start: {line!r} {proc.stderr.read()[-2000:]}"
        yield token, d
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def api(lab: Lab, path: str, token: str) -> object:
    r = subprocess.run(lab_exec_argv(lab.state, "internet", [sys.executable, "-c", QUERY,
                                                             f"http://{COLLECTOR}{path}", token]),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_probe_uploads_to_the_collector_and_its_verdicts_are_queryable(lab, collector, tmp_path):
    token, _ = collector
    argv = [sys.executable, "-m", "netvigil", "probe", "run", "--json", "--control", "https://control.example/",
            "--udp-resolver", "203.0.113.54:53", "--collector", f"http://{COLLECTOR}/",
            "--spool", str(tmp_path / "spool"), "--store", str(tmp_path / "probe.duckdb"),
            *[a for u in URLS for a in ("--url", u)]]
    r = subprocess.run(lab_exec_argv(lab.state, "alpha", argv), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["upload"]["delivered"] == len(URLS) and doc["upload"]["failed_transient"] == 0
    assert list((tmp_path / "spool").glob("*.json")) == []
    local = {row["outcome"] for row in doc["results"]}
    assert local == {"ok"}

    deadline = time.monotonic() + 60
    while True:  # the collector acknowledges once durable; its worker judges and stores right after
        answer = api(lab, "/api/v1/query?by=probe_asn,outcome", token)
        rows = [dict(zip(answer["columns"], row)) for row in answer["rows"]]
        if sum(row["count"] for row in rows) == len(URLS) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows == [{"probe_asn": "AS64601", "outcome": "ok", "count": len(URLS)}]
    stats = api(lab, "/api/v1/stats", token)
    assert stats["log"]["measurements"] == len(URLS) and stats["queue_depth"] == 0

    # Uploading again delivers nothing new: the collector already has every measurement.
    again = subprocess.run(lab_exec_argv(lab.state, "alpha", [sys.executable, "-m", "netvigil", "probe", "upload",
                                                             "--json", "--collector", f"http://{COLLECTOR}/",
                                                             "--spool", str(tmp_path / "spool")]),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and json.loads(again.stdout)["delivered"] == 0

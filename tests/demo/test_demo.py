"""Issue 9's demo must-show: `netvigil demo` (the README's first command) runs the whole job on the embedded
defaults — the az-2020 lab, probes in every ISP through the compressed timeline, the collector, incidents, costs,
the report, the dashboard — and finishes in at most 5 minutes on this 2-core machine.

It runs the real command in a subprocess (as scripts/demo does after setup), with its own lab name, and checks that
nothing of that lab is left afterwards. Needs the lab (root or a user namespace, nftables): skipped with the reason
when it cannot run here, failed instead with NETVIGIL_REQUIRE_LAB=1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared_data import require_lab
from netvigil.lab.plan import ns_prefix
from netvigil.lab.runtime import STATE_ROOT

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

LAB = "demot"                    # this test's own lab name (the demo's default is "demo")
LIMIT = 300.0                    # the issue: the demo finishes in at most 5 minutes
AZ = dt.timezone(dt.timedelta(hours=4))
SHARED_ECONOMICS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "economics"


def _leftovers() -> list[str]:
    """Namespaces, nft tables or processes of this test's lab (other labs on the machine are not ours)."""
    found = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in ns.splitlines() if line.startswith(ns_prefix(LAB))]
    marker = str(STATE_ROOT / LAB)
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd or f"nv-{LAB}-" in cmd:
                found.append(f"process {pid}: {cmd[:120]}")
    if (STATE_ROOT / LAB).exists():
        found.append(f"state directory {STATE_ROOT / LAB}")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    require_lab()
    out = tmp_path_factory.mktemp("demo") / "out"
    argv = [sys.executable, "-m", "netvigil", "demo", "--out", str(out), "--name", LAB, "--json",
            "--port", str(_free_port())]
    if SHARED_ECONOMICS.is_dir():
        argv += ["--economics", str(SHARED_ECONOMICS)]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=560)
    finally:
        wall = time.monotonic() - t0
        left = _leftovers()
        if left:  # never leave the lab behind, whatever happened
            from netvigil.lab.runtime import down_lab

            down_lab(LAB, purge=True)
    print(f"netvigil demo: exit {proc.returncode}, wall {wall:.1f} s")
    print(proc.stderr[-4000:])
    return out, proc, wall, left


def test_the_demo_finishes_in_five_minutes_and_leaves_no_lab(demo_run) -> None:
    out, proc, wall, left = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    print("phases:", doc["phases"], "wall (demo's own):", doc["wall_seconds"])
    assert wall <= LIMIT, f"the demo took {wall:.1f} s (limit {LIMIT:.0f} s); phases: {doc['phases']}"
    assert not left, f"the demo left its lab behind: {left}"
    assert json.loads((out / "demo.json").read_text()) == doc


def test_every_isp_measured_through_the_timeline_and_everything_stored(demo_run) -> None:
    """Every client of every ISP measured (nearly) every day of the 49; every measurement reached the store with a
    verdict. (Full coverage of every round is the lab campaign test's must-show; here a probe may miss the odd round
    on a loaded machine, see docs/demo.md.)"""
    out, proc, *_ = demo_run
    doc = json.loads(proc.stdout)
    c = doc["campaign"]
    assert c["problems"] == [], c["problems"]
    assert c["rounds"] == 49 and c["clients"] == 8 and c["urls"] == 21
    assert c["stored"] == c["measured"] >= 0.97 * c["rounds"] * c["clients"] * c["urls"]
    assert c["verdicts"] >= c["stored"]
    camp = json.loads((out / "campaign" / "campaign.json").read_text())
    assert {cl["isp"] for cl in camp["clients"]} == {"baktel", "aztel", "azercell", "bakcell", "bakinet",
                                                    "isp42779", "isp196925"}
    missing = {f"{cl['isp']}/{cl['client']}": cl["rounds"]["missing"] for cl in camp["clients"]
               if cl["rounds"]["complete"] < 49}
    print("rounds not complete:", missing or "none")
    assert all(cl["rounds"]["complete"] >= 47 for cl in camp["clients"]), missing


def _local(text: str) -> dt.date:
    return dt.datetime.fromisoformat(text).astimezone(AZ).date()


def test_incidents_include_the_sni_blocking_and_the_november_cut(demo_run) -> None:
    _, proc, *_ = demo_run
    incidents = json.loads(proc.stdout)["incidents"]["list"]
    print("\n".join(f"{i['type']:13} {i['scope']:12} {i['start'][:16]} .. {(i['end'] or 'ongoing')[:16]} "
                    f"{' '.join(i['asns'])} {' '.join(i['services'] or i['regions'])}" for i in incidents))
    facebook = [i for i in incidents if i["type"] == "service-based" and "facebook" in i["services"]]
    assert any(_local(i["start"]) == dt.date(2020, 9, 27) for i in facebook), \
        "service-based blocking of facebook from 27 Sept 2020"
    # On a loaded machine the first rounds can lose their control measurements (inconclusive), which dates some
    # networks' onsets a few days later; every network still shows the blocking within the first week.
    networks = {a for i in facebook if _local(i["start"]) <= dt.date(2020, 10, 3) for a in i["asns"]}
    assert len(networks) >= 5, f"facebook blocked on {sorted(networks)} only"
    assert all(i["evidence"] > 0 for i in facebook)
    cut = [i for i in incidents if i["type"] == "full-network" and {"AS64528", "AS64529"} <= set(i["asns"])
           and dt.date(2020, 11, 4) <= _local(i["start"]) <= dt.date(2020, 11, 6)]
    assert cut, "the state ISPs' early-November outage"
    assert all(i["end"] and dt.date(2020, 11, 11) <= _local(i["end"]) <= dt.date(2020, 11, 13) for i in cut)


def test_costs_report_and_dashboard(demo_run) -> None:
    out, proc, *_ = demo_run
    doc = json.loads(proc.stdout)
    if SHARED_ECONOMICS.is_dir():
        total = doc["cost"]["total"]
        assert doc["cost"]["priced"] > 0 and total and 0 < total["low"] <= total["central"] <= total["high"]
    else:
        assert doc["cost"]["note"]
    report = doc["report"]
    html, md = Path(report["html"]), Path(report["markdown"])
    assert html.is_file() and md.is_file() and html.parent == out / "report"
    assert "facebook" in md.read_text().lower()
    assert report["charts"] and all(Path(p).is_file() for p in report["charts"])
    assert (out / "publication.json").is_file() and (out / "campaign" / "store.duckdb").is_file()
    d = doc["dashboard"]
    assert d["ok"] and d["answers"] == {"/": 200, "/api/overview": 200}, d
    assert not d["kept_serving"]

"""The probe benchmark's lab (`bench/scenarios/probe-bench.toml`) and its test list: generated, consistent with
each other, loadable from outside the package, and serving (delays, blocking, control helper) once up.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from netvigil.lab.runtime import Lab
from netvigil.lab.scenario import load_scenario

pytestmark = pytest.mark.lab

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
SCENARIO = BENCH / "probe-bench.toml"
URLS = BENCH / "probe-bench-urls.csv"
TIMEOUT_TECHNIQUES = {"tls_drop", "ip_blackhole"}

sys.path.insert(0, str(BENCH))
import make_probe_bench  # noqa: E402 - the generator: its delay settings are what the scenario must carry


def _rows() -> list[dict[str, str]]:
    with URLS.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_shipped_files_are_what_the_generator_writes(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "make_probe_bench.py"), "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    for name in (SCENARIO.name, URLS.name):
        assert (tmp_path / name).read_bytes() == (BENCH / name).read_bytes(), f"{name} is stale: rerun the generator"


def test_test_list_and_scenario_agree():
    s = load_scenario(str(SCENARIO))  # a path outside the package
    with URLS.open(encoding="utf-8") as fh:
        assert fh.readline().strip() == "url,category_code,category_description,date_added,source,notes"
    rows = _rows()
    urls = [r["url"] for r in rows]
    assert len(urls) == len(set(urls)) == 1000
    by_name = {name: t for t in s.targets for name in t.names}
    per_target = Counter(by_name[urlsplit(u).hostname].id for u in urls)
    assert 45 <= len(per_target) <= 55 and set(per_target.values()) <= {10, 20}
    blocked: dict[str, str] = {t: p.technique.value for p in s.policies for t in p.targets}
    assert {p.isps for p in s.policies} == {("isp1",)}
    n_blocked = sum(n for t, n in per_target.items() if t in blocked)
    n_timeouts = sum(n for t, n in per_target.items() if blocked.get(t) in TIMEOUT_TECHNIQUES)
    assert n_blocked == 100 and n_timeouts == 20
    assert {"dns_nxdomain", "ip_refuse", "tls_rst", "http_blockpage"} <= set(blocked.values())
    assert all(urlsplit(u).scheme == "http" for u in urls if blocked.get(by_name[urlsplit(u).hostname].id)
               == "http_blockpage")  # a blockpage injected into plain HTTP
    webs = [t for t in s.targets if t.kind == "web"]
    lo, hi = make_probe_bench.RESPONSE_DELAY
    assert all(lo <= t.server["delay"] <= hi for t in webs)
    assert s.dns_delay == make_probe_bench.DNS_DELAY and s.public_resolver
    assert [(i.id, len(i.clients)) for i in s.isps] == [("isp1", 1)]
    control = s.target("control")
    assert (control.kind, control.address, control.names) == ("control", "203.0.113.250", ("control.example",))
    assert {r["category_code"] for r in rows} <= {"NEWS", "POLR", "HUMR", "GOVT", "ANON", "COMM", "CULTR", "REL",
                                                  "LGBT", "SRCH", "HOST", "ENV", "PUBH"}


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab(str(SCENARIO), "pbench")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def probe(lab, labkit):
    return labkit.make_probe(lab)


def test_bench_lab_serves_with_delays_blocks_and_a_control_helper(lab, probe):
    s = lab.scenario
    site = s.target("meridian-times")
    name = site.names[1]
    assert probe("isp1", op="resolve", name=name) == {"addrs": [site.address]}
    dns = probe("isp1", op="dnsquery", name=site.names[0], server=s.authoritative)
    assert dns["addrs"] == [site.address] and dns["elapsed"] >= s.dns_delay
    page = probe("isp1", op="http", scheme="https", ip=site.address, host=name, path="/news/1.html")
    assert page["status"] == 200 and page["wait"] >= site.server["delay"]
    assert probe("isp1", op="resolve", name="www.opposition-daily.example")["error"] == "gaierror"  # dns_nxdomain
    rst = probe("isp1", op="tls", ip=s.target("swift-tunnel").address, sni="www.swift-tunnel.example")
    assert rst["error"] == "ConnectionResetError"
    check = probe("isp1", op="control", helper="https://control.example/", url=f"https://{name}/",
                  tcp_connect=[f"{site.address}:443"])
    assert check["status"] == 200 and check["answer"]["http_request"]["status_code"] == 200
    assert check["answer"]["http_request"]["title"].startswith("Meridian-times")

"""`netvigil probe run` inside the lab's `catalogue` scenario: one Web Connectivity measurement per technique.

The probe runs unchanged inside client namespaces (system resolver, real sockets), with netvigil's real control
helper on the lab's internet side. For each technique the netvigil verdict must name the technique's class, and
OONI's keys (`blocking`, `accessible`) must be what ooni/spec ts-017 prescribes. The non-censorship cases (bad
certificates, broken redirects, a site that is down, a bot challenge, a censored control helper) must never read as
"blocked". beta/c1 is the uncensored reference: there, every censored case is ok.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.lab.dpi import BLOCKPAGE_MARKER
from netvigil.lab.runtime import Lab, lab_exec_argv

pytestmark = pytest.mark.lab

CONTROL = "https://control.example/"
PUBLIC_RESOLVER = "203.0.113.54:53"

# url -> (netvigil outcome, netvigil method, OONI blocking, OONI accessible), as measured from alpha.
CENSORED = {
    "http://nxdomain.example/": ("blocked", "dns", "dns", False),
    "http://servfail.example/": ("blocked", "dns", "dns", False),
    "http://noanswer.example/": ("blocked", "dns", "dns", False),
    "http://bogon.example/": ("blocked", "dns", "dns", False),
    "http://localhost-hijack.example/": ("blocked", "dns", "dns", False),
    "http://dnsdrop.example/": ("blocked", "dns", "dns", False),
    "http://dns-blockpage.example/": ("blocked", "dns", "dns", False),
    # DNS forged to a transparent proxy that serves the real page over valid TLS: interception, not blocking.
    "https://proxy-hijack.example/": ("ok", None, False, True),
    "https://blackhole.example/": ("blocked", "tcp_ip", "tcp_ip", False),
    "https://refused.example/": ("blocked", "tcp_ip", "tcp_ip", False),
    "http://tcprst.example/": ("blocked", "http-failure", "http-failure", False),
    "https://tlsrst.example/": ("blocked", "tls", "http-failure", False),
    "https://tlsfin.example/": ("blocked", "tls", "http-failure", False),
    "https://tlsdrop.example/": ("blocked", "tls", "http-failure", False),
    "http://httprst.example/": ("blocked", "http-failure", "http-failure", False),
    "http://httpfin.example/": ("blocked", "http-failure", "http-failure", False),
    "http://httpdrop.example/": ("blocked", "http-failure", "http-failure", False),
    "http://http-blockpage.example/": ("blocked", "http-diff", "http-diff", False),
    "http://urlfilter.example/banned": ("blocked", "http-diff", "http-diff", False),
    # A redirect to a site whose IP is refused: the probe follows the redirect hop by hop and names the layer.
    "http://redirector.example/": ("blocked", "tcp_ip", "http-failure", False),
    "https://throttled.example/": ("throttled", "bandwidth", "http-failure", False),
    "http://policed.example/": ("throttled", "bandwidth", "http-failure", False),
}
# Not censorship: never blocked, from any ISP.
NOT_CENSORSHIP = {
    "https://challenge.example/": ("ok", None, False, True),
    "https://expired.example/": ("down", None, False, False),
    "https://wronghost.example/": ("down", None, False, False),
    "https://untrusted.example/": ("down", None, False, False),
    "http://brokenredirect.example/": ("down", None, False, False),
    "http://redirectloop.example/": ("down", None, False, False),
    "http://sitedown.example/": ("down", None, False, False),
    "http://doesnotexist.example/": ("down", None, False, False),
    "http://urlfilter.example/": ("ok", None, False, True),
}


def fingerprints(tmp: Path) -> Path:
    """OONI-format fingerprints for the lab's national blockpage (the lab stands in for a real country)."""
    d = tmp / "fingerprints"
    d.mkdir(exist_ok=True)
    head = "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n"
    (d / "fingerprints_http.csv").write_text(head + f"lab.xa_0,nat,,body,contains,{BLOCKPAGE_MARKER},5,XA,lab,,\n")
    (d / "fingerprints_dns.csv").write_text(head + "lab.xa_1,nat,,dns,full,198.51.100.80,5,XA,lab,,\n")
    return d


def probe_run(lab: Lab, where: str, urls: list[str], tmp: Path, *extra: str, timeout: float = 240) -> dict:
    """Run the real CLI in a lab client; return its --json summary (results keyed by URL)."""
    argv = [sys.executable, "-m", "netvigil", "probe", "run", "--json", "--udp-resolver", PUBLIC_RESOLVER,
            "--spool", str(tmp / "spool"), "--store", str(tmp / "store.duckdb"),
            "--fingerprints", str(fingerprints(tmp)), *extra]
    for url in urls:
        argv += ["--url", url]
    r = subprocess.run(lab_exec_argv(lab.state, where, argv), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"probe run failed ({r.returncode}) in {where}:\n{r.stderr[-3000:]}"
    doc = json.loads(r.stdout)
    doc["by_url"] = {row["url"]: row for row in doc["results"]}
    return doc


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab("catalogue", "pcat")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def alpha(lab, tmp_path_factory) -> dict:
    return probe_run(lab, "alpha", [*CENSORED, *NOT_CENSORSHIP], tmp_path_factory.mktemp("alpha"),
                     "--control", CONTROL)


@pytest.fixture(scope="module")
def beta(lab, tmp_path_factory) -> dict:
    return probe_run(lab, "beta/c1", [*CENSORED, *NOT_CENSORSHIP], tmp_path_factory.mktemp("beta"),
                     "--control", CONTROL)


def test_run_is_complete_and_located(alpha):
    assert alpha["measured"] == len(CENSORED) + len(NOT_CENSORSHIP)
    assert alpha["probe_errors"] == 0
    assert alpha["location"] == {"probe_cc": "XA", "probe_asn": "AS64601", "source": "lab"}


@pytest.mark.parametrize("url", sorted(CENSORED))
def test_each_technique_is_named(alpha, url):
    outcome, method, ooni_blocking, ooni_accessible = CENSORED[url]
    got = alpha["by_url"][url]
    assert (got["outcome"], got["method"]) == (outcome, method), got
    assert (got["ooni_blocking"], got["ooni_accessible"]) == (ooni_blocking, ooni_accessible), got


@pytest.mark.parametrize("url", sorted(NOT_CENSORSHIP))
def test_non_censorship_is_never_blocked(alpha, beta, url):
    outcome, method, ooni_blocking, ooni_accessible = NOT_CENSORSHIP[url]
    for run in (alpha, beta):
        got = run["by_url"][url]
        assert got["outcome"] != "blocked", got
        assert (got["outcome"], got["method"]) == (outcome, method), got
        assert (got["ooni_blocking"], got["ooni_accessible"]) == (ooni_blocking, ooni_accessible), got


@pytest.mark.parametrize("url", sorted(CENSORED))
def test_uncensored_reference_sees_every_site(beta, url):
    got = beta["by_url"][url]
    assert got["outcome"] == "ok", got
    assert (got["ooni_blocking"], got["ooni_accessible"]) == (False, True), got


def test_censored_control_is_inconclusive_not_blocked(lab, tmp_path):
    urls = ["https://tlsrst.example/", "https://challenge.example/"]
    doc = probe_run(lab, "alpha", urls, tmp_path, "--control", "https://control-censored.example/", "--budget", "20")
    for row in doc["results"]:
        assert row["outcome"] != "blocked", row
        assert row["ooni_blocking"] is None and row["ooni_accessible"] is None, row


def test_results_are_in_the_local_store_at_once(lab, alpha, tmp_path_factory):
    store = next(p for p in tmp_path_factory.getbasetemp().glob("alpha*/store.duckdb"))
    r = subprocess.run([sys.executable, "-m", "netvigil", "query", "--store", str(store), "--by", "outcome",
                        "--format", "json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    counts = {row["outcome"]: row["count"] for row in json.loads(r.stdout)}
    assert sum(counts.values()) == alpha["measured"]
    assert counts["blocked"] == sum(1 for v in CENSORED.values() if v[0] == "blocked")
    assert counts["throttled"] == 2

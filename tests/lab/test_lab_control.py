"""`kind = "control"` targets: netvigil's real control helper runs inside the lab and measures from its
uncensored side. Plain clients ask it over HTTPS (443, lab-CA certificate) and HTTP (80), as a probe does.

The catalogue's `control-censored` helper is blackholed on ISP alpha: from there it times out, which is what a
probe's `control_failure` must then report; from beta it answers, so the timeout is the censor's doing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.lab.dpi import BLOCKPAGE_MARKER
from netvigil.lab.runtime import Lab

pytestmark = pytest.mark.lab

NEWS_IP, NEWS = "203.0.113.30", "urlfilter.example"  # a catalogue news site, filtered on alpha for /banned only
BLOCKPAGE_IP, BLOCKPAGE_SITE = "203.0.113.29", "http-blockpage.example"  # blockpage on alpha for every request


def _helper_processes(lab_dir: Path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "netvigil.control" in cmd and str(lab_dir) in cmd:
            found.append(f"{pid}: {cmd[:160]}")
    return found


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab("catalogue", "ctl")
    try:
        yield lab
    finally:
        lab.down()
    assert not _helper_processes(lab.dir), "a control helper outlived `down`"


@pytest.fixture(scope="module")
def probe(lab, labkit):
    return labkit.make_probe(lab)


def _title(html: str) -> str:
    m = re.search(r"<title>(.*?)</title>", html, re.DOTALL)
    assert m, html[:200]
    return m.group(1)


def test_four_helpers_started_with_lab_ca_certificates(lab):
    logs = lab.dir / "logs"
    for target in ("control", "control-censored"):
        for port in (443, 80):
            assert (logs / f"helper-{target}-{port}.out").read_text().strip() == "READY"
    certs = sorted((lab.dir / "control" / "control").glob("*.pem"))
    assert certs, "no leaf certificate for the control helper"


def test_helper_measures_a_site_over_https(lab, probe):
    direct = probe("beta/c1", op="http", scheme="https", ip=NEWS_IP, host=NEWS)
    assert direct["status"] == 200
    got = probe("beta/c1", op="control", helper="https://control.example/", url=f"https://{NEWS}/",
                tcp_connect=[f"{NEWS_IP}:443"])
    assert got["status"] == 200, got
    answer = got["answer"]
    assert answer["http_request"]["status_code"] == 200
    assert answer["http_request"]["title"] == _title(direct["body"])
    assert answer["http_request"].get("failure") is None and answer["http_request"]["body_length"] > 20_000
    assert answer["dns"].get("failure") is None and answer["dns"]["addrs"] == [NEWS_IP]
    assert answer["tcp_connect"][f"{NEWS_IP}:443"]["status"] is True


def test_helper_on_port_80_sees_the_real_page_where_alpha_gets_a_blockpage(lab, probe):
    """The helper stands outside the censor: for a site alpha only sees as a blockpage it fetches the site."""
    censored = probe("alpha", op="http", ip=BLOCKPAGE_IP, host=BLOCKPAGE_SITE)
    assert censored["status"] == 200 and BLOCKPAGE_MARKER in censored["body"]
    got = probe("alpha", op="control", helper="http://control.example/", url=f"http://{BLOCKPAGE_SITE}/",
                tcp_connect=[f"{BLOCKPAGE_IP}:80"])
    assert got["status"] == 200, got
    http_request = got["answer"]["http_request"]
    assert http_request["status_code"] == 200
    assert http_request["title"] != _title(censored["body"]) and "Latest news" in http_request["title"]


def test_censored_helper_times_out_on_alpha_only(lab, probe):
    request = {"op": "control", "helper": "https://control-censored.example/", "url": f"https://{NEWS}/",
               "tcp_connect": [f"{NEWS_IP}:443"]}
    blocked = probe("alpha", **request, timeout=2.0)
    assert blocked["error"] == "TimeoutError", blocked
    reference = probe("beta/c1", **request)
    assert reference["status"] == 200 and reference["answer"]["http_request"]["status_code"] == 200
    assert any(r.policy == "control-censored" and r.isp == "alpha" and r.state == "on" for r in lab.truth())

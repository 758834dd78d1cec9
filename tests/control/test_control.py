"""The control helper as a real process against the lab's web servers on loopback (ports 80/443, root)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import socket
import subprocess
import threading
import time

import msgspec
import pytest
from control_harness import (
    CLOSED,
    HANGING,
    LAB_ASN,
    NORMAL,
    REDIRECT_OK,
    REDIRECT_OUT,
    SILENT,
    UNTRUSTED,
    WRONG_HOST,
    Helper,
    Lab,
    Sentinel,
    call,
    fetch_page,
    free_port,
    helper_argv,
    start_helper,
    stop,
    subprocess_env,
)

from netvigil.control.client import query_control
from netvigil.control.measure import measure
from netvigil.control.policy import (
    ADDRESS_NOT_ALLOWED,
    Endpoint,
    Policy,
    RateLimiter,
    RequestRefused,
    check_request,
    is_bogon,
    parse_endpoint,
)
from netvigil.model.archival import WebConnectivityControl
from netvigil.model.control import ControlRequest
from netvigil.probe.netx import NetxError, TLSConfig

UA = {"User-Agent": ["Mozilla/5.0 netvigil-test"], "Accept": ["text/html"], "Cookie": ["secret=1"]}
TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def control(helper: Helper, url: str, endpoints: list[str] | None = None, **kw: object) -> WebConnectivityControl:
    reply = call(helper, body={"http_request": url, "http_request_headers": UA, "tcp_connect": endpoints or []},
                 **kw)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    return msgspec.json.decode(reply.body, type=WebConnectivityControl)


# -- a working site -------------------------------------------------------------------------------------------

def test_working_https_site_reports_the_real_page(helper: Helper, lab: Lab) -> None:
    ip = lab.ip(NORMAL)
    status, page = fetch_page(ip, 443, tls=True, ca=lab.ca)
    assert status == 200 and len(page) > 1000
    c = control(helper, f"https://{ip}/", [f"{ip}:443"])
    assert c.dns is not None and c.dns.failure is None and c.dns.addrs == [ip]  # an IP literal is its own answer
    assert list(c.tcp_connect) == [f"{ip}:443"]
    assert (c.tcp_connect[f"{ip}:443"].status, c.tcp_connect[f"{ip}:443"].failure) == (True, None)
    tls = c.tls_handshake[f"{ip}:443"]
    assert (tls.status, tls.failure, tls.server_name) == (True, None, ip)
    http = c.http_request
    assert http.failure is None and http.status_code == 200
    assert http.body_length == len(page)
    assert http.title == TITLE.search(page).group(1).decode().strip()
    assert http.headers["Content-Type"].startswith("text/html")
    # requested by the probe (1) + resolved by the helper (2) + bogon (4) + valid for the domain (8)
    assert c.ip_info[ip].flags == 15 and c.ip_info[ip].asn == LAB_ASN + 1  # longest prefix of the lab table


def test_the_page_comes_from_the_helpers_own_addresses_not_the_probes(helper: Helper, lab: Lab) -> None:
    """A probe's endpoints may be forged (a DNS-injected blockpage server): they are connected to and reported,
    but the page is fetched only over the helper's own addresses."""
    ip, other = lab.ip(NORMAL), lab.ip(REDIRECT_OUT)  # `other` answers 302 to a host that never answers
    _, page = fetch_page(ip, 80, tls=False)
    for _ in range(5):  # whichever endpoint connects first, the page must be the real one
        c = control(helper, f"http://{ip}/", [f"{other}:80", f"{ip}:80"])
        assert c.tcp_connect[f"{other}:80"].status is True
        assert (c.http_request.status_code, c.http_request.body_length) == (200, len(page))


def test_plain_http_site_and_redirect_followed(helper: Helper, lab: Lab) -> None:
    ip = lab.ip(NORMAL)
    _, http_page = fetch_page(ip, 80, tls=False)
    c = control(helper, f"http://{ip}/")
    assert c.tcp_connect[f"{ip}:80"].status is True
    assert c.tls_handshake == {}  # no port-443 endpoint was asked for
    assert (c.http_request.status_code, c.http_request.body_length) == (200, len(http_page))
    assert c.ip_info[ip].flags == 2 | 4  # resolved by the helper only, a bogon, no TLS proof

    hop = lab.ip(REDIRECT_OK)  # 302 to https://<NORMAL>/
    _, https_page = fetch_page(ip, 443, tls=True, ca=lab.ca)
    c = control(helper, f"http://{hop}/", [f"{hop}:80"])
    assert c.http_request.failure is None and c.http_request.status_code == 200
    assert c.http_request.body_length == len(https_page)
    assert c.ip_info[hop].flags == 1 | 2 | 4 and c.ip_info[hop].asn == LAB_ASN


@pytest.mark.parametrize(("host", "failure"), [(WRONG_HOST, "ssl_invalid_hostname"),
                                               (UNTRUSTED, "ssl_unknown_authority")])
def test_certificate_failures_use_ooni_strings(helper: Helper, lab: Lab, host: int, failure: str) -> None:
    ip = lab.ip(host)
    c = control(helper, f"https://{ip}/", [f"{ip}:443"])
    assert c.tcp_connect[f"{ip}:443"].status is True
    tls = c.tls_handshake[f"{ip}:443"]
    assert (tls.status, tls.failure, tls.server_name) == (False, failure, ip)
    assert c.http_request.failure == failure
    assert (c.http_request.status_code, c.http_request.body_length) == (-1, -1)
    assert not c.ip_info[ip].flags & 8


def test_closed_port_is_connection_refused(helper: Helper, lab: Lab) -> None:
    ip = lab.ip(CLOSED)
    c = control(helper, f"https://{ip}/", [f"{ip}:443"])
    assert (c.tcp_connect[f"{ip}:443"].status, c.tcp_connect[f"{ip}:443"].failure) == (False, "connection_refused")
    assert f"{ip}:443" not in c.tls_handshake
    assert c.http_request.failure == "connection_refused" and c.http_request.status_code == -1


def test_a_name_is_resolved_with_getaddrinfo(helper: Helper) -> None:
    c = control(helper, "http://localhost/")
    assert c.dns.failure is None and "127.0.0.1" in c.dns.addrs
    assert "127.0.0.1:80" in c.tcp_connect
    assert c.ip_info["127.0.0.1"].flags & 2
    assert c.ip_info["127.0.0.1"].asn == 0  # not in the lab table
    if "::1" in c.dns.addrs:  # outside --allow-net 127.0.0.0/8
        assert c.tcp_connect["[::1]:80"].failure == ADDRESS_NOT_ALLOWED


def test_measure_in_process(lab: Lab) -> None:
    """The library entry point the server wraps: same checks, same answer, within the budget."""
    ip = lab.ip(NORMAL)
    policy = Policy.from_cidrs([f"{lab.net}.0/24"])
    req = ControlRequest(http_request=f"https://{ip}/", tcp_connect=[f"{ip}:443", f"{lab.ip(CLOSED)}:443"])
    started = time.monotonic()
    c = asyncio.run(measure(req, policy, tls=TLSConfig(ca_file=str(lab.ca)), timeout=5))
    assert time.monotonic() - started < 5
    assert list(c.tcp_connect) == [f"{ip}:443", f"{lab.ip(CLOSED)}:443"]  # request order
    assert c.tcp_connect[f"{lab.ip(CLOSED)}:443"].failure == "connection_refused"
    assert c.http_request.status_code == 200 and c.ip_info[ip].flags == 15
    with pytest.raises(RequestRefused):
        asyncio.run(measure(ControlRequest(http_request="ftp://192.0.2.1/"), policy, tls=TLSConfig()))


# -- refusals -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {"http_request": "http://192.0.2.1/", "tcp_connect": ["192.0.2.1:22"]},
    {"http_request": "http://192.0.2.1:22/"},
    {"http_request": "file:///etc/passwd"},
    {"http_request": "gopher://192.0.2.1/"},
    {"http_request": "http://192.0.2.1/", "tcp_connect": [f"192.0.2.{n}:80" for n in range(17)]},
    {"http_request": "http://192.0.2.1/", "tcp_connect": ["192.0.2.1"]},
    {"http_request": 5},
    {"tcp_connect": []},
])
def test_bad_requests_get_400_with_one_line(helper: Helper, body: dict) -> None:
    reply = call(helper, body=body)
    assert reply.status == 400
    message = reply.json()["error"]
    assert message and "\n" not in message


def test_bad_json_and_oversized_bodies_get_400(helper: Helper) -> None:
    for raw in (b"{not json", b"", b"[]"):
        reply = call(helper, body=raw)
        assert reply.status == 400 and "\n" not in reply.json()["error"]
    big = msgspec.json.encode({"http_request": "http://192.0.2.1/", "pad": "x" * (65 * 1024)})
    reply = call(helper, body=big)
    assert reply.status == 400 and "larger than" in reply.json()["error"]


def test_health_and_alias(helper: Helper, lab: Lab) -> None:
    assert call(helper, "GET", "/health").json() == {"status": "ok"}
    ip = lab.ip(CLOSED)
    reply = call(helper, path="/web-connectivity", body={"http_request": f"http://{ip}/"})
    assert reply.status == 200 and reply.json()["tcp_connect"][f"{ip}:80"]["failure"] == "connection_refused"


def test_private_addresses_are_never_contacted(strict_helper: Helper, lab: Lab, silent: Sentinel) -> None:
    ip = lab.ip(SILENT)
    c = control(strict_helper, f"http://{ip}/", [f"{ip}:80"])
    assert (c.tcp_connect[f"{ip}:80"].status, c.tcp_connect[f"{ip}:80"].failure) == (False, ADDRESS_NOT_ALLOWED)
    assert c.http_request.failure == ADDRESS_NOT_ALLOWED
    # an allowed site that redirects to the forbidden address: the redirect is not followed either
    hop = lab.ip(REDIRECT_OUT)
    c = control(strict_helper, f"http://{hop}/", [f"{hop}:80"])
    assert c.tcp_connect[f"{hop}:80"].status is True
    assert c.http_request.failure == ADDRESS_NOT_ALLOWED
    assert not silent.connected()


def test_saturated_helper_answers_503(strict_helper: Helper, lab: Lab, hanging: Sentinel) -> None:
    """One slot: a measurement of a server that never answers holds it, the next request gets 503."""
    ip = lab.ip(HANGING)
    results: list[WebConnectivityControl] = []
    slow = threading.Thread(target=lambda: results.append(control(strict_helper, f"http://{ip}/")))
    slow.start()
    time.sleep(0.5)
    reply = call(strict_helper, body={"http_request": f"http://{ip}/"})
    assert reply.status == 503 and reply.headers["retry-after"] == "1"
    slow.join(15)
    assert results and results[0].http_request.failure == "generic_timeout_error"
    assert results[0].tcp_connect[f"{ip}:80"].status is True  # the kernel accepted; nobody answered


def test_rate_limit_then_sigterm_exits_0(lab: Lab) -> None:
    h = start_helper("127.0.0.1", "--rate", "8")  # burst 2
    try:
        assert h.stdout == "READY\n"
        assert [call(h, body=b"x").status for _ in range(2)] == [400, 400]
        reply = call(h, body=b"x")
        assert reply.status == 429 and int(reply.headers["retry-after"]) >= 1
    finally:
        assert stop(h.proc) == 0
    assert h.proc.stderr.read() == b""  # nothing logged, in particular no client address


# -- the probe's client -----------------------------------------------------------------------------------------

def test_query_control_round_trip_over_https(https_helper: Helper, lab: Lab) -> None:
    ip = lab.ip(NORMAL)
    _, page = fetch_page(ip, 443, tls=True, ca=lab.ca)
    req = ControlRequest(http_request=f"https://{ip}/", http_request_headers=UA, tcp_connect=[f"{ip}:443"])
    c = asyncio.run(query_control(https_helper.url, req, tls=TLSConfig(ca_file=str(lab.ca)), timeout=20))
    assert c.http_request.status_code == 200 and c.http_request.body_length == len(page)
    assert c.tls_handshake[f"{ip}:443"].status is True

    bad = ControlRequest(http_request="file:///etc/passwd")
    with pytest.raises(NetxError) as err:
        asyncio.run(query_control(https_helper.url, bad, tls=TLSConfig(ca_file=str(lab.ca))))
    assert err.value.failure == "unknown_failure: control helper answered HTTP 400"

    with pytest.raises(NetxError) as err:  # the helper's certificate is not in the system store
        asyncio.run(query_control(https_helper.url, req, tls=TLSConfig()))
    assert err.value.failure == "ssl_unknown_authority"


def test_query_control_when_nothing_listens() -> None:
    port = free_port()
    req = ControlRequest(http_request="https://192.0.2.1/")
    with pytest.raises(NetxError) as err:
        asyncio.run(query_control(f"http://127.0.0.1:{port}/", req, tls=TLSConfig(), timeout=5))
    assert err.value.failure == "connection_refused"


# -- the command ----------------------------------------------------------------------------------------------

def test_bind_failure_is_one_line_and_exit_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run(helper_argv("127.0.0.1", port), capture_output=True, env=subprocess_env(), timeout=30)
    assert proc.returncode == 1
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0] and b"READY" not in proc.stdout


@pytest.mark.parametrize("flags", [["--allow-net", "10.0.0.0/33"], ["--tls-cert", "/nonexistent.pem"],
                                   ["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"],
                                   ["--rate", "0"], ["--lab-ip-table", "/nonexistent.json"]])
def test_bad_flags_are_one_line_and_exit_2(flags: list[str]) -> None:
    proc = subprocess.run(helper_argv("127.0.0.1", free_port(), *flags), capture_output=True,
                          env=subprocess_env(), timeout=30)
    assert proc.returncode == 2
    assert len(proc.stderr.decode().strip().splitlines()) == 1


# -- the rules, without the network ---------------------------------------------------------------------------

def test_policy_rules() -> None:
    policy = Policy.from_cidrs(["203.0.113.0/24"])
    assert policy.address_allowed("203.0.113.7") and not policy.address_allowed("198.51.100.7")
    for ip in ("10.1.2.3", "127.0.0.1", "169.254.1.1", "100.64.0.1", "::1", "fe80::1", "::ffff:10.0.0.1",
               "224.0.0.1", "0.0.0.0", "240.0.0.1"):
        assert is_bogon(ip) and not policy.address_allowed(ip), ip
    assert not is_bogon("8.8.8.8") and policy.address_allowed("2001:4860:4860::8888")
    assert parse_endpoint("[2001:DB8::1]:443") == Endpoint("2001:db8::1", 443)
    assert parse_endpoint("[2001:db8::1]:443").address == "[2001:db8::1]:443"
    for bad in ("2001:db8::1:443", "example.org:443", "1.2.3.4:", "[1.2.3.4]:80"):
        with pytest.raises(RequestRefused):
            parse_endpoint(bad)
    target = check_request(ControlRequest(
        http_request="HTTPS://Example.ORG/path", tcp_connect=["192.0.2.1:443", "192.0.2.1:443"],
        http_request_headers={"user-agent": ["UA/1", "UA/2"], "Cookie": ["a=b"], "Accept": ["bad\r\nX: y"]}),
        policy)
    assert (target.scheme, target.host, target.port, target.host_is_ip) == ("https", "example.org", 443, False)
    assert target.endpoints == (Endpoint("192.0.2.1", 443),)
    assert target.headers == (("User-Agent", "UA/1"),)
    with pytest.raises(RequestRefused):
        check_request(ControlRequest(http_request="http://user:pw@example.org/"), policy)


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate_per_minute=60, burst=2)
    assert [limiter.acquire("a", now=0.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("a", now=0.0) == pytest.approx(1.0)
    assert limiter.acquire("b", now=0.0) == 0.0  # per client
    assert limiter.acquire("a", now=1.0) == 0.0  # one token per second at 60/min
    limiter.max_clients = 2
    assert limiter.acquire("c", now=100.0) == 0.0 and len(limiter) <= 2  # idle buckets were dropped


# -- shared measurements ----------------------------------------------------------------------------------------

class _CountingSite:
    """A plain HTTP site on lab host `ip`:80 that answers each GET after `delay` seconds and counts them."""

    def __init__(self, ip: str, delay: float) -> None:
        import http.server

        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                with site.lock:
                    site.paths.append(self.path)
                time.sleep(delay)
                body = b"<html><title>counted</title>shared</html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.lock = threading.Lock()
        self.paths: list[str] = []
        self.server = http.server.ThreadingHTTPServer((ip, 80), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


COUNTED = 62  # lab host of the counting site


def test_identical_requests_in_flight_share_one_measurement(lab: Lab) -> None:
    """Eight probes asking about the same URL at once cost the helper one fetch; another URL gets its own; with
    --share-seconds an answer also serves identical requests that come soon after it."""
    ip = lab.ip(COUNTED)
    site = _CountingSite(ip, delay=0.6)
    h = start_helper("127.0.0.1", "--allow-net", "127.0.0.0/8", "--share-seconds", "1.5")
    try:
        url = f"http://{ip}/page"
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(lambda u: control(h, u, [f"{ip}:80"]), [url] * 8 + [f"http://{ip}/other"]))
        assert sorted(site.paths) == ["/other", "/page"], site.paths
        assert {a.http_request.status_code for a in answers} == {200}
        assert answers[0].http_request.title == "counted" and answers[0] == answers[7]
        again = control(h, url, [f"{ip}:80"])                 # within --share-seconds: the same answer
        assert again == answers[0] and len(site.paths) == 2
        time.sleep(2.0)
        control(h, url, [f"{ip}:80"])                        # later: measured afresh
        assert sorted(site.paths) == ["/other", "/page", "/page"]
        other_endpoints = control(h, url, [f"{ip}:80", f"{lab.ip(NORMAL)}:80"])   # a different request
        assert len(site.paths) == 4 and other_endpoints.tcp_connect[f"{lab.ip(NORMAL)}:80"].status is True
    finally:
        assert stop(h.proc) == 0
        site.close()

"""Emulated latency: `delay` holds every HTTP response head and every DNS answer, and nothing else.

The delayed web host (.25) and authoritative server (.55) wait DELAY seconds; their undelayed neighbours (.22,
.53) show the wait comes from the delay and not from the machine. The TCP and TLS handshakes are never held.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import dns.message
import dns.query
import pytest
from servers_harness import DELAY, http_request

from netvigil.lab.servers.spec import SpecError, parse_spec

HTTP, HTTPS, DNS = 18080, 18443, 15353


def _timed(fn, *args, **kw):
    t0 = time.monotonic()
    result = fn(*args, **kw)
    return result, time.monotonic() - t0


def test_plain_http_response_waits_for_the_delay(lab):
    reply, elapsed = _timed(http_request, lab.ip(25), HTTP, "delayed.example")
    assert reply.status == 200 and b"Delayed" in reply.body
    assert elapsed >= DELAY
    plain, fast = _timed(http_request, lab.ip(22), HTTP, "www.meydan.tv")
    assert plain.status == 200 and fast < DELAY


def test_https_delays_each_response_but_not_the_handshakes(lab):
    ctx = ssl.create_default_context(cafile=str(lab.ca_pem))
    t0 = time.monotonic()
    raw = socket.create_connection((lab.ip(25), HTTPS), timeout=5)
    sock = ctx.wrap_socket(raw, server_hostname="delayed.example")
    handshakes = time.monotonic() - t0
    conn = http.client.HTTPSConnection("delayed.example", HTTPS, timeout=5)
    conn.sock = sock
    try:
        for path in ("/", "/news/1.html"):  # two requests on one keep-alive connection: each one waits
            reply, elapsed = _timed(_get, conn, path)
            assert reply[0] == 200 and reply[1] > 20_000
            assert elapsed >= DELAY
    finally:
        conn.close()
    assert handshakes < DELAY  # TCP and TLS handshakes are not delayed (documented limit)


def _get(conn: http.client.HTTPSConnection, path: str) -> tuple[int, int]:
    conn.request("GET", path, headers={"Host": "delayed.example"})
    r = conn.getresponse()
    return r.status, len(r.read())


def test_authoritative_dns_answers_after_the_delay(lab):
    query = dns.message.make_query("delayed.example", "A")
    answer, elapsed = _timed(dns.query.udp, query, lab.ip(55), port=DNS, timeout=3)
    assert [r.address for rrset in answer.answer for r in rrset] == [lab.ip(25)]
    assert elapsed >= DELAY
    tcp, tcp_elapsed = _timed(dns.query.tcp, query, lab.ip(55), port=DNS, timeout=3)
    assert tcp.answer and tcp_elapsed >= DELAY
    _, fast = _timed(dns.query.udp, query, lab.ip(53), port=DNS, timeout=3)
    assert fast < DELAY


@pytest.mark.parametrize("section,entry", [
    ("web", {"bind": "127.0.0.1", "names": ["a.example"], "site": "news", "delay": -0.1}),
    ("web", {"bind": "127.0.0.1", "names": ["a.example"], "site": "news", "delay": 60}),
    ("dns", {"bind": "127.0.0.1", "role": "authoritative", "delay": 6.0}),
])
def test_a_delay_outside_0_to_5_seconds_is_refused(section, entry):
    with pytest.raises(SpecError, match=rf"{section}\[0\]\.delay"):
        parse_spec(json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/y", section: [entry]}))

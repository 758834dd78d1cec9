"""Telegram (ts-020) -> observations.

Targets: ``datacenters`` (the access-point IPs the desktop client hardcodes,
reached with TCP and an HTTP POST on ports 80 and 443) and ``web``
(web.telegram.org). Old probes (2019) stored requests without a URL, so the
``Host`` header names the DC or web.telegram.org.

A DC is an address the test never looked up: one of the well-known DC IPs, the
IP-literal host of a request (``POST http://IP:443/``), or — when the test did
resolve web.telegram.org — any connect to an address outside those answers. So
a probe configured with other DC addresses (a lab, a new DC list) is judged the
same way.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from netvigil.analysis.observations._messaging import (
    add_dns,
    add_http,
    add_tls,
    host_of_request,
    ip_groups,
    network_arrays,
)
from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "DATACENTER_IPS", "TARGETS"]

TARGETS = ("datacenters", "web")

# ts-020's list, plus 95.161.76.100 which probe-cli tests since 2022.
DATACENTER_IPS = frozenset({
    "149.154.175.50", "149.154.167.51", "149.154.175.100", "149.154.167.91", "149.154.171.5",
    "95.161.76.100",
})


def _target_of_host(host: str | None) -> str | None:
    if not host:
        return None
    if host in DATACENTER_IPS:
        return "datacenters"
    return "web" if host.lower().rstrip(".").endswith("telegram.org") else None


def _is_ip(text: str | None) -> bool:
    if not text:
        return False
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _request_ips(requests: list) -> set[str]:
    """IP-literal hosts of the requests (DC POSTs), from the URL or, for old probes, the Host header."""
    out: set[str] = set()
    for tx in requests:
        url = tx.request.url if tx.request is not None else None
        host = urlsplit(url).hostname if url else host_of_request(tx)[1]
        if _is_ip(host):
            out.add(str(host).strip("[]"))
    return out


def _web_ips(queries: list) -> set[str]:
    return {ip for ip, groups in ip_groups(queries, _target_of_host).items() if "web" in groups}


def make_observations(m: Measurement) -> list[Observation]:
    arrays = network_arrays(m.test_keys)
    b = ObservationBuilder(m.uid)
    add_dns(b, arrays.queries, _target_of_host, "web")
    dcs = DATACENTER_IPS | _request_ips(arrays.requests)
    web_ips = _web_ips(arrays.queries) - dcs
    for c in arrays.tcp_connect:
        # The test only ever connects to the DCs and to web.telegram.org.
        if c.ip in dcs or (web_ips and c.ip not in web_ips):
            group = "datacenters"
        else:
            group = "web"
        b.tcp([c], target=group)
    add_tls(b, arrays.tls_handshakes, _target_of_host, "web")

    def target_of_http(host: str | None, ip: str | None) -> str:
        if _is_ip(host) or host in DATACENTER_IPS or (ip in dcs and ip not in web_ips):
            return "datacenters"
        return "web"

    add_http(b, arrays.requests, target_of_http, "web", arrays.network_events)
    return b.rows

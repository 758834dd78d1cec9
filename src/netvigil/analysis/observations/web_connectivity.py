"""Web Connectivity (ts-017) -> observations, for the probe and the control.

Probe rows come from the df-00x arrays; control rows from the test helper's
answer (one DNS row, a TCP row per endpoint, a TLS row per endpoint, one HTTP
row). ``ip_asn`` is filled from the answers' ASNs and the helper's ``ip_info``.
"""

from __future__ import annotations

from netvigil.analysis.observations.common import ObservationBuilder, domain_of, is_bogon, split_endpoint
from netvigil.model.archival import WebConnectivityControl, WebConnectivityTestKeys
from netvigil.model.failure import canonical_failure
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "control_observations"]


def make_observations(m: Measurement) -> list[Observation]:
    tk = m.test_keys
    b = ObservationBuilder(m.uid)
    if not isinstance(tk, WebConnectivityTestKeys):
        return b.rows
    b.dns(tk.queries)
    dns_rows = len(b.rows)
    b.tcp(tk.tcp_connect)
    b.tls(tk.tls_handshakes)
    b.http(tk.requests, events=tk.network_events)
    if tk.control is not None:
        control_observations(b, tk.control, domain_of(m.input))
    _fill_asns(b.rows, b.rows[:dns_rows], tk.control)
    return b.rows


def control_observations(b: ObservationBuilder, control: WebConnectivityControl, hostname: str | None) -> None:
    """The helper's view, as rows with origin='control' (built positionally, like the probe's)."""
    rows, uid, prefix = b.rows, b.uid, b.uid + "/"
    if control.dns is not None:
        addrs = [a for a in control.dns.addrs or () if a]
        rows.append(Observation(
            prefix + str(len(rows)), uid, "control", "dns",
            None, hostname, None, None, None,                           # target, hostname, ip, port, ip_asn
            None, None, None, canonical_failure(control.dns.failure), None,  # transaction_id, t0, t, failure, tags
            "control", None, None,                                      # dns_engine, dns_resolver, dns_query_type
            [f"A {a}" for a in addrs] or None, addrs or None, None,     # dns_answers, dns_answer_ips, dns_answer_asns
            any(map(is_bogon, addrs)) if addrs else None,               # dns_bogon
        ))
    for endpoint, res in (control.tcp_connect or {}).items():
        ip, port = split_endpoint(endpoint)
        failure = canonical_failure(res.failure)
        if failure is None and res.status is False:
            failure = "unknown_failure"
        rows.append(Observation(
            prefix + str(len(rows)), uid, "control", "tcp",
            None, hostname, ip, port, None,                             # target, hostname, ip, port, ip_asn
            None, None, None, failure,                                  # transaction_id, t0, t, failure
        ))
    for endpoint, res in (control.tls_handshake or {}).items():
        ip, port = split_endpoint(endpoint)
        failure = canonical_failure(res.failure)
        if failure is None and res.status is False:
            failure = "unknown_failure"
        rows.append(Observation(
            prefix + str(len(rows)), uid, "control", "tls",
            None, res.server_name or hostname, ip, port, None,          # target, hostname, ip, port, ip_asn
            None, None, None, failure, None,                            # transaction_id, t0, t, failure, tags
            None, None, None, None, None, None, None,                   # dns_*
            res.server_name,                                            # tls_server_name
        ))
    http = control.http_request
    if http is not None and (http.status_code is not None or http.failure is not None):
        status = http.status_code if http.status_code and http.status_code > 0 else None
        headers = http.headers or {}
        server = None
        for name, value in headers.items():
            if name.lower() == "server":
                server = str(value)
                break
        rows.append(Observation(
            prefix + str(len(rows)), uid, "control", "http",
            None, hostname, None, None, None,                           # target, hostname, ip, port, ip_asn
            None, None, None, canonical_failure(http.failure), None,    # transaction_id, t0, t, failure, tags
            None, None, None, None, None, None, None,                   # dns_*
            None, None, None, None, None, None,                         # tls_*
            None, None, status,                                         # http_url, http_method, http_status
            http.body_length if http.body_length is not None and http.body_length >= 0 else None,
            None, http.title or None,                                   # http_body_truncated, http_title
            list(headers) or None, None, server,                        # http_header_names, http_location, http_server
        ))


def _fill_asns(rows: list[Observation], probe_dns: list[Observation], control: WebConnectivityControl | None) -> None:
    """``ip_asn`` from the probe's DNS answers (the only rows with ASNs), else from the helper's ``ip_info``."""
    asn_of: dict[str, int] = {}
    for row in probe_dns:
        if row.dns_answer_ips and row.dns_answer_asns and len(row.dns_answer_ips) == len(row.dns_answer_asns):
            asn_of.update(zip(row.dns_answer_ips, row.dns_answer_asns))
    if control is not None and control.ip_info:
        for ip, info in control.ip_info.items():
            if info.asn:
                asn_of.setdefault(ip, info.asn)
    if not asn_of:
        return
    for row in rows:
        if row.ip is not None and row.ip_asn is None:
            row.ip_asn = asn_of.get(row.ip)

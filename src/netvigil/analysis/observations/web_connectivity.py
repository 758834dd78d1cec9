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
    b.tcp(tk.tcp_connect)
    b.tls(tk.tls_handshakes)
    b.http(tk.requests, events=tk.network_events)
    if tk.control is not None:
        control_observations(b, tk.control, domain_of(m.input))
    _fill_asns(b.rows, tk.control)
    return b.rows


def control_observations(b: ObservationBuilder, control: WebConnectivityControl, hostname: str | None) -> None:
    """The helper's view, as rows with origin='control'."""
    if control.dns is not None:
        addrs = [a for a in control.dns.addrs or () if a]
        b.add(
            origin="control", kind="dns", hostname=hostname, failure=canonical_failure(control.dns.failure),
            dns_engine="control", dns_answers=[f"A {a}" for a in addrs] or None,
            dns_answer_ips=addrs or None, dns_bogon=any(is_bogon(a) for a in addrs) if addrs else None,
        )
    for endpoint, res in (control.tcp_connect or {}).items():
        ip, port = split_endpoint(endpoint)
        failure = canonical_failure(res.failure)
        if failure is None and res.status is False:
            failure = "unknown_failure"
        b.add(origin="control", kind="tcp", hostname=hostname, ip=ip, port=port, failure=failure)
    for endpoint, res in (control.tls_handshake or {}).items():
        ip, port = split_endpoint(endpoint)
        failure = canonical_failure(res.failure)
        if failure is None and res.status is False:
            failure = "unknown_failure"
        b.add(
            origin="control", kind="tls", hostname=res.server_name or hostname, ip=ip, port=port,
            failure=failure, tls_server_name=res.server_name,
        )
    http = control.http_request
    if http is not None and (http.status_code is not None or http.failure is not None):
        status = http.status_code if http.status_code and http.status_code > 0 else None
        headers = http.headers or {}
        server = next((str(v) for k, v in headers.items() if k.lower() == "server"), None)
        b.add(
            origin="control", kind="http", hostname=hostname, failure=canonical_failure(http.failure),
            http_status=status,
            http_body_length=http.body_length if http.body_length is not None and http.body_length >= 0 else None,
            http_title=http.title or None, http_header_names=list(headers) or None, http_server=server,
        )


def _fill_asns(rows: list[Observation], control: WebConnectivityControl | None) -> None:
    asn_of: dict[str, int] = {}
    for row in rows:
        if row.kind == "dns" and row.dns_answer_ips and row.dns_answer_asns and len(row.dns_answer_ips) == len(row.dns_answer_asns):
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

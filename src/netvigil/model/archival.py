"""OONI wire-format records (ooni/spec data-formats df-000 … df-008).

These structs mirror the JSON that OONI Probe writes, so decoding is a single
msgspec pass. Every field has a default because real data omits, nulls and
renames fields across a decade of probe versions; tolerance lives in the types,
not in ad-hoc parsing downstream. Unknown fields are not modelled here: the raw
bytes travel beside the typed view (see ``netvigil.codec``) so nothing is lost.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ArchivalBinaryData",
    "ArchivalDNSAnswer",
    "ArchivalDNSQuery",
    "ArchivalTCPConnectStatus",
    "ArchivalTCPConnect",
    "ArchivalTLSHandshake",
    "ArchivalHTTPRequest",
    "ArchivalHTTPResponse",
    "ArchivalHTTPTransaction",
    "ArchivalNetworkEvent",
    "NetworkTestKeys",
    "WebConnectivityControlTCP",
    "WebConnectivityControlTLS",
    "WebConnectivityControlHTTP",
    "WebConnectivityControlDNS",
    "WebConnectivityControlIPInfo",
    "WebConnectivityControl",
    "WebConnectivityTestKeys",
    "WhatsAppTestKeys",
    "TelegramTestKeys",
    "FacebookMessengerTestKeys",
    "SignalTestKeys",
    "TorTarget",
    "TorTestKeys",
    "MeasurementEnvelope",
    "TEST_KEYS_TYPES",
    "FACEBOOK_MESSENGER_ENDPOINTS",
]


class _Record(msgspec.Struct, omit_defaults=True, gc=False):
    """Base: fields default to None and are omitted from output when absent."""


class ArchivalBinaryData(_Record):
    """A body or header OONI could not store as UTF-8: ``{"format": "base64", "data": …}``."""

    format: str = "base64"
    data: str = ""


# A body/header value: text, base64-wrapped bytes, or null.
MaybeBinary = str | ArchivalBinaryData | None


class ArchivalDNSAnswer(_Record):
    answer_type: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    hostname: str | None = None
    asn: int | None = None
    as_org_name: str | None = None
    ttl: int | None = None


class ArchivalDNSQuery(_Record):
    answers: list[ArchivalDNSAnswer | None] | None = None
    engine: str | None = None
    failure: str | None = None
    hostname: str | None = None
    query_type: str | None = None
    resolver_address: str | None = None
    resolver_hostname: str | None = None
    resolver_port: Any = None
    t0: float | None = None
    t: float | None = None
    tags: list[str] | None = None
    transaction_id: int | None = None


class ArchivalTCPConnectStatus(_Record):
    blocked: bool | None = None
    failure: str | None = None
    success: bool | None = None


class ArchivalTCPConnect(_Record):
    ip: str | None = None
    port: int | None = None
    status: ArchivalTCPConnectStatus | None = None
    t0: float | None = None
    t: float | None = None
    tags: list[str] | None = None
    transaction_id: int | None = None


class ArchivalTLSHandshake(_Record):
    network: str | None = None
    address: str | None = None
    cipher_suite: str | None = None
    failure: str | None = None
    negotiated_protocol: str | None = None
    no_tls_verify: bool | None = None
    peer_certificates: list[MaybeBinary] | None = None
    server_name: str | None = None
    t0: float | None = None
    t: float | None = None
    tags: list[str] | None = None
    tls_version: str | None = None
    transaction_id: int | None = None


class ArchivalHTTPRequest(_Record):
    body: MaybeBinary = None
    body_is_truncated: bool | None = None
    headers: dict[str, Any] | None = None
    headers_list: list[list[Any]] | None = None
    method: str | None = None
    tor: dict[str, Any] | None = None
    x_transport: str | None = None
    url: str | None = None


class ArchivalHTTPResponse(_Record):
    body: MaybeBinary = None
    body_is_truncated: bool | None = None
    code: int | None = None
    headers: dict[str, Any] | None = None
    headers_list: list[list[Any]] | None = None


class ArchivalHTTPTransaction(_Record):
    """One HTTP round trip; ``requests[]`` lists them newest first (df-001)."""

    failure: str | None = None
    request: ArchivalHTTPRequest | None = None
    response: ArchivalHTTPResponse | None = None
    network: str | None = None
    address: str | None = None
    alpn: str | None = None
    t0: float | None = None
    t: float | None = None
    tags: list[str] | None = None
    transaction_id: int | None = None


class ArchivalNetworkEvent(_Record):
    address: str | None = None
    failure: str | None = None
    num_bytes: int | None = None
    operation: str | None = None
    proto: str | None = None
    t0: float | None = None
    t: float | None = None
    tags: list[str] | None = None
    transaction_id: int | None = None


class NetworkTestKeys(_Record):
    """The df-001/002/005/006/008 arrays that most network tests share."""

    agent: str | None = None
    failure: str | None = None
    queries: list[ArchivalDNSQuery | None] | None = None
    tcp_connect: list[ArchivalTCPConnect | None] | None = None
    tls_handshakes: list[ArchivalTLSHandshake | None] | None = None
    requests: list[ArchivalHTTPTransaction | None] | None = None
    network_events: list[ArchivalNetworkEvent | None] | None = None


class WebConnectivityControlTCP(_Record):
    status: bool | None = None
    failure: str | None = None


class WebConnectivityControlTLS(_Record):
    server_name: str | None = None
    status: bool | None = None
    failure: str | None = None


class WebConnectivityControlHTTP(_Record):
    body_length: int | None = None
    failure: str | None = None
    title: str | None = None
    headers: dict[str, Any] | None = None
    status_code: int | None = None


class WebConnectivityControlDNS(_Record):
    failure: str | None = None
    addrs: list[str] | None = None


class WebConnectivityControlIPInfo(_Record):
    asn: int | None = None
    flags: int | None = None


class WebConnectivityControl(_Record):
    """The test helper's answer (ts-017 §control, plus the 0.5 ``tls_handshake``/``ip_info``)."""

    tcp_connect: dict[str, WebConnectivityControlTCP] | None = None
    tls_handshake: dict[str, WebConnectivityControlTLS] | None = None
    http_request: WebConnectivityControlHTTP | None = None
    dns: WebConnectivityControlDNS | None = None
    ip_info: dict[str, WebConnectivityControlIPInfo] | None = None


class WebConnectivityTestKeys(NetworkTestKeys):
    client_resolver: str | None = None
    retries: int | None = None
    socksproxy: str | None = None
    control: WebConnectivityControl | None = None
    control_failure: str | None = None
    dns_experiment_failure: str | None = None
    dns_consistency: str | None = None
    http_experiment_failure: str | None = None
    body_length_match: bool | None = None
    body_proportion: float | None = None
    headers_match: bool | None = None
    status_code_match: bool | None = None
    title_match: bool | None = None
    accessible: bool | None = None
    blocking: bool | str | None = None
    x_status: int | None = None
    x_dns_flags: int | None = None
    x_blocking_flags: int | None = None
    x_null_null_flags: int | None = None


class WhatsAppTestKeys(NetworkTestKeys):
    registration_server_failure: str | None = None
    registration_server_status: str | None = None
    whatsapp_endpoints_blocked: list[str] | None = None
    whatsapp_endpoints_dns_inconsistent: list[str] | None = None
    whatsapp_endpoints_status: str | None = None
    whatsapp_web_failure: str | None = None
    whatsapp_web_status: str | None = None


class TelegramTestKeys(NetworkTestKeys):
    telegram_http_blocking: bool | None = None
    telegram_tcp_blocking: bool | None = None
    telegram_web_failure: str | None = None
    telegram_web_status: str | None = None


FACEBOOK_MESSENGER_ENDPOINTS = (
    "b_api", "b_graph", "edge", "external_cdn", "scontent_cdn", "star", "stun",
)


class FacebookMessengerTestKeys(NetworkTestKeys):
    facebook_b_api_dns_consistent: bool | None = None
    facebook_b_api_reachable: bool | None = None
    facebook_b_graph_dns_consistent: bool | None = None
    facebook_b_graph_reachable: bool | None = None
    facebook_edge_dns_consistent: bool | None = None
    facebook_edge_reachable: bool | None = None
    facebook_external_cdn_dns_consistent: bool | None = None
    facebook_external_cdn_reachable: bool | None = None
    facebook_scontent_cdn_dns_consistent: bool | None = None
    facebook_scontent_cdn_reachable: bool | None = None
    facebook_star_dns_consistent: bool | None = None
    facebook_star_reachable: bool | None = None
    facebook_stun_dns_consistent: bool | None = None
    facebook_stun_reachable: bool | None = None
    facebook_dns_blocking: bool | None = None
    facebook_tcp_blocking: bool | None = None


class SignalTestKeys(NetworkTestKeys):
    failed_operation: str | None = None
    signal_backend_status: str | None = None
    signal_backend_failure: str | None = None


class TorTarget(NetworkTestKeys):
    summary: dict[str, Any] | None = None
    target_address: str | None = None
    target_name: str | None = None
    target_protocol: str | None = None
    target_source: str | None = None


class TorTestKeys(_Record):
    targets: dict[str, TorTarget] | list[TorTarget] | None = None
    dir_port_total: int | None = None
    dir_port_accessible: int | None = None
    obfs4_total: int | None = None
    obfs4_accessible: int | None = None
    or_port_dirauth_total: int | None = None
    or_port_dirauth_accessible: int | None = None
    or_port_total: int | None = None
    or_port_accessible: int | None = None


# Test name -> typed test keys. Any other test keeps its raw test keys.
TEST_KEYS_TYPES: dict[str, type[msgspec.Struct]] = {
    "web_connectivity": WebConnectivityTestKeys,
    "whatsapp": WhatsAppTestKeys,
    "telegram": TelegramTestKeys,
    "facebook_messenger": FacebookMessengerTestKeys,
    "signal": SignalTestKeys,
    "tor": TorTestKeys,
}


class MeasurementEnvelope(_Record):
    """The df-000 base envelope; ``test_keys`` stays raw until the test is known."""

    annotations: dict[str, Any] | None = None
    data_format_version: str | None = None
    id: str | None = None
    input: Any = None
    input_hashes: list[Any] | None = None
    measurement_start_time: str | None = None
    measurement_uid: str | None = None
    options: Any = None
    probe_asn: str | None = None
    probe_cc: str | None = None
    probe_city: str | None = None
    probe_ip: str | None = None
    probe_network_name: str | None = None
    report_id: str | None = None
    resolver_asn: str | None = None
    resolver_ip: str | None = None
    resolver_network_name: str | None = None
    software_name: str | None = None
    software_version: str | None = None
    test_helpers: dict[str, Any] | None = None
    test_keys: msgspec.Raw = msgspec.Raw(b"null")
    test_name: str | None = None
    test_runtime: float | None = None
    test_start_time: str | None = None
    test_version: str | None = None

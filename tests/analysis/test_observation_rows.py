"""The positional row builders put every value in the column it belongs to.

``ObservationBuilder`` builds rows positionally (the hot loop of an import);
these tests give every archival field a distinct value and check where each
one lands, so a shifted argument cannot go unnoticed.
"""

from __future__ import annotations

import base64
import hashlib

import msgspec
import pytest

from netvigil.analysis.observations.common import ObservationBuilder, leaf_sha256, split_endpoint
from netvigil.analysis.observations.web_connectivity import control_observations
from netvigil.model.archival import (
    ArchivalBinaryData,
    ArchivalDNSAnswer,
    ArchivalDNSQuery,
    ArchivalHTTPRequest,
    ArchivalHTTPResponse,
    ArchivalHTTPTransaction,
    ArchivalNetworkEvent,
    ArchivalTCPConnect,
    ArchivalTCPConnectStatus,
    ArchivalTLSHandshake,
    WebConnectivityControl,
)
from netvigil.model.observation import Observation

CERT = b"\x30\x82leaf-certificate-bytes"


def fields(row: Observation) -> dict[str, object]:
    """The row's non-None fields."""
    return {k: v for k, v in msgspec.structs.asdict(row).items() if v is not None}


def test_dns_row() -> None:
    b = ObservationBuilder("u1")
    b.dns([ArchivalDNSQuery(
        answers=[ArchivalDNSAnswer(answer_type="A", ipv4="10.0.0.1", asn=64500),
                 ArchivalDNSAnswer(answer_type="CNAME", hostname="alias.example.org")],
        engine="udp", failure="dns_nxdomain", hostname="example.org", query_type="A",
        resolver_address="8.8.8.8:53", t0=1.5, t=2.5, tags=["depth=0", "classic"], transaction_id=7,
    )], origin="probe", target="tgt")
    assert fields(b.rows[0]) == {
        "observation_id": "u1/0", "measurement_uid": "u1", "origin": "probe", "kind": "dns", "target": "tgt",
        "hostname": "example.org", "transaction_id": 7, "t0": 1.5, "t": 2.5,
        "failure": "dns_nxdomain_error", "tags": "depth=0,classic",
        "dns_engine": "udp", "dns_resolver": "8.8.8.8:53", "dns_query_type": "A",
        "dns_answers": ["A 10.0.0.1", "CNAME alias.example.org"], "dns_answer_ips": ["10.0.0.1"],
        "dns_answer_asns": [64500], "dns_bogon": True,
    }


def test_tcp_row() -> None:
    b = ObservationBuilder("u2")
    b.tcp([None, ArchivalTCPConnect(
        ip="192.0.2.9", port=443, status=ArchivalTCPConnectStatus(failure="connection_refused_error", success=False),
        t0=0.25, t=0.5, tags=["x"], transaction_id=3,
    )], origin="control", target="t")
    assert fields(b.rows[0]) == {
        "observation_id": "u2/0", "measurement_uid": "u2", "origin": "control", "kind": "tcp", "target": "t",
        "ip": "192.0.2.9", "port": 443, "transaction_id": 3, "t0": 0.25, "t": 0.5,
        "failure": "connection_refused", "tags": "x",
    }


def test_tls_row_hashes_the_leaf_certificate() -> None:
    b = ObservationBuilder("u3")
    cert = ArchivalBinaryData(data=base64.b64encode(CERT).decode())
    b.tls([ArchivalTLSHandshake(
        address="[2001:db8::1]:8443", cipher_suite="TLS_AES_128_GCM_SHA256", failure=None,
        no_tls_verify=False, peer_certificates=[cert, cert], server_name="example.org",
        t0=3.0, t=3.5, tags=["t"], tls_version="TLSv1.3", transaction_id=9,
    )])
    assert fields(b.rows[0]) == {
        "observation_id": "u3/0", "measurement_uid": "u3", "origin": "probe", "kind": "tls",
        "hostname": "example.org", "ip": "2001:db8::1", "port": 8443, "transaction_id": 9, "t0": 3.0, "t": 3.5,
        "tags": "t", "tls_server_name": "example.org", "tls_version": "TLSv1.3",
        "tls_cipher_suite": "TLS_AES_128_GCM_SHA256", "tls_cert_count": 2,
        "tls_leaf_sha256": hashlib.sha256(CERT).hexdigest(), "tls_no_verify": False,
    }


def test_http_rows_oldest_first_with_reads_and_headers() -> None:
    newest = ArchivalHTTPTransaction(
        request=ArchivalHTTPRequest(method="GET", url="https://Example.org/next"),
        response=ArchivalHTTPResponse(
            body=ArchivalBinaryData(data=base64.b64encode("<title> Caf\u00e9 </title>".encode()).decode()),
            body_is_truncated=True, code=200,
            headers_list=[["Server", "nginx"], ["LOCATION", "/a"], ["location", "/b"], ["X-Y", "z"]],
        ),
        address="198.51.100.7:443", t0=5.0, t=6.0, tags=["hop"], transaction_id=2,
    )
    oldest = ArchivalHTTPTransaction(
        request=ArchivalHTTPRequest(method="HEAD", url="http://example.org/"),
        failure="generic_timeout", transaction_id=1,
    )
    events = [ArchivalNetworkEvent(operation="read", num_bytes=100, t0=5.0, t=5.5, transaction_id=2),
              ArchivalNetworkEvent(operation="read", num_bytes=50, t0=5.5, t=6.0, transaction_id=2),
              ArchivalNetworkEvent(operation="write", num_bytes=999, transaction_id=2)]
    b = ObservationBuilder("u4")
    made = b.http([newest, None, oldest], events=events, target="site")
    assert [row.observation_id for row, _body, _headers in made] == ["u4/0", "u4/1"]
    assert fields(b.rows[0]) == {
        "observation_id": "u4/0", "measurement_uid": "u4", "origin": "probe", "kind": "http", "target": "site",
        "hostname": "example.org", "transaction_id": 1, "failure": "generic_timeout_error",
        "http_url": "http://example.org/", "http_method": "HEAD", "http_redirect_depth": 0,
    }
    assert fields(b.rows[1]) == {
        "observation_id": "u4/1", "measurement_uid": "u4", "origin": "probe", "kind": "http", "target": "site",
        "hostname": "example.org", "ip": "198.51.100.7", "port": 443, "transaction_id": 2, "t0": 5.0, "t": 6.0,
        "tags": "hop", "http_url": "https://Example.org/next", "http_method": "GET", "http_status": 200,
        "http_body_length": len("<title> Caf\u00e9 </title>".encode()), "http_body_truncated": True,
        "http_title": "Caf\u00e9", "http_header_names": ["Server", "LOCATION", "location", "X-Y"],
        "http_location": "/a", "http_server": "nginx", "http_redirect_depth": 1,
        "http_bytes_read": 150, "http_read_seconds": 1.0,
    }
    assert made[1][1] == "<title> Caf\u00e9 </title>"


def test_control_rows() -> None:
    control = msgspec.convert({
        "dns": {"failure": None, "addrs": ["127.0.0.1", ""]},
        "tcp_connect": {"192.0.2.1:443": {"status": False, "failure": None}},
        "tls_handshake": {"192.0.2.1:443": {"server_name": "sni.example", "status": True, "failure": None}},
        "http_request": {"status_code": 301, "body_length": -1, "title": "", "failure": None,
                         "headers": {"X-A": "1", "SERVER": "cloudflare"}},
    }, WebConnectivityControl)
    b = ObservationBuilder("u5")
    control_observations(b, control, "example.org")
    common = {"measurement_uid": "u5", "origin": "control"}
    assert [fields(r) for r in b.rows] == [
        {**common, "observation_id": "u5/0", "kind": "dns", "hostname": "example.org", "dns_engine": "control",
         "dns_answers": ["A 127.0.0.1"], "dns_answer_ips": ["127.0.0.1"], "dns_bogon": True},
        {**common, "observation_id": "u5/1", "kind": "tcp", "hostname": "example.org", "ip": "192.0.2.1", "port": 443,
         "failure": "unknown_failure"},
        {**common, "observation_id": "u5/2", "kind": "tls", "hostname": "sni.example", "ip": "192.0.2.1", "port": 443,
         "tls_server_name": "sni.example"},
        {**common, "observation_id": "u5/3", "kind": "http", "hostname": "example.org", "http_status": 301,
         "http_header_names": ["X-A", "SERVER"], "http_server": "cloudflare"},
    ]


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("1.2.3.4:443", ("1.2.3.4", 443)),
    ("[::1]:80", ("::1", 80)),
    ("example.org", ("example.org", None)),
    ("host:notaport", ("host:notaport", None)),
    ("", (None, None)),
    (None, (None, None)),
])
def test_split_endpoint(endpoint: str | None, expected: tuple[str | None, int | None]) -> None:
    assert split_endpoint(endpoint) == expected
    assert split_endpoint(endpoint) == expected  # the cached answer is the same


def test_leaf_sha256_of_text_and_binary_certificates() -> None:
    assert leaf_sha256(ArchivalBinaryData(data=base64.b64encode(CERT).decode())) == hashlib.sha256(CERT).hexdigest()
    assert leaf_sha256("pem text") == hashlib.sha256(b"pem text").hexdigest()
    assert leaf_sha256(None) is None
    assert leaf_sha256(ArchivalBinaryData(data="")) is None


def test_keywords_still_build_rows() -> None:
    row = Observation(observation_id="a/0", measurement_uid="a", origin="probe", kind="tcp", port=1)
    assert (row.port, row.ip) == (1, None)

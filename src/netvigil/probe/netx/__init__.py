"""Traced network primitives: every DNS lookup, connect, TLS handshake and HTTP exchange a probe makes is
recorded as OONI archival events (df-001/002/005/006/008) in an explicit ``Trace``; failures are OONI
failure strings (df-007), mapped once by ``failure_of``. See docs/probe-netx.md.
"""

from netvigil.probe.netx.dns import getaddrinfo, lookup_doh, lookup_udp
from netvigil.probe.netx.errors import DNSResponseError, NetxError, failure_of
from netvigil.probe.netx.fetch import DEFAULT_HEADERS, REDIRECT_CODES, CookieJar, fetch
from netvigil.probe.netx.http import HTTPResponse, http_request
from netvigil.probe.netx.tcp import Conn, connect
from netvigil.probe.netx.tls import TLSConfig, tls_handshake
from netvigil.probe.netx.trace import Trace, endpoint, is_ip

__all__ = [
    "Trace",
    "NetxError",
    "DNSResponseError",
    "failure_of",
    "endpoint",
    "is_ip",
    "getaddrinfo",
    "lookup_udp",
    "lookup_doh",
    "TLSConfig",
    "Conn",
    "connect",
    "tls_handshake",
    "HTTPResponse",
    "http_request",
    "CookieJar",
    "fetch",
    "DEFAULT_HEADERS",
    "REDIRECT_CODES",
]

"""Flatteners shared by every network test: df-002 queries, df-005 tcp_connect,
df-006 tls_handshakes, df-001 requests (+ df-008 read events for throughput).

Each function appends Observation rows to ``out``; ids are ``<uid>/<n>`` in the
order rows are made, so rebuilding from the same measurement gives the same ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from functools import lru_cache
from typing import Any, Iterable

from netvigil.model.archival import (
    ArchivalBinaryData,
    ArchivalDNSQuery,
    ArchivalHTTPTransaction,
    ArchivalNetworkEvent,
    ArchivalTCPConnect,
    ArchivalTLSHandshake,
)
from netvigil.model.failure import canonical_failure
from netvigil.model.observation import Observation

__all__ = [
    "ObservationBuilder",
    "binary_bytes",
    "body_length",
    "body_text",
    "domain_of",
    "header_value",
    "headers_as_pairs",
    "is_bogon",
    "leaf_sha256",
    "split_endpoint",
    "title_of",
    "read_stats",
]

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


# RFC 5737 documentation ranges: Python counts them private, but no resolver on the real internet returns them,
# and netvigil's lab uses them as its internet and its domestic hosting, so they must judge like public addresses.
_DOCUMENTATION_V4 = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))


@lru_cache(maxsize=65536)
def is_bogon(ip: str) -> bool:
    """True for addresses that cannot be a public server (private, loopback, …)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address) and any(addr in net for net in _DOCUMENTATION_V4):
        return False
    return bool(
        addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
        or addr.is_reserved or addr.is_unspecified
    )


def split_endpoint(endpoint: str | None) -> tuple[str | None, int | None]:
    """'1.2.3.4:443' / '[::1]:443' -> (ip, port)."""
    if not endpoint:
        return None, None
    return _split_endpoint(endpoint)


@lru_cache(maxsize=16384)
def _split_endpoint(endpoint: str) -> tuple[str | None, int | None]:
    """Cached: a measurement names each endpoint several times, and popular ones recur across measurements."""
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        return endpoint, None
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        return endpoint, None


def binary_bytes(value: str | ArchivalBinaryData | None) -> bytes | None:
    """Bytes of a value stored as text or as ``{"format": "base64"}`` (e.g. a certificate)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(value.data, validate=False)
    except (binascii.Error, ValueError):
        return value.data.encode("ascii", "replace")


def body_text(body: str | ArchivalBinaryData | None) -> str | None:
    """A response body as text (base64 bodies decoded, undecodable bytes replaced)."""
    if body is None or isinstance(body, str):
        return body
    raw = binary_bytes(body)
    return raw.decode("utf-8", "replace") if raw is not None else None


def body_length(body: str | None) -> int | None:
    """Length in bytes, as OONI counts it (cheap for ASCII, the common case)."""
    if body is None:
        return None
    return len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))


def title_of(body: str | None) -> str | None:
    if not body:
        return None
    match = _TITLE.search(body)
    if not match:
        return None
    return match.group(1).strip()[:256] or None


def _header_str(value: Any) -> str:
    if isinstance(value, ArchivalBinaryData):
        return body_text(value) or ""
    if isinstance(value, dict) and "data" in value:
        try:
            return base64.b64decode(value["data"]).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return str(value["data"])
    if isinstance(value, list):
        return ", ".join(_header_str(v) for v in value)
    return "" if value is None else str(value)


def headers_as_pairs(headers: dict[str, Any] | None, headers_list: list[list[Any]] | None) -> list[tuple[str, str]]:
    """Headers as (name, value) pairs from either ``headers_list`` or ``headers``."""
    if headers_list:
        pairs = [
            (item[0], item[1]) if type(item[1]) is str and type(item[0]) is str else (str(item[0]), _header_str(item[1]))
            for item in headers_list
            if isinstance(item, (list, tuple)) and len(item) == 2
        ]
        if pairs:
            return pairs
    if headers:
        return [(k, v) if type(v) is str else (k, _header_str(v)) for k, v in headers.items()]
    return []


def header_value(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    for key, value in pairs:
        if key.lower() == lname:
            return value
    return None


def read_stats(events: list[ArchivalNetworkEvent | None] | None) -> dict[int | None, tuple[int, float]]:
    """Bytes read and the read window (s) per transaction id, from df-008 events."""
    stats: dict[int | None, list[float]] = {}
    for ev in events or ():
        if ev is None or ev.operation != "read" or not ev.num_bytes:
            continue
        entry = stats.get(ev.transaction_id)
        t = ev.t or 0.0
        t0 = ev.t0 if ev.t0 is not None else t
        if entry is None:
            stats[ev.transaction_id] = [ev.num_bytes, t0, t]
        else:
            entry[0] += ev.num_bytes
            entry[1] = min(entry[1], t0)
            entry[2] = max(entry[2], t)
    return {k: (int(v[0]), max(0.0, v[2] - v[1])) for k, v in stats.items()}


# Observation's fields in order, as the row builders below pass them positionally
# (keywords cost several times more for a struct this wide; see model/observation.py).
_ROW_FIELDS = (
    "observation_id", "measurement_uid", "origin", "kind", "target", "hostname", "ip", "port", "ip_asn",
    "transaction_id", "t0", "t", "failure", "tags",
    "dns_engine", "dns_resolver", "dns_query_type", "dns_answers", "dns_answer_ips", "dns_answer_asns", "dns_bogon",
    "tls_server_name", "tls_version", "tls_cipher_suite", "tls_cert_count", "tls_leaf_sha256", "tls_no_verify",
    "http_url", "http_method", "http_status", "http_body_length", "http_body_truncated", "http_title",
    "http_header_names", "http_location", "http_server", "http_redirect_depth", "http_bytes_read",
    "http_read_seconds",
)
if Observation.__struct_fields__[: len(_ROW_FIELDS)] != _ROW_FIELDS:
    raise ImportError("Observation's field order changed: update the positional row builders in "
                      "netvigil.analysis.observations.common")


class ObservationBuilder:
    """Accumulates rows for one measurement, numbering them stably.

    This is the hottest loop of an import, so rows are built positionally in
    the order of ``_ROW_FIELDS`` (each call is laid out one layer per line);
    ``add`` takes keywords for rows made off the hot path.
    """

    __slots__ = ("uid", "rows", "_prefix")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.rows: list[Observation] = []
        self._prefix = uid + "/"

    def add(self, **fields: Any) -> Observation:
        row = Observation(observation_id=self._prefix + str(len(self.rows)), measurement_uid=self.uid, **fields)
        self.rows.append(row)
        return row

    def dns(self, queries: list[ArchivalDNSQuery | None] | None, *, origin: str = "probe", target: str | None = None) -> None:
        rows = self.rows
        for q in queries or ():
            if q is None:
                continue
            ips: list[str] = []
            answers: list[str] = []
            asns: list[int] = []
            for a in q.answers or ():
                if a is None:
                    continue
                ip = a.ipv4 or a.ipv6
                value = ip or a.hostname
                if value is None:
                    continue
                answers.append(f"{a.answer_type or '?'} {value}")
                if ip:
                    ips.append(ip)
                    if a.asn is not None:
                        asns.append(a.asn)
            tags = q.tags
            failure = q.failure
            rows.append(Observation(
                self._prefix + str(len(rows)), self.uid, origin, "dns",
                target, q.hostname, None, None, None,                    # target, hostname, ip, port, ip_asn
                q.transaction_id, q.t0, q.t,
                canonical_failure(failure) if failure else None,
                ",".join(tags) if tags else None,
                q.engine, q.resolver_address or q.resolver_hostname or None, q.query_type,
                answers or None, ips or None, asns or None,             # dns_answers, dns_answer_ips, dns_answer_asns
                any(map(is_bogon, ips)) if ips else None,               # dns_bogon
            ))

    def tcp(self, connects: list[ArchivalTCPConnect | None] | None, *, origin: str = "probe", target: str | None = None) -> None:
        rows = self.rows
        for c in connects or ():
            if c is None:
                continue
            status = c.status
            failure = canonical_failure(status.failure) if status is not None and status.failure else None
            if status is not None and failure is None and status.success is False:
                failure = "unknown_failure"
            tags = c.tags
            rows.append(Observation(
                self._prefix + str(len(rows)), self.uid, origin, "tcp",
                target, None, c.ip, c.port, None,                       # target, hostname, ip, port, ip_asn
                c.transaction_id, c.t0, c.t, failure,
                ",".join(tags) if tags else None,
            ))

    def tls(self, handshakes: list[ArchivalTLSHandshake | None] | None, *, origin: str = "probe", target: str | None = None) -> None:
        rows = self.rows
        for h in handshakes or ():
            if h is None:
                continue
            ip, port = split_endpoint(h.address)
            certs = h.peer_certificates or ()
            tags = h.tags
            rows.append(Observation(
                self._prefix + str(len(rows)), self.uid, origin, "tls",
                target, h.server_name, ip, port, None,                  # target, hostname, ip, port, ip_asn
                h.transaction_id, h.t0, h.t,
                canonical_failure(h.failure) if h.failure else None,
                ",".join(tags) if tags else None,
                None, None, None, None, None, None, None,               # dns_*
                h.server_name, h.tls_version or None, h.cipher_suite or None,
                len(certs), leaf_sha256(certs[0]) if certs else None,   # tls_cert_count, tls_leaf_sha256
                h.no_tls_verify,
            ))

    def http(
        self,
        transactions: list[ArchivalHTTPTransaction | None] | None,
        *,
        events: list[ArchivalNetworkEvent | None] | None = None,
        origin: str = "probe",
        target: str | None = None,
    ) -> list[tuple[Observation, str | None, list[tuple[str, str]]]]:
        """Rows for each HTTP transaction, oldest first (the archive is newest first).

        Returns (row, body, header pairs) so analysis can match fingerprints
        without re-decoding the body.
        """
        reads = read_stats(events) if events else {}
        made = []
        rows = self.rows
        txs = [tx for tx in transactions or () if tx is not None]
        txs.reverse()
        for depth, tx in enumerate(txs):
            req = tx.request
            resp = tx.response
            url = req.url if req else None
            names: list[str] | None = None
            location = server = None
            if resp is not None:
                raw_body = resp.body
                if isinstance(raw_body, ArchivalBinaryData):
                    raw_bytes = binary_bytes(raw_body) or b""
                    body: str | None = raw_bytes.decode("utf-8", "replace")
                    length: int | None = len(raw_bytes)
                else:
                    body = raw_body
                    length = body_length(body)
                pairs = headers_as_pairs(resp.headers, resp.headers_list)
                if pairs:
                    names, location, server = _header_summary(pairs)
                code = resp.code or None
                truncated = resp.body_is_truncated
            else:
                body, pairs, code, truncated, length = None, [], None, None, None
            ip, port = split_endpoint(tx.address) if tx.address else (None, None)
            stats = reads.get(tx.transaction_id) if reads and tx.transaction_id is not None else None
            tags = tx.tags
            row = Observation(
                self._prefix + str(len(rows)), self.uid, origin, "http",
                target, _host_of(url), ip, port, None,                  # target, hostname, ip, port, ip_asn
                tx.transaction_id, tx.t0, tx.t,
                canonical_failure(tx.failure) if tx.failure else None,
                ",".join(tags) if tags else None,
                None, None, None, None, None, None, None,               # dns_*
                None, None, None, None, None, None,                     # tls_*
                url, req.method if req else None, code,                 # http_url, http_method, http_status
                length, truncated, title_of(body),                      # http_body_length, _truncated, http_title
                names, location, server,                                # http_header_names, http_location, http_server
                depth,                                                  # http_redirect_depth
                stats[0] if stats else None, stats[1] if stats else None,  # http_bytes_read, http_read_seconds
            )
            rows.append(row)
            made.append((row, body, pairs))
        return made


def _header_summary(pairs: list[tuple[str, str]]) -> tuple[list[str], str | None, str | None]:
    """Header names in order, and the first Location and Server values, in one pass."""
    names = []
    location = server = None
    for key, value in pairs:
        names.append(key)
        lkey = key.lower()
        if lkey == "location":
            if location is None:
                location = value
        elif lkey == "server" and server is None:
            server = value
    return names, location, server


@lru_cache(maxsize=1024)
def _leaf_sha256_of_text(data: str) -> str | None:
    raw = binary_bytes(ArchivalBinaryData(data=data))
    return hashlib.sha256(raw).hexdigest() if raw else None


def leaf_sha256(cert: str | ArchivalBinaryData | None) -> str | None:
    """SHA-256 of a certificate's bytes (hex), or None when it is empty.

    The same certificates come back in measurement after measurement (one per
    site), so base64 certificates are hashed once per distinct value.
    """
    if isinstance(cert, ArchivalBinaryData):
        return _leaf_sha256_of_text(cert.data)
    raw = binary_bytes(cert)
    return hashlib.sha256(raw).hexdigest() if raw else None


_HOST = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?(\[[^\]]*\]|[^:/?#]*)")


def _host_of(url: str | None) -> str | None:
    if not url:
        return None
    return _url_host(url)


@lru_cache(maxsize=16384)
def _url_host(url: str) -> str | None:
    """Lower-case host of a URL; cached, as the same URLs come back run after run (test lists)."""
    match = _HOST.match(url)
    if not match:
        return None
    return match.group(1).strip("[]").lower() or None


def domain_of(url_or_host: str | None) -> str | None:
    """Lower-case host of a URL, or of a 'host[:port]' endpoint."""
    if not url_or_host:
        return None
    if "://" in url_or_host:
        return _host_of(url_or_host)
    host = url_or_host.rsplit(":", 1)[0] if url_or_host.count(":") == 1 else url_or_host
    return host.strip("[]").lower() or None

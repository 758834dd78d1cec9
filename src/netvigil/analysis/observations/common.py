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


class ObservationBuilder:
    """Accumulates rows for one measurement, numbering them stably.

    Rows are constructed directly (no keyword dicts in between): this is the
    hottest loop of an import.
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
                observation_id=self._prefix + str(len(rows)), measurement_uid=self.uid,
                origin=origin, kind="dns", target=target, hostname=q.hostname,
                transaction_id=q.transaction_id, t0=q.t0, t=q.t,
                failure=canonical_failure(failure) if failure else None,
                tags=",".join(tags) if tags else None,
                dns_engine=q.engine, dns_resolver=q.resolver_address or q.resolver_hostname or None,
                dns_query_type=q.query_type, dns_answers=answers or None, dns_answer_ips=ips or None,
                dns_answer_asns=asns or None, dns_bogon=any(map(is_bogon, ips)) if ips else None,
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
                observation_id=self._prefix + str(len(rows)), measurement_uid=self.uid,
                origin=origin, kind="tcp", target=target, ip=c.ip, port=c.port,
                transaction_id=c.transaction_id, t0=c.t0, t=c.t, failure=failure,
                tags=",".join(tags) if tags else None,
            ))

    def tls(self, handshakes: list[ArchivalTLSHandshake | None] | None, *, origin: str = "probe", target: str | None = None) -> None:
        rows = self.rows
        for h in handshakes or ():
            if h is None:
                continue
            ip, port = split_endpoint(h.address)
            certs = h.peer_certificates or ()
            leaf = binary_bytes(certs[0]) if certs else None
            tags = h.tags
            rows.append(Observation(
                observation_id=self._prefix + str(len(rows)), measurement_uid=self.uid,
                origin=origin, kind="tls", target=target, hostname=h.server_name, ip=ip, port=port,
                transaction_id=h.transaction_id, t0=h.t0, t=h.t,
                failure=canonical_failure(h.failure) if h.failure else None,
                tags=",".join(tags) if tags else None,
                tls_server_name=h.server_name, tls_version=h.tls_version or None,
                tls_cipher_suite=h.cipher_suite or None, tls_cert_count=len(certs),
                tls_leaf_sha256=hashlib.sha256(leaf).hexdigest() if leaf else None,
                tls_no_verify=h.no_tls_verify,
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
            if resp is not None:
                body = body_text(resp.body)
                pairs = headers_as_pairs(resp.headers, resp.headers_list)
                code = resp.code or None
                truncated = resp.body_is_truncated
                length = len(binary_bytes(resp.body) or b"") if isinstance(resp.body, ArchivalBinaryData) else body_length(body)
            else:
                body, pairs, code, truncated, length = None, [], None, None, None
            ip, port = split_endpoint(tx.address) if tx.address else (None, None)
            stats = reads.get(tx.transaction_id) if reads and tx.transaction_id is not None else None
            tags = tx.tags
            row = Observation(
                observation_id=self._prefix + str(len(rows)), measurement_uid=self.uid,
                origin=origin, kind="http", target=target, ip=ip, port=port,
                hostname=_host_of(url), transaction_id=tx.transaction_id, t0=tx.t0, t=tx.t,
                failure=canonical_failure(tx.failure) if tx.failure else None,
                tags=",".join(tags) if tags else None,
                http_url=url, http_method=req.method if req else None, http_status=code,
                http_body_length=length, http_body_truncated=truncated,
                http_title=title_of(body), http_header_names=[k for k, _ in pairs] or None,
                http_location=header_value(pairs, "location") if pairs else None,
                http_server=header_value(pairs, "server") if pairs else None,
                http_redirect_depth=depth,
                http_bytes_read=stats[0] if stats else None,
                http_read_seconds=stats[1] if stats else None,
            )
            rows.append(row)
            made.append((row, body, pairs))
        return made


_HOST = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?(\[[^\]]*\]|[^:/?#]*)")


def _host_of(url: str | None) -> str | None:
    if not url:
        return None
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

"""Helpers shared by the messenger and circumvention flatteners.

Messenger tests put every endpoint's operations into one set of arrays, and a
``tcp_connect`` row carries only an IP and a port. To judge per endpoint group
we give each row a ``target``: DNS rows by the name they query, TLS rows by
SNI, HTTP rows by URL host (or ``Host`` header when old probes left the URL
out), and TCP rows by the names whose DNS answers held that IP. When two groups
share an IP (WhatsApp web and registration both on one Facebook edge), a TCP
row is paired with the TLS handshakes to that address in order, then falls back
to the first group that resolved to the IP.

Test keys may be a typed struct or, when the typed decode failed, a plain dict;
``network_arrays`` reads both, converting item by item so one odd record does
not cost the rest.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import msgspec

from netvigil.analysis.observations.common import ObservationBuilder, headers_as_pairs, split_endpoint
from netvigil.model.archival import (
    ArchivalDNSQuery,
    ArchivalHTTPTransaction,
    ArchivalNetworkEvent,
    ArchivalTCPConnect,
    ArchivalTLSHandshake,
)

__all__ = [
    "NetworkArrays",
    "network_arrays",
    "ip_groups",
    "TCPAssigner",
    "add_dns",
    "add_tls",
    "add_http",
    "host_of_request",
]

Classify = Callable[[str | None], str | None]


@dataclass(frozen=True, slots=True)
class NetworkArrays:
    """The df-001/002/005/006/008 arrays of one test (or one Tor target)."""

    queries: list[ArchivalDNSQuery]
    tcp_connect: list[ArchivalTCPConnect]
    tls_handshakes: list[ArchivalTLSHandshake]
    requests: list[ArchivalHTTPTransaction]
    network_events: list[ArchivalNetworkEvent]

    @property
    def empty(self) -> bool:
        return not (self.queries or self.tcp_connect or self.tls_handshakes or self.requests)


_KEYS = ("queries", "tcp_connect", "tls_handshakes", "requests", "network_events")
_TYPES: dict[str, type] = {
    "queries": ArchivalDNSQuery,
    "tcp_connect": ArchivalTCPConnect,
    "tls_handshakes": ArchivalTLSHandshake,
    "requests": ArchivalHTTPTransaction,
    "network_events": ArchivalNetworkEvent,
}


def _convert_items(key: str, value: Any) -> list[Any]:
    """Typed items from a raw list (or a lone object, as openvpn writes tcp_connect)."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    typ = _TYPES[key]
    out = []
    for item in value:
        if isinstance(item, typ):
            out.append(item)
            continue
        if not isinstance(item, dict):
            continue
        try:
            out.append(msgspec.convert(item, typ, strict=False))
        except msgspec.ValidationError:
            cleaned = _clean(key, item)
            if cleaned is None:
                continue
            try:
                out.append(msgspec.convert(cleaned, typ, strict=False))
            except msgspec.ValidationError:
                continue
    return out


def _clean(key: str, item: dict[str, Any]) -> dict[str, Any] | None:
    """Repair the known odd shapes: ``"failure": false`` (ooniprobe 2.x) and
    header lists of ``[name, [values]]`` (ooniprobe 1.x); else give up on the item."""
    item = dict(item)
    if key == "tcp_connect" and isinstance(item.get("status"), dict):
        status = dict(item["status"])
        if not isinstance(status.get("failure"), (str, type(None))):
            status["failure"] = None if not status["failure"] else str(status["failure"])
        item["status"] = status
        return item
    if key == "requests":
        for part in ("request", "response"):
            sub = item.get(part)
            if isinstance(sub, dict) and not isinstance(sub.get("headers"), (dict, type(None))):
                sub = dict(sub)
                sub["headers_list"] = _pairs_from_legacy(sub.pop("headers"))
                item[part] = sub
        return item
    return None


def _pairs_from_legacy(headers: Any) -> list[list[str]] | None:
    if not isinstance(headers, list):
        return None
    pairs = []
    for h in headers:
        if isinstance(h, list) and len(h) == 2:
            values = h[1] if isinstance(h[1], list) else [h[1]]
            for v in values:
                pairs.append([str(h[0]), str(v)])
    return pairs or None


def network_arrays(tk: Any) -> NetworkArrays:
    """The network arrays from typed test keys or a raw dict (missing → empty)."""
    if tk is None:
        return NetworkArrays([], [], [], [], [])
    if isinstance(tk, dict):
        got = {k: _convert_items(k, tk.get(k)) for k in _KEYS}
    else:
        got = {k: list(getattr(tk, k, None) or ()) for k in _KEYS}
    return NetworkArrays(**got)


def ip_groups(queries: Iterable[ArchivalDNSQuery], classify: Classify) -> dict[str, list[str]]:
    """IP -> groups whose names resolved to it, in first-seen order."""
    out: dict[str, list[str]] = {}
    for q in queries:
        group = classify(q.hostname)
        if group is None:
            continue
        for a in q.answers or ():
            ip = a.ipv4 or a.ipv6 if a is not None else None
            if not ip:
                continue
            groups = out.setdefault(ip, [])
            if group not in groups:
                groups.append(group)
    return out


class TCPAssigner:
    """Gives each TCP connect the group it most likely served (see module doc)."""

    __slots__ = ("_by_ip", "_queues", "_by_txid", "_fallback")

    def __init__(
        self,
        by_ip: dict[str, list[str]],
        handshakes: Iterable[ArchivalTLSHandshake],
        classify: Classify,
        fallback: Callable[[ArchivalTCPConnect], str],
    ) -> None:
        self._by_ip = by_ip
        self._fallback = fallback
        self._queues: dict[tuple[str | None, int | None], deque[str]] = {}
        self._by_txid: dict[int, str] = {}
        for h in handshakes:
            group = classify(h.server_name)
            if group is None:
                continue
            if h.transaction_id is not None:
                self._by_txid[h.transaction_id] = group
            if h.address:
                self._queues.setdefault(split_endpoint(h.address), deque()).append(group)

    def group_of(self, c: ArchivalTCPConnect) -> str:
        if c.transaction_id is not None and c.transaction_id in self._by_txid:
            return self._by_txid[c.transaction_id]
        groups = self._by_ip.get(c.ip or "")
        if groups and len(groups) == 1:
            return groups[0]
        queue = self._queues.get((c.ip, c.port))
        if groups and queue:
            while queue:
                g = queue.popleft()
                if g in groups:
                    return g
        if groups:
            return groups[0]
        return self._fallback(c)


def add_dns(b: ObservationBuilder, queries: Iterable[ArchivalDNSQuery], classify: Classify, default: str) -> None:
    for q in queries:
        b.dns([q], target=classify(q.hostname) or default)


def add_tls(b: ObservationBuilder, handshakes: Iterable[ArchivalTLSHandshake], classify: Classify, default: str) -> None:
    for h in handshakes:
        b.tls([h], target=classify(h.server_name) or default)


def host_of_request(tx: ArchivalHTTPTransaction) -> tuple[str | None, str | None, int | None]:
    """(hostname, ip, port) from the ``Host`` header, for requests stored without a URL."""
    req = tx.request
    if req is None:
        return None, None, None
    host = None
    for name, value in headers_as_pairs(req.headers, req.headers_list):
        if name.lower() == "host":
            host = value.strip().lower()
            break
    if not host:
        return None, None, None
    name, port = split_endpoint(host)
    if name and name.replace(".", "").isdigit():
        return None, name, port
    return name, None, port


def add_http(
    b: ObservationBuilder,
    requests: list[ArchivalHTTPTransaction],
    classify: Callable[[str | None, str | None], str | None],
    default: str,
    events: list[ArchivalNetworkEvent] | None = None,
) -> None:
    """One row per request, oldest first; ``classify(hostname, ip)`` picks the group.

    Messenger requests are independent fetches, not one redirect chain, so the
    redirect depth the shared flattener assigns by position is reset to 0.
    """
    made = b.http(requests, events=events, target=None)   # rows come oldest first
    for (row, _body, _headers), tx in zip(made, reversed(requests)):
        row.http_redirect_depth = 0
        if row.hostname is None:
            host, ip, port = host_of_request(tx)
            row.hostname = host
            if row.ip is None:
                row.ip = ip
            if row.port is None:
                row.port = port
        ip_literal = row.hostname if row.hostname and row.hostname.replace(".", "").isdigit() else None
        row.target = classify(row.hostname, row.ip or ip_literal) or default

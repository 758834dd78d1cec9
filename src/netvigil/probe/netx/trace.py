"""The trace: what one measurement did on the network, as OONI archival events.

Operations append to an explicit ``Trace`` (no globals, no context variables) so that several
measurements can run concurrently in one process, and so that a caller decides which events end up in
which measurement.
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from typing import Any

from netvigil.model.archival import (
    ArchivalDNSQuery,
    ArchivalHTTPTransaction,
    ArchivalNetworkEvent,
    ArchivalTCPConnect,
    ArchivalTLSHandshake,
)

__all__ = ["Trace", "endpoint", "is_ip"]


def is_ip(host: str) -> bool:
    """True for an IP literal (a URL's host may be one: then there is nothing to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def endpoint(ip: str, port: int) -> str:
    """OONI's endpoint spelling: "1.2.3.4:443", "[2001:db8::1]:443"."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Trace:
    """Archival events of one measurement; times are seconds since ``zero`` (a ``time.monotonic()`` value)."""

    def __init__(self, zero: float | None = None) -> None:
        self.zero = time.monotonic() if zero is None else zero
        self.queries: list[ArchivalDNSQuery] = []
        self.tcp_connect: list[ArchivalTCPConnect] = []
        self.tls_handshakes: list[ArchivalTLSHandshake] = []
        self.requests: list[ArchivalHTTPTransaction] = []  # oldest first; test_keys() reverses (df-001)
        self.network_events: list[ArchivalNetworkEvent] = []
        self._ids = itertools.count(1)

    def now(self) -> float:
        """Seconds since the trace's zero, to the microsecond (what OONI's t0/t mean)."""
        return round(time.monotonic() - self.zero, 6)

    def next_id(self) -> int:
        """A fresh transaction id: 1, 2, … Events of one logical flow share one."""
        return next(self._ids)

    def test_keys(self) -> dict[str, list[Any]]:
        """The df-001/002/005/006/008 arrays, ready to be fields of a TestKeys struct."""
        return {
            "queries": list(self.queries),
            "tcp_connect": list(self.tcp_connect),
            "tls_handshakes": list(self.tls_handshakes),
            "requests": self.requests[::-1],
            "network_events": list(self.network_events),
        }

    def event(self, operation: str, address: str | None, t0: float, *, transaction_id: int | None,
              num_bytes: int | None = None, failure: str | None = None, proto: str | None = "tcp") -> None:
        """Append one df-008 network event ending now."""
        self.network_events.append(ArchivalNetworkEvent(
            address=address, failure=failure, num_bytes=num_bytes, operation=operation, proto=proto,
            t0=t0, t=self.now(), transaction_id=transaction_id,
        ))

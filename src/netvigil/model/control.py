"""The Web Connectivity test-helper request (ts-017 §control): what a probe sends to the control helper.

The answer is ``WebConnectivityControl`` in ``netvigil.model.archival`` (it is archived inside the measurement).
Decoding is strict on types but ignores unknown fields, as OONI's helper does, so newer probes that add keys
(e.g. ``x_quic_enabled``) keep working.
"""

from __future__ import annotations

import msgspec

__all__ = ["ControlRequest"]


class ControlRequest(msgspec.Struct, kw_only=True):
    """``{"http_request": url, "http_request_headers": {name: [values]}, "tcp_connect": ["ip:port", ...]}``."""

    http_request: str
    http_request_headers: dict[str, list[str]] = {}
    tcp_connect: list[str] = []

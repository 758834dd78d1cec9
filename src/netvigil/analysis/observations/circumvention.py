"""Circumvention tests with untyped test keys -> observations.

vanilla_tor, torsf, openvpn, riseupvpn, psiphon, meek_fronted_requests_test
and friends mostly report a bootstrap result; some also keep df-00x arrays
(riseupvpn's API fetch and gateway connects, openvpn's single connect, meek's
fronted request). We flatten whatever arrays are there. Targets:
``api``/``gateways`` for riseupvpn, ``fronted`` for meek, the endpoint
(``openvpn://1.2.3.4:1194/udp``) for netvigil's ``vpn`` test, so that each VPN
server has its own verdict series, and ``bootstrap`` for the rest (one tunnel,
one target).
"""

from __future__ import annotations

from typing import Any

import msgspec

from netvigil.analysis.observations._messaging import add_http, ip_groups, network_arrays
from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "TESTS", "target_for_test", "target_of", "plain_keys", "vpn_handshake"]

TESTS = (
    "vanilla_tor", "torsf", "openvpn", "riseupvpn", "psiphon", "meek_fronted_requests_test",
    "lantern", "tor_snowflake", "vpn",
)


def plain_keys(tk: Any) -> Any:
    """The test keys as a dict (a typed struct, if the model gains one for a test, becomes its dict)."""
    return msgspec.to_builtins(tk) if isinstance(tk, msgspec.Struct) else tk


def vpn_handshake(tk: Any) -> dict[str, Any] | None:
    """The first `openvpn_handshake` / `wireguard_handshake` entry of a vpn measurement."""
    if not isinstance(tk, dict):
        return None
    for key in ("openvpn_handshake", "wireguard_handshake"):
        entries = tk.get(key)
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            return entries[0]
    return None


def target_of(m: Measurement) -> str:
    """The measurement's target: the endpoint for `vpn`, else the test's single target."""
    if m.test_name == "vpn":
        hs = vpn_handshake(plain_keys(m.test_keys))
        if hs is not None and isinstance(hs.get("endpoint"), str) and hs["endpoint"]:
            return hs["endpoint"]
        return m.input or "bootstrap"
    return target_for_test(m.test_name)


def target_for_test(test_name: str) -> str:
    """The single target of a tunnel test (riseupvpn has two: see make_observations)."""
    if test_name == "meek_fronted_requests_test":
        return "fronted"
    if test_name == "riseupvpn":
        return "api"
    return "bootstrap"


def make_observations(m: Measurement) -> list[Observation]:
    b = ObservationBuilder(m.uid)
    tk = plain_keys(m.test_keys)
    if not isinstance(tk, dict):
        return b.rows
    arrays = network_arrays(tk)
    main = target_of(m)
    b.dns(arrays.queries, target=main)
    api_ips = ip_groups(arrays.queries, lambda h: main) if m.test_name == "riseupvpn" else {}
    for c in arrays.tcp_connect:
        # riseupvpn connects to the API hosts it resolved and to gateways by IP.
        target = "gateways" if m.test_name == "riseupvpn" and c.ip not in api_ips else main
        b.tcp([c], target=target)
    b.tls(arrays.tls_handshakes, target=main)
    add_http(b, arrays.requests, lambda host, ip: main, main, arrays.network_events)
    return b.rows

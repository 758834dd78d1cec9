"""Circumvention tests with untyped test keys -> observations.

vanilla_tor, torsf, openvpn, riseupvpn, psiphon, meek_fronted_requests_test
and friends mostly report a bootstrap result; some also keep df-00x arrays
(riseupvpn's API fetch and gateway connects, openvpn's single connect, meek's
fronted request). We flatten whatever arrays are there. Targets:
``api``/``gateways`` for riseupvpn, ``fronted`` for meek, ``bootstrap`` for the
rest (one tunnel, one target).
"""

from __future__ import annotations

from netvigil.analysis.observations._messaging import add_http, ip_groups, network_arrays
from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "TESTS", "target_for_test"]

TESTS = (
    "vanilla_tor", "torsf", "openvpn", "riseupvpn", "psiphon", "meek_fronted_requests_test",
    "lantern", "tor_snowflake",
)


def target_for_test(test_name: str) -> str:
    """The single target of a tunnel test (riseupvpn has two: see make_observations)."""
    if test_name == "meek_fronted_requests_test":
        return "fronted"
    if test_name == "riseupvpn":
        return "api"
    return "bootstrap"


def make_observations(m: Measurement) -> list[Observation]:
    b = ObservationBuilder(m.uid)
    tk = m.test_keys
    if not isinstance(tk, dict):
        return b.rows
    arrays = network_arrays(tk)
    main = target_for_test(m.test_name)
    b.dns(arrays.queries, target=main)
    api_ips = ip_groups(arrays.queries, lambda h: main) if m.test_name == "riseupvpn" else {}
    for c in arrays.tcp_connect:
        # riseupvpn connects to the API hosts it resolved and to gateways by IP.
        target = "gateways" if m.test_name == "riseupvpn" and c.ip not in api_ips else main
        b.tcp([c], target=target)
    b.tls(arrays.tls_handshakes, target=main)
    add_http(b, arrays.requests, lambda host, ip: main, main, arrays.network_events)
    return b.rows

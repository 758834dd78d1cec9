"""Server specs: which servers run in which namespace, in the servers module's JSON contract (pure).

One spec per namespace that hosts servers: the internet side (foreign sites, authoritative DNS, public
resolver), the domestic side (in-country sites, the blockpage server) and every ISP router (its recursive
resolver, whose upstream queries cross the backbone and so meet the DNS censor). `control` targets are not
in these specs: they run netvigil's control helper (`controlhelper`), and `host` targets run nothing.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from netvigil.lab.plan import Plan
from netvigil.lab.scenario import INTERNET_RANGE, Scenario, Target

__all__ = ["make_server_specs"]

_WITH_NAMES = ("web", "tls_echo", "largefile")
_DEFAULTS: dict[str, dict[str, Any]] = {
    "web": {"site": "generic", "behaviour": "normal"},
    "tls_echo": {"port": 443},
    "tor": {},
    "largefile": {},
    "vpn": {"kind": "wireguard", "port": 51820},
}


def _entry(t: Target) -> dict[str, Any]:
    entry: dict[str, Any] = {"bind": t.address, **_DEFAULTS[t.kind], **t.server}
    if t.kind in _WITH_NAMES:
        entry["names"] = list(t.names)
    return entry


def _international(addr: str) -> bool:
    return ipaddress.ip_address(addr) in INTERNET_RANGE


def make_server_specs(plan: Plan, scenario: Scenario, state_dir: Path) -> dict[str, dict[str, Any]]:
    """Namespace -> spec dict. Sections are only present when non-empty."""
    ca_dir = str(state_dir / "ca")
    specs: dict[str, dict[str, Any]] = {}

    def spec(ns: str) -> dict[str, Any]:
        if ns not in specs:
            specs[ns] = {"state_dir": str(state_dir / f"srv-{ns}"), "ca_dir": ca_dir}
        return specs[ns]

    def side(addr: str) -> str:
        return plan.internet if _international(addr) else plan.domestic

    auth = spec(side(scenario.authoritative))
    auth["zones"] = {name: [t.address] for t in scenario.targets if t.dns for name in t.names}
    authoritative: dict[str, Any] = {"bind": scenario.authoritative, "role": "authoritative"}
    if scenario.dns_delay:
        authoritative["delay"] = scenario.dns_delay
    auth.setdefault("dns", []).append(authoritative)
    if scenario.public_resolver:
        spec(side(scenario.public_resolver)).setdefault("dns", []).append(
            {"bind": scenario.public_resolver, "role": "resolver", "upstream": scenario.authoritative})
    for t in scenario.targets:
        if t.kind not in ("host", "control"):
            spec(side(t.address)).setdefault(t.kind, []).append(_entry(t))
    spec(side(scenario.blockpage)).setdefault("blockpage", []).append({"bind": scenario.blockpage, "port": 80})
    for isp, resolver in plan.resolvers.items():
        spec(plan.router(isp))["dns"] = [{"bind": resolver, "role": "resolver", "upstream": scenario.authoritative}]
    return specs

"""The lab's IP -> ASN/country table: what a geo-IP database would say about every lab address.

Probes use it to fill `probe_asn`/`probe_cc`/`resolver_asn`, the control helper for `ip_info`. `lab up` writes
it as ``ip-table.json`` in the lab's state directory; `lookup_ip` answers from the written file or from a plan.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from netvigil.lab.plan import Plan
from netvigil.lab.scenario import Scenario

__all__ = ["IpInfo", "load_ip_table", "lookup_ip", "make_ip_table", "write_ip_table"]


@dataclass(frozen=True, slots=True)
class IpInfo:
    prefix: str
    asn: int
    as_name: str
    cc: str
    role: str  # client | router | resolver | server | backbone | link
    isp: str | None = None
    region: str | None = None
    host: str | None = None  # namespace, or target id for servers

    @property
    def as_label(self) -> str:
        return f"AS{self.asn}"


def make_ip_table(plan: Plan, scenario: Scenario) -> list[IpInfo]:
    """One entry per lab address (most specific first), derived from the plan."""
    out: list[IpInfo] = []
    for isp in scenario.isps:
        for node in plan.clients(isp.id):
            out.append(IpInfo(f"{plan.client_ip(node.ns)}/32", isp.asn, isp.name, scenario.country, "client",
                              isp.id, node.region, node.ns))
        out.append(IpInfo(f"{plan.resolvers[isp.id]}/32", isp.asn, isp.name, scenario.country, "resolver",
                          isp.id, None, plan.router(isp.id)))
        for addr in plan.isp_addresses(isp.id)[1:]:
            if not any(e.prefix == f"{addr}/32" for e in out):
                out.append(IpInfo(f"{addr}/32", isp.asn, isp.name, scenario.country, "router", isp.id, None,
                                  plan.router(isp.id)))
    by_addr = {t.address: t.id for t in scenario.targets}
    by_addr.update({scenario.authoritative: "authoritative-dns", scenario.blockpage: "blockpage",
                    scenario.proxy: "transparent-proxy"})
    if scenario.public_resolver:
        by_addr[scenario.public_resolver] = "public-resolver"
    for addr, host in sorted(by_addr.items(), key=lambda kv: ipaddress.ip_address(kv[0])):
        if ipaddress.ip_address(addr) in ipaddress.ip_network("203.0.113.0/24"):
            out.append(IpInfo(f"{addr}/32", scenario.internet_asn, "Lab Internet", scenario.internet_country,
                              "server", None, None, host))
        else:
            asn = scenario.backbone_asn if addr == scenario.proxy else scenario.domestic_asn
            out.append(IpInfo(f"{addr}/32", asn, "Lab domestic hosting", scenario.country, "server", None, None,
                              host))
    out.append(IpInfo("203.0.113.0/24", scenario.internet_asn, "Lab Internet", scenario.internet_country, "server"))
    out.append(IpInfo("198.51.100.0/24", scenario.domestic_asn, "Lab domestic hosting", scenario.country, "server"))
    out.append(IpInfo("192.0.2.0/24", scenario.backbone_asn, scenario.backbone_name, scenario.country, "backbone"))
    return out


def lookup_ip(ip: str, table: list[IpInfo]) -> IpInfo | None:
    """Longest-prefix match of `ip` in `table`."""
    addr = ipaddress.ip_address(ip)
    best: IpInfo | None = None
    for entry in table:
        net = ipaddress.ip_network(entry.prefix)
        if addr in net and (best is None or net.prefixlen > ipaddress.ip_network(best.prefix).prefixlen):
            best = entry
    return best


def write_ip_table(path: Path, table: list[IpInfo]) -> None:
    path.write_text(json.dumps([asdict(e) for e in table], indent=1) + "\n", encoding="utf-8")


def load_ip_table(path: Path) -> list[IpInfo]:
    return [IpInfo(**row) for row in json.loads(path.read_text(encoding="utf-8"))]

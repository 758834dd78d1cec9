"""The address plan: which namespaces, veth links, addresses and routes a scenario needs (pure).

Shape (every arrow is a veth pair with a /30 from 192.0.2.0/24; no link ever reaches the host's namespace):

    client ── ISP router (resolver) ──┐
    client ── ISP router (resolver) ──┼── backbone (censor) ── internet (foreign servers, control helper)
                                      └──────────┴──────────── domestic (in-country servers, blockpage)

Server addresses are /32s on the loopback of the namespace that hosts them; the backbone holds host routes to
the domestic ones and a default route to the internet side, so "international" is exactly "leaves via the
backbone's `inet` interface".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netvigil.lab.scenario import LINK_RANGE, Scenario, ScenarioError

__all__ = ["Link", "Node", "Plan", "Route", "make_plan", "ns_prefix"]

DOMESTIC_NETS = ("192.0.2.0/24", "198.51.100.0/24")


def ns_prefix(lab: str) -> str:
    """Every namespace of lab `lab` starts with this; `down` removes by it."""
    return f"nv-{lab}-"


@dataclass(frozen=True, slots=True)
class Node:
    ns: str
    role: str  # backbone | internet | domestic | router | client
    isp: str | None = None
    client: str | None = None
    region: str | None = None
    host_addrs: tuple[str, ...] = ()  # /32s on loopback


@dataclass(frozen=True, slots=True)
class Link:
    a: str
    a_if: str
    a_ip: str
    b: str
    b_if: str
    b_ip: str
    prefixlen: int = 30


@dataclass(frozen=True, slots=True)
class Route:
    ns: str
    dst: str  # "default" or a prefix
    via: str


@dataclass(frozen=True, slots=True)
class Plan:
    lab: str
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    routes: tuple[Route, ...]
    resolvers: dict[str, str]  # ISP id -> resolver address (on the ISP router)
    isp_ifaces: dict[str, str]  # ISP id -> interface name in the backbone namespace
    forwarders: tuple[str, ...]  # namespaces that route (ip_forward=1)

    def node(self, ns: str) -> Node:
        for n in self.nodes:
            if n.ns == ns:
                return n
        raise KeyError(ns)

    @property
    def backbone(self) -> str:
        return ns_prefix(self.lab) + "bb"

    @property
    def internet(self) -> str:
        return ns_prefix(self.lab) + "inet"

    @property
    def domestic(self) -> str:
        return ns_prefix(self.lab) + "dom"

    def router(self, isp: str) -> str:
        return ns_prefix(self.lab) + isp

    def clients(self, isp: str | None = None, region: str | None = None) -> list[Node]:
        return [n for n in self.nodes if n.role == "client" and (isp is None or n.isp == isp)
                and (region is None or n.region == region)]

    def client_ip(self, ns: str) -> str:
        for link in self.links:
            if link.b == ns:
                return link.b_ip
        raise KeyError(ns)

    def client_ips(self, isp: str | None = None, regions: tuple[str, ...] = ()) -> list[str]:
        return [self.client_ip(n.ns) for n in self.clients(isp) if not regions or n.region in regions]

    def isp_addresses(self, isp: str) -> list[str]:
        """Every address that speaks for `isp` toward the backbone: its clients, router and resolver."""
        router = self.router(isp)
        out = [self.resolvers[isp]]
        for link in self.links:
            if link.b == router:
                out.append(link.b_ip)
            if link.a == router:
                out.append(link.a_ip)
                out.append(link.b_ip)
        return out


def make_plan(lab: str, scenario: Scenario) -> Plan:
    """Lay the scenario out on namespaces; deterministic, so every process derives the same plan."""
    if not lab.isalnum() or not lab.islower() or len(lab) > 8:
        raise ScenarioError(f"lab name {lab!r}: 1-8 lowercase letters/digits")
    pre = ns_prefix(lab)
    blocks = iter(LINK_RANGE.subnets(new_prefix=30))

    def pair() -> tuple[str, str]:
        try:
            net = next(blocks)
        except StopIteration:
            raise ScenarioError("too many ISPs/clients for 192.0.2.0/24 (64 /30 links)") from None
        hosts = list(net.hosts())
        return str(hosts[0]), str(hosts[1])

    bb, inet, dom = pre + "bb", pre + "inet", pre + "dom"
    links: list[Link] = []
    routes: list[Route] = []
    nodes: list[Node] = []

    def side_addrs(international: bool) -> list[str]:
        out = [t.address for t in scenario.targets if t.international == international]
        for addr in (scenario.authoritative, scenario.public_resolver, scenario.blockpage):
            if addr and (ipaddress.ip_address(addr) in ipaddress.ip_network("203.0.113.0/24")) == international:
                out.append(addr)
        return sorted(set(out), key=ipaddress.ip_address)

    a, b = pair()
    links.append(Link(bb, "inet", a, inet, "bb", b))
    routes.append(Route(bb, "default", b))
    routes += [Route(inet, net, a) for net in DOMESTIC_NETS]
    a, b = pair()
    links.append(Link(bb, "dom", a, dom, "bb", b))
    routes += [Route(dom, net, a) for net in (*DOMESTIC_NETS, "203.0.113.0/24")]
    domestic_addrs = side_addrs(False)
    routes += [Route(bb, f"{addr}/32", b) for addr in domestic_addrs]
    nodes += [Node(bb, "backbone", host_addrs=(scenario.proxy,)),
              Node(inet, "internet", host_addrs=tuple(side_addrs(True))),
              Node(dom, "domestic", host_addrs=tuple(domestic_addrs))]

    taken = {scenario.authoritative, scenario.blockpage, scenario.proxy, scenario.public_resolver,
             *(t.address for t in scenario.targets), *(i.resolver for i in scenario.isps)}
    spare = (str(ip) for ip in ipaddress.ip_network("198.51.100.0/24").hosts() if str(ip) not in taken
             and int(ip.packed[-1]) >= 10)
    resolvers: dict[str, str] = {}
    isp_ifaces: dict[str, str] = {}
    forwarders = [bb]
    for isp in scenario.isps:
        router = pre + isp.id
        resolver = isp.resolver or next(spare)
        resolvers[isp.id] = resolver
        iface = f"i-{isp.id}"
        isp_ifaces[isp.id] = iface
        a, b = pair()
        links.append(Link(bb, iface, a, router, "bb", b))
        routes.append(Route(router, "default", a))
        routes.append(Route(bb, f"{resolver}/32", b))
        nodes.append(Node(router, "router", isp=isp.id, host_addrs=(resolver,)))
        forwarders.append(router)
        for client in isp.clients:
            cns = f"{router}-{client.name}"
            ca, cb = pair()
            links.append(Link(router, f"c-{client.name}", ca, cns, "isp", cb))
            routes.append(Route(cns, "default", ca))
            routes.append(Route(bb, str(ipaddress.ip_interface(f"{ca}/30").network), b))
            nodes.append(Node(cns, "client", isp=isp.id, client=client.name, region=client.region))
    return Plan(lab, tuple(nodes), tuple(links), tuple(routes), resolvers, isp_ifaces, tuple(forwarders))

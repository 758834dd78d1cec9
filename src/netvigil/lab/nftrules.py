"""Render the censor's kernel state (one nft table and the shapers' qdiscs) from the policies active now (pure).

The censor daemon re-renders the whole table at every switch and loads it in one `nft -f` transaction, so the
kernel never holds a half-applied policy set. Connection tracking survives the reload: connections already
redirected to the DPI relay stay with it.

Hook placement, and why:
- `pre` (prerouting, priority -150: before NAT): IP/TCP techniques and outages see the client's packet with the
  destination it chose, before the redirect to the relay rewrites it. `reject` works here on this kernel.
- `post` (postrouting): download-direction policers and outage drops toward an ISP; `ct original ip daddr` names
  the server both for routed flows and for flows the relay terminates.
- `nat_pre`: the static redirect of TLS/HTTP flows to the relay and of DNS queries to the DNS interceptor.

Shaping (an access line, whole-ISP throttling) queues like a real shaper with flow queueing, not like one FIFO:
each connection's first `NEW_FLOW_BYTES` toward the client (handshakes, DNS answers, a test helper's reply) go
ahead of bulk transfers, as fq_codel serves new flows first. With one FIFO behind a 2 Mbit/s throttle, forty page
downloads held every SYN-ACK and every control answer for seconds, so probes on a throttled ISP lost their
controls and read handshake timeouts as blocking. This kernel has no fq_codel or sfq: tbf sets the rate, an htb
below it with two classes orders the packets, and an nft rule sets a packet's priority (conntrack byte accounting
on) to the new-flow class.
"""

from __future__ import annotations

from dataclasses import dataclass

from netvigil.lab.plan import DOMESTIC_NETS, Plan
from netvigil.lab.scenario import Policy, Scenario, Technique

__all__ = ["TABLE", "Interception", "access_lines", "make_interception", "render_ruleset", "render_shaper", "render_shaping"]

TABLE = "netvigil"
RELAY_PORT = 10443
DNS_PORT_BASE = 10053
NEW_FLOW_BYTES = 8000        # a connection's first bytes toward the client that jump the shaper's bulk queue
_HTB = "10"                  # the htb qdisc's handle below tbf; its classes are 10:1 (the root), 10:10, 10:20
_NEW_FLOW_MINOR, _BULK_MINOR = "10", "20"
NEW_FLOW_CLASS = f"{_HTB}:{_NEW_FLOW_MINOR}"  # htb class of those packets (set as the packet's priority by nft)
BULK_CLASS = f"{_HTB}:{_BULK_MINOR}"          # htb's default class: everything else
SHAPER_QUEUE_SECONDS = 0.2   # each class queues at most this much traffic at the shaped rate, then drops


@dataclass(frozen=True, slots=True)
class Interception:
    """Which flows go to userspace: (address, port) for the TLS/HTTP relay, address -> port for DNS."""

    relay_port: int
    tcp: tuple[tuple[str, int], ...]
    dns: dict[str, int]


def make_interception(scenario: Scenario) -> Interception:
    """Intercept only what the scenario can ever need: the relay sees every lab TLS/HTTP server only if some
    policy is relay-enforced, so a `baseline` lab runs on pure kernel forwarding."""
    enforcers = {p.technique.enforcer for p in scenario.policies}
    tcp: list[tuple[str, int]] = []
    if "relay" in enforcers:
        for t in scenario.targets:
            tcp += [(t.address, port) for port in (*t.tls_ports, *t.http_ports)]
    dns: dict[str, int] = {}
    if "dns" in enforcers:
        servers = [scenario.authoritative] + ([scenario.public_resolver] if scenario.public_resolver else [])
        dns = {addr: DNS_PORT_BASE + i for i, addr in enumerate(servers)}
    return Interception(RELAY_PORT, tuple(sorted(set(tcp))), dns)


def _set(items: list[str] | tuple[str, ...]) -> str:
    return "{ " + ", ".join(items) + " }"


def _quoted(items: list[str]) -> str:
    return _set([f'"{i}"' for i in items])


def _addresses(scenario: Scenario, target_ids: tuple[str, ...]) -> list[str]:
    return sorted({scenario.target(t).address for t in target_ids})


def _rate(bps: int) -> str:
    return f"{max(bps // 8, 1)} bytes/second burst {max(bps // 8 // 4, 3000)} bytes"


def _scopes(p: Policy, plan: Plan) -> list[tuple[str, str]]:
    """(match toward the backbone, match toward the ISP) per ISP of the policy: a rate limit is one token
    bucket per nft rule, so every ISP gets its own rule and its own bucket."""
    out = []
    for isp in p.isps:
        if p.regions:
            clients = plan.client_ips(isp, p.regions)
            if clients:
                out.append((f"ip saddr {_set(clients)}", f"ip daddr {_set(clients)}"))
        else:
            iface = plan.isp_ifaces[isp]
            out.append((f'iifname "{iface}"', f'oifname "{iface}"'))
    return out


def _policy_rules(p: Policy, plan: Plan, scenario: Scenario) -> tuple[list[str], list[str]]:
    """(prerouting rules, postrouting rules) for one nft-enforced policy."""
    addrs = _set(_addresses(scenario, p.targets)) if p.targets else ""
    ports = f" tcp dport {_set([str(x) for x in p.ports])}" if p.ports else ""
    allow = _addresses(scenario, p.allow)
    if allow:
        allow.append(scenario.authoritative)  # an allow-listed name must still resolve
    keep = f" ip daddr != {_set(allow)}" if allow else ""
    keep_post = f" ct original ip daddr != {_set(allow)}" if allow else ""
    home = _set(list(DOMESTIC_NETS))
    t = p.technique
    pre: list[str] = []
    post: list[str] = []
    for src, dst in _scopes(p, plan):
        if t is Technique.IP_BLACKHOLE:
            pre.append(f"{src} ip daddr {addrs}{ports} drop")
        elif t is Technique.IP_REFUSE:
            pre.append(f"{src} ip daddr {addrs} meta l4proto tcp{ports} tcp flags & (syn | ack) == syn "
                       "reject with tcp reset")
        elif t is Technique.IP_RST:
            pre.append(f"{src} ip daddr {addrs} meta l4proto tcp{ports} tcp flags & psh == psh "
                       "reject with tcp reset")
        elif t is Technique.THROTTLE_IP:
            pports = f" ct original proto-dst {_set([str(x) for x in p.ports])}" if p.ports else ""
            post.append(f"{dst} ct original ip daddr {addrs}{pports} limit rate over {_rate(p.rate_bps)} drop")
        elif t is Technique.THROTTLE_ISP:
            # Download is shaped by tbf (render_shaping) unless only some regions are throttled; upload is policed.
            pre.append(f"{src} limit rate over {_rate(p.rate_bps)} drop")
            if p.regions:
                post.append(f"{dst} limit rate over {_rate(p.rate_bps)} drop")
        elif t in (Technique.OUTAGE_ISP, Technique.OUTAGE_REGION):
            pre.append(f"{src}{keep} drop")
            post.append(f"{dst}{keep_post} drop")
        elif t is Technique.OUTAGE_INTERNATIONAL:
            pre.append(f"{src} ip daddr != {home}{keep} drop")
            post.append(f"{dst} ct original ip daddr != {home}{keep_post} drop")
    return pre, post


def render_ruleset(plan: Plan, scenario: Scenario, active: tuple[Policy, ...], icpt: Interception) -> str:
    """The full `nft -f` input that replaces the censor table atomically."""
    pre: list[str] = []
    post: list[str] = []
    for p in active:
        if p.technique.enforcer in ("nft", "tc"):
            r_pre, r_post = _policy_rules(p, plan, scenario)
            pre += [f"{r} comment \"{p.id}\"" for r in r_pre]
            post += [f"{r} comment \"{p.id}\"" for r in r_post]
    ifaces = _quoted(list(plan.isp_ifaces.values()))
    shaped = [i for i, rate in render_shaping(plan, active, access_lines(scenario)).items() if rate]
    if shaped:
        post.append(f"oifname {_quoted(sorted(shaped))} ct reply bytes < {NEW_FLOW_BYTES} "
                    f"meta priority set {NEW_FLOW_CLASS} comment \"new flows first\"")
    nat: list[str] = []
    if icpt.tcp:
        pairs = _set([f"{a} . {port}" for a, port in icpt.tcp])
        nat.append(f"iifname {ifaces} ip daddr . tcp dport {pairs} redirect to :{icpt.relay_port}")
    if icpt.dns:
        dmap = _set([f"{a} : {port}" for a, port in icpt.dns.items()])
        nat.append(f"iifname {ifaces} ip daddr {_set(list(icpt.dns))} udp dport 53 redirect to : ip daddr map {dmap}")
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]

    def chain(name: str, hook: str, prio: str, rules: list[str]) -> None:
        lines.append(f"  chain {name} {{")
        lines.append(f"    type {'nat' if name.startswith('nat') else 'filter'} hook {hook} priority {prio}; "
                     "policy accept;")
        lines.extend(f"    {r}" for r in rules)
        lines.append("  }")

    chain("pre", "prerouting", "-150", pre)
    chain("post", "postrouting", "0", post)
    chain("nat_pre", "prerouting", "dstnat", nat)
    lines.append("}")
    return "\n".join(lines) + "\n"


def access_lines(scenario: Scenario) -> dict[str, int | None]:
    """ISP id -> its access line's rate (bit/s), None where the scenario gives it none."""
    return {i.id: i.line_bps for i in scenario.isps}


def render_shaping(plan: Plan, active: tuple[Policy, ...], lines: dict[str, int | None] | None = None,
                   ) -> dict[str, int | None]:
    """Backbone interface -> shaper rate (bit/s), None where no shaper should be: the ISP's access line (`lines`, ISP
    id -> bit/s) or whole-ISP throttling, whichever is slower."""
    out: dict[str, int | None] = {iface: (lines or {}).get(isp) for isp, iface in plan.isp_ifaces.items()}
    for p in active:
        if p.technique is Technique.THROTTLE_ISP and not p.regions:
            for isp in p.isps:
                iface = plan.isp_ifaces[isp]
                out[iface] = min(filter(None, (out[iface], p.rate_bps)))
    return out


def render_shaper(iface: str, rate: int) -> list[list[str]]:
    """`tc` argv lists that build `iface`'s shaper at `rate` bit/s: tbf sets the rate (and splits GSO packets, so
    the queues hold real packets), an htb below it serves the new-flow class before the bulk class, each class
    with a byte FIFO of `SHAPER_QUEUE_SECONDS` at that rate. htb's own rates are far above `rate`: it only orders."""
    burst = max(rate // 8 // 10, 16_000)
    limit = max(int(rate / 8 * SHAPER_QUEUE_SECONDS), 16_000)
    top = f"{10 * rate}bit"
    dev = ["dev", iface]

    def leaf(minor: str, prio: int) -> list[list[str]]:  # class 10:<minor>, its FIFO 1<minor>:
        return [["tc", "class", "add", *dev, "parent", f"{_HTB}:1", "classid", f"{_HTB}:{minor}", "htb", "rate",
                 top, "prio", str(prio), "quantum", "1514"],
                ["tc", "qdisc", "add", *dev, "parent", f"{_HTB}:{minor}", "handle", f"1{minor}:", "bfifo",
                 "limit", str(limit)]]

    return [
        ["tc", "qdisc", "add", *dev, "root", "handle", "1:", "tbf", "rate", f"{rate}bit", "burst", str(burst),
         "latency", f"{int(SHAPER_QUEUE_SECONDS * 1000)}ms"],
        ["tc", "qdisc", "add", *dev, "parent", "1:1", "handle", f"{_HTB}:", "htb", "default", _BULK_MINOR],
        ["tc", "class", "add", *dev, "parent", f"{_HTB}:", "classid", f"{_HTB}:1", "htb", "rate", top],
        *leaf(_NEW_FLOW_MINOR, 0),
        *leaf(_BULK_MINOR, 1),
    ]

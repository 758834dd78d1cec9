"""The server spec: the JSON file the topology writes and `python -m netvigil.lab.servers` reads.

Parsing is strict (unknown keys are errors) so a typo in a lab definition fails loudly at start-up
instead of silently running a lab without the server the scenario expects.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "BEHAVIOURS",
    "BlockpageSpec",
    "DnsSpec",
    "LargefileSpec",
    "ServersSpec",
    "SpecError",
    "TlsEchoSpec",
    "TorSpec",
    "VpnSpec",
    "WebSpec",
    "load_spec",
    "parse_spec",
]

BEHAVIOURS = (
    "normal",
    "expired_cert",
    "wrong_host_cert",
    "untrusted_cert",
    "broken_redirect",
    "redirect_loop",
    "cloudflare_challenge",
)
VPN_KINDS = ("wireguard", "openvpn-udp", "openvpn-tcp")
MAX_DELAY = 5.0  # emulated latency must stay well below the HTTP handler and DNS timeouts


class SpecError(ValueError):
    """The spec cannot be run; the message is one line meant for stderr."""


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class DnsSpec(_Strict, frozen=True):
    bind: str
    role: Literal["authoritative", "resolver"]
    port: int = 53
    upstream: str | None = None
    upstream_port: int = 53
    ttl: int = 300
    delay: float = 0.0  # seconds to wait before each answer: emulated path latency


class WebSpec(_Strict, frozen=True):
    bind: str
    names: list[str]
    site: str
    http_port: int | list[int] | None = 80
    https_port: int | list[int] | None = 443
    behaviour: str = "normal"
    # "redirect": plain HTTP answers 301 to https:// as the real services do; "serve": HTTP serves the page.
    http_mode: Literal["redirect", "serve"] | None = None
    # Seconds to wait before each response head (HTTP and HTTPS): server think time standing in for path
    # latency. It cannot delay the TCP or TLS handshakes.
    delay: float = 0.0

    @property
    def http_ports(self) -> list[int]:
        return _ports(self.http_port)

    @property
    def https_ports(self) -> list[int]:
        return _ports(self.https_port)


class TlsEchoSpec(_Strict, frozen=True):
    bind: str
    port: int
    names: list[str]


class TorSpec(_Strict, frozen=True):
    bind: str
    or_port: int = 9001
    dir_port: int = 9030
    nickname: str = "labauth"


class LargefileSpec(_Strict, frozen=True):
    bind: str
    names: list[str]
    http_port: int | None = 80
    https_port: int | None = 443
    size: int = 50_000_000


class VpnSpec(_Strict, frozen=True):
    bind: str
    kind: str
    port: int
    private_key: str | None = None
    peers: list[str] = []
    preshared_key: str | None = None


class BlockpageSpec(_Strict, frozen=True):
    bind: str
    port: int = 80
    status: int = 200
    # HTTPS for clients whose DNS was forged to the blockpage: a valid cert for BLOCKPAGE_HOST, so
    # the probe sees a hostname mismatch, as with most ISP blockpages.
    https_port: int | None = None


class ServersSpec(_Strict, frozen=True):
    state_dir: str
    ca_dir: str
    zones: dict[str, list[str]] = {}
    dns: list[DnsSpec] = []
    web: list[WebSpec] = []
    tls_echo: list[TlsEchoSpec] = []
    tor: list[TorSpec] = []
    largefile: list[LargefileSpec] = []
    vpn: list[VpnSpec] = []
    blockpage: list[BlockpageSpec] = []

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def ca_path(self) -> Path:
        return Path(self.ca_dir)


def _ports(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


def load_spec(path: str | Path) -> ServersSpec:
    """Read and validate a spec file; every failure becomes a one-line `SpecError`."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror or exc}") from exc
    return parse_spec(raw)


def parse_spec(raw: bytes | str) -> ServersSpec:
    try:
        spec = msgspec.json.decode(raw, type=ServersSpec)
    except msgspec.ValidationError as exc:
        raise SpecError(f"invalid spec: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise SpecError(f"spec is not valid JSON: {exc}") from exc
    _check(spec)
    return spec


def _check(spec: ServersSpec) -> None:
    """Semantic checks msgspec cannot express: addresses, ports, behaviours, sites."""
    from netvigil.lab.servers.site import SITES  # local: site.py is large and only needed here

    for name, addrs in spec.zones.items():
        for addr in addrs:
            _ip(addr, f"zones[{name!r}]")
    sections: dict[str, list] = {
        "dns": spec.dns, "web": spec.web, "tls_echo": spec.tls_echo, "tor": spec.tor,
        "largefile": spec.largefile, "vpn": spec.vpn, "blockpage": spec.blockpage,
    }
    for section, entries in sections.items():
        for i, entry in enumerate(entries):
            where = f"{section}[{i}]"
            _ip(entry.bind, f"{where}.bind")
            for field in ("port", "http_port", "https_port", "or_port", "dir_port", "upstream_port"):
                value = getattr(entry, field, None)
                for port in _ports(value):
                    if not 0 < port < 65536:
                        raise SpecError(f"invalid spec: {where}.{field}: port {port} out of range")
    for section, entries in (("dns", spec.dns), ("web", spec.web)):
        for i, entry in enumerate(entries):
            if not 0 <= entry.delay <= MAX_DELAY:
                raise SpecError(f"invalid spec: {section}[{i}].delay: {entry.delay} s is not between 0 and "
                                f"{MAX_DELAY:g}")
    for i, d in enumerate(spec.dns):
        if d.role == "resolver":
            if not d.upstream:
                raise SpecError(f"invalid spec: dns[{i}]: a resolver needs 'upstream'")
            _ip(d.upstream, f"dns[{i}].upstream")
    for i, w in enumerate(spec.web):
        if w.site not in SITES:
            raise SpecError(f"invalid spec: web[{i}].site: unknown site {w.site!r} (known: {', '.join(sorted(SITES))})")
        if not (w.behaviour in BEHAVIOURS or w.behaviour.startswith("redirect_to:") and len(w.behaviour) > 12):
            raise SpecError(f"invalid spec: web[{i}].behaviour: unknown behaviour {w.behaviour!r}")
        if not w.names:
            raise SpecError(f"invalid spec: web[{i}].names: at least one name is needed")
    for i, t in enumerate(spec.tls_echo):
        if not t.names:
            raise SpecError(f"invalid spec: tls_echo[{i}].names: at least one name is needed")
    for i, lf in enumerate(spec.largefile):
        if lf.size < 0:
            raise SpecError(f"invalid spec: largefile[{i}].size must be >= 0")
    for i, v in enumerate(spec.vpn):
        if v.kind not in VPN_KINDS:
            raise SpecError(f"invalid spec: vpn[{i}].kind: unknown kind {v.kind!r} (known: {', '.join(VPN_KINDS)})")
    for i, b in enumerate(spec.blockpage):
        if not 100 <= b.status <= 599:
            raise SpecError(f"invalid spec: blockpage[{i}].status {b.status} is not an HTTP status")
    _check_sockets(spec)


def _check_sockets(spec: ServersSpec) -> None:
    """Two services on one (address, protocol, port) cannot both bind: say which, before trying."""
    taken: dict[tuple[str, str, int], str] = {}

    def claim(bind: str, proto: str, port: int, who: str) -> None:
        key = (str(ipaddress.ip_address(bind)), proto, port)
        if key in taken:
            raise SpecError(f"invalid spec: {who} and {taken[key]} both use {bind} {proto}/{port}")
        taken[key] = who

    for i, d in enumerate(spec.dns):
        claim(d.bind, "udp", d.port, f"dns[{i}]")
        claim(d.bind, "tcp", d.port, f"dns[{i}]")
    for i, w in enumerate(spec.web):
        for port in w.http_ports + w.https_ports:
            claim(w.bind, "tcp", port, f"web[{i}]")
    for i, t in enumerate(spec.tls_echo):
        claim(t.bind, "tcp", t.port, f"tls_echo[{i}]")
    for i, tor in enumerate(spec.tor):
        claim(tor.bind, "tcp", tor.or_port, f"tor[{i}]")
        claim(tor.bind, "tcp", tor.dir_port, f"tor[{i}]")
    for i, lf in enumerate(spec.largefile):
        for port in _ports(lf.http_port) + _ports(lf.https_port):
            claim(lf.bind, "tcp", port, f"largefile[{i}]")
    for i, v in enumerate(spec.vpn):
        claim(v.bind, "tcp" if v.kind == "openvpn-tcp" else "udp", v.port, f"vpn[{i}]")
    for i, b in enumerate(spec.blockpage):
        for port in [b.port, *_ports(b.https_port)]:
            claim(b.bind, "tcp", port, f"blockpage[{i}]")


def _ip(value: str, where: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise SpecError(f"invalid spec: {where}: {value!r} is not an IP address") from None

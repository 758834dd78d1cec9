"""Scenarios: the lab's script of ISPs, targets and censor policies over scenario time.

A scenario is pure data read from TOML (``scenarios/<name>.toml``). Parsing validates everything a running
lab would otherwise discover late (unknown target ids, addresses outside the documentation ranges, private
ASNs), so ``netvigil lab up`` fails before it touches the kernel.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "Client",
    "Isp",
    "Policy",
    "Scenario",
    "ScenarioError",
    "Target",
    "Technique",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
    "scenario_path",
]

# Lab addresses come only from the three documentation ranges (RFC 5737); 192.0.2.0/24 is kept for the
# topology's own links and client hosts, the other two for the hosts a scenario declares.
LINK_RANGE = ipaddress.ip_network("192.0.2.0/24")
HOST_RANGES = (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24"))
INTERNET_RANGE = ipaddress.ip_network("203.0.113.0/24")
PRIVATE_ASNS = range(64512, 65535)

_ID = re.compile(r"^[a-z][a-z0-9]{0,9}$")  # ISP ids end up in interface names (15 chars max)
_CLIENT = re.compile(r"^[a-z][a-z0-9]{0,5}$")
_TARGET = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_DURATION = re.compile(r"^\+(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class ScenarioError(ValueError):
    """The scenario file cannot be run; the message names the offending entry."""


class Technique(StrEnum):
    """What the censor does. The prefix is the layer, which decides who enforces it (see `enforcer`)."""

    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_SERVFAIL = "dns_servfail"
    DNS_NOANSWER = "dns_noanswer"
    DNS_FORGE = "dns_forge"
    DNS_DROP = "dns_drop"
    IP_BLACKHOLE = "ip_blackhole"
    IP_RST = "ip_rst"
    IP_REFUSE = "ip_refuse"
    TLS_DROP = "tls_drop"
    TLS_RST = "tls_rst"
    TLS_FIN = "tls_fin"
    HTTP_BLOCKPAGE = "http_blockpage"
    HTTP_RST = "http_rst"
    HTTP_DROP = "http_drop"
    HTTP_FIN = "http_fin"
    THROTTLE_SNI = "throttle_sni"
    THROTTLE_IP = "throttle_ip"
    THROTTLE_ISP = "throttle_isp"
    OUTAGE_ISP = "outage_isp"
    OUTAGE_REGION = "outage_region"
    OUTAGE_INTERNATIONAL = "outage_international"

    @property
    def layer(self) -> str:
        return self.value.split("_", 1)[0]

    @property
    def enforcer(self) -> str:
        """`dns` (intercepting responder), `relay` (transparent DPI relay), `nft` or `tc` (kernel)."""
        if self.layer == "dns":
            return "dns"
        if self.layer in ("tls", "http") or self is Technique.THROTTLE_SNI:
            return "relay"
        if self is Technique.THROTTLE_ISP:
            return "tc"
        return "nft"

    @property
    def needs_targets(self) -> bool:
        return self.layer not in ("outage",) and self is not Technique.THROTTLE_ISP


TARGET_KINDS = ("web", "tls_echo", "tor", "largefile", "vpn", "control", "host")
# A `control` target runs netvigil's control helper twice: with TLS on 443 and in plain HTTP on 80. Its
# `server` table may tune the helper's limits (requests per minute, concurrent requests, per-request timeout,
# seconds an answer is shared between identical requests).
CONTROL_HTTPS_PORT = 443
CONTROL_HTTP_PORT = 80
CONTROL_SERVER_KEYS = {"rate": (int,), "max_concurrency": (int,), "timeout": (int, float),
                       "share_seconds": (int, float)}
MAX_DELAY = 5.0  # seconds of emulated latency; beyond this the servers' own timeouts would fire first

# Forged DNS answers by keyword (OONI's QA uses the same three families: a bogon, localhost, a blockpage).
FORGE_KEYWORDS = {"bogon": "10.10.34.35", "localhost": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    region: str = "default"


@dataclass(frozen=True, slots=True)
class Isp:
    id: str
    name: str
    asn: int
    clients: tuple[Client, ...]
    kind: str = "fixed"  # fixed | mobile: STOP's affected_network
    resolver: str | None = None  # None: the plan assigns one
    line_bps: int | None = None  # the access line's rate (not censorship: never in the ground truth); None: unshaped


@dataclass(frozen=True, slots=True)
class Target:
    """A host the censor can aim at: names, one address, and the server (if any) that answers there.

    `kind` is a servers-spec section (web, tls_echo, tor, largefile, vpn), `control` (netvigil's real control
    helper, on 443 with TLS and on 80 without) or `host` (an address with nothing started by the lab: a down
    site, or a place where something outside the lab runs).
    """

    id: str
    names: tuple[str, ...]
    address: str
    kind: str = "web"
    dns: bool = True  # False: the name is absent from the zones (NXDOMAIN for real)
    server: Mapping[str, Any] = field(default_factory=dict)

    @property
    def international(self) -> bool:
        return ipaddress.ip_address(self.address) in INTERNET_RANGE

    @property
    def tls_ports(self) -> tuple[int, ...]:
        s = self.server
        if self.kind in ("web", "largefile"):
            return _ports(s.get("https_port", 443))
        if self.kind == "control":
            return (CONTROL_HTTPS_PORT,)
        if self.kind == "tls_echo":
            return _ports(s.get("port"))
        if self.kind == "tor":
            return _ports(s.get("or_port", 9001))
        return ()

    @property
    def http_ports(self) -> tuple[int, ...]:
        s = self.server
        if self.kind in ("web", "largefile"):
            return _ports(s.get("http_port", 80))
        if self.kind == "control":
            return (CONTROL_HTTP_PORT,)
        if self.kind == "tor":
            return _ports(s.get("dir_port", 9030))
        return ()

    def matches_name(self, name: str, mode: str = "suffix") -> bool:
        """Does a DNS name, SNI or Host belong to this target? `mode` mimics how censors match names."""
        name = name.lower().rstrip(".")
        for own in self.names:
            if mode == "exact" and name == own:
                return True
            if mode == "suffix" and (name == own or name.endswith("." + own)):
                return True
            if mode == "substring" and own in name:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Policy:
    """One censor rule in force on `isps` (and optionally only `regions`) from `start` until `end`."""

    id: str
    technique: Technique
    targets: tuple[str, ...]
    isps: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime | None = None
    regions: tuple[str, ...] = ()
    rate_bps: int | None = None  # throttling: bits per second
    answer: str | None = None  # dns_forge: bogon | localhost | blockpage | proxy | an IPv4 address
    allow: tuple[str, ...] = ()  # outages: target ids still reachable (allow-list)
    ports: tuple[int, ...] = ()  # ip_*: restrict to these TCP ports
    path: str | None = None  # http_*: only requests whose target contains this string
    match: str = "suffix"  # name matching: exact | suffix | substring
    note: str = ""

    def active_at(self, t: dt.datetime) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    country: str
    start: dt.datetime
    end: dt.datetime
    speed: float
    backbone_asn: int
    backbone_name: str
    internet_asn: int
    internet_country: str
    domestic_asn: int
    authoritative: str
    public_resolver: str | None
    blockpage: str
    proxy: str
    isps: tuple[Isp, ...]
    targets: tuple[Target, ...]
    policies: tuple[Policy, ...]
    dns_delay: float = 0.0  # seconds the authoritative server waits before each answer (emulated latency)

    def target(self, target_id: str) -> Target:
        for t in self.targets:
            if t.id == target_id:
                return t
        raise KeyError(target_id)

    def isp(self, isp_id: str) -> Isp:
        for i in self.isps:
            if i.id == isp_id:
                return i
        raise KeyError(isp_id)

    def change_points(self) -> list[dt.datetime]:
        """Scenario times at which the set of active policies may change, in order, within [start, end]."""
        points = {self.start}
        for p in self.policies:
            for t in (p.start, p.end):
                if t is not None and self.start <= t <= self.end:
                    points.add(t)
        return sorted(points)

    def active_policies(self, t: dt.datetime) -> tuple[Policy, ...]:
        return tuple(p for p in self.policies if p.active_at(t))


def _ports(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


def _as_utc(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise ScenarioError(f"{where}: expected a TOML date-time, got {value!r}")


def _when(value: Any, start: dt.datetime, where: str) -> dt.datetime:
    """A policy time: a TOML date-time, or an offset from the scenario start like "+1d6h"."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m or not any(m.groups()):
            raise ScenarioError(f"{where}: {value!r} is neither a date-time nor an offset like '+1d6h30m'")
        d, h, mi, s = (int(g or 0) for g in m.groups())
        return start + dt.timedelta(days=d, hours=h, minutes=mi, seconds=s)
    return _as_utc(value, where)


def _host_ip(value: Any, where: str) -> str:
    try:
        ip = ipaddress.IPv4Address(value)
    except (ValueError, ipaddress.AddressValueError):
        raise ScenarioError(f"{where}: {value!r} is not an IPv4 address") from None
    if not any(ip in r for r in HOST_RANGES):
        raise ScenarioError(f"{where}: {ip} is outside 198.51.100.0/24 and 203.0.113.0/24")
    return str(ip)


def _asn(value: Any, where: str) -> int:
    if not isinstance(value, int) or value not in PRIVATE_ASNS:
        raise ScenarioError(f"{where}: ASN {value!r} is not a private ASN (64512-65534)")
    return value


def _rate(value: Any, where: str) -> int:
    """'130kbit', '2mbit', or an int in bit/s."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)", str(value).strip().lower())
    if not m:
        raise ScenarioError(f"{where}: rate {value!r} is not like '130kbit' or '2mbit'")
    return int(float(m.group(1)) * {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m.group(2)])


def _tuple_of_str(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(f"{where}: expected a list of strings")
    return tuple(value)


def _delay(value: Any, where: str) -> float:
    """Emulated latency in seconds: a number from 0 to MAX_DELAY."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY:
        raise ScenarioError(f"{where}: {value!r} is not a delay in seconds between 0 and {MAX_DELAY:g}")
    return float(value)


def _check_control_server(server: Mapping[str, Any], names: tuple[str, ...], where: str) -> None:
    """A control target needs a name for its certificate; `server` only tunes the helper's limits."""
    if not names:
        raise ScenarioError(f"{where}: a control target needs at least one name (its TLS certificate's)")
    _unknown_keys(server, set(CONTROL_SERVER_KEYS), f"{where}.server")
    for key, value in server.items():
        if isinstance(value, bool) or not isinstance(value, CONTROL_SERVER_KEYS[key]) or value <= 0:
            raise ScenarioError(f"{where}.server.{key}: {value!r} must be a positive number")


def _unknown_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = set(table) - allowed
    if extra:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")


def parse_scenario(doc: Mapping[str, Any]) -> Scenario:
    """Validate a decoded TOML document into a `Scenario` (pure: no file or network access)."""
    _unknown_keys(doc, {"scenario", "backbone", "internet", "domestic", "dns", "censor", "isps", "targets",
                        "policies"}, "scenario file")
    head = doc.get("scenario", {})
    _unknown_keys(head, {"name", "description", "country", "start", "end", "speed"}, "[scenario]")
    start = _as_utc(head.get("start", dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), "[scenario].start")
    end = _when(head.get("end", "+1d"), start, "[scenario].end")
    if end <= start:
        raise ScenarioError("[scenario]: end must be after start")
    speed = float(head.get("speed", 1.0))
    if speed <= 0:
        raise ScenarioError("[scenario].speed must be > 0")
    backbone = doc.get("backbone", {})
    internet = doc.get("internet", {})
    domestic = doc.get("domestic", {})
    dns = doc.get("dns", {})
    censor = doc.get("censor", {})
    _unknown_keys(dns, {"authoritative", "public_resolver", "delay"}, "[dns]")
    dns_delay = _delay(dns.get("delay", 0.0), "[dns].delay")
    _unknown_keys(censor, {"blockpage", "proxy"}, "[censor]")

    isps: list[Isp] = []
    asns: set[int] = set()
    for i, raw in enumerate(doc.get("isps", [])):
        where = f"isps[{i}]"
        _unknown_keys(raw, {"id", "name", "asn", "kind", "resolver", "clients", "line"}, where)
        isp_id = raw.get("id", "")
        if not _ID.match(isp_id):
            raise ScenarioError(f"{where}.id {isp_id!r}: use 1-10 lowercase letters/digits, starting with a letter")
        asn = _asn(raw.get("asn"), f"{where}.asn")
        if asn in asns:
            raise ScenarioError(f"{where}: ASN {asn} used twice")
        asns.add(asn)
        clients_raw = raw.get("clients", [{"name": "c1"}])
        if isinstance(clients_raw, int):
            clients_raw = [{"name": f"c{n + 1}"} for n in range(clients_raw)]
        clients = []
        for c in clients_raw:
            _unknown_keys(c, {"name", "region"}, f"{where}.clients")
            if not _CLIENT.match(c.get("name", "")):
                raise ScenarioError(f"{where}.clients: name {c.get('name')!r} must be 1-6 lowercase letters/digits")
            clients.append(Client(c["name"], c.get("region", "default")))
        if not clients or len({c.name for c in clients}) != len(clients):
            raise ScenarioError(f"{where}: needs at least one client and unique client names")
        resolver = raw.get("resolver")
        line = raw.get("line")
        isps.append(Isp(isp_id, raw.get("name", isp_id), asn, tuple(clients), raw.get("kind", "fixed"),
                        _host_ip(resolver, f"{where}.resolver") if resolver else None,
                        _rate(line, f"{where}.line") if line is not None else None))
    if len({i.id for i in isps}) != len(isps):
        raise ScenarioError("isps: ids must be unique")
    if not isps:
        raise ScenarioError("a scenario needs at least one ISP")

    targets: list[Target] = []
    for i, raw in enumerate(doc.get("targets", [])):
        where = f"targets[{i}]"
        _unknown_keys(raw, {"id", "names", "address", "kind", "dns", "server"}, where)
        tid = raw.get("id", "")
        if not _TARGET.match(tid):
            raise ScenarioError(f"{where}.id {tid!r} is not a valid target id")
        kind = raw.get("kind", "web")
        if kind not in TARGET_KINDS:
            raise ScenarioError(f"{where}.kind {kind!r}: one of {', '.join(TARGET_KINDS)}")
        names = tuple(n.lower() for n in _tuple_of_str(raw.get("names"), f"{where}.names"))
        server = dict(raw.get("server", {}))
        if kind == "control":
            _check_control_server(server, names, f"{where} ({tid})")
        if "delay" in server:
            if kind != "web":
                raise ScenarioError(f"{where}.server.delay: only web targets take a response delay")
            _delay(server["delay"], f"{where}.server.delay")
        targets.append(Target(tid, names, _host_ip(raw.get("address"), f"{where}.address"), kind,
                              bool(raw.get("dns", True)), server))
    target_ids = {t.id for t in targets}
    if len(target_ids) != len(targets):
        raise ScenarioError("targets: ids must be unique")

    isp_ids = tuple(i.id for i in isps)
    regions = {c.region for i in isps for c in i.clients}
    policies: list[Policy] = []
    for i, raw in enumerate(doc.get("policies", [])):
        where = f"policies[{i}]"
        _unknown_keys(raw, {"id", "technique", "targets", "isps", "regions", "start", "end", "rate", "answer",
                            "allow", "ports", "path", "match", "note"}, where)
        try:
            technique = Technique(raw.get("technique"))
        except ValueError:
            raise ScenarioError(f"{where}.technique {raw.get('technique')!r}: one of "
                                f"{', '.join(t.value for t in Technique)}") from None
        pid = raw.get("id", f"p{i}")
        tids = _tuple_of_str(raw.get("targets"), f"{where}.targets")
        allow = _tuple_of_str(raw.get("allow"), f"{where}.allow")
        for tid in tids + allow:
            if tid not in target_ids:
                raise ScenarioError(f"{where} ({pid}): unknown target {tid!r}")
        if technique.needs_targets and not tids:
            raise ScenarioError(f"{where} ({pid}): {technique} needs targets")
        p_isps = _tuple_of_str(raw.get("isps", ["*"]), f"{where}.isps")
        if p_isps == ("*",):
            p_isps = isp_ids
        for isp_id in p_isps:
            if isp_id not in isp_ids:
                raise ScenarioError(f"{where} ({pid}): unknown ISP {isp_id!r}")
        p_regions = _tuple_of_str(raw.get("regions"), f"{where}.regions")
        for r in p_regions:
            if r not in regions:
                raise ScenarioError(f"{where} ({pid}): no client is in region {r!r}")
        if technique is Technique.OUTAGE_REGION and not p_regions:
            raise ScenarioError(f"{where} ({pid}): outage_region needs regions")
        rate = raw.get("rate")
        if technique.layer == "throttle" and rate is None:
            raise ScenarioError(f"{where} ({pid}): {technique} needs a rate like '130kbit'")
        answer = raw.get("answer")
        if technique is Technique.DNS_FORGE:
            if answer is None:
                raise ScenarioError(f"{where} ({pid}): dns_forge needs answer (bogon, localhost, blockpage, proxy "
                                    "or an IPv4 address)")
            if answer not in (*FORGE_KEYWORDS, "blockpage", "proxy"):
                try:
                    ipaddress.IPv4Address(answer)
                except ValueError:
                    raise ScenarioError(f"{where} ({pid}): answer {answer!r} is not understood") from None
        match = raw.get("match", "suffix")
        if match not in ("exact", "suffix", "substring"):
            raise ScenarioError(f"{where} ({pid}): match must be exact, suffix or substring")
        p_start = _when(raw.get("start", start), start, f"{where}.start")
        p_end = _when(raw["end"], start, f"{where}.end") if raw.get("end") is not None else None
        if p_end is not None and p_end <= p_start:
            raise ScenarioError(f"{where} ({pid}): end must be after start")
        policies.append(Policy(
            id=pid, technique=technique, targets=tids, isps=p_isps, start=p_start, end=p_end,
            regions=p_regions, rate_bps=_rate(rate, f"{where}.rate") if rate is not None else None,
            answer=answer, allow=allow, ports=_ports(raw.get("ports")), path=raw.get("path"), match=match,
            note=raw.get("note", ""),
        ))
    if len({p.id for p in policies}) != len(policies):
        raise ScenarioError("policies: ids must be unique")

    scenario = Scenario(
        name=head.get("name", "unnamed"),
        description=head.get("description", ""),
        country=head.get("country", "XA"),
        start=start,
        end=end,
        speed=speed,
        backbone_asn=_asn(backbone.get("asn", 64512), "[backbone].asn"),
        backbone_name=backbone.get("name", "National backbone"),
        internet_asn=_asn(internet.get("asn", 65000), "[internet].asn"),
        internet_country=internet.get("country", "ZZ"),
        domestic_asn=_asn(domestic.get("asn", backbone.get("asn", 64512)), "[domestic].asn"),
        authoritative=_host_ip(dns.get("authoritative", "203.0.113.53"), "[dns].authoritative"),
        public_resolver=_host_ip(dns["public_resolver"], "[dns].public_resolver")
        if dns.get("public_resolver") else None,
        blockpage=_host_ip(censor.get("blockpage", "198.51.100.80"), "[censor].blockpage"),
        proxy=_host_ip(censor.get("proxy", "198.51.100.81"), "[censor].proxy"),
        isps=tuple(isps),
        targets=tuple(targets),
        policies=tuple(policies),
        dns_delay=dns_delay,
    )
    _check_addresses(scenario)
    return scenario


def _check_addresses(s: Scenario) -> None:
    """Every declared host address must be unique: one address is one host in the topology."""
    seen: dict[str, str] = {}
    fixed = [("[dns].authoritative", s.authoritative), ("[censor].blockpage", s.blockpage),
             ("[censor].proxy", s.proxy)]
    if s.public_resolver:
        fixed.append(("[dns].public_resolver", s.public_resolver))
    fixed += [(f"isp {i.id} resolver", i.resolver) for i in s.isps if i.resolver]
    fixed += [(f"target {t.id}", t.address) for t in s.targets]
    for who, addr in fixed:
        if addr in seen:
            raise ScenarioError(f"address {addr} is used by both {seen[addr]} and {who}")
        seen[addr] = who
    if ipaddress.ip_address(s.proxy) in INTERNET_RANGE:
        raise ScenarioError("[censor].proxy must be a domestic (198.51.100.0/24) address: it lives in the backbone")


def scenario_path(name_or_path: str) -> Path:
    """A shipped scenario by name (`catalogue`) or any TOML file by path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    shipped = resources.files("netvigil.lab") / "scenarios" / f"{name_or_path}.toml"
    path = Path(str(shipped))
    if not path.exists():
        raise ScenarioError(f"no scenario {name_or_path!r}; shipped: {', '.join(list_scenarios())}")
    return path


def list_scenarios() -> list[str]:
    folder = Path(str(resources.files("netvigil.lab") / "scenarios"))
    return sorted(p.stem for p in folder.glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    path = scenario_path(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse_scenario(doc)

"""What the control helper agrees to do for an anonymous client: it must never become an open proxy.

A request is checked before any packet leaves: http/https only, ports 80/443 only, a bounded number of
endpoints, and (at connect time) only globally routable addresses unless the operator allowed a network
(the lab allows its documentation ranges, tests allow loopback). Rate limiting is per client address, kept
in memory only and never logged.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from netvigil.model.control import ControlRequest

__all__ = [
    "ADDRESS_NOT_ALLOWED",
    "HEADER_ALLOW_LIST",
    "PORT_NOT_ALLOWED",
    "Endpoint",
    "Policy",
    "RateLimiter",
    "RequestRefused",
    "Target",
    "check_request",
    "is_bogon",
    "parse_endpoint",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# OONI failure strings carry free text after "unknown_failure: "; this one marks a refusal by policy.
ADDRESS_NOT_ALLOWED = "unknown_failure: address not allowed"
PORT_NOT_ALLOWED = "unknown_failure: port not allowed"  # a redirect to a port other than 80/443
# Only these probe headers are forwarded (as OONI's helper does): anything else could smuggle credentials
# or proxy instructions through us.
HEADER_ALLOW_LIST = ("User-Agent", "Accept", "Accept-Language")
_MAX_HEADER_VALUE = 1024
_MAX_URL = 4096


class RequestRefused(ValueError):
    """The request breaks a safety rule or is malformed; the message is one line for the client (HTTP 400)."""


@dataclass(frozen=True)
class Policy:
    """The operator's limits (CLI flags) and the fixed safety rules."""

    allow_nets: tuple[IPNetwork, ...] = ()
    rate_per_minute: float = 120.0
    burst: int | None = None          # None: a quarter of the per-minute rate
    max_concurrency: int = 64
    queue_wait: float = 2.0           # how long a request may wait for a measurement slot before 503
    share_seconds: float = 0.0        # an answer also serves identical requests this long after it (0: in flight)
    ports: frozenset[int] = frozenset({80, 443})
    max_endpoints: int = 16
    max_request_bytes: int = 64 * 1024
    max_body: int = 1 << 20           # response bytes read per fetch; bodies are measured, never returned
    max_redirects: int = 10

    @classmethod
    def from_cidrs(cls, cidrs: list[str] | tuple[str, ...] = (), **kwargs: object) -> Policy:
        """Build a policy from CIDR strings; a bad one raises ValueError naming it."""
        nets = []
        for cidr in cidrs:
            try:
                nets.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ValueError(f"not a network in CIDR notation: {cidr!r}") from None
        return cls(allow_nets=tuple(nets), **kwargs)  # type: ignore[arg-type]

    @property
    def effective_burst(self) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate_per_minute / 4))

    def address_allowed(self, ip: str | IPAddress) -> bool:
        """True for globally routable unicast addresses and for addresses inside an allowed network."""
        try:
            addr = _plain(ipaddress.ip_address(ip) if isinstance(ip, str) else ip)
        except ValueError:
            return False
        if any(addr.version == net.version and addr in net for net in self.allow_nets):
            return True
        return not is_bogon(addr)


def _plain(addr: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address is judged as the IPv4 address it carries."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_bogon(ip: str | IPAddress) -> bool:
    """Not globally routable unicast: private, loopback, link-local, documentation, reserved, multicast..."""
    try:
        addr = _plain(ipaddress.ip_address(ip) if isinstance(ip, str) else ip)
    except ValueError:
        return True
    return not addr.is_global or addr.is_multicast or addr.is_unspecified or addr.is_reserved


@dataclass(frozen=True)
class Endpoint:
    ip: str     # canonical text form (IPv6 compressed, no brackets)
    port: int

    @property
    def address(self) -> str:
        """OONI's endpoint spelling: ``ip:port`` or ``[v6]:port``."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``1.2.3.4:443`` or ``[2001:db8::1]:443``; raise RequestRefused on anything else."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or len(port_text) > 5:
        raise RequestRefused(f"invalid endpoint {text[:80]!r}: expected ip:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise RequestRefused(f"invalid endpoint {text[:80]!r}: brackets are for IPv6 only")
    elif ":" in host:
        raise RequestRefused(f"invalid endpoint {text[:80]!r}: IPv6 addresses need [brackets]")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise RequestRefused(f"invalid endpoint {text[:80]!r}: not an IP address") from None
    return Endpoint(addr.compressed, int(port_text))


@dataclass(frozen=True)
class Target:
    """A request that passed the checks: what to measure."""

    url: str
    scheme: str
    host: str                  # hostname, lower case; IPv6 literal without brackets
    port: int
    host_is_ip: bool
    endpoints: tuple[Endpoint, ...]          # the probe's, deduplicated, in its order
    headers: tuple[tuple[str, str], ...]     # the allow-listed probe headers, first value each


def check_request(req: ControlRequest, policy: Policy) -> Target:
    """Validate a request against the policy before anything is sent; raise RequestRefused (one line)."""
    url = req.http_request.strip()
    if not url:
        raise RequestRefused("http_request: empty URL")
    if len(url) > _MAX_URL:
        raise RequestRefused(f"http_request: URL longer than {_MAX_URL} characters")
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise RequestRefused("http_request: URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError as exc:
        raise RequestRefused(f"http_request: invalid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise RequestRefused(f"http_request: scheme {scheme or '(none)'!r} not allowed (http and https only)")
    host = (parts.hostname or "").lower()
    if not host:
        raise RequestRefused("http_request: URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RequestRefused("http_request: credentials in the URL are not allowed")
    port = explicit_port if explicit_port is not None else (443 if scheme == "https" else 80)
    if port not in policy.ports:
        raise RequestRefused(f"http_request: port {port} not allowed (only {_ports(policy)})")
    try:
        host_ip = ipaddress.ip_address(host)
        host, host_is_ip = host_ip.compressed, True
    except ValueError:
        host_is_ip = False
    if len(req.tcp_connect) > policy.max_endpoints:
        raise RequestRefused(f"tcp_connect: {len(req.tcp_connect)} endpoints, at most {policy.max_endpoints}")
    endpoints: list[Endpoint] = []
    for text in req.tcp_connect:
        ep = parse_endpoint(text)
        if ep.port not in policy.ports:
            raise RequestRefused(f"tcp_connect: port {ep.port} not allowed (only {_ports(policy)})")
        if ep not in endpoints:
            endpoints.append(ep)
    return Target(url, scheme, host, port, host_is_ip, tuple(endpoints), _safe_headers(req.http_request_headers))


def _ports(policy: Policy) -> str:
    return " and ".join(str(p) for p in sorted(policy.ports))


def _safe_headers(headers: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    """The allow-listed headers, first non-empty value, without anything that could split a header."""
    wanted = {h.lower(): h for h in HEADER_ALLOW_LIST}
    picked: dict[str, str] = {}
    for name, values in headers.items():
        canonical = wanted.get(name.lower())
        if canonical is None or canonical in picked:
            continue
        for value in values:
            value = value.strip()
            if value and len(value) <= _MAX_HEADER_VALUE and value.isprintable() and value.isascii():
                picked[canonical] = value
                break
    return tuple((h, picked[h]) for h in HEADER_ALLOW_LIST if h in picked)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """Token bucket per client address, in memory only: refill ``rate_per_minute``/60 per second up to ``burst``.

    Full buckets are dropped when the table grows, so memory is bounded by the clients of the last few seconds.
    """

    rate_per_minute: float
    burst: int
    max_clients: int = 100_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    @property
    def _per_second(self) -> float:
        return self.rate_per_minute / 60.0

    def acquire(self, client: str, now: float | None = None) -> float:
        """Take one token for `client`: 0.0 if allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._prune(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self._per_second)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        if self._per_second <= 0:
            return 60.0
        return (1.0 - bucket.tokens) / self._per_second

    def _prune(self, now: float) -> None:
        full_after = self.burst / self._per_second if self._per_second > 0 else math.inf
        stale = [k for k, b in self._buckets.items() if now - b.stamp >= full_after]
        for k in stale:
            del self._buckets[k]
        if len(self._buckets) >= self.max_clients:  # a flood of distinct clients: start over rather than grow
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)

"""What the censor's DPI sees and decides (pure): SNI and HTTP Host parsing, and policy matching.

Bytes in, decisions out: the relay and DNS interceptor in `censor.py` own the sockets. The parsers are strict
about framing but lenient about content, like middleboxes: they read the first TLS record or the HTTP request
head and ignore what they do not understand.
"""

from __future__ import annotations

from dataclasses import dataclass

from netvigil.lab.scenario import FORGE_KEYWORDS, Policy, Scenario, Technique

__all__ = [
    "BLOCKPAGE_BODY",
    "BLOCKPAGE_MARKER",
    "HttpHead",
    "decide_dns",
    "decide_flow",
    "forged_address",
    "http_head",
    "looks_like_http",
    "parse_sni",
    "tls_hello_complete",
]

BLOCKPAGE_MARKER = "netvigil-lab-blockpage"
BLOCKPAGE_BODY = (
    "<html><head><title>Access restricted</title></head><body>"
    "<h1>Access to this resource has been restricted</h1>"
    "<p>By decision of the competent authority, access to this resource is restricted.</p>"
    f"<!-- {BLOCKPAGE_MARKER} --></body></html>"
).encode()


def tls_hello_complete(data: bytes) -> bool:
    """True once `data` holds a whole first TLS record (or is clearly not TLS)."""
    if len(data) < 5 or data[0] != 0x16:
        return len(data) >= 5
    return len(data) >= 5 + int.from_bytes(data[3:5], "big")


def parse_sni(data: bytes) -> str | None:
    """The server_name of a TLS ClientHello in `data`'s first record, or None."""
    try:
        if data[0] != 0x16 or data[5] != 0x01:
            return None
        end = 5 + int.from_bytes(data[3:5], "big")
        i = 5 + 4 + 2 + 32  # record header, handshake header, client_version, random
        i += 1 + data[i]  # session id
        i += 2 + int.from_bytes(data[i:i + 2], "big")  # cipher suites
        i += 1 + data[i]  # compression methods
        ext_end = min(end, i + 2 + int.from_bytes(data[i:i + 2], "big"))
        i += 2
        while i + 4 <= ext_end:
            etype = int.from_bytes(data[i:i + 2], "big")
            elen = int.from_bytes(data[i + 2:i + 4], "big")
            body = data[i + 4:i + 4 + elen]
            if etype == 0 and len(body) >= 5 and body[2] == 0:
                nlen = int.from_bytes(body[3:5], "big")
                return body[5:5 + nlen].decode("ascii", "replace").lower()
            i += 4 + elen
    except IndexError:
        return None
    return None


@dataclass(frozen=True, slots=True)
class HttpHead:
    method: str
    target: str
    host: str | None


_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"DELETE ", b"PATCH ", b"CONNECT ")


def looks_like_http(data: bytes) -> bool:
    return data.startswith(_METHODS)


def http_head(data: bytes) -> HttpHead | None:
    """Request line and Host of an HTTP/1.x request head (complete up to the blank line), or None."""
    if b"\r\n\r\n" not in data or not looks_like_http(data):
        return None
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 3:
        return None
    host = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "host":
            host = value.strip().split(":")[0].lower()
    return HttpHead(parts[0], parts[1], host)


def _scoped(p: Policy, isp: str | None, region: str | None) -> bool:
    return isp in p.isps and (not p.regions or region in p.regions)


def _targets_name(p: Policy, scenario: Scenario, name: str | None) -> bool:
    return name is not None and any(scenario.target(t).matches_name(name, p.match) for t in p.targets)


def decide_flow(active: tuple[Policy, ...], scenario: Scenario, isp: str | None, region: str | None,
                sni: str | None, http: HttpHead | None) -> Policy | None:
    """The relay policy that applies to a new TLS/HTTP flow: blocking wins over throttling; None = pass."""
    throttle: Policy | None = None
    for p in active:
        if p.technique.enforcer != "relay" or not _scoped(p, isp, region):
            continue
        if p.technique.layer == "tls" and _targets_name(p, scenario, sni):
            return p
        if p.technique.layer == "http" and http is not None and _targets_name(p, scenario, http.host):
            if p.path is None or p.path in http.target:
                return p
        if p.technique is Technique.THROTTLE_SNI and _targets_name(p, scenario, sni):
            throttle = throttle or p
    return throttle


def decide_dns(active: tuple[Policy, ...], scenario: Scenario, isp: str | None, qname: str) -> Policy | None:
    for p in active:
        if p.technique.enforcer == "dns" and isp in p.isps and _targets_name(p, scenario, qname):
            return p
    return None


def forged_address(p: Policy, scenario: Scenario) -> str:
    assert p.answer is not None
    if p.answer in FORGE_KEYWORDS:
        return FORGE_KEYWORDS[p.answer]
    if p.answer == "blockpage":
        return scenario.blockpage
    if p.answer == "proxy":
        return scenario.proxy
    return p.answer

"""Tor (ooni/spec ts-023): can this network reach Tor's directory authorities and a set of bridges?

Each target is measured on its own, like OONI's `tor` test, and the test keys keep OONI's shape: a `targets` map
keyed by the target id (the address, or for a bridge the SHA-256 of address and fingerprint), each with its own
df-002/005/006/001/008 arrays, `failure`, a per-step `summary`, and the counts `<protocol>_total` /
`<protocol>_accessible` that give "k of n reachable".

What each protocol checks:

- `or_port_dirauth`, `or_port`: TCP connect, TLS handshake (no SNI, no certificate check: Tor link certificates
  are self-signed), then a VERSIONS cell answered in kind, which shows the TLS peer really is a Tor relay;
- `dir_port`: TCP connect and `GET /tor/status-vote/current/consensus.z`, reading only the first few KiB (enough to
  see a consensus start; a 503 "directory busy" is also the authority's own answer), or, with
  `dir_port_mode="tcp"`, the TCP connect alone (what current OONI Probe does);
- `obfs4`: TCP connect only. netvigil does not speak obfs4, so a bridge that accepts the connection counts as
  reachable even if a censor would break the obfs4 handshake after it;
- anything else: TCP connect.

User-supplied bridges are private by default: their addresses are replaced by "[scrubbed]" in the test keys (the
key stays the SHA-256 id), so publishing a measurement does not burn a bridge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import struct
import time
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from netvigil.model.archival import TorTarget, TorTestKeys
from netvigil.model.failure import Failure
from netvigil.probe.netx import (
    DEFAULT_HEADERS,
    Conn,
    NetxError,
    TLSConfig,
    Trace,
    connect,
    endpoint,
    getaddrinfo,
    http_request,
    is_ip,
    tls_handshake,
)

__all__ = [
    "TEST_NAME",
    "TEST_VERSION",
    "PROTOCOLS",
    "DIRECTORY_AUTHORITIES",
    "DEFAULT_BRIDGES",
    "DirectoryAuthority",
    "TorTargetSpec",
    "TargetList",
    "TorOptions",
    "default_targets",
    "authority_targets",
    "parse_bridge_line",
    "load_targets",
    "make_targets",
    "test_helpers",
    "default_inputs",
    "measure",
]

TEST_NAME = "tor"
TEST_VERSION = "0.4.0"
PROTOCOLS = ("dir_port", "obfs4", "or_port", "or_port_dirauth")
CONSENSUS_PATH = "/tor/status-vote/current/consensus.z"
SCRUBBED = "[scrubbed]"
_VERSIONS_CMD = 7
_LINK_VERSIONS = (3, 4, 5)
_TRANSPORT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a transport name; an address has dots or colons


@dataclass(frozen=True, slots=True)
class DirectoryAuthority:
    nickname: str
    ip: str
    or_port: int
    dir_port: int
    bridge_authority: bool = False


# Tor's directory authorities as Tor's source lists them (src/app/config/auth_dirs.inc; tor26's and faravahar's
# addresses as of the 0.4.8 series, 2023): nine v3 authorities and the bridge authority Serge, the ten targets
# OONI counts. Facts, updated by hand when Tor rotates an authority; override with a targets file.
DIRECTORY_AUTHORITIES: tuple[DirectoryAuthority, ...] = (
    DirectoryAuthority("moria1", "128.31.0.39", 9201, 9231),
    DirectoryAuthority("tor26", "217.196.147.77", 443, 80),
    DirectoryAuthority("dizum", "45.66.35.11", 443, 80),
    DirectoryAuthority("Serge", "66.111.2.131", 9001, 9030, bridge_authority=True),
    DirectoryAuthority("gabelmoo", "131.188.40.189", 443, 80),
    DirectoryAuthority("dannenberg", "193.23.244.244", 443, 80),
    DirectoryAuthority("maatuska", "171.25.193.9", 80, 443),
    DirectoryAuthority("longclaw", "199.58.81.140", 443, 80),
    DirectoryAuthority("bastet", "204.13.164.118", 443, 80),
    DirectoryAuthority("faravahar", "216.218.219.41", 443, 80),
)

# Tor Browser's built-in obfs4 bridges (tor-browser-build, projects/tor-expert-bundle/pt_config.json): address and
# fingerprint only, since netvigil tests them with a TCP connect. Public, so never scrubbed.
DEFAULT_BRIDGES: tuple[tuple[str, str], ...] = (
    ("192.95.36.142:443", "CDF2E852BF539B82BD10E27E9115A31734E378C2"),
    ("37.218.245.14:38224", "D9A82D2F9C2F65A18407B1D2B764F130847F8B5D"),
    ("85.31.186.98:443", "011F2599C0E9B27EE74B353155E244813763C3E5"),
    ("85.31.186.26:443", "91A6354697E6B02A386312F68D82CF86824D3606"),
    ("193.11.166.194:27015", "2D82C2E354D531A68469ADF7F878FA6060C6BACA"),
    ("193.11.166.194:27020", "86AC7B8D430DAC4117E9F42C9EAED18133863AAF"),
    ("193.11.166.194:27025", "1AE2C08904527FEA90C4C4F8C1083EA59FBC6FAF"),
    ("209.148.46.65:443", "74FAD13168806246602538555B5521A0383A1875"),
    ("146.57.248.225:22", "10A6CD36A537FCE513A322361547444B393989F0"),
    ("45.145.95.6:27015", "C5B7CD6946FF10C5B3E89691A7D3F2C122D2117C"),
    ("51.222.13.177:80", "5EDAC3B810E12B01F6FD8050D2FD3E277B289A08"),
)


@dataclass(frozen=True, slots=True)
class TorTargetSpec:
    """One thing to measure (ts-023's input target). `private`: scrub its address from the test keys."""

    address: str                     # "1.2.3.4:443", "[2001:db8::1]:443" or "host.example:443"
    protocol: str                    # dir_port | or_port | or_port_dirauth | obfs4 | anything else (TCP connect)
    name: str | None = None
    fingerprint: str | None = None
    params: Mapping[str, list[str]] = field(default_factory=dict)
    source: str | None = None
    private: bool = False
    key: str | None = None           # the id given by whoever made the list; default: see `id`

    @property
    def id(self) -> str:
        """ts-023's target id: the address, or sha256(address + fingerprint) for a target with a fingerprint."""
        if self.key:
            return self.key
        if self.fingerprint:
            return hashlib.sha256(self.address.encode() + self.fingerprint.encode()).hexdigest()
        return self.address


@dataclass(frozen=True, slots=True)
class TargetList:
    """Targets read from a file, and the entries set aside (with the reason) because they were malformed."""

    targets: tuple[TorTargetSpec, ...]
    problems: tuple[str, ...] = ()


def authority_targets(authorities: tuple[DirectoryAuthority, ...] = DIRECTORY_AUTHORITIES,
                      source: str = "tor") -> list[TorTargetSpec]:
    """Each authority's OR port (`or_port_dirauth`) and Dir port (`dir_port`), as OONI lists them."""
    out = []
    for a in authorities:
        out.append(TorTargetSpec(endpoint(a.ip, a.or_port), "or_port_dirauth", a.nickname, source=source))
        out.append(TorTargetSpec(endpoint(a.ip, a.dir_port), "dir_port", a.nickname, source=source))
    return out


def default_targets() -> tuple[TorTargetSpec, ...]:
    """The real directory authorities and Tor Browser's built-in obfs4 bridges."""
    bridges = [TorTargetSpec(addr, "obfs4", fingerprint=fp, source="tor-browser") for addr, fp in DEFAULT_BRIDGES]
    return (*authority_targets(), *bridges)


def _split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError when there is no usable port."""
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ValueError(f"bad address {address!r}: expected [v6]:port")
    else:
        host, sep, port = address.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"bad address {address!r}: expected host:port")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {address!r}: expected host:port with a port 1-65535")
    return host, int(port)


def parse_bridge_line(line: str, *, private: bool = True, source: str = "user") -> TorTargetSpec:
    """A torrc `Bridge` line: `[Bridge] [obfs4] ADDRESS[:PORT] [FINGERPRINT] [k=v ...]`.

    A line without a transport is a vanilla bridge (`or_port`). Other transports than obfs4 are kept under their
    own protocol name and tested with a TCP connect. ValueError on a line that names no address."""
    words = line.split()
    if words and words[0].lower() == "bridge":
        words = words[1:]
    if not words:
        raise ValueError("empty bridge line")
    protocol = "or_port"
    if _TRANSPORT.fullmatch(words[0]):
        protocol = words.pop(0).lower()
    if not words:
        raise ValueError(f"bridge line without an address: {line.strip()!r}")
    address = words.pop(0)
    if is_ip(address.strip("[]")):  # torrc's default port
        address = endpoint(address.strip("[]"), 443)
    _split_address(address)
    fingerprint = None
    if words and "=" not in words[0]:
        fingerprint = words.pop(0).upper()
        if len(fingerprint) != 40 or any(c not in "0123456789ABCDEF" for c in fingerprint):
            raise ValueError(f"bad bridge fingerprint {fingerprint!r}: expected 40 hex digits")
    params: dict[str, list[str]] = {}
    for word in words:
        k, sep, v = word.partition("=")
        if not sep:
            raise ValueError(f"bad bridge parameter {word!r}: expected key=value")
        params.setdefault(k, []).append(v)
    return TorTargetSpec(address, protocol, fingerprint=fingerprint, params=params, source=source, private=private)


def _spec_from_entry(key: str | None, entry: Any, source: str) -> TorTargetSpec:
    if not isinstance(entry, dict):
        raise ValueError("expected an object with address and protocol")
    address, protocol = entry.get("address"), entry.get("protocol")
    if not isinstance(address, str) or not isinstance(protocol, str) or not protocol:
        raise ValueError("address and protocol must be strings")
    _split_address(address)
    params = entry.get("params") or {}
    if not isinstance(params, dict) or not all(isinstance(v, list) for v in params.values()):
        raise ValueError("params must map names to lists of strings")
    private = entry.get("private")
    if private is None:  # bridges a user brings are private unless marked otherwise
        private = protocol not in ("dir_port", "or_port_dirauth")
    name, fingerprint = entry.get("name"), entry.get("fingerprint")
    return TorTargetSpec(address, protocol, name if isinstance(name, str) and name else None,
                         fingerprint if isinstance(fingerprint, str) and fingerprint else None,
                         {str(k): [str(x) for x in v] for k, v in params.items()},
                         str(entry.get("source") or source), bool(private), key)


def _entries(doc: Any) -> list[tuple[str | None, Any]]:
    """OONI's {id: target} map, a list of targets, or either under "targets"."""
    if isinstance(doc, dict) and "targets" in doc and not ("address" in doc and "protocol" in doc):
        doc = doc["targets"]
    if isinstance(doc, dict):
        return list(doc.items())
    if isinstance(doc, list):
        return [(None, e) for e in doc]
    raise ValueError("expected a map of targets, a list of targets, or a 'targets' key")


def load_targets(path: str | Path, *, source: str = "user") -> TargetList:
    """Targets from a file: JSON (ts-023's input map `{id: {address, protocol, name, fingerprint, params}}`, or a
    list), TOML (`[[targets]]` tables and/or `bridges = ["obfs4 1.2.3.4:443 FP cert=…"]`), or text (one bridge
    line per line, `#` comments). Malformed entries are set aside with their reason, never dropped silently.
    OSError when the file cannot be read; ValueError when it is not any of these formats."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    targets: list[TorTargetSpec] = []
    problems: list[str] = []
    lines: list[tuple[int, str]] = []
    entries: list[tuple[str | None, Any]] = []
    if p.suffix.lower() == ".json":
        try:
            entries = _entries(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not JSON: {exc}") from None
    elif p.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{p}: not TOML: {exc}") from None
        entries = _entries(doc.get("targets", [])) if "targets" in doc else []
        bridges = doc.get("bridges", [])
        if not isinstance(bridges, list):
            raise ValueError(f"{p}: 'bridges' must be a list of bridge lines")
        lines = [(i + 1, str(b)) for i, b in enumerate(bridges)]
    else:
        lines = [(i + 1, raw.split("#", 1)[0].strip()) for i, raw in enumerate(text.splitlines())]
        lines = [(n, line) for n, line in lines if line]
    for i, (key, entry) in enumerate(entries):
        try:
            targets.append(_spec_from_entry(key, entry, source))
        except ValueError as exc:
            problems.append(f"{p}: target {key or f'#{i + 1}'}: {exc}")
    for n, line in lines:
        try:
            targets.append(parse_bridge_line(line, source=source))
        except ValueError as exc:
            problems.append(f"{p}: bridge {n}: {exc}")
    return TargetList(tuple(targets), tuple(problems))


def make_targets(*, files: tuple[str | Path, ...] = (), bridges: tuple[str, ...] = (),
                 authorities: bool | None = None, default_bridges: bool | None = None) -> TargetList:
    """The run's targets: the files' targets, plus bridge lines, plus (by default only when no file is given) the
    real directory authorities and Tor Browser's bridges. Duplicated ids are kept once (first wins)."""
    found: list[TorTargetSpec] = []
    problems: list[str] = []
    for f in files:
        loaded = load_targets(f)
        found += loaded.targets
        problems += loaded.problems
    for i, line in enumerate(bridges):
        try:
            found.append(parse_bridge_line(line))
        except ValueError as exc:
            problems.append(f"bridge {i + 1}: {exc}")
    if authorities if authorities is not None else not files:
        found += authority_targets()
    if default_bridges if default_bridges is not None else not files:
        found += [t for t in default_targets() if t.protocol == "obfs4"]
    unique: dict[str, TorTargetSpec] = {}
    for t in found:
        unique.setdefault(t.id, t)
    return TargetList(tuple(unique.values()), tuple(problems))


@dataclass(frozen=True, slots=True)
class TorOptions:
    """The targets and the step timeouts; `budget` bounds the whole measurement (every target)."""

    targets: tuple[TorTargetSpec, ...] = field(default_factory=default_targets)
    budget: float = 60.0
    dns_timeout: float = 5.0
    connect_timeout: float = 10.0
    tls_timeout: float = 10.0
    http_timeout: float = 15.0
    concurrency: int = 8
    dir_port_mode: str = "http"      # "http": GET the consensus start; "tcp": connect only
    or_port_versions: bool = True    # after the TLS handshake, exchange VERSIONS cells
    max_body: int = 4096             # bytes of the consensus read (enough to recognise one)


def test_helpers(opts: TorOptions) -> dict | None:
    """No helper: the test has no control vantage."""
    return None


def default_inputs(opts: TorOptions) -> list[str | None]:
    """The test takes no input: one measurement covers every target."""
    return [None]


class _Deadline:
    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self, cap: float) -> float:
        return max(0.05, min(cap, self.end - time.monotonic()))


def _looks_like_consensus(body: bytes) -> bool:
    """The first bytes of a consensus, zlib-compressed (`.z`) or not."""
    if body.startswith(b"network-status-version"):
        return True
    try:
        return zlib.decompressobj().decompress(body).startswith(b"network-status-version")
    except zlib.error:
        return False


async def _read_exactly(conn: Conn, n: int, timeout: float) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await conn.read(n - len(data), timeout=timeout)
        if not chunk:
            raise NetxError(Failure.EOF.value)
        data += chunk
    return data


async def _versions(conn: Conn, timeout: float) -> None:
    """Send a VERSIONS cell (circuit id 0, 2-byte ids as link protocol 3 starts) and read the relay's."""
    payload = b"".join(struct.pack("!H", v) for v in _LINK_VERSIONS)
    await conn.write(struct.pack("!HBH", 0, _VERSIONS_CMD, len(payload)) + payload, timeout=timeout)
    head = await _read_exactly(conn, 5, timeout)
    _circ, command, length = struct.unpack("!HBH", head)
    if command != _VERSIONS_CMD or length % 2 or length == 0:
        raise NetxError(f"{Failure.UNKNOWN.value}: the peer did not answer with a Tor VERSIONS cell")
    await _read_exactly(conn, length, timeout)


async def _measure_target(spec: TorTargetSpec, opts: TorOptions, zero: float, tid: int,
                          deadline: _Deadline) -> TorTarget:
    trace = Trace(zero=zero)
    summary: dict[str, dict[str, str | None]] = {}
    failure: str | None = None
    step = "connect"
    conn: Conn | None = None
    try:
        try:
            host, port = _split_address(spec.address)
        except ValueError as exc:
            raise NetxError(f"{Failure.UNKNOWN.value}: {exc}") from None
        ip = host
        if not is_ip(host):
            step = "resolve"
            ip = (await getaddrinfo(trace, host, timeout=deadline.left(opts.dns_timeout)))[0]
            summary[step] = {"failure": None}
        step = "connect"
        conn = await connect(trace, ip, port, timeout=deadline.left(opts.connect_timeout))
        summary[step] = {"failure": None}
        if spec.protocol in ("or_port", "or_port_dirauth"):
            step = "handshake"
            conn = await tls_handshake(trace, conn, None, tls=TLSConfig(verify=False), alpn=(),
                                       timeout=deadline.left(opts.tls_timeout))
            summary[step] = {"failure": None}
            if opts.or_port_versions:
                step = "versions"
                await _versions(conn, deadline.left(opts.tls_timeout))
                summary[step] = {"failure": None}
        elif spec.protocol == "dir_port" and opts.dir_port_mode == "http":
            step = "http"
            resp = await http_request(trace, conn, f"http://{spec.address}{CONSENSUS_PATH}",
                                      headers=DEFAULT_HEADERS, max_body=opts.max_body,
                                      timeout=deadline.left(opts.http_timeout))
            if resp.status == 200 and not _looks_like_consensus(resp.body):
                raise NetxError(f"{Failure.UNKNOWN.value}: the response is not a Tor consensus")
            if resp.status not in (200, 503):  # 503: "directory busy", the authority's own answer
                raise NetxError(Failure.HTTP_UNEXPECTED_STATUS.value)
            summary[step] = {"failure": None}
    except NetxError as exc:
        failure = exc.failure
        summary[step] = {"failure": failure}
    finally:
        if conn is not None:
            await conn.close()
    arrays = trace.test_keys()
    for events in arrays.values():
        for ev in events:
            ev.transaction_id = tid
    target = TorTarget(
        agent="redirect", failure=failure, summary=summary, target_address=spec.address,
        target_name=spec.name, target_protocol=spec.protocol, target_source=spec.source, **arrays,
    )
    return _scrub(target, spec) if spec.private else target


def _scrub(target: TorTarget, spec: TorTargetSpec) -> TorTarget:
    """A private bridge: no address anywhere in its record; a name from its id keeps targets apart."""
    target.target_address = SCRUBBED
    target.target_name = spec.name or f"bridge-{spec.id[:12]}"
    for q in target.queries or ():
        if q is not None:
            q.hostname = SCRUBBED
            q.answers = None
    for c in target.tcp_connect or ():
        if c is not None:
            c.ip = SCRUBBED
    for h in target.tls_handshakes or ():
        if h is not None:
            h.address = SCRUBBED
    for e in target.network_events or ():
        if e is not None and e.address:
            e.address = SCRUBBED
    for r in target.requests or ():
        if r is not None:
            r.address = SCRUBBED
    return target


async def measure(input: str | None, opts: TorOptions) -> TorTestKeys:
    """Measure every target (at most `concurrency` at once); the network's failures end up in the test keys."""
    zero = time.monotonic()
    deadline = _Deadline(opts.budget)
    gate = asyncio.Semaphore(max(1, opts.concurrency))

    async def one(i: int, spec: TorTargetSpec) -> TorTarget:
        async with gate:
            return await _measure_target(spec, opts, zero, i + 1, deadline)

    results = await asyncio.gather(*(one(i, t) for i, t in enumerate(opts.targets)))
    targets: dict[str, TorTarget] = {}
    for spec, result in zip(opts.targets, results):
        key = spec.id if spec.id not in targets else f"{spec.id}/{spec.protocol}"  # one address, two protocols
        targets[key] = result
    counts: dict[str, int] = {}
    for protocol in PROTOCOLS:
        mine = [t for t in results if t.target_protocol == protocol]
        counts[f"{protocol}_total"] = len(mine)
        counts[f"{protocol}_accessible"] = sum(1 for t in mine if t.failure is None)
    return TorTestKeys(targets=dict(sorted(targets.items())), **counts)

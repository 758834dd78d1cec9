"""VPN (`vpn`): do a WireGuard or OpenVPN server's first handshake packets get through this network?

An open port proves nothing for a VPN: a WireGuard server answers only a handshake initiation from a peer it knows
(anything else gets silence), and censors fingerprint OpenVPN by its first packet. So the test needs the user's own
client configuration and sends the real first packet:

- **WireGuard** (a wg-quick config: `[Interface] PrivateKey`, `[Peer] PublicKey`, `Endpoint`, optional
  `PresharedKey`): a Noise_IKpsk2 handshake initiation over UDP; success is a handshake response that verifies
  against this initiation. A server that does not know the key stays silent, so a wrong key reads as a timeout,
  exactly as a censor's drop does (nothing on the wire tells them apart).
- **OpenVPN** (an .ovpn config: `remote host [port] [proto]`, `proto`, `port`, `tls-auth` with its
  `key-direction`, `tls-crypt`, `auth`): a `P_CONTROL_HARD_RESET_CLIENT_V2` over UDP or TCP (2-byte length prefix),
  HMAC-signed for tls-auth, encrypted and signed for tls-crypt; success is a `P_CONTROL_HARD_RESET_SERVER_V2`
  that acknowledges our packet 0 and session (and whose tls-auth HMAC / tls-crypt tag verifies). The TLS handshake
  on the control channel is not attempted. tls-crypt-v2 configs are refused with a message.

One measurement per endpoint; its input is OONI's endpoint URI (ts-040):
`openvpn://<provider>.corp/?address=1.2.3.4:1194&transport=udp` (and the same with `wireguard://`). Test keys follow
ooni/spec ts-040-openvpn (`success`, `failure`, `bootstrap_time` (df-009: 0 on failure), `tunnel`,
`openvpn_handshake` / `wireguard_handshake`, `tcp_connect`, `network_events`, `queries`). UDP datagrams are df-008
`write_to` / `read_from` events, tagged with the packet they carried. Keys are never written to the test keys.

The providers' websites are Web Connectivity's job: :func:`measure_provider_sites` runs it on `provider_urls`.
The handshake code (Noise, hard reset) is the lab's: `netvigil.lab.servers.wireguard` / `.openvpn`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from netvigil.lab.servers.openvpn import (
    P_CONTROL_HARD_RESET_CLIENT_V2,
    P_CONTROL_HARD_RESET_SERVER_V2,
    client_hard_reset,
    is_server_reset_for,
)
from netvigil.lab.servers.wireguard import HandshakeState, create_initiation, parse_wg_config, verify_response
from netvigil.control.client import ControlClient
from netvigil.model.archival import NetworkTestKeys, WebConnectivityTestKeys
from netvigil.model.failure import Failure
from netvigil.probe.nettests.web_connectivity import WebConnectivityOptions
from netvigil.probe.nettests.web_connectivity import measure as wc_measure
from netvigil.probe.netx import Conn, NetxError, Trace, connect, endpoint, failure_of, getaddrinfo, is_ip

__all__ = [
    "TEST_NAME",
    "TEST_VERSION",
    "PROVIDER_URLS",
    "WireGuardEndpoint",
    "OpenVPNEndpoint",
    "TLSWrap",
    "VpnEndpoint",
    "VpnHandshake",
    "VpnTestKeys",
    "VpnOptions",
    "load_vpn_config",
    "parse_openvpn_config",
    "parse_wireguard_config",
    "endpoint_for",
    "test_helpers",
    "default_inputs",
    "measure",
    "measure_provider_sites",
    "wrap_control",
    "unwrap_control",
]

TEST_NAME = "vpn"
TEST_VERSION = "0.1.0"

# Websites of VPN and circumvention providers, measured with Web Connectivity (blocked in Azerbaijan in 2020).
PROVIDER_URLS: tuple[str, ...] = (
    "https://www.expressvpn.com/",
    "https://nordvpn.com/",
    "https://surfshark.com/",
    "https://protonvpn.com/",
    "https://mullvad.net/",
    "https://www.privateinternetaccess.com/",
    "https://psiphon.ca/",
    "https://www.torproject.org/",
)

_OPCODE_NAMES = {4: "P_CONTROL_V1", 5: "P_ACK_V1", 7: "P_CONTROL_HARD_RESET_CLIENT_V2",
                 8: "P_CONTROL_HARD_RESET_SERVER_V2", 9: "P_DATA_V2", 10: "P_CONTROL_HARD_RESET_CLIENT_V3"}
_STATIC_KEY = re.compile(r"-----BEGIN OpenVPN Static key V1-----(.*?)-----END OpenVPN Static key V1-----", re.S)
_INLINE = re.compile(r"^<([a-z0-9-]+)>\s*$(.*?)^</\1>\s*$", re.S | re.M)


# --- endpoints and their configs ---------------------------------------------------------------------------------

def _uri(tunnel: str, provider: str, host: str, port: int, transport: str) -> str:
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{tunnel}://{provider}.corp/?address={addr}&transport={transport}"


@dataclass(frozen=True, slots=True)
class WireGuardEndpoint:
    """A WireGuard peer as a wg-quick config describes it (keys base64, as `wg` prints them)."""

    host: str
    port: int
    private_key: str = field(repr=False)
    peer_public_key: str
    preshared_key: str | None = field(default=None, repr=False)
    provider: str = "unknown"
    tunnel: str = "wireguard"
    transport: str = "udp"

    @property
    def uri(self) -> str:
        return _uri("wireguard", self.provider, self.host, self.port, "udp")

    def options(self) -> dict[str, str]:
        return {"preshared_key": "yes" if self.preshared_key else "no"}


@dataclass(frozen=True, slots=True)
class TLSWrap:
    """OpenVPN's control-channel protection: `auth` (tls-auth, HMAC) or `crypt` (tls-crypt, AES-256-CTR + HMAC)."""

    mode: str                       # "auth" | "crypt"
    key: bytes = field(repr=False)  # the 256-byte static key: 2 × (64 cipher bytes, 64 HMAC bytes)
    direction: int | None = None    # tls-auth key-direction (None: bidirectional); tls-crypt: the client is 1
    digest: str = "SHA1"            # tls-auth HMAC digest (`auth`); tls-crypt is always SHA256


@dataclass(frozen=True, slots=True)
class OpenVPNEndpoint:
    host: str
    port: int = 1194
    transport: str = "udp"          # "udp" | "tcp"
    provider: str = "unknown"
    wrap: TLSWrap | None = None
    settings: tuple[tuple[str, str], ...] = ()   # cipher, auth, …: reported as `openvpn_options`
    tunnel: str = "openvpn"

    @property
    def uri(self) -> str:
        return _uri("openvpn", self.provider, self.host, self.port, self.transport)

    def options(self) -> dict[str, str]:
        out = dict(self.settings)
        out["tls_wrap"] = f"tls-{self.wrap.mode}" if self.wrap else "none"
        return out


VpnEndpoint = WireGuardEndpoint | OpenVPNEndpoint


def parse_wireguard_config(text: str, *, provider: str = "unknown") -> WireGuardEndpoint:
    """The first [Peer] of a wg-quick config; ValueError when keys or endpoint are missing or malformed."""
    cfg = parse_wg_config(text)
    for name, key in (("PrivateKey", cfg.private_key), ("PublicKey", cfg.peer_public_key),
                      ("PresharedKey", cfg.preshared_key)):
        if key is None:
            continue
        try:
            if len(base64.b64decode(key, validate=True)) != 32:
                raise ValueError
        except ValueError:
            raise ValueError(f"not a WireGuard config: {name} is not a base64 32-byte key") from None
    if not 0 < cfg.endpoint_port < 65536 or not cfg.endpoint_host:
        raise ValueError("not a WireGuard config: Endpoint must be host:port")
    return WireGuardEndpoint(cfg.endpoint_host, cfg.endpoint_port, cfg.private_key, cfg.peer_public_key,
                             cfg.preshared_key, provider)


def _static_key(text: str, where: str) -> bytes:
    m = _STATIC_KEY.search(text)
    if not m:
        raise ValueError(f"{where}: no 'OpenVPN Static key V1' block")
    hexdigits = "".join(line.strip() for line in m.group(1).splitlines() if not line.strip().startswith("#"))
    try:
        key = bytes.fromhex(hexdigits)
    except ValueError:
        raise ValueError(f"{where}: the static key is not hex") from None
    if len(key) != 256:
        raise ValueError(f"{where}: the static key has {len(key)} bytes, expected 256")
    return key


def _proto(value: str) -> str:
    v = value.lower()
    if v.startswith("udp"):
        return "udp"
    if v.startswith("tcp"):
        return "tcp"
    raise ValueError(f"unknown proto {value!r}")


def parse_openvpn_config(text: str, *, base_dir: Path | None = None, provider: str = "unknown"
                         ) -> list[OpenVPNEndpoint]:
    """One endpoint per `remote` (or `<connection>` block), in the config's order.

    Reads `remote`, `proto`, `port`/`rport`, `tls-auth` (file or inline, with a direction or `key-direction`),
    `tls-crypt`, `auth`, `cipher`/`data-ciphers`. ValueError on a config without a remote, on an unreadable key,
    and on tls-crypt-v2 (not supported)."""
    inline = {m.group(1): m.group(2) for m in _INLINE.finditer(text)}
    connections = [inline_text for tag, inline_text in
                   ((m.group(1), m.group(2)) for m in _INLINE.finditer(text)) if tag == "connection"]
    body = _INLINE.sub("", text)
    directives: list[list[str]] = []
    for raw in body.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        directives.append(line.split())
    values: dict[str, list[str]] = {}
    remotes: list[list[str]] = []
    for words in directives:
        name = words[0].lstrip("-").lower()
        if name == "remote":
            remotes.append(words[1:])
        else:
            values.setdefault(name, words[1:])
    if "tls-crypt-v2" in values or "tls-crypt-v2" in inline:
        raise ValueError("tls-crypt-v2 is not supported (use a tls-crypt or tls-auth config)")
    default_proto = _proto(values["proto"][0]) if values.get("proto") else "udp"
    default_port = int((values.get("rport") or values.get("port") or ["1194"])[0])

    def key_text(directive: str) -> str | None:
        args = values.get(directive)
        if args is None and directive not in inline:
            return None
        if directive in inline and (not args or args[0] == "[inline]"):
            return inline[directive]
        if not args:
            raise ValueError(f"{directive} without a key file")
        path = Path(args[0])
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{directive} key {path}: {exc.strerror or exc}") from None

    wrap: TLSWrap | None = None
    settings: dict[str, str] = {}
    digest = (values.get("auth") or ["SHA1"])[0].upper()
    if values.get("auth"):
        settings["auth"] = digest
    for name in ("cipher", "data-ciphers"):
        if values.get(name):
            settings[name] = values[name][0]
    crypt = key_text("tls-crypt")
    auth = key_text("tls-auth")
    if crypt is not None:
        wrap = TLSWrap("crypt", _static_key(crypt, "tls-crypt"), 1, "SHA256")
    elif auth is not None:
        args = values.get("tls-auth") or []
        direction_arg = args[1] if len(args) > 1 else (values.get("key-direction") or [None])[0]
        direction = int(direction_arg) if direction_arg is not None else None
        if direction not in (None, 0, 1):
            raise ValueError(f"key-direction must be 0 or 1, not {direction_arg}")
        try:
            hashlib.new(digest.replace("-", "").lower())
        except ValueError:
            raise ValueError(f"unknown auth digest {digest!r}") from None
        wrap = TLSWrap("auth", _static_key(auth, "tls-auth"), direction, digest)

    def make(words: list[str], proto: str, port: int) -> OpenVPNEndpoint:
        if not words:
            raise ValueError("remote without a host")
        p = int(words[1]) if len(words) > 1 else port
        if not 0 < p < 65536:
            raise ValueError(f"bad port {p}")
        return OpenVPNEndpoint(words[0].strip("[]"), p, _proto(words[2]) if len(words) > 2 else proto, provider,
                               wrap, tuple(sorted(settings.items())))

    out: list[OpenVPNEndpoint] = []
    try:
        for block in connections:
            lines = [ln.split() for ln in block.splitlines() if ln.strip() and ln.strip()[0] not in "#;"]
            local = {w[0].lower(): w[1:] for w in lines}
            proto = _proto(local["proto"][0]) if local.get("proto") else default_proto
            port = int((local.get("port") or local.get("rport") or [str(default_port)])[0])
            out += [make(w[1:], proto, port) for w in lines if w[0].lower() == "remote"]
        out += [make(words, default_proto, default_port) for words in remotes]
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not an OpenVPN config: {exc}") from None
    if not out:
        raise ValueError("not an OpenVPN config: no 'remote' line")
    return out


def load_vpn_config(path: str | Path, *, provider: str = "unknown") -> list[VpnEndpoint]:
    """The endpoints of a WireGuard (wg-quick) or OpenVPN config file, told apart by their content.

    OSError when the file cannot be read, ValueError (with the reason) when it is neither."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if re.search(r"^\s*\[Interface\]", text, re.M | re.I):
        return [parse_wireguard_config(text, provider=provider)]
    if re.search(r"^\s*-{0,2}remote\s", text, re.M) or "<connection>" in text:
        return list(parse_openvpn_config(text, base_dir=p.parent, provider=provider))
    raise ValueError(f"{p}: neither a WireGuard config ([Interface]/[Peer]) nor an OpenVPN config (remote …)")


def endpoint_for(input: str | None, opts: VpnOptions) -> VpnEndpoint:
    """The endpoint an input URI names: a configured one, or (OpenVPN only, no tls-auth) one made from the URI.

    ValueError for a malformed URI, or a WireGuard URI without a configuration (its keys are needed)."""
    for ep in opts.endpoints:
        if ep.uri == input:
            return ep
    if not input:
        raise ValueError("the vpn test needs an endpoint: give a WireGuard or OpenVPN config")
    parts = urlsplit(input)
    query = parse_qs(parts.query)
    address = (query.get("address") or [""])[0]
    transport = (query.get("transport") or ["udp"])[0]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or transport not in ("udp", "tcp"):
        raise ValueError(f"bad VPN endpoint {input!r}: expected <protocol>://<provider>.corp/?address=host:port"
                         "&transport=udp|tcp")
    provider = (parts.hostname or "unknown").removesuffix(".corp")
    if parts.scheme == "openvpn":
        return OpenVPNEndpoint(host.strip("[]"), int(port), transport, provider)
    if parts.scheme == "wireguard":
        raise ValueError(f"{input}: a WireGuard endpoint needs its config (keys); none matches this address")
    raise ValueError(f"bad VPN endpoint {input!r}: the protocol must be openvpn or wireguard")


# --- OpenVPN control-channel wrapping (tls-auth, tls-crypt) ------------------------------------------------------

def _slot(key: bytes, index: int, part: str, size: int) -> bytes:
    """Key `index` (0/1) of the static key, its cipher or HMAC half, first `size` bytes."""
    base = index * 128 + (64 if part == "hmac" else 0)
    return key[base: base + size]


def _keys(wrap: TLSWrap, outgoing: bool) -> int:
    """Which of the two keys a side uses: direction 0 (a server's) sends with key 0 and receives with key 1,
    direction 1 (a client's) the opposite; no direction (bidirectional) uses key 0 both ways."""
    if wrap.direction is None:
        return 0
    if wrap.direction == 0:
        return 0 if outgoing else 1
    return 1 if outgoing else 0


def _digest_name(wrap: TLSWrap) -> str:
    return wrap.digest.replace("-", "").lower()


def wrap_control(plain: bytes, wrap: TLSWrap | None, *, packet_id: int = 1, now: int | None = None) -> bytes:
    """A plain control packet ([op][session id][acks…][msg id][payload]) as it goes on the wire.

    tls-auth: [op][sid][HMAC][replay id][time][rest], HMAC over [replay id][time][op][sid][rest].
    tls-crypt: [op][sid][replay id][time][tag][AES-256-CTR(rest)], tag = HMAC-SHA256 over the header and the
    plaintext, IV = the tag's first 16 bytes."""
    if wrap is None:
        return plain
    head, rest = plain[:9], plain[9:]
    replay = struct.pack("!II", packet_id, int(time.time()) if now is None else now)
    k = _keys(wrap, True)
    if wrap.mode == "auth":
        name = _digest_name(wrap)
        size = hashlib.new(name).digest_size
        mac = hmac.new(_slot(wrap.key, k, "hmac", size), replay + head + rest, name).digest()
        return head + mac + replay + rest
    tag = hmac.new(_slot(wrap.key, k, "hmac", 32), head + replay + rest, "sha256").digest()
    enc = Cipher(algorithms.AES(_slot(wrap.key, k, "cipher", 32)), modes.CTR(tag[:16])).encryptor()
    return head + replay + tag + enc.update(rest) + enc.finalize()


def unwrap_control(packet: bytes, wrap: TLSWrap | None) -> bytes | None:
    """The plain control packet inside a received one, or None when its HMAC/tag does not verify."""
    if wrap is None:
        return packet
    if len(packet) < 9:
        return None
    head = packet[:9]
    k = _keys(wrap, False)
    if wrap.mode == "auth":
        name = _digest_name(wrap)
        size = hashlib.new(name).digest_size
        if len(packet) < 9 + size + 8:
            return None
        mac, replay, rest = packet[9:9 + size], packet[9 + size:17 + size], packet[17 + size:]
        good = hmac.new(_slot(wrap.key, k, "hmac", size), replay + head + rest, name).digest()
        return head + rest if hmac.compare_digest(mac, good) else None
    if len(packet) < 9 + 8 + 32:
        return None
    replay, tag, body = packet[9:17], packet[17:49], packet[49:]
    dec = Cipher(algorithms.AES(_slot(wrap.key, k, "cipher", 32)), modes.CTR(tag[:16])).decryptor()
    rest = dec.update(body) + dec.finalize()
    good = hmac.new(_slot(wrap.key, k, "hmac", 32), head + replay + rest, "sha256").digest()
    return head + rest if hmac.compare_digest(tag, good) else None


def _opcode_tag(packet: bytes) -> str:
    return _OPCODE_NAMES.get(packet[0] >> 3, f"opcode_{packet[0] >> 3}") if packet else "empty"


def _wireguard_type(packet: bytes) -> str:
    """WireGuard's message types; a cookie reply (3) means "server under load": the path works, no handshake."""
    names = {1: "wireguard_handshake_initiation", 2: "wireguard_handshake_response", 3: "wireguard_cookie_reply",
             4: "wireguard_transport_data"}
    return names.get(packet[0], f"type_{packet[0]}") if packet else "empty"


# --- test keys ------------------------------------------------------------------------------------------------------

class VpnHandshake(msgspec.Struct):
    """One handshake attempt against one endpoint (ts-040's `openvpn_handshake` entry)."""

    endpoint: str | None = None            # "openvpn://1.2.3.4:1194/udp"
    ip: str | None = None
    port: int | None = None
    transport: str | None = None
    provider: str | None = None
    failure: str | None = None
    handshake_time: float | None = None    # first packet out -> valid answer (TCP connect excluded)
    t0: float | None = None
    t: float | None = None
    tags: list[str] | None = None
    transaction_id: int | None = None
    openvpn_options: dict[str, str] | None = None
    wireguard_options: dict[str, str] | None = None


class VpnTestKeys(NetworkTestKeys, omit_defaults=False):
    """ts-040-like keys for one VPN endpoint (df-009 tunnel semantics: bootstrap_time 0 on failure)."""

    tunnel: str | None = None
    provider: str | None = None
    success: bool | None = None
    bootstrap_time: float | None = None
    openvpn_handshake: list[VpnHandshake] | None = None
    wireguard_handshake: list[VpnHandshake] | None = None


# --- options ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class VpnOptions:
    """The endpoints (from the user's configs) and the step timeouts; `budget` bounds one endpoint."""

    endpoints: tuple[VpnEndpoint, ...] = ()
    provider_urls: tuple[str, ...] = PROVIDER_URLS
    budget: float = 30.0
    dns_timeout: float = 5.0
    connect_timeout: float = 10.0
    handshake_timeout: float = 5.0   # per attempt (WireGuard retries after 5 s, OpenVPN after 2 s)
    attempts: int = 2                # UDP: packets sent before giving up (TCP: one)


def test_helpers(opts: VpnOptions) -> dict | None:
    return None


def default_inputs(opts: VpnOptions) -> list[str | None]:
    """One input per configured endpoint (empty: nothing to measure without a config)."""
    return list(dict.fromkeys(ep.uri for ep in opts.endpoints))


class _Deadline:
    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self, cap: float) -> float:
        return max(0.05, min(cap, self.end - time.monotonic()))


# --- traced exchanges -------------------------------------------------------------------------------------------------

class _Datagrams(asyncio.DatagramProtocol):
    """Collects datagrams and the last ICMP error (a connected UDP socket reports port-unreachable)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.error: Exception | None = None

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.error = exc


def _tag_last(trace: Trace, tag: str) -> None:
    if trace.network_events:
        trace.network_events[-1].tags = [tag]


async def _udp_exchange(trace: Trace, ip: str, port: int, tid: int, packets: Callable[[int], bytes],
                        answered: Callable[[bytes], str | None], *, attempts: int, timeout: float,
                        deadline: _Deadline, out_tag: str, kind: Callable[[bytes], str]) -> float:
    """Send `packets(attempt)` up to `attempts` times, each waiting `timeout`, until `answered(datagram)` names
    the datagram as the answer (its tag); returns the time of the first packet. Records write_to/read_from events;
    a datagram that is not the answer is recorded too. NetxError: generic_timeout_error, or the ICMP error seen."""
    address = endpoint(ip, port)
    loop = asyncio.get_running_loop()
    t_first = trace.now()
    try:
        transport, proto = await loop.create_datagram_endpoint(_Datagrams, remote_addr=(ip, port))
    except OSError as exc:
        failure = failure_of(exc)
        trace.event("connect", address, t_first, transaction_id=tid, failure=failure, proto="udp")
        raise NetxError(failure) from exc
    trace.event("connect", address, t_first, transaction_id=tid, proto="udp")
    try:
        for attempt in range(max(1, attempts)):
            packet = packets(attempt)
            t0 = trace.now()
            transport.sendto(packet)
            trace.event("write_to", address, t0, transaction_id=tid, num_bytes=len(packet), proto="udp")
            _tag_last(trace, out_tag)
            wait_until = loop.time() + min(timeout, max(0.0, deadline.end - time.monotonic()))
            while (left := wait_until - loop.time()) > 0:
                t0 = trace.now()
                try:
                    data = await asyncio.wait_for(proto.queue.get(), left)
                except TimeoutError:
                    break
                trace.event("read_from", address, t0, transaction_id=tid, num_bytes=len(data), proto="udp")
                tag = answered(data)
                _tag_last(trace, tag or f"unexpected:{kind(data)}")
                if tag:
                    return t_first
            if deadline.end <= time.monotonic():
                break
        failure = failure_of(proto.error) if proto.error is not None else Failure.GENERIC_TIMEOUT.value
        trace.event("read_from", address, trace.now(), transaction_id=tid, failure=failure, proto="udp")
        raise NetxError(failure)
    finally:
        transport.close()


async def _read_frame(conn: Conn, timeout: float) -> bytes:
    """One OpenVPN-over-TCP packet (2-byte big-endian length, then the packet)."""
    buf = b""
    need = 2
    while True:
        while len(buf) < need:
            chunk = await conn.read(max(need - len(buf), 1), timeout=timeout)
            if not chunk:
                raise NetxError(Failure.EOF.value)
            buf += chunk
        if need == 2:
            need = 2 + struct.unpack("!H", buf[:2])[0]
            if need == 2:
                buf, need = b"", 2  # an empty frame: keep reading
            continue
        return buf[2:need]


def _openvpn_checker(ep: OpenVPNEndpoint, session: bytes) -> Callable[[bytes], str | None]:
    def answered(packet: bytes) -> str | None:
        plain = unwrap_control(packet, ep.wrap)
        if plain is not None and is_server_reset_for(plain, session):
            return _OPCODE_NAMES[P_CONTROL_HARD_RESET_SERVER_V2]
        return None
    return answered


async def _openvpn(trace: Trace, ep: OpenVPNEndpoint, ip: str, tid: int, opts: VpnOptions,
                   deadline: _Deadline) -> float:
    session = os.urandom(8)
    plain = client_hard_reset(session)
    out_tag = _OPCODE_NAMES[P_CONTROL_HARD_RESET_CLIENT_V2]
    answered = _openvpn_checker(ep, session)
    if ep.transport == "udp":
        return await _udp_exchange(
            trace, ip, ep.port, tid, lambda attempt: wrap_control(plain, ep.wrap, packet_id=attempt + 1),
            answered, attempts=opts.attempts, timeout=opts.handshake_timeout, deadline=deadline, out_tag=out_tag,
            kind=_opcode_tag)
    conn = await connect(trace, ip, ep.port, timeout=deadline.left(opts.connect_timeout), transaction_id=tid)
    try:
        packet = wrap_control(plain, ep.wrap)
        t_first = trace.now()
        await conn.write(struct.pack("!H", len(packet)) + packet, timeout=deadline.left(opts.handshake_timeout))
        _tag_last(trace, out_tag)
        end = time.monotonic() + opts.handshake_timeout
        while True:
            frame = await _read_frame(conn, deadline.left(max(0.05, end - time.monotonic())))
            tag = answered(frame)
            _tag_last(trace, tag or f"unexpected:{_opcode_tag(frame)}")
            if tag:
                return t_first
            if time.monotonic() >= end:
                raise NetxError(Failure.GENERIC_TIMEOUT.value)
    finally:
        await conn.close()


async def _wireguard(trace: Trace, ep: WireGuardEndpoint, ip: str, tid: int, opts: VpnOptions,
                     deadline: _Deadline) -> float:
    states: list[HandshakeState] = []

    def initiation(attempt: int) -> bytes:
        message, state = create_initiation(ep.private_key, ep.peer_public_key, ep.preshared_key)
        states.append(state)
        return message

    def answered(data: bytes) -> str | None:  # an answer to any initiation we sent (a late one counts)
        return "wireguard_handshake_response" if any(verify_response(s, data) for s in states) else None

    return await _udp_exchange(trace, ip, ep.port, tid, initiation, answered, attempts=opts.attempts,
                               timeout=opts.handshake_timeout, deadline=deadline,
                               out_tag="wireguard_handshake_initiation", kind=_wireguard_type)


async def measure(input: str | None, opts: VpnOptions) -> VpnTestKeys:
    """Measure one endpoint (named by its input URI); the network's failures end up in the test keys.

    ValueError when the input names no usable endpoint (a user mistake, checked before measuring)."""
    ep = endpoint_for(input, opts)
    deadline = _Deadline(opts.budget)
    trace = Trace()
    tid = trace.next_id()
    ip: str | None = ep.host if is_ip(ep.host) else None
    failure: str | None = None
    t_first = t_end = None
    t_start = 0.0
    try:
        if ip is None:
            ip = (await getaddrinfo(trace, ep.host, timeout=deadline.left(opts.dns_timeout)))[0]
            for q in trace.queries:
                q.transaction_id = tid
        t_start = trace.now()
        if isinstance(ep, WireGuardEndpoint):
            t_first = await _wireguard(trace, ep, ip, tid, opts, deadline)
        else:
            t_first = await _openvpn(trace, ep, ip, tid, opts, deadline)
        t_end = trace.now()
    except NetxError as exc:
        failure = exc.failure
    arrays = trace.test_keys()
    t0 = t_first if t_first is not None else t_start
    t = t_end if t_end is not None else trace.now()
    record = VpnHandshake(
        endpoint=f"{ep.tunnel}://{endpoint(ip or ep.host, ep.port)}/{ep.transport}", ip=ip, port=ep.port,
        transport=ep.transport, provider=ep.provider, failure=failure,
        handshake_time=round(t - t0, 6) if failure is None else None, t0=t0, t=t, tags=[],
        transaction_id=tid,
        openvpn_options=ep.options() if isinstance(ep, OpenVPNEndpoint) else None,
        wireguard_options=ep.options() if isinstance(ep, WireGuardEndpoint) else None,
    )
    return VpnTestKeys(
        **arrays, failure=failure, tunnel=ep.tunnel, provider=ep.provider, success=failure is None,
        bootstrap_time=round(t - t_start, 6) if failure is None else 0.0,
        openvpn_handshake=[record] if isinstance(ep, OpenVPNEndpoint) else None,
        wireguard_handshake=[record] if isinstance(ep, WireGuardEndpoint) else None,
    )


async def measure_provider_sites(opts: VpnOptions, wc_opts: WebConnectivityOptions, *,
                                 control: ControlClient | None = None
                                 ) -> list[tuple[str, WebConnectivityTestKeys]]:
    """The providers' websites through Web Connectivity: (url, test keys) per URL, each to be stored as a
    `web_connectivity` measurement with that URL as its input."""
    results = await asyncio.gather(*(wc_measure(url, wc_opts, control=control) for url in opts.provider_urls))
    return list(zip(opts.provider_urls, results))

"""WireGuard's first handshake round trip (Noise_IKpsk2), as a lab responder and as a client-side check.

A censor that blocks WireGuard by pattern (message type 1, 148 bytes) or by endpoint must be measurable with a
real handshake, not a port probe: the responder answers only a valid initiation from a known peer and stays
silent for anything else, as WireGuard does. Written from the WireGuard whitepaper (§5.4); no transport data
messages, cookies (under-load replies) or rekeying: the handshake response is all a reachability test needs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from netvigil.lab.servers.spec import VpnSpec
from netvigil.lab.servers.udp import start_udp

__all__ = [
    "HandshakeState",
    "Responder",
    "WireGuardClientConfig",
    "create_initiation",
    "ensure_wireguard_files",
    "generate_key",
    "parse_wg_config",
    "public_key",
    "start_wireguard",
    "verify_response",
    "wireguard_initiate",
]

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
INITIATION_LEN = 148
RESPONSE_LEN = 92
TAI64_BASE = 0x400000000000000A  # TAI64 label of the Unix epoch (the whitepaper's TAI64N timestamp)


# --- primitives (whitepaper §5.4: HASH, MAC, HMAC, KDF_n, AEAD, DH) ---

def _hash(*parts: bytes) -> bytes:
    h = hashlib.blake2s(digest_size=32)
    for p in parts:
        h.update(p)
    return h.digest()


def _mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def _kdf(chaining_key: bytes, data: bytes, n: int) -> list[bytes]:
    prk = _hmac(chaining_key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = _hmac(prk, prev + bytes([i]))
        out.append(prev)
    return out


def _nonce(counter: int) -> bytes:
    return b"\x00" * 4 + counter.to_bytes(8, "little")


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_nonce(0), plaintext, aad)


def _open(key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    return ChaCha20Poly1305(key).decrypt(_nonce(0), ciphertext, aad)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    return private.exchange(X25519PublicKey.from_public_bytes(public))


def _pub(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _tai64n(now: float | None = None) -> bytes:
    now = time.time() if now is None else now
    secs = int(now)
    return struct.pack(">QI", TAI64_BASE + secs, int((now - secs) * 1e9))


def generate_key() -> str:
    """A new private key, base64 as `wg genkey` prints it."""
    raw = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def public_key(private_b64: str) -> str:
    """The public key of a base64 private key, as `wg pubkey` prints it."""
    return base64.b64encode(_pub(_private(private_b64))).decode()


def _private(b64: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(_key_bytes(b64))


def _key_bytes(b64: str) -> bytes:
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 32:
        raise ValueError("a WireGuard key is 32 bytes")
    return raw


# --- the handshake as pure functions ---

@dataclass(slots=True)
class HandshakeState:
    """What an initiator keeps between sending the initiation and checking the response."""

    sender_index: int
    chaining_key: bytes
    hash: bytes
    ephemeral: X25519PrivateKey
    static: X25519PrivateKey
    static_public: bytes
    preshared_key: bytes = field(default=b"\x00" * 32)


def _initial(responder_public: bytes) -> tuple[bytes, bytes]:
    ck = _hash(CONSTRUCTION)
    return ck, _hash(_hash(ck, IDENTIFIER), responder_public)


def create_initiation(
    initiator_private: str, responder_public: str, preshared_key: str | None = None, now: float | None = None
) -> tuple[bytes, HandshakeState]:
    """Handshake initiation message (type 1) and the state needed to verify the answer."""
    s_priv, s_r = _private(initiator_private), _key_bytes(responder_public)
    ck, h = _initial(s_r)
    e_priv = X25519PrivateKey.generate()
    e_pub = _pub(e_priv)
    (ck,) = _kdf(ck, e_pub, 1)
    h = _hash(h, e_pub)
    ck, k = _kdf(ck, _dh(e_priv, s_r), 2)
    enc_static = _seal(k, _pub(s_priv), h)
    h = _hash(h, enc_static)
    ck, k = _kdf(ck, _dh(s_priv, s_r), 2)
    enc_time = _seal(k, _tai64n(now), h)
    h = _hash(h, enc_time)
    sender = int.from_bytes(os.urandom(4), "little")
    body = struct.pack("<B3xI", 1, sender) + e_pub + enc_static + enc_time
    body += _mac(_hash(LABEL_MAC1, s_r), body)
    psk = _key_bytes(preshared_key) if preshared_key else b"\x00" * 32
    return body + b"\x00" * 16, HandshakeState(sender, ck, h, e_priv, s_priv, _pub(s_priv), psk)


def verify_response(state: HandshakeState, message: bytes) -> bool:
    """True if `message` is a valid handshake response (type 2) to the initiation behind `state`."""
    if len(message) != RESPONSE_LEN or message[:4] != b"\x02\x00\x00\x00":
        return False
    _sender, receiver = struct.unpack_from("<II", message, 4)
    if receiver != state.sender_index:
        return False
    if not hmac.compare_digest(message[60:76], _mac(_hash(LABEL_MAC1, state.static_public), message[:60])):
        return False
    e_r = message[12:44]
    try:
        (ck,) = _kdf(state.chaining_key, e_r, 1)
        h = _hash(state.hash, e_r)
        (ck,) = _kdf(ck, _dh(state.ephemeral, e_r), 1)
        (ck,) = _kdf(ck, _dh(state.static, e_r), 1)
        ck, tau, k = _kdf(ck, state.preshared_key, 3)
        h = _hash(h, tau)
        _open(k, message[44:60], h)
    except (InvalidTag, ValueError):
        return False
    return True


class Responder:
    """The responder's half: answers valid initiations from known peers, returns None for everything else."""

    def __init__(self, private_b64: str, peers: list[str], preshared_key: str | None = None) -> None:
        self.private = _private(private_b64)
        self.public = _pub(self.private)
        self.peers = {_key_bytes(p) for p in peers}
        self.psk = _key_bytes(preshared_key) if preshared_key else b"\x00" * 32
        self.mac1_key = _hash(LABEL_MAC1, self.public)
        self.last_timestamp: dict[bytes, bytes] = {}  # replay protection: TAI64N must grow per peer

    def respond(self, message: bytes) -> bytes | None:
        if len(message) != INITIATION_LEN or message[:4] != b"\x01\x00\x00\x00":
            return None
        if not hmac.compare_digest(message[116:132], _mac(self.mac1_key, message[:116])):
            return None
        (sender,) = struct.unpack_from("<I", message, 4)
        e_i, enc_static, enc_time = message[8:40], message[40:88], message[88:116]
        ck, h = _initial(self.public)
        try:
            (ck,) = _kdf(ck, e_i, 1)
            h = _hash(h, e_i)
            ck, k = _kdf(ck, _dh(self.private, e_i), 2)
            s_i = _open(k, enc_static, h)
            h = _hash(h, enc_static)
            if s_i not in self.peers:
                return None
            ck, k = _kdf(ck, _dh(self.private, s_i), 2)
            timestamp = _open(k, enc_time, h)
            h = _hash(h, enc_time)
        except (InvalidTag, ValueError):
            return None
        if timestamp <= self.last_timestamp.get(s_i, b""):
            return None  # a replayed initiation
        self.last_timestamp[s_i] = timestamp
        e_priv = X25519PrivateKey.generate()
        e_r = _pub(e_priv)
        (ck,) = _kdf(ck, e_r, 1)
        h = _hash(h, e_r)
        (ck,) = _kdf(ck, _dh(e_priv, e_i), 1)
        (ck,) = _kdf(ck, _dh(e_priv, s_i), 1)
        ck, tau, k = _kdf(ck, self.psk, 3)
        h = _hash(h, tau)
        enc_empty = _seal(k, b"", h)
        body = struct.pack("<B3xII", 2, int.from_bytes(os.urandom(4), "little"), sender) + e_r + enc_empty
        body += _mac(_hash(LABEL_MAC1, s_i), body)
        return body + b"\x00" * 16


# --- configuration files ---

@dataclass(frozen=True, slots=True)
class WireGuardClientConfig:
    private_key: str
    peer_public_key: str
    endpoint_host: str
    endpoint_port: int
    preshared_key: str | None = None
    address: str = "10.200.0.2/32"

    def to_text(self) -> str:
        host = f"[{self.endpoint_host}]" if ":" in self.endpoint_host else self.endpoint_host
        psk = f"PresharedKey = {self.preshared_key}\n" if self.preshared_key else ""
        return (
            "# netvigil lab: WireGuard client for the lab's stand-in VPN endpoint\n"
            f"[Interface]\nPrivateKey = {self.private_key}\nAddress = {self.address}\n\n"
            f"[Peer]\nPublicKey = {self.peer_public_key}\n{psk}Endpoint = {host}:{self.endpoint_port}\n"
            "AllowedIPs = 0.0.0.0/0\n"
        )


def parse_wg_config(text: str) -> WireGuardClientConfig:
    """Read the keys and endpoint of a wg-quick style client config (first [Peer] only)."""
    section, values = "", dict[str, str]()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").lower()
        elif "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(f"{section}.{key.strip().lower()}", value.strip())
    try:
        host, _, port = values["peer.endpoint"].rpartition(":")
        return WireGuardClientConfig(
            private_key=values["interface.privatekey"],
            peer_public_key=values["peer.publickey"],
            endpoint_host=host.strip("[]"),
            endpoint_port=int(port),
            preshared_key=values.get("peer.presharedkey"),
            address=values.get("interface.address", "10.200.0.2/32"),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a WireGuard client config: missing or bad {exc}") from None


def ensure_wireguard_files(spec: VpnSpec, state_dir: Path) -> tuple[str, list[str]]:
    """The server key and accepted peers; writes `wg-<bind>-server.conf` and a client `wg-<bind>.conf` if absent.

    The lab client in `wg-<bind>.conf` is always an accepted peer, besides any `peers` in the spec.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    server_path, client_path = state_dir / f"wg-{spec.bind}-server.conf", state_dir / f"wg-{spec.bind}.conf"
    server_key = spec.private_key
    if server_key is None and server_path.exists():
        for line in server_path.read_text().splitlines():
            if line.replace(" ", "").startswith("PrivateKey="):
                server_key = line.split("=", 1)[1].strip()
    server_key = server_key or generate_key()
    server_pub = public_key(server_key)
    client: WireGuardClientConfig | None = None
    if client_path.exists():
        try:
            client = parse_wg_config(client_path.read_text())
        except ValueError:
            client = None
    wanted = (server_pub, spec.bind, spec.port, spec.preshared_key)
    if client is None or (client.peer_public_key, client.endpoint_host, client.endpoint_port,
                          client.preshared_key) != wanted:
        client = WireGuardClientConfig(generate_key(), server_pub, spec.bind, spec.port, spec.preshared_key)
        _write_secret(client_path, client.to_text())
    peers = list(dict.fromkeys([*spec.peers, public_key(client.private_key)]))
    peer_lines = "".join(f"\n[Peer]\nPublicKey = {p}\nAllowedIPs = 10.200.0.{2 + i}/32\n" for i, p in enumerate(peers))
    _write_secret(server_path, f"# netvigil lab: WireGuard server {spec.bind}:{spec.port}\n"
                               f"[Interface]\nPrivateKey = {server_key}\nListenPort = {spec.port}\n{peer_lines}")
    return server_key, peers


def _write_secret(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# --- I/O edges ---

async def start_wireguard(spec: VpnSpec, state_dir: Path) -> list[asyncio.DatagramTransport]:
    server_key, peers = ensure_wireguard_files(spec, state_dir)
    responder = Responder(server_key, peers, spec.preshared_key)

    async def on_datagram(data: bytes, peer: tuple) -> bytes | None:
        return responder.respond(data)

    return [await start_udp(on_datagram, spec.bind, spec.port)]


async def wireguard_initiate(
    config: WireGuardClientConfig | str | Path, *, timeout: float = 2.0, attempts: int = 2,
    endpoint: tuple[str, int] | None = None,
) -> bool:
    """Send a handshake initiation to the config's endpoint; True once a valid response arrives.

    `config` is a config object, the path of a wg-quick config, or its text. Each attempt waits `timeout`
    seconds (WireGuard itself retries after 5 s); silence, garbage and wrong answers all give False.
    """
    if isinstance(config, Path) or (isinstance(config, str) and "[Interface]" not in config):
        config = parse_wg_config(Path(config).read_text())
    elif isinstance(config, str):
        config = parse_wg_config(config)
    host, port = endpoint or (config.endpoint_host, config.endpoint_port)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(_HandshakeClient, remote_addr=(host, port))
    try:
        for _ in range(attempts):
            message, client.state = create_initiation(config.private_key, config.peer_public_key,
                                                      config.preshared_key)
            client.answered = loop.create_future()
            transport.sendto(message)
            try:
                return await asyncio.wait_for(client.answered, timeout)
            except TimeoutError:
                continue
        return False
    finally:
        transport.close()


class _HandshakeClient(asyncio.DatagramProtocol):
    """Resolves `answered` with the first datagram that is a valid response to the current initiation."""

    def __init__(self) -> None:
        self.state: HandshakeState | None = None
        self.answered: asyncio.Future[bool] | None = None

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.answered and not self.answered.done() and self.state and verify_response(self.state, data):
            self.answered.set_result(True)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: wait out the timeout anyway
        pass

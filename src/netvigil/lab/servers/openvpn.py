"""OpenVPN's first exchange (hard reset), as a lab responder and as a client-side check.

Censors fingerprint OpenVPN by its first packet (opcode P_CONTROL_HARD_RESET_CLIENT_V2, fixed layout), so the
lab must answer that packet the way a server does: a P_CONTROL_HARD_RESET_SERVER_V2 that acknowledges the
client's packet and session. Nothing beyond: no TLS over the control channel, no tls-auth/tls-crypt. Over TCP
every packet carries a 2-byte big-endian length prefix. Garbage gets silence (UDP) or a hang-up (TCP).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections import OrderedDict
from pathlib import Path

from netvigil.lab.servers.ca import CAFiles
from netvigil.lab.servers.framed import read_frame, start_framed_tcp, write_frame
from netvigil.lab.servers.spec import VpnSpec
from netvigil.lab.servers.udp import start_udp

__all__ = [
    "P_CONTROL_HARD_RESET_CLIENT_V2",
    "P_CONTROL_HARD_RESET_SERVER_V2",
    "HardResetResponder",
    "client_hard_reset",
    "is_server_reset_for",
    "openvpn_hard_reset",
    "start_openvpn",
    "write_client_profile",
]

P_CONTROL_HARD_RESET_CLIENT_V2 = 7
P_CONTROL_HARD_RESET_SERVER_V2 = 8
MIN_RESET_LEN = 1 + 8 + 1 + 4  # opcode/key id, session id, empty ack array, packet id
MAX_RESET_LEN = 1 + 8 + 1 + 4 + 256  # 2.6 clients may append early-negotiation TLVs


def client_hard_reset(session_id: bytes) -> bytes:
    """A client's first packet: opcode 7, key id 0, its session id, no acks, packet id 0, no payload."""
    return bytes([P_CONTROL_HARD_RESET_CLIENT_V2 << 3]) + session_id + b"\x00" + struct.pack("!I", 0)


def _server_hard_reset(server_session: bytes, client_session: bytes, acked_packet_id: int) -> bytes:
    return (
        bytes([P_CONTROL_HARD_RESET_SERVER_V2 << 3]) + server_session
        + b"\x01" + struct.pack("!I", acked_packet_id) + client_session  # ack array: 1 entry, then remote session
        + struct.pack("!I", 0)  # our own message packet id
    )


def is_server_reset_for(packet: bytes, client_session: bytes) -> bool:
    """True if `packet` is a server hard reset acknowledging packet 0 of `client_session`."""
    if len(packet) < 1 + 8 + 1 + 4 + 8 + 4 or packet[0] >> 3 != P_CONTROL_HARD_RESET_SERVER_V2:
        return False
    n_acks = packet[9]
    if n_acks < 1 or len(packet) < 10 + 4 * n_acks + 8 + 4:
        return False
    acks = struct.unpack_from(f"!{n_acks}I", packet, 10)
    remote = packet[10 + 4 * n_acks: 18 + 4 * n_acks]
    return 0 in acks and remote == client_session


class HardResetResponder:
    """Answers client hard resets; a retransmitted reset gets the same server session id back."""

    def __init__(self, max_sessions: int = 4096) -> None:
        self.sessions: OrderedDict[bytes, bytes] = OrderedDict()
        self.max_sessions = max_sessions

    def respond(self, packet: bytes) -> bytes | None:
        if not MIN_RESET_LEN <= len(packet) <= MAX_RESET_LEN:
            return None
        if packet[0] != P_CONTROL_HARD_RESET_CLIENT_V2 << 3 or packet[9] != 0:  # key id 0, no acks yet
            return None
        client_session = packet[1:9]
        (packet_id,) = struct.unpack_from("!I", packet, 10)
        if packet_id != 0:
            return None
        server_session = self.sessions.get(client_session)
        if server_session is None:
            server_session = os.urandom(8)
            self.sessions[client_session] = server_session
            if len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        return _server_hard_reset(server_session, client_session, packet_id)

    def knows_session(self, packet: bytes) -> bool:
        """A later packet (ACK, TLS ClientHello in P_CONTROL_V1) of a session we answered: ignored, not garbage."""
        return len(packet) >= 9 and packet[1:9] in self.sessions


def write_client_profile(spec: VpnSpec, state_dir: Path, ca: CAFiles) -> Path:
    """A client .ovpn for this endpoint (lab CA inline). It gets as far as the hard reset, which is the point."""
    proto = "udp" if spec.kind == "openvpn-udp" else "tcp"
    path = state_dir / f"openvpn-{spec.bind}-{proto}.ovpn"
    text = (
        f"# netvigil lab: OpenVPN client profile for {spec.bind}:{spec.port}/{proto}\n"
        "# The lab endpoint answers the hard reset only; it runs no TLS control channel.\n"
        "client\ndev tun\n"
        f"proto {'udp' if proto == 'udp' else 'tcp-client'}\n"
        f"remote {spec.bind} {spec.port}\n"
        "nobind\npersist-key\npersist-tun\nremote-cert-tls server\ncipher AES-256-GCM\nauth SHA256\nverb 3\n"
        f"<ca>\n{ca.cert.read_text().strip()}\n</ca>\n"
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


async def start_openvpn(spec: VpnSpec, state_dir: Path, ca: CAFiles) -> list[object]:
    write_client_profile(spec, state_dir, ca)
    responder = HardResetResponder()

    async def on_datagram(packet: bytes, peer: tuple) -> bytes | None:
        return responder.respond(packet)

    async def on_frame(packet: bytes, peer: tuple) -> bytes | None:
        reply = responder.respond(packet)
        if reply is None and responder.knows_session(packet):
            return b""  # the client goes on with its TLS handshake; we never answer it, but do not hang up
        return reply

    if spec.kind == "openvpn-udp":
        return [await start_udp(on_datagram, spec.bind, spec.port)]
    return [await start_framed_tcp(on_frame, spec.bind, spec.port, idle_timeout=30.0, close_when_silent=True)]


async def openvpn_hard_reset(host: str, port: int, proto: str = "udp", *, timeout: float = 3.0,
                             attempts: int = 2) -> bool:
    """Send a client hard reset; True once the server's hard reset acknowledging it arrives.

    `proto` is "udp" or "tcp". UDP retries `attempts` times (OpenVPN itself retransmits after 2 s); TCP makes
    one connection and waits `timeout` for the answer. Refusal, silence or a wrong answer give False.
    """
    session = os.urandom(8)
    packet = client_hard_reset(session)
    if proto == "tcp":
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
            try:
                await write_frame(writer, packet, timeout)
                answer = await read_frame(reader, timeout)
                return is_server_reset_for(answer, session)
            finally:
                writer.close()
        except (TimeoutError, asyncio.IncompleteReadError, OSError):
            return False
    if proto != "udp":
        raise ValueError(f"proto must be 'udp' or 'tcp', not {proto!r}")
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: _ResetClient(session, loop.create_future()), remote_addr=(host, port))
    try:
        for _ in range(attempts):
            transport.sendto(packet)
            try:
                return await asyncio.wait_for(asyncio.shield(client.answered), timeout)
            except TimeoutError:
                continue
        return False
    finally:
        transport.close()


class _ResetClient(asyncio.DatagramProtocol):
    """Resolves `answered` with the first datagram that is the server's reset for `session`."""

    def __init__(self, session: bytes, answered: asyncio.Future[bool]) -> None:
        self.session, self.answered = session, answered

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.answered.done() and is_server_reset_for(data, self.session):
            self.answered.set_result(True)

    def error_received(self, exc: Exception) -> None:
        pass

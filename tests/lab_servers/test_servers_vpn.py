"""WireGuard and OpenVPN responders, checked with the package's own client helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from netvigil.lab.servers import openvpn_hard_reset, parse_wg_config, wireguard_initiate
from netvigil.lab.servers.openvpn import HardResetResponder, client_hard_reset
from netvigil.lab.servers.wireguard import Responder, create_initiation, generate_key, public_key, verify_response


def test_wireguard_handshake_with_known_peer(lab):
    conf = lab.state / f"wg-{lab.ip(50)}.conf"
    assert conf.exists() and (lab.state / f"wg-{lab.ip(50)}-server.conf").exists()
    assert asyncio.run(wireguard_initiate(conf))
    assert asyncio.run(wireguard_initiate(conf.read_text()))  # a second handshake (fresh timestamp) works too


def test_wireguard_silent_for_unknown_peer_and_garbage(lab):
    config = parse_wg_config((lab.state / f"wg-{lab.ip(50)}.conf").read_text())
    stranger = dataclasses.replace(config, private_key=generate_key())
    assert not asyncio.run(wireguard_initiate(stranger, timeout=0.5, attempts=1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(b"\x01\x00\x00\x00" + b"\x00" * 144, (lab.ip(50), 51820))
        try:
            s.recv(2048)
            raise AssertionError("garbage must get no answer")
        except TimeoutError:
            pass


def test_wireguard_responder_rejects_replay_and_bad_mac():
    server, client = generate_key(), generate_key()
    responder = Responder(server, [public_key(client)])
    message, state = create_initiation(client, public_key(server))
    answer = responder.respond(message)
    assert answer is not None and verify_response(state, answer)
    assert responder.respond(message) is None  # replayed timestamp
    tampered, _ = create_initiation(client, public_key(server))
    assert responder.respond(tampered[:120] + bytes([tampered[120] ^ 1]) + tampered[121:]) is None


def test_openvpn_udp_and_tcp(lab):
    assert asyncio.run(openvpn_hard_reset(lab.ip(50), 11194, "udp"))
    assert asyncio.run(openvpn_hard_reset(lab.ip(50), 11194, "tcp"))
    profile = (lab.state / f"openvpn-{lab.ip(50)}-udp.ovpn").read_text()
    assert f"remote {lab.ip(50)} 11194" in profile and "<ca>" in profile


def test_openvpn_ignores_garbage(lab):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(b"GET / HTTP/1.1\r\n\r\n", (lab.ip(50), 11194))
        try:
            s.recv(2048)
            raise AssertionError("garbage must get no answer")
        except TimeoutError:
            pass
    with socket.create_connection((lab.ip(50), 11194), timeout=3) as s:
        s.sendall(b"\x00\x10" + b"\xff" * 16)
        assert s.recv(100) == b""  # hung up
    responder = HardResetResponder()
    assert responder.respond(client_hard_reset(b"A" * 8)[:-1]) is None
    assert responder.respond(b"\x40" + b"A" * 13) is None  # wrong opcode

"""The `tor` and `vpn` nettests against real servers on loopback, and what the analysis makes of them.

Servers: the lab's stand-in Tor directory authority (TLS OR port answering VERSIONS, a Dir port serving a
consensus), the lab's WireGuard and OpenVPN responders, small silent/reset servers, and, when the `openvpn` binary
is installed, a real OpenVPN 2.x server in p2p TLS mode (`--dev null`) with tls-auth and tls-crypt.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgspec
import pytest

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement
from netvigil.lab.servers.framed import start_framed_tcp
from netvigil.lab.servers.openvpn import HardResetResponder
from netvigil.lab.servers.spec import TorSpec, VpnSpec
from netvigil.lab.servers.tor import start_tor
from netvigil.lab.servers.udp import start_udp
from netvigil.lab.servers.wireguard import generate_key, start_wireguard
from netvigil.model.archival import TorTestKeys
from netvigil.probe.envelope import ReportInfo, encode_measurement
from netvigil.probe.geo import ProbeLocation
from netvigil.probe.nettests import tor, vpn

LOOP = "127.0.0.1"


def run(coro_fn: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(timeout):
            return await coro_fn()

    return asyncio.run(main())


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOP, 0))
        return s.getsockname()[1]


def measurement(test_name: str, version: str, input: str | None, tk: Any):
    report = ReportInfo(test_name, version, "20201001T000000Z_test_AZ_64528_n1_x", datetime.now(UTC),
                        ProbeLocation(probe_cc="AZ", probe_asn="AS64528", source="config"))
    raw = encode_measurement(report, input, datetime.now(UTC), 1.0, tk)
    return raw, decode_measurement(raw)


# --- servers --------------------------------------------------------------------------------------------------------

async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.read()      # never answers: the peer's handshake times out
    finally:
        writer.close()


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()     # RST at once


class TorWorld:
    """Two stand-in authorities, a silent and a resetting server, and a closed port."""

    def __init__(self, cert_dir: Path) -> None:
        self.cert_dir = cert_dir
        self.servers: list[Any] = []

    async def __aenter__(self) -> TorWorld:
        self.auth = []
        for nick in ("moria1", "tor26"):
            spec = TorSpec(bind=LOOP, or_port=free_port(), dir_port=free_port(), nickname=nick)
            self.servers += await start_tor(spec, self.cert_dir)
            self.auth.append(spec)
        self.silent = await asyncio.start_server(_silent, LOOP, 0)
        self.reset = await asyncio.start_server(_reset, LOOP, 0)
        self.servers += [self.silent, self.reset]
        self.closed_port = free_port()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for s in self.servers:
            s.close()

    def port(self, server: asyncio.Server) -> int:
        return server.sockets[0].getsockname()[1]


def _opts(targets: list[tor.TorTargetSpec], **kw: Any) -> tor.TorOptions:
    return tor.TorOptions(targets=tuple(targets), budget=kw.pop("budget", 6.0), connect_timeout=1.0,
                          tls_timeout=1.0, http_timeout=2.0, **kw)


# --- tor ------------------------------------------------------------------------------------------------------------

def test_tor_reachable_authorities_and_failures_by_step(tmp_path: Path) -> None:
    async def go() -> TorTestKeys:
        async with TorWorld(tmp_path) as w:
            a, b = w.auth
            targets = [
                tor.TorTargetSpec(f"{LOOP}:{a.or_port}", "or_port_dirauth", "moria1"),
                tor.TorTargetSpec(f"{LOOP}:{a.dir_port}", "dir_port", "moria1"),
                tor.TorTargetSpec(f"{LOOP}:{b.or_port}", "or_port_dirauth", "tor26"),
                tor.TorTargetSpec(f"{LOOP}:{b.dir_port}", "dir_port", "tor26"),
                tor.TorTargetSpec(f"{LOOP}:{w.port(w.silent)}", "or_port_dirauth", "silent"),
                tor.TorTargetSpec(f"{LOOP}:{w.port(w.reset)}", "dir_port", "reset"),
                tor.TorTargetSpec(f"{LOOP}:{w.closed_port}", "or_port_dirauth", "closed"),
                tor.TorTargetSpec(f"{LOOP}:{a.dir_port}", "or_port_dirauth", "plainhttp"),  # not TLS
            ]
            return await tor.measure(None, _opts(targets))

    tk = run(go)
    by_name = {(t.target_name, t.target_protocol): t for t in tk.targets.values()}
    ok = by_name[("moria1", "or_port_dirauth")]
    assert ok.failure is None and list(ok.summary) == ["connect", "handshake", "versions"]
    assert ok.tls_handshakes[0].no_tls_verify and ok.tls_handshakes[0].peer_certificates
    reads = [e for e in ok.network_events if e.operation == "read"]
    assert sum(e.num_bytes for e in reads) == 5 + 6       # the VERSIONS cell: header and three link versions
    d = by_name[("tor26", "dir_port")]
    assert d.failure is None and d.requests[0].response.code == 200
    assert d.requests[0].request.url.endswith("/tor/status-vote/current/consensus.z")
    assert by_name[("silent", "or_port_dirauth")].failure == "generic_timeout_error"
    assert by_name[("silent", "or_port_dirauth")].summary["handshake"] == {"failure": "generic_timeout_error"}
    assert by_name[("reset", "dir_port")].failure in ("connection_reset", "eof_error")
    assert by_name[("closed", "or_port_dirauth")].summary == {"connect": {"failure": "connection_refused"}}
    assert by_name[("plainhttp", "or_port_dirauth")].failure == "ssl_failed_handshake"
    # OONI's "k of n": 2 of 5 OR ports, 2 of 3 Dir ports; protocols without targets count 0 of 0.
    assert (tk.or_port_dirauth_total, tk.or_port_dirauth_accessible) == (5, 2)
    assert (tk.dir_port_total, tk.dir_port_accessible) == (3, 2)
    assert (tk.obfs4_total, tk.obfs4_accessible, tk.or_port_total, tk.or_port_accessible) == (0, 0, 0, 0)
    # Each target's events share one transaction id, distinct per target.
    ids = [{e.transaction_id for e in t.network_events} for t in tk.targets.values()]
    assert all(len(s) == 1 for s in ids) and len(set().union(*ids)) == len(tk.targets)


def test_tor_dir_port_tcp_mode_and_not_a_consensus(tmp_path: Path) -> None:
    async def blockpage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        page = b"<html>This site has been blocked</html>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page))
        await writer.drain()
        writer.close()

    async def go() -> tuple[TorTestKeys, TorTestKeys]:
        async with TorWorld(tmp_path) as w:
            bp = await asyncio.start_server(blockpage, LOOP, 0)
            try:
                targets = [tor.TorTargetSpec(f"{LOOP}:{w.auth[0].dir_port}", "dir_port", "moria1"),
                           tor.TorTargetSpec(f"{LOOP}:{w.port(bp)}", "dir_port", "injected")]
                http = await tor.measure(None, _opts(targets))
                tcp = await tor.measure(None, _opts(targets, dir_port_mode="tcp"))
            finally:
                bp.close()
            return http, tcp

    http, tcp = run(go)
    names = {t.target_name: t for t in http.targets.values()}
    assert names["moria1"].failure is None
    assert names["injected"].failure == "unknown_failure: the response is not a Tor consensus"
    assert (http.dir_port_total, http.dir_port_accessible) == (2, 1)
    assert all(not t.requests and t.failure is None for t in tcp.targets.values())
    assert (tcp.dir_port_total, tcp.dir_port_accessible) == (2, 2)
    # A Dir port judged by its connect alone (current OONI Probe does the same) is ok, not "no data"; an
    # injected page instead of the consensus is blocked at the HTTP step.
    v = {x.target: x for x in analyze(measurement("tor", tor.TEST_VERSION, None, tcp)[1])[1]}
    assert v["dir_port:moria1"].outcome == "ok" and v["dir_port"].rule_ids == ["tor.protocol.all_reachable"]
    v = {x.target: x for x in analyze(measurement("tor", tor.TEST_VERSION, None, http)[1])[1]}
    assert (v["dir_port:injected"].outcome, v["dir_port:injected"].method) == ("blocked", "http-failure")


def test_tor_private_bridges_are_scrubbed_and_budget_is_kept(tmp_path: Path) -> None:
    closed: list[int] = []

    async def go() -> tuple[TorTestKeys, float]:
        async with TorWorld(tmp_path) as w:
            closed.append(w.closed_port)
            targets = [
                tor.parse_bridge_line(f"obfs4 {LOOP}:{w.port(w.silent)} {'A' * 40} cert=xyz iat-mode=0"),
                tor.parse_bridge_line(f"Bridge {LOOP}:{w.closed_port} {'B' * 40}"),
                tor.TorTargetSpec(f"{LOOP}:{w.port(w.silent)}", "or_port_dirauth", "slow1"),
                tor.TorTargetSpec(f"{LOOP}:{w.port(w.silent)}", "dir_port", "slow2"),
            ]
            t0 = time.monotonic()
            tk = await tor.measure(None, tor.TorOptions(targets=tuple(targets), budget=1.5))
            return tk, time.monotonic() - t0

    tk, took = run(go)
    assert took < 3.0                                            # the budget bounds every step
    raw = msgspec.json.encode(tk).decode()
    bridges = [t for t in tk.targets.values() if t.target_protocol in ("obfs4", "or_port")]
    assert len(bridges) == 2 and all(t.target_address == "[scrubbed]" for t in bridges)
    for t in bridges:
        assert all(c.ip == "[scrubbed]" for c in t.tcp_connect)
        assert all(e.address == "[scrubbed]" for e in t.network_events)
        assert t.target_name.startswith("bridge-")
    assert f"{LOOP}:{closed[0]}" not in raw                       # the or_port bridge's address is nowhere
    obfs4 = next(t for t in bridges if t.target_protocol == "obfs4")
    assert obfs4.failure is None                                  # TCP connect only: the silent peer accepted
    assert (tk.obfs4_total, tk.obfs4_accessible, tk.or_port_total, tk.or_port_accessible) == (1, 1, 1, 0)
    key = next(k for k, t in tk.targets.items() if t is obfs4)
    assert len(key) == 64                                         # ts-023's sha256(address + fingerprint)


def test_tor_target_files(tmp_path: Path) -> None:
    ooni = tmp_path / "targets.json"
    ooni.write_text(json.dumps({
        "66.111.2.131:9030": {"address": "66.111.2.131:9030", "protocol": "dir_port", "name": "Serge"},
        "f372": {"address": "38.229.1.78:80", "fingerprint": "C8CBDB2464FC9804A69531437BCF2BE31FDD2EE4",
                 "params": {"cert": ["abc"], "iat-mode": ["1"]}, "protocol": "obfs4"},
        "bad1": {"address": "no-port", "protocol": "dir_port"},
        "bad2": {"protocol": "or_port"},
    }))
    loaded = tor.load_targets(ooni)
    assert [t.id for t in loaded.targets] == ["66.111.2.131:9030", "f372"]
    assert not loaded.targets[0].private and loaded.targets[1].private
    assert len(loaded.problems) == 2 and "bad1" in loaded.problems[0] and "bad2" in loaded.problems[1]
    toml = tmp_path / "lab.toml"
    toml.write_text('bridges = ["obfs4 203.0.113.120:443 ' + "C" * 40 + ' cert=x iat-mode=0", "junk line here"]\n'
                    '[[targets]]\naddress = "203.0.113.101:9001"\nprotocol = "or_port_dirauth"\nname = "moria1"\n')
    loaded = tor.load_targets(toml)
    assert [(t.protocol, t.name) for t in loaded.targets] == [("or_port_dirauth", "moria1"), ("obfs4", None)]
    assert loaded.problems == (f"{toml}: bridge 2: bad address 'line': expected host:port",)
    text = tmp_path / "bridges.txt"
    text.write_text("# mine\nBridge obfs4 192.0.2.7:443 " + "D" * 40 + " cert=q\n192.0.2.8\n")
    loaded = tor.load_targets(text)
    assert [(t.protocol, t.address) for t in loaded.targets] == [("obfs4", "192.0.2.7:443"),
                                                                 ("or_port", "192.0.2.8:443")]
    with pytest.raises(ValueError, match="not JSON"):
        bad = tmp_path / "x.json"
        bad.write_text("{")
        tor.load_targets(bad)


def test_tor_default_targets_are_the_ten_authorities_and_tor_browser_bridges() -> None:
    targets = tor.make_targets().targets
    dirauth = [t for t in targets if t.protocol == "or_port_dirauth"]
    assert len(dirauth) == 10 and len([t for t in targets if t.protocol == "dir_port"]) == 10
    assert {t.name for t in dirauth} >= {"moria1", "tor26", "dizum", "gabelmoo", "dannenberg", "maatuska",
                                          "longclaw", "bastet", "faravahar", "Serge"}
    assert "128.31.0.39:9201" in {t.address for t in dirauth}
    assert len([t for t in targets if t.protocol == "obfs4"]) == len(tor.DEFAULT_BRIDGES)
    assert not any(t.private for t in targets)
    assert tor.default_inputs(tor.TorOptions()) == [None] and tor.test_helpers(tor.TorOptions()) is None
    only_file = tor.make_targets(bridges=("obfs4 192.0.2.9:443",), authorities=False, default_bridges=False)
    assert [t.address for t in only_file.targets] == ["192.0.2.9:443"]


def test_tor_measurement_decodes_and_analysis_counts_k_of_n(tmp_path: Path) -> None:
    async def go() -> TorTestKeys:
        async with TorWorld(tmp_path) as w:
            a, b = w.auth
            targets = [tor.TorTargetSpec(f"{LOOP}:{s.or_port}", "or_port_dirauth", s.nickname) for s in (a, b)]
            targets += [tor.TorTargetSpec(f"{LOOP}:{free_port()}", "or_port_dirauth", f"gone{i}") for i in range(3)]
            targets += [tor.TorTargetSpec(f"{LOOP}:{s.dir_port}", "dir_port", s.nickname) for s in (a, b)]
            return await tor.measure(None, _opts(targets))

    raw, m = measurement("tor", tor.TEST_VERSION, None, run(go))
    assert isinstance(m.test_keys, TorTestKeys) and len(m.test_keys.targets) == 7
    assert json.loads(raw)["test_keys"]["or_port_dirauth_accessible"] == 2
    _obs, verdicts = analyze(m)
    v = {x.target: x for x in verdicts}
    assert (v["or_port_dirauth"].outcome, v["or_port_dirauth"].method) == ("blocked", "tcp_ip")
    assert v["or_port_dirauth"].detail.startswith("2 of 5 reachable; OONI: 2/5")
    assert v["dir_port"].outcome == "ok" and v["dir_port"].detail.startswith("2 of 2 reachable")
    assert v["or_port_dirauth:moria1"].outcome == "ok"
    assert v["or_port_dirauth:gone0"].outcome == "blocked"


def test_tor_against_real_ooni_shape(real_dir: Path) -> None:
    """Every key netvigil writes for a target is one OONI Probe writes (the stored tor.json, January 2020) or
    one ts-023 added on 2020-01-27/30 (`summary`, `target_name`, the counts) or later (`target_source`)."""
    doc = json.loads((real_dir / "tor.json").read_text())
    ooni_keys = set().union(*(set(t) for t in doc["test_keys"]["targets"].values()))
    ours = msgspec.to_builtins(tor.TorTarget(agent="redirect", failure="x", summary={}, target_address="x",
                                             target_name="y", target_protocol="dir_port", queries=[],
                                             tcp_connect=[], tls_handshakes=[], requests=[], network_events=[],
                                             target_source="tor"))
    assert set(ours) - ooni_keys == {"summary", "target_name", "target_source"}
    counts = {f"{p}_{k}" for p in ("dir_port", "obfs4", "or_port_dirauth", "or_port") for k in ("total", "accessible")}
    tk = msgspec.to_builtins(run(lambda: tor.measure(None, tor.TorOptions(targets=()))))
    assert set(tk) == counts | {"targets"} and all(tk[k] == 0 for k in counts)


# --- vpn: configs ---------------------------------------------------------------------------------------------------

STATIC_KEY = "-----BEGIN OpenVPN Static key V1-----\n" + "\n".join(
    bytes(range(i * 16, i * 16 + 16)).hex() for i in range(16)) + "\n-----END OpenVPN Static key V1-----\n"


def test_openvpn_config_parsing(tmp_path: Path) -> None:
    (tmp_path / "ta.key").write_text(STATIC_KEY)
    conf = tmp_path / "a.ovpn"
    conf.write_text("client\ndev tun\nproto tcp-client\nport 443\nremote vpn1.example.net\n"
                    "remote 192.0.2.10 1194 udp\n;remote 192.0.2.99\ntls-auth ta.key 1\nauth SHA256\n"
                    "cipher AES-256-GCM\n"
                    "<ca>\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n</ca>\n")
    eps = vpn.load_vpn_config(conf, provider="acme")
    assert [(e.host, e.port, e.transport) for e in eps] == [("vpn1.example.net", 443, "tcp"),
                                                            ("192.0.2.10", 1194, "udp")]
    assert eps[0].wrap is not None and eps[0].wrap.mode == "auth" and eps[0].wrap.direction == 1
    assert eps[0].wrap.digest == "SHA256" and eps[0].wrap.key == bytes(range(256))
    assert eps[1].uri == "openvpn://acme.corp/?address=192.0.2.10:1194&transport=udp"
    assert eps[0].options() == {"auth": "SHA256", "cipher": "AES-256-GCM", "tls_wrap": "tls-auth"}
    inline = tmp_path / "b.ovpn"
    inline.write_text("<connection>\nremote 192.0.2.11 1195\nproto tcp\n</connection>\n"
                      f"<tls-crypt>\n{STATIC_KEY}</tls-crypt>\n")
    (ep,) = vpn.load_vpn_config(inline)
    assert (ep.host, ep.port, ep.transport, ep.wrap.mode) == ("192.0.2.11", 1195, "tcp", "crypt")
    for text, reason in [("client\n", "neither"), ("remote 192.0.2.1\ntls-crypt-v2 k.key\n", "tls-crypt-v2"),
                         ("remote 192.0.2.1\ntls-auth missing.key 1\n", "missing.key"),
                         ("remote 192.0.2.1 99999\n", "bad port"), ("remote 192.0.2.1\nproto sctp\n", "sctp")]:
        bad = tmp_path / "bad.ovpn"
        bad.write_text(text)
        with pytest.raises(ValueError, match=reason):
            vpn.load_vpn_config(bad)


def test_wireguard_config_parsing_and_endpoint_uris(tmp_path: Path) -> None:
    priv, peer = generate_key(), generate_key()
    conf = tmp_path / "wg0.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {priv}\nAddress = 10.0.0.2/32\n\n[Peer]\nPublicKey = {peer}\n"
                    f"PresharedKey = {generate_key()}\nEndpoint = [2001:db8::1]:51820\nAllowedIPs = 0.0.0.0/0\n")
    (ep,) = vpn.load_vpn_config(conf)
    assert (ep.host, ep.port, ep.tunnel) == ("2001:db8::1", 51820, "wireguard")
    assert ep.uri == "wireguard://unknown.corp/?address=[2001:db8::1]:51820&transport=udp"
    assert priv not in repr(ep) and ep.options() == {"preshared_key": "yes"}
    opts = vpn.VpnOptions(endpoints=(ep,))
    assert vpn.default_inputs(opts) == [ep.uri] and vpn.endpoint_for(ep.uri, opts) is ep
    plain = vpn.endpoint_for("openvpn://riseup.corp/?address=192.0.2.5:443&transport=tcp", opts)
    assert (plain.host, plain.port, plain.transport, plain.provider, plain.wrap) == ("192.0.2.5", 443, "tcp",
                                                                                   "riseup", None)
    for bad in (None, "wireguard://x.corp/?address=192.0.2.1:51820&transport=udp", "ftp://x/?address=1.2.3.4:1",
                "openvpn://x.corp/?address=nowhere&transport=udp"):
        with pytest.raises(ValueError):
            vpn.endpoint_for(bad, opts)
    conf.write_text(f"[Interface]\nPrivateKey = short\n[Peer]\nPublicKey = {peer}\nEndpoint = 192.0.2.1:1\n")
    with pytest.raises(ValueError, match="PrivateKey"):
        vpn.load_vpn_config(conf)


def test_tls_wrap_round_trip_and_wrong_key_direction() -> None:
    key = bytes(range(256))
    for mode, digest in (("auth", "SHA1"), ("auth", "SHA512"), ("crypt", "SHA256")):
        client = vpn.TLSWrap(mode, key, 1, digest)
        server = dataclasses.replace(client, direction=0)
        plain = bytes([7 << 3]) + b"S" * 8 + b"\x00" + b"\x00\x00\x00\x00"
        wire = vpn.wrap_control(plain, client, packet_id=3, now=1_600_000_000)
        assert wire[:9] == plain[:9] and wire != plain
        assert vpn.unwrap_control(wire, server) == plain
        assert vpn.unwrap_control(wire, client) is None              # the client's receive key differs
        assert vpn.unwrap_control(wire[:-1] + bytes([wire[-1] ^ 1]), server) is None
    both = vpn.TLSWrap("auth", key, None)
    assert vpn.unwrap_control(vpn.wrap_control(b"\x38" + b"s" * 8 + b"\x00" * 5, both), both) is not None


# --- vpn: handshakes ------------------------------------------------------------------------------------------------

def _vpn_opts(*eps: vpn.VpnEndpoint, **kw: Any) -> vpn.VpnOptions:
    return vpn.VpnOptions(endpoints=eps, handshake_timeout=kw.pop("handshake_timeout", 0.5),
                          attempts=kw.pop("attempts", 2), connect_timeout=1.0, budget=kw.pop("budget", 5.0), **kw)


def test_wireguard_known_peer_answers_unknown_key_gets_silence(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)

    async def go() -> tuple[vpn.VpnTestKeys, vpn.VpnTestKeys, vpn.VpnTestKeys]:
        servers = await start_wireguard(VpnSpec(bind=LOOP, kind="wireguard", port=port), tmp_path)
        try:
            (good,) = vpn.load_vpn_config(tmp_path / f"wg-{LOOP}.conf")
            stranger = dataclasses.replace(good, private_key=generate_key())
            ok = await vpn.measure(good.uri, _vpn_opts(good))
            wrong = await vpn.measure(stranger.uri, _vpn_opts(stranger))
            closed = dataclasses.replace(good, port=free_port(socket.SOCK_DGRAM))
            refused = await vpn.measure(closed.uri, _vpn_opts(closed, attempts=1))
            return ok, wrong, refused
        finally:
            for s in servers:
                s.close()

    ok, wrong, refused = run(go)
    assert ok.success is True and ok.failure is None and 0 < ok.bootstrap_time < 0.5
    hs = ok.wireguard_handshake[0]
    assert hs.endpoint == f"wireguard://{LOOP}:{port}/udp" and hs.failure is None and hs.handshake_time > 0
    ops = [(e.operation, e.num_bytes, e.tags) for e in ok.network_events]
    assert ops == [("connect", None, None), ("write_to", 148, ["wireguard_handshake_initiation"]),
                   ("read_from", 92, ["wireguard_handshake_response"])]
    # A wrong key is not "port open": the server stays silent and the test fails after both attempts.
    assert wrong.success is False and wrong.failure == "generic_timeout_error" and wrong.bootstrap_time == 0.0
    assert [e.operation for e in wrong.network_events] == ["connect", "write_to", "write_to", "read_from"]
    assert wrong.wireguard_handshake[0].failure == "generic_timeout_error"
    # Nothing listens: the ICMP port-unreachable shows as connection_refused.
    assert refused.failure == "connection_refused"


def test_openvpn_hard_reset_udp_tcp_and_garbage(tmp_path: Path) -> None:
    udp_port, tcp_port, junk_port = free_port(socket.SOCK_DGRAM), free_port(), free_port(socket.SOCK_DGRAM)

    async def go() -> list[vpn.VpnTestKeys]:
        responder = HardResetResponder()

        async def on_datagram(packet: bytes, peer: tuple) -> bytes | None:
            return responder.respond(packet)

        async def on_frame(packet: bytes, peer: tuple) -> bytes | None:
            return responder.respond(packet)

        async def junk(packet: bytes, peer: tuple) -> bytes | None:
            return b"\x40" + b"x" * 20          # a "server reset" that acknowledges nothing of ours

        servers = [await start_udp(on_datagram, LOOP, udp_port),
                   await start_framed_tcp(on_frame, LOOP, tcp_port, idle_timeout=5.0, close_when_silent=True),
                   await start_udp(junk, LOOP, junk_port)]
        try:
            eps = [vpn.OpenVPNEndpoint(LOOP, udp_port, "udp"), vpn.OpenVPNEndpoint(LOOP, tcp_port, "tcp"),
                   vpn.OpenVPNEndpoint(LOOP, junk_port, "udp")]
            return [await vpn.measure(ep.uri, _vpn_opts(*eps, attempts=1)) for ep in eps]
        finally:
            for s in servers:
                s.close()

    udp, tcp, junk = run(go)
    assert udp.success and udp.tunnel == "openvpn" and udp.openvpn_handshake[0].transport == "udp"
    assert [e.tags for e in udp.network_events if e.operation in ("write_to", "read_from")] == [
        ["P_CONTROL_HARD_RESET_CLIENT_V2"], ["P_CONTROL_HARD_RESET_SERVER_V2"]]
    assert tcp.success and tcp.tcp_connect[0].status.success and tcp.openvpn_handshake[0].openvpn_options == {
        "tls_wrap": "none"}
    assert any(e.operation == "write" and e.num_bytes == 16 for e in tcp.network_events)   # 2-byte length + 14
    assert junk.success is False and junk.failure == "generic_timeout_error"
    assert ["unexpected:P_CONTROL_HARD_RESET_SERVER_V2"] in [e.tags for e in junk.network_events]


def test_openvpn_tcp_swallowed_after_connect_is_a_timeout() -> None:
    """A DPI box that lets the connection open and then drops the hard reset: the connect succeeds, the
    handshake times out (an open port is not a working VPN)."""
    async def go() -> vpn.VpnTestKeys:
        silent = await asyncio.start_server(_silent, LOOP, 0)
        try:
            ep = vpn.OpenVPNEndpoint(LOOP, silent.sockets[0].getsockname()[1], "tcp")
            return await vpn.measure(ep.uri, _vpn_opts(ep))
        finally:
            silent.close()

    tk = run(go)
    assert tk.tcp_connect[0].status.success is True
    assert tk.success is False and tk.failure == "generic_timeout_error"
    assert tk.openvpn_handshake[0].failure == "generic_timeout_error"


@pytest.fixture(scope="module")
def openvpn_server(tmp_path_factory) -> Callable[..., int]:
    """Real OpenVPN servers (p2p TLS mode, no tun device) on loopback; skip without the binary."""
    binary = shutil.which("openvpn")
    if binary is None:
        pytest.skip("the openvpn binary is not installed (apt-get install openvpn)")
    d = tmp_path_factory.mktemp("openvpn")
    (d / "ta.key").write_text(STATIC_KEY)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "srv.key", "-out", "srv.pem", "-days", "2", "-subj", "/CN=srv"],
                   cwd=d, check=True, capture_output=True)
    procs: list[subprocess.Popen] = []

    def start(proto: str, *extra: str) -> int:
        port = free_port(socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
        log = open(d / f"server-{port}.log", "w")
        procs.append(subprocess.Popen(
            [binary, "--dev", "null", "--proto", proto, "--lport", str(port), "--local", LOOP, "--tls-server",
             "--ca", "srv.pem", "--cert", "srv.pem", "--key", "srv.key", "--dh", "none", "--verb", "3", *extra],
            cwd=d, stdout=log, stderr=subprocess.STDOUT))
        for _ in range(50):
            if "Initialization Sequence Completed" in (d / f"server-{port}.log").read_text() or \
                    "link local (bound)" in (d / f"server-{port}.log").read_text() or \
                    "Listening for incoming TCP connection" in (d / f"server-{port}.log").read_text():
                break
            time.sleep(0.1)
        return port

    start.dir = d  # type: ignore[attr-defined]
    yield start
    for p in procs:
        p.terminate()
        p.wait(5)


@pytest.mark.parametrize("server_args, client_lines, transport", [
    (("--tls-auth", "ta.key", "0"), "tls-auth ta.key 1", "udp"),
    (("--tls-auth", "ta.key"), "tls-auth ta.key", "udp"),
    (("--tls-auth", "ta.key", "0", "--auth", "SHA256"), "key-direction 1\ntls-auth ta.key\nauth SHA256", "tcp"),
    (("--tls-crypt", "ta.key"), "tls-crypt ta.key", "udp"),
    (("--tls-crypt", "ta.key"), "tls-crypt ta.key", "tcp"),
    ((), "", "udp"),
])
def test_real_openvpn_server_answers_our_hard_reset(openvpn_server, server_args, client_lines, transport) -> None:
    port = openvpn_server("udp" if transport == "udp" else "tcp-server", *server_args)
    conf = openvpn_server.dir / f"client-{port}.ovpn"
    conf.write_text(f"client\nremote {LOOP} {port} {transport}\n{client_lines}\n")
    (ep,) = vpn.load_vpn_config(conf)
    tk = run(lambda: vpn.measure(ep.uri, _vpn_opts(ep, handshake_timeout=2.0, attempts=2)))
    assert tk.success is True, (tk.failure, (openvpn_server.dir / f"server-{port}.log").read_text()[-800:])


def test_real_openvpn_drops_a_reset_without_its_tls_auth(openvpn_server) -> None:
    port = openvpn_server("udp", "--tls-auth", "ta.key", "0")
    wrong_direction = vpn.OpenVPNEndpoint(LOOP, port, "udp", wrap=vpn.TLSWrap("auth", bytes(range(256)), 0))
    unsigned = vpn.OpenVPNEndpoint(LOOP, port, "udp")
    for ep in (wrong_direction, unsigned):
        tk = run(lambda: vpn.measure(ep.uri, _vpn_opts(ep, handshake_timeout=0.5, attempts=1)))
        assert tk.success is False and tk.failure == "generic_timeout_error"


def test_vpn_measurement_keeps_no_key_and_analysis_judges_each_endpoint(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)

    async def go() -> tuple[vpn.WireGuardEndpoint, vpn.VpnTestKeys, vpn.VpnTestKeys]:
        servers = await start_wireguard(VpnSpec(bind=LOOP, kind="wireguard", port=port), tmp_path)
        try:
            (good,) = vpn.load_vpn_config(tmp_path / f"wg-{LOOP}.conf")
            stranger = dataclasses.replace(good, private_key=generate_key())
            return (good, await vpn.measure(good.uri, _vpn_opts(good)),
                    await vpn.measure(stranger.uri, _vpn_opts(stranger, attempts=1)))
        finally:
            for s in servers:
                s.close()

    good, ok, failed = run(go)
    for tk, outcome, rule in ((ok, "ok", "circumvention.bootstrap_ok"),
                              (failed, "blocked", "circumvention.bootstrap_failed_network")):
        raw, m = measurement("vpn", vpn.TEST_VERSION, good.uri, tk)
        text = raw.decode()
        assert good.private_key not in text and base64.b64decode(good.private_key).hex() not in text
        doc = json.loads(raw)["test_keys"]
        assert doc["tunnel"] == "wireguard" and doc["success"] is (outcome == "ok")
        _obs, (v,) = analyze(m)
        assert (v.outcome, v.rule_ids[0], v.target) == (outcome, rule, f"wireguard://{LOOP}:{port}/udp")
        assert v.ooni_accessible is (outcome == "ok")
    assert failed.bootstrap_time == 0.0 and ok.bootstrap_time > 0


def test_provider_sites_go_through_web_connectivity() -> None:
    from netvigil.probe.nettests.web_connectivity import WebConnectivityOptions

    async def page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<html><title>Acme VPN</title></html>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def go() -> list:
        server = await asyncio.start_server(page, LOOP, 0)
        try:
            url = f"http://{LOOP}:{server.sockets[0].getsockname()[1]}/"
            opts = vpn.VpnOptions(provider_urls=(url,))
            return await vpn.measure_provider_sites(opts, WebConnectivityOptions(udp_resolver=None, budget=5))
        finally:
            server.close()

    ((url, tk),) = run(go)
    assert url.startswith("http://127.0.0.1:") and tk.http_experiment_failure is None
    assert tk.requests[0].response.code == 200 and tk.control_failure  # no helper configured here
    assert "https://nordvpn.com/" in vpn.PROVIDER_URLS

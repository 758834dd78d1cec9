"""TLS echo, Tor directory authority, large-file server and blockpage."""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
import zlib

import pytest
from servers_harness import http_request

from netvigil.lab.servers.blockpage import BLOCKPAGE_MARKER
from netvigil.lab.servers.largefile import content_at
from netvigil.lab.servers.tor import fingerprint


def test_tls_echo(lab):
    ctx = ssl.create_default_context(cafile=str(lab.ca_pem))
    with socket.create_connection((lab.ip(20), 15222), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="e1.whatsapp.net") as tls:
            payload = b"\x57\x41\x05\x02" + bytes(range(256)) * 40
            tls.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += tls.recv(65536)
            assert got == payload


def test_tor_dir_port_serves_consensus_and_descriptor(lab):
    r = http_request(lab.ip(30), 19030, lab.ip(30), "/tor/status-vote/current/consensus")
    assert r.status == 200
    text = r.body.decode()
    assert text.startswith("network-status-version 3\n")
    assert f"dir-source moria1 {fingerprint('moria1')} {lab.ip(30)}" in text
    assert "r moria1 " in text and "s Authority" in text
    z = http_request(lab.ip(30), 19030, lab.ip(30), "/tor/status-vote/current/consensus.z")
    assert zlib.decompress(z.body).startswith(b"network-status-version 3")
    d = http_request(lab.ip(30), 19030, lab.ip(30), "/tor/server/authority")
    assert d.status == 200 and d.body.startswith(f"router moria1 {lab.ip(30)} 19001 0 19030".encode())
    assert http_request(lab.ip(30), 19030, lab.ip(30), "/nope").status == 404


def test_tor_or_port_is_self_signed_tls_and_answers_versions(lab):
    ctx = ssl.create_default_context(cafile=str(lab.ca_pem))
    with socket.create_connection((lab.ip(30), 19001), timeout=5) as raw:
        try:
            ctx.wrap_socket(raw, server_hostname=lab.ip(30))
            raise AssertionError("the OR port certificate must not verify")
        except ssl.SSLCertVerificationError as exc:
            assert exc.verify_code in (18, 20)  # self-signed / unknown issuer
    unverified = ssl._create_unverified_context()
    with socket.create_connection((lab.ip(30), 19001), timeout=5) as raw:
        with unverified.wrap_socket(raw) as tls:
            tls.sendall(struct.pack("!HBH", 0, 7, 4) + struct.pack("!HH", 3, 4))
            head = tls.recv(5)
            circ, cmd, length = struct.unpack("!HBH", head)
            assert (circ, cmd) == (0, 7) and length % 2 == 0


def test_largefile_default_size_streams(lab):
    r = http_request(lab.ip(40), 18080, "largefile.example", keep_body=False, timeout=20)
    assert r.status == 200 and int(r.header("content-length")) == 5_000_000 == r.received


def test_largefile_n_bytes_over_https_is_deterministic(lab):
    r = http_request(lab.ip(40), 18443, "largefile.example", "/200000", tls=True, ca=lab.ca_pem)
    assert r.status == 200 and len(r.body) == 200_000
    assert r.body == content_at(0, 200_000)
    again = http_request(lab.ip(40), 18080, "largefile.example", "/200000")
    assert hashlib.sha256(again.body).digest() == hashlib.sha256(r.body).digest()
    assert http_request(lab.ip(40), 18080, "largefile.example", "/0").received == 0
    assert http_request(lab.ip(40), 18080, "largefile.example", "/x").status == 404


def test_largefile_upload_sink(lab):
    r = http_request(lab.ip(40), 18080, "largefile.example", "/upload", method="POST", body=b"u" * 3_000_000,
                     timeout=20)
    assert r.status == 200
    import json

    report = json.loads(r.body)
    assert report["received"] == 3_000_000 and report["bits_per_second"] > 0


def test_blockpage_answers_everything(lab):
    for path in ("/", "/some/page?q=1"):
        r = http_request(lab.ip(80), 18080, "www.facebook.com", path)
        assert r.status == 200
        assert BLOCKPAGE_MARKER.encode() in r.body
        assert b"blocked by the decision of the authorities" in r.body
        assert b"www.facebook.com" in r.body


def test_blockpage_over_https_has_its_own_certificate(lab):
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        http_request(lab.ip(80), 18443, "www.facebook.com", tls=True, ca=lab.ca_pem)
    assert err.value.verify_code == 62  # the probe sees ssl_invalid_hostname
    r = http_request(lab.ip(80), 18443, "www.facebook.com", tls=True)
    assert r.status == 200 and BLOCKPAGE_MARKER.encode() in r.body

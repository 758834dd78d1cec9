"""A stand-in Tor directory authority: a TLS OR port and an HTTP Dir port serving a small fake consensus.

OONI's tor test checks that directory authorities accept TCP/TLS on the OR port and answer a consensus
fetch on the Dir port; that is what the censor blocks (per ISP, in Azerbaijan 2020) and what this serves.
No Tor protocol runs behind the handshake beyond answering a VERSIONS cell.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ssl
import struct
import zlib
from pathlib import Path

from netvigil.lab.servers.ca import issue_tor_link_cert
from netvigil.lab.servers.httpserver import Body, Request, Response, start_http_server
from netvigil.lab.servers.spec import TorSpec
from netvigil.lab.servers.streams import close_writer
from netvigil.lab.servers.tls import HANDSHAKE_TIMEOUT, make_server_context

__all__ = ["fingerprint", "render_consensus", "render_descriptor", "start_tor"]

CONSENSUS_PATH = "/tor/status-vote/current/consensus"
DESCRIPTOR_PATH = "/tor/server/authority"
OR_IDLE_TIMEOUT = 30.0
OR_MAX_BYTES = 1024 * 1024  # what an OR connection may send us before we hang up
LINK_VERSIONS = (3, 4, 5)


def fingerprint(nickname: str) -> str:
    """A stable fake identity fingerprint (40 hex digits) for the relay."""
    return hashlib.sha1(f"netvigil-tor|{nickname}".encode()).hexdigest().upper()


def render_consensus(spec: TorSpec, now: dt.datetime | None = None) -> str:
    now = (now or dt.datetime.now(dt.UTC)).replace(minute=0, second=0, microsecond=0)
    fmt = "%Y-%m-%d %H:%M:%S"
    fp = fingerprint(spec.nickname)
    ident = base64.b64encode(bytes.fromhex(fp)).decode().rstrip("=")
    digest = base64.b64encode(hashlib.sha1(f"desc|{spec.nickname}".encode()).digest()).decode().rstrip("=")
    sig = base64.encodebytes(hashlib.sha512(f"sig|{spec.nickname}|{now}".encode()).digest() * 4).decode()
    return (
        "network-status-version 3\n"
        "vote-status consensus\n"
        "consensus-method 29\n"
        f"valid-after {now.strftime(fmt)}\n"
        f"fresh-until {(now + dt.timedelta(hours=1)).strftime(fmt)}\n"
        f"valid-until {(now + dt.timedelta(hours=3)).strftime(fmt)}\n"
        "voting-delay 300 300\n"
        "client-versions 0.4.4.5,0.4.4.6\n"
        "server-versions 0.4.4.5,0.4.4.6\n"
        "known-flags Authority BadExit Exit Fast Guard HSDir Running Stable V2Dir Valid\n"
        f"dir-source {spec.nickname} {fp} {spec.bind} {spec.bind} {spec.dir_port} {spec.or_port}\n"
        "contact netvigil lab <lab@netvigil.invalid>\n"
        f"vote-digest {hashlib.sha1(f'vote|{spec.nickname}'.encode()).hexdigest().upper()}\n"
        f"r {spec.nickname} {ident} {digest} {now.strftime(fmt)} {spec.bind} {spec.or_port} {spec.dir_port}\n"
        "s Authority Fast Running Stable V2Dir Valid\n"
        "v Tor 0.4.4.5\n"
        "pr Cons=1-2 Desc=1-2 DirCache=1-2 HSDir=1-2 HSIntro=3-5 HSRend=1-2 Link=1-5 LinkAuth=1,3 "
        "Microdesc=1-2 Relay=1-2\n"
        "w Bandwidth=20 Unmeasured=1\n"
        "p reject 1-65535\n"
        "directory-footer\n"
        "bandwidth-weights Wbd=0 Wbe=0 Wbg=4131 Wbm=10000 Wdb=10000 Web=10000 Wed=10000 Wee=10000\n"
        f"directory-signature sha256 {fp} {hashlib.sha1(f'sk|{spec.nickname}'.encode()).hexdigest().upper()}\n"
        f"-----BEGIN SIGNATURE-----\n{sig}-----END SIGNATURE-----\n"
    )


def render_descriptor(spec: TorSpec) -> str:
    fp = fingerprint(spec.nickname)
    published = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:00:00")
    return (
        f"router {spec.nickname} {spec.bind} {spec.or_port} 0 {spec.dir_port}\n"
        "platform Tor 0.4.4.5 on Linux\n"
        "proto Cons=1-2 Desc=1-2 DirCache=1-2 HSDir=1-2 Link=1-5 Microdesc=1-2 Relay=1-2\n"
        f"published {published}\n"
        f"fingerprint {' '.join(fp[i:i + 4] for i in range(0, 40, 4))}\n"
        "uptime 86400\nbandwidth 1073741824 1073741824 1048576\n"
        "contact netvigil lab <lab@netvigil.invalid>\n"
        "reject *:*\ntunnelled-dir-server\n"
        "router-signature\n-----BEGIN SIGNATURE-----\n"
        f"{base64.encodebytes(hashlib.sha512(fp.encode()).digest() * 2).decode()}-----END SIGNATURE-----\n"
    )


async def _or_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After the TLS handshake, answer a VERSIONS cell (circ id 0, command 7) in kind, then idle until close."""
    try:
        head = await asyncio.wait_for(reader.readexactly(5), OR_IDLE_TIMEOUT)
        circ_id, command, length = struct.unpack("!HBH", head)
        if circ_id == 0 and command == 7 and length <= 64:
            await asyncio.wait_for(reader.readexactly(length), OR_IDLE_TIMEOUT)
            payload = b"".join(struct.pack("!H", v) for v in LINK_VERSIONS)
            writer.write(struct.pack("!HBH", 0, 7, len(payload)) + payload)
            await asyncio.wait_for(writer.drain(), OR_IDLE_TIMEOUT)
        received = 0
        while received < OR_MAX_BYTES and (data := await asyncio.wait_for(reader.read(16 * 1024), OR_IDLE_TIMEOUT)):
            received += len(data)
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        await close_writer(writer)


async def start_tor(spec: TorSpec, cert_dir: Path) -> list[asyncio.Server]:
    ctx = make_server_context(issue_tor_link_cert(spec.nickname, cert_dir), alpn=())

    async def dir_handler(request: Request, body: Body) -> Response:
        await body.read()
        headers = [("Content-Type", "text/plain"), ("X-Your-Address-Is", request.remote_addr)]
        if request.path in (CONSENSUS_PATH, CONSENSUS_PATH + ".z"):
            text = render_consensus(spec).encode()
            if request.path.endswith(".z"):
                return Response(200, headers + [("Content-Encoding", "deflate")], zlib.compress(text))
            return Response(200, headers + [("Content-Encoding", "identity")], text)
        if request.path == DESCRIPTOR_PATH:
            return Response(200, headers + [("Content-Encoding", "identity")], render_descriptor(spec).encode())
        return Response(404, headers, b"")

    or_server = await asyncio.start_server(_or_connection, spec.bind, spec.or_port, ssl=ctx,
                                           ssl_handshake_timeout=HANDSHAKE_TIMEOUT, reuse_address=True)
    dir_server = await start_http_server(dir_handler, spec.bind, spec.dir_port)
    return [or_server, dir_server]

"""A download/upload server for throughput tests (the Russia 2021 Twitter-throttling shape, Wehe-style replays).

`GET /` streams `size` bytes, `GET /<n>` streams n bytes, `POST /upload` swallows a body and reports how much
arrived and how fast. Content is deterministic and incompressible, generated per chunk, never held whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import AsyncIterator

from netvigil.lab.servers.ca import CAFiles
from netvigil.lab.servers.httpserver import Body, Handler, Limits, Request, Response, start_http_server
from netvigil.lab.servers.spec import LargefileSpec
from netvigil.lab.servers.tls import make_sni_context

__all__ = ["BLOCK", "CHUNK", "MAX_DOWNLOAD", "MAX_UPLOAD", "content_at", "make_largefile_handler", "start_largefile"]

CHUNK = 64 * 1024
BLOCK = hashlib.shake_256(b"netvigil-lab-largefile").digest(CHUNK)  # byte i of any download is BLOCK[i % CHUNK]
MAX_DOWNLOAD = 10 * 1024**3
MAX_UPLOAD = 4 * 1024**3
# A policed flow at ~130 kbit/s needs minutes for tens of MB: the per-read/-write timeouts still catch a dead peer.
LIMITS = Limits(handler_timeout=3600.0, read_timeout=30.0, write_timeout=60.0)


def content_at(offset: int, length: int) -> bytes:
    """The expected bytes at [offset, offset+length) of every download, for clients that verify content."""
    out = bytearray()
    while length > 0:
        start = offset % CHUNK
        piece = BLOCK[start:start + length]
        out += piece
        offset, length = offset + len(piece), length - len(piece)
    return bytes(out)


async def _stream(n: int) -> AsyncIterator[bytes]:
    full, rest = divmod(n, CHUNK)
    for _ in range(full):
        yield BLOCK
    if rest:
        yield BLOCK[:rest]


def make_largefile_handler(spec: LargefileSpec) -> Handler:
    async def handle(request: Request, body: Body) -> Response:
        headers = [("Server", "nginx"), ("Cache-Control", "no-store")]
        if request.path == "/upload":
            if request.method != "POST":
                return Response(405, headers + [("Allow", "POST")], b"")
            start = time.monotonic()
            received = await body.discard(MAX_UPLOAD)
            seconds = max(time.monotonic() - start, 1e-9)
            report = {"received": received, "seconds": round(seconds, 6),
                      "bits_per_second": round(received * 8 / seconds)}
            return Response(200, headers + [("Content-Type", "application/json")], json.dumps(report).encode())
        if request.method not in ("GET", "HEAD"):
            return Response(405, headers + [("Allow", "GET, HEAD")], b"")
        await body.read()
        tail = request.path.strip("/")
        if not tail:
            n = spec.size
        elif tail.isdigit() and int(tail) <= MAX_DOWNLOAD:
            n = int(tail)
        else:
            return Response(404, headers + [("Content-Type", "text/plain")], b"not found: use / or /<bytes>\n")
        return Response(200, headers + [("Content-Type", "application/octet-stream")], _stream(n), length=n)

    return handle


async def start_largefile(spec: LargefileSpec, ca: CAFiles, cert_dir: Path) -> list[asyncio.Server]:
    handler = make_largefile_handler(spec)
    servers = []
    if spec.http_port is not None:
        servers.append(await start_http_server(handler, spec.bind, spec.http_port, limits=LIMITS))
    if spec.https_port is not None:
        ctx = make_sni_context(ca, spec.names, cert_dir)
        servers.append(await start_http_server(handler, spec.bind, spec.https_port, ssl_context=ctx, limits=LIMITS))
    return servers

"""A TLS echo service: stands in for TCP services such as WhatsApp's chat endpoints on port 5222.

What the censor sees is a TLS handshake with the service's SNI; what the probe checks is that bytes go
through afterwards, so the server echoes them back.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from netvigil.lab.servers.ca import CAFiles
from netvigil.lab.servers.spec import TlsEchoSpec
from netvigil.lab.servers.streams import close_writer
from netvigil.lab.servers.tls import HANDSHAKE_TIMEOUT, make_sni_context

__all__ = ["start_tls_echo"]

IDLE_TIMEOUT = 30.0
MAX_BYTES = 16 * 1024 * 1024  # per connection; then hang up


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    total = 0
    try:
        while total < MAX_BYTES:
            data = await asyncio.wait_for(reader.read(64 * 1024), IDLE_TIMEOUT)
            if not data:
                break
            total += len(data)
            writer.write(data)
            await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)
    except (TimeoutError, ConnectionError, ssl.SSLError):
        pass
    finally:
        await close_writer(writer)


async def start_tls_echo(spec: TlsEchoSpec, ca: CAFiles, cert_dir: Path) -> list[asyncio.Server]:
    ctx = make_sni_context(ca, spec.names, cert_dir, alpn=())  # not HTTP: offer no ALPN
    server = await asyncio.start_server(echo, spec.bind, spec.port, ssl=ctx,
                                        ssl_handshake_timeout=HANDSHAKE_TIMEOUT, reuse_address=True)
    return [server]

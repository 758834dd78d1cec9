"""TCP with a 2-byte big-endian length before each message: how DNS (RFC 1035 §4.2.2) and OpenVPN frame TCP."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Awaitable, Callable

from netvigil.lab.servers.streams import close_writer

__all__ = ["FramedHandler", "read_frame", "start_framed_tcp", "write_frame"]

log = logging.getLogger(__name__)

# Takes one message and the peer address, returns the reply or None to say nothing.
FramedHandler = Callable[[bytes, tuple], Awaitable[bytes | None]]


async def read_frame(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """One framed message; raises asyncio.IncompleteReadError on EOF, TimeoutError when the peer stalls."""
    async with asyncio.timeout(timeout):
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(length)


async def write_frame(writer: asyncio.StreamWriter, payload: bytes, timeout: float) -> None:
    writer.write(struct.pack("!H", len(payload)) + payload)
    await asyncio.wait_for(writer.drain(), timeout)


async def start_framed_tcp(
    handle: FramedHandler,
    host: str,
    port: int,
    *,
    idle_timeout: float = 10.0,
    max_messages: int = 100,
    close_when_silent: bool = False,
) -> asyncio.Server:
    """Serve framed messages; a handler answers bytes, b"" (say nothing) or None (garbage: hang up
    if `close_when_silent`, else ignore)."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            for _ in range(max_messages):
                message = await read_frame(reader, idle_timeout)
                reply = await asyncio.wait_for(handle(message, peer), idle_timeout)
                if not reply:  # b"": nothing to say, keep listening; None: garbage
                    if reply is None and close_when_silent:
                        return
                    continue
                await write_frame(writer, reply, idle_timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("framed TCP handler failed for %s", peer)
        finally:
            await close_writer(writer)

    return await asyncio.start_server(on_connect, host, port, reuse_address=True)

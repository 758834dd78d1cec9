"""A UDP request/response server shared by DNS, WireGuard and OpenVPN-over-UDP."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

__all__ = ["DatagramHandler", "start_udp"]

log = logging.getLogger(__name__)

# Takes a datagram and the peer address, returns the reply or None to stay silent.
DatagramHandler = Callable[[bytes, tuple], Awaitable[bytes | None]]


class _Protocol(asyncio.DatagramProtocol):
    """Each datagram is handled in its own task, bounded in number and time, so a flood cannot pile up work."""

    def __init__(self, handle: DatagramHandler, max_pending: int, timeout: float) -> None:
        self.handle, self.max_pending, self.timeout = handle, max_pending, timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(self.pending) >= self.max_pending:
            return  # overloaded: drop, as a real server would
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _reply(self, data: bytes, addr: tuple) -> None:
        try:
            reply = await asyncio.wait_for(self.handle(data, addr), self.timeout)
        except TimeoutError:
            return
        except Exception:
            log.exception("UDP handler failed for a datagram from %s", addr)
            return
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable from a peer that went away
        log.debug("UDP error: %s", exc)


async def start_udp(
    handle: DatagramHandler, host: str, port: int, *, max_pending: int = 256, timeout: float = 10.0
) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(handle, max_pending, timeout), local_addr=(host, port)
    )
    return transport  # type: ignore[return-value]

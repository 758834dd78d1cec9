"""TCP connect and the traced stream every later layer (TLS, HTTP, DoH) reads and writes through.

Reads are recorded one event per read, with byte counts and times, because the analysis derives
throughput (throttling) from them (``analysis.observations.common.read_stats``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from netvigil.model.archival import ArchivalTCPConnect, ArchivalTCPConnectStatus
from netvigil.model.failure import Failure
from netvigil.probe.netx.errors import NetxError, failure_of
from netvigil.probe.netx.trace import Trace, endpoint

__all__ = ["Conn", "connect", "CLOSE_TIMEOUT"]

CLOSE_TIMEOUT = 0.5  # how long close() waits for the peer (TLS close_notify) before aborting


class Conn:
    """A traced TCP stream (TLS after ``tls_handshake``). ``transaction_id`` tags its events."""

    def __init__(self, trace: Trace, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 ip: str, port: int, transaction_id: int) -> None:
        self.trace = trace
        self.reader = reader
        self.writer = writer
        self.ip = ip
        self.port = port
        self.address = endpoint(ip, port)
        self.transaction_id = transaction_id
        self.tls = False
        self.server_name: str | None = None
        self.tls_version: str | None = None
        self.alpn: str | None = None  # the ALPN protocol negotiated, if any
        self.closed = False
        self.requests = 0  # HTTP exchanges started on this stream
        self.http: Any = None  # the h11 connection, kept for keep-alive (owned by netx.http)

    def __repr__(self) -> str:
        return f"<Conn {self.address} tls={self.tls} tx={self.transaction_id}{' closed' if self.closed else ''}>"

    async def read(self, n: int = 65536, *, timeout: float) -> bytes:
        """Up to ``n`` bytes; b"" at end of stream (recorded as a read with failure eof_error)."""
        t0 = self.trace.now()
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                data = await self.reader.read(n)
        except Exception as exc:
            failure = failure_of(exc, operation="read")
            self.trace.event("read", self.address, t0, transaction_id=self.transaction_id, failure=failure)
            raise NetxError(failure) from exc
        self.trace.event("read", self.address, t0, transaction_id=self.transaction_id, num_bytes=len(data),
                         failure=None if data else Failure.EOF.value)
        return data

    async def write(self, data: bytes, *, timeout: float) -> None:
        """Send all of ``data`` (waits for the send buffer to drain)."""
        t0 = self.trace.now()
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                self.writer.write(data)
                await self.writer.drain()
        except Exception as exc:
            failure = failure_of(exc, operation="write")
            self.trace.event("write", self.address, t0, transaction_id=self.transaction_id, failure=failure)
            raise NetxError(failure) from exc
        self.trace.event("write", self.address, t0, transaction_id=self.transaction_id, num_bytes=len(data))

    async def close(self) -> None:
        """Close the stream; never waits more than CLOSE_TIMEOUT, never raises for network reasons."""
        if self.closed:
            return
        self.closed = True
        await close_writer(self.writer)

    async def abort(self) -> None:
        """Drop the stream at once (after a failed TLS handshake there is nobody to say goodbye to)."""
        if self.closed:
            return
        self.closed = True
        self.writer.transport.abort()
        await asyncio.sleep(0)  # let the transport release its socket

    async def __aenter__(self) -> Conn:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close, wait briefly for the peer, then abort: a silent peer must not keep a socket open."""
    try:
        writer.close()
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (Exception, asyncio.CancelledError) as exc:
        writer.transport.abort()
        if isinstance(exc, asyncio.CancelledError):
            raise


async def connect(trace: Trace, ip: str, port: int, *, timeout: float = 10.0,
                  transaction_id: int | None = None) -> Conn:
    """TCP connect to an IP address; records tcp_connect (df-005) and a "connect" network event (df-008).

    ``transaction_id`` lets a flow (resolve → connect → TLS → HTTP) share one id; default: a new one.
    """
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"connect needs an IP address, not {ip!r}") from None
    tid = transaction_id if transaction_id is not None else trace.next_id()
    address = endpoint(ip, port)
    t0 = trace.now()
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            reader, writer = await asyncio.open_connection(ip, port)
    except Exception as exc:
        failure = failure_of(exc)
        t = trace.now()
        trace.tcp_connect.append(ArchivalTCPConnect(
            ip=ip, port=port, status=ArchivalTCPConnectStatus(blocked=False, failure=failure, success=False),
            t0=t0, t=t, transaction_id=tid,
        ))
        trace.event("connect", address, t0, transaction_id=tid, failure=failure)
        raise NetxError(failure) from exc
    trace.tcp_connect.append(ArchivalTCPConnect(
        ip=ip, port=port, status=ArchivalTCPConnectStatus(blocked=False, failure=None, success=True),
        t0=t0, t=trace.now(), transaction_id=tid,
    ))
    trace.event("connect", address, t0, transaction_id=tid)
    return Conn(trace, reader, writer, ip, port, tid)

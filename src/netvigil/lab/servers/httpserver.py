"""A small HTTP/1.1 server: h11 does the protocol, asyncio streams do the I/O, this module does the limits.

Every read and write has a timeout and every request has size limits, because lab servers sit behind a censor
that deliberately stalls, drops and throttles connections: a server that waits forever would leak tasks.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import AsyncIterable, Awaitable, Callable
from urllib.parse import urlsplit

import h11

from netvigil.lab.servers.streams import close_writer
from netvigil.lab.servers.tls import requested_server_name

__all__ = [
    "Body",
    "BodyTooLarge",
    "Handler",
    "Limits",
    "Request",
    "Response",
    "http_date",
    "start_http_server",
]

log = logging.getLogger(__name__)

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


@dataclass(frozen=True, slots=True)
class Limits:
    header_bytes: int = 16 * 1024  # request line + headers
    body_bytes: int = 1024 * 1024  # what a handler may buffer with Body.read()
    drain_bytes: int = 4 * 1024 * 1024  # unread body we discard to keep the connection alive
    first_request_timeout: float = 10.0  # connect → complete request head
    idle_timeout: float = 15.0  # keep-alive wait for the next request
    read_timeout: float = 15.0  # each body read
    write_timeout: float = 30.0  # each drain of the send buffer (a throttled client stays alive if it moves)
    handler_timeout: float = 30.0  # handler computing the response (excludes streaming it)
    max_requests: int = 100  # per connection


class BodyTooLarge(Exception):
    """The request body exceeds what the handler accepts; answered with 413."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # as sent: path and query
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased
    host: str  # Host header without port, lower-cased ("" if absent)
    scheme: str  # "http" or "https"
    server_name: str | None  # TLS SNI, None on plain HTTP or when the client sent none
    local_port: int
    remote_addr: str = ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""
    length: int | None = None  # Content-Length of a streamed body; bytes bodies are measured
    close: bool = False  # close the connection after this response


Handler = Callable[[Request, "Body"], Awaitable[Response]]


class Body:
    """The request body, read lazily from the connection so an upload sink never buffers it."""

    def __init__(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits
    ) -> None:
        self._conn, self._reader, self._writer, self._limits = conn, reader, writer, limits
        self.done = False
        self.received = 0

    async def chunks(self, limit: int) -> AsyncIterable[bytes]:
        if self._conn.they_are_waiting_for_100_continue:  # curl waits 1 s for this before large uploads
            go_on = h11.InformationalResponse(status_code=100, headers=[])
            await _write(self._writer, self._conn.send(go_on), self._limits)
        while not self.done:
            event = await _next_event(self._conn, self._reader, self._limits.read_timeout)
            if isinstance(event, h11.Data):
                self.received += len(event.data)
                if self.received > limit:
                    raise BodyTooLarge(f"body over {limit} bytes")
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.done = True
            else:  # ConnectionClosed mid-body
                raise ConnectionResetError("client closed during the request body")

    async def read(self, limit: int | None = None) -> bytes:
        parts = [c async for c in self.chunks(self._limits.body_bytes if limit is None else limit)]
        return b"".join(parts)

    async def discard(self, limit: int) -> int:
        async for _ in self.chunks(limit):
            pass
        return self.received


def http_date() -> str:
    return formatdate(usegmt=True)


async def start_http_server(
    handler: Handler,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    limits: Limits = Limits(),
) -> asyncio.Server:
    """Bind and start serving; returns once the socket is listening."""
    scheme = "https" if ssl_context else "http"

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(reader, writer, handler, scheme, limits)

    return await asyncio.start_server(
        on_connect, host, port, ssl=ssl_context, ssl_handshake_timeout=10.0 if ssl_context else None,
        reuse_address=True, limit=64 * 1024,
    )


async def _serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler, scheme: str, limits: Limits
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.header_bytes)
    ssl_obj = writer.get_extra_info("ssl_object")
    server_name = requested_server_name(ssl_obj)
    sockname = writer.get_extra_info("sockname") or ("", 0)
    peername = writer.get_extra_info("peername") or ("", 0)
    try:
        for n in range(limits.max_requests):
            timeout = limits.first_request_timeout if n == 0 else limits.idle_timeout
            try:
                event = await _next_event(conn, reader, timeout)
            except h11.RemoteProtocolError as exc:
                await _send_error(conn, writer, exc.error_status_hint, limits)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed (or a client that hung up before a full request)
            if _head_size(event) > limits.header_bytes:  # h11 only bounds heads that arrive in pieces
                await _send_error(conn, writer, 431, limits)
                return
            request = _make_request(event, scheme, server_name, sockname[1], peername[0])
            body = Body(conn, reader, writer, limits)
            try:
                response = await asyncio.wait_for(handler(request, body), limits.handler_timeout)
            except BodyTooLarge:
                response = Response(413, [("Content-Type", "text/plain")], b"request body too large\n", close=True)
            except h11.RemoteProtocolError as exc:
                await _send_error(conn, writer, exc.error_status_hint, limits)
                return
            except (TimeoutError, ConnectionError):
                return
            except Exception:  # a handler bug must not kill the server, only this connection
                log.exception("handler failed for %s %s", request.method, request.target)
                response = Response(500, [("Content-Type", "text/plain")], b"internal error\n", close=True)
            await _send_response(conn, writer, response, request.method == "HEAD", limits)
            if response.close or conn.our_state is not h11.DONE:
                return
            try:
                if not body.done:
                    await body.discard(limits.drain_bytes)
            except (BodyTooLarge, h11.RemoteProtocolError):
                return
            if conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (TimeoutError, ConnectionError, ssl.SSLError, h11.LocalProtocolError):
        return
    finally:
        await close_writer(writer)


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(64 * 1024), timeout)
        conn.receive_data(data)  # b"" signals EOF to h11


def _head_size(event: h11.Request) -> int:
    return len(event.method) + len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)


def _make_request(
    event: h11.Request, scheme: str, server_name: str | None, local_port: int, remote_addr: str
) -> Request:
    headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers)
    target = event.target.decode("latin-1")
    host_header = next((v for k, v in headers if k == "host"), "")
    try:
        parts = urlsplit(target)  # absolute-form targets (as proxies get them) carry their own host
        path, query, target_host = parts.path or "/", parts.query, parts.hostname
    except ValueError:
        path, query, target_host = target, "", None
    return Request(
        method=event.method.decode("ascii", "replace"),
        target=target,
        path=path,
        query=query,
        headers=headers,
        host=_strip_port(target_host or host_header).lower(),
        scheme=scheme,
        server_name=server_name,
        local_port=local_port,
        remote_addr=remote_addr,
    )


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _send_response(
    conn: h11.Connection, writer: asyncio.StreamWriter, response: Response, head_only: bool, limits: Limits
) -> None:
    headers = list(response.headers)
    names = {k.lower() for k, _ in headers}
    if "date" not in names:
        headers.insert(0, ("Date", http_date()))
    if "content-length" not in names:
        length = len(response.body) if isinstance(response.body, bytes) else response.length
        if length is not None:
            headers.append(("Content-Length", str(length)))
    if response.close:
        headers.append(("Connection", "close"))
    reason = _REASONS.get(response.status, b"")
    await _write(writer, conn.send(h11.Response(status_code=response.status, headers=headers, reason=reason)), limits)
    if not head_only:
        if isinstance(response.body, bytes):
            if response.body:
                await _write(writer, conn.send(h11.Data(data=response.body)), limits)
        else:
            async for chunk in response.body:
                await _write(writer, conn.send(h11.Data(data=chunk)), limits)
    await _write(writer, conn.send(h11.EndOfMessage()), limits)


async def _send_error(conn: h11.Connection, writer: asyncio.StreamWriter, status: int, limits: Limits) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        body = f"{status} bad request\n".encode()
        await _send_response(conn, writer, Response(status, [("Content-Type", "text/plain")], body, close=True),
                             False, limits)
    except (TimeoutError, h11.LocalProtocolError, ConnectionError, ssl.SSLError):
        pass


async def _write(writer: asyncio.StreamWriter, data: bytes | None, limits: Limits) -> None:
    if data:
        writer.write(data)
        await asyncio.wait_for(writer.drain(), limits.write_timeout)

"""One HTTP/1.1 exchange (h11) over a traced stream, recorded as a df-001 transaction.

What arrived is recorded even when the exchange fails half-way (a reset after the headers is how some
censors cut a page), and the body is read through ``Conn.read`` so the read events give throughput.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import h11
import msgspec

from netvigil.model.archival import (
    ArchivalBinaryData,
    ArchivalHTTPRequest,
    ArchivalHTTPResponse,
    ArchivalHTTPTransaction,
)
from netvigil.probe.netx.errors import NetxError, failure_of
from netvigil.probe.netx.tcp import Conn
from netvigil.probe.netx.trace import Trace

__all__ = ["HTTPResponse", "http_request", "can_send", "maybe_binary", "request_record", "request_headers", "host_header", "READ_SIZE"]

READ_SIZE = 65536
_NO_TOR = {"exit_ip": None, "exit_name": None, "is_tor": False}


class HTTPResponse(msgspec.Struct):
    """A response as the caller sees it (the archival record is in the trace)."""

    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    truncated: bool
    transaction_id: int | None = None
    address: str | None = None

    def header(self, name: str) -> str | None:
        """First value of a header, case-insensitively."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


def can_send(conn: Conn) -> bool:
    """True when ``conn`` can carry another request (open, and any previous exchange ended cleanly)."""
    h = conn.http
    return not conn.closed and (h is None or (h.our_state is h11.IDLE and h.their_state is h11.IDLE))


def maybe_binary(data: bytes) -> str | ArchivalBinaryData:
    """OONI's MaybeBinaryData: text when the bytes are valid UTF-8, else base64."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ArchivalBinaryData(format="base64", data=base64.b64encode(data).decode("ascii"))


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _header_records(pairs: Sequence[tuple[bytes, bytes]]) -> tuple[list[list[Any]], dict[str, Any]]:
    """(headers_list, headers): every pair, and the first value of each name (df-001)."""
    listed: list[list[Any]] = []
    first: dict[str, Any] = {}
    for raw_name, raw_value in pairs:
        name = _text(raw_name)
        value = maybe_binary(raw_value)
        listed.append([name, value])
        first.setdefault(name, value)
    return listed, first


def host_header(url: str) -> str:
    """The Host header for a URL: its authority without user info (brackets and port as written), with an
    internationalised name in its ASCII (IDNA) form, as it goes on the wire."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.isascii() or not parts.hostname:
        return netloc
    try:
        ace = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        return netloc
    return f"{ace}:{parts.port}" if parts.port is not None else ace


def _target(url: str) -> str:
    """The request target: path and query, percent-encoding anything outside ASCII (as browsers do)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    target = f"{path}?{parts.query}" if parts.query else path
    return target if target.isascii() else quote(target, safe="/?&=%:@!$'()*+,;-._~")


def request_record(url: str, method: str, headers: Sequence[tuple[str, str]], body: bytes) -> ArchivalHTTPRequest:
    """The df-001 request as sent."""
    listed, first = _header_records([(k.encode("utf-8"), v.encode("utf-8")) for k, v in headers])
    return ArchivalHTTPRequest(
        body=maybe_binary(body), body_is_truncated=False, headers=first, headers_list=listed,
        method=method, tor=dict(_NO_TOR), x_transport="tcp", url=url,
    )


def request_headers(url: str, method: str, headers: Sequence[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    """The headers as sent: Host (from the URL) first unless given, then the caller's, then Content-Length."""
    names = {k.lower() for k, _ in headers}
    out: list[tuple[str, str]] = []
    if "host" not in names:
        out.append(("Host", host_header(url)))
    out.extend((k, v) for k, v in headers)
    if "content-length" not in names and "transfer-encoding" not in names and (
        body or method.upper() in ("POST", "PUT", "PATCH")
    ):
        out.append(("Content-Length", str(len(body))))
    return out


async def http_request(trace: Trace, conn: Conn, url: str, *, method: str = "GET",
                       headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
                       max_body: int = 1 << 19, timeout: float = 15.0,
                       transaction_id: int | None = None) -> HTTPResponse:
    """Send one request on ``conn`` and read the response; records one df-001 transaction.

    A body longer than ``max_body`` is cut there (``truncated``; not a failure; the stream is then not
    reusable). ``transaction_id``: default the stream's id for its first exchange, a fresh one after.
    On failure the stream is closed and NetxError raised.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if transaction_id is not None:
        conn.transaction_id = transaction_id
    elif conn.requests > 0:
        conn.transaction_id = trace.next_id()
    conn.requests += 1
    tid = conn.transaction_id
    sent_headers = request_headers(url, method, headers, body)
    record = ArchivalHTTPTransaction(
        request=request_record(url, method, sent_headers, body), network="tcp", address=conn.address,
        alpn=conn.alpn, t0=trace.now(), transaction_id=tid,
    )
    status = 0
    raw_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    size = 0
    truncated = False
    got_head = False
    failure: str | None = None
    error: Exception | None = None
    try:
        if conn.closed:
            raise ConnectionError("the stream is closed")
        h = conn.http
        if h is None or h.our_state is not h11.IDLE or h.their_state is not h11.IDLE:
            if h is not None:  # the previous exchange did not end cleanly: this stream cannot carry another
                raise ConnectionError("stream not reusable for another HTTP request")
            h = conn.http = h11.Connection(h11.CLIENT)
        out = h.send(h11.Request(method=method, target=_target(url), headers=sent_headers))
        if body:
            out += h.send(h11.Data(data=body))
        out += h.send(h11.EndOfMessage())
        await conn.write(out, timeout=deadline - loop.time())
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                if h.their_state is h11.ERROR and conn.reader.at_eof():
                    raise EOFError("connection closed before the response was complete") from exc
                raise
            if event is h11.NEED_DATA:
                data = await conn.read(READ_SIZE, timeout=deadline - loop.time())
                h.receive_data(data)
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.Response):
                status = event.status_code
                raw_headers = list(event.headers.raw_items())
                got_head = True
            elif isinstance(event, h11.Data):
                room = max_body - size
                if len(event.data) > room:
                    chunks.append(bytes(event.data[:room]))
                    size = max_body
                    truncated = True
                    break
                chunks.append(bytes(event.data))
                size += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("connection closed before the response")
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()  # keep-alive: the stream can carry another request
    except asyncio.CancelledError:
        await conn.abort()
        raise
    except Exception as exc:
        failure, error = failure_of(exc), exc
    payload = b"".join(chunks)
    if got_head:
        listed, first = _header_records(raw_headers)
        record.response = ArchivalHTTPResponse(
            body=maybe_binary(payload), body_is_truncated=truncated, code=status, headers=first,
            headers_list=listed,
        )
    record.failure = failure
    record.t = trace.now()
    trace.requests.append(record)
    if failure is not None:
        await conn.abort()  # a stream that failed mid-exchange is not worth a polite goodbye
        raise NetxError(failure) from error
    return HTTPResponse(
        url=url, status=status, headers=[(_text(k), _text(v)) for k, v in raw_headers], body=payload,
        truncated=truncated, transaction_id=tid, address=conn.address,
    )

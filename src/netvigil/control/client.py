"""The probe's side of the control protocol: send the request to a helper, decode its answer.

Control traffic is not part of the measurement, so it runs on a throwaway ``Trace``; a failure still comes back
as ``NetxError`` with an OONI failure string, which the probe records as ``control_failure``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Callable
from urllib.parse import urlsplit

import h11
import msgspec

from netvigil import __version__
from netvigil.model.archival import WebConnectivityControl
from netvigil.model.control import ControlRequest
from netvigil.model.failure import Failure
from netvigil.probe import netx
from netvigil.probe.netx import NetxError, TLSConfig, Trace

__all__ = ["ControlClient", "query_control"]

_MAX_ANSWER = 1 << 20   # an answer has no bodies; 1 MiB is generous for 16 endpoints and headers
_MIN_STEP = 0.05
# What a kept-alive connection the helper closed while it sat idle looks like on the next request.
_STALE = frozenset({Failure.EOF.value, Failure.CONNECTION_RESET.value})


class ControlClient:
    """Queries one helper over kept-alive connections.

    A probe run asks the helper once per URL; a fresh TLS connection per question would cost a handshake on
    both sides every time, which is most of the helper's work. Idle connections wait in a small pool; one the
    helper has meanwhile closed is noticed (EOF) and replaced, and a question that meets a stale connection is
    asked again once on a new one (the request is idempotent).
    """

    def __init__(self, helper_url: str, *, tls: TLSConfig, max_idle: int = 64) -> None:
        parts = urlsplit(helper_url)
        scheme = parts.scheme.lower()
        try:
            host, explicit_port = parts.hostname, parts.port
        except ValueError:
            host, explicit_port = None, None
        if scheme not in ("http", "https") or not host:
            raise NetxError(f"unknown_failure: control helper URL {helper_url!r} is not an http(s) URL")
        self.url = helper_url
        self.host = host
        self.https = scheme == "https"
        self.port = explicit_port or (443 if self.https else 80)
        self.tls = tls
        self.max_idle = max_idle
        self._idle: list[netx.Conn] = []

    async def query(self, req: ControlRequest, *, timeout: float = 15.0) -> WebConnectivityControl:
        """POST `req` and decode the answer within `timeout`.

        Raises NetxError: the network failure (e.g. ``connection_refused``), or ``unknown_failure: control
        helper ...`` for a non-200 status or an answer that does not decode.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def left() -> float:
            return max(_MIN_STEP, deadline - loop.time())

        body = msgspec.json.encode(req)
        trace = Trace()
        conn = await self._take_idle()
        if conn is not None:
            try:
                resp = await self._post(trace, conn, body, left)
            except NetxError as exc:
                if exc.failure not in _STALE:
                    raise
                conn = None  # the helper closed it while idle: ask again on a new connection
        if conn is None:
            conn = await self._open(trace, left)
            resp = await self._post(trace, conn, body, left)
        await self._give_back(conn, resp)
        if resp.status != 200:
            raise NetxError(f"unknown_failure: control helper answered HTTP {resp.status}")
        if resp.truncated:
            raise NetxError("unknown_failure: control helper answer too large")
        try:
            return msgspec.json.decode(resp.body, type=WebConnectivityControl)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise NetxError("unknown_failure: control helper answer undecodable: "
                            f"{' '.join(str(exc).split())[:120]}") from None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _take_idle(self) -> netx.Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and not conn.reader.at_eof():
                return conn
            await conn.abort()
        return None

    async def _give_back(self, conn: netx.Conn, resp: netx.HTTPResponse) -> None:
        h = conn.http
        reusable = (not conn.closed and not resp.truncated and h is not None and h.our_state is h11.IDLE
                    and h.their_state is h11.IDLE and len(self._idle) < self.max_idle)
        if reusable:
            self._idle.append(conn)
        else:
            await conn.close()

    async def _open(self, trace: Trace, left: Callable[[], float]) -> netx.Conn:
        try:
            addrs = [ipaddress.ip_address(self.host).compressed]
        except ValueError:
            addrs = await netx.getaddrinfo(trace, self.host, timeout=left())
        conn = await _connect_first(trace, addrs, self.port, left)
        if self.https:
            try:
                conn = await netx.tls_handshake(trace, conn, self.host, tls=self.tls, timeout=left())
            except BaseException:
                await conn.close()
                raise
        return conn

    async def _post(self, trace: Trace, conn: netx.Conn, body: bytes, left: Callable[[], float]
                    ) -> netx.HTTPResponse:
        return await netx.http_request(
            trace, conn, self.url, method="POST",
            headers=[("Content-Type", "application/json"), ("Accept", "application/json"),
                     ("User-Agent", f"netvigil/{__version__}")],
            body=body, max_body=_MAX_ANSWER, timeout=left(),
        )


async def query_control(helper_url: str, req: ControlRequest, *, tls: TLSConfig,
                        timeout: float = 15.0) -> WebConnectivityControl:
    """One question to the helper at `helper_url` (http or https), on a connection of its own."""
    async with ControlClient(helper_url, tls=tls, max_idle=0) as client:
        return await client.query(req, timeout=timeout)


async def _connect_first(trace: Trace, addrs: list[str], port: int, left: Callable[[], float]) -> netx.Conn:
    """The first address that accepts a connection; otherwise the last failure."""
    if not addrs:
        raise NetxError(Failure.DNS_NO_ANSWER.value)
    last: NetxError | None = None
    for ip in addrs:
        try:
            return await netx.connect(trace, ip, port, timeout=left())
        except NetxError as exc:
            last = exc
    assert last is not None
    raise last

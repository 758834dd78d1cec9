"""The probe's side of the control protocol: send the request to a helper, decode its answer.

Control traffic is not part of the measurement, so it runs on a throwaway ``Trace``; a failure still comes back
as ``NetxError`` with an OONI failure string, which the probe records as ``control_failure``.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Callable
from urllib.parse import urlsplit

import msgspec

from netvigil import __version__
from netvigil.model.archival import WebConnectivityControl
from netvigil.model.control import ControlRequest
from netvigil.model.failure import Failure
from netvigil.probe import netx
from netvigil.probe.netx import NetxError, TLSConfig, Trace

__all__ = ["query_control"]

_MAX_ANSWER = 1 << 20   # an answer has no bodies; 1 MiB is generous for 16 endpoints and headers
_MIN_STEP = 0.05


async def query_control(helper_url: str, req: ControlRequest, *, tls: TLSConfig,
                        timeout: float = 15.0) -> WebConnectivityControl:
    """POST `req` to the helper at `helper_url` (http or https) and decode its answer within `timeout`.

    Raises NetxError: the network failure (e.g. ``connection_refused``), or ``unknown_failure: control
    helper ...`` for a non-200 status or an answer that does not decode.
    """
    parts = urlsplit(helper_url)
    scheme = parts.scheme.lower()
    try:
        host, explicit_port = parts.hostname, parts.port
    except ValueError:
        host, explicit_port = None, None
    if scheme not in ("http", "https") or not host:
        raise NetxError(f"unknown_failure: control helper URL {helper_url!r} is not an http(s) URL")
    port = explicit_port or (443 if scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def left() -> float:
        return max(_MIN_STEP, deadline - loop.time())

    trace = Trace()
    try:
        addrs = [ipaddress.ip_address(host).compressed]
    except ValueError:
        addrs = await netx.getaddrinfo(trace, host, timeout=left())
    conn = await _connect_first(trace, addrs, port, left)
    try:
        if scheme == "https":
            conn = await netx.tls_handshake(trace, conn, host, tls=tls, timeout=left())
        resp = await netx.http_request(
            trace, conn, helper_url, method="POST",
            headers=[("Content-Type", "application/json"), ("Accept", "application/json"),
                     ("User-Agent", f"netvigil/{__version__}")],
            body=msgspec.json.encode(req), max_body=_MAX_ANSWER, timeout=left(),
        )
    finally:
        await conn.close()
    if resp.status != 200:
        raise NetxError(f"unknown_failure: control helper answered HTTP {resp.status}")
    if resp.truncated:
        raise NetxError("unknown_failure: control helper answer too large")
    try:
        return msgspec.json.decode(resp.body, type=WebConnectivityControl)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise NetxError(f"unknown_failure: control helper answer undecodable: {' '.join(str(exc).split())[:120]}") \
            from None


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

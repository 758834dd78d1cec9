"""TLS handshake over an existing traced stream, recording what a censor's interference looks like (df-006).

The peer certificate chain is kept even when verification fails: a MITM or blockpage certificate is
evidence. Python has no public API for that, so the context's ``sslobject_class`` is a subclass that hands
each handshake its own SSL object (through a context variable, since contexts are shared and cached).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from netvigil.model.archival import ArchivalBinaryData, ArchivalTLSHandshake
from netvigil.probe.netx.errors import NetxError, failure_of
from netvigil.probe.netx.tcp import Conn
from netvigil.probe.netx.trace import Trace

__all__ = ["TLSConfig", "tls_handshake"]

# The SSL objects created while one handshake runs (a task-local list; see the module docstring).
_CAPTURE: contextvars.ContextVar[list[ssl.SSLObject] | None] = contextvars.ContextVar("netx_tls_capture",
                                                                                       default=None)


class _CapturingSSLObject(ssl.SSLObject):
    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> ssl.SSLObject:  # type: ignore[override]
        obj = super()._create(*args, **kwargs)  # type: ignore[misc]
        sink = _CAPTURE.get()
        if sink is not None:
            sink.append(obj)
        return obj


@lru_cache(maxsize=64)
def _context(ca_file: str | None, verify: bool, alpn: tuple[str, ...], check_hostname: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif not check_hostname:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    ctx.sslobject_class = _CapturingSSLObject
    return ctx


@dataclass(frozen=True)
class TLSConfig:
    """Which certificates to trust. ``ca_file=None``: the system store (honours SSL_CERT_FILE)."""

    ca_file: str | None = None
    verify: bool = True

    def context(self, alpn: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
        """A client context, cached per (ca_file, verify, alpn)."""
        return _context(self.ca_file, self.verify, tuple(alpn), True)


def _chain(sslobj: ssl.SSLObject | None) -> list[ArchivalBinaryData] | None:
    """The peer's chain as sent (DER, leaf first), verified or not; None when the peer sent none."""
    if sslobj is None:
        return None
    ders: list[bytes] = []
    inner = getattr(sslobj, "_sslobj", None)
    get_chain = getattr(inner, "get_unverified_chain", None)
    if get_chain is not None:
        try:
            ders = [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in get_chain() or ()]  # type: ignore[attr-defined]
        except (ssl.SSLError, ValueError, AttributeError):
            ders = []
    if not ders:
        try:
            leaf = sslobj.getpeercert(binary_form=True)
        except (ssl.SSLError, ValueError):
            leaf = None
        ders = [leaf] if leaf else []
    return [ArchivalBinaryData(format="base64", data=base64.b64encode(d).decode("ascii")) for d in ders] or None


async def tls_handshake(trace: Trace, conn: Conn, server_name: str | None, *, tls: TLSConfig,
                        alpn: Sequence[str] = ("http/1.1",), timeout: float = 10.0) -> Conn:
    """Upgrade ``conn`` to TLS (SNI ``server_name``; None: no SNI and no hostname check); records df-006.

    On failure the stream is closed, the handshake recorded with its failure, and NetxError raised.
    """
    name = server_name or None
    ctx = _context(tls.ca_file, tls.verify, tuple(alpn), name is not None)
    sink: list[ssl.SSLObject] = []
    token = _CAPTURE.set(sink)
    t0 = trace.now()
    failure: str | None = None
    error: Exception | None = None
    sslobj: ssl.SSLObject | None = None
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            # asyncio's own handshake timeout would abort with ConnectionAbortedError; ours fires first.
            await conn.writer.start_tls(ctx, server_hostname=name, ssl_handshake_timeout=max(timeout, 0.0) + 5.0)
        sslobj = conn.writer.get_extra_info("ssl_object")
    except Exception as exc:
        failure = failure_of(exc, operation="handshake")
        error = exc
        sslobj = sink[-1] if sink else None
    finally:
        _CAPTURE.reset(token)
    record = ArchivalTLSHandshake(
        network="tcp", address=conn.address, failure=failure, no_tls_verify=not tls.verify,
        peer_certificates=_chain(sslobj), server_name=name, t0=t0, t=trace.now(),
        transaction_id=conn.transaction_id,
    )
    if failure is not None or sslobj is None:
        trace.tls_handshakes.append(record)
        # asyncio has already closed the transport; its stream protocol never hears of it, so no wait_closed()
        await conn.abort()
        raise NetxError(failure or "unknown_failure: no TLS object after the handshake") from error
    cipher = sslobj.cipher()
    record.tls_version = sslobj.version()
    record.cipher_suite = cipher[0] if cipher else None
    record.negotiated_protocol = sslobj.selected_alpn_protocol()
    trace.tls_handshakes.append(record)
    conn.tls = True
    conn.server_name = name
    conn.tls_version = record.tls_version
    conn.alpn = record.negotiated_protocol
    return conn

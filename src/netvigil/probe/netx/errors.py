"""Exceptions -> OONI failure strings (df-007), in one place.

Every traced operation catches what the OS, ``ssl``, ``asyncio``, ``h11`` or dnspython raised, asks
``failure_of`` for the OONI string, records it in the trace and raises ``NetxError`` carrying it, so
callers (nettests, the control helper) never look at exception classes or error text again.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Any

import dns.exception
import dns.rcode
import dns.resolver

from netvigil.model.failure import Failure

__all__ = ["NetxError", "DNSResponseError", "failure_of"]


class NetxError(Exception):
    """A traced operation failed; ``failure`` is the OONI failure string already recorded in the trace.

    ``responses`` is the redirect chain that ``fetch`` had completed before failing (empty elsewhere).
    """

    def __init__(self, failure: str, *, responses: list[Any] | None = None) -> None:
        super().__init__(failure)
        self.failure = failure
        self.responses: list[Any] = responses if responses is not None else []


class DNSResponseError(Exception):
    """A DNS reply that carries no usable answer: an error rcode, or NOERROR without the asked type (NODATA)."""

    def __init__(self, rcode: int, qtype: str = "") -> None:
        super().__init__(f"{dns.rcode.to_text(rcode)} for {qtype}" if qtype else dns.rcode.to_text(rcode))
        self.rcode = rcode
        self.qtype = qtype


# OpenSSL X509_V_ERR_* codes (x509_vfy.h) and the OONI failure each one means.
_VERIFY_CODES = {
    9: Failure.SSL_INVALID_CERTIFICATE,   # certificate is not yet valid
    10: Failure.SSL_INVALID_CERTIFICATE,  # certificate has expired
    18: Failure.SSL_UNKNOWN_AUTHORITY,    # self-signed leaf
    19: Failure.SSL_UNKNOWN_AUTHORITY,    # self-signed certificate in chain
    20: Failure.SSL_UNKNOWN_AUTHORITY,    # unable to get local issuer certificate
    21: Failure.SSL_UNKNOWN_AUTHORITY,    # unable to verify the first certificate
    62: Failure.SSL_INVALID_HOSTNAME,     # hostname mismatch
    64: Failure.SSL_INVALID_HOSTNAME,     # IP address mismatch
}

_ERRNOS = {
    errno.ECONNREFUSED: Failure.CONNECTION_REFUSED,
    errno.ECONNRESET: Failure.CONNECTION_RESET,
    errno.ECONNABORTED: Failure.CONNECTION_ABORTED,
    errno.EHOSTUNREACH: Failure.HOST_UNREACHABLE,
    errno.ENETUNREACH: Failure.NETWORK_UNREACHABLE,
    errno.ETIMEDOUT: Failure.GENERIC_TIMEOUT,
}

_GAI = {
    socket.EAI_NONAME: Failure.DNS_NXDOMAIN,
    socket.EAI_AGAIN: Failure.DNS_TEMPORARY,
    socket.EAI_FAIL: Failure.DNS_SERVFAIL,
}
if hasattr(socket, "EAI_NODATA"):  # glibc only
    _GAI[socket.EAI_NODATA] = Failure.DNS_NO_ANSWER

_RCODES = {
    dns.rcode.NXDOMAIN: Failure.DNS_NXDOMAIN,
    dns.rcode.NOERROR: Failure.DNS_NO_ANSWER,  # NOERROR without an answer of the asked type: NODATA
    dns.rcode.SERVFAIL: Failure.DNS_SERVFAIL,
    dns.rcode.REFUSED: Failure.DNS_REFUSED,
}

_EOF_TYPES = (EOFError, asyncio.IncompleteReadError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def _unknown(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{Failure.UNKNOWN.value}: {text}"


def failure_of(exc: BaseException, *, operation: str | None = None) -> str:
    """THE mapping from an exception to an OONI failure string (df-007).

    ``operation`` ("handshake", "read", "write") separates two cases that raise the same class: a TLS error
    after the handshake is not a failed handshake, and asyncio reports a peer that hangs up in mid-handshake
    as an errno-less ConnectionResetError (OONI: eof_error, while a real RST is connection_reset).
    """
    if isinstance(exc, NetxError):
        return exc.failure
    # asyncio.TimeoutError and socket.timeout are TimeoutError since 3.11/3.10; dnspython has its own.
    if isinstance(exc, (TimeoutError, dns.exception.Timeout)):
        return Failure.GENERIC_TIMEOUT.value
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_CODES.get(exc.verify_code, Failure.SSL_INVALID_CERTIFICATE).value
    if isinstance(exc, _EOF_TYPES):
        return Failure.EOF.value
    if isinstance(exc, ssl.SSLError):
        if operation in ("read", "write"):
            return _unknown(exc)
        return Failure.SSL_FAILED_HANDSHAKE.value
    if isinstance(exc, ConnectionResetError):
        if exc.errno is None and operation == "handshake":
            # asyncio's stand-in for a FIN in mid-handshake; a real RST carries ECONNRESET
            return Failure.EOF.value
        return Failure.CONNECTION_RESET.value
    if isinstance(exc, ConnectionRefusedError):
        return Failure.CONNECTION_REFUSED.value
    if isinstance(exc, ConnectionAbortedError):
        return Failure.CONNECTION_ABORTED.value
    if isinstance(exc, socket.gaierror):
        mapped = _GAI.get(exc.errno)
        return mapped.value if mapped is not None else _unknown(exc)
    if isinstance(exc, OSError) and exc.errno in _ERRNOS:
        return _ERRNOS[exc.errno].value
    if isinstance(exc, DNSResponseError):
        return _RCODES.get(exc.rcode, Failure.DNS_SERVFAIL).value
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return Failure.DNS_NXDOMAIN.value
    if isinstance(exc, dns.resolver.NoAnswer):
        return Failure.DNS_NO_ANSWER.value
    if isinstance(exc, dns.resolver.NoNameservers):  # every server answered SERVFAIL/REFUSED or failed
        return Failure.DNS_SERVFAIL.value
    return _unknown(exc)

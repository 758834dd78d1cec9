"""OONI's failure vocabulary, in one place.

Probe and control helpers spell some failures differently (the Go helper says
``connection_refused_error`` where the probe says ``connection_refused``); we
map each spelling once, here, so nothing downstream parses error text.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Failure", "canonical_failure", "failure_class", "FailureClass"]


class Failure(StrEnum):
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    CONNECTION_ABORTED = "connection_aborted"
    GENERIC_TIMEOUT = "generic_timeout_error"
    EOF = "eof_error"
    HOST_UNREACHABLE = "host_unreachable"
    NETWORK_UNREACHABLE = "network_unreachable"
    DNS_NXDOMAIN = "dns_nxdomain_error"
    DNS_NO_ANSWER = "dns_no_answer"
    DNS_REFUSED = "dns_refused_error"
    DNS_SERVFAIL = "dns_server_misbehaving"
    DNS_TEMPORARY = "dns_temporary_failure"
    DNS_BOGON = "dns_bogon_error"
    ANDROID_DNS_CACHE_NO_DATA = "android_dns_cache_no_data"
    SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
    SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
    SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
    SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
    HTTP_INVALID_REDIRECT = "http_invalid_redirect_location_host"
    HTTP_TOO_MANY_REDIRECTS = "http_too_many_redirects"
    HTTP_UNEXPECTED_STATUS = "http_unexpected_status_code"
    UNKNOWN = "unknown_failure"


class FailureClass(StrEnum):
    """Coarse families used by the analysis rules."""

    TIMEOUT = "timeout"
    RESET = "reset"
    REFUSED = "refused"
    EOF = "eof"
    UNREACHABLE = "unreachable"
    DNS_NAME = "dns_name"          # the name does not resolve (NXDOMAIN, no data)
    DNS_SERVER = "dns_server"      # the resolver failed (SERVFAIL, refused, timeout)
    TLS_CERT = "tls_cert"          # certificate did not validate
    TLS_OTHER = "tls_other"
    HTTP_REDIRECT = "http_redirect"  # a broken or endless redirect chain: the site's doing
    OTHER = "other"


_ALIASES = {
    "connection_refused_error": Failure.CONNECTION_REFUSED,
    "connection_reset_error": Failure.CONNECTION_RESET,
    "dns_name_error": Failure.DNS_NXDOMAIN,
    "dns_nxdomain": Failure.DNS_NXDOMAIN,
    "dns_lookup_error": Failure.DNS_SERVFAIL,
    "dns_server_failure": Failure.DNS_SERVFAIL,
    "dns_non_recoverable_failure": Failure.DNS_SERVFAIL,
    "generic_timeout": Failure.GENERIC_TIMEOUT,
    "deferred_timeout_error": Failure.GENERIC_TIMEOUT,
    "response_never_received": Failure.GENERIC_TIMEOUT,
    "connection_lost_error": Failure.CONNECTION_RESET,
    "connection_done": Failure.EOF,
    "ssl_error": Failure.SSL_FAILED_HANDSHAKE,
}

_CLASSES = {
    Failure.CONNECTION_REFUSED: FailureClass.REFUSED,
    Failure.CONNECTION_RESET: FailureClass.RESET,
    Failure.CONNECTION_ABORTED: FailureClass.RESET,
    Failure.GENERIC_TIMEOUT: FailureClass.TIMEOUT,
    Failure.EOF: FailureClass.EOF,
    Failure.HOST_UNREACHABLE: FailureClass.UNREACHABLE,
    Failure.NETWORK_UNREACHABLE: FailureClass.UNREACHABLE,
    Failure.DNS_NXDOMAIN: FailureClass.DNS_NAME,
    Failure.DNS_NO_ANSWER: FailureClass.DNS_NAME,
    Failure.ANDROID_DNS_CACHE_NO_DATA: FailureClass.DNS_NAME,
    Failure.DNS_BOGON: FailureClass.DNS_NAME,
    Failure.DNS_REFUSED: FailureClass.DNS_SERVER,
    Failure.DNS_SERVFAIL: FailureClass.DNS_SERVER,
    Failure.DNS_TEMPORARY: FailureClass.DNS_SERVER,
    Failure.SSL_INVALID_HOSTNAME: FailureClass.TLS_CERT,
    Failure.SSL_UNKNOWN_AUTHORITY: FailureClass.TLS_CERT,
    Failure.SSL_INVALID_CERTIFICATE: FailureClass.TLS_CERT,
    Failure.SSL_FAILED_HANDSHAKE: FailureClass.TLS_OTHER,
    Failure.HTTP_INVALID_REDIRECT: FailureClass.HTTP_REDIRECT,
    Failure.HTTP_TOO_MANY_REDIRECTS: FailureClass.HTTP_REDIRECT,
}


def canonical_failure(failure: str | None) -> str | None:
    """Return OONI's canonical spelling of a failure string (None stays None)."""
    if not failure:
        return None
    if failure in _ALIASES:
        return _ALIASES[failure].value
    if failure.startswith("unknown_failure"):
        if "too many redirects" in failure:
            return Failure.HTTP_TOO_MANY_REDIRECTS.value
        return failure
    return failure


def failure_class(failure: str | None) -> FailureClass | None:
    """Coarse family of a (canonical or aliased) failure string."""
    canon = canonical_failure(failure)
    if canon is None:
        return None
    try:
        return _CLASSES.get(Failure(canon), FailureClass.OTHER)
    except ValueError:
        if "timeout" in canon or "timed out" in canon:
            return FailureClass.TIMEOUT
        return FailureClass.OTHER

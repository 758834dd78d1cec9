"""The control measurement: what the URL looks like from an uncensored vantage point.

It answers OONI's Web Connectivity test-helper request (ts-017 §control, with the v0.5 ``tls_handshake`` and
``ip_info`` keys): resolve the URL's host with getaddrinfo, connect to every endpoint the probe saw and every
address we resolved (TLS on port 443 with SNI = the URL's host), fetch the page following redirects, and report
only sizes, titles, headers and failures (never bodies). Every step uses the traced netx primitives on a
throwaway trace, so failures carry the same OONI strings the probe records; the whole answer is bounded by
``timeout`` and partial results survive a slow endpoint.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import urljoin, urlsplit

from netvigil.analysis.observations.common import title_of
from netvigil.control.policy import (
    ADDRESS_NOT_ALLOWED,
    PORT_NOT_ALLOWED,
    Endpoint,
    Policy,
    Target,
    check_request,
    is_bogon,
)
from netvigil.model.archival import (
    WebConnectivityControl,
    WebConnectivityControlDNS,
    WebConnectivityControlHTTP,
    WebConnectivityControlIPInfo,
    WebConnectivityControlTCP,
    WebConnectivityControlTLS,
)
from netvigil.model.control import ControlRequest
from netvigil.model.failure import Failure
from netvigil.probe import netx
from netvigil.probe.netx import NetxError, TLSConfig, Trace

__all__ = [
    "AsnLookup",
    "IP_FLAG_BOGON",
    "IP_FLAG_RESOLVED_BY_PROBE",
    "IP_FLAG_RESOLVED_BY_TH",
    "IP_FLAG_VALID_FOR_DOMAIN",
    "measure",
    "measure_target",
    "to_wire",
]

log = logging.getLogger(__name__)

# ip_info flags, as OONI's helper defines the bitmask.
IP_FLAG_RESOLVED_BY_PROBE = 1   # the probe listed an endpoint with this address
IP_FLAG_RESOLVED_BY_TH = 2      # the helper's own lookup returned it
IP_FLAG_BOGON = 4               # not globally routable
IP_FLAG_VALID_FOR_DOMAIN = 8    # a verified TLS handshake for the URL's host succeeded on it

AsnLookup = Callable[[str], "int | None"]

_DNS_BUDGET = 5.0        # at most this much of the budget for the helper's own lookup
_MIN_STEP = 0.05         # never hand a primitive a zero or negative timeout
_GRACE = 0.25            # the primitives get `timeout`; the backstop waits a little longer before giving up


async def measure(req: ControlRequest, policy: Policy, *, tls: TLSConfig, timeout: float = 10.0,
                  asn_lookup: AsnLookup | None = None) -> WebConnectivityControl:
    """Check `req` against `policy` (RequestRefused if it breaks a rule), then measure it within `timeout`."""
    target = check_request(req, policy)
    return await measure_target(target, policy, tls=tls, timeout=timeout, asn_lookup=asn_lookup)


async def measure_target(target: Target, policy: Policy, *, tls: TLSConfig, timeout: float = 10.0,
                         asn_lookup: AsnLookup | None = None) -> WebConnectivityControl:
    """Measure a checked request; every field of the answer is filled even when steps time out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    trace = Trace()  # control traffic is not archived: the trace only drives the primitives

    def left(cap: float | None = None) -> float:
        remaining = max(_MIN_STEP, deadline - loop.time())
        return min(remaining, cap) if cap is not None else remaining

    dns, resolved = await _resolve(trace, target, left(min(_DNS_BUDGET, timeout * 0.4)))
    endpoints = list(target.endpoints)
    for ip in resolved:
        ep = Endpoint(ip, target.port)
        if ep not in endpoints:
            endpoints.append(ep)
    endpoints = endpoints[: policy.max_endpoints]

    tcp: dict[str, WebConnectivityControlTCP] = {}
    tls_results: dict[str, WebConnectivityControlTLS] = {}
    http: list[WebConnectivityControlHTTP] = []
    # The page is fetched over the first connection the connectivity step establishes to one of the helper's
    # OWN addresses (never the probe's: those may be forged), so each URL costs the helper and the site one
    # handshake, not two; with none, the fetch connects on its own.
    handover: asyncio.Future[netx.Conn | None] = loop.create_future()
    candidates = {ep for ep in endpoints if ep.ip in resolved and ep.port == target.port
                  and policy.address_allowed(ep.ip) and (target.scheme == "https") == (ep.port == 443)}

    async def one_endpoint(ep: Endpoint) -> None:
        keep = ep in candidates and not handover.done()
        try:
            tcp[ep.address], handshake, conn = await _connect(trace, ep, target, policy, tls, left, keep=keep)
            if handshake is not None:
                tls_results[ep.address] = handshake
            if conn is not None:
                if handover.done():
                    await _close(conn)
                else:
                    handover.set_result(conn)
        finally:
            candidates.discard(ep)
            if not candidates and not handover.done():
                handover.set_result(None)

    async def page() -> None:
        conn = await handover if candidates else None
        http.append(await _fetch(trace, target, policy, tls, resolved, dns.failure, left, first=conn))

    tasks = [asyncio.create_task(one_endpoint(ep)) for ep in endpoints] + [asyncio.create_task(page())]
    try:
        done, pending = await asyncio.wait(tasks, timeout=left() + _GRACE)
    finally:  # also when we are cancelled: no step may outlive the answer
        for task in tasks:
            if not task.done():
                task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)
    if handover.done() and not handover.cancelled() and handover.result() is not None:
        await _close(handover.result())  # closed already when the page used it; here only if it never ran
    for task in done:
        if not task.cancelled() and task.exception() is not None:  # a bug, not a network failure: keep answering
            log.error("control step failed: %r", task.exception())

    timeout_failure = Failure.GENERIC_TIMEOUT.value
    for ep in endpoints:
        tcp.setdefault(ep.address, WebConnectivityControlTCP(status=False, failure=timeout_failure))
    http_result = http[0] if http else _http_failure(timeout_failure)
    return WebConnectivityControl(  # endpoints in request order, whatever order they finished in
        tcp_connect={ep.address: tcp[ep.address] for ep in endpoints},
        tls_handshake={ep.address: tls_results[ep.address] for ep in endpoints if ep.address in tls_results},
        http_request=http_result,
        dns=dns,
        ip_info=_ip_info(target, resolved, tls_results, asn_lookup),
    )


def to_wire(c: WebConnectivityControl) -> dict[str, Any]:
    """The answer as OONI's helper writes it: every key present, ``null`` spelled out (the archival structs
    omit absent values, and older probes index these keys directly)."""
    http = c.http_request or _http_failure(Failure.UNKNOWN.value)
    dns = c.dns or WebConnectivityControlDNS()
    return {
        "tcp_connect": {
            ep: {"status": bool(r.status), "failure": r.failure} for ep, r in (c.tcp_connect or {}).items()
        },
        "tls_handshake": {
            ep: {"server_name": r.server_name, "status": bool(r.status), "failure": r.failure}
            for ep, r in (c.tls_handshake or {}).items()
        },
        "http_request": {
            "body_length": http.body_length, "failure": http.failure, "title": http.title or "",
            "headers": http.headers or {}, "status_code": http.status_code,
        },
        "dns": {"failure": dns.failure, "addrs": dns.addrs or []},
        "ip_info": {ip: {"asn": i.asn or 0, "flags": i.flags or 0} for ip, i in (c.ip_info or {}).items()},
    }


async def _resolve(trace: Trace, target: Target, timeout: float) -> tuple[WebConnectivityControlDNS, list[str]]:
    """getaddrinfo of the URL's host; an IP literal is its own answer (as getaddrinfo and OONI's helper do)."""
    if target.host_is_ip:
        return WebConnectivityControlDNS(failure=None, addrs=[target.host]), [target.host]
    try:
        addrs = _unique_ips(await netx.getaddrinfo(trace, target.host, timeout=timeout))
    except NetxError as exc:
        return WebConnectivityControlDNS(failure=exc.failure, addrs=[]), []
    except Exception as exc:  # noqa: BLE001 - mapped once, by netx
        return WebConnectivityControlDNS(failure=netx.failure_of(exc), addrs=[]), []
    return WebConnectivityControlDNS(failure=None, addrs=addrs), addrs


async def _connect(trace: Trace, ep: Endpoint, target: Target, policy: Policy, tls: TLSConfig,
                   left: Callable[[], float], *, keep: bool = False
                   ) -> tuple[WebConnectivityControlTCP, WebConnectivityControlTLS | None, netx.Conn | None]:
    """TCP connect, then a verified TLS handshake with the URL's host as SNI on port 443. With `keep`, a
    connection that got that far is returned open (for the page fetch); otherwise it is closed."""
    if not policy.address_allowed(ep.ip):
        return WebConnectivityControlTCP(status=False, failure=ADDRESS_NOT_ALLOWED), None, None
    try:
        conn = await netx.connect(trace, ep.ip, ep.port, timeout=left())
    except Exception as exc:  # noqa: BLE001 - NetxError or not, netx maps it
        return WebConnectivityControlTCP(status=False, failure=_failure(exc)), None, None
    tcp = WebConnectivityControlTCP(status=True, failure=None)
    handshake = None
    usable = True
    try:
        if ep.port == 443:
            try:
                conn = await netx.tls_handshake(trace, conn, target.host, tls=tls, timeout=left())
                handshake = WebConnectivityControlTLS(server_name=target.host, status=True, failure=None)
            except Exception as exc:  # noqa: BLE001
                handshake = WebConnectivityControlTLS(server_name=target.host, status=False, failure=_failure(exc))
                usable = False
    finally:
        if not (keep and usable):
            await _close(conn)
    return tcp, handshake, conn if keep and usable else None


async def _fetch(trace: Trace, target: Target, policy: Policy, tls: TLSConfig, resolved: list[str],
                 dns_failure: str | None, left: Callable[..., float], *,
                 first: netx.Conn | None = None) -> WebConnectivityControlHTTP:
    """GET the URL following redirects; every hop's addresses pass the policy before any connect. `first`: an
    established connection to one of the URL's endpoints, used for the first request."""
    known: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    if not target.host_is_ip:
        if resolved:
            known[target.host] = resolved
        elif dns_failure:
            failed[target.host] = dns_failure

    async def resolve(name: str) -> list[str]:
        host = name.strip("[]").lower()
        try:
            addrs = [ipaddress.ip_address(host).compressed]
        except ValueError:
            if host in failed:
                raise NetxError(failed[host]) from None
            if host not in known:
                known[host] = _unique_ips(await netx.getaddrinfo(trace, host, timeout=left(_DNS_BUDGET)))
            addrs = known[host]
        allowed = [a for a in addrs if policy.address_allowed(a)]
        if not allowed:
            raise NetxError(ADDRESS_NOT_ALLOWED)
        return allowed

    headers = dict(netx.DEFAULT_HEADERS)
    headers.update(dict(target.headers))
    try:
        final = await _follow(trace, target.url, policy, resolve=resolve, tls=tls, headers=list(headers.items()),
                              timeout=left(), first=first)
    except Exception as exc:  # noqa: BLE001
        return _http_failure(_failure(exc))
    body = final.body or b""
    first: dict[str, str] = {}
    for name, value in final.headers:
        first.setdefault(_canonical_header(name), value)
    return WebConnectivityControlHTTP(
        body_length=len(body),
        failure=None,
        title=title_of(body.decode("utf-8", "replace")) or "",
        headers=first,
        status_code=final.status,
    )


async def _follow(trace: Trace, url: str, policy: Policy, *, resolve: Callable[[str], Awaitable[list[str]]],
                  tls: TLSConfig, headers: list[tuple[str, str]], timeout: float,
                  first: netx.Conn | None = None) -> netx.HTTPResponse:
    """netx.fetch one hop at a time, so that every redirect target passes the policy before it is contacted.

    (fetch connects to IP-literal hosts without asking `resolve`, and follows redirects to any port.) The first
    hop goes over `first` when given. Only the final response is kept, and the throwaway trace is emptied after
    each hop: bodies must not pile up.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    jar = netx.CookieJar()
    current = url
    for _ in range(policy.max_redirects + 1):
        _check_hop(current, policy)
        try:
            if first is not None:
                conn, first = first, None
                response = await _request_on(trace, conn, current, headers, jar, policy,
                                             max(_MIN_STEP, deadline - loop.time()))
                if response.status not in netx.REDIRECT_CODES or not response.header("location"):
                    return response
                location = (response.header("location") or "").strip()
            else:
                chain = await netx.fetch(trace, current, resolve=resolve, tls=tls, headers=headers, cookies=jar,
                                         max_redirects=0, max_body=policy.max_body,
                                         timeout=max(_MIN_STEP, deadline - loop.time()))
                return chain[-1]
        except NetxError as exc:
            if exc.failure != Failure.HTTP_TOO_MANY_REDIRECTS.value or not exc.responses:
                raise
            location = (exc.responses[-1].header("location") or "").strip()
        finally:
            trace.requests.clear()
            trace.network_events.clear()
        target = urljoin(current, location)
        try:
            parts = urlsplit(target)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            raise NetxError(Failure.HTTP_INVALID_REDIRECT.value) from None
        if not parts.hostname:
            raise NetxError(Failure.HTTP_INVALID_REDIRECT.value)
        if parts.scheme not in ("http", "https"):
            raise NetxError(f"{Failure.UNKNOWN.value}: redirect to unsupported scheme {parts.scheme!r}")
        current = target
    raise NetxError(Failure.HTTP_TOO_MANY_REDIRECTS.value)


async def _request_on(trace: Trace, conn: netx.Conn, url: str, headers: list[tuple[str, str]],
                      jar: netx.CookieJar, policy: Policy, timeout: float) -> netx.HTTPResponse:
    """One GET over an established connection, with the jar's cookies; the connection is closed after."""
    sent = list(headers)
    if cookie := jar.header_for(url):
        sent.append(("Cookie", cookie))
    try:
        response = await netx.http_request(trace, conn, url, headers=sent, max_body=policy.max_body, timeout=timeout)
    finally:
        await _close(conn)
    jar.store(url, response.headers)
    return response


def _check_hop(url: str, policy: Policy) -> None:
    """A redirect may point anywhere: same port and address rules as the request itself."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if port not in policy.ports:
        raise NetxError(PORT_NOT_ALLOWED)
    host = (parts.hostname or "").strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return  # a name: its addresses are checked by the resolve callback
    if not policy.address_allowed(host):
        raise NetxError(ADDRESS_NOT_ALLOWED)


def _ip_info(target: Target, resolved: list[str], tls_results: dict[str, WebConnectivityControlTLS],
             asn_lookup: AsnLookup | None) -> dict[str, WebConnectivityControlIPInfo]:
    """Every address seen (the probe's, then ours) with its ASN and OONI's flags."""
    from_probe = [ep.ip for ep in target.endpoints]
    verified = {_endpoint_ip(address) for address, result in tls_results.items() if result.status}
    info: dict[str, WebConnectivityControlIPInfo] = {}
    for ip in from_probe + resolved:
        if ip in info:
            continue
        flags = 0
        if ip in from_probe:
            flags |= IP_FLAG_RESOLVED_BY_PROBE
        if ip in resolved:
            flags |= IP_FLAG_RESOLVED_BY_TH
        if is_bogon(ip):
            flags |= IP_FLAG_BOGON
        if ip in verified:
            flags |= IP_FLAG_VALID_FOR_DOMAIN
        info[ip] = WebConnectivityControlIPInfo(asn=_asn(asn_lookup, ip), flags=flags)
    return info


def _endpoint_ip(address: str) -> str:
    """The IP of an ``ip:port`` / ``[v6]:port`` endpoint string."""
    host = address.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def _asn(lookup: AsnLookup | None, ip: str) -> int:
    if lookup is None:
        return 0
    try:
        return int(lookup(ip) or 0)
    except Exception as exc:  # noqa: BLE001 - an ASN database problem must not cost the measurement
        log.warning("ASN lookup failed: %s", exc)
        return 0


def _http_failure(failure: str) -> WebConnectivityControlHTTP:
    """OONI's helper reports -1 for size and status when the fetch failed."""
    return WebConnectivityControlHTTP(body_length=-1, failure=failure, title="", headers={}, status_code=-1)


def _failure(exc: BaseException) -> str:
    return exc.failure if isinstance(exc, NetxError) else netx.failure_of(exc)


async def _close(conn: object) -> None:
    try:
        await conn.close()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - closing a finished probe connection cannot fail the answer
        pass


def _unique_ips(addrs: list[str]) -> list[str]:
    """Canonical spellings, first occurrence kept (getaddrinfo repeats addresses per socket type)."""
    seen: list[str] = []
    for a in addrs:
        try:
            ip = ipaddress.ip_address(a.split("%", 1)[0]).compressed
        except ValueError:
            continue
        if ip not in seen:
            seen.append(ip)
    return seen


def _canonical_header(name: str) -> str:
    """Go's canonical header spelling (``content-type`` -> ``Content-Type``), as OONI's helper reports names."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))

"""Fetch one URL the way a browser-like OONI probe does: follow redirects, carry cookies, try each address.

Every hop is its own flow (resolve -> connect -> TLS -> request) under one transaction id, all in the
caller's trace, so the measurement shows where along the chain interference happened.
"""

from __future__ import annotations

import asyncio
import http.client
import http.cookiejar
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from urllib.parse import urljoin, urlsplit

from netvigil.model.archival import ArchivalHTTPTransaction
from netvigil.model.failure import Failure
from netvigil.probe.netx.dns import getaddrinfo
from netvigil.probe.netx.errors import NetxError, failure_of
from netvigil.probe.netx.http import HTTPResponse, http_request, request_headers, request_record
from netvigil.probe.netx.tcp import Conn, connect
from netvigil.probe.netx.tls import TLSConfig, tls_handshake
from netvigil.probe.netx.trace import Trace, is_ip

__all__ = ["CookieJar", "DEFAULT_HEADERS", "REDIRECT_CODES", "fetch"]

# What OONI Probe sends (df-001's example): a common browser's User-Agent, Accept and Accept-Language.
DEFAULT_HEADERS: tuple[tuple[str, str], ...] = (
    ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/124.0.0.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US;q=0.8,en;q=0.5"),
)
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
MIN_ATTEMPT = 2.0  # seconds every address gets at least, when that much of the budget is left

Resolve = Callable[[str], Awaitable[list[str]]]


class CookieJar:
    """Cookies of one fetch (or of several, if passed again): stdlib ``http.cookiejar`` policy and storage.

    The stdlib jar speaks urllib's request/response objects; a bare ``urllib.request.Request`` (no I/O) and
    an ``http.client.HTTPMessage`` holding the response headers are all it needs.
    """

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()

    def header_for(self, url: str) -> str | None:
        """The Cookie header to send to ``url``, if any cookie applies."""
        request = urllib.request.Request(url)
        self.jar.add_cookie_header(request)
        return request.get_header("Cookie")

    def store(self, url: str, headers: Sequence[tuple[str, str]]) -> None:
        """Take the Set-Cookie headers of a response to ``url``."""
        message = http.client.HTTPMessage()
        for name, value in headers:
            if name.lower() in ("set-cookie", "set-cookie2"):
                message[name] = value
        if message:
            self.jar.extract_cookies(_Response(message), urllib.request.Request(url))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.jar)

    def __iter__(self) -> Iterator[http.cookiejar.Cookie]:
        return iter(self.jar)


class _Response:
    def __init__(self, message: http.client.HTTPMessage) -> None:
        self._message = message

    def info(self) -> http.client.HTTPMessage:
        return self._message


def _bad_location(location: str) -> bool:
    """A Location naming a scheme or authority but no host (e.g. "http:///"), or a malformed port."""
    try:
        parts = urlsplit(location.strip())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return True
    if parts.scheme or location.strip().startswith("//"):
        return not parts.hostname
    return False


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


async def fetch(trace: Trace, url: str, *, resolve: Resolve | None = None, tls: TLSConfig = TLSConfig(),
                headers: Sequence[tuple[str, str]] = DEFAULT_HEADERS, cookies: CookieJar | None = None,
                max_redirects: int = 10, max_body: int = 1 << 19, timeout: float = 15.0) -> list[HTTPResponse]:
    """GET ``url`` and follow its redirects; the chain, last response last.

    Per hop: resolve (default: traced getaddrinfo) -> connect to each address in order until one works ->
    TLS for https -> request. A failure before the request is recorded as that hop's transaction, as OONI
    does. A Location without a host raises NetxError("http_invalid_redirect_location_host"); more than
    ``max_redirects`` redirects NetxError("http_too_many_redirects"); the NetxError carries the chain so far.
    ``timeout`` is the budget of the whole fetch.
    """
    if not _valid_url(url):
        raise ValueError(f"fetch needs an http:// or https:// URL with a host, not {url!r}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    jar = cookies if cookies is not None else CookieJar()
    chain: list[HTTPResponse] = []
    method, body, current, redirects = "GET", b"", url, 0
    while True:
        given = [v for k, v in headers if k.lower() == "cookie"]  # the caller's own cookies go first
        hop_headers = [(k, v) for k, v in headers if k.lower() != "cookie"]
        cookie = "; ".join(filter(None, [*given, jar.header_for(current)]))
        if cookie:
            hop_headers.append(("Cookie", cookie))
        try:
            response = await _hop(trace, current, method=method, headers=hop_headers, body=body, resolve=resolve,
                                  tls=tls, max_body=max_body, deadline=deadline)
        except NetxError as exc:
            raise NetxError(exc.failure, responses=chain) from exc
        chain.append(response)
        jar.store(current, response.headers)
        location = response.header("location")
        if response.status not in REDIRECT_CODES or not location:
            return chain  # a 3xx without Location is a final answer (as browsers and Go treat it)
        # an unusable Location is reported as such even at the redirect limit (callers stepping hop by
        # hop with max_redirects=0 rely on it)
        if _bad_location(location):
            raise NetxError(Failure.HTTP_INVALID_REDIRECT.value, responses=chain)
        target = urljoin(current, location.strip())
        if not _valid_url(target):
            scheme = urlsplit(target).scheme
            if scheme not in ("http", "https"):
                raise NetxError(f"{Failure.UNKNOWN.value}: redirect to unsupported scheme {scheme!r}",
                                responses=chain)
            raise NetxError(Failure.HTTP_INVALID_REDIRECT.value, responses=chain)
        if redirects >= max_redirects:
            raise NetxError(Failure.HTTP_TOO_MANY_REDIRECTS.value, responses=chain)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, body = "GET", b""
        redirects += 1
        current = target


async def _hop(trace: Trace, url: str, *, method: str, headers: list[tuple[str, str]], body: bytes,
               resolve: Resolve | None, tls: TLSConfig, max_body: int, deadline: float) -> HTTPResponse:
    loop = asyncio.get_running_loop()

    def remaining() -> float:
        return deadline - loop.time()

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    tid = trace.next_id()
    t0 = trace.now()
    conn: Conn | None = None
    try:
        try:
            if remaining() <= 0:
                raise TimeoutError("fetch budget spent")
            if is_ip(host):
                addrs = [host]
            elif resolve is None:
                addrs = await getaddrinfo(trace, host, timeout=remaining(), transaction_id=tid)
            else:
                async with asyncio.timeout(max(remaining(), 0.0)):
                    addrs = await resolve(host)
            if not addrs:
                raise NetxError(Failure.DNS_NO_ANSWER.value)
            first: NetxError | None = None
            for n, ip in enumerate(addrs):
                left = remaining()
                share = max(left / (len(addrs) - n), min(MIN_ATTEMPT, left))  # later addresses get a turn
                try:
                    conn = await connect(trace, ip, port, timeout=share, transaction_id=tid)
                    break
                except NetxError as exc:
                    first = first or exc
            if conn is None:
                raise first if first is not None else NetxError(Failure.DNS_NO_ANSWER.value)
            if parts.scheme == "https":
                await tls_handshake(trace, conn, host, tls=tls, timeout=remaining())
        except Exception as exc:  # before the request: the hop's transaction says why it never happened
            failure = failure_of(exc)
            trace.requests.append(ArchivalHTTPTransaction(
                failure=failure, request=request_record(url, method, request_headers(url, method, headers, body), body), network="tcp",
                address=conn.address if conn is not None else None, t0=t0, t=trace.now(), transaction_id=tid,
            ))
            raise NetxError(failure) from exc
        return await http_request(trace, conn, url, method=method, headers=headers, body=body,
                                  max_body=max_body, timeout=remaining(), transaction_id=tid)
    finally:
        if conn is not None:
            await conn.close()

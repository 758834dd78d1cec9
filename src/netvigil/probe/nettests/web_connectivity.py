"""Web Connectivity (ooni/spec ts-017): is this URL reachable here, and if not, at which layer does it fail?

The probe resolves the name with the system resolver (and, as extensions, over UDP to a public resolver and
optionally DoH), asks the control helper for an uncensored view of the same URL in parallel, connects to every
resolved address (TLS for https; for http also a TLS probe on 443 that shows whether the addresses serve the name),
then fetches the page over one established connection and follows redirects hop by hop, each hop with its own
connectivity step. Everything is recorded in OONI's formats with OONI's tags (`classic`, `depth=N`,
`fetch_body=true|false`), and each endpoint's connect, handshake, reads and request share one transaction id.

OONI's own verdict keys (`dns_consistency`, `*_match`, `blocking`, `accessible`) are computed here as ts-017 says
(:func:`ooni_keys`), so other tools read our measurements as they read OONI's. netvigil's own verdict does not come
from them: the analysis stage judges the recorded operations.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from netvigil.model.archival import (
    ArchivalHTTPTransaction,
    WebConnectivityControl,
    WebConnectivityTestKeys,
)
from netvigil.analysis.observations.common import binary_bytes, headers_as_pairs, title_of
from netvigil.control.client import ControlClient, query_control
from netvigil.model.control import ControlRequest
from netvigil.probe.netx import (
    DEFAULT_HEADERS,
    REDIRECT_CODES,
    Conn,
    CookieJar,
    NetxError,
    TLSConfig,
    Trace,
    connect,
    endpoint,
    is_ip,
    getaddrinfo,
    http_request,
    lookup_doh,
    lookup_udp,
    tls_handshake,
)

__all__ = ["TEST_NAME", "TEST_VERSION", "WebConnectivityOptions", "measure", "ooni_keys", "test_helpers"]

TEST_NAME = "web_connectivity"
TEST_VERSION = "0.5.0"
# Header names every server sends: a match on them says nothing about the page (ts-017 headers_match).
_COMMON_HEADERS = frozenset({
    "date", "content-type", "server", "cache-control", "vary", "set-cookie", "location", "expires", "x-powered-by",
    "content-encoding", "last-modified", "accept-ranges", "pragma", "x-frame-options", "etag", "x-content-type-options",
    "age", "via", "p3p", "x-xss-protection", "content-language", "cf-ray", "strict-transport-security", "link",
    "x-varnish", "content-length", "connection", "transfer-encoding", "keep-alive",
})


@dataclass(frozen=True, slots=True)
class WebConnectivityOptions:
    """Where the helpers are and how long each step may take; `budget` bounds the whole URL."""

    control_url: str | None = None
    control_tls: TLSConfig = field(default_factory=TLSConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    udp_resolver: str | None = "8.8.8.8:53"
    doh_url: str | None = None
    budget: float = 40.0
    dns_timeout: float = 5.0
    connect_timeout: float = 10.0
    tls_timeout: float = 10.0
    http_timeout: float = 15.0
    control_timeout: float = 20.0
    max_body: int = 1 << 19
    max_redirects: int = 10


def test_helpers(opts: WebConnectivityOptions) -> dict | None:
    """The envelope's `test_helpers`, as OONI Probe writes it."""
    if not opts.control_url:
        return None
    kind = "https" if opts.control_url.startswith("https:") else "http"
    return {"backend": {"address": opts.control_url, "type": kind}}


class _Deadline:
    """The URL's time budget, handed out to each step as its timeout."""

    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self, cap: float) -> float:
        return max(0.05, min(cap, self.end - time.monotonic()))


@dataclass(slots=True)
class _Endpoint:
    """One ip:port at one redirect depth: its own trace, merged under one transaction id."""

    ip: str
    port: int
    trace: Trace
    conn: Conn | None = None
    failure: str | None = None


class _Measurer:
    def __init__(self, url: str, opts: WebConnectivityOptions) -> None:
        self.url = url
        self.opts = opts
        self.trace = Trace()
        self.deadline = _Deadline(opts.budget)
        self.parts: list[tuple[Trace, list[str]]] = []   # child traces, merged at the end in this order
        self.background: list[asyncio.Future] = []        # extension lookups, awaited before the merge
        self.cookies = CookieJar()

    def child(self, tags: list[str]) -> Trace:
        t = Trace(zero=self.trace.zero)
        self.parts.append((t, tags))
        return t

    # -- DNS -------------------------------------------------------------------------------------------------
    async def resolve(self, host: str, depth: int) -> tuple[list[str], str | None]:
        """System lookup (classic at depth 0) with the UDP and DoH extensions beside it at depth 0."""
        if is_ip(host.strip("[]")):
            return [host.strip("[]")], None
        dns_timeout = self.deadline.left(self.opts.dns_timeout)
        tags = ["classic", f"depth={depth}"] if depth == 0 else [f"depth={depth}"]
        system = asyncio.ensure_future(getaddrinfo(self.child(tags), host, timeout=dns_timeout))
        extras = []
        if depth == 0 and self.opts.udp_resolver:
            extras.append(lookup_udp(self.child([f"depth={depth}"]), host, self.opts.udp_resolver, timeout=dns_timeout))
        if depth == 0 and self.opts.doh_url:
            extras.append(lookup_doh(self.child([f"depth={depth}"]), host, self.opts.doh_url, tls=self.opts.tls,
                                     timeout=dns_timeout))
        if extras:  # recorded, never waited for: their failures are facts, not errors
            self.background.append(asyncio.gather(*extras, return_exceptions=True))
        try:
            return _dedupe(await system), None
        except NetxError as exc:
            return [], exc.failure

    # -- connectivity -----------------------------------------------------------------------------------------
    async def open(self, ep: _Endpoint, server_name: str | None) -> None:
        """TCP connect, then TLS when a server name is given; failures are recorded, not raised."""
        try:
            ep.conn = await connect(ep.trace, ep.ip, ep.port, timeout=self.deadline.left(self.opts.connect_timeout))
            if server_name is not None:
                ep.conn = await tls_handshake(ep.trace, ep.conn, server_name, tls=self.opts.tls,
                                              timeout=self.deadline.left(self.opts.tls_timeout))
        except NetxError as exc:
            ep.failure = exc.failure
            await _close(ep.conn)
            ep.conn = None

    async def connectivity(self, host: str, addrs: list[str], port: int, https: bool, depth: int,
                           explicit_port: bool) -> list[_Endpoint]:
        tags = [*(["classic"] if depth == 0 else []), f"depth={depth}", "fetch_body=true", "tcptls_experiment"]
        fetch = [_Endpoint(ip, port, self.child(tags)) for ip in addrs]
        validate: list[_Endpoint] = []
        if not https and not explicit_port and not is_ip(host.strip("[]")):  # ts-017 extension E001
            validate = [_Endpoint(ip, 443, self.child([f"depth={depth}", "fetch_body=false"])) for ip in addrs]
        name = host if https else None
        await asyncio.gather(*(self.open(ep, name) for ep in fetch),
                             *(self.open(ep, host) for ep in validate))
        for ep in validate:
            await _close(ep.conn)
        return fetch

    # -- web ------------------------------------------------------------------------------------------------------
    async def web(self, first_addrs: list[str], first_failure: str | None) -> str | None:
        """Fetch the URL over an established connection, hop by hop. Returns the HTTP experiment failure."""
        url, addrs, dns_failure = self.url, first_addrs, first_failure
        for depth in range(self.opts.max_redirects + 1):
            parts = urlsplit(url)
            https = parts.scheme == "https"
            host = parts.hostname or ""
            try:
                port = parts.port or (443 if https else 80)
            except ValueError:
                return "unknown_failure: invalid port in URL"
            if depth > 0:
                addrs, dns_failure = await self.resolve(host, depth)
            if not addrs:
                return dns_failure or "dns_no_answer"
            endpoints = await self.connectivity(host, addrs, port, https, depth, parts.port is not None)
            usable = next((ep for ep in endpoints if ep.conn is not None), None)
            for ep in endpoints:
                if ep is not usable:
                    await _close(ep.conn)
            if usable is None:
                return next((ep.failure for ep in endpoints if ep.failure), "unknown_failure")
            headers = list(DEFAULT_HEADERS)
            cookie = self.cookies.header_for(url)
            if cookie:
                headers.append(("Cookie", cookie))
            try:
                resp = await http_request(usable.trace, usable.conn, url, headers=headers,
                                          max_body=self.opts.max_body,
                                          timeout=self.deadline.left(self.opts.http_timeout))
            except NetxError as exc:
                return exc.failure
            finally:
                await _close(usable.conn)
            self.cookies.store(url, resp.headers)
            location = resp.header("location")
            if resp.status not in REDIRECT_CODES or location is None:
                return None
            url = urljoin(url, location.strip())
            if not urlsplit(url).hostname or urlsplit(url).scheme not in ("http", "https"):
                return "http_invalid_redirect_location_host"
        return "http_too_many_redirects"

    # -- control ---------------------------------------------------------------------------------------------------
    async def control(self, client: ControlClient | None, addrs: list[str], port: int
                      ) -> tuple[WebConnectivityControl | None, str | None]:
        if client is None and not self.opts.control_url:
            return None, "unknown_failure: no control helper configured"
        endpoints = [endpoint(ip, port) for ip in addrs]
        req = ControlRequest(http_request=self.url, http_request_headers={k: [v] for k, v in DEFAULT_HEADERS},
                             tcp_connect=endpoints)
        timeout = self.deadline.left(self.opts.control_timeout)
        try:
            if client is not None:
                return await client.query(req, timeout=timeout), None
            assert self.opts.control_url is not None
            return await query_control(self.opts.control_url, req, tls=self.opts.control_tls, timeout=timeout), None
        except NetxError as exc:
            return None, exc.failure

    async def merged(self) -> dict[str, list]:
        """Child traces folded into the measurement's: one transaction id each, their tags on every event."""
        for pending in self.background:
            await pending
        for child, tags in self.parts:
            tid = self.trace.next_id()
            for events in child.test_keys().values():
                for ev in events:
                    ev.transaction_id = tid
                    ev.tags = list(tags)
            self.trace.queries += child.queries
            self.trace.tcp_connect += child.tcp_connect
            self.trace.tls_handshakes += child.tls_handshakes
            self.trace.requests += child.requests
            self.trace.network_events += child.network_events
        for name in ("queries", "tcp_connect", "tls_handshakes", "requests", "network_events"):
            getattr(self.trace, name).sort(key=lambda ev: ev.t0 or 0.0)
        return self.trace.test_keys()


async def measure(url: str, opts: WebConnectivityOptions, *, control: ControlClient | None = None,
                  client_resolver: str | None = None) -> WebConnectivityTestKeys:
    """Measure one URL; every failure ends up in the test keys, nothing is raised for the network's doing.

    `control`: a client kept for a whole run (its connections are reused); without one, `opts.control_url` is
    asked on a connection of its own."""
    m = _Measurer(url, opts)
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    addrs, dns_failure = await m.resolve(host, 0)
    control_task = asyncio.ensure_future(m.control(control, addrs, port))
    http_failure = await m.web(addrs, dns_failure)
    answer, control_failure = await control_task
    tk = WebConnectivityTestKeys(**await m.merged())
    tk.client_resolver = client_resolver
    tk.retries = 0
    tk.socksproxy = None
    tk.control = answer
    tk.control_failure = control_failure
    tk.dns_experiment_failure = dns_failure
    tk.http_experiment_failure = http_failure
    for key, value in ooni_keys(url, tk).items():
        setattr(tk, key, value)
    return tk


# -- ts-017 local processing ----------------------------------------------------------------------------------------

def ooni_keys(url: str, tk: WebConnectivityTestKeys) -> dict[str, object]:
    """OONI's classic verdict keys, computed from the classic subset of the measurement as ts-017 describes."""
    host = urlsplit(url).hostname or ""
    control = tk.control
    out: dict[str, object] = dict.fromkeys(
        ("dns_consistency", "body_length_match", "body_proportion", "headers_match", "status_code_match",
         "title_match", "accessible", "blocking"))
    _mark_blocked_connects(tk)
    if control is None or tk.control_failure:
        return out
    probe_addrs = _classic_addrs(tk)
    out["dns_consistency"] = _dns_consistency(host, tk, probe_addrs)
    final = _final_response(tk)
    c_http = control.http_request
    if final is not None and final.response is not None and c_http is not None and not c_http.failure:
        body = final.response.body
        probe_len = len(binary_bytes(body) or b"")
        ctl_len = c_http.body_length or 0
        if probe_len > 0 and ctl_len > 0:
            prop = min(probe_len, ctl_len) / max(probe_len, ctl_len)
            if final.response.body_is_truncated and ctl_len >= probe_len:
                prop = 1.0  # the probe stopped reading at its cap; everything it read fits the control's page
            out["body_proportion"] = round(prop, 6)
            out["body_length_match"] = prop > 0.7
        out["status_code_match"] = final.response.code == c_http.status_code
        out["headers_match"] = _headers_match(final, c_http.headers or {})
        out["title_match"] = _title_match(final, c_http.title)
    tcp_ok = any(c.status and c.status.success for c in _classic(tk.tcp_connect))
    ctl_tcp_ok = any(r.status for r in (control.tcp_connect or {}).values())
    ctl_http_ok = c_http is not None and not c_http.failure
    ctl_dns_failed = bool(control.dns and control.dns.failure)
    if tk.dns_experiment_failure and ctl_dns_failed:
        out.update(accessible=False, blocking=False)       # the name does not resolve anywhere: not blocking
    elif tk.dns_experiment_failure or (
        out["dns_consistency"] == "inconsistent" and (final is None or final.failure or _unexpected_page(out))
    ):
        out.update(accessible=False, blocking="dns")
    elif probe_addrs and not tcp_ok and ctl_tcp_ok:
        out.update(accessible=False, blocking="tcp_ip")
    elif tk.http_experiment_failure:
        if ctl_http_ok:
            out.update(accessible=False, blocking="http-failure")
        else:
            out.update(accessible=False, blocking=False)   # fails for the control too: down, not blocked
    elif final is not None and final.request is not None and (final.request.url or "").startswith("https:"):
        out.update(accessible=True, blocking=False)        # ts-017: a validated HTTPS page is not blocked
    elif final is not None and ctl_http_ok and _unexpected_page(out):
        out.update(accessible=False, blocking="http-diff")
    elif final is not None:
        out.update(accessible=True, blocking=False)
    return out


def _classic(events: list | None) -> list:
    return [e for e in events or () if e is not None and (e.tags is None or "classic" in e.tags)]


def _classic_addrs(tk: WebConnectivityTestKeys) -> list[str]:
    out: list[str] = []
    for q in _classic(tk.queries):
        if q.engine == "getaddrinfo":
            out += [a.ipv4 or a.ipv6 for a in q.answers or () if a is not None and (a.ipv4 or a.ipv6)]
    return _dedupe(out)


def _dns_consistency(host: str, tk: WebConnectivityTestKeys, probe_addrs: list[str]) -> str | None:
    control = tk.control
    assert control is not None
    if is_ip(host.strip("[]")):
        return "consistent"
    ctl_dns = control.dns
    ctl_failure = ctl_dns.failure if ctl_dns else None
    ctl_addrs = set(ctl_dns.addrs or ()) if ctl_dns else set()
    if tk.dns_experiment_failure:
        if ctl_failure and _same_dns_failure(tk.dns_experiment_failure, ctl_failure):
            return "consistent"
        return "inconsistent"
    if ctl_failure or not ctl_addrs:
        return "inconsistent" if probe_addrs else None
    if ctl_addrs & set(probe_addrs):
        return "consistent"
    info = control.ip_info or {}
    probe_asns = {info[a].asn for a in probe_addrs if a in info and info[a].asn}
    ctl_asns = {info[a].asn for a in ctl_addrs if a in info and info[a].asn}
    if probe_asns and probe_asns & ctl_asns:
        return "consistent"
    validated = {h.address.rsplit(":", 1)[0].strip("[]") for h in tk.tls_handshakes or ()
                 if h is not None and h.address and not h.failure and h.server_name == host and not h.no_tls_verify}
    if set(probe_addrs) & validated:
        return "consistent"
    return "inconsistent"


def _same_dns_failure(probe: str, control: str) -> bool:
    name_errors = {"dns_nxdomain_error", "dns_no_answer"}
    return probe == control or (probe in name_errors and control in name_errors)


def _final_response(tk: WebConnectivityTestKeys) -> ArchivalHTTPTransaction | None:
    """The newest request of the fetch (requests are newest first), if any was made."""
    fetched = [r for r in tk.requests or () if r is not None and "fetch_body=true" in (r.tags or ["fetch_body=true"])]
    return fetched[0] if fetched else None


def _unexpected_page(keys: dict[str, object]) -> bool:
    """ts-017: the page is not the control's when the status codes differ, or when the size differs and neither
    the distinctive headers nor the title say it is the same page."""
    if keys["status_code_match"] is False:
        return True
    return keys["body_length_match"] is False and keys["headers_match"] is not True and keys["title_match"] is not True


def _headers_match(final: ArchivalHTTPTransaction, control_headers: dict) -> bool | None:
    if final.response is None:
        return None
    pairs = headers_as_pairs(final.response.headers, final.response.headers_list)
    probe = {k.lower() for k, _ in pairs} - _COMMON_HEADERS
    ctl = {str(k).lower() for k in control_headers} - _COMMON_HEADERS
    if not ctl:
        return None  # the control's page has no distinctive header: nothing to compare
    return bool(probe & ctl)


def _title_match(final: ArchivalHTTPTransaction, control_title: str | None) -> bool | None:
    """ts-017 compares the first word of the titles, when the control's is at least five characters long."""
    body = final.response.body if final.response is not None else None
    if not isinstance(body, str) or not control_title:
        return None
    probe_title = title_of(body) or ""
    words = control_title.split()
    if not words or len(words[0]) < 5:
        return None
    return bool(probe_title.split()) and probe_title.split()[0].casefold() == words[0].casefold()


def _mark_blocked_connects(tk: WebConnectivityTestKeys) -> None:
    """ts-017's per-endpoint `blocked` flag: the probe failed to connect where the control succeeded."""
    ctl = (tk.control.tcp_connect or {}) if tk.control is not None else {}
    for c in tk.tcp_connect or ():
        if c is None or c.status is None:
            continue
        peer = ctl.get(endpoint(c.ip, c.port)) if c.ip and c.port else None
        c.status.blocked = bool(not c.status.success and peer is not None and peer.status)


def _dedupe(addrs: list[str]) -> list[str]:
    return list(dict.fromkeys(addrs))


async def _close(conn: Conn | None) -> None:
    if conn is not None:
        await conn.close()  # bounded, and never raises for the network's doing

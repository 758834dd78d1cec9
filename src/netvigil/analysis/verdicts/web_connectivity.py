"""Web Connectivity verdicts, judged from observations and the control.

The measurement is walked the way a page load happens — DNS, TCP, TLS, HTTP,
hop by hop through redirects — and the first layer where the probe failed while
the control (or a trusted resolver) succeeded names the blocking method. A layer
that fails for the control too means the site is down, not blocked; a missing
control means inconclusive, unless a blockpage fingerprint proves blocking on
its own. OONI's own ``blocking``/``accessible`` keys are kept beside the verdict
for comparison and never read for the decision.

Cases where OONI's pipeline is known to go wrong, and what we do instead:
- bot/DDoS challenge pages (Cloudflare "Just a moment..."): recognised by their
  markers or an ``fp``-scope fingerprint -> ok, not http-diff;
- broken redirects (a Location the client cannot follow) sent by the genuine
  server -> ok (the site's doing), not http-failure;
- bogon answers that the control gets too (a misconfigured site) -> consistent;
- the site failing for probe and control alike -> down;
- the control itself failing -> inconclusive, never blocked;
- a slow-but-flowing download that times out after the response headers ->
  throttled, not http-failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urljoin

from netvigil.analysis.fingerprints import Fingerprint, FingerprintDB
from netvigil.analysis.observations.common import body_text, domain_of, headers_as_pairs, is_bogon
from netvigil.analysis.rules import Rule, rule
from netvigil.analysis.verdicts.common import failure_class, make_verdict
from netvigil.model.archival import WebConnectivityTestKeys
from netvigil.model.failure import FailureClass
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = ["make_verdicts", "BOT_CHALLENGE_TITLES"]

OK, BLOCKED, DOWN, INCONCLUSIVE, THROTTLED = (
    Outcome.OK, Outcome.BLOCKED, Outcome.DOWN, Outcome.INCONCLUSIVE, Outcome.THROTTLED,
)

R_NO_TEST_KEYS = rule("wc.no_test_keys", INCONCLUSIVE, None, 0.0, "weak",
                      "The measurement carries no test keys: nothing to judge.")
R_NO_CONTROL = rule("wc.control.missing", INCONCLUSIVE, None, 0.3, "weak",
                    "The control failed or is absent and nothing else proves blocking.")
R_NO_CONTROL_UNREACHED = rule("wc.control.missing.unreached", INCONCLUSIVE, None, 0.3, "weak",
                              "No control, and the probe reached nothing: no DNS answer or no TCP connect "
                              "succeeded (the network itself may be down; the probe-side outage signal counts it).")
R_NO_CONTROL_HTTPS_OK = rule("wc.control.missing.https_ok", OK, None, 0.6, "moderate",
                             "No control, but the page loaded over validated TLS.")
R_DNS_FINGERPRINT = rule("wc.dns.fingerprint", BLOCKED, Method.DNS, 1.0, "confirmed",
                         "A DNS answer is a known blocking address (fingerprint).")
R_DNS_BOGON = rule("wc.dns.bogon", BLOCKED, Method.DNS, 0.9, "strong",
                   "The system resolver answered a bogon the control did not get.")
R_DNS_FAILURE = rule("wc.dns.failure", BLOCKED, Method.DNS, 0.85, "strong",
                     "The system resolver failed for a name the control resolved.")
R_DNS_HOP_FAILURE = rule("wc.dns.redirect_hop_failure", BLOCKED, Method.DNS, 0.8, "strong",
                         "The system resolver failed for a redirect target the control reached.")
R_DNS_GHOST = rule("wc.dns.ghost_answer", BLOCKED, Method.DNS, 0.75, "moderate",
                   "The control says the name does not exist, yet the system resolver answered.")
R_DNS_INCONSISTENT = rule("wc.dns.inconsistent", BLOCKED, Method.DNS, 0.7, "moderate",
                          "Answers share no address or ASN with the control, none is proven valid by TLS, "
                          "and the page fetched from them does not match the control.")
R_DNS_UNEXPECTED_VALID = rule("wc.dns.unexpected_but_valid", OK, None, 0.5, "weak",
                              "Answers differ from the control's but TLS proved they serve the name "
                              "(a CDN, or a transparent proxy): noted, not judged as DNS blocking.")
R_DNS_BOTH_FAIL = rule("wc.dns.down", DOWN, None, 0.8, "strong",
                       "The name does not resolve for the control either.")
R_TCP_BLOCKED = rule("wc.tcp.blocked", BLOCKED, Method.TCP_IP, 0.8, "strong",
                     "Every TCP connect failed where the control connected.")
R_TCP_BOTH_FAIL = rule("wc.tcp.down", DOWN, None, 0.8, "strong",
                       "TCP connects fail for the control too.")
R_TLS_BLOCKED = rule("wc.tls.blocked", BLOCKED, Method.TLS, 0.8, "strong",
                     "The TLS handshake failed (reset, timeout, EOF) where the control completed it.")
R_TLS_MITM = rule("wc.tls.invalid_cert", BLOCKED, Method.TLS, 0.7, "moderate",
                  "The certificate did not validate for the probe but did for the control (interception).")
R_TLS_BOTH_FAIL = rule("wc.tls.down", DOWN, None, 0.8, "strong",
                       "The TLS handshake fails for the control too (bad certificate, broken server).")
R_HTTP_FAILURE = rule("wc.http.failure", BLOCKED, Method.HTTP_FAILURE, 0.75, "strong",
                      "The HTTP request failed after connecting where the control fetched the page.")
R_HTTPS_FAILURE = rule("wc.https.failure", BLOCKED, Method.TLS, 0.75, "strong",
                       "An HTTPS fetch failed before any response where the control fetched the page: "
                       "only the SNI/IP is visible to a censor, so the method is TLS.")
R_HTTP_THROTTLED = rule("wc.http.throttled", THROTTLED, Method.BANDWIDTH, 0.6, "moderate",
                        "Response headers arrived but the body timed out where the control fetched it.")
R_HTTP_BOTH_FAIL = rule("wc.http.down", DOWN, None, 0.7, "moderate",
                        "The fetch fails for the control too.")
R_HTTP_BROKEN_REDIRECT = rule("wc.http.broken_redirect", OK, None, 0.6, "moderate",
                              "The genuine server sent a redirect the client cannot follow: the site's doing.")
R_HTTP_BLOCKPAGE = rule("wc.http.blockpage", BLOCKED, Method.HTTP_DIFF, 1.0, "confirmed",
                        "A response in the redirect chain matches a blockpage fingerprint.")
R_HTTP_VAGUE_BLOCKPAGE = rule("wc.http.blockpage_vague", BLOCKED, Method.HTTP_DIFF, 0.6, "moderate",
                              "A response matches a vague blocking-word fingerprint and differs from the control.")
R_HTTP_BOT_CHALLENGE = rule("wc.http.bot_challenge", OK, None, 0.7, "moderate",
                            "A CDN bot/DDoS challenge page (or a known false-positive page), not a blockpage.")
R_HTTP_DIFF = rule("wc.http.diff", BLOCKED, Method.HTTP_DIFF, 0.6, "moderate",
                   "Plain-HTTP page differs from the control's (status, or size and title).")
R_HTTPS_OK = rule("wc.https.ok", OK, None, 0.9, "strong",
                  "The final page came over validated TLS.")
R_HTTPS_SERVER_REFUSED = rule("wc.https.server_refused", INCONCLUSIVE, None, 0.4, "weak",
                              "The genuine server (validated TLS) refused the probe with an error the control "
                              "did not get: server-side geoblocking or bot defence, not network interference.")
R_HTTP_MATCH = rule("wc.http.match", OK, None, 0.85, "strong",
                    "The page matches the control's.")
R_NOTHING_FETCHED = rule("wc.http.nothing", INCONCLUSIVE, None, 0.2, "weak",
                         "No request was made and no layer explains why.")

# Titles and headers by which CDNs and WAFs announce a bot challenge.
BOT_CHALLENGE_TITLES = (
    "just a moment...", "attention required! | cloudflare", "please wait... | cloudflare",
    "ddos-guard", "checking your browser", "one more step", "access denied | ",
)
BOT_CHALLENGE_HEADERS = ("cf-ray", "cf-mitigated", "x-sucuri-id", "x-datadome")

_DNS_SYSTEM_ENGINES = frozenset({"system", "getaddrinfo", "go", "android_dns_cache"})
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(slots=True)
class _Judgement:
    rule: Rule
    decisive: list[str] = field(default_factory=list)
    detail: str = ""
    fingerprint: Fingerprint | None = None
    confidence: float | None = None


@dataclass(slots=True)
class _Context:
    m: Measurement
    tk: WebConnectivityTestKeys
    fps: FingerprintDB
    domain: str | None
    probe: dict[str, list[Observation]]
    control: dict[str, list[Observation]]
    control_ok: bool
    trusted_ips: dict[str, set[str]]
    valid_ips: set[str]
    control_asns: set[int]
    fired: list[str] = field(default_factory=list)

    @property
    def control_http(self) -> Observation | None:
        rows = self.control.get("http")
        return rows[0] if rows else None

    @property
    def control_http_ok(self) -> bool:
        row = self.control_http
        return self.control_ok and row is not None and row.failure is None and row.http_status is not None

    @property
    def control_http_failed(self) -> bool:
        row = self.control_http
        return self.control_ok and row is not None and row.failure is not None


def make_verdicts(m: Measurement, observations: list[Observation], fingerprints: FingerprintDB) -> list[Verdict]:
    tk = m.test_keys
    target = m.input or ""
    ooni_blocking = _ooni_blocking(tk)
    ooni_accessible = tk.accessible if isinstance(tk, WebConnectivityTestKeys) else None
    if not isinstance(tk, WebConnectivityTestKeys):
        return [make_verdict(m, target, R_NO_TEST_KEYS, ooni_blocking=ooni_blocking, ooni_accessible=ooni_accessible)]
    ctx = _context(m, tk, observations, fingerprints)
    j = _judge(ctx)
    fp = j.fingerprint
    return [make_verdict(
        m, target, j.rule, fired=ctx.fired, decisive=j.decisive, detail=j.detail,
        confirmed=bool(fp and fp.confirms_blocking and j.rule.outcome is BLOCKED),
        fingerprint=fp.name if fp else None, fingerprint_scope=fp.scope if fp else None,
        confidence=j.confidence, domain=ctx.domain,
        ooni_blocking=ooni_blocking, ooni_accessible=ooni_accessible,
    )]


def _ooni_blocking(tk: object) -> str | None:
    value = getattr(tk, "blocking", None)
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _context(m: Measurement, tk: WebConnectivityTestKeys, rows: list[Observation], fps: FingerprintDB) -> _Context:
    probe: dict[str, list[Observation]] = {"dns": [], "tcp": [], "tls": [], "http": []}
    control: dict[str, list[Observation]] = {"dns": [], "tcp": [], "tls": [], "http": []}
    for row in rows:
        (probe if row.origin == "probe" else control).setdefault(row.kind, []).append(row)
    domain = domain_of(m.input)
    c = tk.control
    control_ok = bool(
        tk.control_failure is None and c is not None
        and (c.dns is not None or c.http_request is not None or c.tcp_connect)
    )
    trusted: dict[str, set[str]] = {}
    if control_ok and domain:
        for row in control["dns"]:
            trusted.setdefault(domain, set()).update(row.dns_answer_ips or ())
    # DoH answers travel encrypted to a public resolver: trusted for consistency.
    for row in probe["dns"]:
        if row.dns_engine == "doh" and row.dns_answer_ips and row.hostname:
            trusted.setdefault(row.hostname.lower(), set()).update(row.dns_answer_ips)
    valid: set[str] = set()
    control_asns: set[int] = set()
    if control_ok and c is not None and c.ip_info:
        for ip, info in c.ip_info.items():
            if info.flags is not None and info.flags & 8:
                valid.add(ip)
            if info.flags is not None and info.flags & 2 and info.asn:
                control_asns.add(info.asn)
    # A handshake that validated the certificate for the name proves the address serves it.
    for row in probe["tls"] + control["tls"]:
        if row.failure is None and row.ip and not row.tls_no_verify:
            valid.add(row.ip)
    return _Context(m, tk, fps, domain, probe, control, control_ok, trusted, valid, control_asns)


def _judge(ctx: _Context) -> _Judgement:
    dns = _judge_dns(ctx)
    if dns is not None and dns.rule.outcome in (BLOCKED, DOWN):
        return dns
    chain = _judge_chain(ctx)
    if chain is not None:
        return chain
    return dns or _Judgement(R_NOTHING_FETCHED)


# --- DNS ---------------------------------------------------------------------

def _system_lookups(ctx: _Context) -> list[Observation]:
    rows = [r for r in ctx.probe["dns"] if (r.dns_engine or "system") in _DNS_SYSTEM_ENGINES]
    if rows:
        return rows
    return [r for r in ctx.probe["dns"] if r.dns_engine not in ("doh", "udp", "dot")]


def _judge_dns(ctx: _Context) -> _Judgement | None:
    lookups = _system_lookups(ctx)
    if not lookups:
        return None
    by_host: dict[str, list[Observation]] = {}
    for row in lookups:
        by_host.setdefault((row.hostname or ctx.domain or "").lower(), []).append(row)
    for host, rows in by_host.items():
        j = _judge_dns_host(ctx, host, rows)
        if j is not None:
            return j
    return None


def _judge_dns_host(ctx: _Context, host: str, rows: list[Observation]) -> _Judgement | None:
    ips = [ip for r in rows for ip in (r.dns_answer_ips or ())]
    ids = [r.observation_id for r in rows]
    is_initial = host == ctx.domain
    control_dns = ctx.control["dns"][0] if ctx.control_ok and ctx.control["dns"] else None
    trusted = ctx.trusted_ips.get(host, set())
    # The control helper resolves only the URL's own name; DoH covers redirect hops.
    control_resolved = bool(trusted) if not is_initial else bool(
        control_dns and control_dns.failure is None and control_dns.dns_answer_ips) or bool(trusted)

    if ips:
        if trusted & set(ips):
            return None  # the control got the same answer (even a bogon): not tampering
        fp = ctx.fps.match_dns(ips)
        if fp is not None:
            ctx.fired.append(R_DNS_FINGERPRINT.rule_id)
            return _Judgement(R_DNS_FINGERPRINT, ids, f"{host} answered {', '.join(ips)}: fingerprint {fp.name}", fp)
        if any(ip in ctx.valid_ips for ip in ips):
            if trusted:
                ctx.fired.append(R_DNS_UNEXPECTED_VALID.rule_id)
            return None
        answer_asns = {a for r in rows for a in (r.dns_answer_asns or ())}
        if answer_asns & ctx.control_asns:
            return None
        bogons = [ip for ip in ips if is_bogon(ip)]
        if bogons and not (set(bogons) <= trusted):
            ctx.fired.append(R_DNS_BOGON.rule_id)
            return _Judgement(R_DNS_BOGON, ids, f"{host} resolved to bogon {', '.join(bogons)}")
        if _control_nxdomain(control_dns, is_initial) or (not is_initial and _doh_nxdomain(ctx, host, trusted)):
            ctx.fired.append(R_DNS_GHOST.rule_id)
            return _Judgement(R_DNS_GHOST, ids, f"{host} does not exist for the control, yet resolved to {', '.join(ips)}")
        if trusted and not _page_matches_from(ctx, set(ips)):
            ctx.fired.append(R_DNS_INCONSISTENT.rule_id)
            return _Judgement(R_DNS_INCONSISTENT, ids, f"{host} resolved to {', '.join(ips)}; control: {', '.join(sorted(trusted))}")
        return None

    failures = [r.failure for r in rows if r.failure]
    if not failures:
        return None
    failure = failures[0]
    if control_resolved:
        rule_ = R_DNS_FAILURE if is_initial else R_DNS_HOP_FAILURE
        ctx.fired.append(rule_.rule_id)
        return _Judgement(rule_, ids, f"{host}: {failure}; control resolved it")
    if not is_initial and ctx.control_http_ok:
        ctx.fired.append(R_DNS_HOP_FAILURE.rule_id)
        return _Judgement(R_DNS_HOP_FAILURE, ids, f"redirect target {host}: {failure}; control fetched the page")
    if is_initial and control_dns is not None:
        ctx.fired.append(R_DNS_BOTH_FAIL.rule_id)
        return _Judgement(R_DNS_BOTH_FAIL, ids + [control_dns.observation_id],
                          f"{host}: {failure} for probe; control: {control_dns.failure or 'no addresses'}")
    return None


def _control_nxdomain(control_dns: Observation | None, is_initial: bool) -> bool:
    """The control says the URL's own name does not exist (or has no addresses)."""
    return is_initial and control_dns is not None and (
        failure_class(control_dns.failure) is FailureClass.DNS_NAME
        or (control_dns.failure is None and not control_dns.dns_answer_ips)
    )


def _doh_nxdomain(ctx: _Context, host: str, trusted: set[str]) -> bool:
    """DoH says ``host`` does not exist (and no trusted source resolved it)."""
    return any(
        r.dns_engine == "doh" and r.hostname == host and failure_class(r.failure) is FailureClass.DNS_NAME
        for r in ctx.probe["dns"]
    ) and not trusted


def _page_matches_from(ctx: _Context, ips: set[str]) -> bool:
    """Did a fetch from these addresses return the control's page? (CDN vs hijack)."""
    for row in ctx.probe["http"]:
        if row.ip is not None and row.ip not in ips:
            continue
        if row.failure is None and row.http_status and _matches_control(ctx, row):
            return True
    return False


# --- the redirect chain: TCP, TLS, HTTP per hop --------------------------------

def _judge_chain(ctx: _Context) -> _Judgement | None:
    http_rows = ctx.probe["http"]
    if not ctx.control_ok:
        return _judge_without_control(ctx, http_rows)
    if not http_rows:
        return _judge_no_request(ctx)
    final = http_rows[-1]
    blockpage = _blockpage(ctx, http_rows)
    if blockpage is not None:
        return blockpage
    if final.failure is not None:
        return _judge_failed_fetch(ctx, final)
    if final.http_status in _REDIRECT_CODES and final.http_location:
        hop = _judge_unfollowed_redirect(ctx, final)
        if hop is not None:
            return hop
    return _judge_response(ctx, final)


def _judge_unfollowed_redirect(ctx: _Context, final: Observation) -> _Judgement | None:
    """The chain ends in a redirect: the next hop's connection must have failed."""
    target = urljoin(final.http_url or "", final.http_location or "")
    host = domain_of(target)
    if not host:
        return None
    tcp, tls = _endpoint_rows(ctx, host, _port_of(target))
    return _broken_connection(ctx, tcp, tls, https=target.startswith("https:"))


def _judge_no_request(ctx: _Context) -> _Judgement | None:
    """No HTTP request was made: the connection layers must say why."""
    tcp = [r for r in ctx.probe["tcp"] if _classic(r)] or ctx.probe["tcp"]
    broken = _broken_connection(ctx, tcp, ctx.probe["tls"], https=True)
    if broken is not None:
        return broken
    if ctx.control_http_failed:
        ctrl = ctx.control_http
        ctx.fired.append(R_HTTP_BOTH_FAIL.rule_id)
        return _Judgement(R_HTTP_BOTH_FAIL, [ctrl.observation_id] if ctrl else [],
                          f"no fetch by the probe; control: {ctrl.failure if ctrl else '?'}")
    return None


def _classic(row: Observation) -> bool:
    return row.tags is None or "classic" in row.tags


def _tcp_judgement(ctx: _Context, tcp: list[Observation]) -> _Judgement:
    ids = [r.observation_id for r in tcp]
    control_tcp = {(r.ip, r.port): r for r in ctx.control["tcp"]}
    ok_for_control = [control_tcp[(r.ip, r.port)] for r in tcp if (r.ip, r.port) in control_tcp
                      and control_tcp[(r.ip, r.port)].failure is None]
    failed_for_control = [control_tcp[(r.ip, r.port)] for r in tcp if (r.ip, r.port) in control_tcp
                          and control_tcp[(r.ip, r.port)].failure is not None]
    detail = "; ".join(f"{r.ip}:{r.port} {r.failure}" for r in tcp[:4])
    if ok_for_control or (not failed_for_control and ctx.control_http_ok):
        ctx.fired.append(R_TCP_BLOCKED.rule_id)
        conf = None if ok_for_control else 0.6
        return _Judgement(R_TCP_BLOCKED, ids + [r.observation_id for r in ok_for_control], detail, confidence=conf)
    ctx.fired.append(R_TCP_BOTH_FAIL.rule_id)
    return _Judgement(R_TCP_BOTH_FAIL, ids + [r.observation_id for r in failed_for_control], detail + " (control too)")


def _tls_judgement(ctx: _Context, tls: list[Observation]) -> _Judgement:
    ids = [r.observation_id for r in tls]
    control_tls = {(r.ip, r.port): r for r in ctx.control["tls"]}
    pairs = [(r, control_tls.get((r.ip, r.port))) for r in tls]
    control_ok = [c for _, c in pairs if c is not None and c.failure is None]
    control_failed = [c for _, c in pairs if c is not None and c.failure is not None]
    detail = "; ".join(f"{r.ip}:{r.port} sni={r.tls_server_name} {r.failure}" for r in tls[:4])
    if control_failed and not control_ok:
        ctx.fired.append(R_TLS_BOTH_FAIL.rule_id)
        return _Judgement(R_TLS_BOTH_FAIL, ids + [c.observation_id for c in control_failed], detail + " (control too)")
    if not control_ok and not ctx.control_http_ok:
        if ctx.control_http_failed:
            ctx.fired.append(R_TLS_BOTH_FAIL.rule_id)
            return _Judgement(R_TLS_BOTH_FAIL, ids, detail + " (control fetch failed too)")
        return _Judgement(R_NO_CONTROL, ids, detail)
    cert_errors = all(failure_class(r.failure) is FailureClass.TLS_CERT for r in tls)
    rule_ = R_TLS_MITM if cert_errors else R_TLS_BLOCKED
    ctx.fired.append(rule_.rule_id)
    return _Judgement(rule_, ids + [c.observation_id for c in control_ok], detail)


def _connection_rows(ctx: _Context, host: str | None, port: int | None, hop: Observation) -> tuple[list[Observation], list[Observation]]:
    """The TCP and TLS rows that served one hop (by transaction id, else by host/port)."""
    tx = hop.transaction_id
    if tx is not None:
        tcp = [r for r in ctx.probe["tcp"] if r.transaction_id == tx]
        tls = [r for r in ctx.probe["tls"] if r.transaction_id == tx]
        if tcp or tls:
            return tcp, tls
    return _endpoint_rows(ctx, host, port)


def _endpoint_rows(ctx: _Context, host: str | None, port: int | None) -> tuple[list[Observation], list[Observation]]:
    """TCP rows to the addresses the probe resolved for ``host``, TLS rows with it as SNI, on ``port``."""
    ips = {ip for r in ctx.probe["dns"] if (r.hostname or "").lower() == host for ip in (r.dns_answer_ips or ())}
    tcp = [r for r in ctx.probe["tcp"] if r.ip in ips and (port is None or r.port == port)]
    tls = [r for r in ctx.probe["tls"] if (r.tls_server_name or "").lower() == host and (port is None or r.port == port)]
    return tcp, tls


def _broken_connection(ctx: _Context, tcp: list[Observation], tls: list[Observation], *, https: bool) -> _Judgement | None:
    """Every connect failed (TCP/IP), or every handshake failed (TLS, when the hop needs one)."""
    if tcp and all(r.failure for r in tcp):
        return _tcp_judgement(ctx, tcp)
    if https and tls and all(r.failure for r in tls):
        return _tls_judgement(ctx, tls)
    return None


def _judge_failed_fetch(ctx: _Context, final: Observation) -> _Judgement:
    fclass = failure_class(final.failure)
    ids = [final.observation_id]
    if fclass is FailureClass.HTTP_REDIRECT:
        if ctx.control_http_failed:
            ctx.fired.append(R_HTTP_BOTH_FAIL.rule_id)
            return _Judgement(R_HTTP_BOTH_FAIL, ids, f"{final.http_url}: {final.failure} (control fails too)")
        ctx.fired.append(R_HTTP_BROKEN_REDIRECT.rule_id)
        return _Judgement(R_HTTP_BROKEN_REDIRECT, ids, f"{final.http_url}: {final.failure}; Location {final.http_location!r}")
    url = final.http_url or ""
    host = domain_of(url)
    https = url.startswith("https:")
    port = _port_of(url)
    tcp, tls = _connection_rows(ctx, host, port, final)
    broken = _broken_connection(ctx, tcp, tls, https=https)
    if broken is not None:
        return broken
    if ctx.control_http_failed:
        ctrl = ctx.control_http
        ctx.fired.append(R_HTTP_BOTH_FAIL.rule_id)
        return _Judgement(R_HTTP_BOTH_FAIL, ids + ([ctrl.observation_id] if ctrl else []),
                          f"{url}: {final.failure}; control: {ctrl.failure if ctrl else '?'}")
    if fclass is FailureClass.TIMEOUT and (final.http_status or (final.http_bytes_read or 0) > 0):
        rate = _rate(final)
        ctx.fired.append(R_HTTP_THROTTLED.rule_id)
        detail = f"{url}: headers received (status {final.http_status}), body timed out"
        if rate is not None:
            detail += f"; {rate / 1000:.1f} kbit/s over {final.http_read_seconds:.1f} s"
        ctrl = ctx.control_http
        if ctrl is not None and ctrl.http_body_length:
            detail += f"; control body {ctrl.http_body_length} bytes"
        return _Judgement(R_HTTP_THROTTLED, ids, detail)
    rule_ = R_HTTPS_FAILURE if https and not final.http_status else R_HTTP_FAILURE
    ctx.fired.append(rule_.rule_id)
    return _Judgement(rule_, ids + [r.observation_id for r in tls if r.failure is None],
                      f"{url}: {final.failure}; control fetched status {ctx.control_http.http_status if ctx.control_http else '?'}")


def _port_of(url: str) -> int | None:
    host_port = url.split("://", 1)[-1].split("/", 1)[0]
    if host_port.count(":") == 1:
        try:
            return int(host_port.rsplit(":", 1)[1])
        except ValueError:
            return None
    return 443 if url.startswith("https:") else 80


def _rate(row: Observation) -> float | None:
    if row.http_bytes_read and row.http_read_seconds:
        return row.http_bytes_read * 8 / row.http_read_seconds
    return None


def _request_bodies(ctx: _Context) -> list[tuple[str | None, list[tuple[str, str]]]]:
    """(body, headers) per hop, oldest first — decoded only when a verdict needs them."""
    out = []
    for tx in reversed(ctx.tk.requests or ()):
        if tx is None:
            continue
        resp = tx.response
        if resp is None:
            out.append((None, []))
            continue
        out.append((body_text(resp.body), headers_as_pairs(resp.headers, resp.headers_list)))
    return out


def _blockpage(ctx: _Context, http_rows: list[Observation]) -> _Judgement | None:
    """A fingerprint match anywhere in the chain, or a bot challenge at its end."""
    if len(http_rows) == 1 and not _needs_body_check(ctx, http_rows):
        # One hop, answered as the control was answered: neither a blockpage
        # (it would have to mimic the real page's status and size or title) nor
        # a bot challenge. Scanning it would cost more than judging everything else.
        return None
    bodies = _request_bodies(ctx)
    vague: tuple[Observation, Fingerprint] | None = None
    false_positive: tuple[Observation, Fingerprint] | None = None
    for row, (body, headers) in zip(http_rows, bodies):
        matches = ctx.fps.match_http(body, headers)
        if not matches:
            continue
        fp = FingerprintDB.best(m for m in matches if not m.is_false_positive)
        if fp is not None and fp.confirms_blocking:
            ctx.fired.append(R_HTTP_BLOCKPAGE.rule_id)
            return _Judgement(R_HTTP_BLOCKPAGE, [row.observation_id],
                              f"{row.http_url}: blockpage {fp.name} ({fp.scope})", fp)
        if fp is not None and vague is None:
            vague = (row, fp)
        fpos = next((m for m in matches if m.is_false_positive), None)
        if fpos is not None:
            false_positive = (row, fpos)
    final = http_rows[-1]
    final_body, final_headers = bodies[-1] if bodies else (None, [])
    if _is_bot_challenge(final, final_headers) or (false_positive and false_positive[0] is final):
        ctx.fired.append(R_HTTP_BOT_CHALLENGE.rule_id)
        name = false_positive[1].name if false_positive else None
        return _Judgement(R_HTTP_BOT_CHALLENGE, [final.observation_id],
                          f"{final.http_url}: status {final.http_status}, title {final.http_title!r}"
                          + (f", known false positive {name}" if name else ""))
    if vague is not None and final.failure is None and not _matches_control(ctx, final) and not _https(final):
        row, fp = vague
        ctx.fired.append(R_HTTP_VAGUE_BLOCKPAGE.rule_id)
        return _Judgement(R_HTTP_VAGUE_BLOCKPAGE, [row.observation_id],
                          f"{row.http_url}: vague blocking words {fp.name}", fp)
    return None


def _needs_body_check(ctx: _Context, http_rows: list[Observation]) -> bool:
    final = http_rows[-1]
    return final.failure is None and not _matches_control(ctx, final)


def _is_bot_challenge(row: Observation, headers: list[tuple[str, str]]) -> bool:
    title = (row.http_title or "").lower()
    if not any(title.startswith(t) for t in BOT_CHALLENGE_TITLES):
        return False
    names = {k.lower() for k, _ in headers} | {k.lower() for k in row.http_header_names or ()}
    server = (row.http_server or "").lower()
    return bool(names & set(BOT_CHALLENGE_HEADERS)) or server in ("cloudflare", "ddos-guard", "sucuri/cloudproxy")


def _https(row: Observation) -> bool:
    return (row.http_url or "").startswith("https:")


def _matches_control(ctx: _Context, row: Observation) -> bool:
    ctrl = ctx.control_http
    if ctrl is None or ctrl.http_status is None:
        return False
    if row.http_status != ctrl.http_status:
        return False
    a, b = row.http_body_length or 0, ctrl.http_body_length or 0
    if row.http_body_truncated and a < b:
        return True  # the probe stopped reading at its size cap: lengths say nothing
    proportion = min(a, b) / max(a, b) if max(a, b) else 1.0
    if proportion > 0.7:
        return True
    if _titles_match(row.http_title, ctrl.http_title):
        return True
    if row.http_title and ctrl.http_title and proportion < 0.3:
        return False  # another page altogether: shared headers cannot outweigh that
    return _uncommon_headers_match(row, ctrl)


# Headers every server sends: sharing them says nothing about who answered.
_COMMON_HEADERS = frozenset({
    "date", "content-type", "server", "cache-control", "vary", "set-cookie", "location", "expires",
    "x-powered-by", "content-encoding", "last-modified", "accept-ranges", "pragma", "x-frame-options",
    "etag", "x-content-type-options", "age", "via", "p3p", "x-xss-protection", "content-language",
    "cf-ray", "strict-transport-security", "link", "x-varnish", "content-length", "connection",
    "keep-alive", "transfer-encoding", "alt-svc",
})


def _uncommon_headers_match(row: Observation, ctrl: Observation) -> bool:
    mine = {h.lower() for h in row.http_header_names or ()} - _COMMON_HEADERS
    theirs = {h.lower() for h in ctrl.http_header_names or ()} - _COMMON_HEADERS
    if not mine or not theirs:
        return False
    # Caches add or drop a header or two between vantage points: judge the overlap.
    return len(mine & theirs) / min(len(mine), len(theirs)) >= 0.5


def _titles_match(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    if a.strip().lower() == b.strip().lower():
        return True
    words_a = {w for w in a.lower().split() if len(w) >= 5}
    words_b = {w for w in b.lower().split() if len(w) >= 5}
    return bool(words_a & words_b)


def _judge_response(ctx: _Context, final: Observation) -> _Judgement:
    ids = [final.observation_id]
    ctrl = ctx.control_http
    if _https(final):
        if final.http_status and final.http_status >= 400 and ctrl is not None and ctrl.http_status and ctrl.http_status < 400:
            ctx.fired.append(R_HTTPS_SERVER_REFUSED.rule_id)
            return _Judgement(R_HTTPS_SERVER_REFUSED, ids, f"{final.http_url}: status {final.http_status}, control {ctrl.http_status}")
        ctx.fired.append(R_HTTPS_OK.rule_id)
        return _Judgement(R_HTTPS_OK, ids, f"{final.http_url}: status {final.http_status}")
    if _matches_control(ctx, final):
        ctx.fired.append(R_HTTP_MATCH.rule_id)
        return _Judgement(R_HTTP_MATCH, ids, f"{final.http_url}: status {final.http_status}, {final.http_body_length} bytes")
    if ctx.control_http_failed:
        ctx.fired.append(R_HTTP_BOTH_FAIL.rule_id)
        return _Judgement(R_HTTP_BOTH_FAIL, ids, f"control fetch failed: {ctrl.failure if ctrl else '?'}")
    if ctrl is None or ctrl.http_status is None:
        return _Judgement(R_NO_CONTROL, ids, "control has no HTTP result")
    ctx.fired.append(R_HTTP_DIFF.rule_id)
    return _Judgement(
        R_HTTP_DIFF, ids + [ctrl.observation_id],
        f"{final.http_url}: status {final.http_status} vs {ctrl.http_status}, "
        f"{final.http_body_length} vs {ctrl.http_body_length} bytes, title {final.http_title!r} vs {ctrl.http_title!r}",
    )


def _judge_without_control(ctx: _Context, http_rows: list[Observation]) -> _Judgement:
    """No usable control: only a fingerprint can prove blocking; validated HTTPS proves ok."""
    detail = f"control failure: {ctx.tk.control_failure or 'absent'}"
    if http_rows:
        blockpage = _blockpage(ctx, http_rows)
        # Without a control only a confirming fingerprint proves blocking (a vague one does not).
        if blockpage is not None and (blockpage.rule.outcome is not BLOCKED or blockpage.rule is R_HTTP_BLOCKPAGE):
            return blockpage
        final = http_rows[-1]
        if final.failure is None and final.http_status and _https(final) and final.http_status < 400:
            ctx.fired.append(R_NO_CONTROL_HTTPS_OK.rule_id)
            return _Judgement(R_NO_CONTROL_HTTPS_OK, [final.observation_id], detail)
    if not any(r.failure is None for r in ctx.probe.get("tcp", [])):
        ids = [r.observation_id for r in (*ctx.probe.get("dns", []), *ctx.probe.get("tcp", []))]
        ctx.fired.append(R_NO_CONTROL_UNREACHED.rule_id)
        return _Judgement(R_NO_CONTROL_UNREACHED, ids, detail + "; the probe reached nothing")
    ctx.fired.append(R_NO_CONTROL.rule_id)
    return _Judgement(R_NO_CONTROL, [], detail)

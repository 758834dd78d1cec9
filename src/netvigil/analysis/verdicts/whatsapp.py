"""WhatsApp (ts-018) verdicts: endpoints, registration, web.

Endpoints follow OONI's rule: the app works if ANY endpoint answers, so the
target is blocked only when every connect failed; unlike OONI's summary we also
name the endpoints that failed when others worked. Registration and web are
judged on the HTTPS fetch: any response over a validated TLS session means the
service was reached, whatever the status code (WhatsApp answers 400 to a
User-Agent that does not match the ClientHello, which OONI reported as
``http_unexpected_status_code``/blocked).
"""

from __future__ import annotations

from netvigil.analysis.rules import rule
from netvigil.analysis.verdicts._messaging import (
    by_target,
    describe,
    ids,
    layered_rules,
    ooni_status,
    reach,
    row_ok,
)
from netvigil.analysis.verdicts.common import make_verdict
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Outcome, Verdict

__all__ = ["make_verdicts"]

ENDPOINTS_OK = rule(
    "whatsapp.endpoints.ok", Outcome.OK, None, 0.9, "strong",
    "at least one WhatsApp endpoint accepted a TCP connection: the app can connect",
)
ENDPOINTS_SOME_FAILED = rule(
    "whatsapp.endpoints.some_failed", Outcome.OK, None, 0.5, "weak",
    "annotation: some endpoint names failed (DNS, or every connect to their IPs) while others worked",
)
ENDPOINTS_BLOCKED = layered_rules(
    "whatsapp.endpoints", 0.8, "strong", "WhatsApp endpoints (e*.whatsapp.net on 443/5222)",
)
ENDPOINTS_NO_DATA = rule(
    "whatsapp.endpoints.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
    "no endpoint lookups or connects recorded: nothing to judge",
)
REGISTRATION_OK = rule(
    "whatsapp.registration.ok", Outcome.OK, None, 0.9, "strong",
    "https://v.whatsapp.net/v2/register answered (any status: the HTTPS conversation happened)",
)
REGISTRATION_BLOCKED = layered_rules(
    "whatsapp.registration", 0.7, "moderate", "registration server v.whatsapp.net",
)
REGISTRATION_NO_DATA = rule(
    "whatsapp.registration.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
    "no registration-server fetch recorded",
)
WEB_OK = rule(
    "whatsapp.web.ok", Outcome.OK, None, 0.9, "strong",
    "https://web.whatsapp.com/ answered over validated TLS (any status code)",
)
WEB_SERVER_STATUS = rule(
    "whatsapp.web.server_status", Outcome.OK, None, 0.5, "weak",
    "annotation: the genuine server answered with a 4xx/5xx (e.g. 400 to a mismatched User-Agent); "
    "OONI counts this as blocked, netvigil does not",
)
WEB_PLAIN_HTTP_FAILED = rule(
    "whatsapp.web.plain_http_failed", Outcome.OK, None, 0.3, "weak",
    "annotation: http://web.whatsapp.com/ failed while HTTPS worked",
)
WEB_BLOCKED = layered_rules("whatsapp.web", 0.7, "moderate", "WhatsApp web (web.whatsapp.com)")
WEB_NO_DATA = rule(
    "whatsapp.web.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak", "no WhatsApp web fetch recorded",
)


def _is_plain_http(r: Observation) -> bool:
    if r.kind == "http":
        return bool(r.http_url) and r.http_url.startswith("http://")
    return r.kind == "tcp" and r.port == 80


def _failing_endpoint_names(rows: list[Observation]) -> list[str]:
    """Endpoint names whose lookups all failed or whose IPs all refused every connect."""
    ips_of: dict[str, set[str]] = {}
    resolved: dict[str, bool] = {}
    for r in rows:
        if r.kind == "dns" and r.hostname:
            resolved[r.hostname] = resolved.get(r.hostname, False) or row_ok(r)
            ips_of.setdefault(r.hostname, set()).update(r.dns_answer_ips or ())
    ip_ok: dict[str, bool] = {}
    for r in rows:
        if r.kind == "tcp" and r.ip:
            ip_ok[r.ip] = ip_ok.get(r.ip, False) or r.failure is None
    failing = []
    for name, ok in resolved.items():
        tried = [ip_ok[ip] for ip in ips_of.get(name, ()) if ip in ip_ok]
        if not ok or (tried and not any(tried)):
            failing.append(name)
    return sorted(failing, key=lambda n: (len(n), n))


def _endpoints(m: Measurement, rows: list[Observation], ooni: tuple[str | None, bool | None]) -> Verdict:
    r = reach(rows, "tcp")
    blocking, accessible = ooni
    if r.reached:
        failing = _failing_endpoint_names(rows)
        n_ok = len(r.ok_rows)
        n_tcp = sum(1 for x in rows if x.kind == "tcp")
        detail = f"{n_ok}/{n_tcp} endpoint connects succeeded"
        fired = []
        failed_rows = [x for x in rows if x.kind in ("dns", "tcp") and not row_ok(x)]
        if failing:
            fired.append(ENDPOINTS_SOME_FAILED.rule_id)
            detail += f"; failing endpoints: {', '.join(failing)} ({describe(failed_rows)})"
        return make_verdict(m, "endpoints", ENDPOINTS_OK, fired=fired, decisive=ids(r.ok_rows),
                            detail=detail, domain="whatsapp.net",
                            ooni_blocking=blocking, ooni_accessible=accessible)
    if r.layer is None:
        return make_verdict(m, "endpoints", ENDPOINTS_NO_DATA, detail="no endpoint connects recorded",
                            domain="whatsapp.net", ooni_blocking=blocking, ooni_accessible=accessible)
    names = _failing_endpoint_names(rows)
    detail = (f"all {len(r.failed_rows)} endpoint {r.layer} attempts failed, mostly {r.failure}; "
              f"endpoints: {', '.join(names) or 'all'}; {describe(r.failed_rows)}")
    return make_verdict(m, "endpoints", ENDPOINTS_BLOCKED[r.layer], decisive=ids(r.failed_rows),
                        detail=detail, domain="whatsapp.net",
                        ooni_blocking=blocking, ooni_accessible=accessible)


def _https_service(
    m: Measurement, target: str, domain: str, rows: list[Observation], ok_rule, blocked, no_data,
    ooni: tuple[str | None, bool | None],
) -> Verdict:
    """Judge on the HTTPS fetch; the plain-HTTP fetch (web only) is an annotation."""
    https_rows = [x for x in rows if not _is_plain_http(x)]
    plain_rows = [x for x in rows if _is_plain_http(x) or x.kind == "dns"]
    blocking, accessible = ooni
    r = reach(https_rows, "http")
    if not r.reached and r.layer is None and any(x.kind == "http" for x in plain_rows):
        r = reach(plain_rows, "http")      # no HTTPS fetch at all: judge the plain one
    if r.reached:
        fired = []
        statuses = sorted({x.http_status for x in r.ok_rows if x.http_status})
        detail = f"{describe(r.ok_rows)}"
        if target == "web" and any(s >= 400 for s in statuses):
            fired.append(WEB_SERVER_STATUS.rule_id)
        if target == "web":
            plain = reach(plain_rows, "http")
            if not plain.reached and plain.layer is not None:
                fired.append(WEB_PLAIN_HTTP_FAILED.rule_id)
                detail += f"; plain HTTP: {describe(plain.failed_rows)}"
        return make_verdict(m, target, ok_rule, fired=fired, decisive=ids(r.ok_rows), detail=detail,
                            domain=domain, ooni_blocking=blocking, ooni_accessible=accessible)
    if r.layer is None:
        return make_verdict(m, target, no_data, detail="no fetch recorded", domain=domain,
                            ooni_blocking=blocking, ooni_accessible=accessible)
    detail = f"{r.layer} failed ({r.failure}): {describe(r.failed_rows)}"
    return make_verdict(m, target, blocked[r.layer], decisive=ids(r.failed_rows), detail=detail,
                        domain=domain, ooni_blocking=blocking, ooni_accessible=accessible)


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    tk = m.test_keys
    get = tk.get if isinstance(tk, dict) else (lambda k: getattr(tk, k, None))
    groups = by_target(observations)
    return [
        _endpoints(m, groups.get("endpoints", []),
                   ooni_status(get("whatsapp_endpoints_status"), None)),
        _https_service(m, "registration", "v.whatsapp.net", groups.get("registration", []),
                       REGISTRATION_OK, REGISTRATION_BLOCKED, REGISTRATION_NO_DATA,
                       ooni_status(get("registration_server_status"), get("registration_server_failure"))),
        _https_service(m, "web", "web.whatsapp.com", groups.get("web", []),
                       WEB_OK, WEB_BLOCKED, WEB_NO_DATA,
                       ooni_status(get("whatsapp_web_status"), get("whatsapp_web_failure"))),
    ]

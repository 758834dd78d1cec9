"""Verdicts for circumvention tools (vanilla_tor, torsf, openvpn, riseupvpn,
psiphon, meek_fronted_requests_test, …).

A tunnel that bootstraps is ``ok``. One that fails tells us little about who
broke it: the tool, its volunteer infrastructure (Snowflake proxies, bridges)
or the network. So a failure at a network step (timeout, reset, refused, DNS,
TLS handshake) is ``blocked``/``bootstrap`` with low confidence (≤ 0.5), and a
certificate or unexplained failure is ``inconclusive``. A fronted request that
reaches the CDN but gets an error page means the fronted backend is gone:
``down``. Missing test keys are ``inconclusive``, never blocked.
"""

from __future__ import annotations

from typing import Any

from netvigil.analysis.observations.circumvention import plain_keys, target_of, vpn_handshake
from netvigil.analysis.rules import rule
from netvigil.analysis.verdicts._messaging import NETWORK_CLASSES, by_target, describe, ids, ooni_status, reach
from netvigil.analysis.verdicts.common import failure_class, make_verdict
from netvigil.model.failure import FailureClass
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = ["make_verdicts"]

BOOTSTRAP_OK = rule("circumvention.bootstrap_ok", Outcome.OK, None, 0.9, "strong",
                    "the tool reported success / a completed bootstrap")
BOOTSTRAP_FAILED = rule("circumvention.bootstrap_failed_network", Outcome.BLOCKED, Method.BOOTSTRAP, 0.4, "weak",
                        "the tool failed at a network step (timeout, reset, refused, DNS, TLS handshake); "
                        "the tool's own infrastructure may be at fault, hence low confidence")
TLS_CERT = rule("circumvention.tls_cert", Outcome.INCONCLUSIVE, Method.TLS, 0.2, "weak",
                "certificate validation failed: interception, or an expired/self-signed server certificate "
                "(riseup served an expired certificate in 2022); not called blocking")
FAILED_OTHER = rule("circumvention.bootstrap_failed_other", Outcome.INCONCLUSIVE, None, 0.1, "weak",
                    "the tool failed with an error that is not a network failure")
FRONT_ERROR = rule("circumvention.fronted_backend_error", Outcome.DOWN, None, 0.5, "moderate",
                   "the fronting CDN answered but the fronted request did not succeed: the backend is gone "
                   "or misconfigured, not the network")
NO_DATA = rule("circumvention.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
               "test keys missing or without a result")
GATEWAYS_OK = rule("circumvention.gateways_ok", Outcome.OK, None, 0.7, "moderate",
                   "at least one VPN gateway accepted a TCP connection")

# Snowflake relies on volunteer proxies: an unanswered bootstrap is even weaker evidence. netvigil's `vpn` test
# sends only the first handshake packet of the user's own, known-good config, so silence says a little more;
# still no control vantage (the server may be down, or the config stale).
_CONFIDENCE = {"torsf": 0.3, "tor_snowflake": 0.3, "vanilla_tor": 0.5, "vpn": 0.5}


def _failure_verdict(m: Measurement, target: str, failure: str | None, rows: list[Observation],
                     ooni: tuple[str | None, bool | None], extra: str = "", domain: str | None = None) -> Verdict:
    failed_rows = [r for r in rows if r.failure is not None]
    row_failure = failed_rows[0].failure if failed_rows else None
    cls = failure_class(row_failure or failure)
    kw: dict[str, Any] = dict(ooni_blocking=ooni[0], ooni_accessible=ooni[1], domain=domain)
    detail = f"failure {failure or row_failure}{extra}"
    if failed_rows:
        detail += f"; {describe(failed_rows)}"
    if cls is FailureClass.TLS_CERT:
        return make_verdict(m, target, TLS_CERT, decisive=ids(failed_rows), detail=detail, **kw)
    if cls in NETWORK_CLASSES:
        return make_verdict(m, target, BOOTSTRAP_FAILED, decisive=ids(failed_rows), detail=detail,
                            confidence=_CONFIDENCE.get(m.test_name), **kw)
    return make_verdict(m, target, FAILED_OTHER, decisive=ids(failed_rows), detail=detail, **kw)


def _meek(m: Measurement, tk: dict[str, Any], rows: list[Observation], ooni) -> Verdict:
    success = tk.get("success")
    http = [r for r in rows if r.kind == "http"]
    answered = [r for r in http if r.failure is None and (r.http_status or 0) > 0]
    kw = dict(ooni_blocking=ooni[0], ooni_accessible=ooni[1])
    if success is True:
        return make_verdict(m, "fronted", BOOTSTRAP_OK, decisive=ids(answered or http),
                            detail=describe(http), **kw)
    if answered:
        return make_verdict(m, "fronted", FRONT_ERROR, decisive=ids(answered), detail=describe(answered), **kw)
    failure = next((r.failure for r in http if r.failure), None)
    if failure is None:
        return make_verdict(m, "fronted", NO_DATA, detail="no fronted request result", **kw)
    return _failure_verdict(m, "fronted", failure, http, ooni)


def _riseupvpn(m: Measurement, tk: dict[str, Any], groups: dict[str, list[Observation]], ooni) -> list[Verdict]:
    api_rows = groups.get("api", [])
    r = reach(api_rows, "http")
    kw = dict(ooni_blocking=ooni[0], ooni_accessible=ooni[1])
    if r.reached and tk.get("ca_cert_status") is not False:
        out = [make_verdict(m, "api", BOOTSTRAP_OK, decisive=ids(r.ok_rows), detail=describe(r.ok_rows), **kw)]
    elif r.layer is not None:
        out = [_failure_verdict(m, "api", r.failure, list(r.failed_rows), ooni, extra=f" at {r.layer}")]
    elif tk.get("api_failure"):
        out = [_failure_verdict(m, "api", tk.get("api_failure"), api_rows, ooni)]
    else:
        out = [make_verdict(m, "api", NO_DATA, detail="no API fetch recorded", **kw)]
    gw_rows = [x for x in groups.get("gateways", []) if x.kind == "tcp"]
    if gw_rows:
        ok = [x for x in gw_rows if x.failure is None]
        if ok:
            out.append(make_verdict(m, "gateways", GATEWAYS_OK, decisive=ids(ok),
                                    detail=f"{len(ok)}/{len(gw_rows)} gateway connects succeeded"))
        else:
            out.append(_failure_verdict(m, "gateways", gw_rows[0].failure, gw_rows, (None, None)))
    return out


def _vpn(m: Measurement, tk: dict[str, Any], target: str, rows: list[Observation]) -> Verdict:
    """netvigil's `vpn`: one endpoint's first handshake round trip (WireGuard or OpenVPN hard reset)."""
    hs = vpn_handshake(tk) or {}
    success, failure = tk.get("success"), tk.get("failure") or hs.get("failure")
    domain = hs.get("ip") or None
    what = f"{tk.get('tunnel') or 'vpn'} {hs.get('endpoint') or target}"
    ooni = (failure, success if isinstance(success, bool) else None)
    if success is True:
        return make_verdict(m, target, BOOTSTRAP_OK, decisive=ids(rows), domain=domain,
                            detail=f"{what}: handshake answered in {hs.get('handshake_time')}s", **_kw(ooni))
    if failure is None:
        return make_verdict(m, target, NO_DATA, detail=f"{what}: no success flag or failure", domain=domain)
    return _failure_verdict(m, target, failure, rows, ooni, extra=f" ({what}: no valid handshake answer)",
                            domain=domain)


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    tk = plain_keys(m.test_keys)
    target = target_of(m)
    if not isinstance(tk, dict):
        return [make_verdict(m, target, NO_DATA, detail="test keys missing")]
    if m.test_name == "vpn":
        return [_vpn(m, tk, target, by_target(observations).get(target, []))]
    success = tk.get("success")
    failure = tk.get("failure") or (tk.get("error") if isinstance(tk.get("error"), str) else None)
    ooni = (failure, success if isinstance(success, bool) else None)
    groups = by_target(observations)
    if m.test_name == "meek_fronted_requests_test":
        return [_meek(m, tk, groups.get("fronted", []), ooni)]
    if m.test_name == "riseupvpn":
        return _riseupvpn(m, tk, groups, ooni_status(tk.get("api_status"), tk.get("api_failure")))
    rows = groups.get(target, [])
    bootstrap_time = tk.get("bootstrap_time")
    booted = isinstance(bootstrap_time, (int, float)) and bootstrap_time > 0
    if success is True or (success is None and failure is None and booted):
        return [make_verdict(m, target, BOOTSTRAP_OK, decisive=ids(rows),
                             detail=f"bootstrap {bootstrap_time}s" if booted else "success", **_kw(ooni))]
    if failure is None and success is None:
        return [make_verdict(m, target, NO_DATA, detail="no success flag, failure or bootstrap time")]
    progress = tk.get("tor_progress_summary")
    extra = f" (stuck at {tk.get('tor_progress')}%: {progress})" if progress else ""
    return [_failure_verdict(m, target, failure or "unknown_failure", rows, ooni, extra)]


def _kw(ooni: tuple[str | None, bool | None]) -> dict[str, Any]:
    return {"ooni_blocking": ooni[0], "ooni_accessible": ooni[1]}

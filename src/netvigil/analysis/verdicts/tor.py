"""Tor (ts-023) verdicts: one per Tor endpoint, plus "k of n reachable" per protocol.

A single relay or bridge can simply be down, and the test has no control
vantage, so one failing target is weak evidence (confidence 0.4; 0.5 for
directory authorities, which are few and watched). The protocol summary is
where blocking shows: none of n reachable is strong evidence, a majority
unreachable is moderate (Azerbaijan 2020: 7 of 10 dirauths on AS28787), a
minority unreachable is called ok with the failing ones named.
"""

from __future__ import annotations

from netvigil.analysis.observations.tor import TorEndpoint, tor_endpoints
from netvigil.analysis.rules import Rule, rule
from netvigil.analysis.verdicts._messaging import by_target, describe, ids, reach
from netvigil.analysis.verdicts.common import make_verdict
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = ["make_verdicts"]

_METHODS = (Method.DNS, Method.TCP_IP, Method.TLS, Method.HTTP_FAILURE, Method.BOOTSTRAP)

TARGET_OK = rule("tor.target.ok", Outcome.OK, None, 0.8, "strong",
                 "the endpoint completed the test's steps (connect, TLS for OR ports, consensus fetch for dir ports)")
TARGET_FAILED: dict[Method, Rule] = {
    meth: rule(f"tor.target.failed.{meth.value}", Outcome.BLOCKED, meth, 0.4, "weak",
               f"the endpoint failed at {meth.value}; a single relay/bridge may just be down (no control)")
    for meth in _METHODS
}
TARGET_NO_DATA = rule("tor.target.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
                      "no observations and no failure recorded for this endpoint")
PROTO_ALL = rule("tor.protocol.all_reachable", Outcome.OK, None, 0.8, "strong", "every endpoint of the protocol worked")
PROTO_FEW = rule("tor.protocol.few_unreachable", Outcome.OK, None, 0.6, "moderate",
                 "fewer than half of the endpoints failed: normal churn or targeted blocking; names in detail")
PROTO_MOST: dict[Method, Rule] = {
    meth: rule(f"tor.protocol.mostly_unreachable.{meth.value}", Outcome.BLOCKED, meth, 0.5, "moderate",
               f"at least half (not all) of the endpoints failed, mostly at {meth.value}")
    for meth in _METHODS
}
PROTO_NONE: dict[Method, Rule] = {
    meth: rule(f"tor.protocol.none_reachable.{meth.value}", Outcome.BLOCKED, meth, 0.8, "strong",
               f"no endpoint of the protocol worked, mostly failing at {meth.value}")
    for meth in _METHODS
}
PROTO_NO_DATA = rule("tor.protocol.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
                     "no Tor targets in the test keys")

# The step each protocol must complete, and the method to blame when the probe
# reports a failure that no observation shows (e.g. the obfs4 handshake).
_GOAL = {"or_port": "tls", "or_port_dirauth": "tls", "dir_port": "http", "obfs4": "tcp"}
_LATE_METHOD = {"or_port": Method.TLS, "or_port_dirauth": Method.TLS, "dir_port": Method.HTTP_FAILURE,
                "obfs4": Method.BOOTSTRAP}


def _judge_target(m: Measurement, ep: TorEndpoint, rows: list[Observation]) -> tuple[Verdict, Method | None]:
    goal = _GOAL.get(ep.protocol, "tcp")
    if goal == "tls" and not any(r.kind == "tls" for r in rows):
        goal = "tcp"      # old probes log only the connect for OR ports
    if goal == "http" and not any(r.kind == "http" for r in rows):
        goal = "tcp"      # current OONI Probe (and netvigil's dir_port_mode="tcp") only connect to Dir ports
    r = reach(rows, goal)
    conf = 0.5 if ep.protocol == "or_port_dirauth" else None
    kw = dict(domain=ep.name)
    if ep.failure is None and r.reached:
        return make_verdict(m, ep.label, TARGET_OK, decisive=ids(r.ok_rows), detail=describe(r.ok_rows), **kw), None
    if ep.failure is None and r.layer is None:
        return make_verdict(m, ep.label, TARGET_NO_DATA, detail="nothing recorded", **kw), None
    if r.layer is not None:
        meth = r.method or Method.TCP_IP
        detail = f"{r.layer} failed ({r.failure}): {describe(r.failed_rows)}"
        decisive = ids(r.failed_rows)
    else:
        meth = _LATE_METHOD.get(ep.protocol, Method.BOOTSTRAP)
        detail = f"probe reports {ep.failure} after: {describe(rows)}" if rows else f"probe reports {ep.failure}"
        decisive = ids(rows)
    return make_verdict(m, ep.label, TARGET_FAILED[meth], decisive=decisive, detail=detail,
                        confidence=conf, ooni_blocking=ep.failure, ooni_accessible=False, **kw), meth


def _ooni_counts(tk, protocol: str) -> tuple[int | None, int | None]:
    get = tk.get if isinstance(tk, dict) else (lambda k: getattr(tk, k, None))
    total, accessible = get(f"{protocol}_total"), get(f"{protocol}_accessible")
    return (total if isinstance(total, int) else None, accessible if isinstance(accessible, int) else None)


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    endpoints = tor_endpoints(m.test_keys)
    if not endpoints:
        return [make_verdict(m, "tor", PROTO_NO_DATA, detail="no targets (test keys empty or missing)",
                             domain="torproject.org")]
    groups = by_target(observations)
    per_target: list[Verdict] = []
    protocols: dict[str, list[tuple[Verdict, Method | None]]] = {}
    for ep in endpoints:
        v, meth = _judge_target(m, ep, groups.get(ep.label, []))
        per_target.append(v)
        protocols.setdefault(ep.protocol, []).append((v, meth))
    summary = []
    for protocol, results in protocols.items():
        judged = [(v, meth) for v, meth in results if v.outcome != Outcome.INCONCLUSIVE]
        failed = [(v, meth) for v, meth in judged if v.outcome == Outcome.BLOCKED]
        n, k = len(judged), len(judged) - len(failed)
        total, accessible = _ooni_counts(m.test_keys, protocol)
        ooni_note = f"; OONI: {accessible}/{total}" if total is not None else ""
        detail = f"{k} of {n} reachable{ooni_note}"
        if failed:
            detail += "; failing: " + ", ".join(v.target for v, _ in failed)
        if n == 0:
            chosen = PROTO_NO_DATA
        elif not failed:
            chosen = PROTO_ALL
        else:
            counts: dict[Method, int] = {}
            for _, meth in failed:
                counts[meth or Method.TCP_IP] = counts.get(meth or Method.TCP_IP, 0) + 1
            meth = max(counts, key=counts.__getitem__)
            if k == 0:
                chosen = PROTO_NONE[meth]
            elif len(failed) * 2 >= n:
                chosen = PROTO_MOST[meth]
            else:
                chosen = PROTO_FEW
        conf = 0.5 if chosen in PROTO_NONE.values() and n < 3 else None
        decisive = [d for v, _ in (failed or judged) for d in v.decisive][:32]
        summary.append(make_verdict(
            m, protocol, chosen, decisive=decisive, detail=detail, confidence=conf, domain="torproject.org",
            ooni_accessible=(accessible == total) if total is not None and accessible is not None else None,
        ))
    return summary + per_target

"""Signal (ts-029) verdicts, one per Signal host.

Each host is fetched over HTTPS with Signal's own CA pinned; a response of any
status means the host was reached. Two known false positives are not called
blocking:

* test_version 0.2.0 (and older) pins only Signal's 2013 root. From 2022-10-19
  Signal's servers present certificates from a newer root, so those probes log
  ``ssl_unknown_authority`` everywhere (ts-029 "Data analysis considerations",
  ooni/probe#2344) -> inconclusive. In 0.2.1+ the same failure is a real sign
  of interception (someone else's certificate) -> blocked, method tls.
* ``api.directory.signal.org`` stopped resolving (Signal retired the legacy
  contact-discovery host): when only that name fails with "no such name" and
  the other hosts resolve, it is ``down``, not blocked.

``uptime.signal.org`` is DNS-only and resolves to 127.0.0.1 by design, so a
loopback answer there is normal.
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
    version_tuple,
)
from netvigil.analysis.verdicts.common import failure_class, make_verdict
from netvigil.model.failure import FailureClass
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = ["make_verdicts"]

OK = rule("signal.host.ok", Outcome.OK, None, 0.9, "strong",
          "the host answered over TLS validated against Signal's CA (any HTTP status)")
UPTIME_OK = rule("signal.uptime.ok", Outcome.OK, None, 0.7, "moderate",
                 "uptime.signal.org resolved (127.0.0.1 is its normal answer)")
BLOCKED = layered_rules("signal.host", 0.7, "moderate", "Signal backend host")
STALE_CA = rule("signal.host.stale_pinned_ca", Outcome.INCONCLUSIVE, Method.TLS, 0.1, "weak",
                "ssl_unknown_authority from a probe (test_version <= 0.2.0) that pins only Signal's old root, "
                "after Signal changed CA on 2022-10-19: the probe's fault")
RETIRED = rule("signal.host.retired", Outcome.DOWN, Method.DNS, 0.6, "moderate",
               "api.directory.signal.org does not exist any more while the other Signal names resolve")
NO_DATA = rule("signal.host.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
               "no fetch recorded for this host (or test keys missing)")

_UPTIME = "uptime.signal.org"
_RETIRED_HOSTS = frozenset({"api.directory.signal.org"})
_CA_CHANGE = "2022-10-19"
_FIXED_IN = (0, 2, 1)


def _stale_ca(m: Measurement) -> bool:
    version = version_tuple(m.envelope.test_version)
    date = (m.envelope.measurement_start_time or "")[:10]
    return bool(version) and version < _FIXED_IN and date >= _CA_CHANGE


def _host(m: Measurement, host: str, rows: list[Observation], others_resolved: bool,
          ooni: tuple[str | None, bool | None]) -> Verdict:
    blocking, accessible = ooni
    if host == _UPTIME:
        r = reach(rows, "dns", allow_bogon=True)
        ok_rule = UPTIME_OK
    else:
        r = reach(rows, "http")
        ok_rule = OK
    kw = dict(domain=host, ooni_blocking=blocking, ooni_accessible=accessible)
    if r.reached:
        return make_verdict(m, host, ok_rule, decisive=ids(r.ok_rows), detail=describe(r.ok_rows), **kw)
    if r.layer is None:
        return make_verdict(m, host, NO_DATA, detail="no fetch recorded", **kw)
    detail = f"{r.layer} failed ({r.failure}): {describe(r.failed_rows)}"
    if r.layer == "tls" and r.failure == "ssl_unknown_authority" and _stale_ca(m):
        return make_verdict(m, host, STALE_CA, decisive=ids(r.failed_rows),
                            detail=detail + f"; test_version {m.envelope.test_version} predates the CA update", **kw)
    if (r.layer == "dns" and host in _RETIRED_HOSTS and others_resolved
            and failure_class(r.failure) is FailureClass.DNS_NAME):
        return make_verdict(m, host, RETIRED, decisive=ids(r.failed_rows), detail=detail, **kw)
    return make_verdict(m, host, BLOCKED[r.layer], decisive=ids(r.failed_rows), detail=detail, **kw)


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    tk = m.test_keys
    get = tk.get if isinstance(tk, dict) else (lambda k: getattr(tk, k, None))
    status, failure = get("signal_backend_status"), get("signal_backend_failure")
    groups = by_target(observations)
    if not groups:
        return [make_verdict(m, "backend", NO_DATA, detail="no observations: test keys empty or missing",
                             domain="signal.org", ooni_blocking=ooni_status(status, failure)[0],
                             ooni_accessible=ooni_status(status, failure)[1])]
    resolved = {h for h, rows in groups.items()
                if any(r.kind == "dns" and r.failure is None and r.dns_answer_ips for r in rows)}
    out = []
    for host, rows in groups.items():
        # OONI's status is per test; give its failure to the hosts that show it.
        shows = failure is not None and any(r.failure == failure for r in rows)
        ooni = (failure, False) if status == "blocked" and shows else \
            (None, True) if status == "ok" else (None, None)
        out.append(_host(m, host, rows, bool(resolved - {host, _UPTIME}), ooni))
    return out

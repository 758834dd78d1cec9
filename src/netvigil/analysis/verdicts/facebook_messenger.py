"""Facebook Messenger (ts-019) verdicts, one per service name.

OONI calls a name's DNS inconsistent when an answer lies outside Facebook's
AS32934, and the name unreachable when any TCP connect to a consistent IP
fails. Two refinements: Facebook also serves its CDN names from caches inside
ISPs (off-net "FNA" nodes, another ASN), so an off-AS answer that accepts the
TCP connect is not DNS tampering; and one failed connect among several
successes is noted, not called blocking. ``stun`` is UDP: DNS only.

The expected ASN is Facebook's, plus any ASN the probe itself vouched for: a
name the measurement marks ``dns_consistent: true`` resolved only into the
probe's expected network, so the ASNs recorded for its answers are expected
ones. OONI Probe expects only AS32934, so nothing changes for its data; a probe
told to expect another network (netvigil's lab, AS65000) is judged by it.
"""

from __future__ import annotations

from netvigil.analysis.rules import rule
from netvigil.analysis.verdicts._messaging import by_target, describe, ids
from netvigil.analysis.verdicts.common import make_verdict
from netvigil.model.archival import FACEBOOK_MESSENGER_ENDPOINTS
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = ["make_verdicts", "FACEBOOK_ASN"]

FACEBOOK_ASN = 32934
_CDN = frozenset({"external_cdn", "scontent_cdn"})
_DOMAINS = {
    "stun": "stun.fbsbx.com", "b_api": "b-api.facebook.com", "b_graph": "b-graph.facebook.com",
    "edge": "edge-mqtt.facebook.com", "external_cdn": "external.xx.fbcdn.net",
    "scontent_cdn": "scontent.xx.fbcdn.net", "star": "star.c10r.facebook.com",
}

OK = rule("facebook_messenger.endpoint.ok", Outcome.OK, None, 0.85, "strong",
          "the name resolved into Facebook's address space (or to a reachable off-net cache) and a TCP "
          "connect on 443 succeeded; for stun, DNS resolved into AS32934")
SOME_FAILED = rule("facebook_messenger.endpoint.some_failed", Outcome.OK, None, 0.5, "weak",
                   "annotation: some connects to this name's IPs failed while others succeeded")
OFFNET_REACHABLE = rule("facebook_messenger.endpoint.offnet_reachable", Outcome.OK, None, 0.6, "moderate",
                        "annotation: answers outside AS32934 accepted the connect (ISP-hosted Facebook cache); "
                        "OONI reports dns_consistent=false here")
DNS_FAILURE = rule("facebook_messenger.endpoint.dns_failure", Outcome.BLOCKED, Method.DNS, 0.6, "moderate",
                   "every lookup of the name failed (no control: could also be the local resolver)")
DNS_BOGON = rule("facebook_messenger.endpoint.dns_bogon", Outcome.BLOCKED, Method.DNS, 0.8, "strong",
                 "the name resolved only to private/reserved addresses")
DNS_INCONSISTENT = rule("facebook_messenger.endpoint.dns_inconsistent", Outcome.BLOCKED, Method.DNS, 0.6,
                        "moderate", "answers outside AS32934 that were unreachable or not tried (non-CDN name)")
DNS_OFFNET_UNVERIFIED = rule("facebook_messenger.endpoint.dns_offnet_unverified", Outcome.INCONCLUSIVE, None,
                             0.2, "weak", "a CDN name resolved outside AS32934 and nothing was tried: may be "
                             "an ISP-hosted cache")
TCP_BLOCKED = rule("facebook_messenger.endpoint.tcp_blocked", Outcome.BLOCKED, Method.TCP_IP, 0.7, "moderate",
                   "every TCP connect on 443 to the name's Facebook IPs failed")
NO_DATA = rule("facebook_messenger.endpoint.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
               "no lookup or connect recorded for this name")


def _ooni(get, group: str) -> tuple[str | None, bool | None]:
    legacy = "facebook-" + group.replace("_", "-")   # keys up to test version 0.3.0
    consistent = get(f"facebook_{group}_dns_consistent")
    if consistent is None:
        consistent = get(f"{legacy}-dns-consistent")
    reachable = get(f"facebook_{group}_reachable")
    if reachable is None:
        reachable = get(f"{legacy}-reachable")
    if consistent is None and reachable is None:
        return None, None
    if consistent is False:
        return "dns", False
    if reachable is False:
        return "tcp_ip", False
    return None, True


def _consistent_flag(get, group: str) -> bool | None:
    value = get(f"facebook_{group}_dns_consistent")
    if value is None:
        value = get("facebook-" + group.replace("_", "-") + "-dns-consistent")
    return value if isinstance(value, bool) else None


def _expected_asns(get, groups: dict[str, list[Observation]]) -> frozenset[int]:
    """AS32934 and the ASNs of the answers of every name the probe called consistent."""
    vouched = {asn for group, rows in groups.items() if _consistent_flag(get, group) is True
               for r in rows if r.kind == "dns" for asn in (r.dns_answer_asns or ())}
    return frozenset({FACEBOOK_ASN, *vouched})


def _judge(m: Measurement, group: str, dns: list[Observation], tcp: list[Observation],
           ooni: tuple[str | None, bool | None], expected: frozenset[int] = frozenset({FACEBOOK_ASN})) -> Verdict:
    domain = _DOMAINS.get(group)
    blocking, accessible = ooni

    def verdict(rule_, decisive, detail, fired=()):
        return make_verdict(m, group, rule_, fired=list(fired), decisive=ids(decisive), detail=detail,
                            domain=domain, ooni_blocking=blocking, ooni_accessible=accessible)

    if not dns and not tcp:
        return verdict(NO_DATA, [], "no observations")
    if dns and not any(r.failure is None and r.dns_answer_ips for r in dns):
        return verdict(DNS_FAILURE, dns, f"lookups failed: {describe(dns)}")
    answered = [r for r in dns if r.failure is None and r.dns_answer_ips]
    if answered and all(r.dns_bogon for r in answered):
        return verdict(DNS_BOGON, answered, f"bogon answers: {describe(answered)}")
    offnet_ips: set[str] = set()
    for r in answered:
        asns = r.dns_answer_asns or []
        ips = r.dns_answer_ips or []
        if len(asns) == len(ips):      # ASNs known for every answer (probe-cli records them)
            offnet_ips.update(ip for ip, asn in zip(ips, asns) if asn not in expected)
    offnet_dns = [r for r in answered if offnet_ips.intersection(r.dns_answer_ips or ())]
    ok_tcp = [r for r in tcp if r.failure is None]
    failed_tcp = [r for r in tcp if r.failure is not None]
    if group == "stun" or not tcp:
        if offnet_dns:
            if group in _CDN:
                return verdict(DNS_OFFNET_UNVERIFIED, offnet_dns, f"off-AS answers: {describe(offnet_dns)}")
            return verdict(DNS_INCONSISTENT, offnet_dns, f"off-AS answers: {describe(offnet_dns)}")
        if group == "stun":
            return verdict(OK, answered, f"resolved: {describe(answered)}")
        return verdict(NO_DATA, dns, "resolved but no connect recorded")
    if ok_tcp:
        fired = []
        detail = f"{len(ok_tcp)}/{len(tcp)} connects succeeded"
        if failed_tcp:
            fired.append(SOME_FAILED.rule_id)
            detail += f"; failed: {describe(failed_tcp)}"
        if any(r.ip in offnet_ips for r in ok_tcp):
            fired.append(OFFNET_REACHABLE.rule_id)
        return verdict(OK, ok_tcp, detail, fired)
    onnet_failed = [r for r in failed_tcp if r.ip not in offnet_ips]
    if onnet_failed:
        return verdict(TCP_BLOCKED, onnet_failed, f"all connects failed: {describe(onnet_failed)}")
    # Only off-AS IPs were tried and none answered: the answers led nowhere.
    return verdict(DNS_INCONSISTENT, offnet_dns + failed_tcp,
                   f"off-AS answers unreachable: {describe(offnet_dns + failed_tcp)}")


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    tk = m.test_keys
    get = tk.get if isinstance(tk, dict) else (lambda k: getattr(tk, k, None))
    groups = by_target(observations)
    expected = _expected_asns(get, groups)
    all_tcp = [o for o in observations if o.kind == "tcp"]
    out = []
    for group in FACEBOOK_MESSENGER_ENDPOINTS:
        rows = groups.get(group, [])
        dns = [r for r in rows if r.kind == "dns"]
        ips = {ip for r in dns for ip in (r.dns_answer_ips or ())}
        # Names share IPs: judge a name on every connect to an IP it resolved to.
        tcp = [r for r in all_tcp if r.ip in ips] if ips and group != "stun" else \
            [r for r in rows if r.kind == "tcp"]
        out.append(_judge(m, group, dns, tcp, _ooni(get, group), expected))
    return out

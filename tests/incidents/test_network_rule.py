"""The network rule (`inc.network.v1`) and the blocking pass's reading of throttled pages, on hand-made streams: a
failure most of the network shares at the same moment is the network's (a broken resolver, a congested link), mass
blocking is not mistaken for a broken network, an unreached probe without control repeats a proven DNS/TCP blocking,
and a throttled page is a page that arrived."""

from __future__ import annotations

from verdict_stream import ROUND, T0, verdict

from netvigil.incidents.detect import IncidentParams, NetworkRule, blocking_incidents, coverage_of, episodes_of
from netvigil.incidents.services import load_services
from netvigil.model.verdict import Verdict

SERVICES = load_services()
ASN = "AS64531"
TARGET = "https://www.facebook.com/"
OTHERS = ["https://apa.az/", "https://gov.az/", "https://president.az/", "https://telegram.org/",
          "https://mail.google.com/", "https://www.messenger.com/", "https://mincom.gov.az/"]
OFF = IncidentParams(network=NetworkRule(enabled=False))

# (outcome, rule, method) of the verdict kinds used below
OK = ("ok", "wc.https.ok", None)
TLS = ("blocked", "wc.tls.blocked", "tls")
TCP = ("blocked", "wc.tcp.blocked", "tcp_ip")
DNS_FAIL = ("blocked", "wc.dns.failure", "dns")
NO_RESPONSE = ("blocked", "wc.http.failure", "http-failure")
SLOW = ("throttled", "wc.http.throttled", "bandwidth")
UNREACHED = ("inconclusive", "wc.control.missing.unreached", None)
DOWN = ("down", "wc.tcp.down", None)


def v(i: int, url: str, kind: tuple[str, str, str | None], asn: str = ASN) -> Verdict:
    outcome, rule, method = kind
    return verdict(T0 + i * ROUND, asn, url, outcome, rule=rule, method=method or "")


def stream(target: dict[int, tuple], others: dict[int, tuple], rounds: int = 12,
           urls: list[str] = OTHERS) -> list[Verdict]:
    """One verdict per round for TARGET (``target[i]``, default ok) and every other URL (``others[i]``, default ok)."""
    out = []
    for i in range(rounds):
        out.append(v(i, TARGET, target.get(i, OK)))
        out.extend(v(i, url, others.get(i, OK)) for url in urls)
    return out


def episodes(vs: list[Verdict], params: IncidentParams = IncidentParams(), kind: str = "service-based"):
    return [(ne.key.target, (ne.episode.start - T0) / ROUND,
             None if ne.episode.end is None else (ne.episode.end - T0) / ROUND)
            for ne in episodes_of(vs, SERVICES, params) if ne.kind == kind]


def test_dns_failures_while_the_network_reached_nothing_are_the_networks() -> None:
    broken = {i: UNREACHED for i in (3, 4, 5)}
    vs = stream({3: DNS_FAIL, 4: DNS_FAIL, 5: DNS_FAIL}, broken)
    assert episodes(vs, OFF) == [(TARGET, 3, 6)]     # without the rule: three failures make a blocking
    assert episodes(vs) == []                         # the resolver was down for everyone
    # The same failures while the network reached everything else: the target's, a blocking.
    assert episodes(stream({3: DNS_FAIL, 4: DNS_FAIL, 5: DNS_FAIL}, {})) == [(TARGET, 3, 6)]
    # Inside a blocked stretch, the network's failure is counted as set aside, and neither ends nor extends it.
    tls = {i: TLS for i in range(3, 9)} | {5: DNS_FAIL}
    vs = stream(tls, {5: UNREACHED})
    [inc] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    assert (inc.start - T0) / ROUND == 3 and (inc.end - T0) / ROUND == 9
    assert inc.detail["network_failures_set_aside"] == "1" and inc.detail["measurements_blocked"] == "5"


def test_no_response_on_a_crawling_network_is_slowness_not_blocking() -> None:
    crawling = {i: SLOW for i in (3, 4, 5)}
    vs = stream({3: NO_RESPONSE, 4: NO_RESPONSE, 5: NO_RESPONSE}, crawling)
    assert episodes(vs, OFF) == [(TARGET, 3, 6)]
    assert episodes(vs) == []
    # A drop after the request while other pages arrive at full speed is blocking.
    assert episodes(stream({3: NO_RESPONSE, 4: NO_RESPONSE, 5: NO_RESPONSE}, {})) == [(TARGET, 3, 6)]
    # TLS handshake failures are never set aside, crawling network or not (SNI filtering looks exactly like this).
    assert episodes(stream({3: TLS, 4: TLS, 5: TLS}, crawling)) == [(TARGET, 3, 6)]


def test_mass_blocking_is_not_mistaken_for_a_broken_network() -> None:
    """Most of the list IP-blocked from round 3: the blocked targets are left out of each other's reference (the
    rule's first pass), so their TCP failures stay theirs."""
    blocked = OTHERS[:5]
    vs = []
    for i in range(12):
        for url in [TARGET, *OTHERS]:
            vs.append(v(i, url, TCP if url in blocked and 3 <= i < 9 else OK))
    found = episodes(vs)
    assert sorted(t for t, *_ in found) == sorted(blocked)
    assert all((s, e) == (3, 9) for _, s, e in found)


def test_an_unreached_probe_without_control_repeats_a_proven_tcp_blocking() -> None:
    # Blocked by TCP in rounds 3 and 4; in round 5 the control failed and the probe reached nothing (the rest of
    # the network was reachable): it repeats the blocking, which therefore meets the rule (three of four).
    vs = stream({3: TCP, 4: TCP, 5: UNREACHED}, {})
    assert episodes(vs, OFF) == []
    assert episodes(vs) == [(TARGET, 3, 6)]
    [inc] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    assert inc.methods == ["tcp_ip"] and inc.detail["network_rule"] == "inc.network.v1"
    assert episodes(vs, IncidentParams(network=NetworkRule(repeat=False))) == []


def test_unreached_verdicts_never_start_a_blocking_alone() -> None:
    assert episodes(stream({3: UNREACHED, 4: UNREACHED, 5: UNREACHED}, {})) == []
    # A site down for the control too, whose control then fails: nothing proved a blocking before.
    assert episodes(stream({3: DOWN, 4: UNREACHED, 5: DOWN, 6: UNREACHED, 7: UNREACHED}, {})) == []
    # Nor does an unreached verdict repeat a blocking while the whole network reached nothing.
    shutdown = {5: UNREACHED}
    assert episodes(stream({3: TCP, 4: TCP, 5: UNREACHED}, shutdown)) == []


def test_a_throttled_page_is_a_page_that_arrived() -> None:
    """On a slow link the odd timeout between throttled rounds does not add up to a blocked stretch, and a
    throttled page ends one."""
    flaky = {i: (NO_RESPONSE if i % 2 else SLOW) for i in range(2, 10)}
    assert episodes(stream(flaky, {}), OFF) == []
    assert episodes(stream({3: TLS, 4: TLS, 5: TLS, 6: SLOW, 7: SLOW, 8: SLOW}, {})) == [(TARGET, 3, 6)]
    # Throttling is still found in its own pass.
    slow = stream({i: SLOW for i in range(3, 9)}, {})
    assert episodes(slow, kind="throttling") == [(TARGET, 3, 9)]


def test_a_throttling_closed_by_a_shutdown_stays_a_throttling() -> None:
    """A throttled stretch whose network then reported only inconclusive verdicts is closed at its last
    observation, as a throttling incident (it once came out as service-based)."""
    vs = []
    for i in range(20):
        for url in [TARGET, *OTHERS]:
            if i >= 10:
                vs.append(v(i, url, UNREACHED))
            else:
                vs.append(v(i, url, SLOW if url == TARGET and i >= 3 else OK))
    [inc] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    assert inc.type == "throttling" and inc.detail["ends_not_observed"] == "1"
    assert (inc.start - T0) / ROUND == 3 and (inc.end - T0) / ROUND == 9

"""Whole-network throttling (`inc.throttling.network.v1`) on hand-made streams: a network whose unrelated pages come
slowly one after another, flapping on and off (what Web Connectivity sees of a throttled link, as on the lab's
az-2020 Azercell probes), is one throttling incident; one service's throttling (Twitter's targets, as in Russia
2021), or a few services among many that load at full speed, stays a service incident; blocking is untouched."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from verdict_stream import ROUND, T0, verdict

from netvigil.incidents.detect import (
    IncidentParams,
    NetworkThrottlingRule,
    blocking_incidents,
    coverage_of,
    episodes_of,
)
from netvigil.incidents.services import load_services
from netvigil.incidents.throttling import chains, network_wide, share_of
from netvigil.model.incident import Incident
from netvigil.model.verdict import Verdict

SERVICES = load_services()
ASN = "AS64531"
# Unrelated pages of the network (one service each) and pages blocked throughout (they never load).
PAGES = ["https://apa.az/", "https://gov.az/", "https://president.az/", "https://telegram.org/",
         "https://mail.google.com/", "https://www.messenger.com/"]
BLOCKED = ["https://www.facebook.com/", "https://www.instagram.com/"]
TWITTER = ["https://twitter.com/", "https://abs.twimg.com/", "https://pbs.twimg.com/", "https://t.co/"]
OFF = IncidentParams(throttling_network=NetworkThrottlingRule(enabled=False))

State = Callable[[int, str, str | None, str], str]


def stream(rounds: int, networks: list[tuple[str, str | None]], urls: list[str], state: State) -> list[Verdict]:
    """One verdict per round x network x URL; ``state`` gives ok / throttled / blocked."""
    out = []
    for i in range(rounds):
        for asn, region in networks:
            for url in urls:
                outcome = state(i, asn, region, url)
                method = {"throttled": "bandwidth", "blocked": "tls"}.get(outcome, "")
                out.append(verdict(T0 + i * ROUND, asn, url, outcome, region=region, method=method))
    return out


def flapping(first: int, last: int, throttled: list[str] = PAGES) -> State:
    """From round ``first`` to ``last`` (exclusive) each page of ``throttled`` comes slowly 3 rounds in 6, the pages
    taking turns (a throttled link seen by page loads: stretches of one page after another); BLOCKED always
    blocked; everything else ok."""
    def state(i: int, asn: str, region: str | None, url: str) -> str:
        if url in BLOCKED:
            return "blocked"
        if url in throttled and first <= i < last:
            k = throttled.index(url)
            return "throttled" if (i - first + k) % 6 < 3 else "ok"
        return "ok"
    return state


def incidents(vs: list[Verdict], params: IncidentParams = IncidentParams()) -> list[Incident]:
    return blocking_incidents(episodes_of(vs, SERVICES, params), coverage_of(vs), params)


def of_type(incs: list[Incident], kind: str) -> list[Incident]:
    return sorted((i for i in incs if i.type == kind), key=lambda i: (i.start, i.incident_id))


def at(i: int) -> dt.datetime:
    return T0 + i * ROUND


def test_unrelated_pages_throttled_in_turn_are_one_whole_network_throttling() -> None:
    vs = stream(40, [(ASN, None)], PAGES + BLOCKED, flapping(4, 34))
    before = of_type(incidents(vs, OFF), "throttling")
    assert len(before) >= len(PAGES)          # without the rule: one incident per page (or pages in step)
    incs = incidents(vs)
    [inc] = of_type(incs, "throttling")
    assert inc.services == [] and inc.detail["whole_network"] == "true"
    assert inc.detail["rule"] == "inc.throttling.network.v1" and inc.detail["stretch_rule"] == "inc.blocking.v2"
    assert inc.targets == sorted(PAGES) and inc.asns == [ASN] and inc.scope == "isp"
    assert inc.detail["services_throttled"].split(",") == sorted({SERVICES.service_of("web_connectivity", u, None)
                                                                  for u in PAGES})
    # Start and end: the earliest start and the latest end of the stretches it was made of.
    assert inc.start == min(i.start for i in before) and inc.end == max(i.end for i in before)
    assert inc.start - at(4) <= ROUND and inc.end - at(34) <= 3 * ROUND
    # The blocked pages never loaded: the share is of the pages that were delivered.
    assert (inc.detail["targets_throttled"], inc.detail["targets_delivered"]) == ("6", "6")
    # Evidence: the first stretch's start, the last stretch's end, a bounded number of verdicts in between.
    roles = [e.role for e in inc.evidence]
    assert {"before-start", "start", "before-end", "end", "during"} <= set(roles)
    assert roles.count("during") <= NetworkThrottlingRule().during_evidence
    assert min(e.time for e in inc.evidence if e.role == "start") == inc.start
    assert min(e.time for e in inc.evidence if e.role == "end") == inc.end
    assert all(e.measurement_uid and e.asn == ASN for e in inc.evidence)
    assert all(e.outcome == "throttled" for e in inc.evidence if e.role in ("start", "during"))
    assert 0 < inc.confidence <= 0.8 and inc.methods == ["bandwidth"]
    assert "Whole network throttled on AS64531" in inc.summary


def test_ids_are_stable_and_an_ongoing_network_throttling_keeps_its_id() -> None:
    vs = stream(40, [(ASN, None)], PAGES + BLOCKED, flapping(4, 34))
    [a] = of_type(incidents(vs), "throttling")
    [b] = of_type(incidents(list(reversed(vs))), "throttling")
    assert a.incident_id == b.incident_id and a.evidence == b.evidence
    early = [v for v in vs if v.measurement_start_time < at(24).strftime("%Y-%m-%d %H:%M:%S")]
    [ongoing] = of_type(incidents(early), "throttling")
    assert ongoing.end is None and ongoing.incident_id == a.incident_id and ongoing.start == a.start
    assert not any(e.role in ("end", "before-end") for e in ongoing.evidence)


def test_one_services_throttling_stays_a_service_incident() -> None:
    """Twitter's SNI throttled on its four targets (Russia 2021), everything else at full speed."""
    def state(i: int, asn: str, region: str | None, url: str) -> str:
        return "throttled" if url in TWITTER and 4 <= i < 30 else "ok"
    vs = stream(36, [(ASN, None)], TWITTER + PAGES, state)
    [inc] = of_type(incidents(vs), "throttling")
    assert inc.services == ["twitter"] and sorted(inc.targets) == sorted(TWITTER)
    assert "whole_network" not in inc.detail and inc.detail["rule"] == "inc.blocking.v2"
    # The same when Twitter's targets flap in turn, like the pages of a throttled link.
    vs = stream(36, [(ASN, None)], TWITTER + PAGES, flapping(4, 30, TWITTER))
    throttling = of_type(incidents(vs), "throttling")
    assert throttling and all(i.services == ["twitter"] and "whole_network" not in i.detail for i in throttling)
    assert [i.incident_id for i in throttling] == [i.incident_id for i in of_type(incidents(vs, OFF), "throttling")]


def test_two_services_or_a_few_among_many_fast_pages_stay_service_incidents() -> None:
    two = PAGES[:2]
    vs = stream(40, [(ASN, None)], PAGES + BLOCKED, flapping(4, 34, two))
    assert not any("whole_network" in i.detail for i in incidents(vs))
    assert {s for i in of_type(incidents(vs), "throttling") for s in i.services} == {"apa.az", "gov.az"}
    # Social media throttled together (three services) while 12 other pages load at full speed: 3 of 15 < 30 %.
    social = ["https://www.youtube.com/", "https://www.tiktok.com/", "https://twitter.com/"]
    others = PAGES + [f"https://site{n}.example/" for n in range(6)]
    vs = stream(40, [(ASN, None)], social + others, flapping(4, 34, social))
    throttling = of_type(incidents(vs), "throttling")
    assert throttling and not any("whole_network" in i.detail for i in throttling)
    assert {s for i in throttling for s in i.services} == {"tiktok", "twitter", "youtube"}
    # With the share lowered to what those three are, they are the network's.
    low = IncidentParams(throttling_network=NetworkThrottlingRule(min_share=0.2))
    [net] = of_type(incidents(vs, low), "throttling")
    assert net.detail["whole_network"] == "true" and net.detail["share_throttled"] == "0.20"


def test_stretches_further_apart_than_the_gap_are_not_chained() -> None:
    """Three pages throttled one after another with five clear rounds between them: no chain, three incidents."""
    def state(i: int, asn: str, region: str | None, url: str) -> str:
        k = PAGES.index(url) if url in PAGES[:3] else -1
        return "throttled" if k >= 0 and 2 + 10 * k <= i < 6 + 10 * k else "ok"
    vs = stream(36, [(ASN, None)], PAGES, state)
    throttling = of_type(incidents(vs), "throttling")
    assert len(throttling) == 3 and not any("whole_network" in i.detail for i in throttling)
    wide = IncidentParams(throttling_network=NetworkThrottlingRule(gap=8 * ROUND))
    [net] = of_type(incidents(vs, wide), "throttling")
    assert net.detail["whole_network"] == "true" and net.detail["episodes"] == "3"


def test_blocking_incidents_are_untouched() -> None:
    vs = stream(40, [(ASN, None), ("AS64528", None)], PAGES + BLOCKED, flapping(4, 34))
    on, off = incidents(vs), incidents(vs, OFF)
    assert of_type(on, "service-based") == of_type(off, "service-based")
    assert of_type(on, "service-based")[0].services == ["facebook", "instagram"]


def test_several_networks_throttled_together_are_one_national_incident() -> None:
    isps = [(ASN, None), ("AS64528", None), ("AS64529", None)]
    vs = stream(40, isps, PAGES + BLOCKED, flapping(4, 34))
    [inc] = of_type(incidents(vs), "throttling")
    assert inc.asns == ["AS64528", "AS64529", ASN] and inc.scope == "national"
    assert {e.asn for e in inc.evidence if e.role == "start"} == {a for a, _ in isps}
    # One network throttled much later (beyond the merge window) is an incident of its own.
    def late(i: int, asn: str, region: str | None, url: str) -> str:
        return flapping(20, 34)(i, asn, region, url) if asn == "AS64529" else flapping(4, 34)(i, asn, region, url)
    incs = of_type(incidents(stream(40, isps, PAGES + BLOCKED, late)), "throttling")
    assert [(i.asns, i.scope) for i in incs] == [(["AS64528", ASN], "several-isps"), (["AS64529"], "isp")]


def test_regions_of_one_network() -> None:
    regions = [(ASN, "baku"), (ASN, "frontier")]
    vs = stream(40, regions, PAGES + BLOCKED, flapping(4, 34))
    [inc] = of_type(incidents(vs), "throttling")
    assert (inc.scope, inc.regions, inc.asns) == ("isp", ["baku", "frontier"], [ASN])
    assert {e.note for e in inc.evidence if e.role == "start"} == {"baku", "frontier"}
    # Only the frontier's pages crawl, Baku's load at full speed: a regional whole-network throttling.
    def frontier(i: int, asn: str, region: str | None, url: str) -> str:
        return flapping(4, 34)(i, asn, region, url) if region == "frontier" else (
            "blocked" if url in BLOCKED else "ok")
    [inc] = of_type(incidents(stream(40, regions, PAGES + BLOCKED, frontier)), "throttling")
    assert (inc.scope, inc.regions, inc.detail["whole_network"]) == ("regional", ["frontier"], "true")


def test_chains_and_the_judgement() -> None:
    h = dt.timedelta(hours=1)
    spans = [(at(0), at(2)), (at(2) + h, at(4)), (at(10), None), (at(30), at(31)), (at(1), at(3))]
    assert chains(spans, dt.timedelta(hours=2)) == [[0, 4, 1], [2, 3]]   # an ongoing span keeps its chain open
    assert chains(spans[:2], dt.timedelta(0)) == [[0], [1]]
    assert chains([], h) == []
    rule = NetworkThrottlingRule()
    assert share_of({"a", "b"}, {"c"}) == 2 / 3 and share_of(set(), set()) == 0.0
    assert network_wide({"s1", "s2", "s3"}, {"a", "b", "c"}, {"d"}, rule)
    assert not network_wide({"s1", "s2"}, {"a", "b", "c"}, set(), rule)                 # two services
    assert not network_wide({"s1", "s2", "s3"}, {"a", "b", "c"}, set("defghijklmn"), rule)  # 3 of 14
    assert not network_wide({"s1", "s2", "s3"}, {"a", "b", "c"}, set(), NetworkThrottlingRule(enabled=False))

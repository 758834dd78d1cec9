"""The probes' own outage signal: what counts as "reached nothing", which entity a signal is about, and that a
region cut inside one network becomes a regional outage of that network only."""

from __future__ import annotations

from verdict_stream import ROUND, T0, campaign

from netvigil.incidents.from_outages import incidents_from_outages
from netvigil.incidents.outages import detect_outages
from netvigil.incidents.probe_signals import both_failed, probe_signals

NETS = [("AS64528", "baku"), ("AS64531", "baku"), ("AS64531", "frontier")]
URLS = ["https://www.facebook.com/", "https://apa.az/", "https://gov.az/"]
CUT = range(40, 48)


def state(i: int, asn: str, region: str | None, url: str) -> str:
    if region == "frontier" and i in CUT:
        return "inconclusive"
    return "blocked" if "facebook" in url and i >= 4 else "ok"


def verdicts():
    vs = campaign(56, NETS, URLS, state)
    for v in vs:
        if v.outcome == "inconclusive":
            v.rule_ids = ["wc.control.missing.unreached"]
    return vs


def test_only_reaching_nothing_counts_as_both_failing() -> None:
    vs = verdicts()
    cut = [v for v in vs if v.outcome == "inconclusive"]
    assert cut and all(both_failed(v) for v in cut)
    flaky_control = vs[0].__copy__()
    flaky_control.rule_ids = ["wc.control.missing"]   # the probe got past TCP: blocking, not an outage
    assert not both_failed(flaky_control)


def test_entities_follow_the_networks_regions() -> None:
    signals = {(s.entity_type, s.entity_code, s.asn) for s in probe_signals(verdicts(), step=ROUND)}
    assert signals == {("asn", "AS64528", "AS64528"), ("region", "AZ/baku", "AS64531"),
                       ("region", "AZ/frontier", "AS64531")}


def test_a_region_cut_is_a_regional_outage_of_its_network() -> None:
    events = detect_outages(probe_signals(verdicts(), step=ROUND))
    [inc] = incidents_from_outages(events)
    assert (inc.type, inc.scope, inc.regions, inc.asns, inc.country) == (
        "full-network", "regional", ["AZ/frontier"], ["AS64531"], "AZ")
    assert inc.start == T0 + CUT.start * ROUND and inc.end == T0 + CUT.stop * ROUND

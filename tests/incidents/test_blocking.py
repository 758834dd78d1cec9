"""Blocking incidents from verdict streams with a known truth: onset/end per network, merging into services and
scopes, stable ids, ongoing incidents, and the rule's tolerance for noise."""

from __future__ import annotations

import datetime as dt

from verdict_stream import ROUND, T0, campaign, verdict

from netvigil.incidents.blocking import BlockingRule, Point, detect_episodes
from netvigil.incidents.detect import IncidentParams, blocking_incidents, coverage_of, episodes_of
from netvigil.incidents.listing import IncidentFilter, link_related, select
from netvigil.incidents.services import load_services
from netvigil.model.incident import Incident

SERVICES = load_services()
ISPS = [("AS64528", None), ("AS64529", None), ("AS64531", None)]
URLS = ["https://www.facebook.com/", "https://www.instagram.com/", "https://telegram.org/", "https://apa.az/"]


def points(pattern: str) -> list[Point]:
    return [Point(T0 + i * ROUND, f"u{i}", f"r{i}", c == "x", "blocked" if c == "x" else "ok", "tls", 0.8)
            for i, c in enumerate(pattern)]


def rounds(e_time: dt.datetime | None) -> float | None:
    return None if e_time is None else (e_time - T0) / ROUND


def test_onset_and_end_are_the_first_verdicts_of_the_new_state() -> None:
    [e] = detect_episodes(points("....xxxx...."))
    assert (rounds(e.start), rounds(e.end)) == (4, 8)
    assert [p.uid for p in e.start_evidence] == ["u4", "u5", "u6"] and e.before_start.uid == "u3"
    assert [p.uid for p in e.end_evidence] == ["u8", "u9", "u10"] and e.before_end.uid == "u7"
    assert (e.bad, e.good) == (4, 0)


def test_one_odd_verdict_neither_starts_nor_ends_anything() -> None:
    assert detect_episodes(points("....x....x....")) == []
    [e] = detect_episodes(points("...xxx.xxxx...."))
    assert (rounds(e.start), rounds(e.end)) == (3, 11) and e.good == 1


def test_blocked_at_the_end_of_the_data_is_ongoing_and_later_data_does_not_move_it() -> None:
    [early] = detect_episodes(points("...xxxx"))
    [later] = detect_episodes(points("...xxxx" + "xxx..."))
    assert early.end is None and early.start == later.start and rounds(later.end) == 10


def test_an_odd_early_verdict_does_not_move_the_onset() -> None:
    """A failure, then a good verdict, then the real onset: the change is dated after the last good verdict."""
    [e] = detect_episodes(points("x.xxxx..."))
    assert (rounds(e.start), rounds(e.end), e.before_start.uid) == (2, 6, "u1")


def test_a_weak_failure_just_before_the_first_bad_verdict_dates_the_onset() -> None:
    pts = points("..?xxx...")
    pts[2] = Point(pts[2].time, "u2", "r2", False, "inconclusive", None, 0.3, weak=True)
    [e] = detect_episodes(pts)
    assert rounds(e.start) == 2 and [p.uid for p in e.start_evidence] == ["u3", "u4", "u5"]
    pts[1] = Point(pts[1].time, "u1", "r1", False, "inconclusive", None, 0.3, weak=True)
    [e] = detect_episodes(pts)
    assert rounds(e.start) == 2   # only the weak verdict directly before the first bad one dates it


def test_one_report_alone_is_not_enough() -> None:
    same_run = [Point(T0 + i * ROUND, f"u{i}", "r-one", c == "x", "blocked" if c == "x" else "ok")
                for i, c in enumerate("..xxxx..")]
    assert detect_episodes(same_run) == []
    assert detect_episodes(same_run, BlockingRule(min_reports=1))


def az_state(i: int, asn: str, region: str | None, url: str) -> str:
    if "facebook" in url or "instagram" in url:
        return "blocked" if 4 <= i < 20 else "ok"
    if "telegram" in url:
        return "blocked" if 4 <= i < 20 and asn != "AS64531" else "ok"
    return "ok"


def test_services_on_the_same_networks_merge_and_scope_follows_the_measured_networks() -> None:
    vs = campaign(28, ISPS, URLS, az_state)
    incidents = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    by_services = {tuple(i.services): i for i in incidents}
    assert set(by_services) == {("facebook", "instagram"), ("telegram",)}
    social, telegram = by_services[("facebook", "instagram")], by_services[("telegram",)]
    assert social.scope == "national" and social.asns == ["AS64528", "AS64529", "AS64531"]
    assert telegram.scope == "several-isps" and telegram.asns == ["AS64528", "AS64529"]
    for i in incidents:
        assert (rounds(i.start), rounds(i.end)) == (4, 20)
        assert i.type == "service-based" and i.methods == ["tls"] and i.source == "verdicts"
        starts = {e.asn for e in i.evidence if e.role == "start"}
        ends = {e.asn for e in i.evidence if e.role == "end"}
        assert starts == ends == set(i.asns)
        assert all(e.measurement_uid for e in i.evidence)
    assert "blocked by tls" in social.summary


def test_a_region_cut_off_from_a_service_is_a_regional_incident() -> None:
    nets = [("AS64531", "baku"), ("AS64531", "frontier"), ("AS64530", "baku")]

    def state(i: int, asn: str, region: str | None, url: str) -> str:
        return "blocked" if region == "frontier" and i >= 10 and "facebook" in url else "ok"

    vs = campaign(20, nets, URLS, state)
    [inc] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    assert (inc.scope, inc.regions, inc.asns, inc.end) == ("regional", ["frontier"], ["AS64531"], None)
    assert rounds(inc.start) == 10


def test_ids_are_stable_and_an_ongoing_incident_keeps_its_id_when_it_ends() -> None:
    vs = campaign(28, ISPS, URLS, az_state)
    early = [v for v in vs if v.measurement_start_time < (T0 + 12 * ROUND).strftime("%Y-%m-%d %H:%M:%S")]
    full_a = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    full_b = blocking_incidents(episodes_of(list(reversed(vs)), SERVICES), coverage_of(vs))
    assert [i.incident_id for i in full_a] == [i.incident_id for i in full_b]
    ongoing = blocking_incidents(episodes_of(early, SERVICES), coverage_of(early))
    assert {i.incident_id for i in ongoing} == {i.incident_id for i in full_a}
    assert all(i.end is None for i in ongoing) and all(i.end is not None for i in full_a)


def test_down_and_inconclusive_verdicts_do_not_interrupt_an_incident() -> None:
    def state(i: int, asn: str, region: str | None, url: str) -> str:
        if "facebook" not in url:
            return "ok"
        if 8 <= i < 12:
            return "inconclusive"  # a shutdown in the middle: nothing conclusive
        return "blocked" if 4 <= i < 16 else "ok"

    vs = campaign(20, ISPS[:1], URLS, state)
    [inc] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    assert (rounds(inc.start), rounds(inc.end)) == (4, 16)


def test_throttled_verdicts_make_a_throttling_incident() -> None:
    vs = [verdict(T0 + i * ROUND, "AS64528", "https://abs.twimg.com/", "throttled" if 2 <= i < 8 else "ok",
                  method="bandwidth") for i in range(12)]
    [inc] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    assert (inc.type, inc.services, inc.methods) == ("throttling", ["twitter"], ["bandwidth"])


def test_linking_and_filters() -> None:
    vs = campaign(28, ISPS, URLS, az_state)
    incidents = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    outage = Incident(incident_id="inc-outage", type="full-network", country="AZ", scope="isp",
                      start=T0 + 6 * ROUND, end=T0 + 8 * ROUND, asns=["AS64529"], source="signals")
    elsewhere = Incident(incident_id="inc-other", type="full-network", country="IR", scope="national",
                         start=T0 + 6 * ROUND, end=T0 + 8 * ROUND, source="ioda")
    linked = {i.incident_id: i for i in link_related([*incidents, outage, elsewhere])}
    assert set(linked["inc-outage"].related) == {i.incident_id for i in incidents}
    assert linked["inc-other"].related == []
    everything = list(linked.values())
    assert [i.incident_id for i in select(everything, IncidentFilter(service="telegram"))] == [
        i.incident_id for i in incidents if i.services == ["telegram"]]
    # A country-level incident (no ASNs) covers every network of its country, so filter by country as well.
    assert {i.incident_id for i in select(everything, IncidentFilter(country="AZ", asn="AS64531"))} == {
        i.incident_id for i in incidents if "AS64531" in i.asns}
    assert select(everything, IncidentFilter(country="IR"))[0].incident_id == "inc-other"
    assert select(everything, IncidentFilter(since=T0 + 30 * ROUND)) == []


def test_params_merge_window_splits_far_apart_onsets() -> None:
    def state(i: int, asn: str, region: str | None, url: str) -> str:
        first = 4 if asn == "AS64528" else 12
        return "blocked" if "facebook" in url and i >= first else "ok"

    vs = campaign(20, ISPS[:2], URLS, state)
    incidents = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs), IncidentParams())
    assert sorted((i.asns[0], rounds(i.start)) for i in incidents) == [("AS64528", 4), ("AS64529", 12)]
    wide = IncidentParams(merge_window=dt.timedelta(days=3))
    [merged] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs), wide)
    assert merged.asns == ["AS64528", "AS64529"] and rounds(merged.start) == 4


def test_blocking_hidden_by_a_shutdown_ends_at_its_last_observation() -> None:
    """A region cut off while a service was blocked: its probes go on reporting, but nothing conclusive; the blocking
    is closed at the last verdict that saw it rather than left ongoing forever."""
    def state(i: int, asn: str, region: str | None, url: str) -> str:
        if region == "frontier" and i >= 16:
            return "inconclusive"
        return "blocked" if 4 <= i < 16 and "facebook" in url else "ok"

    nets = [("AS64531", "baku"), ("AS64531", "frontier")]
    vs = campaign(28, nets, URLS, state)
    [inc] = blocking_incidents(episodes_of(vs, SERVICES), coverage_of(vs))
    assert (rounds(inc.start), rounds(inc.end)) == (4, 16)
    assert inc.detail["ends_not_observed"] == "1"
    frontier_end = [e for e in inc.evidence if e.note == "frontier" and e.role == "before-end"]
    assert [rounds(e.time) for e in frontier_end] == [15]

"""Timeline sentences from hand-made incidents: the shapes of the seed's entries, dated in the country's zone, each
carrying the measurement uids of the incident's evidence."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from report_data import NAMES, ev, incident

from netvigil.report.timeline import network_label, short_name, target_label, timeline_of, when_text

UTC = dt.timezone.utc
BAKU = ZoneInfo("Asia/Baku")
S = dt.datetime(2020, 9, 26, 22, 0, tzinfo=UTC)      # 27 Sep 02:00 in Baku
E = dt.datetime(2020, 11, 12, 0, 59, tzinfo=UTC)


def test_names_and_times():
    assert short_name("Baktelecom (stand-in for AS28787)") == "Baktelecom"
    assert short_name("ISP stand-in for AS42779") == "ISP stand-in for AS42779"
    assert network_label("AS64528", NAMES) == "AS64528 (Baktelecom)"
    assert network_label("AS1", {}) == "AS1"
    assert when_text(S, BAKU) == "27 Sep 2020 02:00 UTC+4"
    assert when_text(S) == "26 Sep 2020 22:00 UTC"
    assert when_text(S, ZoneInfo("Asia/Kolkata")) == "27 Sep 2020 03:30 UTC+5:30"
    assert target_label("https://web.whatsapp.com/") == "web.whatsapp.com"
    assert target_label("http://web.whatsapp.com/") == "web.whatsapp.com (plain HTTP)"
    assert target_label("e1.whatsapp.net:5222") == "e1.whatsapp.net"


def blocking(**kw):
    targets = ["https://facebook.com/", "https://instagram.com/", "https://whatsapp.com/"]
    evidence = []
    for n, asn in enumerate(("AS64528", "AS64531")):
        for t in targets:
            evidence.append(ev("before-start", S - dt.timedelta(hours=8), f"ok-{asn}-{t}", asn, t, "ok", None))
            evidence.append(ev("start", S + dt.timedelta(minutes=n), f"b-{asn}-{t}", asn, t))
            evidence.append(ev("end", E + dt.timedelta(minutes=n), f"e-{asn}-{t}", asn, t, "ok", None))
    base = dict(incident_id="inc-social", scope="national", asns=["AS64528", "AS64531"], start=S, end=E,
                services=["facebook", "instagram", "whatsapp"], targets=targets, methods=["tls"], evidence=evidence,
                detail={"episodes": "6", "ends_not_observed": "0"})
    base.update(kw)
    return incident(**base)


def test_start_and_end_of_a_national_block():
    entries = timeline_of([blocking()], names=NAMES, tz=BAKU)
    assert [e.kind for e in entries] == ["start", "end"]
    start, end = entries
    assert start.text.startswith(
        "27 Sep 2020 02:00 UTC+4: facebook.com, instagram.com, whatsapp.com blocked by TLS (SNI) filtering on "
        "every measured network: AS64528 (Baktelecom), AS64531 (Azercell). Evidence: ")
    assert start.time == S and start.incident_id == "inc-social"
    # every start uid, one per network first; the text shows three and counts the rest
    assert set(start.measurement_uids) == {e.measurement_uid for e in blocking().evidence if e.role == "start"}
    assert start.measurement_uids[:2] == ["b-AS64528-https://facebook.com/", "b-AS64531-https://facebook.com/"]
    assert "(+3 more)." in start.text
    assert end.text.startswith("12 Nov 2020 04:59 UTC+4: facebook.com, instagram.com, whatsapp.com reachable "
                               "again on every measured network: AS64528 (Baktelecom), AS64531 (Azercell) (blocked "
                               "since 27 Sep 2020). Evidence: e-AS64528")
    assert all(u.startswith("e-") for u in end.measurement_uids)


def test_an_ongoing_incident_says_so_and_has_no_end():
    inc = blocking(end=None, evidence=[e for e in blocking().evidence if e.role != "end"])
    entries = timeline_of([inc], names=NAMES, tz=BAKU)
    assert [e.kind for e in entries] == ["start"]
    assert "; ongoing at the end of the period. Evidence:" in entries[0].text


def test_changes_a_network_joins_leaves_and_a_method_appears():
    late = S + dt.timedelta(days=3)
    left = dt.datetime(2020, 10, 20, tzinfo=UTC)
    evidence = [
        ev("start", S, "a-start", "AS64528"),
        ev("end", E, "a-end", "AS64528", outcome="ok", method=None),
        ev("start", late, "b-start", "AS64529", method="dns"),
        ev("end", E, "b-end", "AS64529", outcome="ok", method=None),
        ev("start", S, "c-start", "AS64531"),
        ev("end", left, "c-end", "AS64531", outcome="ok", method=None),
        ev("start", S + dt.timedelta(days=5), "d-start", "AS64528", target="https://instagram.com/", method="dns"),
        ev("end", E, "d-end", "AS64528", target="https://instagram.com/", outcome="ok", method=None),
    ]
    inc = blocking(scope="several-isps", asns=["AS64528", "AS64529", "AS64531"], evidence=evidence,
                   targets=["https://facebook.com/", "https://instagram.com/"], methods=["tls", "dns"])
    entries = timeline_of([inc], names=NAMES, tz=BAKU)
    texts = [(e.kind, e.text) for e in entries]
    assert texts[0][1].startswith("27 Sep 2020 02:00 UTC+4: facebook.com and instagram.com blocked by TLS (SNI) "
                                  "filtering (also seen: DNS tampering) on AS64528 (Baktelecom), AS64531 (Azercell). "
                                  "Evidence: a-start, c-start")
    changes = [t for k, t in texts if k == "change"]
    assert changes[0] == ("30 Sep 2020 02:00 UTC+4: AS64529 (Aztelekom) joins: facebook.com blocked by DNS tampering "
                          "there too (incident since 27 Sep 2020). Evidence: b-start.")
    assert changes[1] == ("2 Oct 2020 02:00 UTC+4: instagram.com on AS64528 (Baktelecom) now also blocked by DNS "
                          "tampering. Evidence: d-start.")
    assert changes[2] == ("20 Oct 2020 04:00 UTC+4: facebook.com reachable again on AS64531 (Azercell); still "
                          "blocked on other networks. Evidence: c-end.")
    assert texts[-1][0] == "end"
    assert "reachable again on AS64528 (Baktelecom), AS64529 (Aztelekom) (blocked since 27 Sep 2020)" in texts[-1][1]
    assert [e.time for e in entries] == sorted(e.time for e in entries)


def test_throttling_and_an_unobserved_end():
    t = dt.datetime(2020, 10, 1, 10, tzinfo=UTC)
    inc = incident(incident_id="inc-thr", type="throttling", scope="regional", asns=["AS64531"],
                   regions=["frontier"], services=["whatsapp"], targets=["http://web.whatsapp.com/"],
                   methods=["bandwidth"], start=t, end=t + dt.timedelta(days=2),
                   evidence=[ev("start", t, "t1", "AS64531", "http://web.whatsapp.com/", "throttled", "bandwidth",
                                "frontier"),
                             ev("before-end", t + dt.timedelta(days=2), "t2", "AS64531", "http://web.whatsapp.com/",
                                "throttled", "bandwidth", "frontier")],
                   detail={"episodes": "1", "ends_not_observed": "1"})
    start, end = timeline_of([inc], names=NAMES, tz=BAKU)
    assert start.text == ("1 Oct 2020 14:00 UTC+4: web.whatsapp.com (plain HTTP) throttled in region frontier on "
                          "AS64531 (Azercell). Evidence: t1.")
    assert end.text == ("3 Oct 2020 14:00 UTC+4: web.whatsapp.com (plain HTTP) last seen throttled in region frontier "
                        "on AS64531 (Azercell) (throttled since 1 Oct 2020); the end was not observed: the network "
                        "stopped giving conclusive measurements. Evidence: t2.")


def test_whole_network_throttling_says_all_traffic():
    t = dt.datetime(2020, 9, 27, 18, tzinfo=UTC)
    inc = incident(incident_id="inc-net", type="throttling", scope="isp", asns=["AS64531"], services=[],
                   targets=["https://apa.az/", "https://gov.az/"], methods=["bandwidth"], start=t, end=None,
                   evidence=[ev("start", t, "s1", "AS64531", "https://apa.az/", "throttled", "bandwidth")],
                   detail={"whole_network": "true", "episodes": "2", "ends_not_observed": "0"})
    (start,) = timeline_of([inc], names=NAMES, tz=BAKU)
    assert start.text.startswith("27 Sep 2020 22:00 UTC+4: all traffic (slow pages: apa.az and gov.az) throttled on "
                                 "AS64531 (Azercell); ongoing at the end of the period."), start.text


def test_outages_merged_regional_and_imported():
    s = dt.datetime(2020, 11, 4, 20, tzinfo=UTC)
    e = dt.datetime(2020, 11, 11, 20, tzinfo=UTC)
    merged = incident(incident_id="out-state", type="full-network", source="signals", scope="several-isps",
                      asns=["AS64528", "AS64529"], services=[], targets=[], methods=["probe:both-fail"], start=s, end=e,
                      evidence=[ev("start", s, "u1", "AS64528", outcome="inconclusive", method=None),
                                ev("start", s, "u2", "AS64529", outcome="inconclusive", method=None),
                                ev("end", e, "u3", "AS64528", outcome="ok", method=None)])
    region = incident(incident_id="out-front", type="full-network", source="signals", scope="regional",
                      asns=["AS64531"], regions=["AZ/frontier"], services=[], targets=[], methods=["probe:both-fail"],
                      start=dt.datetime(2020, 11, 12, tzinfo=UTC), end=None,
                      evidence=[ev("start", dt.datetime(2020, 11, 12, tzinfo=UTC), "u4", "AS64531")])
    ioda = incident(incident_id="out-ioda", type="full-network", source="ioda", scope="national", asns=[],
                    services=[], targets=[], methods=["bgp", "ping-slash24"], start=s, end=e,
                    evidence=[Evidence_signal(s)])
    entries = timeline_of([merged, region, ioda], names=NAMES, tz=BAKU)
    texts = [x.text for x in entries]
    assert ("5 Nov 2020 00:00 UTC+4: Baktelecom AS64528 and Aztelekom AS64529 largely unreachable (full-network "
            "outage). Evidence: u1, u2.") in texts
    assert ("12 Nov 2020 00:00 UTC+4: Baktelecom AS64528 and Aztelekom AS64529 reachable again (outage since "
            "5 Nov 2020). Evidence: u3.") in texts
    assert ("12 Nov 2020 04:00 UTC+4: Azercell AS64531 largely unreachable in region frontier (full-network outage); "
            "ongoing at the end of the period. Evidence: u4.") in texts
    assert ("5 Nov 2020 00:00 UTC+4: AZ nationwide largely unreachable (full-network outage, seen by IODA on bgp, "
            "ping-slash24).") in texts
    assert [x.measurement_uids for x in entries if x.incident_id == "out-ioda"] == [[], []]


def Evidence_signal(t):
    from netvigil.model.incident import Evidence

    return Evidence(role="start", time=t, source="ioda", method="bgp", note="score 1")


def test_order_is_by_time_then_kind_and_deterministic():
    a = blocking()
    b = blocking(incident_id="inc-b", start=S, end=S + dt.timedelta(hours=1),
                 evidence=[ev("start", S, "x", "AS64528"), ev("end", S + dt.timedelta(hours=1), "y", "AS64528")])
    one = timeline_of([a, b], names=NAMES, tz=BAKU)
    two = timeline_of([b, a], names=NAMES, tz=BAKU)
    assert one == two
    assert [e.kind for e in one][:2] == ["start", "start"]


def test_a_regional_block_on_several_networks_names_the_region_where_it_is_a_part():
    t = dt.datetime(2020, 9, 27, 6, tzinfo=UTC)
    inc = incident(incident_id="inc-gov", scope="regional", asns=["AS64528", "AS64531"], regions=["baku"],
                   services=["gov.az"], targets=["https://gov.az/"], methods=["tcp_ip"], start=t,
                   evidence=[ev("start", t, "g1", "AS64528", "https://gov.az/", method="tcp_ip", note="baku"),
                             ev("start", t, "g2", "AS64531", "https://gov.az/", method="tcp_ip", note="baku")])
    (start,) = timeline_of([inc], names=NAMES, tz=BAKU, regions={"AS64528": ["baku"], "AS64531": ["baku", "frontier"]})
    assert start.text.startswith("27 Sep 2020 10:00 UTC+4: gov.az blocked by TCP/IP blocking on AS64528 (Baktelecom), "
                                 "AS64531 (Azercell, region baku only); ongoing")

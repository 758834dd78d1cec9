"""User reports against measured incidents (netvigil.incidents.agreement, rule agree.v1): pure cases."""

from __future__ import annotations

import datetime as dt

from netvigil.incidents.agreement import SYMPTOM_TYPES, agreement, isp_matches
from netvigil.model.incident import Evidence, Incident
from netvigil.model.userreport import REPORT_SYMPTOMS, UserReport

UTC = dt.UTC
T0 = dt.datetime(2020, 9, 27, 6, 0, tzinfo=UTC)
NETWORKS = {"AS64528": "Baktelecom (stand-in for AS28787)", "AS64527": "Bakinternet (Baktelecom's retail ISP)",
            "AS64531": "Azercell (stand-in for AS31721)", "AS64533": "ISP stand-in for AS196925"}


def report(symptom: str, at: dt.datetime, *, rid: str = "r1", **kw: object) -> UserReport:
    fields: dict[str, object] = {"country": "AZ", **kw}
    return UserReport(report_id=rid, received_at=at, reported_at=at, symptom=symptom, **fields)  # type: ignore[arg-type]


def blocking(services: list[str], asns: list[str], start: dt.datetime = T0, end: dt.datetime | None = None, *,
             iid: str = "inc-block", scope: str = "isp", regions: list[str] | None = None,
             kind: str = "service-based") -> Incident:
    end = end if end is not None else start + dt.timedelta(days=10)
    evidence = []
    for asn in asns:
        evidence += [
            Evidence(role="before-start", time=start - dt.timedelta(hours=8), measurement_uid=f"ok-before-{asn}",
                     asn=asn, outcome="ok"),
            Evidence(role="start", time=start, measurement_uid=f"bad-{asn}", asn=asn, outcome="blocked",
                     method="tls"),
            Evidence(role="end", time=end, measurement_uid=f"ok-after-{asn}", asn=asn, outcome="ok"),
        ]
    return Incident(incident_id=iid, type=kind, country="AZ", scope=scope, start=start, end=end, asns=asns,
                    services=services, regions=regions or [], evidence=evidence)


def outage(asns: list[str], start: dt.datetime = T0, hours: float = 12, *, iid: str = "inc-down",
           scope: str = "isp") -> Incident:
    return Incident(incident_id=iid, type="full-network", country="AZ", scope=scope, start=start,
                    end=start + dt.timedelta(hours=hours), asns=asns, source="signals")


def throttling(asns: list[str], services: list[str] | None = None, *, iid: str = "inc-slow",
               scope: str = "national") -> Incident:
    return Incident(incident_id=iid, type="throttling", country="AZ", scope=scope, start=T0,
                    end=T0 + dt.timedelta(days=5), asns=asns, services=services or [])


def ids(links: list) -> list[str]:
    return [link.incident_id for link in links]


def test_every_symptom_has_compatible_types() -> None:
    assert set(SYMPTOM_TYPES) == set(REPORT_SYMPTOMS)


def test_blocked_site_on_the_same_network_and_service_agrees() -> None:
    inc = blocking(["facebook", "instagram"], ["AS64531"])
    [res] = agreement([report("site-blocked", T0 + dt.timedelta(days=1), asn="AS64531", service="facebook")], [inc])
    assert res.standing == "confirmed" and ids(res.agrees) == ["inc-block"] and res.disagrees == []
    assert res.agrees[0].reason.startswith("facebook blocked on AS64531, measured from 2020-09-27 06:00 UTC")


def test_other_service_other_network_or_country_is_no_relation() -> None:
    inc = blocking(["facebook"], ["AS64531"])
    at = T0 + dt.timedelta(days=1)
    cases = [
        report("site-blocked", at, asn="AS64531", service="youtube"),
        report("site-blocked", at, asn="AS64528", service="facebook"),
        report("site-blocked", at, asn="AS64531", service="facebook", country="GE"),
    ]
    for res in agreement(cases, [inc]):
        assert (res.standing, res.agrees, res.disagrees) == ("unconfirmed", [], [])


def test_isp_by_name_and_real_asn_through_the_network_names() -> None:
    inc = blocking(["facebook"], ["AS64528", "AS64527", "AS64531"], scope="several-isps")
    at = T0 + dt.timedelta(hours=3)
    by_name = report("site-blocked", at, isp="Azercell Telecom", service="facebook")
    by_real_asn = report("site-blocked", at, asn="AS28787", service="facebook")
    res = agreement([by_name, by_real_asn], [inc], networks=NETWORKS)
    assert all(r.standing == "confirmed" for r in res)
    assert "on AS64531," in res[0].agrees[0].reason and "on AS64528," in res[1].agrees[0].reason
    # Without names a report that names only its ISP cannot be placed.
    assert agreement([by_name], [inc])[0].standing == "unconfirmed"


def test_isp_names_match_on_their_first_word_only() -> None:
    assert isp_matches("Azercell", "Azercell (stand-in for AS31721)")
    assert isp_matches("azercell telecom llc", "Azercell (stand-in for AS31721)")
    assert not isp_matches("Baktelecom", "Bakinternet (Baktelecom's retail ISP)")
    assert not isp_matches("ISP", "ISP stand-in for AS196925")  # generic words name nothing
    assert not isp_matches("", "Azercell")


def test_symptoms_need_a_compatible_incident_type() -> None:
    at = T0 + dt.timedelta(hours=2)
    slow_net = throttling(["AS64531", "AS64528"])
    down = outage(["AS64531"])
    block = blocking(["whatsapp"], ["AS64531"])
    incidents = [slow_net, down, block]
    res = agreement([
        report("slow", at, rid="slow", asn="AS64531"),
        report("no-connection", at, rid="down", asn="AS64531"),
        report("app-blocked", at, rid="app", asn="AS64531", service="whatsapp"),
        report("videos-images-not-loading", at, rid="media", asn="AS64531"),
        report("no-connection", at, rid="wa-down", asn="AS64531", service="whatsapp"),
    ], incidents)
    agreed = {r.report.report_id: ids(r.agrees) for r in res}
    assert agreed == {"slow": ["inc-slow"], "down": ["inc-down"], "app": ["inc-block"], "media": ["inc-slow"],
                      "wa-down": ["inc-down", "inc-block"]}


def test_site_blocked_agrees_with_that_service_throttled_not_with_a_slow_network() -> None:
    at = T0 + dt.timedelta(hours=2)
    twitter = throttling(["AS64531"], ["twitter"], iid="inc-twitter", scope="isp")
    slow_net = throttling(["AS64531"], iid="inc-net", scope="isp")
    [res] = agreement([report("site-blocked", at, asn="AS64531", service="twitter")], [twitter, slow_net])
    assert ids(res.agrees) == ["inc-twitter"]


def test_no_connection_while_measurements_got_through_disagrees() -> None:
    inc = blocking(["facebook"], ["AS64531"])
    [res] = agreement([report("no-connection", T0 + dt.timedelta(days=2), asn="AS64531")], [inc])
    assert res.standing == "unconfirmed" and res.agrees == []
    [link] = res.disagrees
    assert link.incident_id == "inc-block" and link.measurement_uids == ["bad-AS64531"]
    assert link.reason == "measurements on AS64531 got through at that time; only facebook was blocked"


def test_report_after_the_end_is_contradicted_by_the_good_measurements() -> None:
    inc = blocking(["facebook"], ["AS64531", "AS64528"], end=T0 + dt.timedelta(days=3), scope="several-isps")
    end = T0 + dt.timedelta(days=3)
    soon = report("site-blocked", end + dt.timedelta(hours=7), asn="AS64531", service="facebook")
    later = report("site-blocked", end + dt.timedelta(days=3), asn="AS64531", service="facebook")
    res_soon, res_later = agreement([soon, later], [inc])
    [link] = res_soon.disagrees
    assert link.measurement_uids == ["ok-after-AS64531"]  # the report's own network, not the other one
    assert "found facebook working again from 2020-09-30 06:00 UTC" in link.reason
    assert res_later.disagrees == [] and res_later.standing == "unconfirmed"  # beyond the horizon: nothing to say


def test_report_before_the_start_and_the_slack() -> None:
    inc = blocking(["facebook"], ["AS64531"])
    early = report("site-blocked", T0 - dt.timedelta(hours=5), asn="AS64531", service="facebook")
    assert agreement([early], [inc])[0].standing == "confirmed"  # within the default slack of 6 hours
    [res] = agreement([early], [inc], slack=dt.timedelta(hours=1))
    assert res.standing == "unconfirmed" and res.disagrees[0].measurement_uids == ["ok-before-AS64531"]
    assert "working until 2020-09-27 06:00 UTC" in res.disagrees[0].reason


def test_ongoing_incident_covers_any_later_time() -> None:
    inc = blocking(["telegram"], ["AS64531"])
    inc = Incident(**{**{f: getattr(inc, f) for f in inc.__struct_fields__}, "end": None})
    [res] = agreement([report("app-blocked", T0 + dt.timedelta(days=300), asn="AS64531", service="telegram")], [inc])
    assert res.standing == "confirmed" and "(ongoing)" in res.agrees[0].reason


def test_agreement_suppresses_disagreements() -> None:
    first = blocking(["facebook"], ["AS64531"], end=T0 + dt.timedelta(days=1), iid="inc-first")
    again = blocking(["facebook"], ["AS64531"], start=T0 + dt.timedelta(days=2), iid="inc-again")
    [res] = agreement([report("site-blocked", T0 + dt.timedelta(days=2, hours=1), asn="AS64531",
                              service="facebook")], [first, again])
    assert ids(res.agrees) == ["inc-again"] and res.disagrees == []
    # In the gap between the two, the measurements said it worked: both disagree.
    [gap] = agreement([report("site-blocked", T0 + dt.timedelta(days=1, hours=12), asn="AS64531",
                              service="facebook")], [first, again])
    assert gap.standing == "unconfirmed" and sorted(ids(gap.disagrees)) == ["inc-again", "inc-first"]


def test_regions_and_reports_without_a_network() -> None:
    at = T0 + dt.timedelta(hours=1)
    regional = blocking(["whatsapp"], ["AS64531"], iid="inc-frontier", scope="regional", regions=["frontier"])
    national = blocking(["youtube"], ["AS64531", "AS64528"], iid="inc-national", scope="national")
    isp_only = blocking(["youtube"], ["AS64528"], iid="inc-isp")
    res = agreement([
        report("app-blocked", at, rid="baku", asn="AS64531", service="whatsapp", region="Baku"),
        report("app-blocked", at, rid="front", asn="AS64531", service="whatsapp", region="Frontier districts"),
        report("app-blocked", at, rid="nowhere", asn="AS64531", service="whatsapp"),
        report("site-blocked", at, rid="no-net", service="youtube"),
    ], [regional, national, isp_only])
    agreed = {r.report.report_id: ids(r.agrees) for r in res}
    assert agreed == {"baku": [], "front": ["inc-frontier"], "nowhere": ["inc-frontier"], "no-net": ["inc-national"]}


def test_country_level_incident_matches_any_network() -> None:
    country = Incident(incident_id="inc-ioda", type="full-network", country="AZ", scope="national", start=T0,
                       end=T0 + dt.timedelta(hours=4), source="ioda")
    res = agreement([report("no-connection", T0 + dt.timedelta(hours=1), isp="Nar"),
                     report("no-connection", T0 + dt.timedelta(hours=1), rid="r2")], [country])
    assert [r.standing for r in res] == ["confirmed", "confirmed"]
    assert res[0].agrees[0].reason.startswith("the whole network down on AZ")


def test_order_and_determinism() -> None:
    incs = [blocking(["facebook"], ["AS64531"]), outage(["AS64531"]), throttling(["AS64531"])]
    reps = [report(s, T0 + dt.timedelta(hours=h), rid=f"r{i}", asn="AS64531", service="facebook")
            for i, (s, h) in enumerate([("slow", 1), ("site-blocked", 2), ("no-connection", 3), ("other", 4)])]
    first = agreement(reps, incs)
    assert [r.report.report_id for r in first] == ["r0", "r1", "r2", "r3"]
    assert agreement(reps, incs) == first
    assert ids(first[3].agrees) == ["inc-block", "inc-down", "inc-slow"]  # "other" rules no type out

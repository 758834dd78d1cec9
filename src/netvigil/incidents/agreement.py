"""Do people's reports agree with the measured incidents? (rule ``agree.v1``, docs/user-reports.md)

The seed leans on what people posted ("the internet slowed down, videos and images would not load"). A user report
says when, where (country, place, ISP), which service and which symptom; an incident says the same from
measurements. A report **agrees** with an incident when they name the same place and network, the same service
(any service for a network-wide incident), a symptom the incident's type explains (:data:`SYMPTOM_TYPES`), and
the report's time falls inside the incident, give or take ``slack`` (probes measure in rounds, people remember
"this morning").

A report **disagrees** with an incident when the incident's own measurements say otherwise:

- the report claims the same disruption shortly (within ``horizon``) before the incident started or after it
  ended: the incident's measurements say the service was reachable then (its ``before-start`` and ``end``
  evidence, cited by measurement uid where there is one);
- the report says "no connection" while the incident shows other traffic of that network getting through
  (a service-based or service throttling incident that does not include the report's service): the network was
  up, only some services were not.

Disagreements are listed only for reports that agree with nothing. Neither makes a report true or false: a report
that agrees with an incident stands ``confirmed`` by measurements; any other one stays ``unconfirmed`` (probes do
not measure everything, everywhere, all the time), with the disagreements beside it as the reason to doubt it.
Pure: no I/O, the same input gives the same output.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from netvigil.model.incident import Evidence, Incident, IncidentType, Scope
from netvigil.model.userreport import UserReport

__all__ = [
    "RULE_ID",
    "SYMPTOM_SERVICE_TYPES",
    "SYMPTOM_TYPES",
    "AgreementParams",
    "Link",
    "ReportAgreement",
    "agreement",
    "isp_matches",
]

RULE_ID = "agree.v1"

_SERVICE_BASED = IncidentType.SERVICE_BASED.value
_THROTTLING = IncidentType.THROTTLING.value
_FULL_NETWORK = IncidentType.FULL_NETWORK.value

# Which incident types explain which symptom. "slow" is throttling; "no connection" a network down; a blocked site
# or app a service-based incident; images and videos that do not load are what throttling and blocked CDNs look
# like; "other" says too little to rule any type out.
SYMPTOM_TYPES: dict[str, frozenset[str]] = {
    "slow": frozenset({_THROTTLING}),
    "no-connection": frozenset({_FULL_NETWORK}),
    "site-blocked": frozenset({_SERVICE_BASED}),
    "app-blocked": frozenset({_SERVICE_BASED}),
    "videos-images-not-loading": frozenset({_THROTTLING, _SERVICE_BASED}),
    "other": frozenset({_SERVICE_BASED, _THROTTLING, _FULL_NETWORK}),
}
# Types that explain a symptom only when the incident names the report's service: "no connection to WhatsApp" is
# WhatsApp blocked, "Twitter is blocked" may be Twitter throttled to a standstill.
SYMPTOM_SERVICE_TYPES: dict[str, frozenset[str]] = {
    "no-connection": frozenset({_SERVICE_BASED}),
    "site-blocked": frozenset({_THROTTLING}),
    "app-blocked": frozenset({_THROTTLING}),
}
_VERBS = {_SERVICE_BASED: "blocked", _THROTTLING: "slowed down", _FULL_NETWORK: "down"}
# Words that name no ISP in particular: a report's ISP is matched on its first word, never on one of these.
_GENERIC_WORDS = frozenset({"isp", "the", "mobile", "internet", "telecom", "network", "networks", "llc", "jsc",
                            "ojsc", "cjsc", "ltd", "inc", "as"})
_WORD = re.compile(r"[a-z0-9]+")
_ASN_WORD = re.compile(r"\bAS\d+\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AgreementParams:
    slack: dt.timedelta = dt.timedelta(hours=6)     # a report this far outside an incident still overlaps it
    horizon: dt.timedelta = dt.timedelta(days=2)    # how far beyond slack an incident's end/start contradicts


class Link(msgspec.Struct, frozen=True, kw_only=True):
    """One report-incident relation and why."""

    incident_id: str
    relation: str                    # "agrees" | "disagrees"
    reason: str                      # one factual sentence
    measurement_uids: list[str] = []  # measurements behind a disagreement (the good verdicts), where known


class ReportAgreement(msgspec.Struct, frozen=True, kw_only=True):
    report: UserReport
    standing: str                    # "confirmed" (agrees with an incident) | "unconfirmed"
    agrees: list[Link] = []
    disagrees: list[Link] = []
    rule: str = RULE_ID


def agreement(
    reports: Sequence[UserReport],
    incidents: Sequence[Incident],
    *,
    slack: dt.timedelta | None = None,
    horizon: dt.timedelta | None = None,
    networks: Mapping[str, str] | None = None,
) -> list[ReportAgreement]:
    """For each report (in order) the incidents it agrees and disagrees with (see the module doc).

    ``networks`` maps ASNs to their names (``Publication.networks``), so that a report naming its ISP rather than
    its ASN can be placed; an ASN written in a network's name ("stand-in for AS28787") places a report giving that
    ASN too.
    """
    default = AgreementParams()
    p = AgreementParams(slack=default.slack if slack is None else slack,
                        horizon=default.horizon if horizon is None else horizon)
    names = dict(networks or {})
    # The ASNs each network answers to: its own, and any written in its name.
    aliases = {asn: {asn.upper(), *(w.upper() for w in _ASN_WORD.findall(name))} for asn, name in names.items()}
    reach = p.slack + p.horizon
    by_country: dict[str, list[tuple[Incident, dt.datetime, dt.datetime | None]]] = {}
    for incident in incidents:
        if incident.country:
            end = _utc(incident.end) if incident.end is not None else None
            by_country.setdefault(incident.country.upper(), []).append((incident, _utc(incident.start), end))
    out = []
    for report in reports:
        agrees: list[Link] = []
        disagrees: list[Link] = []
        t = _utc(report.reported_at)
        for incident, start, end in by_country.get(report.country.upper(), ()):
            if t < start - reach or (end is not None and t > end + reach):
                continue  # too far from the incident to say anything
            asns = _report_asns(report, incident, names, aliases)
            if asns is None or not _same_region(report, incident):
                continue
            link = _judge(report, incident, asns, p)
            if link is not None:
                (agrees if link.relation == "agrees" else disagrees).append(link)
        if agrees:
            disagrees = []
        out.append(ReportAgreement(report=report, standing="confirmed" if agrees else "unconfirmed",
                                   agrees=agrees, disagrees=disagrees))
    return out


def _judge(report: UserReport, incident: Incident, asns: list[str], p: AgreementParams) -> Link | None:
    t = _utc(report.reported_at)
    start = _utc(incident.start)
    end = _utc(incident.end) if incident.end is not None else None
    overlaps = start - p.slack <= t and (end is None or t <= end + p.slack)
    service_ok = _service_matches(report, incident)
    type_ok = incident.type in SYMPTOM_TYPES.get(report.symptom, frozenset()) or (
        incident.type in SYMPTOM_SERVICE_TYPES.get(report.symptom, frozenset())
        and report.service is not None and report.service in incident.services)
    where = ", ".join(asns) if asns else (incident.country or "the country")
    if report.service is not None and report.service in incident.services:
        what = report.service
    else:
        what = ", ".join(incident.services) if incident.services else "the whole network"
    if service_ok and type_ok:
        if overlaps:
            return Link(incident_id=incident.incident_id, relation="agrees",
                        reason=f"{what} {_VERBS.get(incident.type, 'disrupted')} on {where}, measured from "
                               f"{_when(start)}{' (ongoing)' if end is None else ' to ' + _when(end)}")
        if t < start - p.slack and t >= start - p.slack - p.horizon:
            uids = _ok_uids(incident, asns, "before-start")
            return Link(incident_id=incident.incident_id, relation="disagrees", measurement_uids=uids,
                        reason=f"measurements on {where} found {what} working until {_when(start)}, "
                               f"after the reported time")
        if end is not None and end + p.slack < t <= end + p.slack + p.horizon:
            uids = _ok_uids(incident, asns, "end")
            return Link(incident_id=incident.incident_id, relation="disagrees", measurement_uids=uids,
                        reason=f"measurements on {where} found {what} working again from {_when(end)}, "
                               f"before the reported time")
        return None
    if (report.symptom == "no-connection" and overlaps and incident.services
            and incident.type in (_SERVICE_BASED, _THROTTLING) and report.service not in incident.services):
        uids = _measured_uids(incident, asns)
        return Link(incident_id=incident.incident_id, relation="disagrees", measurement_uids=uids,
                    reason=f"measurements on {where} got through at that time; only {what} "
                           f"{'was' if len(incident.services) == 1 else 'were'} "
                           f"{_VERBS[incident.type]}")
    return None


# -- matching the place ---------------------------------------------------------------------------------------------


def _report_asns(report: UserReport, incident: Incident, names: Mapping[str, str],
                 aliases: Mapping[str, set[str]]) -> list[str] | None:
    """The incident's networks the report is about: [] for a country-level incident, None if it is not about any
    (a report that names no network is about national incidents only)."""
    if not incident.asns:
        return []
    if report.asn:
        wanted = report.asn.upper()
        hit = [a for a in incident.asns if a.upper() == wanted or wanted in aliases.get(a, ())]
        return hit or None
    if report.isp:
        hit = [a for a in incident.asns if isp_matches(report.isp, names.get(a, ""))]
        return hit or None
    return list(incident.asns) if incident.scope == Scope.NATIONAL.value else None


def isp_matches(isp: str, network_name: str) -> bool:
    """Whether an ISP as a person writes it names a network: the same first word (not a generic one like
    "mobile"), so "Azercell" names "Azercell (stand-in for AS31721)" and "Azercell Telecom LLC", and "Baktelecom"
    does not name "Bakinternet (Baktelecom's retail ISP)"."""
    a = _WORD.findall(isp.lower())
    b = _WORD.findall(network_name.lower())
    if not a or not b:
        return False
    return a[0] == b[0] and len(a[0]) >= 3 and a[0] not in _GENERIC_WORDS


def _same_region(report: UserReport, incident: Incident) -> bool:
    """A regional incident needs the report's place among its regions (when the report names one)."""
    if incident.scope != Scope.REGIONAL.value or not report.region or not incident.regions:
        return True
    place = set(_WORD.findall(report.region.lower()))
    return any(set(_WORD.findall(r.lower())) <= place for r in incident.regions if _WORD.findall(r.lower()))


def _service_matches(report: UserReport, incident: Incident) -> bool:
    if not incident.services:
        return True  # the whole network: whatever service the report names
    return report.service is not None and report.service in incident.services


# -- evidence -------------------------------------------------------------------------------------------------------


def _ok_uids(incident: Incident, asns: list[str], role: str) -> list[str]:
    return _uids(e for e in incident.evidence
                 if e.role == role and e.outcome == "ok" and (not asns or e.asn in asns))


def _measured_uids(incident: Incident, asns: list[str]) -> list[str]:
    """Measurements of the report's network during the incident: each one got through to be judged."""
    return _uids(e for e in incident.evidence if e.role in ("start", "during", "before-end")
                 and e.outcome in ("ok", "blocked", "throttled") and (not asns or e.asn in asns))


def _uids(evidence: Iterable[Evidence], limit: int = 5) -> list[str]:
    seen: list[str] = []
    for e in sorted(evidence, key=lambda e: (e.time, e.measurement_uid or "")):
        if e.measurement_uid and e.measurement_uid not in seen:
            seen.append(e.measurement_uid)
            if len(seen) == limit:
                break
    return seen


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _when(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


"""Outage events (detected here, or imported from IODA and Cloudflare Radar) become full-network incidents.

The scope comes from the entity the event is about: a country is national, a region regional, an ASN one ISP.
Events of one source on the same entity that overlap in time (IODA often reports the same outage once per
datasource) merge into one incident whose methods list every datasource. The id hashes the source, the entity and
the start, so re-running on the same events gives the same ids, and an ongoing incident keeps its id when it ends.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Iterable

from netvigil.model.incident import Evidence, Incident, IncidentType, Scope
from netvigil.model.signal import EntityType, OutageEvent

__all__ = [
    "INCIDENT_SOURCE", "SOURCE_CONFIDENCE", "incident_from_outage", "incidents_from_outages", "outage_incident_id",
]

# OutageEvent.source -> Incident.source
INCIDENT_SOURCE = {"detector": "signals", "ioda": "ioda", "cloudflare": "cloudflare"}

# How far an incident from each source is trusted on its own: Radar's annotations are checked by people before they
# are published; IODA's events are automatic, from several vantage points; our own detector sees one signal.
SOURCE_CONFIDENCE = {"cloudflare": 0.9, "ioda": 0.8, "detector": 0.7}

_SCOPE = {EntityType.COUNTRY.value: Scope.NATIONAL, EntityType.REGION.value: Scope.REGIONAL,
          EntityType.ASN.value: Scope.ISP}


def outage_incident_id(source: str, entity_type: str, entity_code: str, start: dt.datetime) -> str:
    key = f"outage|{source}|{entity_type}|{entity_code}|{start.astimezone(dt.timezone.utc).isoformat()}"
    return "out-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _fmt(t: dt.datetime | None) -> str:
    return "ongoing" if t is None else t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _entity_label(ev: OutageEvent) -> str:
    name = ev.detail.get("name", "")
    return f"{ev.entity_code} ({name})" if name and name != ev.entity_code else ev.entity_code


def _country_of(ev: OutageEvent) -> str | None:
    if ev.country:
        return ev.country
    if ev.entity_type == EntityType.COUNTRY:
        return ev.entity_code
    if ev.entity_type == EntityType.REGION and "/" in ev.entity_code:
        head = ev.entity_code.split("/", 1)[0]
        return head if len(head) == 2 and head.isalpha() else None
    return None


def _merge(group: list[OutageEvent]) -> Incident:
    first = group[0]
    start = min(e.start for e in group)
    end = None if any(e.end is None for e in group) else max(e.end for e in group if e.end is not None)
    scope = _SCOPE.get(first.entity_type)
    if scope is None:
        raise ValueError(f"outage on an unsupported entity type {first.entity_type!r}")
    asns = sorted({first.entity_code} if first.entity_type == EntityType.ASN else {a for e in group for a in e.asns})
    regions = [first.entity_code] if first.entity_type == EntityType.REGION else []
    datasources = sorted({e.datasource for e in group})
    evidence: list[Evidence] = []
    for e in sorted(group, key=lambda e: (e.start, e.datasource)):
        asn = e.entity_code if e.entity_type == EntityType.ASN else e.asns[0] if len(e.asns) == 1 else None
        note = f"{e.method or e.source} on {e.datasource}: score {e.score:g}"
        extra = e.detail.get("min_ratio") or e.detail.get("outage_cause") or e.detail.get("annotation_id")
        if extra:
            note += f"; {'min value/baseline' if 'min_ratio' in e.detail else 'detail'} {extra}"
        evidence.append(Evidence(role="start", time=e.start, asn=asn, method=e.datasource, source=e.source, note=note))
        if e.end is not None:
            evidence.append(Evidence(role="end", time=e.end, asn=asn, method=e.datasource, source=e.source,
                                     note=f"{e.datasource} back to normal"))
    detail: dict[str, str] = {"entity": f"{first.entity_type}/{first.entity_code}",
                              "score": f"{sum(e.score for e in group):g}"}
    for e in group:
        for k, v in e.detail.items():
            detail.setdefault(k, v)
        detail[f"score:{e.datasource}"] = f"{e.score:g}"
    label = _entity_label(first)
    where = {Scope.NATIONAL: "nationwide in", Scope.REGIONAL: "in region", Scope.ISP: "on network"}[scope]
    when = f"from {_fmt(start)} to {_fmt(end)}" if end is not None else f"since {_fmt(start)} (ongoing)"
    summary = f"Full-network outage {where} {label} {when}, seen by {first.source} on {', '.join(datasources)}."
    if first.detail.get("outage_cause"):
        summary = summary[:-1] + f" (cause given: {first.detail['outage_cause'].replace('_', ' ').lower()})."
    return Incident(
        incident_id=outage_incident_id(first.source, first.entity_type, first.entity_code, start),
        type=IncidentType.FULL_NETWORK.value, country=_country_of(first), scope=scope.value, start=start, end=end,
        asns=asns, regions=regions, methods=datasources, confidence=SOURCE_CONFIDENCE.get(first.source, 0.5),
        source=INCIDENT_SOURCE.get(first.source, first.source), summary=summary, evidence=evidence, detail=detail,
    )


def incident_from_outage(event: OutageEvent) -> Incident:
    """One event as one incident (no merging)."""
    return _merge([event])


def incidents_from_outages(events: Iterable[OutageEvent], *, merge_gap_s: int = 0) -> list[Incident]:
    """Incidents from events: per source and entity, events overlapping in time (or within ``merge_gap_s`` of each
    other) become one incident. Ordered by start, then id."""
    groups: dict[tuple[str, str, str], list[OutageEvent]] = {}
    for e in events:
        groups.setdefault((e.source, e.entity_type, e.entity_code), []).append(e)
    gap = dt.timedelta(seconds=merge_gap_s)
    out: list[Incident] = []
    for items in groups.values():
        items.sort(key=lambda e: (e.start, e.datasource))
        run: list[OutageEvent] = []
        run_end: dt.datetime | None = None
        for e in items:
            if run and (run_end is None or e.start <= run_end + gap):
                run.append(e)
                run_end = None if (run_end is None or e.end is None) else max(run_end, e.end)
            else:
                if run:
                    out.append(_merge(run))
                run, run_end = [e], e.end
        if run:
            out.append(_merge(run))
    out.sort(key=lambda i: (i.start, i.incident_id))
    return out

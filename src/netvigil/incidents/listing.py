"""One incident list: blocking, throttling and outages together, ordered, filtered, overlapping ones linked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from netvigil.model.incident import Incident, Scope

__all__ = ["IncidentFilter", "link_related", "select"]


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    country: str | None = None
    asn: str | None = None
    service: str | None = None
    type: str | None = None
    since: dt.datetime | None = None   # incidents still going at or after this time
    until: dt.datetime | None = None   # incidents that started before this time

    def accepts(self, i: Incident) -> bool:
        if self.country and (i.country or "").upper() != self.country.upper():
            return False
        if self.asn and self.asn.upper() not in i.asns and not (i.scope == Scope.NATIONAL.value and not i.asns):
            return False
        if self.service and self.service.lower() not in i.services:
            return False
        if self.type and i.type != self.type:
            return False
        if self.since and i.end is not None and i.end < self.since:
            return False
        if self.until and i.start >= self.until:
            return False
        return True


def _overlap(a: Incident, b: Incident) -> bool:
    if a.country and b.country and a.country != b.country:
        return False
    if (a.end is not None and a.end <= b.start) or (b.end is not None and b.end <= a.start):
        return False
    national = Scope.NATIONAL.value
    if a.scope == national or b.scope == national or not a.asns or not b.asns:
        return True
    return bool(set(a.asns) & set(b.asns))


def link_related(incidents: Iterable[Incident]) -> list[Incident]:
    """Copies ordered by (start, id) with ``related`` naming every overlapping incident: same country, overlapping
    time, and a shared network (or one of them national), e.g. a national throttling containing an ISP outage."""
    items = sorted(incidents, key=lambda i: (i.start, i.incident_id))
    related: dict[str, set[str]] = {i.incident_id: set(i.related) for i in items}
    for n, a in enumerate(items):
        for b in items[n + 1:]:
            if a.end is not None and b.start >= a.end:
                break  # sorted by start: nothing later overlaps a
            if a.incident_id != b.incident_id and _overlap(a, b):
                related[a.incident_id].add(b.incident_id)
                related[b.incident_id].add(a.incident_id)
    return [msgspec.structs.replace(i, related=sorted(related[i.incident_id])) for i in items]


def select(incidents: Sequence[Incident], f: IncidentFilter) -> list[Incident]:
    return [i for i in incidents if f.accepts(i)]

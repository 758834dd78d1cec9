"""Measurements behind a probe-side outage: the signal says "the share of measurements that reached anything fell";
the publication names some of those measurements, so an outage sentence links to records in the store like every
other sentence.

For a full-network incident made from the probes' own signal (`probe:both-fail`), the first few verdicts of each
affected network (and region) at or after the start in which probe and control both failed are added as ``start``
evidence, and the first few after the end in which the probe reached something again as ``end`` evidence (source
"probe"). Pure: the caller reads those verdicts from the store.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from netvigil.incidents.detect import parse_time
from netvigil.incidents.probe_signals import DATASOURCE, both_failed
from netvigil.model.incident import Evidence, Incident, IncidentType
from netvigil.model.verdict import Verdict

__all__ = ["is_probe_outage", "outage_regions", "with_outage_measurements"]


def is_probe_outage(incident: Incident) -> bool:
    return (incident.type == IncidentType.FULL_NETWORK.value and incident.source == "signals"
            and DATASOURCE in incident.methods and bool(incident.asns))


def outage_regions(incident: Incident) -> set[str]:
    """The probe regions an outage is about ("AZ/frontier" -> "frontier"); empty: the whole network."""
    return {r.split("/", 1)[1] if "/" in r else r for r in incident.regions}


def _pick(verdicts: Iterable[Verdict], incident: Incident, failed: bool, k: int, role: str, note: str
          ) -> list[Evidence]:
    regions = outage_regions(incident)
    taken: dict[str, int] = {}
    out: list[Evidence] = []
    seen: set[str] = set()
    for v in verdicts:
        asn = v.probe_asn or ""
        if asn not in incident.asns or (regions and (v.probe_region or "") not in regions):
            continue
        if both_failed(v) != failed or v.measurement_uid in seen or taken.get(asn, 0) >= k:
            continue
        t = parse_time(v.measurement_start_time)
        if t is None:
            continue
        seen.add(v.measurement_uid)
        taken[asn] = taken.get(asn, 0) + 1
        out.append(Evidence(role=role, time=t, measurement_uid=v.measurement_uid, asn=asn, target=v.target,
                            outcome=v.outcome, method=v.method, source="probe", note=note))
    return out


def with_outage_measurements(incident: Incident, after_start: Iterable[Verdict], after_end: Iterable[Verdict] = (),
                             k: int = 3) -> Incident:
    """``incident`` with up to ``k`` measurements per network added for its start (probe and control unreachable)
    and, if it ended, for its end (the probe reached something again). ``after_start``/``after_end``: the
    networks' verdicts from the start/end onward, in time order."""
    added = _pick(after_start, incident, True, k, "start", "probe and control both unreachable")
    if incident.end is not None:
        added += _pick(after_end, incident, False, k, "end", "the probe reached the network again")
    if not added:
        return incident
    return msgspec.structs.replace(incident, evidence=[*incident.evidence, *added])

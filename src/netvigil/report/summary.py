"""The figures a publication states about itself: total cost, the summary sentences, the probes' round. Pure."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from netvigil.economics.explain import usd as money
from netvigil.model.incident import CostRange, Incident, IncidentType
from netvigil.report.dataset import Publication
from netvigil.report.timeline import network_label, when_text

__all__ = ["NICE_STEPS", "cost_overlaps", "infer_round", "summary_lines", "total_cost"]

UTC = dt.timezone.utc

# Rounds a probe schedule is snapped to (the probe-side outage signal's step).
NICE_STEPS = tuple(dt.timedelta(minutes=m) for m in (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440))


def total_cost(incidents: Iterable[Incident]) -> CostRange | None:
    """The sum of the priced incidents' ranges (low, central and high summed separately); None if none is priced.
    Overlapping incidents that hit the same users are counted once each: `cost_overlaps` says how many pairs."""
    priced = [i.cost for i in incidents if i.cost is not None]
    if not priced:
        return None
    return CostRange(low=round(sum(c.low for c in priced), 2), central=round(sum(c.central for c in priced), 2),
                     high=round(sum(c.high for c in priced), 2), currency=priced[0].currency,
                     method=priced[0].method)


def cost_overlaps(incidents: Sequence[Incident]) -> int:
    """Pairs of priced incidents of one country overlapping in time and sharing a network (or one of them without
    networks): their sum may count some activity twice."""
    priced = sorted((i for i in incidents if i.cost is not None), key=lambda i: i.start)
    n = 0
    for k, a in enumerate(priced):
        for b in priced[k + 1:]:
            if a.end is not None and b.start >= a.end:
                break
            if a.country == b.country and (not a.asns or not b.asns or set(a.asns) & set(b.asns)):
                n += 1
    return n


def infer_round(report_starts: Mapping[object, Iterable[dt.datetime]]) -> dt.timedelta | None:
    """The probes' round: the median gap between consecutive reports' first measurements, per network (and
    region), snapped to the nearest of `NICE_STEPS`; None with fewer than two reports anywhere."""
    gaps: list[float] = []
    for starts in report_starts.values():
        ordered = sorted(starts)
        gaps += [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:]) if b > a]
    if not gaps:
        return None
    median = statistics.median(gaps)
    return min(NICE_STEPS, key=lambda s: abs(s.total_seconds() - median))


def summary_lines(pub: Publication, tz: dt.tzinfo = UTC, country_name: str | None = None) -> list[str]:
    """A handful of factual sentences that open the report."""
    networks, incidents, matrix, total = pub.networks, pub.incidents, pub.matrix, pub.total_cost
    since, until, measurements, verdicts = pub.since, pub.until, pub.measurements, pub.verdicts
    names = {n.asn: n.name for n in networks}
    where = country_name or pub.country
    lines = [f"{measurements:,} measurements ({verdicts:,} verdicts) from {len(networks)} networks in {where}, "
             f"{when_text(since, tz)} to {when_text(until, tz)}."]
    if not incidents:
        lines.append("No incident was detected in this period.")
    else:
        by_type = Counter(i.type for i in incidents)
        parts = [f"{by_type[t.value]} {t.value}" for t in IncidentType if by_type[t.value]]
        ongoing = sum(1 for i in incidents if i.end is None)
        lines.append(f"{len(incidents)} incidents: {', '.join(parts)}"
                     + (f"; {ongoing} ongoing at the end of the period." if ongoing else "."))
    blocked_days: Counter[str] = Counter()
    nets: dict[str, set[str]] = {}
    for c in matrix:
        if c.state == "blocked":
            blocked_days[c.service] += 1
            nets.setdefault(c.service, set()).add(c.asn)
    if blocked_days:
        top = sorted(blocked_days.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        lines.append("Most blocked services (network-days blocked): "
                     + ", ".join(f"{s} ({n}, on {len(nets[s])} networks)" for s, n in top) + ".")
    outages = [i for i in incidents if i.type == IncidentType.FULL_NETWORK.value]
    if outages:
        lines.append("Full-network outages: " + "; ".join(
            f"{', '.join(network_label(a, names) for a in i.asns) or i.country or '?'}"
            + (f" in {', '.join(i.regions)}" if i.regions else "")
            + f" from {when_text(i.start, tz)}" + (f" to {when_text(i.end, tz)}" if i.end else " (ongoing)")
            for i in outages) + ".")
    if total is not None:
        priced = sum(1 for i in incidents if i.cost is not None)
        lines.append(f"Estimated cost of the {priced} priced incidents: {money(total.low)} to {money(total.high)} "
                     f"(central {money(total.central)}), method {total.method}; summed incident by incident.")
    return lines

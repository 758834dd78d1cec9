"""From verdicts to blocking and throttling incidents: per-series episodes (``blocking.py``), grouped into incidents
people read — one service on a set of networks, then services that share networks, start and end merged — with a
scope from the networks that were measured at the time.

Everything here is pure and deterministic: the same verdicts give the same incidents with the same ids, and an
episode still blocked at the end of the data makes an ongoing incident (``end`` None) that keeps its id when later
data ends it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from netvigil.incidents.blocking import BlockingRule, Episode, Point, detect_episodes
from netvigil.incidents.services import ServiceMap
from netvigil.model.incident import Evidence, Incident, IncidentType, Scope
from netvigil.model.verdict import Outcome, Verdict

__all__ = [
    "Coverage",
    "IncidentParams",
    "NetEpisode",
    "SeriesKey",
    "blocking_incidents",
    "coverage_of",
    "episodes_of",
    "incident_id",
    "parse_time",
    "scope_of",
]

_BAD = {Outcome.BLOCKED.value, Outcome.THROTTLED.value}
# Inconclusive verdicts that still date an onset (blocking.py): the probe failed past TCP, the control was missing.
WEAK_RULES = frozenset({"wc.control.missing"})
_PASSES = ((IncidentType.SERVICE_BASED.value, Outcome.BLOCKED.value),
           (IncidentType.THROTTLING.value, Outcome.THROTTLED.value))
_CONCLUSIVE = _BAD | {Outcome.OK.value}
UTC = dt.timezone.utc


@dataclass(frozen=True, slots=True)
class IncidentParams:
    blocking: BlockingRule = BlockingRule()
    # Onsets of one service on different networks closer than this are one event (a censor's order reaches ISPs
    # within hours); services whose incidents share networks and whose starts and ends lie this close are merged.
    merge_window: dt.timedelta = dt.timedelta(hours=12)
    evidence_per_change: int = 3  # verdicts kept per network and change (the rule's, plus the last before it)
    # A series still blocked at its last conclusive verdict, while its network went on reporting only inconclusive
    # verdicts for longer than this (a shutdown hides whether the blocking goes on), is closed at that last verdict
    # ("end not observed") instead of staying ongoing forever.
    stale_after: dt.timedelta = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    cc: str
    asn: str
    region: str
    service: str
    test_name: str
    target: str


@dataclass(frozen=True, slots=True)
class NetEpisode:
    key: SeriesKey
    episode: Episode
    kind: str = IncidentType.SERVICE_BASED.value   # or throttling: which pass found it


@dataclass(slots=True)
class Coverage:
    """When each network (and region inside it) was measured at all: what "national" is judged against."""

    spans: dict[tuple[str, str, str], tuple[dt.datetime, dt.datetime]] = field(default_factory=dict)

    def add(self, cc: str, asn: str, region: str, t: dt.datetime) -> None:
        key = (cc, asn, region)
        span = self.spans.get(key)
        self.spans[key] = (t, t) if span is None else (min(span[0], t), max(span[1], t))

    def merge(self, other: Coverage) -> None:
        for (cc, asn, region), (a, b) in other.spans.items():
            self.add(cc, asn, region, a)
            self.add(cc, asn, region, b)

    def measured(self, cc: str, start: dt.datetime, end: dt.datetime | None) -> dict[str, set[str]]:
        """ASN -> regions measured in ``cc`` at some point of [start, end]."""
        out: dict[str, set[str]] = defaultdict(set)
        for (c, asn, region), (a, b) in self.spans.items():
            if c == cc and b >= start and (end is None or a <= end):
                out[asn].add(region)
        return out


def parse_time(text: str | None) -> dt.datetime | None:
    """OONI's "YYYY-MM-DD hh:mm:ss" (UTC) as an aware datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _series(verdicts: Iterable[Verdict], services: ServiceMap, coverage: Coverage | None
            ) -> dict[SeriesKey, list[Point]]:
    series: dict[SeriesKey, list[Point]] = defaultdict(list)
    for v in verdicts:
        t = parse_time(v.measurement_start_time)
        if t is None or not v.probe_cc or not v.probe_asn:
            continue
        region = v.probe_region or ""
        if coverage is not None:
            coverage.add(v.probe_cc, v.probe_asn, region, t)
        weak = bool(v.rule_ids) and v.rule_ids[0] in WEAK_RULES
        if v.outcome not in _CONCLUSIVE and not weak:
            continue
        key = SeriesKey(v.probe_cc, v.probe_asn, region, services.service_of(v.test_name, v.target, v.domain),
                        v.test_name, v.target)
        series[key].append(Point(time=t, uid=v.measurement_uid, report=v.report_id or v.measurement_uid,
                                 bad=v.outcome in _BAD, outcome=v.outcome, method=v.method,
                                 confidence=v.confidence, weak=weak))
    return series


def episodes_of(verdicts: Iterable[Verdict], services: ServiceMap, params: IncidentParams = IncidentParams(),
                coverage: Coverage | None = None) -> list[NetEpisode]:
    """Blocked stretches of every (network, region, target) series in ``verdicts`` (any order within a series is
    sorted by time first); ``coverage`` (if given) learns when each network was measured."""
    out: list[NetEpisode] = []
    for key, points in sorted(_series(verdicts, services, coverage).items()):
        points.sort(key=lambda p: (p.time, p.uid))
        # Two passes over one series: blocking (blocked vs ok) and throttling (throttled vs ok). Each ignores the
        # other's bad verdicts, so a slow national link (throttled pages) neither starts nor ends a blocking
        # stretch, and blocked pages (which transfer nothing) do not count as throttled.
        for kind, bad in _PASSES:
            series = [p if p.weak or not p.bad or p.outcome == bad else dataclasses.replace(p, neutral=True)
                      for p in points]
            out.extend(NetEpisode(key, e, kind) for e in detect_episodes(series, params.blocking))
    return out


def coverage_of(verdicts: Iterable[Verdict]) -> Coverage:
    cov = Coverage()
    for v in verdicts:
        t = parse_time(v.measurement_start_time)
        if t is not None and v.probe_cc and v.probe_asn:
            cov.add(v.probe_cc, v.probe_asn, v.probe_region or "", t)
    return cov


def incident_id(kind: str, cc: str | None, services: Sequence[str], asns: Sequence[str], regions: Sequence[str],
                start: dt.datetime) -> str:
    """Stable: made of what the incident is, never of when it was computed or how it ended."""
    text = "|".join([kind, cc or "", ",".join(sorted(services)), ",".join(sorted(asns)), ",".join(sorted(regions)),
                     start.astimezone(UTC).isoformat()])
    return "inc-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def scope_of(cc: str, asns: set[str], regions_by_asn: dict[str, set[str]], coverage: Coverage,
             start: dt.datetime, end: dt.datetime | None) -> str:
    """isp / several-isps / national from the networks measured meanwhile; regional when the affected probes carry
    regions and other regions of the same networks were measured unaffected."""
    measured = coverage.measured(cc, start, end)
    for asn, regions in regions_by_asn.items():
        if "" not in regions and measured.get(asn, set()) - regions:
            return Scope.REGIONAL.value
    if len(measured) >= 2 and set(measured) <= asns:
        return Scope.NATIONAL.value
    return Scope.ISP.value if len(asns) == 1 else Scope.SEVERAL_ISPS.value


@dataclass(slots=True)
class _Group:
    kind: str
    cc: str
    services: set[str]
    members: list[NetEpisode]

    @property
    def start(self) -> dt.datetime:
        return min(m.episode.start for m in self.members)

    @property
    def end(self) -> dt.datetime | None:
        ends = [m.episode.end for m in self.members]
        return None if any(e is None for e in ends) else max(ends)  # type: ignore[type-var]

    @property
    def networks(self) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
        return (frozenset(m.key.asn for m in self.members),
                frozenset((m.key.asn, m.key.region) for m in self.members))


def blocking_incidents(episodes: Sequence[NetEpisode], coverage: Coverage,
                       params: IncidentParams = IncidentParams()) -> list[Incident]:
    """Group network episodes into incidents (pure, deterministic)."""
    episodes = [_close_unobserved(ne, coverage, params) for ne in episodes]
    # 1. One service: episodes on different networks whose onsets are close are one event.
    by_service: dict[tuple[str, str, str], list[NetEpisode]] = defaultdict(list)
    for ne in episodes:
        by_service[(ne.kind, ne.key.cc, ne.key.service)].append(ne)
    groups: list[_Group] = []
    for (kind, cc, service), members in sorted(by_service.items()):
        members.sort(key=lambda m: (m.episode.start, m.key))
        current: _Group | None = None
        first = None
        for m in members:
            seen = {(x.key.asn, x.key.region, x.key.target) for x in current.members} if current else set()
            if (current is None or m.episode.start - first > params.merge_window
                    or (m.key.asn, m.key.region, m.key.target) in seen):
                current = _Group(kind, cc, {service}, [])
                groups.append(current)
                first = m.episode.start
            current.members.append(m)
    # 2. Services that share networks, start and end: one incident ("Facebook, Instagram ... on all ISPs").
    merged: list[_Group] = []
    for g in sorted(groups, key=lambda g: (g.start, g.kind, g.cc, sorted(g.services))):
        for h in merged:
            if (h.kind == g.kind and h.cc == g.cc and h.networks == g.networks
                    and abs(h.start - g.start) <= params.merge_window and _ends_close(h.end, g.end, params)):
                h.services |= g.services
                h.members.extend(g.members)
                break
        else:
            merged.append(_Group(g.kind, g.cc, set(g.services), list(g.members)))
    return [_incident(g, coverage, params) for g in merged]


def _close_unobserved(ne: NetEpisode, coverage: Coverage, params: IncidentParams) -> NetEpisode:
    e = ne.episode
    span = coverage.spans.get((ne.key.cc, ne.key.asn, ne.key.region))
    if e.end is not None or e.last_bad is None or span is None or span[1] - e.last_bad.time <= params.stale_after:
        return ne
    closed = Episode(start=e.start, end=e.last_bad.time, start_evidence=e.start_evidence, end_evidence=[],
                     before_start=e.before_start, before_end=e.last_bad, methods=e.methods, outcomes=e.outcomes,
                     bad=e.bad, good=e.good, confidence_sum=e.confidence_sum, last_bad=e.last_bad,
                     end_observed=False)
    return NetEpisode(ne.key, closed)


def _ends_close(a: dt.datetime | None, b: dt.datetime | None, params: IncidentParams) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= params.merge_window


def _incident(g: _Group, coverage: Coverage, params: IncidentParams) -> Incident:
    asns = sorted({m.key.asn for m in g.members})
    regions_by_asn: dict[str, set[str]] = defaultdict(set)
    for m in g.members:
        regions_by_asn[m.key.asn].add(m.key.region)
    regions = sorted({m.key.region for m in g.members if m.key.region})
    start, end = g.start, g.end
    scope = scope_of(g.cc, set(asns), regions_by_asn, coverage, start, end)
    methods: Counter[str] = Counter()
    for m in g.members:
        methods.update(m.episode.methods)
    services = sorted(g.services)
    targets = sorted({m.key.target for m in g.members})
    confidence = round(sum(m.episode.confidence for m in g.members) / len(g.members), 3)
    evidence = _evidence(g.members, params)
    method_names = [name for name, _ in sorted(methods.items(), key=lambda kv: (-kv[1], kv[0])) if _]
    what = "throttled" if g.kind == IncidentType.THROTTLING.value else "blocked"
    how = f" by {'/'.join(method_names)}" if method_names else ""
    where = ", ".join(asns) + (f" (regions: {', '.join(regions)})" if scope == Scope.REGIONAL.value else "")
    when = f"from {_fmt(start)}" + (f" to {_fmt(end)}" if end else ", ongoing")
    return Incident(
        incident_id=incident_id(g.kind, g.cc, services, asns, regions if scope == Scope.REGIONAL.value else [],
                                start),
        type=g.kind, country=g.cc, scope=scope, start=start, end=end, asns=asns, regions=regions,
        services=services, targets=targets, methods=method_names, confidence=confidence, source="verdicts",
        summary=f"{', '.join(services)} {what}{how} on {where} {when}.",
        evidence=evidence,
        detail={"rule": params.blocking.rule_id, "episodes": str(len(g.members)),
                "measurements_blocked": str(sum(m.episode.bad for m in g.members)),
                "measurements_ok_during": str(sum(m.episode.good for m in g.members)),
        "ends_not_observed": str(sum(1 for m in g.members if not m.episode.end_observed))},
    )


def _evidence(members: Sequence[NetEpisode], params: IncidentParams) -> list[Evidence]:
    out: list[Evidence] = []
    n = params.evidence_per_change
    for m in sorted(members, key=lambda m: (m.key.asn, m.key.region, m.key.target, m.episode.start)):
        e = m.episode
        if e.before_start is not None:
            out.append(_ev("before-start", e.before_start, m.key))
        if e.earliest_sign is not None:
            out.append(_ev("start", e.earliest_sign, m.key))
        out.extend(_ev("start", p, m.key) for p in e.start_evidence[:n])
        if e.end is not None:
            if e.before_end is not None:
                out.append(_ev("before-end", e.before_end, m.key))
            out.extend(_ev("end", p, m.key) for p in e.end_evidence[:n])
    return out


def _ev(role: str, p: Point, key: SeriesKey) -> Evidence:
    return Evidence(role=role, time=p.time, measurement_uid=p.uid, asn=key.asn, target=key.target,
                    outcome=p.outcome, method=p.method, note=key.region)


def _fmt(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

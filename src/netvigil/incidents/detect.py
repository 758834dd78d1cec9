"""From verdicts to blocking and throttling incidents: per-series episodes (``blocking.py``), grouped into incidents
people read — one service on a set of networks, then services that share networks, start and end merged — with a
scope from the networks that were measured at the time. Throttled stretches of many unrelated targets of one network
are first taken together as one whole-network throttling (``throttling.py``, ``inc.throttling.network.v1``).

Everything here is pure and deterministic: the same verdicts give the same incidents with the same ids, and an
episode still blocked at the end of the data makes an ongoing incident (``end`` None) that keeps its id when later
data ends it.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from netvigil.incidents.blocking import BlockingRule, Episode, Point, detect_episodes
from netvigil.incidents.services import ServiceMap
from netvigil.incidents.throttling import NetworkThrottlingRule, chains, network_wide
from netvigil.model.incident import Evidence, Incident, IncidentType, Scope
from netvigil.model.verdict import Outcome, Verdict

__all__ = [
    "Coverage",
    "IncidentParams",
    "NetEpisode",
    "NetworkRule",
    "NetworkThrottlingRule",
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
_DELIVERED = frozenset({Outcome.OK.value, Outcome.THROTTLED.value})   # the page arrived, fast or slow
UTC = dt.timezone.utc

# What a verdict says about the network it was measured on (the network rule below). The probe could not reach the
# target at all: its resolver failed, or every TCP connect failed (with or without a control to compare).
REACH_FAILURE_RULES = frozenset({"wc.dns.failure", "wc.dns.redirect_hop_failure", "wc.tcp.blocked",
                                 "wc.control.missing.unreached"})
# The connection (and TLS) was made and the response never came: a censor's drop after the request looks like
# this, and so does a link too slow to deliver the first bytes before the timeout.
FETCH_FAILURE_RULES = frozenset({"wc.http.failure", "wc.https.failure"})
# Inconclusive verdicts of a probe that reached nothing (no DNS answer or no TCP connect) and had no control.
UNREACHED_RULES = frozenset({"wc.control.missing.unreached"})


@dataclass(frozen=True, slots=True)
class NetworkRule:
    """``inc.network.v1``: a failure that most of the network shares at the same moment is the network's, not the
    target's. A target's failure is compared with the network's other targets measured around it (same country,
    ASN and probe region, within ``same_time``), leaving out targets that are themselves blocked then (a first
    pass of the blocking rule), so that blocking of many targets never passes for a broken network:

    - ``unreachable``: a DNS or TCP failure (``REACH_FAILURE_RULES``) while at least ``min_share`` of at least
      ``min_reference`` other targets could not be reached either (the resolver or the link was down);
    - ``slow``: a fetch that got no response (``FETCH_FAILURE_RULES``) while at least ``min_share`` of the other
      targets that were fetched, and at least ``min_slow`` of them, came too slowly (``throttled``) or got no
      response either (a slow or congested link).

    Such a verdict is set aside: it neither starts, extends nor ends a blocked stretch. TLS handshake failures,
    resets, blockpages and DNS tampering are never set aside (they are how blocking shows, and a slow link does not
    make them).

    The other way round (``repeat``): a probe that reached nothing and had no control (``UNREACHED_RULES``) while
    the network reached at least ``1 - min_share`` of at least ``min_reference`` other targets failed on that target
    alone; when the series' last conclusive verdict was a blocked DNS or TCP failure, it repeats it and counts as
    one more blocked verdict (a control helper that failed to answer does not stop a blocking the previous verdict
    proved; it never starts one)."""

    rule_id: str = "inc.network.v1"
    enabled: bool = True
    repeat: bool = True
    same_time: dt.timedelta = dt.timedelta(minutes=30)
    min_reference: int = 3
    min_share: float = 0.5
    min_slow: int = 2


@dataclass(frozen=True, slots=True)
class IncidentParams:
    blocking: BlockingRule = BlockingRule()
    network: NetworkRule = NetworkRule()
    # Onsets of one service on different networks closer than this are one event (a censor's order reaches ISPs
    # within hours); services whose incidents share networks and whose starts and ends lie this close are merged.
    merge_window: dt.timedelta = dt.timedelta(hours=12)
    evidence_per_change: int = 3  # verdicts kept per network and change (the rule's, plus the last before it)
    # A series still blocked at its last conclusive verdict, while its network went on reporting only inconclusive
    # verdicts for longer than this (a shutdown hides whether the blocking goes on), is closed at that last verdict
    # ("end not observed") instead of staying ongoing forever.
    stale_after: dt.timedelta = dt.timedelta(days=1)
    # Throttled stretches of many unrelated targets of one network: one whole-network throttling (throttling.py).
    throttling_network: NetworkThrottlingRule = NetworkThrottlingRule()


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
    set_aside: int = 0   # failures inside the stretch that the network rule gave to the network


@dataclass(slots=True)
class Coverage:
    """When each network (and region inside it) was measured at all: what "national" is judged against; and when
    each target's page was delivered there (``ok`` or ``throttled``): what "the whole network is throttled" is
    judged against (8 bytes a delivered verdict)."""

    spans: dict[tuple[str, str, str], tuple[dt.datetime, dt.datetime]] = field(default_factory=dict)
    delivered: dict[tuple[str, str, str], dict[str, array]] = field(default_factory=dict)

    def add(self, cc: str, asn: str, region: str, t: dt.datetime) -> None:
        key = (cc, asn, region)
        span = self.spans.get(key)
        self.spans[key] = (t, t) if span is None else (min(span[0], t), max(span[1], t))

    def add_delivery(self, cc: str, asn: str, region: str, target: str, t: dt.datetime) -> None:
        times = self.delivered.setdefault((cc, asn, region), {}).get(target)
        if times is None:
            times = self.delivered[(cc, asn, region)][target] = array("q")
        times.append(int(t.timestamp()))

    def merge(self, other: Coverage) -> None:
        for (cc, asn, region), (a, b) in other.spans.items():
            self.add(cc, asn, region, a)
            self.add(cc, asn, region, b)
        for net, targets in other.delivered.items():
            mine = self.delivered.setdefault(net, {})
            for target, times in targets.items():
                mine.setdefault(target, array("q")).extend(times)

    def delivered_targets(self, cc: str, asn: str, region: str, start: dt.datetime, end: dt.datetime | None,
                          at_least: int = 1) -> set[str]:
        """Targets of one network whose page was delivered at least ``at_least`` times in [start, end] (end None:
        up to the network's last measurement)."""
        lo = int(start.timestamp())
        hi = int(end.timestamp()) if end is not None else None
        out = set()
        for target, times in self.delivered.get((cc, asn, region), {}).items():
            if sum(1 for x in times if x >= lo and (hi is None or x <= hi)) >= at_least:
                out.add(target)
        return out

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


# What one verdict says about its network at that moment (the network rule): reached-and-fine, unreachable, slow.
_OK, _UNREACHED, _SLOW, _OTHER = "ok", "unreached", "slow", "other"
_NetKey = tuple[str, str, str]


def _network_state(v: Verdict) -> str:
    rule = v.rule_ids[0] if v.rule_ids else ""
    if rule in REACH_FAILURE_RULES:
        return _UNREACHED
    if v.outcome == Outcome.THROTTLED.value or rule in FETCH_FAILURE_RULES:
        return _SLOW
    if v.outcome == Outcome.OK.value:
        return _OK
    return _OTHER


def _series(verdicts: Iterable[Verdict], services: ServiceMap, coverage: Coverage | None
            ) -> tuple[dict[SeriesKey, list[Point]], dict[_NetKey, list[tuple[dt.datetime, SeriesKey, str]]]]:
    """The points of every series, and per network (country, ASN, region) every verdict's time, series and what it
    says about the network (inconclusive ones included: a probe that reached nothing says the most)."""
    series: dict[SeriesKey, list[Point]] = defaultdict(list)
    context: dict[_NetKey, list[tuple[dt.datetime, SeriesKey, str]]] = defaultdict(list)
    for v in verdicts:
        t = parse_time(v.measurement_start_time)
        if t is None or not v.probe_cc or not v.probe_asn:
            continue
        region = v.probe_region or ""
        if coverage is not None:
            coverage.add(v.probe_cc, v.probe_asn, region, t)
            if v.outcome in _DELIVERED:
                coverage.add_delivery(v.probe_cc, v.probe_asn, region, v.target, t)
        key = SeriesKey(v.probe_cc, v.probe_asn, region, services.service_of(v.test_name, v.target, v.domain),
                        v.test_name, v.target)
        context[(v.probe_cc, v.probe_asn, region)].append((t, key, _network_state(v)))
        rule = v.rule_ids[0] if v.rule_ids else ""
        weak = rule in WEAK_RULES
        if v.outcome not in _CONCLUSIVE and not weak and rule not in UNREACHED_RULES:
            continue
        series[key].append(Point(time=t, uid=v.measurement_uid, report=v.report_id or v.measurement_uid,
                                 bad=v.outcome in _BAD, outcome=v.outcome, method=v.method,
                                 confidence=v.confidence, weak=weak, rule=rule))
    return series, context


def _passes(points: list[Point], rule: BlockingRule, aside: frozenset[str] = frozenset(),
            repeats: frozenset[str] = frozenset()) -> list[tuple[str, Episode]]:
    """Both passes over one time-ordered series. ``aside``: uids of failures the network rule gave to the network;
    ``repeats``: uids of unreached-without-control verdicts it gave to the target (they count as blocked when they
    repeat a blocked DNS or TCP failure; other unreached verdicts are left out).

    Blocking pass (blocked vs ok): a throttled page counts as good — it arrived, slowly, so the target is not
    blocked (on a slow, congested link the odd timeout must not add up across throttled rounds into a blocked
    stretch). Throttling pass (throttled vs ok): blocked pages are neutral, they transfer nothing and so say nothing
    about speed."""
    out: list[tuple[str, Episode]] = []
    for kind, bad in _PASSES:
        blocking = kind == IncidentType.SERVICE_BASED.value
        series: list[Point] = []
        last: Point | None = None   # the latest conclusive point of this pass
        for p in points:
            if p.rule in UNREACHED_RULES:
                if (blocking and p.uid in repeats and last is not None and last.bad
                        and last.rule in REACH_FAILURE_RULES):
                    # Counts as blocked; keeps its own outcome (inconclusive) in the evidence.
                    p = dataclasses.replace(p, bad=True, method=last.method)
                else:
                    continue
            elif p.weak:
                series.append(p)
                continue
            elif p.bad and p.uid in aside:
                p = dataclasses.replace(p, neutral=True)
            elif p.bad and p.outcome != bad:
                p = dataclasses.replace(p, bad=False) if blocking else dataclasses.replace(p, neutral=True)
            series.append(p)
            if not p.neutral:
                last = p
        out.extend((kind, e) for e in detect_episodes(series, rule))
    return out


def _blocked_at(spans: list[tuple[dt.datetime, dt.datetime | None]], t: dt.datetime) -> bool:
    return any(a <= t and (b is None or t < b) for a, b in spans)


def _network_judgement(series: dict[SeriesKey, list[Point]],
                       context: dict[_NetKey, list[tuple[dt.datetime, SeriesKey, str]]],
                       first: dict[SeriesKey, list[tuple[str, Episode]]], rule: NetworkRule
                       ) -> tuple[dict[SeriesKey, frozenset[str]], dict[SeriesKey, frozenset[str]]]:
    """Per series, the uids of its blocked verdicts that the network rule gives to the network, and of its
    unreached-without-control verdicts that it gives to the target (see NetworkRule)."""
    spans: dict[SeriesKey, list[tuple[dt.datetime, dt.datetime | None]]] = defaultdict(list)
    for key, eps in first.items():
        for kind, e in eps:
            if kind == IncidentType.SERVICE_BASED.value:
                spans[key].append((e.start, e.end))
    ordered = {net: sorted(rows, key=lambda r: r[0]) for net, rows in context.items()}
    times = {net: [r[0] for r in rows] for net, rows in ordered.items()}
    asides: dict[SeriesKey, frozenset[str]] = {}
    repeats: dict[SeriesKey, frozenset[str]] = {}
    for key, points in series.items():
        net = (key.cc, key.asn, key.region)
        rows, ts = ordered.get(net, []), times.get(net, [])
        aside: set[str] = set()
        repeat: set[str] = set()
        for p in points:
            unreached = p.rule in UNREACHED_RULES
            reach = unreached or (p.bad and p.outcome == Outcome.BLOCKED.value and p.rule in REACH_FAILURE_RULES)
            fetch = p.bad and p.outcome == Outcome.BLOCKED.value and p.rule in FETCH_FAILURE_RULES
            if not (reach or fetch) or (unreached and not rule.repeat):
                continue
            lo = bisect.bisect_left(ts, p.time - rule.same_time)
            hi = bisect.bisect_right(ts, p.time + rule.same_time)
            states = Counter(state for t, k, state in rows[lo:hi]
                             if k != key and not _blocked_at(spans.get(k, []), t))
            if reach:
                n = sum(states.values())
                if n < rule.min_reference:
                    continue
                network_down = states[_UNREACHED] >= rule.min_share * n
                if unreached and not network_down:
                    repeat.add(p.uid)
                elif not unreached and network_down:
                    aside.add(p.uid)
            else:
                n = states[_SLOW] + states[_OK]
                if (n >= rule.min_reference and states[_SLOW] >= rule.min_slow
                        and states[_SLOW] >= rule.min_share * n):
                    aside.add(p.uid)
        if aside:
            asides[key] = frozenset(aside)
        if repeat:
            repeats[key] = frozenset(repeat)
    return asides, repeats


def episodes_of(verdicts: Iterable[Verdict], services: ServiceMap, params: IncidentParams = IncidentParams(),
                coverage: Coverage | None = None) -> list[NetEpisode]:
    """Blocked stretches of every (network, region, target) series in ``verdicts`` (any order within a series is
    sorted by time first); ``coverage`` (if given) learns when each network was measured.

    Two passes when the network rule is on: the first finds which targets are blocked when (so that they are left
    out of the network's reference), the second sets aside the failures the network rule gives to the network."""
    series, context = _series(verdicts, services, coverage)
    for points in series.values():
        points.sort(key=lambda p: (p.time, p.uid))
    found = {key: _passes(points, params.blocking) for key, points in series.items()}
    asides: dict[SeriesKey, frozenset[str]] = {}
    if params.network.enabled:
        asides, repeats = _network_judgement(series, context, found, params.network)
        for key in asides.keys() | repeats.keys():
            found[key] = _passes(series[key], params.blocking, asides.get(key, frozenset()),
                                 repeats.get(key, frozenset()))
    out = []
    for key in sorted(found):
        aside = [p.time for p in series[key] if p.uid in asides.get(key, ())]
        for kind, e in found[key]:
            inside = sum(1 for t in aside if e.start <= t and (e.end is None or t < e.end))
            out.append(NetEpisode(key, e, kind, inside if kind == IncidentType.SERVICE_BASED.value else 0))
    return out


def coverage_of(verdicts: Iterable[Verdict]) -> Coverage:
    cov = Coverage()
    for v in verdicts:
        t = parse_time(v.measurement_start_time)
        if t is not None and v.probe_cc and v.probe_asn:
            cov.add(v.probe_cc, v.probe_asn, v.probe_region or "", t)
            if v.outcome in _DELIVERED:
                cov.add_delivery(v.probe_cc, v.probe_asn, v.probe_region or "", v.target, t)
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
    """Group network episodes into incidents (pure, deterministic): whole-network throttling first (its stretches
    leave the list), then services across networks, then services that share networks."""
    episodes = [_close_unobserved(ne, coverage, params) for ne in episodes]
    throttled_networks, episodes = _network_throttling(episodes, coverage, params)
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
    return ([_incident(g, coverage, params) for g in merged]
            + [_network_throttling_incident(g, coverage, params) for g in throttled_networks])


def _close_unobserved(ne: NetEpisode, coverage: Coverage, params: IncidentParams) -> NetEpisode:
    e = ne.episode
    span = coverage.spans.get((ne.key.cc, ne.key.asn, ne.key.region))
    if e.end is not None or e.last_bad is None or span is None or span[1] - e.last_bad.time <= params.stale_after:
        return ne
    closed = Episode(start=e.start, end=e.last_bad.time, start_evidence=e.start_evidence, end_evidence=[],
                     before_start=e.before_start, before_end=e.last_bad, methods=e.methods, outcomes=e.outcomes,
                     bad=e.bad, good=e.good, confidence_sum=e.confidence_sum, last_bad=e.last_bad,
                     end_observed=False)
    return NetEpisode(ne.key, closed, ne.kind, ne.set_aside)


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
        detail={"rule": params.blocking.rule_id,
                "network_rule": params.network.rule_id if params.network.enabled else "",
                "episodes": str(len(g.members)),
                "measurements_blocked": str(sum(m.episode.bad for m in g.members)),
                "measurements_ok_during": str(sum(m.episode.good for m in g.members)),
                "network_failures_set_aside": str(sum(m.set_aside for m in g.members)),
                "ends_not_observed": str(sum(1 for m in g.members if not m.episode.end_observed))},
    )


@dataclass(slots=True)
class _Chain:
    """Throttled stretches of one network that the network rule took together (``inc.throttling.network.v1``)."""

    net: _NetKey
    members: list[NetEpisode]   # in time order
    delivered: int              # targets delivered at all on the network meanwhile (throttled ones included)

    @property
    def start(self) -> dt.datetime:
        return self.members[0].episode.start

    @property
    def end(self) -> dt.datetime | None:
        ends = [m.episode.end for m in self.members]
        return None if any(e is None for e in ends) else max(ends)  # type: ignore[type-var]


def _network_throttling(episodes: Sequence[NetEpisode], coverage: Coverage, params: IncidentParams
                        ) -> tuple[list[list[_Chain]], list[NetEpisode]]:
    """(groups of whole-network throttling chains, the episodes left for service incidents). Per network, throttled
    stretches chain when they overlap or follow each other within the rule's gap; a chain wide enough
    (``throttling.network_wide``) is the network's. Chains of several networks of one country whose onsets lie
    within the merge window are one incident (a censor's order reaches ISPs within hours; a network appears once)."""
    rule = params.throttling_network
    if not rule.enabled:
        return [], list(episodes)
    by_net: dict[_NetKey, list[int]] = defaultdict(list)
    for n, ne in enumerate(episodes):
        if ne.kind == IncidentType.THROTTLING.value:
            by_net[(ne.key.cc, ne.key.asn, ne.key.region)].append(n)
    taken: set[int] = set()
    found: list[_Chain] = []
    for net in sorted(by_net):
        idx = sorted(by_net[net], key=lambda n: (episodes[n].episode.start, episodes[n].key))
        for chain in chains([(episodes[n].episode.start, episodes[n].episode.end) for n in idx], rule.gap):
            members = [episodes[idx[j]] for j in chain]
            c = _Chain(net, members, 0)
            targets = {m.key.target for m in members}
            services = {m.key.service for m in members}
            if len(services) < rule.min_services:
                continue
            delivered = coverage.delivered_targets(*net, c.start, c.end, rule.min_delivered)
            if network_wide(services, targets, delivered, rule):
                c.delivered = len(delivered | targets)
                found.append(c)
                taken.update(idx[j] for j in chain)
    groups: list[list[_Chain]] = []
    for c in sorted(found, key=lambda c: (c.net[0], c.start, c.net)):
        g = groups[-1] if groups else None
        if (g is None or g[0].net[0] != c.net[0] or c.start - g[0].start > params.merge_window
                or any(x.net == c.net for x in g)):
            groups.append([c])
        else:
            g.append(c)
    return groups, [ne for n, ne in enumerate(episodes) if n not in taken]


def _network_throttling_incident(group: list[_Chain], coverage: Coverage, params: IncidentParams) -> Incident:
    """One whole-network throttling: no services (the whole network; what the cost model and the agreement rule read
    as network-wide), the throttled targets listed, start and end from the stretches, evidence per network."""
    rule = params.throttling_network
    members = [m for c in group for m in c.members]
    cc = group[0].net[0]
    asns = sorted({c.net[1] for c in group})
    regions_by_asn: dict[str, set[str]] = defaultdict(set)
    for c in group:
        regions_by_asn[c.net[1]].add(c.net[2])
    regions = sorted({c.net[2] for c in group if c.net[2]})
    start = min(c.start for c in group)
    ends = [c.end for c in group]
    end = None if any(e is None for e in ends) else max(ends)  # type: ignore[type-var]
    scope = scope_of(cc, set(asns), regions_by_asn, coverage, start, end)
    regional = scope == Scope.REGIONAL.value
    services = sorted({m.key.service for m in members})
    targets = sorted({m.key.target for m in members})
    throttled = sum(len({m.key.target for m in c.members}) for c in group)
    delivered = sum(c.delivered for c in group)
    bad = sum(m.episode.bad for m in members)
    good = sum(m.episode.good for m in members)
    methods: Counter[str] = Counter()
    for m in members:
        methods.update(m.episode.methods)
    method_names = [name for name, _ in sorted(methods.items(), key=lambda kv: (-kv[1], kv[0])) if name]
    where = ", ".join(asns) + (f" (regions: {', '.join(regions)})" if regional else "")
    when = f"from {_fmt(start)}" + (f" to {_fmt(end)}" if end else ", ongoing")
    return Incident(
        incident_id=incident_id(IncidentType.THROTTLING.value, cc, ["whole-network"], asns,
                                regions if regional else [], start),
        type=IncidentType.THROTTLING.value, country=cc, scope=scope, start=start, end=end, asns=asns,
        regions=regions, services=[], targets=targets, methods=method_names,
        # Verdict-weighted: a long stretch of slow pages weighs more than a short one.
        confidence=round(sum(m.episode.confidence_sum for m in members) / (bad + good), 3) if bad + good else 0.0,
        source="verdicts",
        summary=(f"Whole network throttled on {where} {when}: {len(targets)} targets of {len(services)} services "
                 f"came throttled ({', '.join(services)}), {throttled} of the {delivered} targets that loaded "
                 f"meanwhile, counted per network."),
        evidence=_network_throttling_evidence(group, params.evidence_per_change, rule.during_evidence),
        detail={"rule": rule.rule_id,
                "whole_network": "true",
                "stretch_rule": params.blocking.rule_id,
                "network_rule": params.network.rule_id if params.network.enabled else "",
                "services_throttled": ",".join(services),
                "targets_throttled": str(throttled),
                "targets_delivered": str(delivered),
                "share_throttled": f"{throttled / delivered:.2f}" if delivered else "",
                "episodes": str(len(members)),
                "measurements_throttled": str(bad),
                "measurements_ok_during": str(good),
                "ends_not_observed": str(sum(1 for m in members if not m.episode.end_observed))},
    )


def _network_throttling_evidence(group: list[_Chain], n: int, during: int) -> list[Evidence]:
    """Per network: the first stretch's start (the last good verdict before it, the verdicts that met the rule), the
    last-ending stretch's end, and at most ``during`` verdicts from the other stretches (each target's first
    stretch before any target's second: which pages came slowly)."""
    out: list[Evidence] = []
    for c in sorted(group, key=lambda c: c.net):
        first = c.members[0]
        out.extend(_start_evidence(first, n))
        ended = [m for m in c.members if m.episode.end is not None]
        last = None
        if c.end is not None and ended:
            last = max(ended, key=lambda m: (m.episode.end, m.key))
            out.extend(_end_evidence(last, n))
        others = [m for m in c.members if m is not first and m is not last and m.episode.start_evidence]
        seen: set[str] = {first.key.target}
        fresh, again = [], []
        for m in others:
            (again if m.key.target in seen else fresh).append(m)
            seen.add(m.key.target)
        chosen = sorted((fresh + again)[:during], key=lambda m: (m.episode.start_evidence[0].time, m.key))
        out.extend(_ev("during", m.episode.start_evidence[0], m.key) for m in chosen)
    return out


def _evidence(members: Sequence[NetEpisode], params: IncidentParams) -> list[Evidence]:
    out: list[Evidence] = []
    n = params.evidence_per_change
    for m in sorted(members, key=lambda m: (m.key.asn, m.key.region, m.key.target, m.episode.start)):
        out.extend(_start_evidence(m, n))
        if m.episode.end is not None:
            out.extend(_end_evidence(m, n))
    return out


def _start_evidence(m: NetEpisode, n: int) -> list[Evidence]:
    """The last good verdict before a stretch, its earliest sign and the first ``n`` verdicts that met the rule."""
    e = m.episode
    out = [_ev("before-start", e.before_start, m.key)] if e.before_start is not None else []
    if e.earliest_sign is not None:
        out.append(_ev("start", e.earliest_sign, m.key))
    return out + [_ev("start", p, m.key) for p in e.start_evidence[:n]]


def _end_evidence(m: NetEpisode, n: int) -> list[Evidence]:
    """The last bad verdict of a stretch and the first ``n`` good ones after it."""
    e = m.episode
    out = [_ev("before-end", e.before_end, m.key)] if e.before_end is not None else []
    return out + [_ev("end", p, m.key) for p in e.end_evidence[:n]]


def _ev(role: str, p: Point, key: SeriesKey) -> Evidence:
    return Evidence(role=role, time=p.time, measurement_uid=p.uid, asn=key.asn, target=key.target,
                    outcome=p.outcome, method=p.method, note=key.region)


def _fmt(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")

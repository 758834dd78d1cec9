"""Score detected incidents against the lab's ground truth (pure).

The truth log says, per ISP and target, when the censor switched each policy on and off. What a campaign can see
depends on what it measured: TLS techniques hit the https URLs of a target, HTTP techniques its http URLs, DNS and IP
techniques both; throttling is invisible to Web Connectivity and targets without a measured URL (Tor directory
authorities, the WhatsApp chat endpoint) are out of reach, so both are left out and counted as such. Outage
policies are compared with full-network incidents. A detected change matches when it is on the same network and
target and lies within ``tolerance`` (one probing round) of the truth, start and end alike; truth before the
campaign's window is clipped to the window's start (nothing before it could be seen).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from netvigil.lab.scenario import Scenario
from netvigil.lab.truth import GroundTruth
from netvigil.model.incident import Incident, IncidentType

__all__ = ["Interval", "Score", "score_incidents", "truth_intervals"]

_TLS = ("tls_",)
_HTTP = ("http_",)
_ANY = ("dns_", "ip_")
_OUTAGE = ("outage_isp", "outage_region")
_UNSEEN = ("throttle_",)


@dataclass(frozen=True, slots=True)
class Interval:
    asn: str
    key: str                    # a target id, or "*" (a network) / a region for outages
    start: dt.datetime
    end: dt.datetime | None     # None: still on at the end of the window


@dataclass(slots=True)
class Score:
    truth: list[Interval]
    detected: list[Interval]
    matched_truth: list[Interval] = field(default_factory=list)
    matched_detected: list[Interval] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)   # truth lines not scorable, by reason

    @property
    def precision(self) -> float:
        return len(self.matched_detected) / len(self.detected) if self.detected else 1.0

    @property
    def recall(self) -> float:
        return len(self.matched_truth) / len(self.truth) if self.truth else 1.0

    @property
    def missed(self) -> list[Interval]:
        return [t for t in self.truth if t not in self.matched_truth]

    @property
    def spurious(self) -> list[Interval]:
        return [d for d in self.detected if d not in self.matched_detected]


def _asn(scenario: Scenario, isp: str) -> str:
    return next(f"AS{i.asn}" for i in scenario.isps if i.id == isp)


def _urls_hit(technique: str, names: Sequence[str], urls: Sequence[str]) -> bool:
    hosts = {(urlsplit(u).scheme, urlsplit(u).hostname) for u in urls}
    schemes = ("https",) if technique.startswith(_TLS) else ("http",) if technique.startswith(_HTTP) else (
        "http", "https")
    return any((s, n) in hosts for s in schemes for n in names)


def truth_intervals(truth: Iterable[GroundTruth], scenario: Scenario, urls: Sequence[str], start: dt.datetime,
                    until: dt.datetime) -> tuple[list[Interval], list[Interval], dict[str, int]]:
    """(blocking intervals per ASN x target, outage intervals per ASN x region-or-*, left-out counts), clipped to
    [start, until); overlapping intervals of one pair (two policies on one target) are merged."""
    names = {t.id: t.names for t in scenario.targets}
    on: dict[tuple, dt.datetime] = {}
    raw: dict[tuple[str, str, str], list[tuple[dt.datetime, dt.datetime | None]]] = defaultdict(list)
    left_out: dict[str, int] = defaultdict(int)
    for g in sorted(truth, key=lambda g: g.time):
        tech = g.technique
        if tech.startswith(_UNSEEN):
            left_out["throttling (not visible to web_connectivity)"] += g.state == "on"
            continue
        if tech in _OUTAGE:
            kind, key = "outage", g.region or "*"
        elif tech.startswith(_TLS + _HTTP + _ANY):
            if not _urls_hit(tech, names.get(g.target, ()), urls):
                left_out["target without a measured URL for this technique"] += g.state == "on"
                continue
            kind, key = "block", g.target
        else:
            left_out[f"technique {tech}"] += g.state == "on"
            continue
        ident = (kind, g.isp, key, g.policy)
        if g.state == "on":
            on[ident] = g.time
        elif ident in on:
            raw[(kind, _asn(scenario, g.isp), key)].append((on.pop(ident), g.time))
    for (kind, isp, key, _), t in on.items():
        raw[(kind, _asn(scenario, isp), key)].append((t, None))
    blocks: list[Interval] = []
    outages: list[Interval] = []
    for (kind, asn, key), spans in sorted(raw.items()):
        for s, e in _merge_spans(spans):
            s2 = max(s, start)
            if s2 >= until or (e is not None and e <= start):
                continue
            e2 = None if e is None or e >= until else e
            (blocks if kind == "block" else outages).append(Interval(asn, key, s2, e2))
    return blocks, outages, dict(left_out)


def _merge_spans(spans: list[tuple[dt.datetime, dt.datetime | None]]) -> list[tuple[dt.datetime, dt.datetime | None]]:
    out: list[tuple[dt.datetime, dt.datetime | None]] = []
    for s, e in sorted(spans, key=lambda x: x[0]):
        if out and (out[-1][1] is None or s <= out[-1][1]):
            prev_s, prev_e = out[-1]
            out[-1] = (prev_s, None if prev_e is None or e is None else max(prev_e, e))
        else:
            out.append((s, e))
    return out


def detected_blocking(incidents: Iterable[Incident], scenario: Scenario,
                      kind: str = IncidentType.SERVICE_BASED.value) -> list[Interval]:
    """Per ASN x target id: the start and end each incident's evidence gives (a target id from the URL's host)."""
    by_host = {n: t.id for t in scenario.targets for n in t.names}
    out: list[Interval] = []
    for inc in incidents:
        if inc.type != kind:
            continue
        starts: dict[tuple[str, str], dt.datetime] = {}
        ends: dict[tuple[str, str], dt.datetime] = {}
        unobserved: dict[tuple[str, str], dt.datetime] = {}
        for e in inc.evidence:
            host = urlsplit(e.target or "").hostname or ""
            key = (e.asn or "", by_host.get(host, host))
            if e.role == "start":
                starts[key] = min(starts.get(key, e.time), e.time)
            elif e.role == "end":      # the first good verdicts: the end is the earliest of them
                ends[key] = min(ends.get(key, e.time), e.time)
            elif e.role == "before-end":  # dates an end that could not be observed (a region gone dark)
                unobserved[key] = max(unobserved.get(key, e.time), e.time)
        for key, s in sorted(starts.items()):
            end = ends.get(key, unobserved.get(key)) if inc.end is not None else None
            out.append(Interval(key[0], key[1], s, end))
    return out


def detected_outages(incidents: Iterable[Incident]) -> list[Interval]:
    out = []
    for inc in incidents:
        if inc.type != IncidentType.FULL_NETWORK.value:
            continue
        keys = [r.split("/", 1)[-1] for r in inc.regions] or ["*"]
        for asn in inc.asns:
            for key in keys:
                out.append(Interval(asn, key, inc.start, inc.end))
    return out


def _close(a: dt.datetime | None, b: dt.datetime | None, tol: dt.timedelta) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol


def _match(truth: list[Interval], detected: list[Interval], tol: dt.timedelta) -> Score:
    score = Score(truth=truth, detected=detected)
    free = list(detected)
    for t in truth:
        for d in free:
            if d.asn == t.asn and d.key == t.key and _close(d.start, t.start, tol) and _close(d.end, t.end, tol):
                score.matched_truth.append(t)
                score.matched_detected.append(d)
                free.remove(d)
                break
    return score


def score_incidents(incidents: Sequence[Incident], truth: Iterable[GroundTruth], scenario: Scenario,
                    urls: Sequence[str], start: dt.datetime, until: dt.datetime,
                    tolerance: dt.timedelta) -> tuple[Score, Score]:
    """(blocking score per ASN x target, outage score per ASN x region) of ``incidents`` against the truth."""
    truth = list(truth)
    blocks, outages, left_out = truth_intervals(truth, scenario, urls, start, until)
    blocking = _match(blocks, detected_blocking(incidents, scenario), tolerance)
    blocking.left_out = left_out
    outage = _match(outages, detected_outages(incidents), tolerance)
    return blocking, outage


def throttling_inside_truth(incidents: Sequence[Incident], truth: Iterable[GroundTruth], scenario: Scenario,
                            tolerance: dt.timedelta) -> tuple[int, int]:
    """(throttling detections that lie inside a throttling policy the censor had on for that network, all
    throttling detections): Web Connectivity sees whole-network throttling only as slow pages here and there, so
    these are checked for being true, not for covering the policy."""
    windows: dict[str, list[tuple[dt.datetime, dt.datetime | None]]] = defaultdict(list)
    on: dict[tuple, dt.datetime] = {}
    for g in sorted(truth, key=lambda g: g.time):
        if not g.technique.startswith(_UNSEEN):
            continue
        ident = (g.isp, g.target, g.policy)
        if g.state == "on":
            on[ident] = g.time
        elif ident in on:
            windows[_asn(scenario, g.isp)].append((on.pop(ident), g.time))
    for (isp, _, _), t in on.items():
        windows[_asn(scenario, isp)].append((t, None))
    # A whole-network throttling (inc.throttling.network.v1) is one detection per network, dated by the incident
    # itself: its evidence names only the first and the last of the stretches it was made of.
    whole = [i.detail.get("whole_network") == "true" for i in incidents]
    detected = detected_blocking([i for i, w in zip(incidents, whole) if not w], scenario,
                                 IncidentType.THROTTLING.value)
    detected += [Interval(asn, "*", i.start, i.end) for i, w in zip(incidents, whole)
                 if w and i.type == IncidentType.THROTTLING.value for asn in i.asns]
    inside = sum(1 for d in detected if any(
        s - tolerance <= d.start and (e is None or (d.end is not None and d.end <= e + tolerance))
        for s, e in windows.get(d.asn, ())))
    return inside, len(detected)

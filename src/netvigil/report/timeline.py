"""The timeline: incidents told as short, dated, factual sentences, each with the measurement uids that prove it.

An incident gives a *start* sentence, an *end* sentence once it ended (an ongoing one says so in its start sentence),
and *change* sentences in between: a network that joined a running incident, a network where it ended earlier than
elsewhere, a blocking method that appeared later. Shapes (times in the country's zone, `zone_label`):

- blocking: "27 Sep 2020 02:00 UTC+4: facebook.com, instagram.com blocked by TLS (SNI) filtering on AS64528
  (Baktelecom), AS64531 (Azercell). Evidence: uid, uid, uid (+4 more)."
- throttling: "... whatsapp.com throttled on AS64531 (Azercell) in region baku ..."
- end: "12 Nov 2020 04:59 UTC+4: facebook.com, instagram.com reachable again on ... (blocked since 27 Sep 2020)."
- outage: "5 Nov 2020 00:00 UTC+4: Baktelecom AS64528 and Aztelekom AS64529 largely unreachable (full-network
  outage)." / "... reachable again (outage since 5 Nov 2020)."; regional: "... unreachable in region frontier ...".
- change: "AS64531 (Azercell) joins: ...", "... reachable again on AS64530 (Bakcell); still blocked elsewhere",
  "... now also blocked by DNS tampering on ...".

Pure: incidents in, entries out. Everything said comes from the incident's own fields and evidence (the blocking
rule's start/end verdicts, or the measurements a publication attached to a probe-side outage).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from netvigil.incidents.services import host_of
from netvigil.model.incident import Evidence, Incident, IncidentType, Scope
from netvigil.report.dataset import TimelineEntry
from netvigil.report.zones import zone_label

__all__ = [
    "METHOD_PHRASES", "TimelineParams", "network_label", "short_name", "target_label", "timeline_of", "when_text",
]

UTC = dt.timezone.utc

# Verdict methods as a reader says them.
METHOD_PHRASES = {
    "tls": "TLS (SNI) filtering",
    "dns": "DNS tampering",
    "tcp_ip": "TCP/IP blocking",
    "http-failure": "HTTP filtering (connection dropped after the request)",
    "http-diff": "a blockpage or altered HTTP response",
    "bandwidth": "throttling",
    "bootstrap": "blocked tunnel bootstrap",
}
_SOURCES = {"ioda": "IODA", "cloudflare": "Cloudflare Radar", "signals": "the outage detector",
            "reachability": "the reachability prober"}
_KIND_ORDER = {"start": 0, "change": 1, "end": 2}


@dataclass(frozen=True, slots=True)
class TimelineParams:
    # A network that starts (or ends) more than this after the incident's start (before its end) is a change of
    # its own; closer than this it is part of the same event (a censor's order reaches ISPs within hours).
    change_gap: dt.timedelta = dt.timedelta(hours=12)
    shown_uids: int = 3            # measurement uids written into a sentence (all of them are in the entry)
    max_targets: int = 15          # targets named before "and N more"
    tz: dt.tzinfo = field(default=UTC)


def short_name(name: str | None) -> str:
    """A network's name without a trailing parenthesis ("Baktelecom (stand-in for AS28787)" -> "Baktelecom")."""
    text = (name or "").strip()
    if text.endswith(")") and " (" in text:
        text = text[: text.rindex(" (")].strip()
    return text


def network_label(asn: str, names: Mapping[str, str]) -> str:
    name = short_name(names.get(asn))
    return f"{asn} ({name})" if name else asn


def _name_first(asn: str, names: Mapping[str, str]) -> str:
    name = short_name(names.get(asn))
    return f"{name} {asn}" if name else asn


def when_text(t: dt.datetime, tz: dt.tzinfo = UTC) -> str:
    """"27 Sep 2020 02:00 UTC+4"."""
    lt = t.astimezone(tz)
    return f"{lt.day} {lt:%b %Y %H:%M} {zone_label(t, tz)}"


def _day(t: dt.datetime, tz: dt.tzinfo) -> str:
    lt = t.astimezone(tz)
    return f"{lt.day} {lt:%b %Y}"


def target_label(target: str) -> str:
    """A measured target as the text names it: the host for https URLs and endpoints, "host (plain HTTP)" for an
    http URL (web.whatsapp.com worked over HTTP, not HTTPS: the difference is the finding)."""
    host = host_of(target) or target
    if target.lower().startswith("http://"):
        return f"{host} (plain HTTP)"
    return host


def _list(items: Sequence[str], limit: int) -> str:
    if len(items) <= limit:
        shown, rest = list(items), 0
    else:
        shown, rest = list(items[:limit]), len(items) - limit
    text = _join(shown)
    return text + (f" and {rest} more" if rest else "")


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items)


def _what(incident: Incident, targets: Iterable[str] | None, limit: int) -> str:
    chosen = sorted(set(targets)) if targets is not None else sorted(incident.targets)
    labels = list(dict.fromkeys(target_label(t) for t in sorted(chosen, key=lambda t: (host_of(t), t))))
    if labels:
        return _list(labels, limit)
    return _list(incident.services, limit) or "traffic"


def _methods(incident: Incident) -> str:
    named = [m for m in incident.methods if m and m != "bandwidth"]
    if not named:
        return ""
    main = METHOD_PHRASES.get(named[0], named[0])
    also = [METHOD_PHRASES.get(m, m) for m in named[1:]]
    return f" by {main}" + (f" (also seen: {', '.join(also)})" if also else "")


def _where(asns: Sequence[str], incident: Incident, names: Mapping[str, str], all_of_them: bool,
           measured: Mapping[str, Sequence[str]]) -> str:
    if incident.scope == Scope.REGIONAL.value and incident.regions:
        affected: dict[str, set[str]] = defaultdict(set)
        for e in incident.evidence:
            if e.asn and e.note and e.role in ("start", "end", "before-end"):
                affected[e.asn].add(e.note)
        if len(asns) == 1:
            regions = sorted(affected.get(asns[0]) or {_region(r) for r in incident.regions})
            return f"in region {', '.join(regions)} on {network_label(asns[0], names)}"
        parts = []
        for a in asns:
            mine, seen = affected.get(a, set()), set(measured.get(a, ()))
            if mine and (not seen or mine < seen):
                name = short_name(names.get(a))
                parts.append(f"{a} ({name + ', ' if name else ''}region {', '.join(sorted(mine))} only)")
            else:
                parts.append(network_label(a, names))
        return "on " + ", ".join(parts)
    labels = ", ".join(network_label(a, names) for a in asns)
    if incident.scope == Scope.NATIONAL.value and all_of_them:
        return f"on every measured network: {labels}"
    return f"on {labels}"


def _region(code: str) -> str:
    return code.split("/", 1)[1] if "/" in code else code


def _uids(evidence: Iterable[Evidence], roles: Iterable[str]) -> list[str]:
    """Measurement uids of the evidence in these roles, earliest first, one per network before the rest."""
    roles = set(roles)
    items = sorted((e for e in evidence if e.role in roles and e.measurement_uid),
                   key=lambda e: (e.time, e.measurement_uid or ""))
    firsts: list[str] = []
    rest: list[str] = []
    seen_asn: set[str | None] = set()
    for e in items:
        uid = e.measurement_uid or ""
        if uid in firsts or uid in rest:
            continue
        if e.asn not in seen_asn:
            seen_asn.add(e.asn)
            firsts.append(uid)
        else:
            rest.append(uid)
    return firsts + rest


def _evidence_text(uids: Sequence[str], shown: int) -> str:
    if not uids:
        return ""
    more = len(uids) - shown
    return " Evidence: " + ", ".join(uids[:shown]) + (f" (+{more} more)" if more > 0 else "") + "."


@dataclass(slots=True)
class _Series:
    asn: str
    start: dt.datetime
    end: dt.datetime | None
    targets: set[str]
    methods: Counter[str]


def _series_of(incident: Incident) -> dict[str, _Series]:
    """Per network: when the incident started and ended there (from the blocking rule's evidence)."""
    starts: dict[tuple, dt.datetime] = {}
    ends: dict[tuple, dt.datetime] = {}
    before_end: dict[tuple, dt.datetime] = {}
    methods: dict[tuple, Counter[str]] = defaultdict(Counter)
    for e in incident.evidence:
        if not e.asn:
            continue
        key = (e.asn, e.note, e.target)
        if e.role == "start":
            starts[key] = min(starts.get(key, e.time), e.time)
            if e.method and e.outcome in ("blocked", "throttled"):
                methods[key][e.method] += 1
        elif e.role == "end":
            ends[key] = min(ends.get(key, e.time), e.time)
        elif e.role == "before-end":
            before_end[key] = max(before_end.get(key, e.time), e.time)
    out: dict[str, _Series] = {}
    for key, s in starts.items():
        asn = key[0]
        end = None if incident.end is None else ends.get(key, before_end.get(key, incident.end))
        cur = out.get(asn)
        if cur is None:
            out[asn] = _Series(asn, s, end, {key[2]} if key[2] else set(), Counter(methods[key]))
        else:
            cur.start = min(cur.start, s)
            cur.end = None if cur.end is None or end is None else max(cur.end, end)
            if key[2]:
                cur.targets.add(key[2])
            cur.methods.update(methods[key])
    return out


def _entry(t: dt.datetime, kind: str, incident: Incident, text: str, uids: Sequence[str]) -> TimelineEntry:
    return TimelineEntry(time=t.astimezone(UTC), kind=kind, incident_id=incident.incident_id, text=text,
                         measurement_uids=list(uids))


def _verdict_entries(incident: Incident, names: Mapping[str, str], p: TimelineParams,
                     measured: Mapping[str, Sequence[str]]) -> list[TimelineEntry]:
    tz = p.tz
    throttling = incident.type == IncidentType.THROTTLING.value
    verb = "throttled" if throttling else "blocked"
    series = _series_of(incident)
    asns = sorted(incident.asns)
    initial = [a for a in asns if a not in series or series[a].start - incident.start <= p.change_gap]
    what = _what(incident, None, p.max_targets)
    if throttling and incident.detail.get("whole_network") == "true":  # inc.throttling.network.v1
        what = f"all traffic (slow pages: {what})"
    how = "" if throttling else _methods(incident)
    ongoing = "; ongoing at the end of the period" if incident.end is None else ""
    start_uids = _uids((e for e in incident.evidence if e.asn in initial), ("start",))
    text = (f"{when_text(incident.start, tz)}: {what} {verb}{how} "
            f"{_where(initial, incident, names, initial == asns, measured)}{ongoing}.{_evidence_text(start_uids, p.shown_uids)}")
    out = [_entry(incident.start, "start", incident, text, start_uids)]

    # Changes: networks joining later, methods that appeared later, networks where it ended earlier.
    first_seen: dict[str, dt.datetime] = {}
    for e in incident.evidence:
        if e.role == "start" and e.method and e.outcome in ("blocked", "throttled"):
            first_seen[e.method] = min(first_seen.get(e.method, e.time), e.time)
    late_methods = set() if throttling else {m for m, t in first_seen.items() if t - incident.start > p.change_gap}
    for asn in asns:
        s = series.get(asn)
        if s is None:
            continue
        label = network_label(asn, names)
        ev = [e for e in incident.evidence if e.asn == asn]
        if asn not in initial:
            method = s.methods.most_common(1)[0][0] if s.methods and not throttling else None
            by = f" by {METHOD_PHRASES.get(method, method)}" if method else ""
            uids = _uids(ev, ("start",))
            out.append(_entry(s.start, "change", incident,
                              f"{when_text(s.start, tz)}: {label} joins: {_what(incident, s.targets, p.max_targets)} "
                              f"{verb}{by} there too (incident since {_day(incident.start, tz)})."
                              f"{_evidence_text(uids, p.shown_uids)}", uids))
        else:
            late = [e for e in ev if e.role == "start" and e.method in late_methods
                    and e.outcome in ("blocked", "throttled")]
            if late:
                first = min(e.time for e in late)
                uids = _uids(late, ("start",))
                phrase = ", ".join(METHOD_PHRASES.get(m, m) for m in sorted({e.method or "" for e in late}))
                what = _what(incident, {e.target for e in late if e.target}, p.max_targets)
                out.append(_entry(first, "change", incident,
                                  f"{when_text(first, tz)}: {what} on {label} now also {verb} by {phrase}."
                                  f"{_evidence_text(uids, p.shown_uids)}", uids))
        if s.end is not None and (incident.end is None or incident.end - s.end > p.change_gap):
            uids = _uids(ev, ("end", "before-end"))
            again = "no longer throttled" if throttling else "reachable again"
            out.append(_entry(s.end, "change", incident,
                              f"{when_text(s.end, tz)}: {_what(incident, s.targets, p.max_targets)} {again} on "
                              f"{label}; still {verb} on other networks.{_evidence_text(uids, p.shown_uids)}", uids))

    if incident.end is not None:
        closing = [a for a in asns if a in series and series[a].end is not None
                   and incident.end - series[a].end <= p.change_gap] or asns
        unobserved = int(incident.detail.get("ends_not_observed", "0") or 0)
        episodes = int(incident.detail.get("episodes", "0") or 0)
        ev = [e for e in incident.evidence if e.asn in closing]
        since = f"{verb} since {_day(incident.start, tz)}"
        where = _where(closing, incident, names, closing == asns, measured)
        if episodes and unobserved >= episodes:
            uids = _uids(ev, ("before-end",))
            text = (f"{when_text(incident.end, tz)}: {what} last seen {verb} {where} ({since}); the end was not "
                    f"observed: the network stopped giving conclusive measurements.{_evidence_text(uids, p.shown_uids)}")
        else:
            uids = _uids(ev, ("end",)) or _uids(ev, ("before-end",))
            again = "no longer throttled" if throttling else "reachable again"
            text = f"{when_text(incident.end, tz)}: {what} {again} {where} ({since}).{_evidence_text(uids, p.shown_uids)}"
        out.append(_entry(incident.end, "end", incident, text, uids))
    return out


def _outage_entries(incident: Incident, names: Mapping[str, str], p: TimelineParams) -> list[TimelineEntry]:
    tz = p.tz
    asns = sorted(incident.asns)
    if incident.scope == Scope.NATIONAL.value and not asns:
        who = f"{incident.country or 'The country'} nationwide"
    else:
        who = _join([_name_first(a, names) for a in asns]) or (incident.country or "the network")
    region = (f" in region {', '.join(_region(r) for r in incident.regions)}"
              if incident.scope == Scope.REGIONAL.value and incident.regions else "")
    seen = ""
    if incident.source not in ("signals", "verdicts"):
        datasources = ", ".join(incident.methods)
        seen = f", seen by {_SOURCES.get(incident.source, incident.source)}" + (f" on {datasources}" if datasources else "")
    ongoing = "; ongoing at the end of the period" if incident.end is None else ""
    start_uids = _uids(incident.evidence, ("start", "during"))
    text = (f"{when_text(incident.start, tz)}: {who} largely unreachable{region} (full-network outage{seen})"
            f"{ongoing}.{_evidence_text(start_uids, p.shown_uids)}")
    out = [_entry(incident.start, "start", incident, text, start_uids)]
    if incident.end is not None:
        end_uids = _uids(incident.evidence, ("end",))
        text = (f"{when_text(incident.end, tz)}: {who} reachable again{region} (outage since "
                f"{_day(incident.start, tz)}).{_evidence_text(end_uids, p.shown_uids)}")
        out.append(_entry(incident.end, "end", incident, text, end_uids))
    return out


def timeline_of(incidents: Sequence[Incident], *, names: Mapping[str, str] | None = None,
                tz: dt.tzinfo | None = None, params: TimelineParams | None = None,
                regions: Mapping[str, Sequence[str]] | None = None) -> list[TimelineEntry]:
    """Dated sentences for ``incidents``, ordered by time (starts before changes before ends at the same time).

    ``names`` maps ASNs to network names (as the probes reported them); ``tz`` is the zone the sentences' times are
    written in (default UTC; the entries' ``time`` is always UTC); ``regions`` maps ASNs to the probe regions
    measured in them (a regional incident on several networks names the region only where it is a part of one)."""
    p = params or TimelineParams()
    if tz is not None:
        p = TimelineParams(change_gap=p.change_gap, shown_uids=p.shown_uids, max_targets=p.max_targets, tz=tz)
    names = names or {}
    out: list[TimelineEntry] = []
    for incident in incidents:
        if incident.type == IncidentType.FULL_NETWORK.value:
            out.extend(_outage_entries(incident, names, p))
        else:
            out.extend(_verdict_entries(incident, names, p, regions or {}))
    out.sort(key=lambda e: (e.time, _KIND_ORDER.get(e.kind, 3), e.incident_id, e.text))
    return out

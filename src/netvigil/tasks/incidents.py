"""`netvigil incidents` and `netvigil aggregates`: read the verdict stream from the store one network at a time, find
blocking episodes, build the probe-side outage signals, run the outage detector over them and over stored signals,
add imported outage events, and return one linked incident list. The judging is in `netvigil.incidents` (pure)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from netvigil.incidents.aggregates import AggregateRow, aggregate_verdicts
from netvigil.incidents.detect import (
    Coverage,
    IncidentParams,
    blocking_incidents,
    episodes_of,
    incident_id,
    scope_of,
)
from netvigil.incidents.from_outages import incidents_from_outages
from netvigil.incidents.listing import IncidentFilter, link_related, select
from netvigil.incidents.outages import DetectorConfig, detect_outages
from netvigil.incidents.probe_signals import probe_signals
from netvigil.incidents.services import load_services
from netvigil.model.incident import Incident, IncidentType, Scope
from netvigil.model.signal import OutageEvent, Signal
from netvigil.model.verdict import Verdict
from netvigil.store import open_store

__all__ = ["IncidentRun", "MakeIncidentsParams", "make_aggregates", "make_incidents", "merge_network_outages"]


@dataclass(frozen=True, slots=True)
class MakeIncidentsParams:
    store: str | None = None
    filter: IncidentFilter = IncidentFilter()
    services_path: Path | None = None
    params: IncidentParams = IncidentParams()
    signal_step: dt.timedelta = dt.timedelta(hours=1)   # the probes' round: buckets of the probe-side signal
    detector: DetectorConfig | None = None
    signals_dir: Path | None = None                     # stored/imported signals and outage events
    use_stored_signals: bool = True


@dataclass(slots=True)
class IncidentRun:
    incidents: list[Incident]
    verdicts: int = 0
    networks: int = 0
    episodes: int = 0
    probe_signals: list[Signal] = field(default_factory=list)
    outage_events: list[OutageEvent] = field(default_factory=list)
    stored_events: int = 0


def _networks(store_url: str | None, f: IncidentFilter) -> Iterator[tuple[tuple[str, str], list[Verdict]]]:
    """The store's verdicts, one (country, ASN) at a time (bounded memory: one network's verdicts)."""
    filters = {"probe_cc": f.country.upper()} if f.country else {}
    with open_store(store_url, read_only=True) as store, store.iter_verdicts(filters, f.since, f.until) as rows:
        for key, group in itertools.groupby(rows, key=lambda v: (v.probe_cc or "", v.probe_asn or "")):
            yield key, list(group)


def make_incidents(p: MakeIncidentsParams) -> IncidentRun:
    services = load_services(p.services_path)
    coverage = Coverage()
    episodes = []
    signals: list[Signal] = []
    run = IncidentRun(incidents=[])
    for _, verdicts in _networks(p.store, p.filter):
        run.verdicts += len(verdicts)
        run.networks += 1
        episodes.extend(episodes_of(verdicts, services, p.params, coverage))
        signals.extend(probe_signals(verdicts, step=p.signal_step))
    run.episodes = len(episodes)
    run.probe_signals = signals
    config = p.detector or DetectorConfig()
    events = detect_outages(signals, config)   # each event keeps its signal's network (asns) and country
    run.outage_events = events
    incidents = blocking_incidents(episodes, coverage, p.params)
    outages = merge_network_outages(incidents_from_outages(events), p.params.merge_window, coverage)
    incidents.extend(outages)
    if p.use_stored_signals:
        from netvigil.tasks.signals import load_events, load_signals

        # Imported events as stored; stored signals judged afresh with this run's detector settings (so events an
        # earlier `netvigil signals detect` stored are replaced, not listed twice).
        stored = [e for e in load_events(p.signals_dir) if e.source != "detector"]
        stored.extend(detect_outages(load_signals(p.signals_dir), config))
        run.stored_events = len(stored)
        incidents.extend(incidents_from_outages(stored))
    run.incidents = select(link_related(incidents), p.filter)
    return run


def merge_network_outages(incidents: list[Incident], window: dt.timedelta, coverage: Coverage) -> list[Incident]:
    """Probe-side outages of several networks of one country that start and end together are one incident (the
    seed's "Baktelecom and Aztelekom largely down"), scoped against the networks measured meanwhile."""
    groups: list[list[Incident]] = []
    for i in sorted(incidents, key=lambda i: (i.start, i.incident_id)):
        for g in groups:
            h = g[0]
            if (h.country == i.country and h.scope == i.scope == Scope.ISP.value and abs(h.start - i.start) <= window
                    and ((h.end is None and i.end is None)
                         or (h.end is not None and i.end is not None and abs(h.end - i.end) <= window))):
                g.append(i)
                break
        else:
            groups.append([i])
    out = []
    for g in groups:
        if len(g) == 1:
            out.append(g[0])
            continue
        asns = sorted({a for i in g for a in i.asns})
        start = min(i.start for i in g)
        end = None if any(i.end is None for i in g) else max(i.end for i in g)  # type: ignore[type-var]
        cc = g[0].country
        scope = scope_of(cc or "", set(asns), {}, coverage, start, end)
        out.append(msgspec.structs.replace(
            g[0], incident_id=incident_id(IncidentType.FULL_NETWORK.value, cc, [], asns, [], start), scope=scope,
            asns=asns, start=start, end=end, evidence=[e for i in g for e in i.evidence],
            methods=sorted({m for i in g for m in i.methods}),
            summary=f"Full-network outage on {', '.join(asns)} from {start:%Y-%m-%d %H:%M} UTC"
                    + (f" to {end:%Y-%m-%d %H:%M} UTC" if end else ", ongoing") + ", seen by the probes' own measurements.",
            detail={**g[0].detail, "merged": ",".join(i.incident_id for i in g)}))
    return out


def make_aggregates(store: str | None, f: IncidentFilter, *, bucket: str, level: str,
                    services_path: Path | None = None) -> list[AggregateRow]:
    services = load_services(services_path)
    rows: list[AggregateRow] = []
    for (_, asn), verdicts in _networks(store, f):
        if f.asn and asn != f.asn.upper():
            continue
        rows.extend(aggregate_verdicts(verdicts, services, bucket=bucket, level=level))
    if f.service:
        rows = [r for r in rows if r.key == f.service or level == "target"]
    rows.sort(key=lambda r: (r.bucket, r.probe_cc, r.probe_asn, r.key, r.method))
    return rows

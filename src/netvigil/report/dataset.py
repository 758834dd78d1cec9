"""The publication: everything a report or the dashboard shows for one country and period, computed once from the
store (verdicts), the incident detectors, the outage signals and the cost model. The report renders it to HTML and
Markdown; the web app serves it as pages, JSON and CSV. Built by `netvigil.tasks.publish`; every figure in it can be
rebuilt from the store, and every claim carries the measurement uids that prove it.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from netvigil.model.incident import CostRange, Incident
from netvigil.model.signal import Signal

__all__ = ["Network", "Publication", "StatusCell", "ThroughputPoint", "TimelineEntry"]


class Network(msgspec.Struct, frozen=True, kw_only=True):
    """A measured network of the country."""
    asn: str                          # "AS64501"
    name: str = ""                    # probe_network_name as the probes reported it
    measurements: int = 0
    regions: list[str] = []


class StatusCell(msgspec.Struct, frozen=True, kw_only=True):
    """One day x network x service of the status matrix: verdict counts and the state they add up to."""
    day: dt.date
    asn: str
    service: str                      # a service group ("facebook") or, where none applies, the target
    state: str                        # ok | blocked | throttled | down | mixed | inconclusive
    total: int = 0
    ok: int = 0
    blocked: int = 0
    throttled: int = 0
    down: int = 0
    inconclusive: int = 0
    methods: list[str] = []           # blocking methods seen that day ("tls", "dns", ...)
    sample_uids: list[str] = []       # a few measurement uids behind the cell (evidence links)


class ThroughputPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One throughput figure from a throttling or speed-test measurement."""
    time: dt.datetime
    asn: str
    test_name: str                    # "throttling" | "speedtest"
    target: str
    kbit_s: float                     # the target's plateau (throttling) or the download rate (speedtest)
    control_kbit_s: float | None = None
    outcome: str = ""
    measurement_uid: str = ""


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One dated sentence of the timeline: an incident started, changed or ended."""
    time: dt.datetime
    kind: str                         # start | change | end
    incident_id: str
    text: str                         # short and factual, e.g. "facebook.com, instagram.com blocked by TLS SNI ..."
    measurement_uids: list[str] = []  # the measurements that prove it


class Publication(msgspec.Struct, kw_only=True):
    country: str                      # ISO 3166-1 alpha-2
    since: dt.datetime
    until: dt.datetime
    generated_at: dt.datetime
    measurements: int = 0
    verdicts: int = 0
    networks: list[Network] = []
    incidents: list[Incident] = []    # priced (Incident.cost) where the cost model could price them
    timeline: list[TimelineEntry] = []
    matrix: list[StatusCell] = []
    throughput: list[ThroughputPoint] = []
    signals: list[Signal] = []        # outage signals (probe-side, reachability, imported) for the country
    total_cost: CostRange | None = None
    notes: dict[str, str] = {}        # facts about the build (rules version, cost method, data sources, ...)

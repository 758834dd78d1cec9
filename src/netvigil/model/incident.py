"""Incidents: dated disruptions with scope, type, services, networks, evidence and (once priced) a cost range.

An incident is what users read ("since 27 Sept 14:00 Facebook is blocked by SNI filtering on all four ISPs").
The detectors in `netvigil.incidents` make them from verdicts and outage signals; the tracker reads and writes them
in Access Now's STOP shape; economics prices them. Times are timezone-aware UTC; ``end`` is None while ongoing.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import msgspec

__all__ = ["CostRange", "Evidence", "Incident", "IncidentType", "Scope"]


class IncidentType(StrEnum):
    SERVICE_BASED = "service-based"  # some services blocked, the rest of the network works
    THROTTLING = "throttling"        # data flows, far slower than it should (a service or the whole network)
    FULL_NETWORK = "full-network"    # the network (or all of its international traffic) is down


class Scope(StrEnum):
    ISP = "isp"                      # one network
    SEVERAL_ISPS = "several-isps"    # more than one network, not all the country's measured networks
    NATIONAL = "national"            # every measured network of the country (or a country-level signal)
    REGIONAL = "regional"            # a region inside the country (probes or signals that carry one)


class Evidence(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One record that proves part of an incident: a measurement (by uid) or a signal point / external event."""

    role: str                        # "start" | "end" | "during" | "source"
    time: dt.datetime
    measurement_uid: str | None = None
    asn: str | None = None
    target: str | None = None
    outcome: str | None = None       # the verdict's outcome for a measurement
    method: str | None = None
    source: str | None = None        # "ioda", "cloudflare", "reachability", "probe", … for non-measurement evidence
    note: str = ""


class CostRange(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """An economic cost estimate as a range (US$), with the method that made it."""

    low: float
    central: float
    high: float
    currency: str = "USD"
    method: str = ""                 # method id and version, e.g. "netvigil-cost/1"


class Incident(msgspec.Struct, gc=False, kw_only=True):
    incident_id: str                 # stable: the same data gives the same id on every run
    type: str                        # IncidentType
    country: str | None
    scope: str                       # Scope
    start: dt.datetime
    end: dt.datetime | None = None   # None: ongoing
    asns: list[str] = []             # "AS64528"; empty for a country-level signal
    regions: list[str] = []
    services: list[str] = []         # service groups ("facebook", "telegram"); empty for full-network
    targets: list[str] = []          # the inputs/domains measured as affected
    methods: list[str] = []          # verdict methods ("tls", "dns", …) or signal datasources
    confidence: float = 0.0
    source: str = "verdicts"         # "verdicts" | "signals" | "ioda" | "cloudflare" | "stop" | …
    summary: str = ""                # one factual sentence
    evidence: list[Evidence] = []
    related: list[str] = []          # ids of overlapping incidents (a national throttling containing an ISP outage)
    cost: CostRange | None = None
    detail: dict[str, str] = {}      # source-specific facts kept verbatim (e.g. an IODA score, a STOP row's cause)

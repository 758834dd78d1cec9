"""Signals: time series that show whether a network is up (reachable blocks, BGP prefixes, probe success), and the
outage events detected in them or imported from others (IODA, Cloudflare Radar).

The series follows IODA API v2's shape (``from``/``until``/``step``/``values``) so imported and home-made signals
are one type. Times are integer Unix seconds (UTC); a value of None is a missing point, not zero.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import msgspec

__all__ = ["EntityType", "OutageEvent", "Signal"]


class EntityType(StrEnum):
    COUNTRY = "country"              # code "AZ"
    REGION = "region"                # code "AZ/frontier" (country/region id)
    ASN = "asn"                      # code "AS64528" (IODA writes bare numbers; importers normalise)


class Signal(msgspec.Struct, gc=False, kw_only=True):
    entity_type: str                 # EntityType
    entity_code: str
    datasource: str                  # "ioda:bgp", "ioda:ping-slash24", "reachability", "probe:both-fail", …
    start: int                       # Unix seconds of values[0]
    step: int                        # seconds between points
    values: list[float | None]
    country: str | None = None       # the country an ASN/region entity belongs to, when known
    bgp_like: bool = False           # coarse signal: the detector uses the lower ratio threshold for it
    asn: str | None = None           # a region entity measured inside one network (probe-side signals)

    @property
    def until(self) -> int:
        return self.start + self.step * len(self.values)

    def time_of(self, i: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start + self.step * i, dt.timezone.utc)


class OutageEvent(msgspec.Struct, gc=False, kw_only=True):
    """A detected or imported outage on one entity."""

    entity_type: str
    entity_code: str
    start: dt.datetime
    end: dt.datetime | None          # None: still going at the end of the data
    datasource: str
    source: str                      # "detector" | "ioda" | "cloudflare"
    score: float = 0.0               # IODA-style alert area: sum of relative drop x minutes
    country: str | None = None
    asns: list[str] = []             # Cloudflare annotations name ASNs beside locations
    method: str = ""                 # the detector's or importer's method id
    detail: dict[str, str] = {}

"""Verdict time series: counts per (bucket, country, ASN, target or service, method) with the reports and regions
that contributed. What charts, status matrices and the dashboard read; pure, over any verdict stream."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from netvigil.incidents.detect import parse_time
from netvigil.incidents.services import ServiceMap
from netvigil.model.verdict import Outcome, Verdict

__all__ = ["AggregateRow", "aggregate_verdicts", "bucket_start"]

_BUCKETS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}


def bucket_start(t: dt.datetime, bucket: str) -> dt.datetime:
    if bucket == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"bucket must be 'hour' or 'day', not {bucket!r}")


@dataclass(slots=True)
class AggregateRow:
    bucket: dt.datetime
    probe_cc: str
    probe_asn: str
    key: str                 # a target, or a service group
    method: str              # the blocking method ("" for verdicts without one)
    total: int = 0
    ok: int = 0
    blocked: int = 0
    throttled: int = 0
    down: int = 0
    inconclusive: int = 0
    reports: set[str] = field(default_factory=set)
    regions: set[str] = field(default_factory=set)

    @property
    def blocked_share(self) -> float | None:
        """Blocked or throttled among conclusive verdicts (None when nothing was conclusive)."""
        conclusive = self.ok + self.blocked + self.throttled
        return None if not conclusive else (self.blocked + self.throttled) / conclusive

    def as_dict(self) -> dict:
        return {"bucket": self.bucket.isoformat(), "probe_cc": self.probe_cc, "probe_asn": self.probe_asn,
                "key": self.key, "method": self.method, "total": self.total, "ok": self.ok,
                "blocked": self.blocked, "throttled": self.throttled, "down": self.down,
                "inconclusive": self.inconclusive, "blocked_share": self.blocked_share,
                "reports": len(self.reports), "regions": sorted(self.regions)}


def aggregate_verdicts(verdicts: Iterable[Verdict], services: ServiceMap, *, bucket: str = "hour",
                       level: str = "service") -> list[AggregateRow]:
    """Rows ordered by (bucket, country, ASN, key, method). ``level`` is "service" or "target"."""
    if bucket not in _BUCKETS:
        raise ValueError(f"bucket must be 'hour' or 'day', not {bucket!r}")
    if level not in ("service", "target"):
        raise ValueError(f"level must be 'service' or 'target', not {level!r}")
    rows: dict[tuple, AggregateRow] = {}
    for v in verdicts:
        t = parse_time(v.measurement_start_time)
        if t is None:
            continue
        key = services.service_of(v.test_name, v.target, v.domain) if level == "service" else v.target
        b = bucket_start(t, bucket)
        k = (b, v.probe_cc or "", v.probe_asn or "", key, v.method or "")
        row = rows.get(k)
        if row is None:
            row = rows[k] = AggregateRow(b, *k[1:])
        row.total += 1
        if v.outcome == Outcome.OK.value:
            row.ok += 1
        elif v.outcome == Outcome.BLOCKED.value:
            row.blocked += 1
        elif v.outcome == Outcome.THROTTLED.value:
            row.throttled += 1
        elif v.outcome == Outcome.DOWN.value:
            row.down += 1
        else:
            row.inconclusive += 1
        if v.report_id:
            row.reports.add(v.report_id)
        if v.probe_region:
            row.regions.add(v.probe_region)
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], *k[1:]))]



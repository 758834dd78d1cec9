"""Cross-matching STOP records with outage events and detected incidents.

A STOP row is *confirmed* when some event of the same country starts near it:

* within ``[start − before_start, start + after_start]`` (STOP dates are days, so the comparison is on UTC
  calendar dates: an event on the STOP start day, the day before, or up to ``after_start`` days after), or
* for a row with an end date (long shutdowns), anywhere in ``[start − before_start, end + after_end]``.

An event (IODA outage, Cloudflare annotation, netvigil detection) is *missing from STOP* when it matches no STOP
row of the compared period; events outside the period (the report years of the STOP rows compared, unless given)
are counted apart, never as missing. The windows are :class:`MatchParams`, with a stable rule id. No I/O here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import msgspec

from netvigil.model.incident import Incident
from netvigil.model.signal import OutageEvent
from netvigil.tracker.stop import StopRecord, is_national

__all__ = ["Candidate", "MatchParams", "MatchResult", "from_incidents", "from_outages", "match_stop"]


@dataclass(frozen=True)
class MatchParams:
    """The matching windows, in days (see the module docstring)."""

    rule_id: str = "stop-match/1"
    before_start: int = 1    # an event may start this many days before the STOP start date
    after_start: int = 2     # … or up to this many days after it
    after_end: int = 1       # for rows with an end date: … or up to this many days after the end date
    use_span: bool = True    # allow the [start − before_start, end + after_end] span at all

    def describe(self) -> str:
        span = (f", or between start − {self.before_start} d and end + {self.after_end} d when the STOP row has an "
                "end date" if self.use_span else "")
        return (f"{self.rule_id}: same country; event start (UTC date) between STOP start − {self.before_start} d "
                f"and start + {self.after_start} d{span}")


class Candidate(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """An event to match, whatever produced it (an OutageEvent or an Incident)."""

    key: str                 # its id ("ioda-5A446C2E", an incident id, or "outage-<n>")
    country: str | None
    start: dt.datetime
    end: dt.datetime | None = None
    kind: str = ""           # "ioda", "outage", "incident", …
    label: str = ""          # a short description for listings
    category: str = ""       # what to break "missing" down by (IODA's cause, an incident's type)


def from_outages(events: Iterable[OutageEvent]) -> list[Candidate]:
    out = []
    for i, e in enumerate(events):
        key = e.detail.get("record_id") or f"outage-{i}"
        label = f"{e.entity_type} {e.entity_code} ({e.datasource})"
        out.append(Candidate(key=key, country=e.country, start=e.start, end=e.end, kind=e.source or "outage",
                             label=label, category=e.detail.get("cause") or "not given"))
    return out


def from_incidents(incidents: Iterable[Incident]) -> list[Candidate]:
    return [Candidate(key=inc.incident_id, country=inc.country, start=inc.start, end=inc.end, kind="incident",
                      label=inc.summary or f"{inc.type} {inc.scope}", category=inc.type)
            for inc in incidents]


def _utc_date(t: dt.datetime) -> dt.date:
    return (t.astimezone(dt.timezone.utc) if t.tzinfo else t).date()


def matches(rec: StopRecord, cand: Candidate, params: MatchParams) -> bool:
    if not rec.country_code or cand.country != rec.country_code:
        return False
    d = _utc_date(cand.start)
    lo = rec.start_date - dt.timedelta(days=params.before_start)
    if lo <= d <= rec.start_date + dt.timedelta(days=params.after_start):
        return True
    return (params.use_span and rec.end_date is not None
            and lo <= d <= rec.end_date + dt.timedelta(days=params.after_end))


def _kind(rec: StopRecord) -> str:
    """National or not, full network or not: what an outage signal can be expected to see."""
    t = rec.shutdown_type.lower()
    full = "full" in rec.shutdown_extent.lower() and not ("throttl" in t and "shutdown" not in t)
    return f"{'national' if is_national(rec) else 'sub-national'}, {'full network' if full else 'service/throttle'}"


@dataclass
class MatchResult:
    params: MatchParams
    period: tuple[dt.date, dt.date]
    pairs: list[tuple[str, str]] = field(default_factory=list)        # (STOP record id, candidate key)
    confirmed: list[str] = field(default_factory=list)                # STOP record ids with ≥ 1 match
    unconfirmed: list[str] = field(default_factory=list)
    no_country_code: list[str] = field(default_factory=list)          # STOP rows that cannot be matched
    matched: list[str] = field(default_factory=list)                  # candidate keys that match ≥ 1 STOP row
    missing: list[str] = field(default_factory=list)                  # in the period, matching no STOP row
    outside_period: int = 0
    by_year: dict[int, dict[str, int]] = field(default_factory=dict)  # report year -> rows, confirmed
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # "national, full network" -> rows, confirmed
    event_range: tuple[dt.date, dt.date] | None = None               # first and last event start (UTC dates)
    missing_by_category: dict[str, int] = field(default_factory=dict)
    missing_by_country: dict[str, int] = field(default_factory=dict)
    stop_rows: int = 0
    candidates: int = 0

    def as_dict(self) -> dict:
        return {
            "rule": self.params.rule_id, "rule_text": self.params.describe(),
            "windows_days": {"before_start": self.params.before_start, "after_start": self.params.after_start,
                             "after_end": self.params.after_end, "use_span": self.params.use_span},
            "period": [self.period[0].isoformat(), self.period[1].isoformat()],
            "stop_rows": self.stop_rows, "stop_confirmed": len(self.confirmed),
            "stop_unconfirmed": len(self.unconfirmed), "stop_without_country_code": len(self.no_country_code),
            "events": self.candidates, "events_in_period": self.candidates - self.outside_period,
            "events_matched": len(self.matched), "events_missing_from_stop": len(self.missing),
            "events_outside_period": self.outside_period,
            "events_first_last": None if self.event_range is None else [d.isoformat() for d in self.event_range],
            "by_year": {str(y): v for y, v in sorted(self.by_year.items())}, "by_kind": self.by_kind,
            "missing_by_category": self.missing_by_category, "missing_by_country": self.missing_by_country,
            "pairs": [{"stop": s, "event": c} for s, c in self.pairs],
            "confirmed": self.confirmed, "unconfirmed": self.unconfirmed, "missing": self.missing,
        }


def match_stop(records: Sequence[StopRecord], candidates: Sequence[Candidate], params: MatchParams = MatchParams(),
               *, period: tuple[dt.date, dt.date] | None = None) -> MatchResult:
    """Match every STOP row against every candidate of its country (rows and candidates are kept in input order).

    ``period`` (first and last day) bounds which candidates may be "missing from STOP"; by default the report
    years of ``records``, 1 Jan of the first to 31 Dec of the last.
    """
    if period is None:
        years = [r.year for r in records] or [dt.date.today().year]
        period = (dt.date(min(years), 1, 1), dt.date(max(years), 12, 31))
    result = MatchResult(params=params, period=period, stop_rows=len(records), candidates=len(candidates))
    by_country: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        if c.country:
            by_country[c.country].append(c)
    matched: set[str] = set()
    per_year: dict[int, Counter[str]] = defaultdict(Counter)
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        per_year[rec.year]["rows"] += 1
        kind = _kind(rec)
        per_kind[kind]["rows"] += 1
        if not rec.country_code:
            result.no_country_code.append(rec.record_id)
            result.unconfirmed.append(rec.record_id)
            continue
        hits = [c for c in by_country.get(rec.country_code, ()) if matches(rec, c, params)]
        for c in hits:
            result.pairs.append((rec.record_id, c.key))
            matched.add(c.key)
        if hits:
            result.confirmed.append(rec.record_id)
            per_year[rec.year]["confirmed"] += 1
            per_kind[kind]["confirmed"] += 1
        else:
            result.unconfirmed.append(rec.record_id)
    result.by_year = {y: {"rows": c["rows"], "confirmed": c["confirmed"]} for y, c in per_year.items()}
    result.by_kind = {k: {"rows": per_kind[k]["rows"], "confirmed": per_kind[k]["confirmed"]}
                      for k in sorted(per_kind, key=lambda k: -per_kind[k]["rows"])}
    if candidates:
        starts = [_utc_date(c.start) for c in candidates]
        result.event_range = (min(starts), max(starts))
    missing_cat: Counter[str] = Counter()
    missing_cc: Counter[str] = Counter()
    seen: set[str] = set()
    for c in candidates:
        if c.key in seen:
            continue
        seen.add(c.key)
        if c.key in matched:
            result.matched.append(c.key)
        elif period[0] <= _utc_date(c.start) <= period[1]:
            result.missing.append(c.key)
            missing_cat[c.category or "not given"] += 1
            missing_cc[c.country or "?"] += 1
        else:
            result.outside_period += 1
    result.missing_by_category = dict(missing_cat.most_common())
    result.missing_by_country = dict(missing_cc.most_common())
    return result

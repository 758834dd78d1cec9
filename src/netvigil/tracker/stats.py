"""Yearly statistics over STOP records, with the counting rules stated as data.

Which rows count in year Y: by default those whose report year is Y (``StopRecord.year``: the sheet they were
published in). That is the rule that reproduces Access Now's published totals — each yearly sheet also lists
shutdowns that began in an earlier year and were still going (the 2019 sheet has 5 rows from 2018, and 213 rows in
all: "213 shutdowns in 2019"). ``by="start"`` counts rows whose start date lies in Y instead.

Days of disruption are the sum over rows of each row's days under a :class:`DaysRule` (overlapping rows add up, as
in Access Now's totals); the number of distinct days with at least one shutdown going on is given beside it. Rows
still ongoing and rows without a known end are counted and reported separately, with the treatment the rule gives
them. No I/O here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from netvigil.countries import alpha2, country_name
from netvigil.tracker.stop import SERVICES, StopRecord, scope_label

__all__ = ["CALENDAR_DAYS", "DAYS_RULES", "ELAPSED_DAYS", "DaysRule", "YearStats", "record_days", "record_span",
           "select_records", "union_days", "year_stats"]


@dataclass(frozen=True)
class DaysRule:
    """How one row's days of disruption in a year are counted."""

    rule_id: str
    inclusive: bool = True          # count the start and the end day (end − start + 1); else elapsed (end − start)
    clip_to_year: bool = True       # count only days inside the year; else the row's whole length
    ongoing: str = "year-end"       # rows still going: "year-end" (run to 31 Dec of the year) | "exclude" (0 days)
    unknown_end: str = "start-day"  # rows without a known end: "start-day" (as if they ended the day they began,
                                    # 1 day inclusive, 0 elapsed) | "exclude" (0 days)

    def describe(self) -> str:
        length = ("inclusive calendar days from start to end (a one-day shutdown is 1)" if self.inclusive
                  else "elapsed days, end date minus start date (a one-day shutdown is 0)")
        clip = "clipped to the year" if self.clip_to_year else "whole length, also days outside the year"
        ongoing = ("rows still ongoing run to 31 Dec of the year" if self.ongoing == "year-end"
                   else "rows still ongoing count 0 days")
        unknown = ("rows without a known end count their start day only" if self.unknown_end == "start-day"
                   else "rows without a known end count 0 days")
        return f"{self.rule_id}: {length}, {clip}; {ongoing}; {unknown}"


CALENDAR_DAYS = DaysRule("calendar-days/1")
# The 2016–2019 sheets' own duration column is end − start; applied unclipped, it is the rule nearest to the
# published "1706 days" of 2019 (see docs/tracker.md).
ELAPSED_DAYS = DaysRule("elapsed-days/1", inclusive=False, clip_to_year=False, ongoing="year-end",
                        unknown_end="exclude")
DAYS_RULES = {"calendar": CALENDAR_DAYS, "elapsed": ELAPSED_DAYS}


def record_days(rec: StopRecord, year: int, rule: DaysRule) -> int:
    """The row's days of disruption counted in ``year`` under ``rule``."""
    start = rec.start_date
    if rec.end_date is not None:
        end = rec.end_date
    elif rec.end_status == "ongoing":
        if rule.ongoing != "year-end":
            return 0
        end = dt.date(year, 12, 31)
    else:
        if rule.unknown_end != "start-day":
            return 0
        end = start
    if rule.clip_to_year:
        start, end = max(start, dt.date(year, 1, 1)), min(end, dt.date(year, 12, 31))
    if end < start:
        return 0
    return (end - start).days + (1 if rule.inclusive else 0)


def record_span(rec: StopRecord, year: int, rule: DaysRule) -> tuple[dt.date, dt.date] | None:
    """The days of ``year`` the row covers under an inclusive rule (for the union of days); None for none."""
    end = rec.end_date
    if end is None:
        if rec.end_status == "ongoing" and rule.ongoing == "year-end":
            end = dt.date(year, 12, 31)
        elif rec.end_status != "ongoing" and rule.unknown_end == "start-day":
            end = rec.start_date
        else:
            return None
    start, end = max(rec.start_date, dt.date(year, 1, 1)), min(end, dt.date(year, 12, 31))
    return (start, end) if start <= end else None


def union_days(rows: Iterable[StopRecord], year: int, rule: DaysRule) -> int:
    """Distinct calendar days of ``year`` with at least one of the rows going on (overlaps counted once)."""
    days: set[dt.date] = set()
    for r in rows:
        if (span := record_span(r, year, rule)) is not None:
            days.update(span[0] + dt.timedelta(days=i) for i in range((span[1] - span[0]).days + 1))
    return len(days)


def select_records(records: Iterable[StopRecord], year: int, *, country: str | None = None,
                   by: str = "report") -> list[StopRecord]:
    """Rows counted in ``year`` (``by`` "report": report year; "start": start date's year), one country if given
    (an ISO code or a name as the sheets spell it)."""
    want_code = alpha2(country) if country else None
    out = []
    for rec in records:
        if (rec.year if by == "report" else rec.start_date.year) != year:
            continue
        if country:
            if want_code is not None:
                if rec.country_code != want_code:
                    continue
            elif rec.country.strip().lower() != country.strip().lower():
                continue
        out.append(rec)
    return out


def _type_label(text: str) -> str:
    t = text.lower()
    shutdown, throttle = "shutdown" in t, "throttl" in t
    return ("shutdown and throttle" if shutdown and throttle else "shutdown" if shutdown else
            "throttle" if throttle else "not given")


def _extent_label(text: str) -> str:
    t = text.lower()
    full, service = "full" in t, "service" in t
    return ("full network and service-based" if full and service else "full network" if full else
            "service-based" if service else "not given")


def _network_label(text: str) -> str:
    t = text.lower()
    broadband, mobile = "broadband" in t, "mobile" in t
    return ("broadband and mobile" if broadband and mobile else "mobile" if mobile else
            "broadband" if broadband else "not given" if not t or t == "unknown" else text)


@dataclass
class YearStats:
    year: int
    country: str | None
    by: str
    shutdowns: int
    countries: int
    country_counts: list[tuple[str, str, int]]          # (key, name, rows), most rows first
    days: int
    days_rule: DaysRule
    days_by_rule: dict[str, int]                         # the same rows under each preset rule
    days_union: int                                      # distinct days of the year with ≥ 1 row going on
    ended: int
    ongoing: int
    unknown_end: int
    started_before: int                                  # rows that began before the year (carried over)
    by_type: dict[str, int] = field(default_factory=dict)
    by_extent: dict[str, int] = field(default_factory=dict)
    by_scope: dict[str, int] = field(default_factory=dict)
    by_network: dict[str, int] = field(default_factory=dict)
    by_service: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @property
    def open_ended_treatment(self) -> str:
        r = self.days_rule
        return (f"{self.ongoing} still ongoing: " + ("counted to 31 Dec" if r.ongoing == "year-end" else "0 days")
                + f"; {self.unknown_end} without a known end: "
                + ("start day only" if r.unknown_end == "start-day" else "0 days"))

    def as_dict(self) -> dict:
        return {
            "year": self.year, "country": self.country, "year_rule": "report year (the sheet's)" if self.by ==
            "report" else "start date's year", "shutdowns": self.shutdowns, "countries": self.countries,
            "days": self.days, "days_rule": self.days_rule.rule_id, "days_rule_text": self.days_rule.describe(),
            "days_by_rule": self.days_by_rule, "days_with_any_shutdown": self.days_union,
            "end": {"ended": self.ended, "ongoing": self.ongoing, "unknown": self.unknown_end,
                    "treatment": self.open_ended_treatment},
            "started_before_year": self.started_before,
            "by_type": self.by_type, "by_extent": self.by_extent, "by_scope": self.by_scope,
            "by_network": self.by_network, "by_service": self.by_service,
            "by_country": [{"country": key, "name": name, "shutdowns": n} for key, name, n in self.country_counts],
            "sources": self.sources,
        }


def year_stats(records: Iterable[StopRecord], year: int, *, country: str | None = None, by: str = "report",
               rule: DaysRule = CALENDAR_DAYS) -> YearStats:
    rows = select_records(records, year, country=country, by=by)
    countries: Counter[str] = Counter(r.country_key for r in rows)
    names: dict[str, str] = {}
    for r in rows:
        names.setdefault(r.country_key, (country_name(r.country_code) if r.country_code else None) or r.country)
    services: Counter[str] = Counter()
    for r in rows:
        for s in SERVICES:
            if getattr(r, f"{s}_affected") == "Yes":
                services[s] += 1
        if r.other_affected.strip():
            services["other"] += 1
        if any(getattr(r, f"{s}_affected") == "Yes" for s in SERVICES) or r.other_affected.strip():
            services["any named service"] += 1
    return YearStats(
        year=year, country=country, by=by, shutdowns=len(rows), countries=len(countries),
        country_counts=sorted(((k, names[k], n) for k, n in countries.items()), key=lambda t: (-t[2], t[1])),
        days=sum(record_days(r, year, rule) for r in rows), days_rule=rule,
        days_by_rule={p.rule_id: sum(record_days(r, year, p) for r in rows) for p in DAYS_RULES.values()},
        days_union=union_days(rows, year, rule),
        ended=sum(r.end_status == "ended" for r in rows), ongoing=sum(r.end_status == "ongoing" for r in rows),
        unknown_end=sum(r.end_status == "unknown" for r in rows),
        started_before=sum(r.start_date.year < year for r in rows),
        by_type=dict(Counter(_type_label(r.shutdown_type) for r in rows).most_common()),
        by_extent=dict(Counter(_extent_label(r.shutdown_extent) for r in rows).most_common()),
        by_scope=dict(Counter(scope_label(r.geo_scope) for r in rows).most_common()),
        by_network=dict(Counter(_network_label(r.affected_network) for r in rows).most_common()),
        by_service={s: services.get(s, 0) for s in (*SERVICES, "other", "any named service")},
        sources=sorted({r.source for r in rows}),
    )

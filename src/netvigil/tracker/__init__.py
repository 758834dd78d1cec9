"""Tracker: shutdown records in Access Now's STOP (#KeepItOn) schema, yearly statistics, and cross-matching with
outage events and detected incidents (pure functions over typed records; file I/O in ``readers`` and ``storage``).
See docs/tracker.md."""

from netvigil.tracker.export import incidents_to_stop, stop_to_incident, write_stop_csv
from netvigil.tracker.match import MatchParams, MatchResult, from_incidents, from_outages, match_stop
from netvigil.tracker.stats import CALENDAR_DAYS, DAYS_RULES, ELAPSED_DAYS, DaysRule, YearStats, year_stats
from netvigil.tracker.stop import STOP_COLUMNS, Rejected, StopRecord

__all__ = [
    "CALENDAR_DAYS", "DAYS_RULES", "ELAPSED_DAYS", "STOP_COLUMNS", "DaysRule", "MatchParams", "MatchResult",
    "Rejected", "StopRecord", "YearStats", "from_incidents", "from_outages", "incidents_to_stop", "match_stop",
    "stop_to_incident", "write_stop_csv", "year_stats",
]

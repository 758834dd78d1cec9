"""IODA's manually investigated outages (InetIntel/internet_outages ``data/ioda``) as OutageEvents.

The list is a spreadsheet export: begin and end times written for people ("Wednesday, March 17, 2021, 4:40:00 PM";
a few rows "4/3/2020  15:15:00 PM", "2:30: AM", or no seconds), country names, a scope cell ("Country",
"Region (Central Equitoria)", "AS (58224)"), yes/no cells for which IODA signal showed the outage, a cause and a
confirmation status, then many empty columns. Times are read as UTC (IODA's dashboards show UTC). A row without a
readable begin time or a country with an ISO code cannot be matched to anything and is rejected with its reason;
a missing or unreadable end leaves ``end`` None and says so in ``detail``. No I/O here.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Mapping

from netvigil.countries import alpha2
from netvigil.model.signal import EntityType, OutageEvent
from netvigil.tracker.stop import Rejected

__all__ = ["IODA_FORMAT", "IODA_METHOD", "is_ioda_header", "normalise_ioda_row", "parse_ioda_time"]

IODA_FORMAT = "ioda-investigated"
IODA_METHOD = "ioda-investigated-csv/1"

_MONTHS = {m: i for i, m in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
     "december"), start=1)}
_TIME = r"(\d{1,2}):(\d{1,2})(?::(\d{1,2})?)?\s*([AaPp]\.?[Mm]\.?)?"
_LONG = re.compile(r"^(?:[A-Za-z]+,?\s+)?([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4}),?\s+" + _TIME + r"$")
_SLASH = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4}),?\s+" + _TIME + r"$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?")
# IODA's datasource names for the three "visible by human" columns (BGP, active probing, the UCSD telescope).
_SIGNALS = (("bgp", "ioda bgp visible by human"), ("ping-slash24", "ioda ap visible by human"),
            ("ucsd-nt", "ioda ibr visible by human"))


def is_ioda_header(header: list[str]) -> bool:
    names = {h.strip().lower() for h in header}
    return {"begin time", "end time", "country"} <= names


def parse_ioda_time(text: str) -> dt.datetime | None:
    """A begin/end cell as a UTC datetime; None when it is empty, "N/A" or unreadable.

    A 12-hour clock with AM/PM is the norm; an hour above 12 is read as a 24-hour clock whatever the suffix says
    ("15:15:00 PM", "23:40:00 AM" both occur).
    """
    text = " ".join(text.split())
    if not text:
        return None
    if m := _ISO.match(text):
        y, mo, d, h, mi, s, ampm = int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0), None
    elif m := _LONG.match(text):
        month = _MONTHS.get(m[1].lower())
        if month is None:
            month = next((v for k, v in _MONTHS.items() if len(m[1]) >= 3 and k.startswith(m[1].lower())), None)
        if month is None:
            return None
        y, mo, d, h, mi, s, ampm = int(m[3]), month, int(m[2]), int(m[4]), int(m[5]), int(m[6] or 0), m[7]
    elif m := _SLASH.match(text):
        y, mo, d, h, mi, s, ampm = int(m[3]), int(m[1]), int(m[2]), int(m[4]), int(m[5]), int(m[6] or 0), m[7]
    else:
        return None
    if ampm and 1 <= h <= 12:
        pm = ampm.lower().startswith("p")
        h = (h % 12) + (12 if pm else 0)
    try:
        return dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def _flag(value: str) -> str:
    v = value.strip().lower()
    return {"true": "yes", "ture": "yes", "yes": "yes", "false": "no", "no": "no"}.get(v, "unknown" if not v or v in (
        "n/a", "na") else v)


def normalise_ioda_row(cells: Mapping[str, str], *, source: str, row: int) -> OutageEvent | Rejected:
    """One row of the investigated-outages list as an OutageEvent (``detail["record_id"]`` = ``ioda-<ID>``)."""
    raw = {str(k).strip(): ("" if v is None else str(v).strip()) for k, v in cells.items()
           if k is not None and str(k).strip()}
    low = {k.lower(): v for k, v in raw.items()}
    begin_text = low.get("begin time", "")
    start = parse_ioda_time(begin_text)
    if start is None:
        reason = "begin time missing" if not begin_text or begin_text.upper() == "N/A" else \
            f"begin time unreadable: {begin_text[:40]!r}"
        return Rejected(source=source, row=row, reason=reason, cells=raw)
    country_name = low.get("country", "")
    cc = alpha2(country_name)
    if cc is None:
        reason = "country missing" if not country_name else f"country {country_name!r} has no ISO 3166 code"
        return Rejected(source=source, row=row, reason=reason, cells=raw)

    detail: dict[str, str] = {"country_name": country_name}
    end_text = low.get("end time", "")
    end = parse_ioda_time(end_text)
    if end is None:
        detail["end"] = "missing" if not end_text or end_text.upper() in ("N/A", "NA") else "unreadable"
        if end_text:
            detail["end_raw"] = end_text
    elif end < start:
        detail["end"] = "before begin"
        detail["end_raw"] = end_text
        end = None

    scope_text = next((v for k, v in low.items() if k.startswith("scope")), "")
    entity_type, entity_code = EntityType.COUNTRY.value, cc
    if m := re.match(r"^\s*region\s*\((.*)\)\s*$", scope_text, re.I):
        entity_type, entity_code = EntityType.REGION.value, f"{cc}/{m[1].strip()}"
    elif m := re.match(r"^\s*as\s*\(\s*(?:AS)?(\d+)\s*\)\s*$", scope_text, re.I):
        entity_type, entity_code = EntityType.ASN.value, f"AS{m[1]}"
    elif scope_text and scope_text.strip().lower() != "country":
        detail["scope_note"] = "scope not understood: read as country"
    asns = [entity_code] if entity_type == EntityType.ASN.value else []

    visible = [name for name, col in _SIGNALS if _flag(low.get(col, "")) == "yes"]
    for name, col in _SIGNALS:
        detail[f"visible_{name}"] = _flag(low.get(col, ""))
    for key, col in (("ioda_id", "id"), ("scope", None), ("cause", "cause"), ("confirmation", "confirmation status"),
                     ("manually_verified", "manually verified"), ("notes", "notes"), ("url", "grafana urls"),
                     ("region", "region"), ("as", "as")):
        value = scope_text if col is None else low.get(col, "")
        if value:
            detail[key] = value
    for k, v in raw.items():  # columns this reader does not know, kept verbatim
        if k.lower() not in {"id", "begin time", "end time", "country", "cause", "confirmation status",
                             "manually verified", "notes", "grafana urls", "region", "as"} and \
                not k.lower().startswith("scope") and k.lower() not in {c for _, c in _SIGNALS} and v:
            detail[f"col:{k}"] = v
    detail["record_id"] = f"ioda-{low.get('id') or f'row{row}'}"
    detail["source_file"] = source
    detail["source_row"] = str(row)
    return OutageEvent(
        entity_type=entity_type, entity_code=entity_code, start=start, end=end,
        datasource="ioda:" + ("+".join(visible) if visible else "investigated"), source="ioda", country=cc,
        asns=asns, method=IODA_METHOD, detail=detail,
    )

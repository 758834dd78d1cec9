"""The STOP record: Access Now's #KeepItOn shutdown-tracker row, typed, and the mappings from its older sheets.

Access Now published its STOP data as one spreadsheet sheet per year. The 2020, 2021 and 2022 sheets share one
schema (45 columns; the 2020/2021 sheets spell ``Duration`` with a capital); the 2019 sheet uses older names for most
columns and some older vocabularies (``Level 1``, ``1``/``0``); the 2016–2018 sheet is older still (one
``shutdown_type`` cell lists networks, SMS, telephony and throttling together). :class:`StopRecord` holds every
column of the newest schema; :func:`normalise_row` maps a row of any of the three shapes into it. Old columns with no
counterpart, and old cell values that were translated, are kept verbatim in ``extra`` (keyed by the old column name),
so nothing in the sheet is lost. A row that cannot be a record at all (no readable start date) comes back as a
:class:`Rejected` with its reason; smaller problems stay on the record as ``issues``. No I/O here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Mapping

import msgspec

from netvigil.countries import alpha2

__all__ = [
    "STOP_COLUMNS", "SHEET_FORMATS", "LEGACY_2019_COLUMNS", "LEGACY_2016_COLUMNS", "GEO_SCOPE_VALUES",
    "Rejected", "StopRecord", "detect_format", "is_national", "normalise_row", "parse_date", "record_key",
    "scope_label", "stable_id",
]

# The 2021–22 sheet's columns, in the sheet's order (2022 spelling: ``duration`` in lower case).
STOP_COLUMNS: tuple[str, ...] = (
    "start_date_type", "start_date", "country", "geo_scope", "area_name", "shutdown_type", "affected_network",
    "shutdown_extent", "ordered_by", "decision_maker", "actual_cause", "actual_cause_details", "info_source",
    "info_source_link", "shutdown_status", "end_date", "duration", "gov_justification", "gov_just_details", "gov_ack",
    "legal_just", "legal_method", "gov_ack_source", "gov_ack_quote", "facebook_affected", "twitter_affected",
    "whatsapp_affected", "instagram_affected", "telegram_affected", "other_affected", "sms_affected",
    "phonecall_affected", "telcos_involved", "telco_ack", "telco_ack_source", "telco_ack_quote", "election",
    "violence", "hr_abuse_reported", "users_targeted", "users_target_detail", "users_notified", "econ_impact", "event",
    "an_link",
)

# The newest sheets' four geo_scope answers.
GEO_LOCAL = "It only affected one city, county, or village"
GEO_REGIONAL = "It affected more than one city in the same state, province, or region"
GEO_MULTI = "It affected locations in more than one state, province, or region"
GEO_NOT_SURE = "Not sure"
GEO_SCOPE_VALUES = (GEO_LOCAL, GEO_REGIONAL, GEO_MULTI, GEO_NOT_SURE)

# Sheet shapes, recognised by their header (see detect_format).
FMT_2020 = "stop-2020"   # 2020, 2021, 2022 sheets and netvigil's own export
FMT_2019 = "stop-2019"
FMT_2016 = "stop-2016"   # the 2016–2018 sheet
SHEET_FORMATS = (FMT_2020, FMT_2019, FMT_2016)

# 2019 sheet column -> StopRecord field. Columns not listed here go to ``extra`` verbatim.
LEGACY_2019_COLUMNS: dict[str, str] = {
    "start_date": "start_date",
    "end_date": "end_date",
    "duration": "duration",
    "Info_source": "info_source",
    "news_link": "info_source_link",
    "country": "country",
    "geo_scope": "geo_scope",                      # Level 1/2/3 -> the newest wording (values kept in extra)
    "area_name": "area_name",
    "ordered_by": "ordered_by",
    "decision_maker": "decision_maker",
    "shutdown_type_new": "shutdown_type",          # "Shutdown and throttle" -> "Shutdown, Throttle"
    "affected_network": "affected_network",        # "Mobile and broadband" -> "Broadband, Mobile"
    "full or service-based": "shutdown_extent",    # "Full" -> "Full network"
    "Facebook_affected": "facebook_affected",      # 1/0 -> Yes/No
    "Twitter_affected": "twitter_affected",
    "WhatsApp_affected": "whatsapp_affected",
    "Instagram_affected": "instagram_affected",
    "Telegram_affected": "telegram_affected",
    "other_service_details (specify)": "other_affected",
    "SMS_and_phone_call_affected": "sms_affected",  # and phonecall_affected: split "SMS and Phone call"/"None"
    "telcos_involved": "telcos_involved",
    "gov_ack": "gov_ack",
    "official_just": "gov_justification",
    "other_just_details": "gov_just_details",
    "off_statement": "gov_ack_quote",
    "actual_cause": "actual_cause",
    "other_cause_details": "actual_cause_details",
    "election": "election",
    "violence": "violence",
    "hr_abuse_reported": "hr_abuse_reported",
    "users_notified": "users_notified",
    "users_affected/targetted": "users_targeted",
    "legal_justif": "legal_just",
    "legal_method": "legal_method",
    "telco_resp": "telco_ack",
    "telco_ ack": "telco_ack_source",
    "econ_impact": "econ_impact",
    "event": "event",
    "an_link": "an_link",
}
# Kept in extra: ID, continent, sub-region, notes (and every unknown column).

# 2016–2018 sheet column -> StopRecord field. shutdown_type_group and shutdown_type together give shutdown_type,
# shutdown_extent, affected_network, sms_affected and phonecall_affected (see _legacy_2016_type); service_details
# naming a service sets that service's *_affected to Yes. Columns not listed go to ``extra`` verbatim.
LEGACY_2016_COLUMNS: dict[str, str] = {
    "year": "year",                                # the report year (the record's ``year``)
    "start_date": "start_date",
    "end_date": "end_date",
    "duration_days": "duration",
    "info_source": "info_source",
    "news_link": "info_source_link",
    "country": "country",
    "geo_scope": "geo_scope",                      # Local/Regional/Multi-regional/National -> newest wording
    "area_name": "area_name",
    "ordered_by": "ordered_by",
    "shutdown_type_group": "shutdown_extent",      # with shutdown_type, see above
    "shutdown_type": "shutdown_type",
    "official_just": "gov_justification",
    "actual_cause": "actual_cause",
    "econ_impact": "econ_impact",
    "event": "event",
    "an_link": "an_link",
}
# Kept in extra: duration_hours, continent, sub_region, services_affected, service_details, notes, latitude,
# longitude, id (and every unknown column).

_GEO_2019 = {"level 1": GEO_LOCAL, "level 2": GEO_REGIONAL, "level 3": GEO_MULTI}
_GEO_2016 = {"local": GEO_LOCAL, "regional": GEO_REGIONAL, "multi-regional": GEO_MULTI, "national": GEO_MULTI}
_NATIONAL_AREA = re.compile(
    r"\b(national|nationwide|nationwde|entire country|whole country|countrywide|country-wide)\b", re.I)

# Columns whose answers are yes/no/unknown: spelling variants ("Yes ", "unknown ", "Uknown", 1/0) are folded.
_YES_NO_COLUMNS = (
    "gov_ack", "legal_just", "facebook_affected", "twitter_affected", "whatsapp_affected", "instagram_affected",
    "telegram_affected", "sms_affected", "phonecall_affected", "telco_ack", "election", "violence",
    "hr_abuse_reported", "users_notified",
)
_YES_NO = {"yes": "Yes", "no": "No", "unknown": "Unknown", "unkown": "Unknown", "uknown": "Unknown",
           "1": "Yes", "0": "No", "1.0": "Yes", "0.0": "No", "true": "Yes", "false": "No"}
SERVICES = ("facebook", "twitter", "whatsapp", "instagram", "telegram")


class StopRecord(msgspec.Struct, kw_only=True, gc=False):
    """One STOP row in the 2021–22 schema (the 45 columns, same names), plus what netvigil derives and keeps.

    Text cells are the sheet's, with outer whitespace removed and yes/no answers spelled one way. ``start_date`` and
    ``end_date`` are dates (``end_date`` None when the sheet gives none, says "Ongoing"/"Unknown", or gives one
    before the start); ``end_status`` says which. ``year`` is the report year: the sheet's year column or name,
    else the start date's year (``year_from`` says which) — it is the year whose statistics the row counts in.
    """

    start_date_type: str = ""
    start_date: dt.date
    country: str = ""
    geo_scope: str = ""
    area_name: str = ""
    shutdown_type: str = ""
    affected_network: str = ""
    shutdown_extent: str = ""
    ordered_by: str = ""
    decision_maker: str = ""
    actual_cause: str = ""
    actual_cause_details: str = ""
    info_source: str = ""
    info_source_link: str = ""
    shutdown_status: str = ""
    end_date: dt.date | None = None
    duration: str = ""
    gov_justification: str = ""
    gov_just_details: str = ""
    gov_ack: str = ""
    legal_just: str = ""
    legal_method: str = ""
    gov_ack_source: str = ""
    gov_ack_quote: str = ""
    facebook_affected: str = ""
    twitter_affected: str = ""
    whatsapp_affected: str = ""
    instagram_affected: str = ""
    telegram_affected: str = ""
    other_affected: str = ""
    sms_affected: str = ""
    phonecall_affected: str = ""
    telcos_involved: str = ""
    telco_ack: str = ""
    telco_ack_source: str = ""
    telco_ack_quote: str = ""
    election: str = ""
    violence: str = ""
    hr_abuse_reported: str = ""
    users_targeted: str = ""
    users_target_detail: str = ""
    users_notified: str = ""
    econ_impact: str = ""
    event: str = ""
    an_link: str = ""
    # --- derived by netvigil ---
    record_id: str = ""              # stable: see record_key
    year: int                        # report year (the statistics year)
    year_from: str = ""              # "year-column" | "sheet" | "start-date"
    country_code: str | None = None  # ISO alpha-2; None when the name has no ISO code (kept in ``country``)
    end_status: str = "unknown"      # "ended" | "ongoing" | "unknown"
    source: str = ""                 # file name (and ":sheet" for a workbook)
    source_format: str = ""          # one of SHEET_FORMATS, or "netvigil" for an export of detected incidents
    row: int = 0                     # spreadsheet row number in the source (header = row 1)
    extra: dict[str, str] = {}       # old columns without a counterpart, and translated old values, verbatim
    issues: list[str] = []           # cell-level problems found while reading, with the cell set aside

    def cells(self) -> dict[str, str]:
        """The 45 STOP columns as text (dates ISO, None empty), for CSV export."""
        out: dict[str, str] = {}
        for col in STOP_COLUMNS:
            value = getattr(self, col)
            out[col] = "" if value is None else value.isoformat() if isinstance(value, dt.date) else str(value)
        return out

    @property
    def country_key(self) -> str:
        """What counts as one country: the ISO code, else the sheet's name (Somaliland has no ISO code)."""
        return self.country_code or self.country.strip()


class Rejected(msgspec.Struct, kw_only=True, gc=False):
    """A row set aside: where it was, why, and its cells verbatim."""

    source: str
    row: int
    reason: str
    cells: dict[str, str]


def detect_format(header: list[str]) -> str | None:
    """The sheet shape from its header, or None for a table that is not STOP."""
    names = {h.strip().lower() for h in header}
    if {"start_date", "shutdown_extent", "shutdown_status"} <= names:
        return FMT_2020
    if "start_date" in names and ("shutdown_type_new" in names or "full or service-based" in names):
        return FMT_2019
    if "start_date" in names and "shutdown_type_group" in names:
        return FMT_2016
    return None


def parse_date(text: str) -> dt.date | None:
    """ISO dates as the CSVs have them (a time part after the date is ignored); None for anything else."""
    text = text.strip()
    m = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T].*)?$", text)
    if not m:
        return None
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def scope_label(geo_scope: str) -> str:
    """A short label for a geo_scope answer of any sheet (for statistics)."""
    text = " ".join(geo_scope.split())
    if text == GEO_LOCAL:
        return "one city/village"
    if text == GEO_REGIONAL:
        return "several cities, one region"
    if text == GEO_MULTI:
        return "several regions"
    if text == GEO_NOT_SURE:
        return "not sure"
    return "not given" if not text else text


def record_key(rec: StopRecord) -> str:
    """The identity of a row: report year, start date, country, place and kind (not links or prose, which get
    edited)."""
    def fold(s: str) -> str:
        return " ".join(s.lower().split())

    return "|".join((str(rec.year), rec.start_date.isoformat(), rec.country_key.lower(), fold(rec.area_name),
                     fold(rec.shutdown_type), fold(rec.shutdown_extent), fold(rec.affected_network)))


def stable_id(key: str, occurrence: int) -> str:
    """``stop-`` and 16 hex digits of the key; the n-th identical key in a source gets ``#n`` hashed in."""
    if occurrence:
        key = f"{key}#{occurrence}"
    return "stop-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def _clean(value: str | None) -> str:
    return "" if value is None else str(value).strip()


def _yes_no(value: str) -> str:
    return _YES_NO.get(" ".join(value.lower().split()), value)


def _report_year(text: str) -> int | None:
    m = re.match(r"^\s*(\d{4})(?:\.0*)?\s*$", text)
    return int(m[1]) if m else None


def normalise_row(fmt: str, cells: Mapping[str, str], *, source: str, row: int,
                  sheet_year: int | None = None) -> StopRecord | Rejected:
    """One sheet row (header name -> cell text) as a StopRecord, or a Rejected with the reason.

    ``sheet_year`` is the year the sheet reports on (from its name); rows of the 2016–2018 sheet carry their own.
    The caller gives ``record_id`` (it needs the other rows of the source to number repeats).
    """
    raw = {str(k).strip(): _clean(v) for k, v in cells.items() if k is not None and str(k).strip()}
    fields: dict[str, object] = {}
    extra: dict[str, str] = {}
    issues: list[str] = []
    if fmt == FMT_2020:
        for name, value in raw.items():
            col = name.lower()
            if col in STOP_COLUMNS:
                fields[col] = value
            elif value:
                extra[name] = value
    elif fmt == FMT_2019:
        _map_2019(raw, fields, extra)
    elif fmt == FMT_2016:
        _map_2016(raw, fields, extra)
    else:
        raise ValueError(f"unknown STOP sheet format {fmt!r}")

    start_text = str(fields.pop("start_date", ""))
    start = parse_date(start_text)
    if start is None:
        reason = "start_date missing" if not start_text else f"start_date unreadable: {start_text[:40]!r}"
        return Rejected(source=source, row=row, reason=reason, cells=raw)

    end_text = str(fields.pop("end_date", ""))
    end = parse_date(end_text)
    status = _clean(str(fields.get("shutdown_status", "")))
    if end is not None and end < start:
        issues.append(f"end_date {end.isoformat()} before start_date {start.isoformat()}: set aside")
        extra.setdefault("end_date", end_text)
        end = None
    elif end is None and end_text and not re.match(r"^(ongoing|unknown|unkown|n/?a)$", end_text, re.I):
        issues.append(f"end_date unreadable: {end_text[:40]!r}: set aside")
        extra.setdefault("end_date", end_text)
    if end is not None:
        end_status = "ended"
    elif status.lower() == "ongoing" or end_text.lower() == "ongoing":
        end_status = "ongoing"
    else:
        end_status = "unknown"
    if fmt != FMT_2020 and not status:
        fields["shutdown_status"] = {"ended": "Ended", "ongoing": "Ongoing"}.get(end_status, "Unknown")

    year_text = str(fields.pop("year", ""))
    if year_text and (y := _report_year(year_text)) is not None:
        year, year_from = y, "year-column"
    else:
        if year_text:
            issues.append(f"year unreadable: {year_text[:20]!r}: used the sheet's or the start date's year")
            extra.setdefault("year", year_text)
        year, year_from = (sheet_year, "sheet") if sheet_year else (start.year, "start-date")

    country = str(fields.get("country", ""))
    code = alpha2(country)
    if code is None:
        issues.append(f"country {country!r} has no ISO 3166 code: counted under its name" if country
                      else "country missing")

    for col in _YES_NO_COLUMNS:
        if col in fields:
            fields[col] = _yes_no(str(fields[col]))

    duration = str(fields.get("duration", ""))
    if re.match(r"^-\d", duration):
        issues.append(f"duration {duration!r} negative (a spreadsheet artefact of an empty end date): set aside")
        extra.setdefault("duration", duration)
        fields["duration"] = ""

    return StopRecord(
        **{k: v for k, v in fields.items() if k in STOP_COLUMNS},  # type: ignore[arg-type]
        start_date=start, end_date=end, year=year, year_from=year_from, country_code=code, end_status=end_status,
        source=source, source_format=fmt, row=row, extra=extra, issues=issues,
    )


def _map_2019(raw: dict[str, str], fields: dict[str, object], extra: dict[str, str]) -> None:
    lower = {k.lower(): k for k in LEGACY_2019_COLUMNS}
    for name, value in raw.items():
        old = lower.get(name.lower())
        if old is None:
            if value:
                extra[name] = value
            continue
        target = LEGACY_2019_COLUMNS[old]
        new = value
        if target == "geo_scope":
            new = _GEO_2019.get(" ".join(value.lower().split()), value)
        elif target == "shutdown_type":
            v = value.lower()
            new = ("Shutdown, Throttle" if "shutdown" in v and "throttl" in v else "Throttle" if "throttl" in v
                   else "Shutdown" if "shutdown" in v else "Unknown" if v.strip() == "unknown" else value)
        elif target == "affected_network":
            v = value.lower()
            parts = [p for p, word in (("Broadband", "broadband"), ("Mobile", "mobile")) if word in v]
            new = ", ".join(parts) if parts else ("Unknown" if v.strip() == "unknown" else value)
        elif target == "shutdown_extent":
            v = value.lower()
            parts = [p for p, word in (("Full network", "full"), ("Service-based", "service")) if word in v]
            new = ", ".join(parts) if parts else value
        elif target == "sms_affected":
            v = value.lower()
            if v:
                fields["phonecall_affected"] = "Yes" if "phone" in v else "No"
                new = "Yes" if "sms" in v else "No"
        elif target in ("facebook_affected", "twitter_affected", "whatsapp_affected", "instagram_affected",
                        "telegram_affected"):
            new = _yes_no(value)   # 1/0 -> Yes/No: loses nothing, so not kept in extra
            fields[target] = new
            continue
        if new != value and value:
            extra[old] = value
        fields[target] = new


def _map_2016(raw: dict[str, str], fields: dict[str, object], extra: dict[str, str]) -> None:
    lower = {k.lower(): k for k in LEGACY_2016_COLUMNS}
    for name, value in raw.items():
        old = lower.get(name.lower())
        if old is None or old in ("shutdown_type_group", "shutdown_type"):
            if value:
                extra[name] = value
            continue
        target = LEGACY_2016_COLUMNS[old]
        new = value
        if target == "geo_scope":
            new = _GEO_2016.get(" ".join(value.lower().split()), value)
        if new != value and value:
            extra[old] = value
        fields[target] = new
    group = next((v for k, v in raw.items() if k.lower() == "shutdown_type_group"), "")
    kind = next((v for k, v in raw.items() if k.lower() == "shutdown_type"), "")
    fields.update(_legacy_2016_type(group, kind))
    details = " ".join(v for k, v in raw.items() if k.lower() in ("service_details", "services_affected")).lower()
    for service in SERVICES:
        if service in details:
            fields[f"{service}_affected"] = "Yes"


def _legacy_2016_type(group: str, kind: str) -> dict[str, str]:
    """The 2016–2018 sheet's two type cells as the newest sheet's type, extent, network, SMS and call columns."""
    tokens = {t.strip().lower() for t in re.split(r"[,&]", f"{group},{kind}") if t.strip()}
    joined = " ".join(tokens)
    throttle = "throttling" in joined
    service = any("service" in t for t in tokens)
    broadband = "broadband internet" in joined
    mobile = "mobile internet" in joined or "mobile network" in joined
    full = broadband or mobile or "full network" in tokens
    out: dict[str, str] = {}
    out["shutdown_type"] = ", ".join(p for p, on in (("Shutdown", full or service), ("Throttle", throttle)) if on)
    out["shutdown_extent"] = ", ".join(p for p, on in (("Full network", full), ("Service-based", service)) if on)
    out["affected_network"] = ", ".join(p for p, on in (("Broadband", broadband), ("Mobile", mobile)) if on)
    if "sms" in tokens:
        out["sms_affected"] = "Yes"
    if "telephony" in tokens:
        out["phonecall_affected"] = "Yes"
    return out


def is_national(rec: StopRecord) -> bool:
    """Whether the row describes a country-wide event: its area is named so ("National", "Nationwide", "Entire
    country", also "National except …"), the 2016–2018 sheet's geo_scope was "National", or it has no area and the
    widest geo_scope."""
    if _NATIONAL_AREA.search(rec.area_name):
        return True
    if rec.extra.get("geo_scope", "").strip().lower() == "national":   # the 2016–2018 sheet said so
        return True
    return not rec.area_name and " ".join(rec.geo_scope.split()) == GEO_MULTI

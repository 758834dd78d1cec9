"""Between netvigil's incidents and STOP rows, both ways.

:func:`incidents_to_stop` turns detected incidents into STOP rows (so they can be pasted into the community's
sheet); :func:`stop_to_incident` turns a STOP row into an Incident with ``source="stop"`` (so curated rows can be
listed, priced and compared beside detected ones). STOP has day resolution and no ISP scope; what each direction
keeps and approximates is stated on the functions and in docs/tracker.md. No I/O here except :func:`write_stop_csv`,
which writes to a text stream it is given.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from typing import Iterable, TextIO

from netvigil.countries import alpha2, country_name
from netvigil.model.incident import Evidence, Incident, IncidentType, Scope
from netvigil.tracker.stop import (
    GEO_MULTI, GEO_NOT_SURE, GEO_REGIONAL, SERVICES, STOP_COLUMNS, StopRecord, is_national, record_key,
    stable_id,
)

__all__ = ["incident_to_stop", "incidents_to_stop", "stop_to_incident", "write_stop_csv"]

EXPORT_FORMAT = "netvigil"
# Service names recognised in STOP's free-text other_affected cell (lower case, as Incident.services has them).
_OTHER_SERVICES = ("youtube", "signal", "tiktok", "viber", "skype", "linkedin", "messenger", "imo", "clubhouse",
                   "zoom", "vpn", "wechat", "gmail", "periscope", "snapchat", "vkontakte", "line", "google")
_SERVICE_ALIASES = {"x": "twitter", "fb": "facebook", "facebook-messenger": "messenger"}


def _last_day(end: dt.datetime) -> dt.date:
    """The last (UTC) day an incident covers: an end at exactly midnight does not touch the day it opens."""
    end = end.astimezone(dt.timezone.utc)
    return (end - dt.timedelta(microseconds=1)).date() if end.time() == dt.time() else end.date()


def incident_to_stop(inc: Incident) -> StopRecord:
    """One incident as a STOP row (2021–22 schema).

    type full-network -> Shutdown / Full network; service-based -> Shutdown / Service-based; throttling ->
    Throttle / Service-based when services are named, else Full network. scope national -> "It affected locations
    in more than one state, province, or region" with area "Nationwide"; regional -> "… more than one city in the
    same state, province, or region" for one region, "… more than one state …" for several, the regions as
    area_name; isp / several-isps -> "Not sure" (STOP has no network scope; the ASNs go to telcos_involved).
    affected_network is "Unknown" (netvigil does not tell mobile from fixed). Dates are UTC days; duration is
    inclusive days, as the 2020–22 sheets count it; no end -> "Ongoing".
    """
    start = inc.start.astimezone(dt.timezone.utc).date()
    end = _last_day(inc.end) if inc.end is not None else None
    if end is not None and end < start:
        end = start
    services = [_SERVICE_ALIASES.get(s.lower(), s.lower()) for s in inc.services]
    if inc.type == IncidentType.THROTTLING:
        shutdown_type, extent = "Throttle", "Service-based" if services else "Full network"
    elif inc.type == IncidentType.SERVICE_BASED:
        shutdown_type, extent = "Shutdown", "Service-based"
    else:
        shutdown_type, extent = "Shutdown", "Full network"
    if inc.scope == Scope.NATIONAL:
        geo, area = GEO_MULTI, "Nationwide"
    elif inc.scope == Scope.REGIONAL:
        geo, area = GEO_REGIONAL if len(inc.regions) <= 1 else GEO_MULTI, ", ".join(inc.regions)
    else:
        geo, area = GEO_NOT_SURE, ""
    yes_no = {s: ("Yes" if s in services else "No") for s in SERVICES}
    other = [s for s in services if s not in SERVICES]
    cc = alpha2(inc.country) if inc.country else None
    rec = StopRecord(
        start_date_type="Actual", start_date=start,
        country=(country_name(cc) if cc else None) or (inc.country or ""), geo_scope=geo, area_name=area,
        shutdown_type=shutdown_type, affected_network="Unknown", shutdown_extent=extent, ordered_by="Unknown",
        actual_cause="Unknown", info_source="Other", info_source_link=f"netvigil:{inc.incident_id}",
        shutdown_status="Ongoing" if end is None else "Ended", end_date=end,
        duration="" if end is None else str((end - start).days + 1),
        **{f"{s}_affected": v for s, v in yes_no.items()},
        other_affected=", ".join(other), telcos_involved=", ".join(inc.asns), event=inc.summary,
        year=start.year, year_from="start-date", country_code=cc,
        end_status="ongoing" if end is None else "ended", source=EXPORT_FORMAT, source_format=EXPORT_FORMAT,
        extra={"incident_id": inc.incident_id, "incident_type": inc.type, "incident_scope": inc.scope,
               "confidence": f"{inc.confidence:.2f}", "incident_source": inc.source},
    )
    rec.record_id = stable_id(record_key(rec) + "|" + inc.incident_id, 0)
    return rec


def incidents_to_stop(incidents: Iterable[Incident]) -> list[StopRecord]:
    """Detected incidents as STOP rows, in start order (then incident id)."""
    return [incident_to_stop(i) for i in sorted(incidents, key=lambda i: (i.start, i.incident_id))]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def _other_services(text: str) -> list[str]:
    low = text.lower()
    found = [s for s in _OTHER_SERVICES if re.search(rf"\b{re.escape(s)}\b", low)]
    return found or (["other"] if low.strip() else [])


def stop_to_incident(rec: StopRecord) -> Incident:
    """A STOP row as an Incident (``source="stop"``, ``incident_id`` = the row's record id).

    Type: "Throttle" without "Shutdown" -> throttling; else "Full network" in the extent -> full-network; else
    "Service-based" -> service-based; an empty extent -> full-network (noted in ``detail``). Scope: national when
    the area is named "National"/"Nationwide"/"Entire country" (or empty with the widest geo_scope), else regional
    with the area as region. Start is 00:00 UTC of the start day; end is 00:00 UTC after the end day (STOP's days
    are local days, so both are approximate by up to a day); no end: None (also for an unknown end — the row's
    ``end_status`` is in ``detail``). Services: the five *_affected = Yes, and names found in other_affected.
    """
    t = rec.shutdown_type.lower()
    x = rec.shutdown_extent.lower()
    detail: dict[str, str] = {}
    if "throttl" in t and "shutdown" not in t:
        kind = IncidentType.THROTTLING
    elif "full" in x:
        kind = IncidentType.FULL_NETWORK
    elif "service" in x:
        kind = IncidentType.SERVICE_BASED
    else:
        kind = IncidentType.FULL_NETWORK
        detail["type_note"] = "no shutdown_extent given: read as full network"
    national = is_national(rec)
    services = [s for s in SERVICES if getattr(rec, f"{s}_affected") == "Yes"]
    services += [s for s in _other_services(rec.other_affected) if s not in services]
    end = _midnight(rec.end_date + dt.timedelta(days=1)) if rec.end_date is not None else None
    for col in ("shutdown_type", "shutdown_extent", "affected_network", "geo_scope", "area_name", "actual_cause",
                "gov_justification", "ordered_by", "telcos_involved", "other_affected", "info_source_link",
                "shutdown_status", "duration", "country"):
        value = getattr(rec, col)
        if value:
            detail[col] = value
    detail.update(year=str(rec.year), end_status=rec.end_status, stop_source=rec.source, stop_row=str(rec.row))
    place = rec.area_name or rec.country
    span = f"{rec.start_date.isoformat()} to {rec.end_date.isoformat()}" if rec.end_date else (
        f"from {rec.start_date.isoformat()} ({'ongoing' if rec.end_status == 'ongoing' else 'end unknown'})")
    summary = f"STOP {rec.year}: {rec.shutdown_type or 'shutdown'} ({rec.shutdown_extent or 'extent not given'}) " \
              f"in {place}, {rec.country}, {span}"
    return Incident(
        incident_id=rec.record_id, type=kind.value, country=rec.country_code,
        scope=(Scope.NATIONAL if national else Scope.REGIONAL).value, start=_midnight(rec.start_date), end=end,
        regions=[] if national or not rec.area_name else [rec.area_name], services=services, methods=["stop"],
        confidence=1.0, source="stop", summary=summary,
        evidence=[Evidence(role="source", time=_midnight(rec.start_date), source="stop",
                           note=rec.info_source_link[:300])],
        detail=detail,
    )


def write_stop_csv(records: Iterable[StopRecord], fh: TextIO) -> int:
    """The records as a STOP CSV (the 2021–22 columns, in order); returns the number of rows written."""
    writer = csv.DictWriter(fh, fieldnames=list(STOP_COLUMNS), lineterminator="\n")
    writer.writeheader()
    n = 0
    for rec in records:
        writer.writerow(rec.cells())
        n += 1
    return n


"""Parsers for other observatories' outage data: IODA API v2 JSON and Cloudflare Radar outage annotations.

Pure: parsed JSON (dicts and lists) in, `Signal`s, `OutageEvent`s and alerts out. Nothing raises on bad input:
every item that cannot be used is counted in ``rejected`` with where it was and why.

IODA v2 (api.ioda.inetintel.cc.gatech.edu/v2), all times Unix seconds:
- ``/signals/raw/{entityType}/{entityCode}``: envelope ``{"data": [[series, ...]]}`` (a list per entity, each a
  list of series); a series is ``{entityType, entityCode, entityName, entityFqid, datasource, subtype, from, until,
  step, nativeStep, values}``. Only series whose values are numbers or null are signals; datasources whose points
  are objects (``ping-slash24-loss``, ``gtr-sarima``) are set aside with that reason.
- ``/outages/events``: ``{"data": [event, ...]}``; in the default "codf" format an event is ``{location:
  "country/IR", location_name, start, duration, uncertainty, method, datasource, status, fraction, score,
  overlaps_window}``; in the "ioda" format ``{entity: {type, code, name, attrs}, from, until, datasource, method?,
  score, alerts?}``.
- ``/outages/alerts``: ``{"data": [{datasource, entity: {type, code, name}, time, level, condition, value,
  historyValue, method}]}``; level is "normal", "warning" or "critical". `events_from_alerts` pairs them into events.
The envelope (``type``, ``metadata``, ``requestParameters``, ``error``, ``perf``, ``copyright``) is optional: a bare
list of series, events or alerts is read the same way. IODA writes ASNs as bare numbers; they become "AS<n>".

Cloudflare Radar ``/radar/annotations/outages``: ``{"result": {"annotations": [{id, dataSource, eventType, asns:
[int], asnsDetails: [{asn, name, locations: {code, name}}], locations: ["IR"], locationsDetails: [{code, name}],
outage: {outageCause, outageType}, startDate, endDate, description, linkedUrl, scope}]}, "success": true}``.
endDate null, missing or "" means ongoing. outageType NATIONWIDE gives one country event per location, REGIONAL one
region event per location (the region named by ``scope``), anything else (NETWORK) one event per ASN, or per
location when no ASN is named.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Iterable

import msgspec

from netvigil.countries import alpha2
from netvigil.model.signal import EntityType, OutageEvent, Signal

__all__ = [
    "ExternalData", "IodaAlert", "Rejected", "detect_kind", "events_from_alerts", "ioda_signals_document",
    "normalise_entity", "parse_cloudflare", "parse_ioda",
]

BGP_LIKE_DATASOURCES = frozenset({"bgp"})
_ASN_RE = re.compile(r"^(?:AS)?(\d{1,10})$", re.IGNORECASE)


class Rejected(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One input item set aside: what it was, where in the document, and why."""

    kind: str                        # "signal" | "event" | "alert" | "annotation" | "item" | "document"
    where: str                       # a path in the document, e.g. "data[0][2]"
    reason: str


class IodaAlert(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """An IODA alert: the start (warning/critical) or end (normal) of a possible outage on one datasource."""

    entity_type: str
    entity_code: str
    time: dt.datetime
    level: str
    datasource: str
    condition: str = ""
    value: float | None = None
    history_value: float | None = None
    method: str = ""
    country: str | None = None
    entity_name: str = ""


class ExternalData(msgspec.Struct, gc=False, kw_only=True):
    signals: list[Signal] = []
    events: list[OutageEvent] = []
    alerts: list[IodaAlert] = []
    rejected: list[Rejected] = []

    def extend(self, other: ExternalData) -> None:
        self.signals.extend(other.signals)
        self.events.extend(other.events)
        self.alerts.extend(other.alerts)
        self.rejected.extend(other.rejected)


class _Bad(Exception):
    """An item cannot be used; the message is the reason."""


def _utc(ts: Any, what: str) -> dt.datetime:
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        raise _Bad(f"{what} is not a Unix time: {ts!r}")
    try:
        return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _Bad(f"{what} is out of range: {ts!r}") from None


def _iso(text: Any, what: str) -> dt.datetime:
    if not isinstance(text, str) or not text:
        raise _Bad(f"{what} is not a date: {text!r}")
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise _Bad(f"{what} is not an ISO 8601 date: {text!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)          # Radar writes UTC; a bare time is read as UTC
    return t.astimezone(dt.timezone.utc)


def normalise_entity(entity_type: Any, entity_code: Any, *, country: str | None = None) -> tuple[str, str, str | None]:
    """(entity_type, entity_code, country) in netvigil's spelling: "AS<n>" for ASNs, ISO alpha-2 for countries,
    "<CC>/<id>" for regions when the country is known (IODA's region ids are bare numbers)."""
    etype = str(entity_type or "").strip().lower()
    code = str(entity_code if entity_code is not None else "").strip()
    if not code:
        raise _Bad("empty entity code")
    if etype == EntityType.ASN:
        m = _ASN_RE.match(code)
        if not m or int(m.group(1)) == 0:
            raise _Bad(f"not an ASN: {code!r}")
        return EntityType.ASN.value, f"AS{int(m.group(1))}", country
    if etype == EntityType.COUNTRY:
        cc = alpha2(code)
        if cc is None:
            raise _Bad(f"unknown country code {code!r}")
        return EntityType.COUNTRY.value, cc, cc
    if etype == EntityType.REGION:
        if "/" in code:
            cc = alpha2(code.split("/", 1)[0])
            return EntityType.REGION.value, code, cc or country
        return EntityType.REGION.value, f"{country}/{code}" if country else code, country
    raise _Bad(f"unsupported entity type {entity_type!r} (country, region or asn)")


# --- IODA -------------------------------------------------------------------------------------------------------

def _is_series(x: Any) -> bool:
    return isinstance(x, dict) and "values" in x and ("step" in x or "from" in x)


def _is_event(x: Any) -> bool:
    return isinstance(x, dict) and ("location" in x or ("entity" in x and ("from" in x or "until" in x)))


def _is_alert(x: Any) -> bool:
    return isinstance(x, dict) and "time" in x and ("level" in x or "condition" in x)


def _datasource(item: dict[str, Any]) -> str:
    ds = item.get("datasource")
    if not isinstance(ds, str) or not ds:
        raise _Bad("missing datasource")
    sub = item.get("subtype")
    return f"ioda:{ds}:{sub}" if isinstance(sub, str) and sub else f"ioda:{ds}"


def _ioda_signal(item: dict[str, Any], country: str | None) -> Signal:
    etype, code, cc = normalise_entity(item.get("entityType"), item.get("entityCode"), country=country)
    ds = _datasource(item)
    start, step = item.get("from"), item.get("step")
    if isinstance(start, bool) or not isinstance(start, int):
        raise _Bad(f"'from' is not a Unix time: {start!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        raise _Bad(f"'step' is not a positive number of seconds: {step!r}")
    raw = item.get("values")
    if not isinstance(raw, list):
        raise _Bad("'values' is not a list")
    values: list[float | None] = []
    for k, v in enumerate(raw):
        if v is None:
            values.append(None)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            values.append(float(v) if math.isfinite(v) else None)
        else:
            raise _Bad(f"values[{k}] is {type(v).__name__}, not a number: {ds} is not a plain series")
    return Signal(entity_type=etype, entity_code=code, datasource=ds, start=start, step=step, values=values,
                  country=cc, bgp_like=str(item.get("datasource")) in BGP_LIKE_DATASOURCES)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _ioda_event(item: dict[str, Any], country: str | None) -> OutageEvent:
    detail: dict[str, str] = {}
    if "location" in item:                                # "codf" format
        loc = item.get("location")
        if not isinstance(loc, str) or "/" not in loc:
            raise _Bad(f"location is not '<type>/<code>': {loc!r}")
        etype, code = loc.split("/", 1)
        start = _utc(item.get("start"), "start")
        duration = item.get("duration")
        if duration is None:
            end = None
        elif isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            raise _Bad(f"duration is not a number of seconds: {duration!r}")
        else:
            end = start + dt.timedelta(seconds=int(duration))
        name = item.get("location_name")
        if item.get("overlaps_window"):
            detail["overlaps_window"] = "true"
        attrs: dict[str, Any] = {}
    else:                                                 # "ioda" format
        entity = item.get("entity")
        if not isinstance(entity, dict):
            raise _Bad("entity is not an object")
        etype, code, name = entity.get("type"), entity.get("code"), entity.get("name")
        attrs = entity.get("attrs") if isinstance(entity.get("attrs"), dict) else {}
        start = _utc(item.get("from"), "from")
        end = _utc(item["until"], "until") if item.get("until") else None
        if end is not None and end < start:
            raise _Bad("until is before from")
    cc_hint = alpha2(attrs.get("country_code")) if isinstance(attrs.get("country_code"), str) else None
    etype, code, cc = normalise_entity(etype, code, country=cc_hint or country)
    ds = item.get("datasource")
    if not ds and isinstance(item.get("alerts"), list) and item["alerts"] and isinstance(item["alerts"][0], dict):
        ds = item["alerts"][0].get("datasource")
    if isinstance(name, str) and name:
        detail["name"] = name
    score = _num(item.get("score"))
    if score is not None:
        detail["ioda_score"] = f"{score:g}"
    return OutageEvent(entity_type=etype, entity_code=code, start=start, end=end,
                       datasource=f"ioda:{ds}" if isinstance(ds, str) and ds else "ioda",
                       source="ioda", score=score or 0.0, country=cc,
                       method=f"ioda:{item['method']}" if isinstance(item.get("method"), str) and item["method"]
                       else "ioda", detail=detail)


def _ioda_alert(item: dict[str, Any], country: str | None) -> IodaAlert:
    entity = item.get("entity")
    if not isinstance(entity, dict):
        raise _Bad("entity is not an object")
    etype, code, cc = normalise_entity(entity.get("type"), entity.get("code"), country=country)
    level = item.get("level")
    if not isinstance(level, str) or not level:
        raise _Bad(f"level is not a string: {level!r}")
    ds = item.get("datasource")
    return IodaAlert(entity_type=etype, entity_code=code, time=_utc(item.get("time"), "time"), level=level.lower(),
                     datasource=f"ioda:{ds}" if isinstance(ds, str) and ds else "ioda",
                     condition=str(item.get("condition") or ""), value=_num(item.get("value")),
                     history_value=_num(item.get("historyValue")), method=str(item.get("method") or ""),
                     country=cc, entity_name=str(entity.get("name") or ""))


def parse_ioda(doc: Any, *, country: str | None = None) -> ExternalData:
    """Signals, outage events and alerts from one IODA v2 response (or a bare list of its items). ``country`` is
    the ISO code to attach to ASN and region entities, which IODA does not place in a country itself."""
    out = ExternalData()
    cc = alpha2(country) if country else None
    if isinstance(doc, dict):
        if doc.get("error"):
            out.rejected.append(Rejected(kind="document", where="error", reason=f"IODA error: {doc['error']}"))
        if "data" not in doc:
            if _is_series(doc) or _is_event(doc) or _is_alert(doc):
                doc = {"data": [doc]}
            else:
                out.rejected.append(Rejected(kind="document", where="", reason="no 'data' in the IODA response"))
                return out
        items, base = doc["data"], "data"
    else:
        items, base = doc, ""
    if not isinstance(items, list):
        out.rejected.append(Rejected(kind="document", where=base, reason="'data' is not a list"))
        return out
    _walk(items, base, cc, out, depth=0)
    return out


def _walk(items: list[Any], base: str, cc: str | None, out: ExternalData, depth: int) -> None:
    for k, item in enumerate(items):
        where = f"{base}[{k}]"
        if isinstance(item, list) and depth < 2:           # signals/raw: one list of series per entity
            _walk(item, where, cc, out, depth + 1)
            continue
        kind = "signal" if _is_series(item) else "event" if _is_event(item) else "alert" if _is_alert(item) else ""
        try:
            if kind == "signal":
                out.signals.append(_ioda_signal(item, cc))
            elif kind == "event":
                out.events.append(_ioda_event(item, cc))
            elif kind == "alert":
                out.alerts.append(_ioda_alert(item, cc))
            else:
                out.rejected.append(Rejected(kind="item", where=where,
                                             reason="not an IODA series, event or alert"))
        except _Bad as exc:
            out.rejected.append(Rejected(kind=kind, where=where, reason=str(exc)))


def events_from_alerts(alerts: Iterable[IodaAlert]) -> list[OutageEvent]:
    """Pair IODA alerts into events per (entity, datasource): a warning/critical alert opens one, the next normal
    alert closes it; one still open at the end is ongoing. The score is the alert area from the alerts' own
    value/historyValue, each held until the next alert (an approximation: alerts are sparse)."""
    by_key: dict[tuple[str, str, str], list[IodaAlert]] = {}
    for a in alerts:
        by_key.setdefault((a.entity_type, a.entity_code, a.datasource), []).append(a)
    events: list[OutageEvent] = []
    for (etype, code, ds), items in by_key.items():
        items.sort(key=lambda a: a.time)
        opened: IodaAlert | None = None
        score = 0.0
        last: IodaAlert | None = None
        levels: set[str] = set()

        def close(end: dt.datetime | None) -> None:
            assert opened is not None
            events.append(OutageEvent(
                entity_type=etype, entity_code=code, start=opened.time, end=end, datasource=ds, source="ioda",
                score=round(score, 3), country=opened.country, method="ioda:alerts",
                detail={"levels": ",".join(sorted(levels)), "name": opened.entity_name} if opened.entity_name
                else {"levels": ",".join(sorted(levels))}))

        for a in items:
            if opened is not None and last is not None and last.value is not None and last.history_value:
                minutes = (a.time - last.time).total_seconds() / 60.0
                score += max(0.0, 1.0 - last.value / last.history_value) * minutes
            if a.level == "normal":
                if opened is not None:
                    close(a.time)
                    opened, score, levels = None, 0.0, set()
            elif opened is None:
                opened, levels = a, {a.level}
            else:
                levels.add(a.level)
            last = a
        if opened is not None:
            close(None)
    events.sort(key=lambda e: (e.start, e.entity_type, e.entity_code, e.datasource))
    return events


def ioda_signals_document(signals: Iterable[Signal]) -> dict[str, Any]:
    """Signals written as an IODA v2 ``/signals/raw`` response (one inner list per entity), so netvigil's own
    series and synthetic ones go through the same importer as IODA's."""
    per_entity: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in signals:
        code = s.entity_code
        if s.entity_type == EntityType.ASN and code.upper().startswith("AS"):
            code = code[2:]
        ds = s.datasource[5:] if s.datasource.startswith("ioda:") else s.datasource
        per_entity.setdefault((s.entity_type, code), []).append({
            "entityType": s.entity_type, "entityCode": code, "entityName": "", "entityFqid": "",
            "datasource": ds, "subtype": "", "from": s.start, "until": s.until, "step": s.step,
            "nativeStep": s.step, "values": list(s.values),
        })
    return {"type": "signals", "error": None, "data": list(per_entity.values())}


# --- Cloudflare Radar --------------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _annotation_events(a: dict[str, Any]) -> list[OutageEvent]:
    ident = a.get("id")
    if not isinstance(ident, (str, int)) or ident == "":
        raise _Bad("missing id")
    start = _iso(a.get("startDate"), "startDate")
    end_raw = a.get("endDate")
    end = None if end_raw in (None, "") else _iso(end_raw, "endDate")
    if end is not None and end < start:
        raise _Bad("endDate is before startDate")
    outage = a.get("outage") if isinstance(a.get("outage"), dict) else {}
    otype = str(outage.get("outageType") or "").upper()
    cause = str(outage.get("outageCause") or "")
    locations = []
    for loc in a.get("locations") or []:
        cc = alpha2(loc) if isinstance(loc, str) else None
        if cc is None:
            raise _Bad(f"unknown location {loc!r}")
        locations.append(cc)
    asn_country: dict[str, str | None] = {}
    for d in a.get("asnsDetails") or []:
        if isinstance(d, dict) and d.get("asn") is not None:
            loc = d.get("locations")
            loc_cc = alpha2(loc.get("code")) if isinstance(loc, dict) and isinstance(loc.get("code"), str) else None
            try:
                asn_country[normalise_entity("asn", d["asn"])[1]] = loc_cc
            except _Bad:
                pass
    asns = [normalise_entity("asn", x)[1] for x in (a.get("asns") or [])]
    scope = a.get("scope") if isinstance(a.get("scope"), str) else ""
    detail = {"annotation_id": str(ident)}
    for key, value in (("outage_type", otype), ("outage_cause", cause), ("scope", scope),
                       ("description", a.get("description")), ("linked_url", a.get("linkedUrl")),
                       ("data_source", a.get("dataSource")), ("event_type", a.get("eventType"))):
        if isinstance(value, str) and value:
            detail[key] = value
    names = {d["code"]: d["name"] for d in a.get("locationsDetails") or []
             if isinstance(d, dict) and isinstance(d.get("code"), str) and isinstance(d.get("name"), str)}
    common = dict(start=start, end=end, datasource="cloudflare:radar", source="cloudflare",
                  method=f"cloudflare:{otype.lower() or 'outage'}")
    events: list[OutageEvent] = []
    if otype in ("NATIONWIDE", "REGIONAL") and locations:
        for cc in locations:
            d = dict(detail, name=names.get(cc, cc) if otype == "NATIONWIDE" else (scope or names.get(cc, cc)))
            if otype == "NATIONWIDE":
                events.append(OutageEvent(entity_type="country", entity_code=cc, country=cc, asns=asns, detail=d,
                                          **common))
            else:
                events.append(OutageEvent(entity_type="region", entity_code=f"{cc}/{_slug(scope)}", country=cc,
                                          asns=asns, detail=d, **common))
    elif asns:
        only = locations[0] if len(locations) == 1 else None
        for asn in asns:
            events.append(OutageEvent(entity_type="asn", entity_code=asn, country=asn_country.get(asn) or only,
                                      asns=[asn], detail=detail, **common))
    elif locations:
        for cc in locations:
            events.append(OutageEvent(entity_type="country", entity_code=cc, country=cc,
                                      detail=dict(detail, name=names.get(cc, cc)), **common))
    else:
        raise _Bad("names neither a location nor an ASN")
    return events


def parse_cloudflare(doc: Any) -> ExternalData:
    """Outage events from a Radar ``/annotations/outages`` response (or its ``result``, or a bare list)."""
    out = ExternalData()
    items: Any = doc
    base = ""
    if isinstance(doc, dict):
        if doc.get("success") is False:
            out.rejected.append(Rejected(kind="document", where="errors",
                                         reason=f"Radar error: {doc.get('errors') or 'success is false'}"))
        if "result" in doc:
            items, base = doc["result"], "result"
        if isinstance(items, dict):
            items, base = items.get("annotations"), f"{base}.annotations" if base else "annotations"
    if not isinstance(items, list):
        if not out.rejected:
            out.rejected.append(Rejected(kind="document", where=base, reason="no list of annotations"))
        return out
    for k, a in enumerate(items):
        where = f"{base}[{k}]"
        if not isinstance(a, dict):
            out.rejected.append(Rejected(kind="annotation", where=where, reason="not an object"))
            continue
        try:
            out.events.extend(_annotation_events(a))
        except _Bad as exc:
            out.rejected.append(Rejected(kind="annotation", where=where, reason=str(exc)))
    return out


def detect_kind(doc: Any) -> str:
    """"cloudflare" or "ioda" for a parsed document, by its shape ("ioda" when nothing tells them apart)."""
    if isinstance(doc, dict):
        if "result" in doc or "annotations" in doc or "success" in doc:
            return "cloudflare"
        return "ioda"
    if isinstance(doc, list) and doc and isinstance(doc[0], dict) and ("startDate" in doc[0] or "locations" in doc[0]):
        return "cloudflare"
    return "ioda"

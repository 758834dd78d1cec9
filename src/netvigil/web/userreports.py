"""User reports: a form and an API for people to say what they see, kept beside the measured incidents.

``POST /reports`` (JSON or an HTML form) stores a report as ``unverified``; ``GET /reports/new`` is the form;
``GET /api/reports`` lists them (JSON, or CSV with ``?format=csv``), rejected and spam ones only for the admin;
``POST /api/reports/{id}/moderate`` (``Authorization: Bearer <admin token>``) sets a report's status.
:func:`reports_beside` gives the dashboard, per incident, the reports that agree or disagree with it
(``netvigil.incidents.agreement``). docs/user-reports.md has the fields, the rules and the privacy design.

Nothing identifies a reporter. The store has no column for an address, a user agent or any identifier; the client
address is used only by the rate limiter, which keeps a salted hash of it (the salt is random per process and never
leaves memory) until the address's allowance has refilled (10 minutes after its last report at the default rate; the
table is swept on the next report a minute or more later), and nothing here logs it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import hmac
import io
import math
import re
import secrets
import threading
import time
import unicodedata
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from netvigil.collector.ratelimit import TokenBuckets
from netvigil.countries import alpha2
from netvigil.incidents.agreement import AgreementParams, ReportAgreement, agreement
from netvigil.incidents.services import ServiceMap, load_services
from netvigil.model.incident import Incident
from netvigil.store import Store, StoreError, open_store
from netvigil.model.userreport import REPORT_STATUSES, REPORT_SYMPTOMS, REPORT_TEXT_MAX, UserReport

__all__ = [
    "AddressLimiter",
    "ReportBeside",
    "ReportInputError",
    "SYMPTOM_LABELS",
    "parse_report",
    "reports_beside",
    "router",
]

HERE = Path(__file__).resolve().parent
RATE_REPORTS = 5                 # reports one address may send ...
RATE_WINDOW = 600.0              # ... per this many seconds (steady state: one every RATE_WINDOW / RATE_REPORTS)
FIELD_MAX = 100                  # characters of a place, ISP or service name
BODY_MAX = 64 << 10              # bytes of a request body
LIST_MAX = 1000                  # reports in one /api/reports answer
PUBLIC_STATUSES = ("unverified", "verified")
HONEYPOT = "website"             # a form field people never see; what fills it is a robot (stored as spam)
SYMPTOM_LABELS: dict[str, str] = {
    "slow": "The internet or a service is very slow",
    "no-connection": "No connection at all",
    "site-blocked": "A website does not open",
    "app-blocked": "An app does not work",
    "videos-images-not-loading": "Videos or images do not load",
    "other": "Something else",
}
CSV_COLUMNS = ("report_id", "reported_at", "received_at", "country", "region", "asn", "isp", "service", "symptom",
               "text", "status", "moderated_at", "standing", "agrees", "disagrees")
_FIELDS = ("reported_at", "utc_offset", "country", "region", "asn", "isp", "service", "symptom", "text", HONEYPOT)
_ALIASES = {"time": "reported_at", "place": "region"}
_ASN = re.compile(r"(?:AS)?\s*(\d{1,10})", re.IGNORECASE)
_LEADING_ASN = re.compile(r"\s*AS(\d{1,10})\b[\s:,;\-\u2013\u2014]*(.*)", re.IGNORECASE | re.DOTALL)
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")
_SERVICE_TEXT = re.compile(r"[\w .:/\-+&']+")
_OLDEST = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
_FUTURE_SLACK = dt.timedelta(hours=1)

router = APIRouter(tags=["user reports"])

_TEXT = {"type": "string", "maxLength": FIELD_MAX}
_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["reported_at", "symptom"], "additionalProperties": False,
    "properties": {
        "reported_at": {"type": "string", "description": "when it happened: ISO 8601, with an offset unless "
                                                         "utc_offset is given", "example": "2020-09-27T14:00+04:00"},
        "utc_offset": {"type": "string", "pattern": "^[+-]\\d{2}:?\\d{2}$", "example": "+04:00"},
        "country": {**_TEXT, "description": "ISO code or name; default: the dashboard's country"},
        "region": {**_TEXT, "description": "place or region"},
        "asn": {"type": ["string", "integer"], "example": "AS28787"},
        "isp": {**_TEXT, "description": "internet provider; a leading AS number fills asn"},
        "service": {**_TEXT, "description": "site, app or service; required for site-blocked and app-blocked",
                    "example": "whatsapp"},
        "symptom": {"type": "string", "enum": list(REPORT_SYMPTOMS)},
        "text": {"type": "string", "maxLength": REPORT_TEXT_MAX},
        "time": {"type": "string", "description": "another name for reported_at"},
        "place": {**_TEXT, "description": "another name for region"},
    },
}
_MODERATION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["status"], "additionalProperties": False,
    "properties": {"status": {"type": "string", "enum": list(REPORT_STATUSES)},
                   "note": {"type": "string", "maxLength": REPORT_TEXT_MAX}},
}


# -- the rate limiter -------------------------------------------------------------------------------------------------


class AddressLimiter:
    """``reports`` per ``window`` seconds per client address (token buckets: a burst of ``reports``, then one
    every ``window / reports`` seconds), keyed by a keyed BLAKE2b hash of the address under a random per-process
    salt. A key is forgotten once its bucket has refilled: the table is swept every minute."""

    def __init__(self, reports: int = RATE_REPORTS, window: float = RATE_WINDOW, max_keys: int = 100_000) -> None:
        self._buckets = TokenBuckets(per_minute=reports * 60.0 / window, burst=reports, max_keys=max_keys)
        self._salt = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._swept: float | None = None

    def key(self, address: str) -> str:
        return hashlib.blake2b(address.encode(), key=self._salt, digest_size=16).hexdigest()

    def take(self, address: str, now: float | None = None) -> float:
        """0.0 if the address may send a report now (and it is counted), else the seconds until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._swept is None:
                self._swept = now
            elif now - self._swept >= 60.0:
                self._sweep(now)
            return self._buckets.take(self.key(address), now=now)

    def _sweep(self, now: float) -> None:
        rate = self._buckets.per_minute / 60.0
        # A full bucket carries no information: drop it (TokenBuckets prunes the same way when it fills up).
        self._buckets._prune(now, rate)  # noqa: SLF001 - the collector's limiter, swept on a timer here
        self._swept = now

    def __len__(self) -> int:
        return len(self._buckets)


_LIMITER_LOCK = threading.Lock()


def _limiter(request: Request) -> AddressLimiter:
    state = request.app.state
    limiter = getattr(state, "userreport_limiter", None)
    if limiter is None:
        with _LIMITER_LOCK:
            limiter = getattr(state, "userreport_limiter", None)
            if limiter is None:
                limiter = state.userreport_limiter = AddressLimiter()
    return limiter


# -- reading a report ------------------------------------------------------------------------------------------------


class ReportInputError(ValueError):
    """What is wrong with a submitted report: (field, message) pairs, each message one clear sentence."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))


def parse_report(
    data: Mapping[str, Any],
    *,
    now: dt.datetime,
    report_id: str,
    default_country: str | None = None,
    services: ServiceMap | None = None,
    strict: bool = True,
) -> UserReport:
    """A submitted report (JSON object or form fields) as a :class:`UserReport`, or ReportInputError naming every
    field that is wrong. ``strict``: unknown fields are an error (the JSON API; forms carry buttons and such)."""
    errors: list[tuple[str, str]] = []
    fields: dict[str, Any] = {}
    for name, value in data.items():
        key = _ALIASES.get(name, name)
        if key in _FIELDS:
            fields[key] = value
        elif strict:
            errors.append((name, f"unknown field; the fields are {', '.join(_FIELDS[:-1])}"))

    def text(name: str, limit: int = FIELD_MAX) -> str | None:
        value = fields.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            errors.append((name, "must be text"))
            return None
        value = _clean(value, keep_newlines=name == "text")
        if len(value) > limit:
            errors.append((name, f"is {len(value)} characters long; at most {limit} are kept"))
            return None
        return value or None

    symptom = text("symptom")
    if symptom is None:
        errors.append(("symptom", f"is required: one of {', '.join(REPORT_SYMPTOMS)}"))
    elif symptom not in REPORT_SYMPTOMS:
        errors.append(("symptom", f"{symptom[:40]!r} is not one of {', '.join(REPORT_SYMPTOMS)}"))
        symptom = None

    country_text = text("country") or default_country
    country = alpha2(country_text) if country_text else None
    if country_text is None:
        errors.append(("country", "is required (an ISO code such as AZ, or the country's name)"))
    elif country is None:
        errors.append(("country", f"{country_text[:40]!r} is not a country we know (use an ISO code such as AZ)"))

    reported_at = _reported_at(text("reported_at", 40), text("utc_offset", 10), now, errors)

    asn: str | None = None
    asn_text = fields.get("asn")
    if isinstance(asn_text, int) and not isinstance(asn_text, bool):
        asn_text = str(asn_text)
    if isinstance(asn_text, str) and asn_text.strip():
        match = _ASN.fullmatch(asn_text.strip())
        if match is None or not 0 < int(match.group(1)) < 2**32:
            errors.append(("asn", f"{asn_text[:40]!r} is not an AS number (write AS28787 or 28787)"))
        else:
            asn = f"AS{int(match.group(1))}"
    elif asn_text is not None and not isinstance(asn_text, str):
        errors.append(("asn", "must be text or a number"))
    isp = text("isp")
    if isp is not None:
        lead = _LEADING_ASN.fullmatch(isp)  # "AS64531 Azercell": the form's network list gives both at once
        if lead is not None:
            asn = asn or f"AS{int(lead.group(1))}"
            isp = lead.group(2).strip() or None

    service_text = text("service")
    service = None
    if service_text is not None:
        if not _SERVICE_TEXT.fullmatch(service_text):
            errors.append(("service", "may hold letters, digits, spaces and . : / - + & ' only"))
        else:
            service = service_of(service_text, services or _services())
    if symptom in ("site-blocked", "app-blocked") and service is None:
        errors.append(("service", "is required when a website or an app is blocked: which one?"))

    body = text("text", REPORT_TEXT_MAX) or ""
    region = text("region")
    robot = bool(text(HONEYPOT, 10_000))
    if errors:
        raise ReportInputError(errors)
    assert symptom is not None and country is not None and reported_at is not None
    return UserReport(
        report_id=report_id, received_at=now, reported_at=reported_at, country=country, symptom=symptom,
        region=region, asn=asn, isp=isp, service=service, text=body, status="spam" if robot else "unverified",
        moderation_note="the form's hidden field was filled (a robot)" if robot else "",
    )


def _clean(value: str, *, keep_newlines: bool) -> str:
    """Text without control and format characters (newlines kept in the free text), whitespace trimmed."""
    out = []
    for ch in unicodedata.normalize("NFC", value):
        if ch in "\r\n" and keep_newlines:
            out.append("\n" if ch == "\n" else "")
        elif ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            continue
        else:
            out.append(ch)
    text = "".join(out).strip()
    return text if keep_newlines else " ".join(text.split())


def _reported_at(value: str | None, offset: str | None, now: dt.datetime,
                 errors: list[tuple[str, str]]) -> dt.datetime | None:
    if value is None:
        errors.append(("reported_at", "is required: when did it happen? (2020-09-27T14:00+04:00)"))
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        errors.append(("reported_at", f"{value!r} is not a date and time (write 2020-09-27T14:00+04:00)"))
        return None
    if t.tzinfo is None:
        if offset is None:
            errors.append(("reported_at", "needs a time zone: add an offset (2020-09-27T14:00+04:00) or give "
                                          "utc_offset (+04:00)"))
            return None
        match = _OFFSET.fullmatch(offset.strip())
        if match is None or int(match.group(2)) > 14 or int(match.group(3)) >= 60:
            errors.append(("utc_offset", f"{offset!r} is not an offset from UTC (write +04:00 or -05:00)"))
            return None
        sign = 1 if match.group(1) == "+" else -1
        t = t.replace(tzinfo=dt.timezone(sign * dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))))
    t = t.astimezone(dt.UTC)
    if t > now + _FUTURE_SLACK:
        errors.append(("reported_at", f"{_iso(t)} is in the future"))
        return None
    if t < _OLDEST:
        errors.append(("reported_at", f"{_iso(t)} is before 1990"))
        return None
    return t


def service_of(text: str, services: ServiceMap) -> str:
    """A service as a person names it, as the incidents name it: "WhatsApp", "whats app", "web.whatsapp.com" →
    ``whatsapp``; "Facebook Messenger" → ``messenger``; a site not in services.toml → its host; else the text."""
    t = " ".join(text.lower().split())
    known = set(services.by_suffix.values()) | set(services.by_test.values())
    if t in known:
        return t
    key = re.sub(r"[\s\-]+", "_", t)
    if key in services.by_test:
        return services.by_test[key]
    compact = re.sub(r"[\s\-_]+", "", t)
    if compact in known:
        return compact
    if " " not in t and ("." in t or "/" in t):
        return services.service_of(None, t)
    return t


@lru_cache(maxsize=1)
def _services() -> ServiceMap:
    return load_services()


# -- the store --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _store(request: Request, *, write: bool) -> Iterator[Store]:
    """The app's own store connection when it has one that can do the job (netvigil.web.app.StoreAccess), else one
    opened by URL for this request."""
    access = getattr(getattr(request.app.state, "web", None), "store", None)
    if access is not None and hasattr(access, "use"):
        with access.use() as store:
            if not (write and getattr(store, "read_only", False)):
                yield store
                return
        # Held read-only: let go of it while this request writes through a connection of its own.
        with access.shared(), _open_by_url(access.url) as store:
            yield store
        return
    with _open_by_url(request.app.state.settings.store) as store:
        yield store


@contextlib.contextmanager
def _open_by_url(url: str | None) -> Iterator[Store]:
    try:
        store = open_store(url)
    except StoreError as exc:
        if "locked" in str(exc):
            raise
        store = open_store(url, read_only=True)  # writes then fail with the store's own message
    with store:
        yield store


# -- the routes -------------------------------------------------------------------------------------------------------


@router.get("/reports/new", response_class=HTMLResponse, summary="The report form")
def report_form(request: Request, sent: str | None = None) -> HTMLResponse:
    """A form for people to report what they see; ``?sent=<id>`` thanks them for the report just stored."""
    return _form(request, values={}, errors=[], sent=sent[:64] if sent else None)


@router.post("/reports", status_code=201, summary="Send a user report (JSON or an HTML form)",
             responses={201: {"description": "Stored as unverified; the report as stored (JSON)"},
                        303: {"description": "Form posts: stored, see the form page thanking for it"},
                        422: {"description": "A field is missing or wrong; `errors` names each"},
                        429: {"description": "Too many reports from this address; see Retry-After"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": _REPORT_SCHEMA},
                 "application/x-www-form-urlencoded": {"schema": _REPORT_SCHEMA}}}})
async def post_report(request: Request) -> Response:
    """Fields: ``reported_at`` (ISO 8601 with an offset, or with ``utc_offset``), ``country`` (default: the
    dashboard's), ``region``, ``asn``, ``isp``, ``service``, ``symptom`` (one of slow, no-connection, site-blocked,
    app-blocked, videos-images-not-loading, other), ``text`` (at most 1,000 characters). Stored as ``unverified``;
    the sender's address is not stored."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = kind in ("application/x-www-form-urlencoded", "multipart/form-data")
    if kind != "application/json" and not is_form:
        return JSONResponse({"detail": "send the report as JSON (application/json) or as an HTML form"},
                            status_code=415)
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > BODY_MAX):
        return _error(is_form, request, 413, f"a report is at most {BODY_MAX // 1024} KiB", {})
    data: dict[str, Any]
    if is_form:
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
    else:
        body = await request.body()
        if len(body) > BODY_MAX:
            return _error(False, request, 413, f"a report is at most {BODY_MAX // 1024} KiB", {})
        try:
            data = msgspec.json.decode(body) if body else None
        except msgspec.DecodeError:
            return _error(False, request, 422, "the body is not valid JSON", {})
        if not isinstance(data, dict):
            return _error(False, request, 422, "the body must be a JSON object of report fields", {})

    now = dt.datetime.now(dt.UTC)
    try:
        report = parse_report(data, now=now, report_id=_new_id(), default_country=_country(request),
                              strict=not is_form)
    except ReportInputError as exc:
        return _invalid(is_form, request, exc, data)

    # The address decides the allowance and is then forgotten: it is not stored, logged or passed on.
    client = request.client.host if request.client else "unknown"
    wait = _limiter(request).take(client)
    if wait > 0:
        retry = str(max(1, math.ceil(wait)))
        message = f"too many reports from this address; try again in {_minutes(wait)}"
        return _error(is_form, request, 429, message, data, headers={"Retry-After": retry})

    try:
        await run_in_threadpool(_add, request, report)
    except StoreError as exc:
        return _error(is_form, request, 503, f"the report could not be stored: {exc}", data)
    if is_form:
        return RedirectResponse(f"/reports/new?sent={report.report_id}", status_code=303)
    return JSONResponse(_public(report, admin=False), status_code=201,
                        headers={"Location": f"/api/reports?report_id={report.report_id}"})


@router.get("/api/reports", summary="User reports (JSON, or CSV with ?format=csv)",
            responses={200: {"description": "`{reports: [...], count, limit, offset, next_offset}`, or CSV",
                             "content": {"text/csv": {}}},
                       403: {"description": "Rejected or spam reports asked for without the admin token"}})
def list_reports(
    request: Request,
    country: str | None = None,
    asn: str | None = None,
    isp: str | None = None,
    service: str | None = None,
    symptom: str | None = None,
    region: str | None = None,
    report_id: str | None = None,
    status: str | None = Query(None, description="comma-separated; rejected and spam need the admin token"),
    since: str | None = Query(None, description="reported at or after (ISO date or date-time; naive = UTC)"),
    until: str | None = Query(None, description="reported before (ISO date or date-time; naive = UTC)"),
    limit: int = Query(100, ge=1, le=LIST_MAX),
    offset: int = Query(0, ge=0),
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Response:
    """Newest first. Without the admin token only ``unverified`` (marked so: ``verified: false``) and ``verified``
    reports are listed, without moderation notes. Each report carries ``standing`` (confirmed by measurements or
    unconfirmed) and the ids of the incidents it ``agrees``/``disagrees`` with, when the dashboard has incidents."""
    admin = _is_admin(request)
    if admin is False:
        return JSONResponse({"detail": "wrong admin token"}, status_code=403)
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
    bad = [s for s in statuses or () if s not in REPORT_STATUSES]
    if bad:
        return JSONResponse({"detail": f"unknown status {bad[0][:20]!r}; statuses are {', '.join(REPORT_STATUSES)}"},
                            status_code=422)
    if not admin:
        hidden = [s for s in statuses or () if s not in PUBLIC_STATUSES]
        if hidden:
            return JSONResponse({"detail": f"listing {', '.join(hidden)} reports needs the admin token "
                                           "(Authorization: Bearer <token>)"}, status_code=403)
        statuses = statuses or list(PUBLIC_STATUSES)
    filters: dict[str, Any] = {}
    try:
        for name, value in (("country", country), ("isp", isp), ("symptom", symptom), ("region", region),
                            ("report_id", report_id)):
            if value and value.strip():
                filters[name] = value.strip()
        if asn and asn.strip():
            match = _ASN.fullmatch(asn.strip())
            if match is None:
                raise ValueError(f"asn: {asn[:40]!r} is not an AS number")
            filters["asn"] = f"AS{int(match.group(1))}"
        if service and service.strip():
            filters["service"] = service_of(service, _services())
        t0, t1 = _query_time(since, "since"), _query_time(until, "until")
    except ValueError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    try:
        with _store(request, write=False) as store:
            reports = store.list_user_reports(filters, t0, t1, statuses, limit, offset)
    except StoreError as exc:
        return JSONResponse({"detail": f"the store cannot be read: {exc}"}, status_code=503)
    except ValueError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    incidents, networks = _incidents(request)
    judged = agreement(reports, incidents, networks=networks)
    rows = [_public(j.report, admin=bool(admin), judged=j if incidents else None) for j in judged]
    if format == "csv":
        columns = (*CSV_COLUMNS, "moderation_note") if admin else CSV_COLUMNS
        return Response(_csv(columns, rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="user-reports.csv"'})
    return JSONResponse({"reports": rows, "count": len(rows), "limit": limit, "offset": offset,
                         "next_offset": offset + limit if len(rows) == limit else None})


class Moderation(msgspec.Struct, forbid_unknown_fields=True):
    status: str
    note: str = ""


@router.post("/api/reports/{report_id}/moderate", summary="Moderate a user report (admin token)",
             responses={200: {"description": "The report as now stored"},
                        401: {"description": "No admin token given"}, 403: {"description": "Wrong token, or none "
                                                                                "configured"},
                        404: {"description": "No such report"}, 422: {"description": "Bad status or note"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": _MODERATION_SCHEMA}}}})
async def moderate_report(request: Request, report_id: str) -> Response:
    """Body ``{"status": "verified" | "rejected" | "spam" | "unverified", "note": "..."}`` with
    ``Authorization: Bearer <admin token>``. Rejected and spam reports disappear from the public listing."""
    settings = request.app.state.settings
    if not getattr(settings, "admin_token", None):
        return JSONResponse({"detail": "moderation is off: the server was started without an admin token"},
                            status_code=403)
    admin = _is_admin(request)
    if admin is None:
        return JSONResponse({"detail": "admin token required (Authorization: Bearer <token>)"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    if admin is False:
        return JSONResponse({"detail": "wrong admin token"}, status_code=403)
    try:
        body = msgspec.json.decode(await request.body(), type=Moderation)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return JSONResponse({"detail": f"the body must be {{\"status\": ..., \"note\": ...}}: {exc}"},
                            status_code=422)
    if body.status not in REPORT_STATUSES:
        return JSONResponse({"detail": f"status must be one of {', '.join(REPORT_STATUSES)}, "
                                       f"not {body.status[:20]!r}"}, status_code=422)
    note = _clean(body.note, keep_newlines=True)
    if len(note) > REPORT_TEXT_MAX:
        return JSONResponse({"detail": f"note is at most {REPORT_TEXT_MAX} characters"}, status_code=422)
    try:
        updated = await run_in_threadpool(_moderate, request, report_id, body.status, note)
    except StoreError as exc:
        return JSONResponse({"detail": f"the store cannot be written: {exc}"}, status_code=503)
    if updated is None:
        return JSONResponse({"detail": f"no user report {report_id[:64]!r}"}, status_code=404)
    return JSONResponse(_public(updated, admin=True))


def _add(request: Request, report: UserReport) -> None:
    with _store(request, write=True) as store:
        store.add_user_report(report)


def _moderate(request: Request, report_id: str, status: str, note: str) -> UserReport | None:
    with _store(request, write=True) as store:
        return store.moderate_user_report(report_id, status, note)


# -- beside the incidents ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportBeside:
    """A report shown beside an incident. Unpacks as ``(report, relation)``; ``relation`` is "agrees" or
    "disagrees", ``reason`` says why, ``measurement_uids`` are the measurements behind a disagreement."""

    report: UserReport
    relation: str
    reason: str = ""
    measurement_uids: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.report, self.relation))


def reports_beside(
    store_url: str | None,
    incidents: Sequence[Incident],
    *,
    networks: Mapping[str, str] | None = None,
    params: AgreementParams = AgreementParams(),
    max_reports: int = 20_000,
) -> dict[str, list[ReportBeside]]:
    """incident id → the public (unverified or verified) user reports that agree or disagree with it, agreeing
    ones first, each group by time. Reads the reports of the incidents' countries and time span (widened by the
    agreement's slack and horizon) from the store; a store from before user reports has none. Moderation notes
    are left out (they are for moderators)."""
    out: dict[str, list[ReportBeside]] = {i.incident_id: [] for i in incidents}
    countries = sorted({i.country.upper() for i in incidents if i.country})
    if not countries:
        return out
    now = dt.datetime.now(dt.UTC)
    reach = params.slack + params.horizon
    since = min(_aware(i.start) for i in incidents) - reach
    until = max(_aware(i.end) if i.end is not None else now for i in incidents) + reach + dt.timedelta(seconds=1)
    reports: list[UserReport] = []
    with _open_by_url(store_url) as store:
        while len(reports) < max_reports:
            page = store.list_user_reports({"country": countries}, since, until, list(PUBLIC_STATUSES),
                                           limit=LIST_MAX, offset=len(reports))
            reports.extend(page)
            if len(page) < LIST_MAX:
                break
    reports = [msgspec.structs.replace(r, moderation_note="") for r in reports]
    for judged in agreement(reports, incidents, slack=params.slack, horizon=params.horizon, networks=networks):
        for relation, links in (("agrees", judged.agrees), ("disagrees", judged.disagrees)):
            for link in links:
                out[link.incident_id].append(ReportBeside(judged.report, relation, link.reason,
                                                          tuple(link.measurement_uids)))
    for rows in out.values():
        rows.sort(key=lambda b: (b.relation != "agrees", b.report.reported_at, b.report.report_id))
    return out


# -- helpers ----------------------------------------------------------------------------------------------------------


def _new_id() -> str:
    """Random, unguessable and short; nothing about the sender or the time is in it."""
    return "ur-" + secrets.token_hex(8)


def _publication(request: Request) -> Any:
    web = getattr(request.app.state, "web", None)
    pub = getattr(web, "publication", None)
    return pub if pub is not None else getattr(request.app.state.settings, "publication", None)


def _incidents(request: Request) -> tuple[list[Incident], dict[str, str]]:
    pub = _publication(request)
    if pub is None:
        return [], {}
    return list(pub.incidents), {n.asn: n.name for n in pub.networks}


def _country(request: Request) -> str | None:
    country = getattr(request.app.state.settings, "country", None)
    if country:
        return country
    pub = _publication(request)
    return getattr(pub, "country", None)


def _is_admin(request: Request) -> bool | None:
    """True with the right bearer token, False with a wrong one (or any, when none is configured), None without."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    expected = getattr(request.app.state.settings, "admin_token", None)
    if scheme.lower() != "bearer" or not expected:
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def _public(report: UserReport, *, admin: bool, judged: ReportAgreement | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "report_id": report.report_id, "reported_at": _iso(report.reported_at),
        "received_at": _iso(report.received_at), "country": report.country, "region": report.region,
        "asn": report.asn, "isp": report.isp, "service": report.service, "symptom": report.symptom,
        "text": report.text, "status": report.status, "verified": report.status == "verified",
        "moderated_at": _iso(report.moderated_at) if report.moderated_at else None,
    }
    if admin:
        row["moderation_note"] = report.moderation_note
    if judged is not None:
        row["standing"] = judged.standing
        row["agrees"] = [link.incident_id for link in judged.agrees]
        row["disagrees"] = [link.incident_id for link in judged.disagrees]
    return row


def _csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """RFC 4180, lists joined by ``;``; a cell that a spreadsheet would run as a formula is prefixed with ``'``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if value is None:
                cell = ""
            elif isinstance(value, list):
                cell = ";".join(str(v) for v in value)
            elif isinstance(value, bool):
                cell = "true" if value else "false"
            else:
                cell = str(value)
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                cell = "'" + cell
            cells.append(cell)
        writer.writerow(cells)
    return buf.getvalue()


def _query_time(text: str | None, name: str) -> dt.datetime | None:
    if text is None or not text.strip():
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}: {text[:40]!r} is not an ISO date or date-time (2020-09-27 or "
                         "2020-09-27T14:00)") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _minutes(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    return "a minute" if minutes <= 1 else f"{minutes} minutes"


# -- the form page ----------------------------------------------------------------------------------------------------


def _invalid(is_form: bool, request: Request, exc: ReportInputError, data: Mapping[str, Any]) -> Response:
    if is_form:
        return _form(request, values=data, errors=exc.errors, status=422)
    return JSONResponse({"detail": f"the report was not stored: {exc}",
                         "errors": [{"field": f, "message": m} for f, m in exc.errors]}, status_code=422)


def _error(is_form: bool, request: Request, status: int, message: str, data: Mapping[str, Any],
           headers: dict[str, str] | None = None) -> Response:
    if is_form:
        return _form(request, values=data, errors=[("", message)], status=status, headers=headers)
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _form(request: Request, *, values: Mapping[str, Any], errors: list[tuple[str, str]], sent: str | None = None,
          status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    pub = _publication(request)
    country = _country(request)
    services = _services()
    networks = sorted(getattr(pub, "networks", []) or [], key=lambda n: n.asn)
    regions = sorted({r for n in networks for r in n.regions})
    offset = _default_offset(country)
    context = {
        "pub": pub, "nav": "reports", "values": {k: v for k, v in values.items() if k != HONEYPOT},
        "errors": errors, "error_fields": {f for f, _ in errors}, "sent": sent,
        "symptoms": list(SYMPTOM_LABELS.items()), "country": country or "",
        "services": sorted(set(services.by_suffix.values()) | set(services.by_test.values())),
        "networks": [(n.asn, n.name) for n in networks], "regions": regions,
        "offsets": _OFFSETS, "default_offset": values.get("utc_offset") or offset,
        "text_max": REPORT_TEXT_MAX, "field_max": FIELD_MAX, "honeypot": HONEYPOT,
        "rate": f"{RATE_REPORTS} reports per {int(RATE_WINDOW // 60)} minutes",
    }
    templates = getattr(request.app.state, "templates", None) or _own_templates()
    return templates.TemplateResponse(request, "userreport_new.html", context, status_code=status, headers=headers)


@lru_cache(maxsize=1)
def _own_templates() -> Any:
    """Templates for an app that brings none (tests, another host app): base.html and the filters it uses."""
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.setdefault("when", lambda t: _iso(t) if isinstance(t, dt.datetime) else (t or ""))
    return templates


# UTC offsets in use (every whole and half hour, and the odd ones of Nepal, the Chathams, ...).
_OFFSETS = tuple(
    f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
    for m in sorted({h * 60 for h in range(-12, 15)} | {-570, -210, 210, 270, 330, 345, 390, 525, 570, 630, 765})
)


@lru_cache(maxsize=256)
def _default_offset(country: str | None) -> str:
    """The country's UTC offset now when all its time zones share one (the form's default); else UTC."""
    if not country:
        return "+00:00"
    zones = _country_zones().get(country.upper(), ())
    now = dt.datetime.now(dt.UTC)
    offsets = set()
    for name in zones:
        try:
            offset = now.astimezone(zoneinfo.ZoneInfo(name)).utcoffset()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        if offset is not None:
            offsets.add(offset)
    if len(offsets) != 1:
        return "+00:00"
    minutes = int(offsets.pop().total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@lru_cache(maxsize=1)
def _country_zones() -> dict[str, tuple[str, ...]]:
    """country → its IANA zones, from the system's zone.tab (absent on some systems: then every default is UTC)."""
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / "zone.tab"
        if path.is_file():
            zones: dict[str, list[str]] = {}
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) >= 3 and not line.startswith("#"):
                    zones.setdefault(parts[0].upper(), []).append(parts[2])
            return {k: tuple(v) for k, v in zones.items()}
    return {}

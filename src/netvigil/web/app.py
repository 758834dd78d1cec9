"""The dashboard and its API (`netvigil serve`): server-rendered pages over one Publication and the store.

The publication (incidents, timeline, status matrix, charts; ``netvigil.tasks.publish``) is built once at startup,
or taken prebuilt from the settings, and rebuilt by ``POST /api/refresh`` with the admin token: pages that show it
never touch the store. The measurement explorer and measurement pages read the store (``search_verdicts``,
``count_verdicts``, ``get_raw``), and a measurement's observations are re-derived from its stored raw bytes by the
analysis code, so the page shows what the verdict was reached from, not a copy of it.

Every page's data is also JSON under ``/api/…`` and every table CSV (``?format=csv``); ``/openapi.json`` documents
them and ``/docs`` lists them on a plain page of ours (FastAPI's own /docs loads Swagger UI from a CDN: off).
Nothing is loaded from elsewhere: the stylesheet is bundled, charts are SVG drawn by the server, and a
Content-Security-Policy of ``'self'`` keeps it that way. Client addresses are never logged (uvicorn's access log
is off).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from netvigil.economics.explain import usd
from netvigil.incidents.listing import IncidentFilter
from netvigil.model.incident import IncidentType
from netvigil.model.verdict import Method, Outcome, Verdict
from netvigil.report.dataset import Publication, StatusCell
from netvigil.store import Store, StoreError, VerdictQuery, open_store, store_file
from netvigil.web import tables as T
from netvigil.web import userreports

__all__ = ["PAGE_SIZE", "AddressError", "WebSettings", "create_app", "serve", "url_of"]

log = logging.getLogger("netvigil.web")

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 50          # explorer rows per page
MAX_PAGE = 500          # largest page the JSON API returns
MAX_CSV = 10_000        # largest explorer CSV in one download (page through with offset for more)
EVIDENCE_SHOWN = 200    # evidence rows on an incident page (all of them in its CSV)
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


@dataclass
class WebSettings:
    """What `netvigil serve` (or the demo) hands the app. ``publication``: a prebuilt one (the demo's); without it
    one is built at startup from ``store`` for ``country`` (the store's most measured country when None)."""

    store: str | None
    country: str | None = None
    admin_token: str | None = None
    publication: Publication | None = None
    economics_dir: Path | None = None
    signals_dir: Path | None = None
    report_dir: Path | None = None


# -- the store, the publication and what is derived from it ----------------------------------------------------


class StoreAccess:
    """One store connection for the app's lifetime, used by one request at a time (a DuckDB connection is not to
    be shared between threads; ClickHouse clients would be, but one lock keeps the two alike).

    A DuckDB store is opened for writing when it can be (the user-reports form writes to it, and within one
    process every DuckDB connection to a file must be opened the same way); read-only when it cannot. Opened on
    first use, so a dashboard with a prebuilt publication starts even while the store is unavailable, and a
    failure is a 503 on the pages that need the store, not a dead server.
    """

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.lock = threading.RLock()
        self._store: Store | None = None
        self.read_only = False

    @contextlib.contextmanager
    def use(self) -> Iterator[Store]:
        with self.lock:
            if self._store is None:
                self._store = _open(self.url)
                self.read_only = bool(getattr(self._store, "read_only", False))
            yield self._store

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """For a reader of this process that opens the store its own way (the publication build, read-only): a
        DuckDB connection is closed for the duration (DuckDB refuses a second connection to a file in another
        mode) and reopened on next use; ClickHouse clients stay."""
        with self.lock:
            if self._duckdb():
                self.close()
            yield

    def _duckdb(self) -> bool:
        try:
            return store_file(self.url) is not None
        except StoreError:
            return False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """For code of this process that opens the store for writing by its URL (user reports): a DuckDB store
        this app holds read-only is closed meanwhile; one it holds for writing is shared as it is."""
        with self.lock:
            if self.read_only:
                self.close()
            yield

    def close(self) -> None:
        with self.lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _open(url: str | None) -> Store:
    try:
        return open_store(url)
    except StoreError as exc:
        if "locked" in str(exc):
            raise
        log.info("store %s not writable (%s); opening it read-only", url, exc)
        return open_store(url, read_only=True)


class Facets(msgspec.Struct, kw_only=True):
    """The explorer's choices: the values the store holds for each filter (domains: the most measured 500)."""
    countries: list[str] = []
    asns: list[str] = []
    tests: list[str] = []
    outcomes: list[str] = []
    methods: list[str] = []
    domains: list[str] = []


def _facets(store: Store) -> Facets:
    def values(column: str, limit: int | None = None) -> list[str]:
        rows = store.query_verdicts(VerdictQuery(group_by=(column,))).rows
        rows = [(v, n) for v, n in rows if v is not None]
        if limit is not None and len(rows) > limit:
            rows = sorted(rows, key=lambda r: -r[1])[:limit]
        return sorted(str(v) for v, _ in rows)

    return Facets(countries=values("probe_cc"), asns=values("probe_asn"), tests=values("test_name"),
                  outcomes=values("outcome"), methods=values("method"), domains=values("domain", 500))


def _store_country(store: Store) -> str | None:
    rows = store.query_verdicts(VerdictQuery(group_by=("probe_cc",))).rows
    rows = [(cc, n) for cc, n in rows if cc]
    return max(rows, key=lambda r: r[1])[0] if rows else None


@dataclass
class _State:
    settings: WebSettings
    store: StoreAccess
    publication: Publication
    facets: Facets = field(default_factory=Facets)
    built_seconds: float = 0.0
    charts: dict[tuple[str, str], bytes] = field(default_factory=dict)
    chart_lock: threading.Lock = field(default_factory=threading.Lock)
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    # Answers made from the publication alone, kept until it is rebuilt: (publication, body, type, headers).
    memo: dict[tuple[Any, ...], tuple[Publication, bytes, str, dict[str, str]]] = field(default_factory=dict)
    memo_bytes: int = 0
    memo_lock: threading.Lock = field(default_factory=threading.Lock)
    overview: tuple[Publication, T.Overview] | None = None

    def overview_of(self) -> T.Overview:
        """The publication's overview, made once per publication (user reports are counted per request)."""
        pub, held = self.publication, self.overview
        if held is not None and held[0] is pub:
            return held[1]
        made = T.overview(pub)
        self.overview = (pub, made)
        return made


def _build(settings: WebSettings, access: StoreAccess) -> tuple[Publication, float]:
    from netvigil.tasks.publish import build_publication

    country = settings.country
    if country is None:
        with access.use() as store:
            country = _store_country(store)
        if country is None:
            raise StoreError(f"store {access.url or '(default)'} holds no verdicts: nothing to publish "
                             "(import or collect measurements first, or pass --country)")
    t0 = time.perf_counter()
    # build_publication opens the store itself, read-only.
    with access.released():
        pub = build_publication(access.url, country.upper(), economics_dir=settings.economics_dir,
                                signals_dir=settings.signals_dir)
    return pub, time.perf_counter() - t0


MEMO_BYTES = 256 << 20  # answers kept per publication, at most


def _memo(s: _State, key: tuple[Any, ...], make: Callable[[], Response]) -> Response:
    """``make()``'s answer, kept for the same ``key`` until the publication changes (it is immutable meanwhile:
    the precomputed aggregates the dashboard serves on a large store), oldest dropped past MEMO_BYTES."""
    pub = s.publication
    with s.memo_lock:
        hit = s.memo.get(key)
    if hit is not None and hit[0] is pub:
        return Response(hit[1], media_type=hit[2], headers=hit[3])
    response = make()
    if response.status_code == 200 and len(response.body) <= MEMO_BYTES // 4:
        headers = {k: v for k, v in response.headers.items() if k == "content-disposition"}
        with s.memo_lock:
            old = s.memo.pop(key, None)
            if old is not None:
                s.memo_bytes -= len(old[1])
            s.memo[key] = (pub, bytes(response.body), response.media_type or "application/json", headers)
            s.memo_bytes += len(response.body)
            while s.memo_bytes > MEMO_BYTES and s.memo:
                oldest = next(iter(s.memo))
                s.memo_bytes -= len(s.memo.pop(oldest)[1])
    return response


def _forget(s: _State) -> None:
    with s.memo_lock:
        s.memo.clear()
        s.memo_bytes = 0
    s.overview = None


def _chart_names() -> tuple[str, ...]:
    from netvigil.report.charts import CHARTS

    return tuple(CHARTS)


def _render_chart(pub: Publication, name: str, fmt: str) -> bytes:
    from netvigil.report.charts import render

    return render(pub, name, fmt)


def _prerender(state: _State) -> None:
    """SVGs drawn once per publication: a chart request is a cache hit, not a matplotlib run."""
    for name in _chart_names():
        _chart(state, name, "svg")


def _chart(state: _State, name: str, fmt: str) -> bytes:
    key = (name, fmt)
    data = state.charts.get(key)
    if data is not None:
        return data
    pub = state.publication
    with state.chart_lock:  # matplotlib is not thread-safe: one drawing at a time
        data = state.charts.get(key)
        if data is None:
            data = _render_chart(pub, name, fmt)
            if state.publication is pub:
                state.charts[key] = data
    return data


# -- request helpers ----------------------------------------------------------------------------------------------


def _state(request: Request) -> _State:
    return request.app.state.web


def _json(obj: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json")


def _csv(name: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Response:
    return Response(T.csv_text(columns, rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{_file_name(name)}.csv"'})


def _file_name(text: str) -> str:
    """A download's file name from ids: letters, digits, dot, dash and underscore only."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in text)[:150]


def _when(text: str | None, name: str) -> dt.datetime | None:
    """A date or date-time (ISO 8601) from the query string; naive means UTC; a bad one is a 422."""
    if text is None or not text.strip():
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(422, f"{name}: {text[:40]!r} is not an ISO date or date-time "
                                 "(2020-09-27 or 2020-09-27T14:00)") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _asn(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    t = text.strip().upper()
    return t if t.startswith("AS") else f"AS{t}"


def _blank(text: str | None) -> str | None:
    return text.strip() if text and text.strip() else None


def _format(value: str) -> str:
    if value not in ("json", "csv"):
        raise HTTPException(422, f"format must be json or csv, not {value[:20]!r}")
    return value


def _store_error(exc: StoreError) -> HTTPException:
    return HTTPException(503, f"the store cannot be read: {exc}")


def _reports_beside(state: _State, incidents: list[Any]) -> dict[str, list[Any]] | None:
    """User reports beside incidents (docs/user-reports.md), or None when they cannot be read: the measured record
    is shown either way."""
    if not incidents:
        return {}
    networks = {n.asn: n.name for n in state.publication.networks}
    try:
        with state.store.shared():
            return userreports.reports_beside(state.store.url, incidents, networks=networks)
    except Exception as exc:  # noqa: BLE001 - a failing side panel must not take the incident page down
        log.warning("user reports unavailable: %s", exc)
        return None


# -- the explorer's filters ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplorerQuery:
    cc: str | None = None
    asn: str | None = None
    test: str | None = None
    target: str | None = None
    domain: str | None = None
    outcome: str | None = None
    method: str | None = None
    since: str | None = None
    until: str | None = None

    def store_filters(self) -> dict[str, Any]:
        pairs = {"probe_cc": self.cc.upper() if self.cc else None, "probe_asn": _asn(self.asn),
                 "test_name": self.test, "target": self.target, "domain": self.domain, "outcome": self.outcome,
                 "method": self.method}
        return {k: v for k, v in pairs.items() if v}

    def shown(self) -> dict[str, str]:
        """The filters as given (for links, forms and the API's echo)."""
        return {k: v for k, v in vars(self).items() if v}


def _explorer_query(cc: str | None, asn: str | None, test: str | None, target: str | None, domain: str | None,
                    outcome: str | None, method: str | None, since: str | None, until: str | None) -> ExplorerQuery:
    return ExplorerQuery(*(_blank(v) for v in (cc, asn, test, target, domain, outcome, method, since, until)))


DEEP_OFFSET = 1000  # from here on a page is found through hourly counts (see _deep_page)


def _search(state: _State, q: ExplorerQuery, limit: int, offset: int) -> tuple[int, list[Verdict]]:
    since, until = _when(q.since, "since"), _when(q.until, "until")
    filters = q.store_filters()
    try:
        with state.store.use() as store:
            if offset >= DEEP_OFFSET:
                return _deep_page(store, filters, since, until, limit, offset)
            total = store.count_verdicts(filters, since, until)
            items = store.search_verdicts(filters, since, until, limit=limit, offset=offset)
    except StoreError as exc:
        raise _store_error(exc) from None
    return total, items


def _deep_page(store: Store, filters: dict[str, Any], since: dt.datetime | None, until: dt.datetime | None,
               limit: int, offset: int) -> tuple[int, list[Verdict]]:
    """The same page as ``search_verdicts(…, offset)``, without a sort that holds ``offset`` rows: the hourly
    counts of the matching verdicts (one aggregate) say which hour the page starts in and how many newer rows
    there are; the page is then the same query cut at the end of that hour, with an offset inside the hour."""
    counts = store.query_verdicts(VerdictQuery(bucket="hour", filters=filters, since=since, until=until)).rows
    timed = sorted(((_utc(h), n) for h, n in counts if h is not None), reverse=True)
    total = sum(n for _, n in counts)
    newer = 0
    for hour, n in timed:
        if newer + n > offset:
            end = hour + dt.timedelta(hours=1)
            cut = end if until is None else min(until, end)
            return total, store.search_verdicts(filters, since, cut, limit=limit, offset=offset - newer)
        newer += n
    # Past every timed verdict (those without a time come last): the plain way.
    return total, store.search_verdicts(filters, since, until, limit=limit, offset=offset)


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _measurement(state: _State, uid: str) -> tuple[T.MeasurementDetail, bytes | None]:
    """A stored measurement with its verdicts and the observations re-derived from its raw bytes."""
    from netvigil.analysis import make_observations
    from netvigil.codec import BadRecord, decode_measurement

    m = None
    error = None
    try:
        with state.store.use() as store:
            raw = store.get_raw(uid)
            if raw is not None:
                try:
                    m = decode_measurement(raw)
                except BadRecord as exc:
                    error = f"the stored bytes do not decode: {exc}"
            verdicts = []
            when = _ooni_time(m.envelope.measurement_start_time) if m is not None else None
            if when is not None:
                # The verdicts carry their measurement's start time: a one-second window lets the store skip
                # all but a few blocks of the verdicts (zonemaps, day partitions) instead of scanning every uid.
                verdicts = store.search_verdicts({"measurement_uid": uid}, when, when + dt.timedelta(seconds=1),
                                                 limit=1000)
            if not verdicts:
                verdicts = store.search_verdicts({"measurement_uid": uid}, limit=1000)
    except StoreError as exc:
        raise _store_error(exc) from None
    if raw is None and not verdicts:
        raise HTTPException(404, f"no measurement {uid[:120]!r} in the store")
    envelope: dict[str, Any] = {}
    observations = []
    if raw is None:
        error = "the raw measurement is not in the store"
    elif m is not None:
        envelope = T.envelope_facts(m.envelope)
        observations = make_observations(m)
    verdicts = sorted(verdicts, key=lambda v: v.verdict_id)
    return T.MeasurementDetail(uid=uid, envelope=envelope, verdicts=verdicts, rules=T.rule_notes(verdicts),
                               observations=observations, decoding_error=error), raw


def _ooni_time(text: str | None) -> dt.datetime | None:
    """OONI's "YYYY-MM-DD hh:mm:ss" (UTC) as an aware datetime, or None."""
    try:
        return dt.datetime.strptime(text or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _incident_filter(kind: str | None, asn: str | None, service: str | None, since: str | None,
                     until: str | None) -> IncidentFilter:
    return IncidentFilter(country=None, asn=_asn(asn), service=_blank(service), type=_blank(kind),
                          since=_when(since, "since"), until=_when(until, "until"))


# -- templates ---------------------------------------------------------------------------------------------------


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["when"] = _fmt_when
    env.filters["day"] = lambda d: d.isoformat() if d else ""
    env.filters["money"] = _fmt_money
    env.filters["duration"] = _fmt_duration
    env.filters["pct"] = lambda x: f"{100 * x:.0f} %" if x is not None else ""
    env.filters["short"] = _short_uid
    env.filters["obs_details"] = T.observation_summary
    env.filters["fact"] = _fmt_fact
    env.globals["qs"] = _qs
    return templates


def _fmt_when(t: dt.datetime | str | None) -> str:
    if t is None:
        return ""
    if isinstance(t, str):
        return t + " UTC" if t else ""
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _fmt_fact(value: Any) -> str:
    """An envelope value as text: mappings as ``key=value`` pairs, lists comma-separated."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _fmt_money(x: float | None) -> str:
    if x is None:
        return ""
    return usd(x)


def _fmt_duration(incident: Any) -> str:
    if incident.end is None:
        return "ongoing"
    seconds = (incident.end - incident.start).total_seconds()
    days, rest = divmod(int(seconds), 86400)
    hours = rest // 3600
    return f"{days} d {hours} h" if days else f"{hours} h {(rest % 3600) // 60} min"


def _short_uid(uid: str | None) -> str:
    if not uid:
        return ""
    return uid if len(uid) <= 28 else uid[:14] + "…" + uid[-10:]


def _qs(base: dict[str, str] | None = None, **changes: Any) -> str:
    """A query string from ``base`` with ``changes`` applied (None removes a key)."""
    params = dict(base or {})
    for k, v in changes.items():
        if v is None or v == "":
            params.pop(k, None)
        else:
            params[k] = str(v)
    return ("?" + urllib.parse.urlencode(params)) if params else ""


# -- the app ---------------------------------------------------------------------------------------------------


def create_app(settings: WebSettings) -> FastAPI:
    """The dashboard for ``settings``; builds the publication now unless the settings carry one (StoreError if the
    store cannot give one)."""
    access = StoreAccess(settings.store)
    if settings.publication is not None:
        pub, seconds = settings.publication, 0.0
    else:
        pub, seconds = _build(settings, access)
    state = _State(settings=settings, store=access, publication=pub, built_seconds=seconds)
    try:
        with access.use() as store:
            state.facets = _facets(store)
    except StoreError as exc:
        log.warning("the explorer's filter choices are unavailable: %s", exc)
    _prerender(state)

    app = FastAPI(
        title="netvigil dashboard API",
        version=_version(),
        description="Incidents, status matrix, timeline, charts and measurements of one country's publication, "
                    "as JSON and CSV. Every table is CSV with `?format=csv`.",
        docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    app.state.web = state
    templates = _templates()
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    if settings.report_dir is not None and Path(settings.report_dir).is_dir():
        app.mount("/report", StaticFiles(directory=str(settings.report_dir), html=True), name="report")

    templates.env.globals["has_report"] = settings.report_dir is not None and Path(settings.report_dir).is_dir()

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api") or request.url.path in ("/openapi.json", "/healthz"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return templates.TemplateResponse(request, "error.html", {"status": exc.status_code, "detail": exc.detail},
                                          status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api"):
            return await request_validation_exception_handler(request, exc)
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                           for e in exc.errors())
        return templates.TemplateResponse(request, "error.html", {"status": 422, "detail": detail}, status_code=422)

    app.include_router(_api_router())
    app.include_router(_page_router())
    app.include_router(userreports.router)
    _document(app)
    app.openapi_schema = None
    return app


def _version() -> str:
    from netvigil import __version__

    return __version__


# -- the JSON/CSV API -------------------------------------------------------------------------------------------

_FORMAT = Query("json", alias="format", description="json, or csv for the table as a CSV download")


def _api_router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["api"])

    @r.get("/overview", summary="Country overview", responses=_doc("Overview"))
    def api_overview(request: Request) -> Response:
        """What the front page shows: current status matrix, ongoing and recent incidents, networks, totals."""
        s = _state(request)
        reports = _reports_beside(s, s.publication.incidents)
        count = None if reports is None else sum(len(v) for v in reports.values())
        return _json(msgspec.structs.replace(s.overview_of(), user_reports=count))

    @r.get("/publication", summary="The whole publication", responses=_doc("Publication"))
    def api_publication(request: Request) -> Response:
        """Everything the dashboard and the report show, as built (netvigil.report.dataset.Publication)."""
        s = _state(request)
        return _memo(s, ("publication",), lambda: _json(s.publication))

    @r.get("/matrix", summary="Status matrix (day x network x service)",
           responses=_doc("StatusCellList", csv=True))
    def api_matrix(request: Request, day: str | None = Query(None, description="YYYY-MM-DD, or 'current' for "
                                                             "each network x service's latest day"),
                   asn: str | None = None, service: str | None = None, format: str = _FORMAT) -> Response:
        s = _state(request)
        return _memo(s, ("matrix", day, _asn(asn), service, _format(format)),
                     lambda: _matrix(s.publication, day, asn, service, format))

    def _matrix(pub: Publication, day: str | None, asn: str | None, service: str | None, format: str) -> Response:
        cells: list[StatusCell]
        if day == "current":
            cells = [c for row in T.current_status(pub.matrix).rows for c in row.cells if c is not None]
        elif day:
            try:
                wanted = dt.date.fromisoformat(day)
            except ValueError:
                raise HTTPException(422, f"day: {day[:20]!r} is not YYYY-MM-DD or 'current'") from None
            cells = [c for c in pub.matrix if c.day == wanted]
        else:
            cells = list(pub.matrix)
        if asn:
            cells = [c for c in cells if c.asn == _asn(asn)]
        if service:
            cells = [c for c in cells if c.service == service]
        if _format(format) == "csv":
            return _csv("matrix", T.CELL_COLUMNS, T.cell_rows(cells))
        return _json(cells)

    @r.get("/networks", summary="Measured networks", responses=_doc("NetworkList", csv=True))
    def api_networks(request: Request, format: str = _FORMAT) -> Response:
        nets = sorted(_state(request).publication.networks, key=lambda n: n.asn)
        if _format(format) == "csv":
            return _csv("networks", T.NETWORK_COLUMNS, T.network_rows(nets))
        return _json(nets)

    @r.get("/incidents", summary="Incidents (filtered)", responses=_doc("IncidentList", csv=True))
    def api_incidents(request: Request,
                      type: str | None = Query(None, description="service-based, throttling or full-network"),
                      asn: str | None = Query(None, description="a network, AS64501 or 64501"),
                      service: str | None = Query(None, description="a service group, e.g. facebook"),
                      since: str | None = Query(None, description="incidents still going at or after this time"),
                      until: str | None = Query(None, description="incidents that started before this time"),
                      ongoing: bool = Query(False, description="only incidents without an end"),
                      format: str = _FORMAT) -> Response:
        """Newest start first."""
        s = _state(request)
        f = _incident_filter(type, asn, service, since, until)
        fmt = _format(format)

        def make() -> Response:
            found = T.filter_incidents(s.publication.incidents, f)
            if ongoing:
                found = [i for i in found if i.end is None]
            if fmt == "csv":
                return _csv("incidents", T.INCIDENT_COLUMNS, T.incident_rows(found))
            return _json(T.IncidentList(total=len(found), incidents=found))

        return _memo(s, ("incidents", f, ongoing, fmt), make)

    @r.get("/incidents/{incident_id}", summary="One incident", responses=_doc("IncidentDetail"))
    def api_incident(request: Request, incident_id: str) -> Response:
        """The incident with its timeline sentences, related incidents and the user reports beside it."""
        s = _state(request)
        detail = _incident_or_404(s, incident_id)
        return _json(detail)

    @r.get("/incidents/{incident_id}/evidence", summary="An incident's evidence",
           responses=_doc("EvidenceList", csv=True))
    def api_evidence(request: Request, incident_id: str, format: str = _FORMAT) -> Response:
        """Every record that proves the incident (measurement uids, signal events), in time order."""
        s = _state(request)
        fmt = _format(format)

        def make() -> Response:
            detail = T.incident_detail(s.publication, incident_id)
            if detail is None:
                raise HTTPException(404, f"no incident {incident_id[:80]!r}")
            rows = T.evidence_rows(detail.incident)
            if fmt == "csv":
                return _csv(f"evidence-{incident_id}", T.EVIDENCE_COLUMNS, rows)
            return _json(rows)

        return _memo(s, ("evidence", incident_id, fmt), make)

    @r.get("/timeline", summary="Timeline sentences", responses=_doc("TimelineList", csv=True))
    def api_timeline(request: Request, incident: str | None = Query(None, description="one incident's entries"),
                     format: str = _FORMAT) -> Response:
        s = _state(request)
        fmt = _format(format)

        def make() -> Response:
            entries = sorted(s.publication.timeline, key=lambda t: t.time)
            if incident:
                entries = [t for t in entries if t.incident_id == incident]
            if fmt == "csv":
                return _csv("timeline", T.TIMELINE_COLUMNS, T.timeline_rows(entries))
            return _json(entries)

        return _memo(s, ("timeline", incident, fmt), make)

    @r.get("/throughput", summary="Throughput figures", responses=_doc("ThroughputList", csv=True))
    def api_throughput(request: Request, asn: str | None = None, format: str = _FORMAT) -> Response:
        s = _state(request)
        fmt = _format(format)

        def make() -> Response:
            points = s.publication.throughput
            if asn:
                points = [p for p in points if p.asn == _asn(asn)]
            if fmt == "csv":
                return _csv("throughput", T.THROUGHPUT_COLUMNS, T.throughput_rows(points))
            return _json(points)

        return _memo(s, ("throughput", _asn(asn), fmt), make)

    @r.get("/measurements", summary="Measurement explorer", responses=_doc("MeasurementList", csv=True))
    def api_measurements(
            request: Request,
            cc: str | None = Query(None, description="probe country, e.g. AZ"),
            asn: str | None = Query(None, description="probe network, AS64501 or 64501"),
            test: str | None = Query(None, description="test name, e.g. web_connectivity"),
            target: str | None = Query(None, description="the verdict's target (URL or endpoint), exact"),
            domain: str | None = Query(None, description="the target's domain, exact"),
            outcome: str | None = Query(None, description="ok, blocked, throttled, down or inconclusive"),
            method: str | None = Query(None, description="blocking method: dns, tcp_ip, tls, http-failure, ..."),
            since: str | None = Query(None, description="measured at or after (ISO date or time, UTC)"),
            until: str | None = Query(None, description="measured before (ISO date or time, UTC)"),
            offset: int = Query(0, ge=0),
            limit: int = Query(PAGE_SIZE, ge=1, le=MAX_CSV, description=f"at most {MAX_PAGE} as JSON, "
                               f"{MAX_CSV} as CSV"),
            format: str = _FORMAT) -> Response:
        """Verdicts (one per measurement and target), newest first, with the filters applied."""
        fmt = _format(format)
        if fmt == "json" and limit > MAX_PAGE:
            raise HTTPException(422, f"limit: at most {MAX_PAGE} as JSON (page with offset)")
        q = _explorer_query(cc, asn, test, target, domain, outcome, method, since, until)
        total, items = _search(_state(request), q, limit, offset)
        rows = T.verdict_rows(items)
        if fmt == "csv":
            return _csv("measurements", T.VERDICT_COLUMNS, rows)
        return _json(T.MeasurementList(total=total, offset=offset, limit=limit, filters=q.shown(), items=rows))

    @r.get("/measurements/{uid}", summary="One measurement", responses=_doc("MeasurementDetail"))
    def api_measurement(request: Request, uid: str) -> Response:
        """Envelope facts, verdicts with the rules that decided them, and the observations re-derived from the
        stored raw measurement."""
        detail, _ = _measurement(_state(request), uid)
        return _json(detail)

    @r.get("/measurements/{uid}/observations", summary="A measurement's observations",
           responses=_doc("ObservationList", csv=True))
    def api_observations(request: Request, uid: str, format: str = _FORMAT) -> Response:
        detail, _ = _measurement(_state(request), uid)
        if _format(format) == "csv":
            return _csv(f"observations-{uid}", T.OBSERVATION_COLUMNS, T.observation_rows(detail.observations))
        return _json(detail.observations)

    @r.get("/measurements/{uid}/raw", summary="The raw measurement (OONI JSON, as stored)",
           responses={200: {"content": {"application/json": {}}, "description": "the bytes as imported"}})
    def api_raw(request: Request, uid: str) -> Response:
        try:
            with _state(request).store.use() as store:
                raw = store.get_raw(uid)
        except StoreError as exc:
            raise _store_error(exc) from None
        if raw is None:
            raise HTTPException(404, f"no measurement {uid[:120]!r} in the store")
        return Response(raw, media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{_file_name(uid)}.json"'})

    @r.get("/charts", summary="Chart names", responses=_doc("ChartList"))
    def api_charts() -> Response:
        return _json([{"name": n, "svg": f"/api/charts/{n}.svg", "png": f"/api/charts/{n}.png"}
                      for n in _chart_names()])

    @r.get("/charts/{file}", summary="One chart as SVG or PNG",
           responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}, "description": "the chart"}})
    def api_chart(request: Request, file: str) -> Response:
        """``{name}.svg`` or ``{name}.png`` for a name of /api/charts, drawn from the publication."""
        name, _, fmt = file.rpartition(".")
        if fmt not in ("svg", "png") or name not in _chart_names():
            raise HTTPException(404, f"no chart {file[:40]!r}; see /api/charts")
        data = _chart(_state(request), name, fmt)
        return Response(data, media_type="image/svg+xml" if fmt == "svg" else "image/png",
                        headers={"Cache-Control": "no-cache"})

    @r.post("/refresh", summary="Rebuild the publication (admin token)", responses=_doc("RefreshResult"))
    def api_refresh(request: Request) -> Response:
        """``Authorization: Bearer <admin token>``. Without a token configured, refresh is refused (403)."""
        s = _state(request)
        _require_admin(request, s.settings)
        if not s.refresh_lock.acquire(blocking=False):
            raise HTTPException(409, "a refresh is already running")
        try:
            pub, seconds = _build(s.settings, s.store)
            s.publication, s.built_seconds = pub, seconds
            _forget(s)
            with s.chart_lock:
                s.charts.clear()
            try:
                with s.store.use() as store:
                    s.facets = _facets(store)
            except StoreError as exc:
                log.warning("the explorer's filter choices are unavailable: %s", exc)
            _prerender(s)
        except StoreError as exc:
            raise _store_error(exc) from None
        finally:
            s.refresh_lock.release()
        return _json(RefreshResult(generated_at=pub.generated_at, seconds=round(seconds, 3),
                                   incidents=len(pub.incidents), measurements=pub.measurements))

    return r


class RefreshResult(msgspec.Struct, kw_only=True):
    generated_at: dt.datetime
    seconds: float
    incidents: int
    measurements: int


def _require_admin(request: Request, settings: WebSettings) -> None:
    if not settings.admin_token:
        raise HTTPException(403, "no admin token is configured: refresh is disabled")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.admin_token.encode()):
        raise HTTPException(401, "admin token required (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})


def _incident_or_404(s: _State, incident_id: str) -> T.IncidentDetail:
    pub = s.publication
    found = next((i for i in pub.incidents if i.incident_id == incident_id), None)
    if found is None:
        raise HTTPException(404, f"no incident {incident_id[:80]!r}")
    reports = _reports_beside(s, [found]) or {}
    detail = T.incident_detail(pub, incident_id, reports.get(incident_id, []))
    assert detail is not None
    return detail


# -- the pages ------------------------------------------------------------------------------------------------


def _page(request: Request, name: str, nav: str, **context: Any) -> HTMLResponse:
    s = _state(request)
    context.update(pub=s.publication, nav=nav)
    return request.app.state.templates.TemplateResponse(request, name, context)


def _page_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/", response_class=HTMLResponse)
    def overview_page(request: Request) -> HTMLResponse:
        s = _state(request)
        reports = _reports_beside(s, s.publication.incidents)
        count = None if reports is None else sum(len(v) for v in reports.values())
        beside = {k: len(v) for k, v in (reports or {}).items() if v}
        return _page(request, "overview.html", "overview",
                     o=msgspec.structs.replace(s.overview_of(), user_reports=count),
                     reports_by_incident=beside)

    @r.get("/incidents", response_class=HTMLResponse)
    def incidents_page(request: Request, type: str | None = None, asn: str | None = None,
                       service: str | None = None, since: str | None = None,
                       until: str | None = None) -> HTMLResponse:
        pub = _state(request).publication
        found = T.filter_incidents(pub.incidents, _incident_filter(type, asn, service, since, until))
        given = {"type": type, "asn": asn, "service": service, "since": since, "until": until}
        shown = {k: v for k, v in given.items() if v}
        return _page(request, "incidents.html", "incidents", incidents=found, filters=shown,
                     types=[t.value for t in IncidentType],
                     asns=sorted({a for i in pub.incidents for a in i.asns} | {n.asn for n in pub.networks}),
                     services=sorted({sv for i in pub.incidents for sv in i.services}))

    @r.get("/incidents/{incident_id}", response_class=HTMLResponse)
    def incident_page(request: Request, incident_id: str) -> HTMLResponse:
        detail = _incident_or_404(_state(request), incident_id)
        evidence = T.evidence_rows(detail.incident)
        return _page(request, "incident.html", "incidents", d=detail, i=detail.incident,
                     evidence=evidence[:EVIDENCE_SHOWN], evidence_total=len(evidence))

    @r.get("/measurements", response_class=HTMLResponse)
    def explorer_page(request: Request, cc: str | None = None, asn: str | None = None, test: str | None = None,
                      target: str | None = None, domain: str | None = None, outcome: str | None = None,
                      method: str | None = None, since: str | None = None, until: str | None = None,
                      page: int = Query(1, ge=1, le=1_000_000)) -> HTMLResponse:
        s = _state(request)
        q = _explorer_query(cc, asn, test, target, domain, outcome, method, since, until)
        total, items = _search(s, q, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        pages = max(1, -(-total // PAGE_SIZE))
        return _page(request, "explorer.html", "measurements", q=q.shown(), items=items, total=total, page=page,
                     pages=pages, facets=s.facets, outcomes=[o.value for o in Outcome],
                     methods=[m.value for m in Method])

    @r.get("/measurements/{uid}", response_class=HTMLResponse)
    def measurement_page(request: Request, uid: str) -> HTMLResponse:
        detail, _ = _measurement(_state(request), uid)
        decisive = {d for v in detail.verdicts for d in v.decisive}
        return _page(request, "measurement.html", "measurements", m=detail, decisive=decisive)

    @r.get("/charts", response_class=HTMLResponse)
    def charts_page(request: Request) -> HTMLResponse:
        return _page(request, "charts.html", "charts", charts=_chart_names())

    @r.get("/docs", response_class=HTMLResponse)
    def docs_page(request: Request) -> HTMLResponse:
        """The API, listed from the app's own OpenAPI document (no Swagger UI: it would load from a CDN)."""
        spec = request.app.openapi()
        endpoints = []
        for path, ops in spec.get("paths", {}).items():
            for verb, op in ops.items():
                params = [(p["name"], p.get("description", ""), p.get("required", False))
                          for p in op.get("parameters", [])]
                endpoints.append({"verb": verb.upper(), "path": path, "summary": op.get("summary", ""),
                                  "description": op.get("description", ""), "params": params})
        return _page(request, "docs.html", "docs", endpoints=endpoints)

    @r.get("/healthz")
    def healthz() -> Response:
        return _json({"ok": True})

    return r


# -- OpenAPI: the msgspec records' JSON Schema as components -------------------------------------------------------


_LIST_TYPES: dict[str, Any] = {
    "StatusCellList": list[StatusCell],
    "NetworkList": list[T.Network],
    "EvidenceList": list[dict[str, Any]],
    "TimelineList": list[T.TimelineEntry],
    "ThroughputList": list[T.ThroughputPoint],
    "ObservationList": list[T.Observation],
    "ChartList": list[dict[str, str]],
}
_RECORD_TYPES: dict[str, Any] = {
    "Overview": T.Overview, "Publication": Publication, "IncidentList": T.IncidentList,
    "IncidentDetail": T.IncidentDetail, "MeasurementList": T.MeasurementList,
    "MeasurementDetail": T.MeasurementDetail, "RefreshResult": RefreshResult,
}


def _doc(name: str, *, csv: bool = False) -> dict[int | str, dict[str, Any]]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    if csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return {200: {"content": content, "description": "JSON" + (", or CSV with format=csv" if csv else "")}}


def _document(app: FastAPI) -> None:
    """FastAPI's schema, with the responses' JSON Schema (from the msgspec records) added as components."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        names = list(_RECORD_TYPES) + list(_LIST_TYPES)
        types = [_RECORD_TYPES.get(n) or _LIST_TYPES[n] for n in names]
        schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
        found = spec.setdefault("components", {}).setdefault("schemas", {})
        found.update(components)
        for n, schema in zip(names, schemas):
            found.setdefault(n, schema)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


# -- serving ---------------------------------------------------------------------------------------------------


class AddressError(OSError):
    """The dashboard's address cannot be had (in use, not local, not permitted)."""


def serve(settings: WebSettings, host: str = "127.0.0.1", port: int = 8080,
          ready: Callable[[str], None] | None = None, *, stop: threading.Event | None = None) -> None:
    """Serve the dashboard until Ctrl-C/SIGTERM (or ``stop`` is set); ``ready(url)`` once listening.

    The address is taken first (AddressError at once if it cannot be had), then the publication is built
    (StoreError, PublishError as build_publication raises them). uvicorn's access log is off: it would record
    client addresses."""
    from netvigil.serving import bind_listener

    try:
        sock = bind_listener(host, port)
    except OSError as exc:
        raise AddressError(exc.errno, exc.strerror or str(exc)) from None
    try:
        app = create_app(settings)
        try:
            asyncio.run(_serve(app, sock, ready, stop))
        finally:
            app.state.web.store.close()
    finally:
        sock.close()


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def _serve(app: FastAPI, sock: Any, ready: Callable[[str], None] | None, stop: threading.Event | None) -> None:
    import uvicorn

    config = uvicorn.Config(app, http="h11", ws="none", lifespan="off", loop="asyncio", log_level="warning",
                            access_log=False, proxy_headers=False, server_header=False,
                            timeout_graceful_shutdown=5)
    server = _server_class()(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        await task
        raise AddressError(0, "the server did not start")
    host, port = sock.getsockname()[:2]
    if ready is not None:
        ready(url_of(host, port))
    while not task.done():
        if stop is not None and stop.is_set():
            server.should_exit = True
        await asyncio.wait({task}, timeout=0.2)
    await task


def _server_class() -> type:
    """uvicorn's server that exits quietly on SIGTERM/SIGINT in the main thread (netvigil.serving's), and plain
    elsewhere (signals can only be caught on the main thread; a thread stops through ``stop``)."""
    import uvicorn

    from netvigil.serving import _quiet_server

    if threading.current_thread() is threading.main_thread():
        return _quiet_server()
    return uvicorn.Server

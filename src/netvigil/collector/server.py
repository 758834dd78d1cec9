"""The collector's HTTP API.

Submission (open like OONI's, bk-003):
    POST /report                  open a report -> {"report_id", "backend_version", "supported_formats"}
    POST /report/{id}             submit {"format": "json", "content": {...}} -> {"measurement_uid", "report_id"}
    POST /report/{id}/close       close (reports are stateless: this only checks the id)
    POST /measurement             bk-003 3.4: one measurement without a report (the collector assigns one)
    POST /measurements            a JSON array of such measurements, each acknowledged in the answer
Read and admin (``Authorization: Bearer <token>``):
    GET /api/v1/query             verdict counts, the parameters of ``netvigil query`` (by, bucket, where, since, until)
    GET /api/v1/stats             log, worker and store figures
    DELETE /api/v1/measurements/{uid}
Open: ``GET /health``, ``GET /metrics`` (Prometheus).

An answer 200 to a submission means the measurement is in the fsynced log. A repeat (same
``X-Idempotency-Key``, or the same content when the probe sends no key) gets the first receipt with
``Idempotent-Replayed: true`` and stores nothing. Every refusal is a 4xx ``{"error": reason}``; 503 (with
``Retry-After``) only when the disk cannot take more.

The submission routes are served by a small ASGI layer in front of FastAPI: they carry nearly all the
traffic, and FastAPI's routing and request objects doubled the CPU cost of a request (measured: 1,550
against 3,300 requests/s on one core), which is the difference between meeting and missing 2,000
durable measurements/s on two cores. The rest is a FastAPI app.

The client's address is used for the rate limit and for scrubbing it out of the measurement, in memory
only: it is never logged and never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from netvigil import __version__
from netvigil.collector.log import LogBusy, LogError, LogUnavailable, MeasurementLog, Position, Receipt
from netvigil.collector.metrics import CONTENT_TYPE_LATEST, Metrics
from netvigil.collector.ratelimit import TokenBuckets
from netvigil.collector.reportid import ReportIds
from netvigil.collector.validate import (
    MAX_BATCH_BODY,
    MAX_BATCH_ITEMS,
    MAX_MEASUREMENT_BODY,
    Envelope,
    RawDoc,
    Rejected,
    check_idempotency_key,
    check_measurement,
    check_open,
    content_key,
    decode_batch,
    decode_item,
    decode_submission,
    finish,
    header_key,
    new_measurement_uid,
    parse_json,
    report_id_of,
    scrub_address,
    utc_now,
)
from netvigil.collector.worker import Worker, WorkerState, read_state
from netvigil.store import Store, StoreError, open_store, parse_verdict_query

__all__ = ["BACKEND_VERSION", "ApiContext", "Intake", "Limits", "make_app"]

log = logging.getLogger(__name__)

BACKEND_VERSION = __version__
IDEMPOTENCY_HEADER = b"x-idempotency-key"
DRAIN_CAP = 64 << 20  # a body declared larger than this is refused without reading it
_JSON = b"application/json"
_UID = re.compile(r"[A-Za-z0-9._-]{1,200}")
T = TypeVar("T")


@dataclass(slots=True)
class Limits:
    measurement_bytes: int = MAX_MEASUREMENT_BODY
    batch_bytes: int = MAX_BATCH_BODY
    batch_items: int = MAX_BATCH_ITEMS
    per_client_per_minute: float = 6000.0  # 0: no limit
    per_client_burst: int = 2000
    per_report_per_minute: float = 3000.0
    per_report_burst: int = 1000
    body_timeout: float = 30.0


class _Disconnected(Exception):
    """The client went away while sending its body: there is nobody to answer."""


class Intake:
    """Checks and files submissions; shared by the routes. Runs in the serving event loop."""

    def __init__(self, log_: MeasurementLog, reports: ReportIds, metrics: Metrics, limits: Limits,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.log = log_
        self.reports = reports
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        self.per_client = TokenBuckets(limits.per_client_per_minute, limits.per_client_burst)
        self.per_report = TokenBuckets(limits.per_report_per_minute, limits.per_report_burst)

    def open_report(self, raw: bytes) -> dict[str, Any]:
        now = self.clock()
        req = check_open(parse_json(raw), now)
        return {"backend_version": BACKEND_VERSION, "report_id": self.reports.mint_for(req, now),
                "supported_formats": ["json"]}

    def close_report(self, report_id: str) -> dict[str, Any]:
        self.reports.verify(report_id, self.clock())
        return {"status": "success"}

    async def submit(self, report_id: str, raw: bytes, key: str | None, client: str | None) -> tuple[Receipt, bool]:
        """bk-003 3.2: a measurement into an open report."""
        now = self.clock()
        info = self.reports.verify(report_id, now)
        _limit(self.per_report.take(report_id), "this report")
        doc = decode_submission(raw)
        env = check_measurement(doc, now)
        self.reports.check_matches(info, env)
        if report_id_of(doc) != report_id:
            raise Rejected(400, "report_mismatch", "content.report_id does not match the report in the URL")
        return await self._accept(doc, env, report_id, key, client, now)

    async def submit_one(self, raw: bytes, key: str | None, client: str | None) -> tuple[Receipt, bool]:
        """bk-003 3.4: a measurement without a report; it is filed under a report minted for it."""
        return await self._unfiled(decode_submission(raw), key, client)

    async def _unfiled(self, doc: RawDoc, key: str | None, client: str | None) -> tuple[Receipt, bool]:
        now = self.clock()
        env = check_measurement(doc, now)
        return await self._accept(doc, env, self.reports.mint_for(env, now), key, client, now)

    async def submit_batch(self, raw: bytes, client: str | None) -> dict[str, Any]:
        """A JSON array of measurements (bare, or ``{"format", "content", "idempotency_key"}``), each answered."""
        items = decode_batch(raw)
        if len(items) > self.limits.batch_items:
            raise Rejected(413, "batch_too_large", f"more than {self.limits.batch_items} measurements in one batch")
        if self.limits.per_client_per_minute > 0 and len(items) > self.limits.per_client_burst:
            raise Rejected(413, "batch_too_large",
                           f"more measurements than this collector's burst ({self.limits.per_client_burst})")
        _limit(self.per_client.take(client or "", len(items) - 1), "this client")

        async def one(i: int, item: Any) -> dict[str, Any]:
            try:
                doc, key = decode_item(item)
                receipt, replayed = await self._unfiled(doc, key, client)
            except Rejected as exc:
                self.metrics.rejected(exc.code)
                return {"index": i, "status": exc.status, "error": exc.reason}
            except (LogUnavailable, LogBusy) as exc:
                return {"index": i, "status": 503, "error": str(exc)}
            return {"index": i, "status": 200, "measurement_uid": receipt.measurement_uid,
                    "report_id": receipt.report_id, "replayed": replayed}

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        return {"results": results,
                "accepted": sum(r["status"] == 200 and not r["replayed"] for r in results),
                "replayed": sum(r["status"] == 200 and r["replayed"] for r in results),
                "rejected": sum(r["status"] != 200 for r in results)}

    async def _accept(self, doc: RawDoc, env: Envelope, report_id: str, key: Any, client: str | None,
                      now: datetime) -> tuple[Receipt, bool]:
        """Into the log once per idempotency key; the stored bytes are made only for a first submission."""
        ikey = header_key(check_idempotency_key(key), env) if key is not None else content_key(doc)

        def build() -> tuple[str, str, bytes]:
            uid = new_measurement_uid(env, now)
            return uid, report_id, scrub_address(finish(doc, uid, report_id), client)

        receipt, replayed = await self.log.submit(ikey, build)
        if replayed:
            self.metrics.duplicates.inc()
        else:
            self.metrics.accepted(env.test_name)
        return receipt, replayed


def _limit(wait: float, who: str) -> None:
    if wait > 0:
        raise _RateLimited(wait, who)


class _RateLimited(Rejected):
    def __init__(self, wait: float, who: str) -> None:
        super().__init__(429, "rate_limited", f"rate limit exceeded for {who}: retry later")
        self.retry_after = max(1, math.ceil(wait))


def _receipt_body(receipt: Receipt) -> dict[str, str]:
    return {"measurement_uid": receipt.measurement_uid, "measurement_id": receipt.measurement_uid,
            "report_id": receipt.report_id}


def _route(path: str) -> tuple[str, str] | None:
    """(route, report id) for the submission paths, None for everything else."""
    if path == "/report":
        return "open", ""
    if path == "/measurement":
        return "single", ""
    if path == "/measurements":
        return "batch", ""
    if path.startswith("/report/"):
        rest = path[8:]
        if rest.endswith("/close") and rest.count("/") == 1:
            return "close", rest[:-6]
        if "/" not in rest and rest:
            return "submit", rest
        return "unknown", ""
    return None


class SubmissionFront:
    """ASGI: the submission routes directly, everything else to the FastAPI app."""

    def __init__(self, intake: Intake, api: FastAPI) -> None:
        self.intake = intake
        self.api = api
        self.metrics = intake.metrics
        self.limits = intake.limits

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        routed = _route(scope["path"])
        if routed is None:
            await self.api(scope, receive, send)
            return
        started = time.perf_counter()
        route, report_id = routed
        try:
            await self._handle(scope, receive, send, route, report_id)
        finally:
            self.metrics.latency(route, time.perf_counter() - started)

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any, route: str, report_id: str) -> None:
        headers = dict(scope["headers"])
        client = scope.get("client")
        address = client[0] if client else None  # in memory only: rate limit and scrubbing
        close = False
        try:
            limit = self.limits.batch_bytes if route == "batch" else self.limits.measurement_bytes
            raw, close = await self._read_body(receive, headers.get(b"content-length"), limit)
            if route == "unknown":
                raise Rejected(404, "not_found", "no such endpoint")
            if scope["method"] != "POST":
                raise Rejected(405, "method_not_allowed", "method not allowed: use POST")
            encoding = headers.get(b"content-encoding", b"identity").strip().lower()
            if encoding not in (b"", b"identity"):
                raise Rejected(415, "unsupported_encoding", "content encoding not supported: send it uncompressed")
            if raw is None:
                raise Rejected(413, "body_too_large", f"body larger than {limit} bytes")
            _limit(self.intake.per_client.take(address or ""), "this client")
            extra: list[tuple[bytes, bytes]] = []
            if route == "open":
                answer: Any = self.intake.open_report(raw)
            elif route == "close":
                answer = self.intake.close_report(report_id)
            elif route == "batch":
                answer = await self.intake.submit_batch(raw, address)
            else:
                key = _header_text(headers.get(IDEMPOTENCY_HEADER))
                if route == "submit":
                    receipt, replayed = await self.intake.submit(report_id, raw, key, address)
                else:
                    receipt, replayed = await self.intake.submit_one(raw, key, address)
                answer = _receipt_body(receipt)
                if replayed:
                    extra.append((b"idempotent-replayed", b"true"))
            await _send(send, 200, orjson.dumps(answer), extra, close=close)
        except Rejected as exc:
            self.metrics.rejected(exc.code)
            extra = [(b"retry-after", str(exc.retry_after).encode())] if isinstance(exc, _RateLimited) else []
            if exc.status == 405:
                extra.append((b"allow", b"POST"))
            await _send(send, exc.status, orjson.dumps({"error": exc.reason}), extra, close=close)
        except (LogUnavailable, LogBusy) as exc:
            self.metrics.rejected("unavailable")
            await _send(send, 503, orjson.dumps({"error": str(exc)}), [(b"retry-after", b"1")], close=close)
        except _Disconnected:
            self.metrics.rejected("client_disconnected")
        except Exception:
            log.exception("internal error on a %s request", route)
            self.metrics.rejected("internal_error")
            await _send(send, 500, b'{"error":"internal error"}', close=True)

    async def _read_body(self, receive: Any, declared: bytes | None, limit: int) -> tuple[bytes | None, bool]:
        """(body, close): the body, or None when it is over ``limit`` (read and dropped up to DRAIN_CAP, so
        the client gets our answer rather than a reset). ``close``: the rest was not read; hang up after."""
        if declared is not None and declared.isdigit() and int(declared) > DRAIN_CAP:
            return None, True
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size <= limit:
                        chunks.append(chunk)
                    elif chunks:
                        chunks = []
                    if size > DRAIN_CAP:
                        return None, True
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise Rejected(408, "body_timeout", "request body not received in time") from None
        if size > limit:
            return None, False
        return b"".join(chunks), False


def _header_text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def _send(send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] = (), *,
                close: bool = False) -> None:
    headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()), *extra]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the token-protected API and the open health/metrics endpoints (FastAPI) ------------------------


@dataclass
class ApiContext:
    """What the read/admin API reaches: the log, the worker (in-process or a separate process), the store."""

    log: MeasurementLog
    data_dir: Path
    store_url: str | None
    token: str | None = None
    store: Store | None = None  # the in-process worker's store, used under ``store_lock``
    store_lock: Any = None
    worker: Worker | None = None
    delete_wait: float = 10.0
    _token_digest: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        if self.token is not None:
            self._token_digest = hashlib.sha256(self.token.encode()).digest()

    def worker_state(self) -> WorkerState:
        return self.worker.state if self.worker is not None else read_state(self.data_dir)

    def queue_depth(self) -> int:
        return max(0, self.log.stats.records - self.worker_state().records)

    def token_ok(self, presented: str) -> bool:
        """Constant time: both sides are hashed to equal length first."""
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._token_digest)

    async def with_store(self, fn: Callable[[Store], T]) -> T:
        if self.store is not None:
            store, lock = self.store, self.store_lock

            def locked() -> T:
                with lock:
                    return fn(store)

            return await asyncio.to_thread(locked)

        def opened() -> T:
            with open_store(self.store_url, read_only=True) as st:
                return fn(st)

        try:
            return await asyncio.to_thread(opened)
        except StoreError as exc:
            raise Rejected(503, "store_unavailable", f"store not available to this process: {exc}") from None


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS),
                    status_code=status, media_type="application/json", headers=headers)


def make_app(intake: Intake, ctx: ApiContext) -> SubmissionFront:
    """The collector's ASGI app."""
    api = FastAPI(title="netvigil collector", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = intake.metrics

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        metrics.rejected("not_found" if exc.status_code == 404 else f"http_{exc.status_code}")
        return _json({"error": str(exc.detail).lower()}, exc.status_code, exc.headers)

    @api.exception_handler(Rejected)
    async def _rejected(request: Request, exc: Rejected) -> Response:
        metrics.rejected(exc.code)
        return _json({"error": exc.reason}, exc.status)

    def authorize(request: Request) -> None:
        if ctx.token is None:
            raise Rejected(403, "forbidden", "read and admin endpoints are disabled: no token is configured")
        scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
        if not value:
            raise Rejected(401, "unauthorized", "missing credentials: send Authorization: Bearer <token>")
        if scheme.lower() != "bearer" or not ctx.token_ok(value.strip()):
            raise Rejected(403, "forbidden", "invalid token")

    async def health() -> Response:
        failed = ctx.log.failure
        body = {"status": "ok" if failed is None else "failing", "queue_depth": ctx.queue_depth()}
        if failed is not None:
            body["error"] = failed
        return _json(body, 200 if failed is None else 503)

    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def query(request: Request) -> Response:
        authorize(request)
        params = request.query_params
        try:
            q = parse_verdict_query(params.get("by", "outcome"), params.get("bucket") or None,
                                    params.getlist("where"), params.get("since"), params.get("until"))
        except ValueError as exc:
            raise Rejected(400, "invalid_query", str(exc)) from None
        result = await ctx.with_store(lambda st: st.query_verdicts(q))
        return _json({"columns": result.columns, "rows": [list(r) for r in result.rows]})

    async def stats(request: Request) -> Response:
        authorize(request)
        store_stats = await ctx.with_store(lambda st: st.stats())
        state = ctx.worker_state()
        s = ctx.log.stats
        return _json({
            "log": {"segments": s.segments, "bytes": s.bytes, "records": s.records, "measurements": len(ctx.log),
                    "commits": s.commits, "truncated_bytes": s.truncated_bytes},
            "worker": {"in_process": ctx.worker is not None, "segment": state.segment, "offset": state.offset,
                       "records": state.records, "stored": state.stored, "skipped": state.skipped,
                       "quarantined": state.quarantined, "deleted": state.deleted,
                       "analysis_errors": state.analysis_errors},
            "queue_depth": ctx.queue_depth(),
            "store": store_stats,
        })

    async def delete(request: Request, uid: str) -> Response:
        authorize(request)
        if not _UID.fullmatch(uid):
            raise Rejected(400, "invalid_field", "not a measurement uid")
        try:
            position = await ctx.log.delete(uid)
        except (LogUnavailable, LogError) as exc:
            raise Rejected(503, "unavailable", str(exc)) from None
        if position is None:
            raise Rejected(404, "not_found", "no such measurement in this collector's log")
        done = await _applied(ctx, position)
        return _json({"measurement_uid": uid, "status": "deleted" if done else "pending"}, 200 if done else 202)

    api.add_api_route("/health", health, methods=["GET"])
    api.add_api_route("/metrics", metrics_endpoint, methods=["GET"])
    api.add_api_route("/api/v1/query", query, methods=["GET"])
    api.add_api_route("/api/v1/stats", stats, methods=["GET"])
    api.add_api_route("/api/v1/measurements/{uid}", delete, methods=["DELETE"])
    return SubmissionFront(intake, api)


async def _applied(ctx: ApiContext, position: Position) -> bool:
    """Whether the worker processed the record at ``position`` within ``ctx.delete_wait`` seconds."""
    if ctx.worker is not None:
        return await asyncio.to_thread(ctx.worker.wait_past, position, ctx.delete_wait)
    deadline = time.monotonic() + ctx.delete_wait
    while time.monotonic() < deadline:
        if read_state(ctx.data_dir).position > position:
            return True
        await asyncio.sleep(0.1)
    return False



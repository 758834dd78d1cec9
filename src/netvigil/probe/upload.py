"""Deliver spooled measurements to an OONI collector, each exactly once.

The protocol is OONI's (ooni/spec backends/bk-003-collector.md): open a report
(``POST /report``), submit each measurement into it (``POST /report/{id}``) with its
``report_id`` field set to the collector-assigned id, close it
(``POST /report/{id}/close``). On top of that every submission carries the spool uid
as ``X-Idempotency-Key``: a collector that sees a key again answers with its first
receipt and stores nothing, so re-sending after a lost acknowledgement is safe. An
entry leaves the spool only after a receipt (``Spool.ack``); a refusal moves it to
``rejected/`` with the collector's answer; anything transient leaves it where it was.
The argument for exactly-once, failure point by failure point, is in
docs/probe-spool.md.

HTTP goes through the traced primitives of ``netvigil.probe.netx`` on throwaway
traces: an upload is not part of any measurement.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
import orjson

from netvigil.probe.netx import (
    Conn,
    HTTPResponse,
    NetxError,
    TLSConfig,
    Trace,
    connect,
    failure_of,
    getaddrinfo,
    http_request,
    tls_handshake,
)
from netvigil.probe.spool import Claim, Spool

__all__ = [
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "REPORT_FIELDS",
    "UploadEvent",
    "UploadResult",
    "upload_spool",
]

IDEMPOTENCY_HEADER = "X-Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on a receipt the collector had already given for this key
SCRUBBED_PROBE_IP = "127.0.0.1"
# The fields of the open-report request (bk-003 section 3.1); measurements that share them share a report.
REPORT_FIELDS = (
    "test_name",
    "test_version",
    "probe_asn",
    "probe_cc",
    "software_name",
    "software_version",
    "data_format_version",
)
REOPEN_AFTER = 3600.0  # bk-003 3.2: a 4xx on a report older than an hour means "open a new report"
MAX_ANSWER = 4096  # how much of a refusal we keep next to the rejected entry
MAX_RESPONSE = 1 << 20


class UploadEvent(msgspec.Struct, kw_only=True):
    """What just happened, for a progress display.

    kind: report_opened | delivered | already_delivered | rejected | bad | retry | left | report_closed | error
    """

    kind: str
    uid: str | None = None
    report_id: str | None = None
    detail: str = ""


class UploadResult(msgspec.Struct, kw_only=True):
    """Counts of one ``upload_spool`` run; every entry it claimed is in exactly one count."""

    delivered: int = 0
    already_delivered: int = 0  # the collector answered with a receipt it had given before (dedup)
    failed_transient: int = 0  # still in the spool: the next upload tries again
    rejected: int = 0
    bad: int = 0
    errors: list[str] = []


class _Transient(Exception):
    """A request that kept failing in a way that may heal (network, 5xx, 429) after every attempt."""


@dataclass(frozen=True)
class _Collector:
    scheme: str
    host: str
    port: int
    base: str  # path prefix without the trailing slash

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        netloc = host if self.port == default else f"{host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.base}{path}"


def _parse_collector(url: str) -> _Collector:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid collector URL {url!r}: expected http(s)://host[:port][/path]")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"invalid collector URL {url!r}: bad port") from None
    if parts.query or parts.fragment:
        raise ValueError(f"invalid collector URL {url!r}: no query or fragment allowed")
    return _Collector(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


class _Client:
    """One POST per connection (bk-003 says not to rely on keep-alive), retried with backoff."""

    def __init__(self, target: _Collector, *, tls: TLSConfig, timeout: float, max_attempts: int,
                 backoff_base: float, backoff_cap: float, emit: Callable[[UploadEvent], None]) -> None:
        self.target = target
        self.tls = tls
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.emit = emit

    async def _post_once(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> HTTPResponse:
        trace = Trace()  # throwaway: the upload is not part of any measurement
        t = self.target
        async with asyncio.timeout(self.timeout):
            addresses = await getaddrinfo(trace, t.host, timeout=self.timeout)
            conn: Conn | None = None
            last: BaseException | None = None
            for ip in addresses:
                try:
                    conn = await connect(trace, ip, t.port, timeout=self.timeout)
                    break
                except NetxError as exc:
                    last = exc
            if conn is None:
                raise last if last is not None else NetxError("dns_no_answer")
            try:
                if t.scheme == "https":
                    conn = await tls_handshake(trace, conn, t.host, tls=self.tls, timeout=self.timeout)
                return await http_request(trace, conn, t.url(path), method="POST", headers=headers, body=body,
                                          max_body=MAX_RESPONSE, timeout=self.timeout)
            finally:
                await conn.close()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), honouring Retry-After up to the cap."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_cap))
        return delay

    async def post(self, path: str, payload: Any, *, key: str | None = None, uid: str | None = None) -> HTTPResponse:
        """The first answer that is not transient, or _Transient after ``max_attempts`` tries."""
        body = orjson.dumps(payload)
        headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
        if key is not None:
            headers.append((IDEMPOTENCY_HEADER, key))
        why = ""
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = await self._post_once(path, body, headers)
            except (NetxError, OSError, TimeoutError) as exc:
                why = failure_of(exc)
            else:
                if response.status != 429 and response.status < 500:
                    return response
                why = f"HTTP {response.status}"
                retry_after = _retry_after(response)
            if attempt == self.max_attempts:
                break
            delay = self._delay(attempt, retry_after)
            self.emit(UploadEvent(kind="retry", uid=uid, detail=f"POST {path}: {why}; attempt {attempt + 1} "
                                                                f"in {delay:.2f}s"))
            await asyncio.sleep(delay)
        raise _Transient(f"POST {path}: {why} (after {self.max_attempts} attempts)")


def _retry_after(response: HTTPResponse) -> float | None:
    value = response.header("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: our own backoff is good enough


def _answer_text(response: HTTPResponse) -> str:
    return response.body[:MAX_ANSWER].decode("utf-8", "replace")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class _Ready:
    """A claimed, decoded entry that passed the local checks and may leave the device."""

    claim: Claim
    doc: dict[str, Any]
    group: tuple[str | None, ...]


@dataclass
class _Report:
    key: tuple[str | None, ...]
    report_id: str
    opened: float = field(default_factory=time.monotonic)


class _Uploader:
    def __init__(self, spool: Spool, client: _Client, emit: Callable[[UploadEvent], None]) -> None:
        self.spool = spool
        self.client = client
        self.emit = emit
        self.result = UploadResult()
        self.reachable = True  # False once a request exhausted its retries: leave the rest for next time
        self.reports: dict[tuple[str | None, ...], _Report] = {}
        self.refused: dict[tuple[str | None, ...], HTTPResponse] = {}  # groups whose report the collector refused
        self.unopenable: set[tuple[str | None, ...]] = set()  # groups the collector gave no usable report id for
        self.opened: list[_Report] = []

    # -- local decisions: no network ----------------------------------------------------------------

    def prepare(self, claim: Claim) -> _Ready | None:
        """Decode and check one entry; bad or refused entries are settled here and never sent."""
        uid = claim.uid
        raw = claim.read()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._bad(uid, f"not JSON: {exc}")
            return None
        if not isinstance(doc, dict):
            self._bad(uid, f"not a JSON object but {type(doc).__name__}")
            return None
        if doc.get("probe_ip") != SCRUBBED_PROBE_IP:
            self._reject(uid, f"probe_ip is not {SCRUBBED_PROBE_IP}: a probe's IP address is never sent")
            return None
        missing = [f for f in REPORT_FIELDS if not isinstance(doc.get(f), str) or not doc[f]]
        if missing:
            self._reject(uid, "missing report metadata: " + ", ".join(missing))
            return None
        start = doc.get("test_start_time")
        group = tuple(doc[f] for f in REPORT_FIELDS) + (start if isinstance(start, str) else None,)
        return _Ready(claim, doc, group)

    def _bad(self, uid: str, reason: str) -> None:
        self.spool.quarantine(uid, reason)
        self.result.bad += 1
        self.emit(UploadEvent(kind="bad", uid=uid, detail=reason))

    def _reject(self, uid: str, reason: str, *, status: int | None = None, answer: str | None = None,
                report_id: str | None = None) -> None:
        self.spool.reject(uid, reason, status=status, answer=answer)
        self.result.rejected += 1
        detail = reason if status is None else f"{reason}: HTTP {status} {answer or ''}".rstrip()
        self.emit(UploadEvent(kind="rejected", uid=uid, report_id=report_id, detail=detail))

    def _leave(self, ready: _Ready, why: str) -> None:
        self.result.failed_transient += 1
        self.emit(UploadEvent(kind="left", uid=ready.claim.uid, detail=why))

    def _error(self, message: str, report_id: str | None = None) -> None:
        self.result.errors.append(message)
        self.emit(UploadEvent(kind="error", report_id=report_id, detail=message))

    # -- the protocol -------------------------------------------------------------------------------

    async def _open(self, key: tuple[str | None, ...], doc: dict[str, Any]) -> _Report | HTTPResponse | None:
        """A fresh report for ``key``; the refusing response on a 4xx; None when unreachable/misbehaving."""
        request: dict[str, Any] = {f: doc[f] for f in REPORT_FIELDS}
        if key[-1] is not None:
            request["test_start_time"] = key[-1]
        request["format"] = "json"
        try:
            response = await self.client.post("/report", request)
        except _Transient as exc:
            self.reachable = False
            self._error(f"open report: {exc}")
            return None
        if 400 <= response.status < 500:
            self.refused[key] = response
            return response
        report_id = _json_object(response.body).get("report_id") if response.status == 200 else None
        if not isinstance(report_id, str) or not report_id:
            self.unopenable.add(key)
            self._error(f"open report: HTTP {response.status} without a report_id: {_answer_text(response)[:200]}")
            return None
        report = _Report(key, report_id)
        self.reports[key] = report
        self.opened.append(report)
        self.emit(UploadEvent(kind="report_opened", report_id=report_id, detail=str(key[0])))
        return report

    async def _report_for(self, key: tuple[str | None, ...], doc: dict[str, Any]) -> _Report | HTTPResponse | None:
        """The group's open report (opened on first need), the collector's refusal, or None."""
        if key in self.reports:
            return self.reports[key]
        if key in self.refused:
            return self.refused[key]
        if key in self.unopenable:
            return None
        return await self._open(key, doc)

    async def deliver(self, batch: list[_Ready]) -> None:
        """Submit a batch group by group (oldest group first), one report per group for the whole run."""
        groups: dict[tuple[str | None, ...], list[_Ready]] = {}
        for ready in batch:
            groups.setdefault(ready.group, []).append(ready)
        for key, members in groups.items():
            for ready in members:
                if not self.reachable:
                    self._leave(ready, "collector unreachable")
                    continue
                report = await self._report_for(key, ready.doc)
                if report is None:
                    self._leave(ready, "no report")
                elif isinstance(report, HTTPResponse):
                    self._reject(ready.claim.uid, "collector refused to open a report for it",
                                 status=report.status, answer=_answer_text(report))
                else:
                    await self._submit(ready, report)

    async def _submit(self, ready: _Ready, report: _Report, *, reopened: bool = False) -> None:
        uid = ready.claim.uid
        ready.doc["report_id"] = report.report_id  # as OONI Probe does; every other field stays as spooled
        try:
            response = await self.client.post(f"/report/{quote(report.report_id, safe='')}",
                                               {"format": "json", "content": ready.doc}, key=uid, uid=uid)
        except _Transient as exc:
            self.reachable = False
            self._error(f"submit {uid}: {exc}", report.report_id)
            self._leave(ready, str(exc))
            return
        if 200 <= response.status < 300:
            receipt = _json_object(response.body)
            # A replayed receipt names the report the first copy was filed under; trust it over ours.
            if not isinstance(receipt.get("report_id"), str):
                receipt["report_id"] = report.report_id
            self.spool.ack(uid, receipt)
            replayed = (response.header(REPLAYED_HEADER) or "").strip().lower() == "true"
            if replayed:
                self.result.already_delivered += 1
            else:
                self.result.delivered += 1
            self.emit(UploadEvent(kind="already_delivered" if replayed else "delivered", uid=uid,
                                  report_id=receipt["report_id"],
                                  detail=str(receipt.get("measurement_uid") or "")))
            return
        if 400 <= response.status < 500:
            if not reopened and time.monotonic() - report.opened > REOPEN_AFTER:
                self.reports.pop(report.key, None)
                if report in self.opened:  # the collector has closed it already: nothing to close later
                    self.opened.remove(report)
                opened = await self._open(report.key, ready.doc)
                if isinstance(opened, _Report):
                    await self._submit(ready, opened, reopened=True)
                    return
                if opened is None:
                    self._leave(ready, "no report")
                    return
                response = opened
            self._reject(uid, "collector refused the measurement", status=response.status,
                         answer=_answer_text(response), report_id=report.report_id)
            return
        self._error(f"submit {uid}: unexpected HTTP {response.status}", report.report_id)
        self._leave(ready, f"HTTP {response.status}")

    async def close_reports(self) -> None:
        """Close what we opened; a collector closes stale reports itself, so failures are only noted."""
        if not self.reachable:
            return
        for report in self.opened:
            try:
                response = await self.client.post(f"/report/{quote(report.report_id, safe='')}/close", {})
            except _Transient as exc:
                self._error(f"close report: {exc}", report.report_id)
                return
            if response.status != 200:
                self._error(f"close report: HTTP {response.status}", report.report_id)
            else:
                self.emit(UploadEvent(kind="report_closed", report_id=report.report_id))


async def upload_spool(
    spool: Spool,
    collector_url: str,
    *,
    tls: TLSConfig,
    max_attempts: int = 5,
    timeout: float = 15.0,
    on_progress: Callable[[UploadEvent], None] | None = None,
    backoff_base: float = 0.5,
    backoff_cap: float = 30.0,
    batch_size: int = 256,
) -> UploadResult:
    """Deliver every pending entry this process can claim; what could not go now stays for next time.

    ``timeout`` bounds each request (resolve + connect + TLS + exchange); transient failures are retried
    up to ``max_attempts`` times with exponential backoff and jitter (``backoff_base`` doubling up to
    ``backoff_cap`` seconds). Once a request has used up its attempts the collector counts as
    unreachable for the rest of the run: the remaining entries are still checked locally (bad files,
    unscrubbed probe_ip) but are left in the spool without further traffic. Claims are held in batches
    of ``batch_size`` so a large spool does not hold one descriptor per entry.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if timeout <= 0 or backoff_base < 0 or backoff_cap < 0 or batch_size < 1:
        raise ValueError("timeout and batch_size must be positive, backoff parameters non-negative")
    target = _parse_collector(collector_url)
    emit = on_progress if on_progress is not None else (lambda event: None)
    client = _Client(target, tls=tls, timeout=timeout, max_attempts=max_attempts,
                     backoff_base=backoff_base, backoff_cap=backoff_cap, emit=emit)
    uploader = _Uploader(spool, client, emit)
    batch: list[_Ready] = []
    uploader.result.bad += spool.sweep()
    try:
        for entry in spool.pending():
            claim = spool.claim(entry.uid)
            if claim is None:
                continue  # another uploader holds it, or it is gone already
            try:
                ready = uploader.prepare(claim)
            except BaseException:
                claim.release()
                raise
            if ready is None:
                claim.release()  # settled locally (bad/ or rejected/)
                continue
            batch.append(ready)
            if len(batch) >= batch_size:
                await _flush(uploader, batch)
        if batch:
            await _flush(uploader, batch)
        await uploader.close_reports()
    finally:
        for ready in batch:
            ready.claim.release()
    return uploader.result


async def _flush(uploader: _Uploader, batch: list[_Ready]) -> None:
    try:
        await uploader.deliver(batch)
    finally:
        for ready in batch:
            ready.claim.release()
        batch.clear()

"""The control helper's HTTP API: ``POST /`` (alias ``/web-connectivity``), ``GET /health``, and the speed test's
``GET /speed/download?bytes=N`` and ``POST /speed/upload``.

Order of the gates, cheapest first: per-client rate limit (429), body size and shape (400), the safety checks
(400), then a measurement slot (503 when saturated beyond a short wait). Identical requests (same URL, endpoints
and headers) that arrive while one is being measured share that measurement instead of queueing another, and
with ``Policy.share_seconds`` also for that long after it ended: a burst of probes asking about the same URL at
the same moment costs one measurement. The speed endpoints have their own
per-client rate limit, a cap on bytes and seconds per transfer and on transfers at once (``SpeedLimits``): they
send only the helper's own random bytes and read and discard what they are sent, so they cannot proxy anything.
The client's address is used only in memory by the rate limiters: it is never logged and never stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass

import msgspec
from fastapi import FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from netvigil.control.measure import AsnLookup, measure_target, to_wire
from netvigil.control.policy import Policy, RateLimiter, RequestRefused, Target, check_request
from netvigil.model.control import ControlRequest
from netvigil.probe.netx import TLSConfig

__all__ = ["SpeedLimits", "make_app"]

log = logging.getLogger(__name__)

_JSON = "application/json"
_BACKSTOP = 5.0  # seconds past the measurement timeout before a request is abandoned
_SPEED_BLOCK = 1 << 20  # the random bytes a download repeats (incompressible; drawn once per app)
_SPEED_PIECE = 64 * 1024


@dataclass(frozen=True)
class SpeedLimits:
    """What one client may ask of the speed endpoints (``docs/control.md``, "Speed endpoints")."""

    max_bytes: int = 100 * 1024 * 1024   # per transfer and direction; a download asks for at most this much
    max_seconds: float = 15.0            # a transfer is cut after this long
    max_transfers: int = 4               # at once, all clients together; beyond that, 503
    rate_per_minute: float = 20.0        # transfers per client address per minute
    burst: int = 6


def make_app(policy: Policy, *, tls: TLSConfig | None = None, timeout: float = 10.0,
             asn_lookup: AsnLookup | None = None, speed: SpeedLimits | None = None) -> FastAPI:
    """The ASGI app; `tls` is the trust store for the helper's own outbound TLS (default: the system's)."""
    tls = tls or TLSConfig()
    speed = speed or SpeedLimits()
    app = FastAPI(title="netvigil control helper", docs_url=None, redoc_url=None, openapi_url=None)
    limiter = RateLimiter(policy.rate_per_minute, policy.effective_burst)
    slots = asyncio.Semaphore(policy.max_concurrency)
    answers: dict[Target, asyncio.Task[tuple[int, bytes]]] = {}  # measuring now, or answered < share_seconds ago

    async def web_connectivity(request: Request) -> Response:
        client = request.client.host if request.client else ""
        wait = limiter.acquire(client)
        del client
        if wait > 0:
            return _error(429, "rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})
        try:
            raw = await _read_body(request, policy.max_request_bytes)
            req = _decode(raw)
            target = check_request(req, policy)
        except RequestRefused as exc:
            return _error(400, str(exc))
        shared = answers.get(target)
        if shared is None:
            shared = answers[target] = asyncio.create_task(measure_once(target))
            shared.add_done_callback(lambda task: forget(target, task))
        # shielded: a client that hangs up does not cancel the measurement others are waiting for
        status, body = await asyncio.shield(shared)
        if status != 200:
            return _error(status, body.decode(), {"Retry-After": "1"})
        return Response(content=body, media_type=_JSON)

    async def measure_once(target: Target) -> tuple[int, bytes]:
        """(200, the encoded answer) or (503, why)."""
        try:
            async with asyncio.timeout(policy.queue_wait):
                await slots.acquire()
        except TimeoutError:
            return 503, b"busy: too many measurements in progress"
        try:
            async with asyncio.timeout(timeout + _BACKSTOP):
                result = await measure_target(target, policy, tls=tls, timeout=timeout, asn_lookup=asn_lookup)
        except TimeoutError:
            log.error("a measurement overran its budget by %.0f s", _BACKSTOP)
            return 503, b"measurement timed out"
        finally:
            slots.release()
        return 200, msgspec.json.encode(to_wire(result))

    def forget(target: Target, task: asyncio.Task) -> None:
        def drop() -> None:
            if answers.get(target) is task:
                del answers[target]
        if policy.share_seconds > 0 and not task.cancelled() and task.exception() is None and task.result()[0] == 200:
            asyncio.get_running_loop().call_later(policy.share_seconds, drop)
        else:
            drop()

    async def health() -> Response:
        return Response(content=b'{"status":"ok"}', media_type=_JSON)

    for path in ("/", "/web-connectivity"):
        app.add_api_route(path, web_connectivity, methods=["POST"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)
    _add_speed_routes(app, speed)
    return app


def _add_speed_routes(app: FastAPI, limits: SpeedLimits) -> None:
    """``GET /speed/download?bytes=N`` streams N random bytes; ``POST /speed/upload`` counts and discards a body."""
    limiter = RateLimiter(limits.rate_per_minute, max(1, limits.burst))
    block = os.urandom(_SPEED_BLOCK)
    active = [0]

    def admit(request: Request) -> Response | None:
        client = request.client.host if request.client else ""
        wait = limiter.acquire(client)
        del client
        if wait > 0:
            return _error(429, "rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})
        if active[0] >= limits.max_transfers:
            return _error(503, "busy: too many transfers in progress", {"Retry-After": "1"})
        active[0] += 1
        return None

    def release() -> None:
        active[0] -= 1

    async def download(request: Request) -> Response:
        text = request.query_params.get("bytes", "")
        if not text.isdigit() or not 0 < int(text) <= 1 << 62:
            return _error(400, "bytes: expected a positive integer")
        refused = admit(request)
        if refused is not None:
            return refused
        return _RandomBody(min(int(text), limits.max_bytes), block, limits.max_seconds, release)

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limits.max_bytes):
            return _error(413, f"request body larger than {limits.max_bytes} bytes")
        refused = admit(request)
        if refused is not None:
            return refused
        try:
            received, seconds, cut = await _count_body(request, limits)
        finally:
            release()
        if received > limits.max_bytes:
            return _error(413, f"request body larger than {limits.max_bytes} bytes")
        seconds = max(seconds, 1e-6)
        report = {"received": received, "seconds": round(seconds, 6), "bits_per_second": round(received * 8 / seconds),
                  "cut": cut}
        return Response(content=msgspec.json.encode(report), media_type=_JSON, headers={"Cache-Control": "no-store"})

    app.add_api_route("/speed/download", download, methods=["GET"], include_in_schema=False)
    app.add_api_route("/speed/upload", upload, methods=["POST"], include_in_schema=False)


async def _count_body(request: Request, limits: SpeedLimits) -> tuple[int, float, bool]:
    """(bytes received, seconds from the first byte, whether the time limit cut the body short)."""
    received = 0
    first: float | None = None
    start = time.monotonic()
    stream = request.stream().__aiter__()
    while received <= limits.max_bytes:
        left = start + limits.max_seconds - time.monotonic()
        if left <= 0:
            return received, time.monotonic() - (first or start), True
        try:
            async with asyncio.timeout(left):
                chunk = await stream.__anext__()
        except (StopAsyncIteration, TimeoutError):
            break
        except Exception:  # the client went away: what arrived is the answer, nobody will read it
            break
        if chunk and first is None:
            first = time.monotonic()
        received += len(chunk)
    return received, time.monotonic() - (first or start), False


class _RandomBody(Response):
    """A chunked stream of `size` bytes cut from `block`, paced by the network (each send waits for the socket),
    ended early after `max_seconds`; `release` runs however the transfer ends."""

    media_type = "application/octet-stream"

    def __init__(self, size: int, block: bytes, max_seconds: float, release) -> None:
        super().__init__(content=None, headers={"Cache-Control": "no-store"}, media_type=self.media_type)
        self.size = size
        self.block = memoryview(block)
        self.max_seconds = max_seconds
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            headers = [(k, v) for k, v in self.raw_headers if k.lower() != b"content-length"]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            end = time.monotonic() + self.max_seconds
            sent, offset = 0, 0
            while sent < self.size and time.monotonic() < end:
                n = min(_SPEED_PIECE, self.size - sent, len(self.block) - offset)
                await send({"type": "http.response.body", "body": bytes(self.block[offset:offset + n]),
                            "more_body": True})
                sent += n
                offset = (offset + n) % len(self.block)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away
        finally:
            self.release()


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing anything above `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestRefused("invalid Content-Length")
        if int(declared) > limit:
            raise RequestRefused(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRefused(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(raw: bytes) -> ControlRequest:
    if not raw.strip():
        raise RequestRefused("empty request body: expected a JSON control request")
    try:
        return msgspec.json.decode(raw, type=ControlRequest)
    except msgspec.ValidationError as exc:
        raise RequestRefused(f"invalid control request: {_one_line(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise RequestRefused(f"invalid JSON: {_one_line(str(exc))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(content=msgspec.json.encode({"error": message}), status_code=status, media_type=_JSON,
                    headers=headers)

"""The control helper's HTTP API: ``POST /`` (alias ``/web-connectivity``) and ``GET /health``.

Order of the gates, cheapest first: per-client rate limit (429), body size and shape (400), the safety checks
(400), then a measurement slot (503 when saturated beyond a short wait). The client's address is used only
in memory by the rate limiter: it is never logged and never stored.
"""

from __future__ import annotations

import asyncio
import logging
import math

import msgspec
from fastapi import FastAPI, Request, Response

from netvigil.control.measure import AsnLookup, measure_target, to_wire
from netvigil.control.policy import Policy, RateLimiter, RequestRefused, check_request
from netvigil.model.control import ControlRequest
from netvigil.probe.netx import TLSConfig

__all__ = ["make_app"]

log = logging.getLogger(__name__)

_JSON = "application/json"
_BACKSTOP = 5.0  # seconds past the measurement timeout before a request is abandoned


def make_app(policy: Policy, *, tls: TLSConfig | None = None, timeout: float = 10.0,
             asn_lookup: AsnLookup | None = None) -> FastAPI:
    """The ASGI app; `tls` is the trust store for the helper's own outbound TLS (default: the system's)."""
    tls = tls or TLSConfig()
    app = FastAPI(title="netvigil control helper", docs_url=None, redoc_url=None, openapi_url=None)
    limiter = RateLimiter(policy.rate_per_minute, policy.effective_burst)
    slots = asyncio.Semaphore(policy.max_concurrency)

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
        try:
            async with asyncio.timeout(policy.queue_wait):
                await slots.acquire()
        except TimeoutError:
            return _error(503, "busy: too many measurements in progress", {"Retry-After": "1"})
        try:
            async with asyncio.timeout(timeout + _BACKSTOP):
                result = await measure_target(target, policy, tls=tls, timeout=timeout, asn_lookup=asn_lookup)
        except TimeoutError:
            log.error("a measurement overran its budget by %.0f s", _BACKSTOP)
            return _error(503, "measurement timed out", {"Retry-After": "1"})
        finally:
            slots.release()
        return Response(content=msgspec.json.encode(to_wire(result)), media_type=_JSON)

    async def health() -> Response:
        return Response(content=b'{"status":"ok"}', media_type=_JSON)

    for path in ("/", "/web-connectivity"):
        app.add_api_route(path, web_connectivity, methods=["POST"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["GET"], include_in_schema=False)
    return app


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

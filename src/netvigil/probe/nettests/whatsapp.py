"""WhatsApp (ooni/spec ts-018): can the app connect, can new accounts register, does WhatsApp Web load?

Three groups of checks, all at once:

- **endpoints**: e1…e16.whatsapp.net on TCP 443 and 5222, what the app connects to. For each name and port the
  probe resolves the name and tries its addresses in order until one accepts (OONI Probe's `tcpconnect://`).
  The app works if any endpoint answers (`whatsapp_endpoints_status`); a name that failed on every port is
  listed in `whatsapp_endpoints_blocked`. `whatsapp_endpoints_dns_inconsistent` is always `[]` (a legacy key;
  the ASN of every answer is recorded instead when an ASN source is given).
- **registration**: one GET of https://v.whatsapp.net/v2/register; any HTTP response over validated TLS is
  success, whatever its status (`registration_server_status`/`_failure`).
- **web**: GET https://web.whatsapp.com/ (any response is success) and, per the spec, GET
  http://web.whatsapp.com/ without following redirects, which succeeds when it redirects to an https:// URL.
  `whatsapp_web_failure` is the HTTPS failure if there is one, else the HTTP one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urljoin

from netvigil.model.archival import WhatsAppTestKeys
from netvigil.model.failure import Failure
from netvigil.probe.nettests._messaging import Exchange, MessengerOptions, Run

__all__ = ["TEST_NAME", "TEST_VERSION", "ENDPOINTS", "WhatsAppOptions", "default_inputs", "measure", "test_helpers"]

TEST_NAME = "whatsapp"
TEST_VERSION = "0.11.0"  # OONI Probe's current version of this test (ts-018 spec 2020-07-09-001)
ENDPOINTS = tuple(f"e{i}.whatsapp.net" for i in range(1, 17))


@dataclass(frozen=True, slots=True)
class WhatsAppOptions(MessengerOptions):
    endpoints: tuple[str, ...] = ENDPOINTS
    endpoint_ports: tuple[int, ...] = (443, 5222)
    registration_url: str = "https://v.whatsapp.net/v2/register"
    web_https_url: str = "https://web.whatsapp.com/"
    web_http_url: str | None = "http://web.whatsapp.com/"  # None: skip the plain-HTTP check (as OONI Probe ≥ 0.10)


def test_helpers(opts: WhatsAppOptions) -> dict | None:
    return None


def default_inputs(opts: WhatsAppOptions) -> list[str | None]:
    return [None]


async def _endpoint(run: Run, name: str, port: int) -> str | None:
    addrs, failure = await run.resolve(name)
    if failure is not None:
        return failure
    return await run.tcp_any(addrs, port)


def _plain_http_failure(ex: Exchange, url: str) -> str | None:
    """ts-018: the plain-HTTP page must redirect to HTTPS."""
    if ex.failure is not None or ex.response is None:
        return ex.failure
    location = ex.response.header("location")
    if ex.response.status // 100 != 3 or not location:
        return Failure.HTTP_UNEXPECTED_STATUS.value
    if not urljoin(url, location.strip()).startswith("https://"):
        return f"{Failure.UNKNOWN.value}: redirect to a non-HTTPS location"
    return None


async def measure(input: str | None, opts: WhatsAppOptions) -> WhatsAppTestKeys:
    """Run every check; nothing is raised for the network's doing."""
    run = Run(opts)
    pairs = [(name, port) for name in opts.endpoints for port in opts.endpoint_ports]
    endpoint_tasks = [_endpoint(run, name, port) for name, port in pairs]
    web_http = run.exchange(opts.web_http_url) if opts.web_http_url else None
    results = await asyncio.gather(
        run.exchange(opts.registration_url), run.exchange(opts.web_https_url),
        *([web_http] if web_http is not None else []), *endpoint_tasks,
    )
    registration, web_https = results[0], results[1]
    plain = results[2] if web_http is not None else None
    endpoint_failures = results[3 if web_http is not None else 2:]

    failed_per_name: dict[str, int] = {}
    for (name, _port), failure in zip(pairs, endpoint_failures):
        if failure is not None:
            failed_per_name[name] = failed_per_name.get(name, 0) + 1
    blocked = [name for name in opts.endpoints if failed_per_name.get(name, 0) == len(opts.endpoint_ports)]
    any_ok = any(f is None for f in endpoint_failures)

    web_failure = web_https.failure
    if web_failure is None and plain is not None and opts.web_http_url:
        web_failure = _plain_http_failure(plain, opts.web_http_url)

    return WhatsAppTestKeys(
        agent="redirect",
        failure=None,
        **run.arrays(),
        registration_server_failure=registration.failure,
        registration_server_status="ok" if registration.failure is None else "blocked",
        whatsapp_endpoints_blocked=list(dict.fromkeys(blocked)),
        whatsapp_endpoints_dns_inconsistent=[],
        whatsapp_endpoints_status="ok" if any_ok else "blocked",
        whatsapp_web_failure=web_failure,
        whatsapp_web_status="ok" if web_failure is None else "blocked",
    )

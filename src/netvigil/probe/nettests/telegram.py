"""Telegram (ooni/spec ts-020): do the data centres answer, does Telegram Web load?

- **data centres**: for each access-point address the desktop client hardcodes, on TCP 80 and 443, a connect
  and then an HTTP `POST /` — plain HTTP on both ports, as OONI Probe does (`http://IP/`, `http://IP:443/`).
  `telegram_tcp_blocking` is true when every connect failed, `telegram_http_blocking` when no POST got an HTTP
  response. The client needs only one DC, so one answer is enough.
- **web**: one GET of https://web.telegram.org/; any response over validated TLS is `telegram_web_status` "ok"
  (since 2022-12-07 the spec no longer fetches http:// nor looks at the title).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from netvigil.model.archival import TelegramTestKeys
from netvigil.probe.nettests._messaging import MessengerOptions, Run, url_for

__all__ = ["TEST_NAME", "TEST_VERSION", "DATACENTERS", "TelegramOptions", "default_inputs", "measure",
           "test_helpers"]

TEST_NAME = "telegram"
TEST_VERSION = "0.3.0"
# ts-020's five access points, and 95.161.76.100, which OONI Probe also tests.
DATACENTERS = ("149.154.175.50", "149.154.167.51", "149.154.175.100", "149.154.167.91", "149.154.171.5",
               "95.161.76.100")


@dataclass(frozen=True, slots=True)
class TelegramOptions(MessengerOptions):
    datacenters: tuple[str, ...] = DATACENTERS
    datacenter_ports: tuple[int, ...] = (80, 443)
    web_url: str = "https://web.telegram.org/"


def test_helpers(opts: TelegramOptions) -> dict | None:
    return None


def default_inputs(opts: TelegramOptions) -> list[str | None]:
    return [None]


async def measure(input: str | None, opts: TelegramOptions) -> TelegramTestKeys:
    """Run every check; nothing is raised for the network's doing."""
    run = Run(opts)
    dc_urls = [url_for("http", ip, port) for ip in opts.datacenters for port in opts.datacenter_ports]
    web, *dcs = await asyncio.gather(run.exchange(opts.web_url),
                                     *(run.exchange(url, method="POST") for url in dc_urls))
    return TelegramTestKeys(
        agent="redirect",
        failure=None,
        **run.arrays(),
        telegram_tcp_blocking=not any(ex.connected for ex in dcs),
        telegram_http_blocking=not any(ex.response is not None for ex in dcs),
        telegram_web_failure=web.failure,
        telegram_web_status="ok" if web.failure is None else "blocked",
    )

"""Start every server of a spec in one event loop, say READY, and stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Callable

from netvigil.lab.servers.blockpage import start_blockpage
from netvigil.lab.servers.ca import make_ca
from netvigil.lab.servers.largefile import start_largefile
from netvigil.lab.servers.nameserver import start_dns
from netvigil.lab.servers.openvpn import start_openvpn
from netvigil.lab.servers.spec import ServersSpec
from netvigil.lab.servers.tlsecho import start_tls_echo
from netvigil.lab.servers.tor import start_tor
from netvigil.lab.servers.web import start_web
from netvigil.lab.servers.wireguard import start_wireguard

__all__ = ["close_all", "serve", "start_servers"]


CLOSE_TIMEOUT = 5.0


async def start_servers(spec: ServersSpec) -> list[object]:
    """Bind everything; on any failure close what was already bound and re-raise."""
    state = spec.state_path
    state.mkdir(parents=True, exist_ok=True)
    ca = await asyncio.to_thread(make_ca, spec.ca_path)
    cert_dir = state / "certs"
    handles: list[object] = []
    try:
        for d in spec.dns:
            handles += await start_dns(d, spec.zones)
        for w in spec.web:
            handles += await start_web(w, ca, cert_dir)
        for t in spec.tls_echo:
            handles += await start_tls_echo(t, ca, cert_dir)
        for tor in spec.tor:
            handles += await start_tor(tor, cert_dir)
        for lf in spec.largefile:
            handles += await start_largefile(lf, ca, cert_dir)
        for v in spec.vpn:
            if v.kind == "wireguard":
                handles += await start_wireguard(v, state)
            else:
                handles += await start_openvpn(v, state, ca)
        for b in spec.blockpage:
            handles += await start_blockpage(b, ca, cert_dir)
    except BaseException:
        await close_all(handles)
        raise
    return handles


async def close_all(handles: list[object]) -> None:
    for h in handles:
        h.close()  # type: ignore[attr-defined]
    servers = [h for h in handles if isinstance(h, asyncio.Server)]
    if servers:
        await asyncio.wait([asyncio.ensure_future(s.wait_closed()) for s in servers], timeout=CLOSE_TIMEOUT)


async def serve(spec: ServersSpec, on_ready: Callable[[], None]) -> None:
    """Run until SIGTERM or SIGINT; `on_ready` is called once every socket is bound."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handles = await start_servers(spec)
    try:
        on_ready()
        await stop.wait()
    finally:
        await close_all(handles)


def print_ready() -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()

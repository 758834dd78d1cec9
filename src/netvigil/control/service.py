"""Running the control helper's ASGI app with uvicorn on a socket the CLI already bound.

Kept apart from `control/cli.py` so that `netvigil` commands other than `control serve` never import uvicorn
or FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path
from typing import Callable, Iterator

import uvicorn

from netvigil.control.policy import Policy
from netvigil.control.server import make_app
from netvigil.probe.netx import TLSConfig

__all__ = ["serve_socket"]

EXIT_BIND = 1
_START_TIMEOUT = 30.0
_PROG = "netvigil control"


def serve_socket(sock: socket.socket, policy: Policy, *, tls: TLSConfig, timeout: float,
                 asn_lookup: Callable[[str], int | None] | None, server_tls: tuple[Path, Path] | None) -> int:
    """Serve until SIGTERM/SIGINT; print READY once listening. Returns the exit code."""
    config = uvicorn.Config(
        make_app(policy, tls=tls, timeout=timeout, asn_lookup=asn_lookup),
        http="h11", ws="none", lifespan="off", loop="asyncio",
        log_level="warning", access_log=False,   # access logs would record client addresses
        proxy_headers=False,                     # rate-limit the peer, not a header it can forge
        server_header=False, timeout_graceful_shutdown=5,
        ssl_certfile=str(server_tls[0]) if server_tls else None,
        ssl_keyfile=str(server_tls[1]) if server_tls else None,
    )
    return asyncio.run(_run(_Server(config), sock))


class _Server(uvicorn.Server):
    """uvicorn re-raises a caught SIGTERM after shutting down (death by signal); we want a clean exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


async def _run(server: _Server, sock: socket.socket) -> int:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    while not server.started and not task.done() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if not server.started:
        server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await task
        except BaseException as exc:  # noqa: BLE001 - reported as one line below
            print(f"{_PROG}: server did not start: {exc!r}", file=sys.stderr, flush=True)
        else:
            print(f"{_PROG}: server did not start", file=sys.stderr, flush=True)
        return EXIT_BIND
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await task
    return 0

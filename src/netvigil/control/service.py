"""Running the control helper's ASGI app with uvicorn on a socket the CLI already bound.

Kept apart from `control/cli.py` so that `netvigil` commands other than `control serve` never import uvicorn
or FastAPI.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Callable

from netvigil.control.policy import Policy
from netvigil.control.server import make_app
from netvigil.probe.netx import TLSConfig
from netvigil.serving import serve_asgi

__all__ = ["serve_socket"]


def serve_socket(sock: socket.socket, policy: Policy, *, tls: TLSConfig, timeout: float,
                 asn_lookup: Callable[[str], int | None] | None, server_tls: tuple[Path, Path] | None) -> int:
    """Serve until SIGTERM/SIGINT; print READY once listening. Returns the exit code."""
    app = make_app(policy, tls=tls, timeout=timeout, asn_lookup=asn_lookup)
    return asyncio.run(serve_asgi(app, sock, prog="netvigil control", server_tls=server_tls))

"""How netvigil's HTTP services (the control helper, the collector) listen and run, one way for both.

The CLI binds the socket itself, so a bad address is one line and exit 1 before anything starts, and `READY` on
stdout means "listening" (the lab and the tests wait for it). uvicorn runs with its access log and proxy headers
off: an access log would record client addresses, and a forwarded-for header is something a client can forge.
uvicorn is imported only when a service actually starts, so other commands stay fast. It parses HTTP with
httptools (llhttp, in C): against its pure-Python h11 parser that takes a third off each request's CPU, which is what
the collector's rate is bound by (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import sys
from functools import cache
from pathlib import Path
from typing import Any, Iterator

__all__ = ["EXIT_BIND", "bind_listener", "load_server_tls", "serve_asgi"]

EXIT_BIND = 1
START_TIMEOUT = 30.0


def bind_listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening, non-blocking socket; OSError if the address cannot be had."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def load_server_tls(cert: Path | None, key: Path | None) -> tuple[Path, Path] | None:
    """Check the certificate pair once, so a bad file is a one-line error (ValueError), not a server traceback."""
    if cert is None or key is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load --tls-cert/--tls-key: {getattr(exc, 'strerror', None) or exc}") from None
    return cert, key


@cache
def _quiet_server() -> type:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn re-raises a caught SIGTERM after shutting down (death by signal); a service stopped by
        SIGTERM or SIGINT should exit 0."""

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

    return QuietServer


async def serve_asgi(app: Any, sock: socket.socket, *, prog: str, server_tls: tuple[Path, Path] | None,
                     graceful: float = 5.0, ready: str = "READY") -> int:
    """Serve `app` on `sock` until SIGTERM/SIGINT; print `ready` once listening. Returns the exit code."""
    import uvicorn

    config = uvicorn.Config(
        app, http="httptools", ws="none", lifespan="off", loop="asyncio",
        log_level="warning", access_log=False, proxy_headers=False, server_header=False,
        timeout_graceful_shutdown=graceful,
        ssl_certfile=str(server_tls[0]) if server_tls else None,
        ssl_keyfile=str(server_tls[1]) if server_tls else None,
    )
    server = _quiet_server()(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not server.started and not task.done() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if not server.started:
        server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await task
        except BaseException as exc:  # noqa: BLE001 - reported as one line below
            print(f"{prog}: server did not start: {exc!r}", file=sys.stderr, flush=True)
        else:
            print(f"{prog}: server did not start", file=sys.stderr, flush=True)
        return EXIT_BIND
    sys.stdout.write(ready + "\n")
    sys.stdout.flush()
    await task
    return 0

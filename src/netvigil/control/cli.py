"""``netvigil control serve``: run the control helper (also ``python -m netvigil.control serve``).

Prints ``READY`` on stdout once the socket listens, runs until SIGTERM/SIGINT and exits 0.
Exit codes: 1 the socket cannot be bound; 2 bad flags or unusable certificate files.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from netvigil.control.asn import asn_lookup
from netvigil.control.policy import Policy
from netvigil.probe.netx import TLSConfig
from netvigil.serving import EXIT_BIND, bind_listener, load_server_tls

__all__ = ["app"]

EXIT_USAGE = 2
_PROG = "netvigil control"

app = typer.Typer(help="The Web Connectivity control helper: measures URLs from an uncensored vantage point.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _control() -> None:
    """The Web Connectivity control helper: measures URLs from an uncensored vantage point."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8080,
    tls_cert: Annotated[Optional[Path], typer.Option(help="Certificate chain (PEM): serve HTTPS.")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="Private key (PEM) of --tls-cert.")] = None,
    allow_net: Annotated[Optional[list[str]], typer.Option(
        help="Also measure addresses in this network (CIDR; repeatable). By default only globally routable "
             "addresses are contacted.")] = None,
    allow_port: Annotated[Optional[list[int]], typer.Option(
        help="Also measure URLs and endpoints on this TCP port (repeatable). By default only 80 and 443.")] = None,
    rate: Annotated[float, typer.Option(help="Requests per minute per client address (burst: a quarter).")] = 120.0,
    max_concurrency: Annotated[int, typer.Option(help="Measurements at once; beyond that, 503.")] = 64,
    share_seconds: Annotated[float, typer.Option(
        help="Also answer identical requests (same URL, endpoints, headers) from a measurement that ended at most "
             "this long ago. Identical requests in flight always share one measurement.")] = 0.0,
    ca_file: Annotated[Optional[Path], typer.Option(
        help="Trust store (PEM) for the helper's own outbound TLS. Default: the system's.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for one whole control measurement.")] = 10.0,
    asn_db: Annotated[Optional[list[Path]], typer.Option(
        help="MaxMind-format ASN database for ip_info (repeatable). Without one, ASNs are 0.")] = None,
    lab_ip_table: Annotated[Optional[Path], typer.Option(
        help="The lab's ip-table.json, for ip_info ASNs of lab addresses.")] = None,
) -> None:
    """Serve the control helper until SIGTERM or SIGINT."""
    try:
        if any(not 0 < p < 65536 for p in allow_port or ()):
            raise ValueError("--allow-port takes TCP port numbers (1-65535)")
        policy = Policy.from_cidrs(allow_net or [], rate_per_minute=rate, max_concurrency=max_concurrency,
                                   share_seconds=share_seconds,
                                   ports=frozenset({80, 443, *(allow_port or ())}))
        _check_flags(port, rate, max_concurrency, timeout, share_seconds, tls_cert, tls_key, ca_file)
        server_tls = load_server_tls(tls_cert, tls_key)
        asns = asn_lookup(mmdb=asn_db or [], lab_table=lab_ip_table)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    try:
        sock = bind_listener(host, port)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_BIND)
    from netvigil.control.service import serve_socket  # uvicorn and FastAPI load only for `serve`

    try:
        code = serve_socket(sock, policy, tls=TLSConfig(ca_file=str(ca_file) if ca_file else None),
                            timeout=timeout, asn_lookup=asns, server_tls=server_tls)
    except KeyboardInterrupt:  # SIGINT before our handlers were installed
        code = 0
    raise typer.Exit(code)


def _fail(message: str, code: int) -> NoReturn:
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _check_flags(port: int, rate: float, max_concurrency: int, timeout: float, share_seconds: float,
                 tls_cert: Path | None, tls_key: Path | None, ca_file: Path | None) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: not a TCP port")
    if rate <= 0:
        raise ValueError("--rate must be positive")
    if max_concurrency < 1:
        raise ValueError("--max-concurrency must be at least 1")
    if not 0 < timeout <= 300:
        raise ValueError("--timeout must be between 0 and 300 seconds")
    if not 0 <= share_seconds <= 60:
        raise ValueError("--share-seconds must be between 0 and 60")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--ca-file {ca_file}: {getattr(exc, 'strerror', None) or exc}") from None

"""``netvigil collector serve|worker`` (also ``python -m netvigil.collector``).

``serve`` prints ``READY <host>:<port>`` on stdout once the socket listens, runs until SIGTERM/SIGINT and exits 0.
``worker`` processes the log into the store until SIGTERM/SIGINT (or, with ``--once``, until the log has
nothing more). Exit codes: 1 the socket cannot be bound; 2 bad flags or unusable files; 5 the data
directory or the store cannot be used (locked by another process, unreadable).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from netvigil.config import data_dir as default_data_dir
from netvigil.config import default_fingerprints_dir, default_store_url
from netvigil.serving import EXIT_BIND, bind_listener, load_server_tls

__all__ = ["app"]

EXIT_USAGE = 2
EXIT_STORE = 5
_PROG = "netvigil collector"
TOKEN_ENV = "NETVIGIL_COLLECTOR_TOKEN"

app = typer.Typer(help="The measurement collector: probes submit here (OONI's collector protocol).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

DataDirOpt = Annotated[Path | None, typer.Option(
    help="Where the log, state and quarantine live. Default: <netvigil data dir>/collector.")]
StoreOpt = Annotated[str | None, typer.Option(
    help="Store URL or path (duckdb:///path). Default: $NETVIGIL_STORE or the data directory's store.")]
FingerprintsOpt = Annotated[Path | None, typer.Option(
    help="Directory with OONI fingerprint CSVs. Default: $NETVIGIL_FINGERPRINTS or the data directory's.")]


@app.callback()
def _collector() -> None:
    """The measurement collector: probes submit here (OONI's collector protocol)."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8090,
    tls_cert: Annotated[Path | None, typer.Option(help="Certificate chain (PEM): serve HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key (PEM) of --tls-cert.")] = None,
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
    token_file: Annotated[Path | None, typer.Option(
        help=f"File holding the bearer token of the read/admin API (or set ${TOKEN_ENV}). Without one, those "
             "endpoints are disabled.")] = None,
    secret_file: Annotated[Path | None, typer.Option(
        help="Secret that signs report ids; share it between collectors behind one load balancer. "
             "Default: <data dir>/secret, created on first start.")] = None,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", help="Do not judge and store here: a separate `collector worker` does.")] = False,
    fingerprints: FingerprintsOpt = None,
    rate_per_client: Annotated[float, typer.Option(
        help="Requests per minute per client address, bursts of a third of that (0: no limit).")] = 6000.0,
    rate_per_report: Annotated[float, typer.Option(
        help="Measurements per minute per report, bursts of a third of that (0: no limit).")] = 3000.0,
    report_ttl_hours: Annotated[float, typer.Option(help="Hours a report id stays valid after it was opened.")] = 168.0,
) -> None:
    """Accept measurements until SIGTERM or SIGINT."""
    from netvigil.collector.log import LogError, MeasurementLog
    from netvigil.collector.reportid import load_secret
    from netvigil.collector.server import Limits

    directory = data_dir or default_data_dir() / "collector"
    try:
        _check_flags(port, tls_cert, tls_key, rate_per_client, rate_per_report, report_ttl_hours)
        server_tls = load_server_tls(tls_cert, tls_key)
        token = _token(token_file)
        secret = load_secret(secret_file or directory / "secret")
    except (ValueError, OSError) as exc:
        _fail(_message(exc), EXIT_USAGE)
    if token is None:
        print(f"{_PROG}: warning: no token: the read and admin API is disabled", file=sys.stderr, flush=True)
    try:
        sock = bind_listener(host, port, backlog=2048)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_BIND)
    try:
        log_ = MeasurementLog.open(directory / "log")
    except (LogError, OSError) as exc:
        sock.close()
        _fail(f"cannot open the log in {directory}: {_message(exc)}", EXIT_STORE)
    in_process = st = None
    if not no_worker:
        try:
            in_process, st = _open_worker(directory, store, fingerprints)
        except (ValueError, OSError) as exc:
            log_.close_sync()
            sock.close()
            _fail(_message(exc), EXIT_STORE)
    from netvigil.collector.service import ServeConfig, serve_socket  # uvicorn and FastAPI load only here

    cfg = ServeConfig(
        data_dir=directory, store_url=store, secret=secret, token=token, server_tls=server_tls,
        limits=Limits(per_client_per_minute=rate_per_client, per_client_burst=max(1, int(rate_per_client / 3)),
                      per_report_per_minute=rate_per_report, per_report_burst=max(1, int(rate_per_report / 3))),
        report_ttl=timedelta(hours=report_ttl_hours), worker=in_process, store=st,
    )
    try:
        code = serve_socket(sock, log_, cfg)
    except KeyboardInterrupt:  # SIGINT before our handlers were installed
        code = 0
    raise typer.Exit(code)


@app.command()
def worker(
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
    fingerprints: FingerprintsOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Process what the log holds now, then exit.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the log when it has nothing new.")] = 0.25,
) -> None:
    """Judge logged measurements and write them to the store, until SIGTERM or SIGINT."""
    directory = data_dir or default_data_dir() / "collector"
    if not (directory / "log").is_dir():
        _fail(f"no collector log in {directory}: start `collector serve --data-dir {directory}` first", EXIT_USAGE)
    if not 0 < poll <= 60:
        _fail("--poll must be between 0 and 60 seconds", EXIT_USAGE)
    try:
        w, st = _open_worker(directory, store, fingerprints)
    except (ValueError, OSError) as exc:
        _fail(_message(exc), EXIT_STORE)
    try:
        if once:
            n = w.drain()
            print(f"processed {n} log records", flush=True)
        else:
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            print("READY", flush=True)
            w.run(stop, poll=poll)
    finally:
        w.close()
        st.close()


def _open_worker(directory: Path, store_url: str | None, fingerprints: Path | None):
    """The worker (holding its lock) and its store; ValueError with one line when either cannot be had."""
    from netvigil.collector.worker import Worker, WorkerBusy
    from netvigil.store import StoreError, open_store

    prints = _fingerprints(fingerprints)
    try:
        st = open_store(store_url or default_store_url())
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    try:
        return Worker(directory, st, prints), st
    except WorkerBusy as exc:
        st.close()
        raise ValueError(f"{exc}: stop it, or serve with --no-worker") from None
    except BaseException:
        st.close()
        raise


def _fingerprints(path: Path | None):
    from netvigil.analysis import FingerprintDB
    from netvigil.tasks.fingerprints import load_fingerprints

    directory = path or default_fingerprints_dir()
    try:
        return load_fingerprints(directory)
    except FileNotFoundError as exc:
        if path is not None:
            raise ValueError(str(exc)) from None
        print(f"{_PROG}: warning: no fingerprints in {directory}: verdicts cannot be confirmed", file=sys.stderr,
              flush=True)
        return FingerprintDB()


def _token(path: Path | None) -> str | None:
    if path is not None:
        text = path.read_text().strip()
        if not text:
            raise ValueError(f"--token-file {path} is empty")
        return text
    env = os.environ.get(TOKEN_ENV, "").strip()
    return env or None


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}"
    return str(exc)


def _fail(message: str, code: int) -> NoReturn:
    print(f"{_PROG}: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _check_flags(port: int, tls_cert: Path | None, tls_key: Path | None, per_client: float, per_report: float,
                 ttl_hours: float) -> None:
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: not a TCP port")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    if per_client < 0 or per_report < 0:
        raise ValueError("rates must be 0 (no limit) or positive")
    if not 2 <= ttl_hours <= 24 * 365:
        raise ValueError("--report-ttl-hours must be between 2 (bk-003's minimum) and 8760")

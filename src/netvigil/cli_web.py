"""`netvigil serve`: flags in, the dashboard (`netvigil.web.app.serve`) run until Ctrl-C or SIGTERM, its URL out.

Stdout gets one line, the dashboard's URL, once it listens (scripts wait for it); everything else goes to stderr.
Client addresses are never logged. Exit codes: 0 stopped by Ctrl-C/SIGTERM; 1 the address cannot be had; 2 bad
flags, an unknown country or an unreadable token file; 5 the store cannot be used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from netvigil.console import err

__all__ = ["TOKEN_ENV", "serve_command"]

TOKEN_ENV = "NETVIGIL_ADMIN_TOKEN"
EXIT_BIND = 1
EXIT_USAGE = 2
EXIT_STORE = 5


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True, highlight=False)
    return typer.Exit(code)


def _admin_token(path: Path | None) -> str | None:
    """The admin token from ``--admin-token-file`` (first line), else ``$NETVIGIL_ADMIN_TOKEN``, else None."""
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _fail(f"cannot read --admin-token-file {path}: {exc.strerror or exc}", EXIT_USAGE) from None
        if not token:
            raise _fail(f"--admin-token-file {path} is empty", EXIT_USAGE)
        if len(token) < 16:
            raise _fail("the admin token is shorter than 16 characters: use a long random one "
                        "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')", EXIT_USAGE)
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


SERVE_DUCKDB_MEMORY = "512MB"


def serve_command(
    store: Annotated[Optional[str], typer.Option("--store", help="Store path or URL (default: $NETVIGIL_STORE or the "
                                                 "data directory's store).")] = None,
    country: Annotated[Optional[str], typer.Option("--country", "-c", help="Country: ISO code (AZ) or name "
                                                   "(default: the store's most measured country).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free one).")] = 8080,
    admin_token_file: Annotated[Optional[Path], typer.Option(
        "--admin-token-file", help=f"File holding the admin token for POST /api/refresh and moderation (or set "
                                   f"${TOKEN_ENV}). Without one, both are refused.")] = None,
    economics: Annotated[Optional[Path], typer.Option("--economics", help="Directory of the cost model's inputs "
                                                      "(default: the data directory).")] = None,
    signals_dir: Annotated[Optional[Path], typer.Option("--signals-dir", help="Stored signals and imported outage "
                                                        "events (default: the data directory).")] = None,
    report_dir: Annotated[Optional[Path], typer.Option("--report-dir", help="A directory written by `netvigil "
                                                       "report`, served at /report/.")] = None,
) -> None:
    """Serve the dashboard and its API: overview, incidents, measurement explorer, charts; JSON and CSV under
    /api, documented at /docs and /openapi.json."""
    from netvigil.countries import alpha2
    from netvigil.store import MEMORY_ENV, StoreError, existing_store_file

    # A dashboard sorts all of a country's verdicts to build its publication: 64 MB is too little at 1M (docs/web.md).
    os.environ.setdefault(MEMORY_ENV, SERVE_DUCKDB_MEMORY)
    from netvigil.tasks.publish import PublishError
    from netvigil.tasks.signals import SignalsError
    from netvigil.web.app import AddressError, WebSettings, serve

    cc = None
    if country is not None:
        cc = alpha2(country)
        if cc is None:
            raise _fail(f"unknown country {country!r}: give an ISO 3166 code such as AZ, or a country name",
                        EXIT_USAGE)
    try:
        existing_store_file(store)
    except StoreError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if report_dir is not None and not report_dir.is_dir():
        raise _fail(f"--report-dir {report_dir} is not a directory", EXIT_USAGE)
    token = _admin_token(admin_token_file)
    settings = WebSettings(store=store, country=cc, admin_token=token, economics_dir=economics,
                           signals_dir=signals_dir, report_dir=report_dir)
    err.print(f"building the publication{' for ' + cc if cc else ''} from {store or 'the default store'} …")

    def ready(url: str) -> None:
        sys.stdout.write(url + "\n")
        sys.stdout.flush()
        refresh = "enabled (admin token set)" if token else f"disabled (no --admin-token-file or ${TOKEN_ENV})"
        err.print(f"[bold]dashboard[/] {url} — API at {url}docs; refresh {refresh}; serving until Ctrl-C")

    try:
        serve(settings, host, port, ready=ready)
    except PublishError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except (StoreError, SignalsError) as exc:
        raise _fail(str(exc), EXIT_STORE) from None
    except AddressError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_BIND) from None
    except OSError as exc:
        raise _fail(f"cannot read {exc.filename or ''}: {exc.strerror or exc}", EXIT_USAGE) from None
    except KeyboardInterrupt:
        pass

"""`netvigil report`: flags in, the publication built (`tasks.publish`) and written (`report.render`), the files and
counts out. Dates without a zone are read in the country's own time zone (the report's days are its days)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from netvigil.console import err, out, print_json, print_table

__all__ = ["report_command"]

EXIT_USAGE = 2
EXIT_STORE = 5
EXIT_WRITE = 1


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def _when(text: str | None, flag: str, tz: dt.tzinfo) -> dt.datetime | None:
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise _fail(f"{flag} {text!r} is not an ISO date or date-time (e.g. 2020-09-27 or 2020-09-27T14:00)",
                    EXIT_USAGE) from None
    return t.replace(tzinfo=tz) if t.tzinfo is None else t


def _duration(text: str | None) -> dt.timedelta | None:
    if text is None:
        return None
    from netvigil.cli_incidents import parse_duration

    try:
        return parse_duration(text)
    except typer.BadParameter as exc:
        raise _fail(f"--round {exc}", EXIT_USAGE) from None


def report_command(
    country: Annotated[str, typer.Option("--country", "-c", help="Country: ISO code (AZ) or name.")],
    since: Annotated[Optional[str], typer.Option("--from", "--since", help="From this date/time (default: the "
                                                 "first measurement; no zone given: the country's local time).")]
    = None,
    until: Annotated[Optional[str], typer.Option("--to", "--until", help="Until this date/time, exclusive (default: "
                                                 "after the last measurement).")] = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Store path or URL (default: $NETVIGIL_STORE or the "
                                                 "data directory).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the report files "
                                                    "(default: ./report-<CC>).")] = None,
    economics: Annotated[Optional[Path], typer.Option("--economics", help="Directory of the World Bank CSVs for "
                                                      "the cost ranges (default: the data directory).")] = None,
    signals_dir: Annotated[Optional[Path], typer.Option("--signals-dir", help="Stored signals and imported outage "
                                                        "events (default: the data directory).")] = None,
    services: Annotated[Optional[Path], typer.Option("--services", help="Service groups TOML (default: shipped).")]
    = None,
    round_: Annotated[Optional[str], typer.Option("--round", help="The probes' round, e.g. 1h or 8h (default: "
                                                  "inferred from the reports' spacing).")] = None,
    name: Annotated[str, typer.Option("--name", help="File name stem: <name>.html, <name>.md, ...")] = "report",
    json_out: Annotated[bool, typer.Option("--json", help="Print the files and counts as JSON.")] = False,
) -> None:
    """Write the country's report: a self-contained HTML file, Markdown with PNG/SVG charts, and the data as JSON."""
    from netvigil.countries import alpha2
    from netvigil.report.render import write_report
    from netvigil.report.zones import country_timezone, timezone_named
    from netvigil.store import StoreError, existing_store_file
    from netvigil.tasks.publish import PublishError, build_publication
    from netvigil.tasks.signals import SignalsError

    cc = alpha2(country)
    if cc is None:
        raise _fail(f"unknown country {country!r}: give an ISO 3166 code such as AZ, or a country name", EXIT_USAGE)
    tz = timezone_named(country_timezone(cc))
    t_since, t_until = _when(since, "--from", tz), _when(until, "--to", tz)
    if t_since is not None and t_until is not None and t_until <= t_since:
        raise _fail(f"--to {until} is not after --from {since}", EXIT_USAGE)
    step = _duration(round_)
    try:
        existing_store_file(store)
    except StoreError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    target = out_dir or Path(f"report-{cc}")
    started = time.perf_counter()
    try:
        pub = build_publication(store, cc, t_since, t_until, economics_dir=economics, signals_dir=signals_dir,
                                services_path=services, signal_step=step)
    except PublishError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except (StoreError, SignalsError) as exc:
        raise _fail(str(exc), EXIT_STORE) from None
    except OSError as exc:
        raise _fail(f"cannot read {exc.filename or ''}: {exc.strerror or exc}", EXIT_USAGE) from None
    built = time.perf_counter() - started
    try:
        files = write_report(pub, target, name=name)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise _fail(f"cannot write the report to {target}: {exc.strerror or exc}", EXIT_WRITE) from None
    total = time.perf_counter() - started
    paths = [files.html, files.markdown, *( [files.data] if files.data else []), *files.charts]
    counts = {
        "measurements": pub.measurements, "verdicts": pub.verdicts, "networks": len(pub.networks),
        "incidents": len(pub.incidents), "ongoing": sum(1 for i in pub.incidents if i.end is None),
        "timeline": len(pub.timeline), "matrix_cells": len(pub.matrix), "throughput_points": len(pub.throughput),
        "signals": len(pub.signals),
    }
    if json_out:
        print_json({
            "country": pub.country, "since": pub.since.isoformat(), "until": pub.until.isoformat(),
            "timezone": pub.notes.get("timezone"), **counts,
            "total_cost": None if pub.total_cost is None else
            {"low": pub.total_cost.low, "central": pub.total_cost.central, "high": pub.total_cost.high,
             "method": pub.total_cost.method},
            "cost_note": pub.notes.get("cost"),
            "files": {"html": str(files.html), "markdown": str(files.markdown),
                      "data": str(files.data) if files.data else None, "charts": [str(p) for p in files.charts]},
            "seconds": {"build": round(built, 2), "total": round(total, 2)},
        })
        return
    print_table(f"report for {pub.country}", ["file", "bytes"], [[str(p), f"{p.stat().st_size:,}"] for p in paths])
    out.print(", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in counts.items()))
    if pub.notes.get("cost"):
        err.print(f"[yellow]note:[/] {pub.notes['cost']}")
    if pub.notes.get("empty"):
        err.print(f"[yellow]note:[/] {pub.notes['empty']}")
    out.print(f"built in {built:.1f} s, written in {total - built:.1f} s")

"""`netvigil incidents` and `netvigil aggregates`: flags in, the incidents task called, tables/CSV/JSON out."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import typer

from netvigil.console import err, print_rows

__all__ = ["aggregates", "incidents"]

EXIT_USAGE = 2
EXIT_STORE = 5


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise typer.BadParameter(f"{text!r}: use a number and a unit, e.g. 30m, 6h, 1d")
    return dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def parse_when(text: str | None) -> dt.datetime | None:
    """A date or date-time (ISO 8601); naive means UTC."""
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO date or date-time (e.g. 2020-09-27 or 2020-09-27T14:00)")
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


def _filter(country, asn, service, kind, since, until):
    from netvigil.incidents.listing import IncidentFilter

    return IncidentFilter(country=country, asn=asn.upper() if asn else None, service=service, type=kind,
                          since=parse_when(since), until=parse_when(until))


StoreOpt = Annotated[Optional[str], typer.Option("--store", help="Store path or URL (default: NETVIGIL_STORE).")]
CountryOpt = Annotated[Optional[str], typer.Option("--country", "-c", help="Two-letter country code.")]
AsnOpt = Annotated[Optional[str], typer.Option("--asn", help="A network, e.g. AS64528.")]
ServiceOpt = Annotated[Optional[str], typer.Option("--service", help="A service group, e.g. facebook, telegram.")]
SinceOpt = Annotated[Optional[str], typer.Option("--from", "--since", help="From this date/time (UTC unless given).")]
UntilOpt = Annotated[Optional[str], typer.Option("--to", "--until", help="Until this date/time (exclusive).")]
ServicesFile = Annotated[Optional[Path], typer.Option("--services", help="Service groups TOML (default: shipped).")]


def incidents(
    store: StoreOpt = None,
    country: CountryOpt = None,
    asn: AsnOpt = None,
    service: ServiceOpt = None,
    kind: Annotated[Optional[str], typer.Option("--type", help="service-based, throttling or full-network.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: Annotated[Format, typer.Option("--format", help="table, csv or json.")] = Format.table,
    services: ServicesFile = None,
    round_: Annotated[str, typer.Option("--round", help="The probes' round: the probe-side outage signal's "
                                                         "step (e.g. 1h, 6h).")] = "1h",
    detector: Annotated[Optional[Path], typer.Option("--detector-config", help="Outage detector TOML.")] = None,
    signals_dir: Annotated[Optional[Path], typer.Option("--signals-dir", help="Stored signals and imported outage "
                                                                              "events (default: data dir).")] = None,
    no_signals: Annotated[bool, typer.Option("--no-stored-signals", help="Ignore stored signals/events.")] = False,
    min_measurements: Annotated[int, typer.Option(help="Evidence rule: verdicts needed for a change.")] = 3,
    min_share: Annotated[float, typer.Option(help="Evidence rule: their share of the window.")] = 0.6,
    min_reports: Annotated[int, typer.Option(help="Evidence rule: distinct reports among them.")] = 2,
    window: Annotated[int, typer.Option(help="Evidence rule: conclusive verdicts looked at together.")] = 4,
    merge_window: Annotated[str, typer.Option(help="Onsets this close on different networks are one event.")] = "12h",
    cost: Annotated[bool, typer.Option("--cost/--no-cost", help="Price each incident (needs World Bank data: "
                                                                  "`netvigil data update --economics`).")] = True,
    economics: Annotated[Optional[Path], typer.Option("--economics", help="Directory of the WDI CSVs.")] = None,
) -> None:
    """Blocking, throttling and outages as one dated incident list, overlapping incidents linked."""
    from netvigil.incidents.blocking import BlockingRule
    from netvigil.incidents.detect import IncidentParams
    from netvigil.store import StoreError
    from netvigil.tasks.incidents import MakeIncidentsParams, make_incidents
    from netvigil.tasks.signals import SignalsError, load_config

    try:
        f = _filter(country, asn, service, kind, since, until)
        if kind is not None and kind not in ("service-based", "throttling", "full-network"):
            raise typer.BadParameter(f"--type {kind!r}: choose service-based, throttling or full-network")
        rule = BlockingRule(min_measurements=min_measurements, min_share=min_share, min_reports=min_reports,
                            window=window)
        params = IncidentParams(blocking=rule, merge_window=parse_duration(merge_window))
        step = parse_duration(round_)
    except typer.BadParameter as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        run = make_incidents(MakeIncidentsParams(
            store=store, filter=f, services_path=services, params=params, signal_step=step,
            detector=load_config(detector) if detector else None, signals_dir=signals_dir,
            use_stored_signals=not no_signals))
    except (StoreError, SignalsError, OSError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_STORE) from None
    items = run.incidents
    if cost:
        items = _priced(items, economics)
    if fmt == Format.json:
        import sys

        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(items), indent=2) + b"\n")
        return
    columns = ["start", "end", "type", "scope", "country", "asns", "services", "methods", "confidence", "cost_usd",
               "id", "related"]
    rows = [[_t(i.start), _t(i.end) if i.end else "ongoing", i.type, i.scope, i.country or "", " ".join(i.asns),
             " ".join(i.services) or " ".join(i.regions), " ".join(i.methods), f"{i.confidence:.2f}",
             _cost_text(i), i.incident_id, " ".join(i.related)] for i in items]
    print_rows(columns, rows, fmt.value)
    if fmt == Format.table:
        err.print(f"{len(items)} incidents from {run.verdicts} verdicts on {run.networks} networks "
                  f"({run.episodes} blocking episodes, {len(run.outage_events)} probe-side outages, "
                  f"{run.stored_events} stored outage events)")


def _t(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _cost_text(i) -> str:
    if i.cost is None:
        return ""
    return f"{i.cost.low:,.0f}-{i.cost.high:,.0f}"


def _priced(items, economics: Path | None):
    """Incidents with a cost range where the World Bank inputs exist; a clear note (not a failure) otherwise."""
    from netvigil.tasks.economics import price_incident_list

    priced, note = price_incident_list(items, economics)
    if note:
        err.print(f"[yellow]note:[/] {note}")
    return priced


def aggregates(
    store: StoreOpt = None,
    country: CountryOpt = None,
    asn: AsnOpt = None,
    service: ServiceOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    bucket: Annotated[str, typer.Option("--bucket", help="hour or day.")] = "day",
    level: Annotated[str, typer.Option("--level", help="service or target.")] = "service",
    fmt: Annotated[Format, typer.Option("--format", help="table, csv or json.")] = Format.table,
    services: ServicesFile = None,
) -> None:
    """Verdict counts per bucket, country, network, service (or target) and method, with contributing reports."""
    from netvigil.store import StoreError
    from netvigil.tasks.incidents import make_aggregates

    if bucket not in ("hour", "day") or level not in ("service", "target"):
        err.print("[bold red]error:[/] --bucket is hour or day; --level is service or target")
        raise typer.Exit(EXIT_USAGE)
    try:
        f = _filter(country, asn, service, None, since, until)
        rows = make_aggregates(store, f, bucket=bucket, level=level, services_path=services)
    except typer.BadParameter as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except (StoreError, OSError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_STORE) from None
    dicts = [r.as_dict() for r in rows]
    columns = ["bucket", "probe_cc", "probe_asn", "key", "method", "total", "ok", "blocked", "throttled", "down",
               "inconclusive", "blocked_share", "reports", "regions"]
    print_rows(columns, [[d[c] if c != "regions" else " ".join(d[c]) for c in columns] for d in dicts], fmt.value)

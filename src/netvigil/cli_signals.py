"""`netvigil signals …`: import IODA / Cloudflare Radar outage data, detect outages in stored signals, list them.

Exit codes as in ``cli.py``: 2 usage error (bad option, bad config), 3 finished but some items were set aside,
4 an input file is missing.
"""

from __future__ import annotations

import datetime as dt
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer

from netvigil.console import err, out, print_json, print_rows, print_table

app = typer.Typer(help="Outage signals: import IODA and Cloudflare Radar data, detect outages, list them.",
                  no_args_is_help=True)

EXIT_USAGE = 2
EXIT_QUARANTINED = 3
EXIT_MISSING = 4


class Source(StrEnum):
    auto = "auto"
    ioda = "ioda"
    cloudflare = "cloudflare"


class Kind(StrEnum):
    events = "events"
    signals = "signals"
    incidents = "incidents"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


DirOpt = Annotated[Optional[Path], typer.Option("--dir", help="Signals directory. Default: the data directory's "
                                                "signals/ ($NETVIGIL_DATA_DIR).")]


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _t(t: dt.datetime | None) -> str:
    return "" if t is None else t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="IODA v2 JSON (signals/raw, outages/events, outages/alerts) "
                                                "or Cloudflare Radar annotations/outages JSON files.")],
    source: Annotated[Source, typer.Option(help="Whose format the files are in; auto tells them apart by shape.")]
    = Source.auto,
    country: Annotated[Optional[str], typer.Option(help="Country (ISO code) of the ASN and region entities in IODA "
                                                   "files, which IODA does not place in a country.")] = None,
    alerts_as_events: Annotated[bool, typer.Option("--alerts-as-events", help="Also turn IODA alerts into events "
                                                   "(a warning/critical alert opens one, the next normal closes it).")]
    = False,
    directory: DirOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import outage signals and events from IODA or Cloudflare Radar JSON (bad items are set aside with a reason)."""
    from netvigil.countries import alpha2
    from netvigil.tasks.signals import SignalsError, import_files

    if country is not None and alpha2(country) is None:
        raise _fail(f"unknown country {country!r}", EXIT_USAGE)
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise _fail("no such file: " + ", ".join(missing), EXIT_MISSING)
    try:
        summary = import_files(files, source.value, directory, country=country, alerts_as_events=alerts_as_events)
    except SignalsError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if json_out:
        print_json(summary.as_dict())
    else:
        print_table("signals import", ["file", "source", "signals", "events", "alerts", "set aside"],
                    [(f.path, f.source, f.signals, f.events, f.alerts, len(f.rejected)) for f in summary.files])
        for f in summary.files:
            for r in f.rejected[:20]:
                err.print(f"[yellow]set aside[/] {f.path} {r.where}: {r.reason}")
            if len(f.rejected) > 20:
                err.print(f"[yellow]… {len(f.rejected) - 20} more in rejected.jsonl[/]")
        out.print(f"stored: {summary.stored_signals} signals, {summary.stored_events} events")
    if summary.rejected:
        raise typer.Exit(EXIT_QUARANTINED)


@app.command("detect")
def detect(
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with detector settings "
                                                   "(see docs/signals.md).")] = None,
    directory: DirOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the events as JSON.")] = False,
) -> None:
    """Run the outage detector over every stored signal (its events replace the previous run's)."""
    from netvigil.tasks.signals import SignalsError, detect_stored, load_config

    if config is not None and not config.is_file():
        raise _fail(f"no such file: {config}", EXIT_MISSING)
    try:
        cfg = load_config(config)
        summary = detect_stored(directory, cfg)
    except SignalsError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if json_out:
        print_json({"signals": summary.signals, "replaced": summary.replaced,
                    "events": [orjson.loads(_enc(e)) for e in summary.events]})
        return
    print_table(f"outages detected in {summary.signals} signals",
                ["entity", "datasource", "start (UTC)", "end (UTC)", "score", "min ratio"],
                [(f"{e.entity_type}/{e.entity_code}", e.datasource, _t(e.start), _t(e.end) or "ongoing",
                  f"{e.score:g}", e.detail.get("min_ratio", "")) for e in summary.events])


def _enc(obj) -> bytes:
    import msgspec

    return msgspec.json.encode(obj)


@app.command("list")
def list_(
    kind: Annotated[Kind, typer.Option("--kind", help="What to list.")] = Kind.events,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    directory: DirOpt = None,
) -> None:
    """List stored outage events, signals, or the full-network incidents they make."""
    from netvigil.tasks.signals import SignalsError, load_events, load_outage_incidents, load_signals

    try:
        if kind is Kind.signals:
            rows = [(f"{s.entity_type}/{s.entity_code}", s.datasource, s.country or "",
                     _t(dt.datetime.fromtimestamp(s.start, dt.timezone.utc)),
                     _t(dt.datetime.fromtimestamp(s.until, dt.timezone.utc)), s.step, len(s.values),
                     sum(v is None for v in s.values)) for s in load_signals(directory)]
            print_rows(["entity", "datasource", "country", "from", "until", "step_s", "points", "missing"], rows,
                       fmt.value)
        elif kind is Kind.events:
            rows = [(e.source, f"{e.entity_type}/{e.entity_code}", e.country or "", e.datasource, _t(e.start),
                     _t(e.end) or "ongoing", round(e.score, 3), e.method) for e in load_events(directory)]
            print_rows(["source", "entity", "country", "datasource", "start", "end", "score", "method"], rows,
                       fmt.value)
        else:
            incidents = load_outage_incidents(directory)
            if fmt is Format.json:
                sys.stdout.write(_enc(incidents).decode() + "\n")
                return
            rows = [(i.incident_id, i.type, i.scope, i.country or "", " ".join(i.asns or i.regions), _t(i.start),
                     _t(i.end) or "ongoing", i.source, ",".join(i.methods)) for i in incidents]
            print_rows(["id", "type", "scope", "country", "networks", "start", "end", "source", "methods"], rows,
                       fmt.value)
    except SignalsError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None


@app.command("synth")
def synth(
    output: Annotated[Path, typer.Argument(help="Where to write the signal (IODA v2 signals/raw JSON).")],
    entity: Annotated[str, typer.Option(help="Entity as type/code: asn/AS64500, country/AZ, region/AZ/frontier.")]
    = "asn/AS64500",
    days: Annotated[float, typer.Option(min=1, max=366)] = 14.0,
    step: Annotated[int, typer.Option(min=60, max=86400, help="Seconds per round.")] = 600,
    amplitude: Annotated[float, typer.Option(min=0, max=0.95, help="Daily cycle, fraction of the level (above "
                                             "~0.1 detect with baseline = \"time-of-day\").")] = 0.05,
    noise: Annotated[float, typer.Option(min=0, max=1, help="Gaussian noise sd, fraction of the level.")] = 0.02,
    drop: Annotated[list[str], typer.Option(help="An injected drop START_ROUND:LENGTH:DEPTH (repeatable).")] = [],
    seed: Annotated[int, typer.Option()] = 0,
    datasource: Annotated[str, typer.Option()] = "synthetic",
) -> None:
    """Write a synthetic signal (daily cycle + noise + injected drops) for trying the detector."""
    from netvigil.incidents.external import ioda_signals_document
    from netvigil.incidents.synthetic import Drop, SyntheticSpec, generate

    etype, _, code = entity.partition("/")
    if etype not in ("asn", "country", "region") or not code:
        raise _fail(f"entity must be asn/…, country/… or region/…, not {entity!r}", EXIT_USAGE)
    drops = []
    for d in drop:
        try:
            s, n, depth = d.split(":")
            drops.append(Drop(start=int(s), length=int(n), depth=float(depth)))
        except ValueError as exc:
            raise _fail(f"--drop {d!r}: want START_ROUND:LENGTH:DEPTH ({exc})", EXIT_USAGE) from None
    try:
        spec = SyntheticSpec(entity_type=etype, entity_code=code, datasource=datasource, days=days, step=step,
                             amplitude=amplitude, noise=noise, drops=tuple(drops), seed=seed)
        signal = generate(spec)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    output.write_bytes(orjson.dumps(ioda_signals_document([signal])))
    out.print(f"wrote {len(signal.values)} rounds of {etype}/{code} to {output}")


if __name__ == "__main__":  # `python -m netvigil.cli_signals`, until `netvigil signals` is mounted in cli.py
    app()

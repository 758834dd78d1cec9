"""`netvigil tracker import|export|match` and `netvigil stats`: the STOP shutdown tracker from the command line.

Exit codes as in ``cli.py`` where they apply: 0 success; 2 usage error (also a file that does not exist or is not
a STOP/IODA table, or an unreadable incidents file); 3 imported, but some rows were quarantined; 4 the tracker
directory holds no records yet.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from netvigil.config import data_dir
from netvigil.console import err, out, print_json, print_table

__all__ = ["app", "stats", "tracker_dir"]

app = typer.Typer(help="Shutdown tracker: Access Now STOP (#KeepItOn) records, IODA's investigated outages, "
                       "STOP-format export and cross-matching.", no_args_is_help=True)

EXIT_USAGE = 2
EXIT_QUARANTINED = 3
EXIT_MISSING = 4

DirOpt = Annotated[Optional[Path], typer.Option("--dir", help="Tracker directory. Default: the data directory's "
                                                "tracker/ ($NETVIGIL_DATA_DIR/tracker).", file_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


class DaysRuleName(StrEnum):
    calendar = "calendar"
    elapsed = "elapsed"


class YearBy(StrEnum):
    report = "report"
    start = "start"


class ListWhat(StrEnum):
    none = "none"
    confirmed = "confirmed"
    unconfirmed = "unconfirmed"
    missing = "missing"


def tracker_dir(path: Path | None) -> Path:
    return path if path is not None else data_dir() / "tracker"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _read(paths: list[Path], sheet_year: int | None = None):
    from netvigil.tracker.readers import TrackerInputError, read_sources

    try:
        return read_sources(paths, sheet_year=sheet_year)
    except TrackerInputError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None


def _stop_records(directory: Path | None, files: list[Path] | None):
    """STOP records from files (read now) or from the tracker directory (imported before)."""
    if files:
        result = _read(files)
        if not result.stop:
            raise _fail("no STOP rows in " + ", ".join(str(f) for f in files), EXIT_USAGE)
        return result.stop, len(result.rejected)
    from netvigil.tracker.storage import load_stop

    d = tracker_dir(directory)
    records = load_stop(d)
    if not records:
        raise _fail(f"no STOP records in {d} (run `netvigil tracker import FILE…` or pass --file)", EXIT_MISSING)
    return records, 0


def _decode_incidents(path: Path):
    import msgspec

    from netvigil.model.incident import Incident

    try:
        return msgspec.json.decode(path.read_bytes(), type=list[Incident])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _fail(f"{path}: not a JSON array of incidents ({exc})", EXIT_USAGE) from None


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="STOP sheets (.csv, or the original .xlsx workbook) and IODA's "
                                                "investigated-outages CSV; the kind is read from each header.",
                                                exists=True, dir_okay=False, readable=True)],
    directory: DirOpt = None,
    sheet_year: Annotated[Optional[int], typer.Option("--sheet-year", min=1990, max=2100,
                                                      help="Report year of every sheet given (default: the year in "
                                                      "the file/sheet name, else each row's start date).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Normalise STOP sheets and IODA's investigated outages into the tracker directory (safe to run again)."""
    from netvigil.tracker.storage import save_import

    result = _read(paths, sheet_year)
    d = tracker_dir(directory)
    try:
        summary = save_import(d, result)
    except OSError as exc:
        raise _fail(f"cannot write the tracker directory {d}: {exc}", EXIT_USAGE) from None
    if json_out:
        print_json(summary.as_dict())
    else:
        print_table(f"tracker import -> {d}", ["source", "kind", "report year", "rows", "records", "quarantined",
                                              "cells set aside"],
                    [(s.source, s.format, s.sheet_year or "per row", s.rows, s.records, s.rejected, s.issues)
                     for s in summary.sources])
        rows = [("added", summary.added), ("updated", summary.updated), ("unchanged", summary.unchanged),
                ("removed (no longer in the source)", summary.removed), ("quarantined rows", summary.quarantined),
                *((f"  · {reason}", n) for reason, n in summary.quarantine_reasons.most_common()),
                ("cells set aside (row kept)", sum(summary.cell_issues.values())),
                *((f"  · {reason}", n) for reason, n in summary.cell_issues.most_common()),
                ("STOP records in the tracker", summary.stop_total),
                ("outage events in the tracker", summary.outages_total)]
        print_table(None, ["", "count"], rows)
        for sheet, why in summary.skipped_sheets:
            out.print(f"skipped sheet {sheet}: {why}")
        if summary.quarantined:
            out.print(f"quarantined rows: {d / 'quarantine.jsonl'}")
    if summary.quarantined:
        raise typer.Exit(EXIT_QUARANTINED)


@app.command("export")
def export(
    incidents: Annotated[Optional[Path], typer.Option("--incidents", help="JSON array of netvigil incidents.",
                                                      exists=True, dir_okay=False, readable=True)] = None,
    from_tracker: Annotated[bool, typer.Option("--from-tracker", help="Export the imported STOP records instead "
                                               "(older sheets converted to the 2021–22 columns).")] = False,
    year: Annotated[Optional[int], typer.Option("--year", help="With --from-tracker: one report year.")] = None,
    directory: DirOpt = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="CSV file to write (default: standard output).",
                                                     dir_okay=False)] = None,
) -> None:
    """Write a STOP-format CSV (the 2021–22 sheet's 45 columns, in order) from detected incidents."""
    from netvigil.tracker.export import incidents_to_stop, write_stop_csv

    if (incidents is None) == (not from_tracker):
        raise _fail("give --incidents FILE.json or --from-tracker (one of them)", EXIT_USAGE)
    if incidents is not None:
        records = incidents_to_stop(_decode_incidents(incidents))
    else:
        records, _ = _stop_records(directory, None)
        if year is not None:
            records = [r for r in records if r.year == year]
    if out_path is None:
        write_stop_csv(records, sys.stdout)
        return
    try:
        with out_path.open("w", newline="", encoding="utf-8") as fh:
            n = write_stop_csv(records, fh)
    except OSError as exc:
        raise _fail(f"cannot write {out_path}: {exc}", EXIT_USAGE) from None
    err.print(f"wrote {n} STOP rows to {out_path}")


@app.command("match")
def match(
    directory: DirOpt = None,
    stop_files: Annotated[Optional[list[Path]], typer.Option("--stop", help="STOP sheets to read instead of the "
                                                             "tracker's records (repeatable).", exists=True,
                                                             dir_okay=False)] = None,
    outages: Annotated[Optional[list[Path]], typer.Option("--outages", help="Outage events: IODA's investigated CSV "
                                                          "or a JSON array of OutageEvent (repeatable). Default: "
                                                          "the tracker's imported IODA events.", exists=True,
                                                          dir_okay=False)] = None,
    incidents: Annotated[Optional[Path], typer.Option("--incidents", help="JSON array of detected incidents to "
                                                      "match as well (which are missing from STOP?).", exists=True,
                                                      dir_okay=False)] = None,
    years: Annotated[Optional[list[int]], typer.Option("--year", help="Report years of the STOP rows to compare "
                                                       "(repeatable; default: all).")] = None,
    before_start: Annotated[int, typer.Option(min=0, help="Days an event may start before the STOP start.")] = 1,
    after_start: Annotated[int, typer.Option(min=0, help="Days an event may start after the STOP start.")] = 2,
    after_end: Annotated[int, typer.Option(min=0, help="Days after a STOP end date an event may still start.")] = 1,
    span: Annotated[bool, typer.Option("--span/--no-span", help="Also match events starting anywhere between "
                                       "start and end of STOP rows that have an end date.")] = True,
    list_what: Annotated[ListWhat, typer.Option("--list", help="Also list these rows/events.")] = ListWhat.none,
    json_out: JsonOpt = False,
) -> None:
    """Which STOP rows an outage event confirms, and which events (or detected incidents) STOP lacks."""
    import msgspec

    from netvigil.model.signal import OutageEvent
    from netvigil.tracker.match import MatchParams, from_incidents, from_outages, match_stop

    records, _ = _stop_records(directory, stop_files)
    if years:
        records = [r for r in records if r.year in set(years)]
        if not records:
            raise _fail("no STOP rows of the years " + ", ".join(map(str, years)), EXIT_MISSING)
    events: list[OutageEvent] = []
    if outages:
        for path in outages:
            if path.suffix.lower() == ".json":
                try:
                    events += msgspec.json.decode(path.read_bytes(), type=list[OutageEvent])
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise _fail(f"{path}: not a JSON array of outage events ({exc})", EXIT_USAGE) from None
            else:
                events += _read([path]).outages
    else:
        from netvigil.tracker.storage import load_outages

        events = load_outages(tracker_dir(directory))
    candidates = from_outages(events)
    if incidents is not None:
        candidates += from_incidents(_decode_incidents(incidents))
    if not candidates:
        raise _fail("no outage events to match (import IODA's list, or pass --outages/--incidents)", EXIT_MISSING)
    params = MatchParams(before_start=before_start, after_start=after_start, after_end=after_end, use_span=span)
    result = match_stop(records, candidates, params)
    if json_out:
        print_json(result.as_dict())
        return
    d = result.as_dict()
    out.print(params.describe())
    print_table(f"STOP × events, {d['period'][0]} – {d['period'][1]}", ["", "count"], [
        ("STOP rows compared", d["stop_rows"]), ("  confirmed by ≥ 1 event", d["stop_confirmed"]),
        ("  not confirmed", d["stop_unconfirmed"]), ("  without an ISO country (not matchable)",
                                                     d["stop_without_country_code"]),
        ("events", d["events"]), ("  outside the period", d["events_outside_period"]),
        ("  matching ≥ 1 STOP row", d["events_matched"]), ("  missing from STOP", d["events_missing_from_stop"]),
        ("matched pairs", len(result.pairs)),
        ("first / last event start", " / ".join(d["events_first_last"] or ("-", "-"))),
    ])
    print_table("by report year", ["year", "STOP rows", "confirmed"],
                [(y, v["rows"], v["confirmed"]) for y, v in d["by_year"].items()])
    print_table("by kind of STOP row", ["kind", "STOP rows", "confirmed"],
                [(k, v["rows"], v["confirmed"]) for k, v in d["by_kind"].items()])
    print_table("events missing from STOP, by cause / type", ["cause", "events"],
                list(result.missing_by_category.items()))
    if list_what is not ListWhat.none:
        _list_match(list_what, records, candidates, result)


def _list_match(what: ListWhat, records, candidates, result) -> None:
    by_id = {r.record_id: r for r in records}
    by_key = {c.key: c for c in candidates}
    partners: dict[str, list[str]] = {}
    for s, c in result.pairs:
        partners.setdefault(s, []).append(c)
    if what is ListWhat.missing:
        print_table("events missing from STOP", ["event", "country", "start", "end", "what", "cause"],
                    [(k, by_key[k].country, by_key[k].start.isoformat(), by_key[k].end and by_key[k].end.isoformat(),
                      by_key[k].label, by_key[k].category) for k in result.missing])
        return
    ids = result.confirmed if what is ListWhat.confirmed else result.unconfirmed
    print_table(f"STOP rows {what.value}", ["record", "year", "country", "start", "end", "area", "events"],
                [(i, by_id[i].year, by_id[i].country_key, by_id[i].start_date, by_id[i].end_date or by_id[i].end_status,
                  by_id[i].area_name[:40], ", ".join(partners.get(i, []))) for i in ids])


def stats(
    year: Annotated[int, typer.Option("--year", help="The year (report year of the STOP sheet, see --by).")],
    country: Annotated[Optional[str], typer.Option("--country", help="One country: ISO code or name.")] = None,
    directory: DirOpt = None,
    files: Annotated[Optional[list[Path]], typer.Option("--file", help="Read these STOP sheets instead of the "
                                                        "tracker directory (repeatable).", exists=True,
                                                        dir_okay=False)] = None,
    by: Annotated[YearBy, typer.Option("--by", help="report: rows of the year's sheet (Access Now's totals); "
                                       "start: rows whose start date is in the year (rows repeated in several "
                                       "yearly sheets then count once per sheet).")] = YearBy.report,
    days_rule: Annotated[DaysRuleName, typer.Option("--days", help="Counting rule for days of disruption: "
                                                    "calendar (inclusive days, clipped to the year) or elapsed "
                                                    "(end − start, whole length).")] = DaysRuleName.calendar,
    json_out: JsonOpt = False,
) -> None:
    """Yearly shutdown statistics from STOP records: count, countries, days of disruption and breakdowns."""
    from netvigil.tracker.stats import DAYS_RULES, year_stats

    records, rejected = _stop_records(directory, files)
    s = year_stats(records, year, country=country, by=by.value, rule=DAYS_RULES[days_rule.value])
    if json_out:
        d = s.as_dict()
        d["rows_quarantined_while_reading"] = rejected
        print_json(d)
        return
    if not s.shutdowns:
        err.print(f"[yellow]warning:[/] no STOP rows for {year}" + (f" and {country}" if country else ""))
    title = f"STOP {year}" + (f" · {country}" if country else "") + \
        (" (rows of the year's sheet)" if by is YearBy.report else " (rows starting in the year)")
    print_table(title, ["", "value"], [
        ("shutdowns", s.shutdowns), ("countries", s.countries), ("days of disruption", s.days),
        ("  rule", s.days_rule.describe()),
        *((f"  under {rid}", n) for rid, n in s.days_by_rule.items() if rid != s.days_rule.rule_id),
        ("  distinct days with ≥ 1 shutdown", s.days_union),
        ("ended (end date given)", s.ended), ("still ongoing", f"{s.ongoing} (counted to 31 Dec)"
                                              if s.days_rule.ongoing == "year-end" else f"{s.ongoing} (0 days)"),
        ("without a known end", f"{s.unknown_end} (" + ("start day only" if s.days_rule.unknown_end == "start-day"
                                                       else "0 days") + ")"),
        ("started before the year", s.started_before),
        *((("rows quarantined while reading", rejected),) if rejected else ()),
    ])
    rows = []
    for name, counts in (("type", s.by_type), ("extent", s.by_extent), ("scope", s.by_scope),
                         ("network", s.by_network), ("service", s.by_service)):
        for i, (label, n) in enumerate(counts.items()):
            rows.append((name if i == 0 else "", label, n))
    print_table("breakdown", ["by", "", "shutdowns"], rows)
    if not country:
        print_table("countries", ["country", "", "shutdowns"], [(k, name, n) for k, name, n in s.country_counts])


if __name__ == "__main__":  # `python -m netvigil.cli_tracker`, until `netvigil tracker` is mounted in cli.py
    app()

"""The ``netvigil`` command: parses flags and calls the stages in ``tasks``.

Exit codes: 0 success; 2 usage error; 3 finished, but some records were
quarantined; 4 an input path or data file is missing; 5 the store cannot be
used; 6 a download failed; 7 the lab cannot run; 8 some measurements failed
because of the probe itself; 9 an upload left measurements in the spool.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from netvigil import __version__
from netvigil.analysis import FingerprintDB
from netvigil.cli_cost import cost as cost_command
from netvigil.cli_demo import demo_command
from netvigil.cli_incidents import aggregates, incidents
from netvigil.cli_lab import app as lab_app
from netvigil.cli_reachability import reachability
from netvigil.cli_report import report_command
from netvigil.cli_signals import app as signals_app
from netvigil.cli_tracker import app as tracker_app
from netvigil.cli_tracker import stats as stats_command
from netvigil.cli_web import serve_command
from netvigil.cli_probe import app as probe_app
from netvigil.cli_store import app as store_app
from netvigil.collector.cli import app as collector_app
from netvigil.control.cli import app as control_app
from netvigil.config import data_dir, default_fingerprints_dir, default_store_url
from netvigil.console import err, out, print_json, print_rows, print_table

app = typer.Typer(
    name="netvigil",
    help="Internet-disruption observatory: measure, judge and document censorship and shutdowns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Reference data (blockpage fingerprints).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(lab_app, name="lab")
app.add_typer(probe_app, name="probe")
app.add_typer(control_app, name="control")
app.add_typer(collector_app, name="collector")
app.add_typer(store_app, name="store")
app.command("incidents")(incidents)
app.command("aggregates")(aggregates)
app.command("cost")(cost_command)
app.add_typer(tracker_app, name="tracker")
app.command("stats")(stats_command)
app.add_typer(signals_app, name="signals")
app.command("reachability")(reachability)
app.command("report")(report_command)
app.command("serve")(serve_command)
app.command("demo")(demo_command)

EXIT_QUARANTINED = 3
EXIT_MISSING = 4
EXIT_STORE = 5
EXIT_DOWNLOAD = 6

StoreOpt = Annotated[Optional[str], typer.Option("--store", help="Store URL or path (a .duckdb file, duckdb:///path, "
                                                 "clickhouse://user:pass@host:8123/db, chdb:///dir). Default: "
                                                 "$NETVIGIL_STORE or the data directory.")]
FingerprintsOpt = Annotated[Optional[Path], typer.Option("--fingerprints", help="Directory with OONI fingerprint "
                                                         "CSVs. Default: $NETVIGIL_FINGERPRINTS or the data directory.")]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class AnalyzeFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


class ExportFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


class Bucket(StrEnum):
    hour = "hour"
    day = "day"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _fingerprints(path: Path | None) -> FingerprintDB:
    from netvigil.tasks.fingerprints import load_fingerprints

    directory = path or default_fingerprints_dir()
    try:
        return load_fingerprints(directory)
    except FileNotFoundError as exc:
        if path is not None:
            raise _fail(str(exc), EXIT_MISSING) from None
        err.print(f"[yellow]warning:[/] no fingerprints in {directory}: verdicts cannot be confirmed "
                  "(run `netvigil data update` or pass --fingerprints DIR)")
        return FingerprintDB()


def _open_store(url: str | None):
    from netvigil.store import StoreError, open_store

    try:
        return open_store(url or default_store_url())
    except StoreError as exc:
        raise _fail(str(exc), EXIT_STORE) from None


def _check_paths(paths: list[Path]) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise _fail("no such file or directory: " + ", ".join(missing), EXIT_MISSING)


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files (.json, .jsonl, .jsonl.gz) or directories (OONI raw-bucket layout).")],
    store: StoreOpt = None,
    fingerprints: FingerprintsOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=20_000, help="Measurements judged per batch (memory grows with it).")] = 500,
) -> None:
    """Import OONI-format measurements, judge them and store everything."""
    from netvigil.store import StoreError
    from netvigil.tasks.importing import MakeImportParams, make_import
    from netvigil.tasks.reader import InputError

    _check_paths(paths)
    fps = _fingerprints(fingerprints)
    with _open_store(store) as st:
        quarantine_dir = _quarantine_dir(store)
        progress = Progress(
            TextColumn("[bold]importing"), BarColumn(bar_width=None, pulse_style="cyan"),
            TextColumn("{task.completed:,.0f} records"), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), console=err, transient=True, disable=json_out or not err.is_terminal,
        )
        with progress:
            task = progress.add_task("import", total=None, rate="")

            def on_progress(records: int, nbytes: int) -> None:
                elapsed = progress.tasks[0].elapsed or 1e-9
                progress.update(task, completed=records,
                                rate=f"{records / elapsed:,.0f}/s · {nbytes / elapsed / 1e6:,.1f} MB/s")

            try:
                summary = make_import(MakeImportParams(
                    paths=paths, store=st, fingerprints=fps, quarantine_dir=quarantine_dir,
                    batch_size=batch_size, on_progress=on_progress,
                ))
            except InputError as exc:
                raise _fail(str(exc), EXIT_MISSING) from None
            except StoreError as exc:
                raise _fail(str(exc), EXIT_STORE) from None
    if json_out:
        print_json(summary.as_dict())
    else:
        rate = f"{summary.records / summary.seconds:,.0f}/s" if summary.seconds else "-"
        rows = [
            ("files", summary.files), ("records read", summary.records),
            ("imported", summary.imported), ("already stored (skipped)", summary.duplicates),
            ("quarantined", summary.quarantined),
            *((f"  · {reason}", n) for reason, n in sorted(summary.quarantine_reasons.items())),
            ("observations", summary.observations), ("verdicts", summary.verdicts),
            *((f"  · {outcome}", n) for outcome, n in sorted(summary.outcomes.items())),
            ("time", f"{summary.seconds:.2f} s ({rate})"),
        ]
        print_table(f"import {summary.run_id}", ["", "count"], rows)
        if summary.quarantine_file:
            out.print(f"quarantined records: {summary.quarantine_file}")
    if summary.quarantined:
        raise typer.Exit(EXIT_QUARANTINED)


def _quarantine_dir(store: str | None) -> Path:
    """Quarantine files live next to the store file (in the data directory for an in-memory store)."""
    from netvigil.store import store_file

    path = store_file(store or default_store_url())
    return (path.parent if path is not None else data_dir()) / "quarantine"


@app.command()
def analyze(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories of OONI-format measurements.")],
    fmt: Annotated[AnalyzeFormat, typer.Option("--format", help="Output format.")] = AnalyzeFormat.table,
    fingerprints: FingerprintsOpt = None,
) -> None:
    """Print verdicts for measurements without storing anything."""
    from netvigil.tasks.analyzing import MakeAnalysisParams, make_analysis
    from netvigil.tasks.reader import InputError

    _check_paths(paths)
    params = MakeAnalysisParams(paths=paths, fingerprints=_fingerprints(fingerprints))
    try:
        rows = make_analysis(params)
        if fmt is AnalyzeFormat.jsonl:
            import sys

            for row in rows:
                sys.stdout.write(orjson.dumps(row.as_dict()).decode() + "\n")
        elif fmt is AnalyzeFormat.json:
            print_json([row.as_dict() for row in rows])
        else:
            cols = ["source:line", "test", "target", "outcome", "method", "conf", "fingerprint", "rule"]
            print_table(None, cols, (
                (f"{Path(r.source).name}:{r.line}", r.verdict.test_name, r.verdict.target, r.verdict.outcome,
                 r.verdict.method or "", f"{r.verdict.confidence:.2f}",
                 r.verdict.fingerprint or "", r.verdict.rule_ids[0] if r.verdict.rule_ids else "")
                for r in rows
            ))
    except InputError as exc:
        raise _fail(str(exc), EXIT_MISSING) from None
    if params.bad:
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(params.bad.items()))
        err.print(f"[yellow]not measurements:[/] {summary}")
        for path, line, reason, detail in params.bad_records[:20]:
            err.print(f"  {path}:{line}: {reason}" + (f" ({detail})" if detail else ""))
        raise typer.Exit(EXIT_QUARANTINED)


@app.command()
def query(
    by: Annotated[str, typer.Option("--by", help="Comma-separated columns: probe_cc, probe_asn, target, domain, "
                                    "test_name, outcome, method, confirmed, fingerprint.")] = "outcome",
    bucket: Annotated[Optional[Bucket], typer.Option("--bucket", help="Time bucket over measurement start time.")] = None,
    where: Annotated[list[str], typer.Option("--where", help="Filter column=value (value1,value2 for several); repeatable.")] = [],  # noqa: B006
    since: Annotated[Optional[str], typer.Option(help="Measurements from this UTC time (inclusive).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Measurements before this UTC time (exclusive).")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    store: StoreOpt = None,
) -> None:
    """Count verdicts grouped by columns (and an hour/day bucket)."""
    from netvigil.store import parse_verdict_query

    try:
        q = parse_verdict_query(by, bucket.value if bucket else None, where, since, until)
    except ValueError as exc:
        raise _fail(f"--{exc}", 2) from None
    with _open_store(store) as st:
        result = st.query_verdicts(q)
    print_rows(result.columns, result.rows, fmt.value)


@app.command()
def export(
    table: Annotated[str, typer.Argument(help="measurements | observations | verdicts")],
    path: Annotated[Path, typer.Argument(help="Output file.")],
    fmt: Annotated[Optional[ExportFormat], typer.Option("--format", help="Default: from the file suffix.")] = None,
    store: StoreOpt = None,
) -> None:
    """Write a table to Parquet or CSV."""
    from netvigil.store import EXPORT_TABLES, StoreError

    if table not in EXPORT_TABLES:
        raise _fail(f"unknown table {table!r}; choose from {', '.join(EXPORT_TABLES)}", 2)
    chosen = fmt.value if fmt else ("csv" if path.suffix.lower() == ".csv" else "parquet")
    with _open_store(store) as st:
        try:
            st.export(table, path, chosen)
        except StoreError as exc:
            raise _fail(str(exc), EXIT_STORE) from None
    out.print(f"wrote {table} to {path} ({chosen})")


@app.command()
def status(store: StoreOpt = None, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Row counts and schema version of the store."""
    with _open_store(store) as st:
        stats = st.stats()
    if json_out:
        print_json(stats)
    else:
        tables = stats.pop("tables", {})
        rows = [*sorted(stats.items()), *((f"rows in {name}", count) for name, count in sorted(tables.items()))]
        print_table("store", ["", "value"], rows)


@data_app.command("update")
def data_update(
    dest: Annotated[Optional[Path], typer.Option(help="Directory for the fingerprint CSVs.")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="Where to download from (default: ooni/blocking-fingerprints).")] = None,
    test_lists: Annotated[Optional[str], typer.Option("--test-lists", help="Also fetch Citizen Lab test lists: "
                                                      "global plus these country codes (az,ru).")] = None,
    test_lists_url: Annotated[Optional[str], typer.Option(help="Where to fetch test lists from (default: "
                                                          "citizenlab/test-lists).")] = None,
    economics: Annotated[bool, typer.Option("--economics", help="Also fetch the World Bank / ITU inputs of the "
                                                                "cost model (GDP, population, users, subscriptions).")] = False,
) -> None:
    """Download OONI's blocking fingerprints (DNS and HTTP CSVs) and, if asked, test lists and economic inputs."""
    from netvigil.probe.inputs import TEST_LISTS_BASE_URL, default_lists_dir, fetch_test_lists
    from netvigil.tasks.data import FINGERPRINTS_BASE_URL, DataUpdateError, MakeDataUpdateParams, make_data_update

    target = dest or default_fingerprints_dir()
    try:
        counts = make_data_update(MakeDataUpdateParams(dest=target, base_url=base_url or FINGERPRINTS_BASE_URL))
        for name, rows in counts.items():
            out.print(f"{target / name}: {rows} fingerprints")
        if test_lists is not None:
            lists_dir = default_lists_dir()
            ccs = [c.strip().lower() for c in test_lists.split(",") if c.strip()]
            for name, rows in fetch_test_lists(lists_dir, ccs, base_url=test_lists_url or TEST_LISTS_BASE_URL).items():
                out.print(f"{lists_dir / name}: {rows} rows")
        if economics:
            from netvigil.tasks.economics import default_economics_dir, fetch_economics

            eco = default_economics_dir()
            for name, rows in fetch_economics(eco).items():
                out.print(f"{eco / name}: {rows} rows")
    except DataUpdateError as exc:
        raise _fail(str(exc), EXIT_DOWNLOAD) from None


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False) -> None:
    if version:
        out.print(f"netvigil {__version__}")
        raise typer.Exit(0)


def main() -> None:
    app()

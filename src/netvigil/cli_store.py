"""`netvigil store …`: move a store between backends, and the DDL of the ClickHouse layout.

Exit codes as in ``cli.py``: 2 usage error, 5 the store cannot be used.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from netvigil.console import err, print_json, print_table

app = typer.Typer(help="Store maintenance: copy a store into another backend, print ClickHouse DDL.",
                  no_args_is_help=True)

EXIT_USAGE = 2
EXIT_STORE = 5


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.command("copy")
def copy(
    source: Annotated[str, typer.Argument(help="Store to read (a .duckdb file, duckdb://, clickhouse://, chdb://).")],
    destination: Annotated[str, typer.Argument(help="Store to write (created on first use).")],
    batch_size: Annotated[int, typer.Option(min=1, max=20_000, help="Measurements per batch (memory grows with it).")] = 500,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Copy every measurement, observation and verdict the destination lacks (safe to run again)."""
    from netvigil.store import StoreError, open_store
    from netvigil.store.copy import CopySummary, copy_store

    if source == destination:
        raise _fail("source and destination are the same store", EXIT_USAGE)
    try:
        with open_store(source, read_only=True) as src, open_store(destination) as dst:
            progress = Progress(TextColumn("[bold]copying"), TextColumn("{task.completed:,.0f} measurements"),
                                TimeElapsedColumn(), console=err, transient=True,
                                disable=json_out or not err.is_terminal)
            with progress:
                task = progress.add_task("copy", total=None)

                def on_progress(s: CopySummary) -> None:
                    progress.update(task, completed=s.measurements)

                summary = copy_store(src, dst, batch_size=batch_size, on_progress=on_progress)
    except StoreError as exc:
        raise _fail(str(exc), EXIT_STORE) from None
    if json_out:
        print_json(summary.as_dict())
    else:
        print_table(f"store copy {source} -> {destination}", ["", "count"], [
            ("measurements read", summary.measurements), ("copied", summary.copied),
            ("already there (skipped)", summary.skipped), ("observations", summary.observations),
            ("verdicts", summary.verdicts), ("time", f"{summary.seconds:.2f} s"),
        ])


@app.command("ddl")
def ddl(
    database: Annotated[str, typer.Option(help="Database name.")] = "netvigil",
    cluster: Annotated[Optional[str], typer.Option(help="Cluster name: replicated tables behind Distributed ones.")] = None,
) -> None:
    """Print the ClickHouse statements that create a store (single node, or a cluster's layout)."""
    from netvigil.store.clickhouse_schema import schema_statements

    try:
        statements = schema_statements(database, cluster=cluster)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    sys.stdout.write(";\n\n".join(statements) + ";\n")


if __name__ == "__main__":  # `python -m netvigil.cli_store`, until `netvigil store` is mounted in cli.py
    app()

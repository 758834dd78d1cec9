"""Terminal and machine output for the CLI (rich tables, CSV, JSON)."""

from __future__ import annotations

import csv
import sys
from typing import Any, Iterable, Sequence

import orjson
from rich.console import Console
from rich.table import Table

__all__ = ["out", "err", "print_table", "print_rows", "print_json"]

out = Console()
err = Console(stderr=True)


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in columns:
        # Short columns keep their header's width; long values (URLs, paths, rule ids) fold.
        table.add_column(col, overflow="fold", min_width=min(len(col), 12))
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    """Rows as a table, CSV or a JSON array of objects."""
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    elif fmt == "json":
        print_json([dict(zip(columns, row)) for row in rows])
    else:
        print_table(None, columns, rows)

"""Reading tracker sources from disk: STOP sheets as CSV or the original workbook (.xlsx), and IODA's
investigated-outages CSV. Which table a sheet is comes from its header, never from the file name.

The file or sheet name gives the report year when it holds exactly one year ("stop_2019.csv", sheet "2019"); the
2016–2018 sheet carries a year column instead; anything else falls back to each row's start date (see
``StopRecord.year_from``). Rows are numbered as in a spreadsheet (the header is row 1), so a quarantined row can be
found in the original.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from netvigil.model.signal import OutageEvent
from netvigil.tracker.ioda import IODA_FORMAT, is_ioda_header, normalise_ioda_row
from netvigil.tracker.stop import Rejected, StopRecord, detect_format, normalise_row, record_key, stable_id

__all__ = ["ReadResult", "SourceSummary", "TrackerInputError", "read_sources", "sheet_year_from_name"]

_DATE_HEADERS = {"start_date", "end_date", "begin time", "end time"}


class TrackerInputError(Exception):
    """A file that cannot be read as a tracker source at all (missing, not CSV/xlsx, no known header)."""


@dataclass
class SourceSummary:
    source: str
    format: str
    rows: int = 0
    records: int = 0
    rejected: int = 0
    blank_rows: int = 0
    issues: int = 0
    sheet_year: int | None = None


@dataclass
class ReadResult:
    stop: list[StopRecord] = field(default_factory=list)
    outages: list[OutageEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    sources: list[SourceSummary] = field(default_factory=list)
    skipped_sheets: list[tuple[str, str]] = field(default_factory=list)   # (source, why)

    def reasons(self) -> Counter[str]:
        return Counter(_reason_kind(r.reason) for r in self.rejected)

    def issue_kinds(self) -> Counter[str]:
        return Counter(_reason_kind(i) for rec in self.stop for i in rec.issues)


def _reason_kind(text: str) -> str:
    """A reason without its quoted value, for counting ("country 'X' has no ISO code" -> "country … has no …")."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d{4}-\d{2}-\d{2}", "…", text)


def sheet_year_from_name(name: str) -> int | None:
    """The one year (1990–2099) a file or sheet name holds; None for none or several ("stop_2016_2018")."""
    years = set(re.findall(r"(?<!\d)((?:19|20)\d{2})(?!\d)", name))
    return int(years.pop()) if len(years) == 1 else None


@dataclass
class _Sheet:
    name: str                      # source label: file name, or "file.xlsx:sheet"
    header: list[str]
    rows: list[tuple[int, list[str]]]   # (spreadsheet row number, cells)


def _read_csv(path: Path) -> Iterator[_Sheet]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise TrackerInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise TrackerInputError(f"{path}: not readable as CSV ({exc})") from None
    if not table:
        raise TrackerInputError(f"{path}: empty file")
    yield _Sheet(path.name, [h.strip() for h in table[0]], [(i + 2, r) for i, r in enumerate(table[1:])])


def _cell_text(value: object, date_column: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        if date_column and 0 < value < 2958466:   # an Excel serial date in a cell not formatted as a date
            from openpyxl.utils.datetime import from_excel

            return _cell_text(from_excel(value), date_column)
        return str(int(value)) if float(value).is_integer() else repr(value)
    return str(value)


def _read_xlsx(path: Path) -> Iterator[_Sheet]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and its own errors for a damaged workbook
        raise TrackerInputError(f"{path}: not readable as an xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        for ws in wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            header: list[str] | None = None
            body: list[tuple[int, list[str]]] = []
            date_cols: set[int] = set()
            for n, values in enumerate(rows, start=1):
                if header is None:
                    if values is None or all(v is None or str(v).strip() == "" for v in values):
                        continue
                    header = ["" if v is None else str(v).strip() for v in values]
                    date_cols = {i for i, h in enumerate(header) if h.lower() in _DATE_HEADERS}
                    continue
                body.append((n, [_cell_text(v, i in date_cols) for i, v in enumerate(values or ())]))
            if header is not None:
                yield _Sheet(f"{path.name}:{ws.title}", header, body)
    finally:
        wb.close()


def _sheets(path: Path) -> Iterator[_Sheet]:
    if not path.exists():
        raise TrackerInputError(f"{path}: no such file")
    if path.is_dir():
        raise TrackerInputError(f"{path}: is a directory (give the CSV or xlsx files)")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        yield from _read_xlsx(path)
    elif suffix in (".csv", ".txt", ""):
        yield from _read_csv(path)
    else:
        raise TrackerInputError(f"{path}: unknown file type {suffix!r} (expected .csv or .xlsx)")


def _row_dict(header: list[str], cells: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, value in enumerate(cells):
        name = header[i] if i < len(header) else ""
        if not name:
            if value and value.strip():
                out[f"column_{i + 1}"] = value   # a value under no header: kept, named by position
            continue
        out[name] = value
    return out


def read_sources(paths: list[Path], *, sheet_year: int | None = None) -> ReadResult:
    """Read every sheet of every file. Raises TrackerInputError before reading anything if a path is unusable.

    ``sheet_year`` overrides the report year taken from file/sheet names (not a sheet's own year column).
    """
    for path in paths:
        if not path.exists():
            raise TrackerInputError(f"{path}: no such file")
    result = ReadResult()
    for path in paths:
        recognised = 0
        for sheet in _sheets(path):
            fmt = detect_format(sheet.header)
            ioda = fmt is None and is_ioda_header(sheet.header)
            if fmt is None and not ioda:
                result.skipped_sheets.append((sheet.name, "header is neither a STOP sheet nor IODA's list"))
                continue
            recognised += 1
            file_part, _, sheet_part = sheet.name.partition(":")
            year = sheet_year or sheet_year_from_name(sheet_part) or sheet_year_from_name(Path(file_part).stem)
            summary = SourceSummary(sheet.name, IODA_FORMAT if ioda else str(fmt), sheet_year=year)
            result.sources.append(summary)
            seen: Counter[str] = Counter()
            for row_no, cells in sheet.rows:
                if all(not c or not str(c).strip() for c in cells):
                    summary.blank_rows += 1
                    continue
                summary.rows += 1
                cells_by_name = _row_dict(sheet.header, cells)
                if ioda:
                    item = normalise_ioda_row(cells_by_name, source=sheet.name, row=row_no)
                else:
                    item = normalise_row(str(fmt), cells_by_name, source=sheet.name, row=row_no, sheet_year=year)
                if isinstance(item, Rejected):
                    summary.rejected += 1
                    result.rejected.append(item)
                elif isinstance(item, StopRecord):
                    key = record_key(item)
                    item.record_id = stable_id(key, seen[key])
                    seen[key] += 1
                    summary.records += 1
                    summary.issues += len(item.issues)
                    result.stop.append(item)
                else:
                    rid = item.detail["record_id"]
                    if seen[rid]:
                        item.detail["record_id"] = f"{rid}#{seen[rid]}"
                        item.detail["duplicate_of_id"] = rid
                    seen[rid] += 1
                    summary.records += 1
                    result.outages.append(item)
        if not recognised:
            raise TrackerInputError(
                f"{path}: no sheet with a STOP header (start_date, shutdown_extent/shutdown_type_new/"
                "shutdown_type_group, …) or IODA's (Begin time, End time, Country)")
    return result

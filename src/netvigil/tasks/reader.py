"""Read measurement records from files and OONI-bucket-like directory trees.

Streaming: a ``.jsonl.gz`` is read line by line through gzip, never whole, so
memory stays flat however large the input. Every record carries where it came
from (path, line) so a quarantined record can be found again.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["RawRecord", "iter_records", "iter_input_files", "InputError", "MAX_RECORD_BYTES"]

# A single measurement larger than this is not a measurement we can judge
# (OONI's collector caps submissions far below it).
MAX_RECORD_BYTES = 64 * 1024 * 1024

_RECORD_SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".yaml", ".yml", ".yaml.gz")


class InputError(Exception):
    """A path the user gave cannot be read at all (missing, not a file or directory)."""


@dataclass(slots=True)
class RawRecord:
    path: str
    line: int
    data: bytes
    error: str | None = None  # set when the bytes could not be read (e.g. a corrupt gzip)


def iter_input_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files to read: given files as they are, directories walked in sorted order.

    A directory laid out like OONI's raw bucket (``raw/YYYYMMDD/HH/CC/test/*.jsonl.gz``)
    is just a tree of such files; sorted order makes runs reproducible.
    """
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith(_RECORD_SUFFIXES):
                        yield Path(root) / name
        elif path.is_file():
            yield path
        else:
            raise InputError(f"{path}: no such file or directory")


def iter_records(path: Path) -> Iterator[RawRecord]:
    """Records in one file: one per line for JSONL, one per file otherwise."""
    name = path.name.lower()
    spath = str(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        yield from _iter_lines(path, spath, gz=name.endswith(".gz"))
        return
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read(MAX_RECORD_BYTES + 1)
        else:
            with path.open("rb") as fh:
                data = fh.read(MAX_RECORD_BYTES + 1)
    except (OSError, EOFError) as exc:
        yield RawRecord(spath, 1, b"", error=f"unreadable: {exc}")
        return
    if len(data) > MAX_RECORD_BYTES:
        yield RawRecord(spath, 1, data[:4096], error="too_large")
        return
    yield RawRecord(spath, 1, data)


def _iter_lines(path: Path, spath: str, *, gz: bool) -> Iterator[RawRecord]:
    line_no = 0
    try:
        with gzip.open(path, "rb") if gz else path.open("rb", buffering=1 << 20) as fh:
            for line in fh:
                line_no += 1
                if len(line) > MAX_RECORD_BYTES:
                    yield RawRecord(spath, line_no, line[:4096], error="too_large")
                    continue
                if not line.isspace():  # (not line.strip(): that copies every line)
                    yield RawRecord(spath, line_no, line)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield RawRecord(spath, line_no + 1, b"", error=f"unreadable: {exc}")

"""Records -> NDJSON staging rows, with no database driver.

Backends load the staged lines with their own JSON readers (DuckDB's
``read_json``; ClickHouse's ``JSONEachRow``), which parse in native code
without the GIL. msgspec encodes the structs in C, and ``bytes`` fields (the
compressed raw measurement) become base64, decoded again by the backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import zstandard

from netvigil.model.measurement import Measurement
from netvigil.store.schema import ENVELOPE_COLUMNS

__all__ = ["compress_raw", "stage_measurements", "STAGED_MEASUREMENT_COLUMNS"]


# The measurements-table columns Python knows, named by the schema (the backend
# adds import run, import time and codec). Rows are plain dicts: one definition
# of the table, in ``schema.py``.
_ENVELOPE_SCALARS = tuple(c for c in ENVELOPE_COLUMNS if c != "input")
_envelope_values = attrgetter(*_ENVELOPE_SCALARS)
STAGED_MEASUREMENT_COLUMNS = ("uid", "raw", "input", *_ENVELOPE_SCALARS, "source_path", "source_line")


def compress_raw(ms: Sequence[Measurement], compressor: zstandard.ZstdCompressor) -> list[bytes]:
    """Each measurement's raw bytes as one zstd frame (with content size, so it decompresses alone).

    One call for the whole batch: zstd releases the GIL once, not once per
    measurement (per-item calls made a writer thread queue for the GIL
    behind the importing thread hundreds of times per batch).
    """
    if not ms:
        return []
    frames = compressor.multi_compress_to_buffer([m.raw for m in ms], threads=0)
    return [frame.tobytes() for frame in frames]


def stage_measurements(ms: Sequence[Measurement], raws: Sequence[bytes]) -> list[dict[str, Any]]:
    rows = []
    for m, raw in zip(ms, raws, strict=True):
        row = dict(zip(_ENVELOPE_SCALARS, _envelope_values(m.envelope)))
        row["uid"], row["raw"], row["input"] = m.uid, raw, m.input
        if m.source is not None:
            row["source_path"], row["source_line"] = m.source.path, m.source.line
        rows.append(row)
    return rows

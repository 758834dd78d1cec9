"""Records -> NDJSON staging rows, with no database driver.

Backends load the staged lines with their own JSON readers (DuckDB's
``read_json``; ClickHouse's ``JSONEachRow``), which parse in native code
without the GIL. msgspec encodes the structs in C, and ``bytes`` fields (the
compressed raw measurement) become base64, decoded again by the backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import zstandard

from netvigil.model.measurement import Measurement

__all__ = ["StagedMeasurement", "compress_raw", "stage_measurements", "STAGED_MEASUREMENT_COLUMNS"]


class StagedMeasurement(msgspec.Struct, omit_defaults=True, gc=False):
    """The measurements-table columns Python knows (the backend adds import time and codec)."""

    uid: str
    raw: bytes
    input: str | None = None
    report_id: str | None = None
    test_name: str | None = None
    test_version: str | None = None
    probe_cc: str | None = None
    probe_asn: str | None = None
    probe_network_name: str | None = None
    resolver_asn: str | None = None
    software_name: str | None = None
    software_version: str | None = None
    measurement_start_time: str | None = None
    source_path: str | None = None
    source_line: int | None = None


STAGED_MEASUREMENT_COLUMNS = StagedMeasurement.__struct_fields__


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


def stage_measurements(ms: Sequence[Measurement], raws: Sequence[bytes]) -> list[StagedMeasurement]:
    rows = []
    for m, raw in zip(ms, raws, strict=True):
        env = m.envelope
        src = m.source
        rows.append(StagedMeasurement(
            uid=m.uid, raw=raw, input=m.input, report_id=env.report_id, test_name=env.test_name,
            test_version=env.test_version, probe_cc=env.probe_cc, probe_asn=env.probe_asn,
            probe_network_name=env.probe_network_name, resolver_asn=env.resolver_asn,
            software_name=env.software_name, software_version=env.software_version,
            measurement_start_time=env.measurement_start_time,
            source_path=src.path if src is not None else None, source_line=src.line if src is not None else None,
        ))
    return rows

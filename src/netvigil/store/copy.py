"""``netvigil store copy``: move a store into another (a DuckDB file into ClickHouse, or back).

The three tables are read side by side, each sorted by measurement uid (the
raw bytes are not sorted along: they are fetched per batch, by uid), and
merged into batches of ``batch_size`` measurements with their observations and
verdicts; each batch goes through the destination's own bulk writer. So memory
holds one batch (plus the writer's group), the destination's rules for writing
apply unchanged (uid dedup, types, raw encoding), and a copy that is stopped
and run again writes only what is still missing.

What the destination cannot take over: ``imported_at`` becomes the time of the
copy (``import_run_id`` is kept), and the raw bytes are stored in the
destination's own encoding (``get_raw`` returns the same bytes from both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import zstandard

from netvigil.model.archival import MeasurementEnvelope
from netvigil.model.measurement import Measurement, SourceRef
from netvigil.model.observation import Observation
from netvigil.model.verdict import Verdict
from netvigil.store.base import Store, StoreBatch, StoreError
from netvigil.store.schema import ENVELOPE_COLUMNS, MEASUREMENTS, OBSERVATIONS, RAW_CODEC, VERDICTS

__all__ = ["CopySummary", "copy_store"]

_OONI_TIME = "%Y-%m-%d %H:%M:%S"
# What a Measurement is rebuilt from, but its raw bytes (fetched per batch); imported_at is the destination's.
_MEASUREMENT_COLUMNS = tuple(c for c in MEASUREMENTS.column_names if c not in ("imported_at", "raw", "raw_codec"))


@dataclass(slots=True)
class CopySummary:
    measurements: int = 0  # read from the source
    copied: int = 0  # new in the destination
    skipped: int = 0  # already there
    observations: int = 0
    verdicts: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"measurements": self.measurements, "copied": self.copied, "skipped": self.skipped,
                "observations": self.observations, "verdicts": self.verdicts, "seconds": round(self.seconds, 3)}


def copy_store(
    source: Store,
    destination: Store,
    *,
    batch_size: int = 500,
    on_progress: Callable[[CopySummary], None] | None = None,
) -> CopySummary:
    """Copy every measurement of ``source`` (with its observations and verdicts) that ``destination`` lacks."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    summary = CopySummary()
    started = time.monotonic()
    writer = destination.bulk_writer()
    try:
        with _sorted_rows(source) as (measurements, observations, verdicts):
            obs_rows = _Lookahead(observations)
            verdict_rows = _Lookahead(verdicts)
            for page in _pages(measurements, batch_size):
                last = page[-1]["uid"]
                page_obs = obs_rows.take_through(last)
                page_verdicts = verdict_rows.take_through(last)
                summary.measurements += len(page)
                known = destination.known_uids([r["uid"] for r in page])
                new = [r for r in page if r["uid"] not in known]
                summary.skipped += len(page) - len(new)
                if new:
                    uids = {r["uid"] for r in new}
                    raws = _raws(source, sorted(uids))
                    for r in new:
                        r["raw"] = raws[r["uid"]]
                    obs = [_observation(r) for r in page_obs if r["measurement_uid"] in uids]
                    ver = [_verdict(r) for r in page_verdicts if r["measurement_uid"] in uids]
                    # One batch per import run, so each keeps its run id.
                    runs: dict[str | None, list[dict]] = {}
                    for r in new:
                        runs.setdefault(r["import_run_id"], []).append(r)
                    for run_id, rows in runs.items():
                        ms = [_measurement(r) for r in rows]
                        mine = {m.uid for m in ms}
                        writer.add(writer.prepare(StoreBatch(
                            ms, [o for o in obs if o.measurement_uid in mine],
                            [v for v in ver if v.measurement_uid in mine], import_run_id=run_id,
                        )))
                if on_progress is not None:
                    on_progress(summary)
    except BaseException:
        with suppress(Exception):
            writer.close()  # what was added is stored; a run again writes the rest
        raise
    totals = writer.close()
    summary.copied = totals.new
    summary.skipped += totals.skipped
    summary.observations, summary.verdicts = totals.observations, totals.verdicts
    summary.seconds = time.monotonic() - started
    return summary


# -- reading a source, table by table, sorted by measurement uid -----------------------


@contextmanager
def _sorted_rows(source: Store) -> Iterator[tuple[Iterator[dict], Iterator[dict], Iterator[dict]]]:
    orders = (
        (MEASUREMENTS.name, _MEASUREMENT_COLUMNS, ("uid",)),
        (OBSERVATIONS.name, OBSERVATIONS.column_names, ("measurement_uid", "observation_id")),
        (VERDICTS.name, VERDICTS.column_names, ("measurement_uid", "verdict_id")),
    )
    with ExitStack() as stack:
        streams = [stack.enter_context(_iter_rows(source, *o)) for o in orders]
        yield streams[0], streams[1], streams[2]


@contextmanager
def _iter_rows(source: Store, table: str, columns: Sequence[str], order_by: Sequence[str]) -> Iterator[Iterator[dict]]:
    """Rows as dicts with ``raw`` as the original bytes, whichever backend ``source`` is."""
    from netvigil.store.clickhouse import ClickHouseStore
    from netvigil.store.duckdb import DuckDBStore

    if isinstance(source, ClickHouseStore):
        with source.iter_rows(table, columns, order_by) as rows:
            yield rows
    elif isinstance(source, DuckDBStore):
        # A cursor of its own per table: DuckDB streams one result per connection.
        cursor = source._con.cursor()
        try:
            cursor.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(order_by)}")
            yield _duckdb_rows(cursor, list(columns))
        finally:
            cursor.close()
    else:
        raise StoreError(f"cannot copy from {type(source).__name__}")


def _duckdb_rows(cursor: Any, columns: list[str], chunk: int = 256) -> Iterator[dict]:
    while rows := cursor.fetchmany(chunk):
        for values in rows:
            yield dict(zip(columns, values))


def _raws(source: Store, uids: list[str]) -> dict[str, bytes]:
    """The original bytes of these measurements, by uid."""
    from netvigil.store.clickhouse import ClickHouseStore

    if isinstance(source, ClickHouseStore):
        return source.raws(uids)
    cursor = source._con.cursor()  # type: ignore[attr-defined]
    try:
        rows = cursor.execute("SELECT uid, raw_codec, raw FROM measurements "
                              "WHERE uid IN (SELECT unnest($uids::VARCHAR[]))", {"uids": uids}).fetchall()
    finally:
        cursor.close()
    decompressor = zstandard.ZstdDecompressor()
    out = {}
    for uid, codec, blob in rows:
        if codec == RAW_CODEC:
            out[uid] = decompressor.decompress(blob)
        elif codec in (None, "", "identity"):
            out[uid] = bytes(blob)
        else:
            raise StoreError(f"measurement {uid}: unknown raw codec {codec!r}")
    return out


def _pages(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    page: list[dict] = []
    for row in rows:
        page.append(row)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


class _Lookahead:
    """One sorted stream of rows, handed out up to a uid at a time."""

    def __init__(self, rows: Iterator[dict]) -> None:
        self._rows = rows
        self._next: dict | None = next(rows, None)

    def take_through(self, uid: str) -> list[dict]:
        """Rows whose measurement uid sorts at or before ``uid`` (orphans included: the writer drops them)."""
        out = []
        while self._next is not None and self._next["measurement_uid"] <= uid:
            out.append(self._next)
            self._next = next(self._rows, None)
        return out


# -- rows -> records --------------------------------------------------------------------------


def _ooni_time(value: datetime | None) -> str | None:
    return value.strftime(_OONI_TIME) if value is not None else None


def _measurement(row: dict) -> Measurement:
    envelope = MeasurementEnvelope(**{c: row[c] for c in ENVELOPE_COLUMNS if c != "measurement_start_time"},
                                   measurement_start_time=_ooni_time(row["measurement_start_time"]))
    source = None
    if row["source_path"] is not None:
        source = SourceRef(path=row["source_path"], line=row["source_line"] or 0)
    return Measurement(uid=row["uid"], envelope=envelope, test_keys=None, raw=row["raw"], source=source)


def _observation(row: dict) -> Observation:
    return Observation(**row)


def _verdict(row: dict) -> Verdict:
    return Verdict(**{**row, "measurement_start_time": _ooni_time(row["measurement_start_time"])})

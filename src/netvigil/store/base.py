"""The store interface: what the importer, analysis tasks and web layer may ask of a backend.

Backends (DuckDB embedded now, ClickHouse at scale later) implement :class:`Store`;
nothing outside ``netvigil.store`` imports a database driver. The contract is small
on purpose: idempotent batch writes keyed on the measurement uid, a uid lookup so
the importer can skip analysis of what is stored, one aggregate over verdicts,
table export, and the raw bytes back as evidence.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.userreport import UserReport
from netvigil.model.verdict import Verdict

__all__ = [
    "StoreError",
    "StoreBatch",
    "WriteResult",
    "VerdictQuery",
    "QueryResult",
    "Store",
    "BulkWriter",
    "GROUP_COLUMNS",
    "SEARCH_COLUMNS",
    "EXPORT_TABLES",
    "Bucket",
    "ExportFormat",
    "FilterValue",
    "to_utc_naive",
    "parse_verdict_query",
    "USER_REPORT_FILTERS",
]

Bucket = Literal["hour", "day"]
ExportFormat = Literal["parquet", "csv"]
# One value (equality) or several (IN). ``None`` matches NULL.
FilterValue = str | int | bool | None | Sequence[str | int | bool | None]

# Verdict columns a query may group and filter on.
GROUP_COLUMNS = (
    "probe_cc",
    "probe_asn",
    "target",
    "domain",
    "test_name",
    "outcome",
    "method",
    "confirmed",
    "fingerprint",
)
# Verdict columns the measurement explorer may filter on (``search_verdicts``): the grouping columns, and what
# finds one measurement's or one run's verdicts.
SEARCH_COLUMNS = (*GROUP_COLUMNS, "measurement_uid", "report_id", "probe_region")
EXPORT_TABLES = ("measurements", "observations", "verdicts")


class StoreError(Exception):
    """A store cannot be opened or used as asked (locked, unknown backend, schema drift)."""


@dataclass(slots=True)
class StoreBatch:
    """What one importer step writes in one transaction.

    Observations and verdicts belong to measurements of the same batch (by
    ``measurement_uid``); rows whose measurement is already stored are skipped
    with it, so re-importing a file is a no-op.
    """

    measurements: list[Measurement] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    import_run_id: str | None = None
    # Set by ``BulkWriter.prepare`` (backend-specific, e.g. compressed and encoded
    # rows) and used by the same writer's ``add``; nothing else reads it.
    prepared: Any = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Counts from one ``write_batch``: ``skipped`` measurements were already stored (or repeated in the batch)."""

    new: int
    skipped: int
    observations: int
    verdicts: int


@dataclass(frozen=True, slots=True)
class VerdictQuery:
    """Count verdicts grouped by columns and an optional time bucket, with filters.

    ``filters`` maps a column of :data:`GROUP_COLUMNS` to a value or a list of
    values; ``since`` is inclusive, ``until`` exclusive, both over the
    measurement start time (naive datetimes are taken as UTC). The result has
    ``bucket`` first (when asked), then ``group_by`` in order, then ``count``.
    """

    group_by: tuple[str, ...] = ()
    bucket: Bucket | None = None
    filters: Mapping[str, FilterValue] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        unknown = [c for c in (*self.group_by, *self.filters) if c not in GROUP_COLUMNS]
        if unknown:
            raise ValueError(f"unknown verdict column(s) {unknown}; choose from {list(GROUP_COLUMNS)}")
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError(f"group_by repeats a column: {self.group_by}")
        if self.bucket not in (None, "hour", "day"):
            raise ValueError(f"bucket must be 'hour' or 'day', not {self.bucket!r}")


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def to_utc_naive(value: datetime) -> datetime:
    """Stored timestamps are naive UTC (OONI's convention); aware inputs are converted."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


# -- user reports: what people say happened (docs/user-reports.md) ----------------------------------------------

# Columns ``list_user_reports`` filters on (equality; a list of values for IN).
USER_REPORT_FILTERS = ("report_id", "country", "region", "asn", "isp", "service", "symptom")


class Store(ABC):
    """A measurement store. One process writes at a time; see each backend for locking."""

    @abstractmethod
    def write_batch(self, batch: StoreBatch) -> WriteResult:
        """Write the batch in one transaction, skipping measurements whose uid is stored."""

    @abstractmethod
    def known_uids(self, uids: Sequence[str]) -> set[str]:
        """The subset of ``uids`` already stored (safe to call from a thread other than the writer's)."""

    def bulk_writer(self) -> "BulkWriter":
        """A writer for long imports; rows are durable once :meth:`BulkWriter.flush` returns.

        The default writes each batch in its own transaction; backends override
        it to group batches into fewer, larger transactions.
        """
        return BulkWriter(self)

    @abstractmethod
    def query_verdicts(self, q: VerdictQuery) -> QueryResult:
        """Verdict counts grouped as ``q`` asks, ordered by the group columns."""

    @abstractmethod
    def iter_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AbstractContextManager[Iterator[Verdict]]:
        """Verdicts (without ``decisive`` and ``detail``) streamed in (probe_cc, probe_asn, measurement start
        time, verdict id) order: what the incident detector reads, one network at a time, in bounded memory."""

    @abstractmethod
    def search_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Verdict]:
        """One page of whole verdicts, newest measurement first (ties by verdict id): the measurement explorer's
        read. ``filters`` name columns of :data:`SEARCH_COLUMNS` (a value, a list, None for NULL, as in
        queries); ``since`` inclusive, ``until`` exclusive over the measurement start time."""

    @abstractmethod
    def count_verdicts(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many verdicts ``search_verdicts`` pages through with the same filters."""

    @abstractmethod
    def export(
        self,
        table: str,
        path: Path,
        fmt: ExportFormat = "parquet",
        *,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        include_raw: bool = False,
    ) -> int:
        """Write ``table`` (filtered) to ``path``; return the number of rows written.

        Filters name columns of the table, or of its measurement when the table
        lacks them (observations by ``probe_cc``); ``since``/``until`` apply to
        the measurement start time. The raw-bytes column is left out unless
        ``include_raw`` (parquet only; it holds the compressed bytes and codec).
        """

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Backend, location, schema version and row counts per table."""

    @abstractmethod
    def get_raw(self, uid: str) -> bytes | None:
        """The measurement's original bytes, exactly as imported, or None if unknown."""

    @abstractmethod
    def delete_measurements(self, uids: Sequence[str]) -> int:
        """Remove measurements with their observations and verdicts (a collector honouring a deletion request);
        returns how many measurements were there."""

    @abstractmethod
    def add_user_report(self, report: UserReport) -> None:
        """Store one user report (checked with :func:`check_user_report`; ValueError if it fails)."""

    @abstractmethod
    def list_user_reports(
        self,
        filters: Mapping[str, FilterValue] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[UserReport]:
        """User reports, most recent ``reported_at`` first (ties by report id). ``filters`` name columns of
        :data:`USER_REPORT_FILTERS`; ``since`` inclusive and ``until`` exclusive over ``reported_at``; ``status``
        one status or several (None: all)."""

    @abstractmethod
    def moderate_user_report(self, report_id: str, status: str, note: str = "") -> UserReport | None:
        """Set a report's status and moderation note (``moderated_at`` = now); the updated report, or None if
        there is no such report."""

    @abstractmethod
    def close(self) -> None:
        """Release the database (and its lock). Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BulkWriter:
    """Adds batches; ``flush`` makes everything added durable and returns the totals so far.

    Used from one thread. This default commits every batch as it comes.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.totals = WriteResult(new=0, skipped=0, observations=0, verdicts=0)

    def prepare(self, batch: StoreBatch) -> StoreBatch:
        """Do ahead of ``add`` the part of writing that needs neither the database nor order.

        Importers call it on another thread than ``add`` so that this work
        (compression, encoding) overlaps with the database writing the batch
        before. One batch at a time; ``add`` works with or without it. The
        default prepares nothing.
        """
        return batch

    def add(self, batch: StoreBatch) -> None:
        self._count(self._store.write_batch(batch))

    def flush(self) -> WriteResult:
        return self.totals

    def close(self) -> WriteResult:
        """Flush and release; returns the totals of everything added."""
        return self.flush()

    def _count(self, r: WriteResult) -> None:
        t = self.totals
        self.totals = WriteResult(
            new=t.new + r.new, skipped=t.skipped + r.skipped,
            observations=t.observations + r.observations, verdicts=t.verdicts + r.verdicts,
        )


def parse_verdict_query(by: str = "outcome", bucket: str | None = None, where: Sequence[str] = (),
                        since: str | None = None, until: str | None = None) -> VerdictQuery:
    """A verdict query from its text form, as `netvigil query` and the collector's API take it: `by` is
    comma-separated columns, each `where` is ``column=value`` (``value1,value2`` for several; true/false/null
    typed), `since`/`until` ISO dates or times. Raises ValueError with a one-line reason."""
    filters: dict[str, FilterValue] = {}
    for item in where:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"where expects column=value, got {item[:80]!r}")
        values = [_typed(v) for v in value.split(",")]
        filters[key.strip()] = values if len(values) > 1 else values[0]
    return VerdictQuery(
        group_by=tuple(c.strip() for c in by.split(",") if c.strip()), bucket=bucket,  # type: ignore[arg-type]
        filters=filters, since=_iso_time(since, "since"), until=_iso_time(until, "until"),
    )


def _typed(value: str) -> str | bool | None:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return None if lowered in ("null", "none") else value


def _iso_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} expects an ISO date or time (2020-09-27 or 2020-09-27T14:00), got {value[:40]!r}") \
            from None

"""Where measurements, observations and verdicts are kept.

The only package that imports a database driver. Callers open a store with
:func:`open_store` and use the :class:`Store` interface; the backend (DuckDB
embedded today, ClickHouse later) is chosen by the URL.
"""

from __future__ import annotations

from pathlib import Path

from netvigil.config import default_store_path
from netvigil.store.base import (
    EXPORT_TABLES,
    GROUP_COLUMNS,
    QueryResult,
    Store,
    StoreBatch,
    StoreError,
    VerdictQuery,
    WriteResult,
)

__all__ = [
    "EXPORT_TABLES",
    "GROUP_COLUMNS",
    "QueryResult",
    "Store",
    "StoreBatch",
    "StoreError",
    "VerdictQuery",
    "WriteResult",
    "default_store_path",
    "open_store",
    "store_file",
]

_PLANNED_BACKENDS = ("clickhouse", "chdb")


def open_store(
    url_or_path: str | Path | None = None,
    *,
    read_only: bool = False,
    memory_limit: str = "64MB",
    threads: int | None = None,
) -> Store:
    """Open (creating on first use) the store at a URL or path.

    Accepts ``duckdb:///abs/path.duckdb``, ``duckdb://rel/path.duckdb``, a bare
    path, ``":memory:"``, or None for :func:`default_store_path` (which may
    itself be a URL). Other schemes raise :class:`StoreError`.
    """
    path = store_file(url_or_path)
    # Imported here so `from netvigil.store import StoreBatch` does not load a driver.
    from netvigil.store.duckdb import DuckDBStore

    if path is None:
        return DuckDBStore(":memory:", read_only=read_only, memory_limit=memory_limit, threads=threads)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return DuckDBStore(path, read_only=read_only, memory_limit=memory_limit, threads=threads)


def store_file(url_or_path: str | Path | None = None) -> Path | None:
    """The file a store URL or path names (None for ``":memory:"``); raises StoreError for other backends."""
    target = str(url_or_path) if url_or_path is not None else str(default_store_path())
    scheme, sep, rest = target.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme != "duckdb":
            if scheme in _PLANNED_BACKENDS:
                raise StoreError(f"the {scheme} store backend is not built yet; use duckdb:// or a file path")
            raise StoreError(f"unknown store scheme {scheme!r} in {target!r}; use duckdb:// or a file path")
        target = rest
    if not target:
        raise StoreError("empty store path")
    return None if target == ":memory:" else Path(target).expanduser()

"""Where measurements, observations and verdicts are kept.

The only package that imports a database driver. Callers open a store with
:func:`open_store` and use the :class:`Store` interface; the backend is chosen
by the URL: a DuckDB file (embedded, one writer), or ClickHouse on a server
(``clickhouse://``, ``clickhouses://``) or in this process (``chdb://``).
"""

from __future__ import annotations

import os
import re
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
    parse_verdict_query,
    WriteResult,
)

__all__ = [
    "existing_store_file",
    "EXPORT_TABLES",
    "GROUP_COLUMNS",
    "QueryResult",
    "Store",
    "StoreBatch",
    "StoreError",
    "VerdictQuery",
    "parse_verdict_query",
    "WriteResult",
    "default_store_path",
    "open_store",
    "store_file",
]

_CLICKHOUSE_SCHEMES = ("clickhouse", "clickhouses", "chdb")
# A URL passed through pathlib loses a slash ("chdb:///x" -> "chdb:/x"): refuse it instead of making a file.
MEMORY_ENV = "NETVIGIL_DUCKDB_MEMORY"
DEFAULT_MEMORY = "64MB"
_MANGLED_URL = re.compile(r"^(duckdb|clickhouse|clickhouses|chdb):/?(?!/)", re.IGNORECASE)


def open_store(
    url_or_path: str | Path | None = None,
    *,
    read_only: bool = False,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> Store:
    """Open (creating on first use) the store at a URL or path.

    Accepts ``duckdb:///abs/path.duckdb``, ``duckdb://rel/path.duckdb``, a bare
    path, ``":memory:"``, ``clickhouse[s]://user:pass@host:port/db``,
    ``chdb:///abs/dir``, ``chdb://`` (in memory), or None for
    ``$NETVIGIL_STORE`` / :func:`default_store_path`. Other schemes raise
    :class:`StoreError`. ``memory_limit`` and ``threads`` apply to DuckDB; the memory limit defaults to
    ``$NETVIGIL_DUCKDB_MEMORY`` or 64 MB (enough to import with bounded RSS; a dashboard over a million
    verdicts needs ~256 MB to sort them, and `netvigil serve` sets 512 MB). Every connection of one process to one
    file must use the same setting: DuckDB refuses a second one with another.
    """
    memory_limit = memory_limit or os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY
    target = _target(url_or_path)
    if _scheme(target) in _CLICKHOUSE_SCHEMES:
        # Imported here: clickhouse-connect (and chdb) load only for ClickHouse stores.
        from netvigil.store.clickhouse import ClickHouseStore

        return ClickHouseStore(target, read_only=read_only)
    path = store_file(target)
    # Imported here so `from netvigil.store import StoreBatch` does not load a driver.
    from netvigil.store.duckdb import DuckDBStore

    if path is None:
        return DuckDBStore(":memory:", read_only=read_only, memory_limit=memory_limit, threads=threads)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return DuckDBStore(path, read_only=read_only, memory_limit=memory_limit, threads=threads)


def existing_store_file(url_or_path: str | Path | None = None) -> Path | None:
    """:func:`store_file`, for commands that only read: StoreError when the DuckDB file is not there yet."""
    path = store_file(url_or_path)
    if path is not None and not path.exists():
        raise StoreError(f"no store at {path} (import measurements first, or pass --store)")
    return path


def store_file(url_or_path: str | Path | None = None) -> Path | None:
    """The DuckDB file a store URL or path names.

    None for ``":memory:"`` and for ClickHouse stores (``clickhouse://``,
    ``chdb://``), which are no single file; callers that keep files "next to
    the store" fall back to the data directory. Raises StoreError for unknown schemes.
    """
    target = _target(url_or_path)
    scheme = _scheme(target)
    if scheme in _CLICKHOUSE_SCHEMES:
        return None
    if scheme is not None:
        if scheme != "duckdb":
            raise StoreError(f"unknown store scheme {scheme!r} in {target!r}; use duckdb://, clickhouse://, "
                             "clickhouses://, chdb:// or a file path")
        target = target.partition("://")[2]
    if not target:
        raise StoreError("empty store path")
    return None if target == ":memory:" else Path(target).expanduser()


def _target(url_or_path: str | Path | None) -> str:
    if url_or_path is None:
        # Read the variable itself: a URL in it must not go through pathlib (default_store_path returns a Path).
        env = os.environ.get("NETVIGIL_STORE")
        return env if env and "://" in env else str(default_store_path())
    target = str(url_or_path)
    if "://" not in target and _MANGLED_URL.match(target):
        raise StoreError(f"store {target!r} looks like a URL that went through a file path "
                         "(a '/' was lost); pass the URL as a string")
    return target


def _scheme(target: str) -> str | None:
    scheme, sep, _ = target.partition("://")
    return scheme.lower() if sep else None

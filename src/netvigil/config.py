"""Where netvigil keeps things: one data directory, overridable per path by env or flag."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "default_store_path", "default_store_url", "default_fingerprints_dir", "default_spool_dir"]


def data_dir() -> Path:
    """``$NETVIGIL_DATA_DIR``, else ``$XDG_DATA_HOME/netvigil``, else ``~/.local/share/netvigil``."""
    if env := os.environ.get("NETVIGIL_DATA_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "netvigil"


def default_store_path() -> Path:
    if env := os.environ.get("NETVIGIL_STORE"):
        return Path(env).expanduser()
    return data_dir() / "netvigil.duckdb"


def default_store_url() -> str:
    """``$NETVIGIL_STORE`` as given (a path or a URL such as ``chdb:///var/lib/netvigil/ch``), else the DuckDB
    file in the data directory. A URL must not pass through pathlib, which would fold its slashes."""
    return os.environ.get("NETVIGIL_STORE") or str(data_dir() / "netvigil.duckdb")


def default_fingerprints_dir() -> Path:
    if env := os.environ.get("NETVIGIL_FINGERPRINTS"):
        return Path(env).expanduser()
    return data_dir() / "fingerprints"


def default_spool_dir() -> Path:
    """Where the probe keeps measurements until a collector has them."""
    if env := os.environ.get("NETVIGIL_SPOOL"):
        return Path(env).expanduser()
    return data_dir() / "spool"

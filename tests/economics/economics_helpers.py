"""Helpers for the economics tests: the real WDI/OWID files in ../shared/data/economics, small synthetic files."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

from netvigil.economics.indicators import INDICATORS

UTC = dt.timezone.utc


def root_conftest():
    """tests/conftest.py under a name of its own: a bare `import conftest` may find another folder's conftest."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_netvigil_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_economics_dir() -> Path:
    return root_conftest().require_shared_path("economics")


def write_dir(directory: Path, files: dict[str, str]) -> Path:
    """A complete economics directory: the given files' text, every other file with a header only."""
    directory.mkdir(parents=True, exist_ok=True)
    for spec in INDICATORS:
        header = ("Entity,Code,Year,Individuals using the Internet (% of population)\n" if spec.fmt == "owid"
                  else "Country Name,Country Code,Year,Value\n")
        (directory / spec.file_name).write_text(files.get(spec.key, header), encoding="utf-8")
    return directory


def day(y: int, m: int, d: int, h: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, tzinfo=UTC)

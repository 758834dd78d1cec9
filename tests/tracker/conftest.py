"""Fixtures for the tracker tests: the real STOP/IODA files in ../shared/data/shutdowns and a CLI runner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner


def _root_conftest():
    """tests/conftest.py under a name of its own: a bare `import conftest` may find another folder's conftest."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_netvigil_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shutdowns_dir() -> Path:
    return _root_conftest().require_shared_path("shutdowns")


@pytest.fixture(scope="session")
def cli() -> typer.Typer:
    """The commands mounted as the lead mounts them in netvigil.cli (tracker group + top-level stats)."""
    from netvigil.cli_tracker import app as tracker_app, stats

    root = typer.Typer()
    root.add_typer(tracker_app, name="tracker")
    root.command("stats")(stats)
    return root


@pytest.fixture
def run(cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke the CLI with NETVIGIL_DATA_DIR in tmp_path; returns click's Result."""
    monkeypatch.setenv("NETVIGIL_DATA_DIR", str(tmp_path / "nv"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke

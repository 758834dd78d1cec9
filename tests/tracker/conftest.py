"""Fixtures for the tracker tests: a CLI runner (the real STOP/IODA files come from tests/conftest.py's
`shutdowns_dir`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner


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

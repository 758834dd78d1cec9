"""Shared test fixtures: the real third-party data in ../shared/data.

Tests that need it skip with a reason when it is absent; with
NETVIGIL_REQUIRE_SHARED=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import REPO, SHARED_DATA, require_shared_path  # noqa: F401 (used by fixtures here)


@pytest.fixture(scope="session")
def ooni_data() -> Path:
    return require_shared_path("ooni")


@pytest.fixture(scope="session")
def netem_qa_dir(ooni_data: Path) -> Path:
    return ooni_data / "measurements" / "netem-qa"


@pytest.fixture(scope="session")
def real_dir(ooni_data: Path) -> Path:
    return ooni_data / "measurements" / "real"


@pytest.fixture(scope="session")
def test_lists_dir(ooni_data: Path) -> Path:
    return ooni_data / "test-lists"


@pytest.fixture(scope="session")
def fingerprints_dir(ooni_data: Path) -> Path:
    return ooni_data / "fingerprints"


@pytest.fixture(scope="session")
def fingerprints(fingerprints_dir: Path):
    from netvigil.tasks.fingerprints import load_fingerprints

    return load_fingerprints(fingerprints_dir)


@pytest.fixture(scope="session")
def economics_dir() -> Path:
    """World Bank / ITU inputs of the cost model."""
    return require_shared_path("economics")


@pytest.fixture(scope="session")
def shutdowns_dir() -> Path:
    """Access Now STOP sheets and IODA's investigated outages."""
    return require_shared_path("shutdowns")

"""Shared test fixtures: the real third-party data in ../shared/data.

Tests that need it skip with a reason when it is absent; with
NETVIGIL_REQUIRE_SHARED=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def require_shared_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        reason = f"shared data absent: {path} (the real OONI data lives in ../shared/data)"
        if os.environ.get("NETVIGIL_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " and NETVIGIL_REQUIRE_SHARED=1")
        pytest.skip(reason)
    return path


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

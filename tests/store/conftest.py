from __future__ import annotations

from pathlib import Path

import pytest
from store_records import NETEM_QA, load_netem_qa, require_shared

from netvigil.model.measurement import Measurement
from netvigil.store import Store, open_store


@pytest.fixture(scope="session")
def netem_qa() -> list[Measurement]:
    """The real netem-qa measurements; skip (or fail under NETVIGIL_REQUIRE_SHARED=1) without them."""
    if not any(NETEM_QA.glob("*.json")):
        reason = f"shared data absent: no netem-qa measurements in {NETEM_QA}"
        if require_shared():
            pytest.fail(reason + " (NETVIGIL_REQUIRE_SHARED=1)")
        pytest.skip(reason)
    return load_netem_qa()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with open_store(tmp_path / "store.duckdb") as s:
        yield s

"""Where the real third-party data of ../shared/data lives, and the one rule for tests that need it: skip with a
reason when it is absent, fail instead under NETVIGIL_REQUIRE_SHARED=1 (set by .ci/run). A plain module, so that
helper modules can import it (``from shared_data import require_shared_path``) whichever conftest.py is loaded."""

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

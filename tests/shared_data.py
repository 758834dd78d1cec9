"""What tests need from outside the project, and the one rule for it: the real third-party data of ../shared/data
(skip with a reason when it is absent, fail instead under NETVIGIL_REQUIRE_SHARED=1) and the lab (root or a user
namespace, nftables; fail instead of skipping under NETVIGIL_REQUIRE_LAB=1). Both variables are set by .ci/run. A plain
module, so that test modules can import it (``from shared_data import require_lab``) whichever conftest.py is loaded."""

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


_LAB_READY: tuple[bool, str] | None = None


def require_lab() -> None:
    global _LAB_READY
    if _LAB_READY is None:
        from netvigil.lab.check import lab_ready

        _LAB_READY = lab_ready()
    ok, reason = _LAB_READY
    if not ok:
        if os.environ.get("NETVIGIL_REQUIRE_LAB") == "1":
            pytest.fail(f"lab cannot run here and NETVIGIL_REQUIRE_LAB=1: {reason}")
        pytest.skip(f"lab cannot run here: {reason}")

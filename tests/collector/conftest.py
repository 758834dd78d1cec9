"""Collector fixtures: real collector processes on loopback, real OONI measurements to submit."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

sys.path.insert(0, str(Path(__file__).parent))
from collector_harness import CollectorProc, load_bases

# Hypothesis keeps a cache in ./.hypothesis by default: not in the checkout.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "netvigil-hypothesis"))


@pytest.fixture(scope="session")
def bases(netem_qa_dir: Path, real_dir: Path) -> list[dict[str, Any]]:
    """The real measurements the collector takes as they are (probe_ip already 127.0.0.1)."""
    found = load_bases([real_dir, netem_qa_dir])
    assert len(found) >= 50, f"expected the shared OONI samples, found {len(found)} usable"
    return found


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Callable[..., CollectorProc]]:
    """Start ``collector serve`` processes (extra CLI args); each must exit 0 on SIGTERM at teardown."""
    started: list[CollectorProc] = []

    def start(*args: str, root: Path | None = None) -> CollectorProc:
        root = root or tmp_path / f"collector{len(started)}"
        root.mkdir(exist_ok=True)
        proc = CollectorProc(root, list(args)).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.alive():
            assert proc.stop() == 0, proc.stderr()[-2000:]

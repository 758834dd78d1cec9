"""Lab test fixtures: bring a scenario up once per module, run plain clients inside its namespaces.

Tests that need the kernel lab skip with the reason from `netvigil.lab.check` when it cannot run here; with
NETVIGIL_REQUIRE_LAB=1 (CI, as root, nftables installed) they fail instead. A session fixture checks that the
whole suite left no namespace, nft table or lab process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from netvigil.lab.runtime import STATE_ROOT, Lab
from shared_data import require_lab

CLIENT = str(Path(__file__).with_name("clientprobe.py"))


def _our_leftovers() -> list[str]:
    """What labs of this run left behind (a developer's own lab running beside the suite is not ours)."""
    from netvigil.lab.plan import ns_prefix

    found = []
    prefixes = tuple(ns_prefix(name) for name in _STARTED | {"clit", "crash"})
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in ns.splitlines() if line.startswith(prefixes)]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [f"host nft {line}" for line in tables.splitlines() if "netvigil" in line or "nvcheck" in line]
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            ours = ("netvigil.lab.censor", "netvigil.lab.servers", "netvigil.control")
            if any(o in cmd for o in ours) and any(str(STATE_ROOT / name) in cmd for name in _STARTED | {"clit", "crash"}):
                found.append(f"process {pid}: {cmd[:120]}")
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the suite: `ip netns list` and `nft list tables` show nothing of ours, and no lab process runs."""
    yield
    # The state directories (ground truth, logs) outlive `down` on purpose; the
    # suite's own are removed so it leaves nothing at all.
    for name in sorted(_STARTED | {"clit", "crash"}):
        if not (STATE_ROOT / name / "state.json").exists():
            shutil.rmtree(STATE_ROOT / name, ignore_errors=True)
    if os.geteuid() != 0 or subprocess.run(["which", "nft"], capture_output=True).returncode != 0:
        return
    left = _our_leftovers()
    assert not left, f"the lab left things behind: {left}"


_STARTED: set[str] = set()


def start_lab(scenario: str, name: str, speed: float | None = None) -> Lab:
    require_lab()
    _STARTED.add(name)
    return Lab(scenario, lab=name, speed=speed).up()


Probe = Callable[..., dict]


def make_probe(lab: Lab) -> Probe:
    """probe(where, op=..., **args) runs clientprobe.py in the lab host `where` and returns its JSON."""

    def probe(where: str, **op: object) -> dict:
        r = lab.exec(where, [sys.executable, CLIENT, json.dumps(op)], timeout=60)
        assert r.returncode == 0, f"client failed in {where}: {r.stderr[-2000:]}"
        return json.loads(r.stdout)

    return probe


def truth_has(lab: Lab, **fields: object) -> bool:
    return any(all(getattr(r, k) == v for k, v in fields.items()) for r in lab.truth())


class LabKit:
    """What lab test modules need, handed out as a fixture (test modules cannot import conftest safely)."""

    start_lab = staticmethod(start_lab)
    make_probe = staticmethod(make_probe)
    truth_has = staticmethod(truth_has)
    require_lab = staticmethod(require_lab)
    client = CLIENT


@pytest.fixture(scope="session")
def labkit() -> LabKit:
    return LabKit()


@pytest.fixture(scope="session")
def az_campaign(tmp_path_factory):
    """One az-2020 campaign per session: probes in every ISP client through the scenario, the real collector, one
    store and the ground truth (`netvigil lab campaign`): the whole 49 days in 8 h rounds (~7 min; three rounds
    fall inside the scenario's day-long events). NETVIGIL_CAMPAIGN=short runs 4-13 Nov in 1-day rounds (~45 s)."""
    import datetime as dt

    from netvigil.lab.campaign import CampaignParams, run_campaign
    from netvigil.lab.runtime import down_lab

    require_lab()
    _STARTED.add("camp")
    params = CampaignParams(out=tmp_path_factory.mktemp("az-campaign") / "out", scenario="az-2020", name="camp",
                            round=dt.timedelta(hours=8))
    if os.environ.get("NETVIGIL_CAMPAIGN") == "short":
        az = dt.timezone(dt.timedelta(hours=4))
        params.round = dt.timedelta(days=1)
        params.start, params.until = dt.datetime(2020, 11, 4, tzinfo=az), dt.datetime(2020, 11, 13, tzinfo=az)
    try:
        return run_campaign(params)
    finally:
        down_lab("camp", purge=True)

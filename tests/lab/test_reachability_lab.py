"""The active reachability prober against lab shutdowns: seen from abroad, a cut ISP's blocks go dark exactly
while the censor's cut is on, an untouched ISP's never do, and the round times match the ground truth.

Scenario `tests/lab/scenarios/reachability.toml` (speed 300: 10 scenario minutes = 2 real seconds): ISP alpha
(AS64601, 8 addresses: 3 clients, the router's 4 interfaces, the resolver) is cut (`outage_isp`) from +85m to
+165m; gamma (AS64603, 4 addresses) loses its international links (`outage_international`) from +105m to +145m;
beta (AS64602, 6 addresses) is never touched. Each lab address is one block. The prober runs
`netvigil reachability --lab reach` from the host; it enters the lab's internet namespace itself, sends from an
address abroad, and writes times in scenario seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netvigil.lab.runtime import Lab
from netvigil.tasks.reachability import read_signals

pytestmark = pytest.mark.lab

SCENARIO = str(Path(__file__).with_name("scenarios") / "reachability.toml")
STEP = 600                      # scenario seconds per round (2 s real at speed 300)
UNTIL = 200 * 60                # last round starts at or after +200m: the recovery is seen for a few rounds
FULL = {"AS64601": 8, "AS64602": 6, "AS64603": 4}
CUTS = {"AS64601": "alpha-cut", "AS64603": "gamma-intl"}     # ASN -> the policy that darkens it


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab(SCENARIO, "reach")
    try:
        yield lab
    finally:
        lab.down()


def _ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def test_outage_seen_from_abroad_matches_ground_truth(lab, tmp_path):
    clock = lab.clock()
    start = clock.start.timestamp()
    now = clock.now().timestamp()
    assert now - start < 60 * 60, "the lab took too long to come up: the outage at +85m would be missed"
    first = math.ceil((now + 2 * 60) / STEP) * STEP       # the census takes well under a round
    rounds = math.ceil((start + UNTIL - first) / STEP) + 1
    out = tmp_path / "reach.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "netvigil.cli_reachability", "--lab", "reach", "--rounds", str(rounds),
         "--round-seconds", str(STEP), "--rate", "500", "--timeout", "0.4", "--seed", "1", "--out", str(out),
         "--json"],
        capture_output=True, text=True, timeout=rounds * STEP / clock.speed + 30, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    sigs = {s.entity_code: s for s in read_signals(out)}
    assert set(sigs) == {"XA", "XA/capital", "XA/north", "XA/south", "AS64601", "AS64602", "AS64603"}
    alpha = sigs["AS64601"]
    assert alpha.step == STEP and alpha.start % STEP == 0 and alpha.country == "XA"
    assert alpha.start - start <= 60 * 60 and alpha.until >= start + UNTIL
    assert all(v is not None for s in sigs.values() for v in s.values), "every round decided"
    n = len(alpha.values)

    # The untouched ISP is full in every round.
    assert set(sigs["AS64602"].values) == {FULL["AS64602"]}

    dark: dict[str, list[int]] = {}
    for asn, policy in CUTS.items():
        sig = sigs[asn]
        truth = [t for t in lab.truth() if t.policy == policy]
        on = next(t for t in truth if t.state == "on")
        off = next(t for t in truth if t.state == "off")
        t_on, t_off = _ts(on.applied_t), _ts(off.applied_t)
        # the censor applied each switch on time (well within a round)
        assert abs(_ts(on.t) - t_on) < STEP / 4 and abs(_ts(off.t) - t_off) < STEP / 4
        # every round is either full or (near) zero, the zero rounds one contiguous run inside the data
        rounds = [i for i, v in enumerate(sig.values) if v <= 0.1 * FULL[asn]]
        assert rounds, f"{asn} never went dark: {sig.values}"
        assert rounds == list(range(rounds[0], rounds[-1] + 1)), f"{asn}: one contiguous outage: {sig.values}"
        assert all(v == FULL[asn] for i, v in enumerate(sig.values) if i not in rounds), sig.values
        assert rounds[0] > 0 and rounds[-1] < n - 1, "rounds on both sides of the outage"
        # within one round of the ground truth: the first dark round starts at most one round after the cut,
        # the first round back at most one round after it was lifted
        first_dark = sig.start + rounds[0] * STEP
        first_back = sig.start + (rounds[-1] + 1) * STEP
        assert 0 <= first_dark - t_on <= STEP, (asn, first_dark, t_on)
        assert 0 <= first_back - t_off <= STEP, (asn, first_back, t_off)
        dark[asn] = rounds

    # The country counts what is left; regions follow the clients (alpha: 2 capital + 1 north, beta: one in
    # capital and one in north, gamma: one in south).
    for i in range(n):
        assert sigs["XA"].values[i] == sum(full for asn, full in FULL.items() if i not in dark.get(asn, ()))
        assert sigs["XA/capital"].values[i] == (1 if i in dark["AS64601"] else 3)
        assert sigs["XA/north"].values[i] == (1 if i in dark["AS64601"] else 2)
        assert sigs["XA/south"].values[i] == (0 if i in dark["AS64603"] else 1)

    # Adaptive probing: one probe per block in a quiet round, 2 per block at its onset, 1 per dark block after.
    per_round = summary["per_round"]
    a0, g0 = dark["AS64601"][0], dark["AS64603"][0]
    assert a0 < g0 - 1
    assert per_round[0]["probes"] == 18 and per_round[a0]["probes"] == 10 + 2 * 8
    assert per_round[a0 + 1]["probes"] == 18 and per_round[g0]["probes"] == 14 + 2 * 4
    assert all(p["timed_out"] == 0 for p in per_round)
    assert summary["measurable_blocks"] == 18 and summary["missed_rounds"] == 0

    # Privacy: counts only, no lab address anywhere in the output.
    written = out.read_text() + r.stdout
    for prefix in ("192.0.2.", "198.51.100.", "203.0.113."):
        assert prefix not in written

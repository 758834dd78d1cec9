"""Issue 7's must-show on the lab's `az-2020` run: probes in every ISP through the whole scenario (the session's
campaign, `az_campaign`), incidents detected from the store, scored against the censor's ground truth.

- blocking per ISP x target, start and end within one probing round: precision and recall >= 0.95, as the issue
  asks. Measured offline on two finished campaigns of this machine (docs/incidents.md): 0.992 / 0.992 and
  1.000 / 1.000 with blocking rule v2 and the network rule `inc.network.v1` (before them: 0.917 / 0.932 and
  0.936 / 0.992 — false stretches from Azercell's two probes congesting their one throttled 2 Mbit/s link, and
  from a resolver that failed for a whole run on Bakcell and Azercell). The one remaining miss is an onset that
  only a control-less TLS timeout dated (docs/incidents.md, "Known limits");
- the early-November cut of the two state ISPs is a full-network incident;
- the frontier region's restriction after 12 Nov is a regional full-network incident, still ongoing;
- Bakinternet's day-long outage on 30 Sept is found too;
- throttling seen by Web Connectivity lies inside the scenario's throttling (whole-network throttling itself is
  the throttling test's job, issue 5).
"""

from __future__ import annotations

import pytest

from netvigil.lab.scenario import load_scenario
from netvigil.lab.score import score_incidents, throttling_inside_truth
from netvigil.lab.truth import read_ground_truth
from netvigil.tasks.incidents import MakeIncidentsParams, make_incidents

# The session's az-2020 campaign takes ~8 minutes; whichever test first needs it waits for it.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def scored(az_campaign):
    c = az_campaign
    run = make_incidents(MakeIncidentsParams(store=str(c.store), signal_step=c.round, use_stored_signals=False))
    scenario = load_scenario(str(c.out / "scenario.toml"))
    truth = list(read_ground_truth(c.out / "truth.jsonl"))
    blocking, outages = score_incidents(run.incidents, truth, scenario, c.urls, c.start, c.until, c.round)
    return c, run, scenario, truth, blocking, outages


def _show(intervals) -> list[tuple]:
    return [(i.asn, i.key, i.start.isoformat(timespec="minutes"), i.end and i.end.isoformat(timespec="minutes"))
            for i in intervals]


def test_blocking_matches_the_ground_truth(scored) -> None:
    c, run, _, _, blocking, _ = scored
    print(f"blocking: {len(blocking.truth)} true ISP x target stretches, {len(blocking.detected)} detected, "
          f"precision {blocking.precision:.3f}, recall {blocking.recall:.3f}; left out: {blocking.left_out}")
    assert len(blocking.truth) >= 100, "the campaign must cover the scenario's blocking"
    assert blocking.recall >= 0.95, f"missed: {_show(blocking.missed)}"
    assert blocking.precision >= 0.95, f"spurious: {_show(blocking.spurious)}"


def test_the_state_isp_cut_and_the_frontier_region_are_outages(scored) -> None:
    c, run, _, _, _, outages = scored
    print(f"outages: truth {_show(outages.truth)}; detected {_show(outages.detected)}")
    assert outages.recall == 1.0, f"missed: {_show(outages.missed)}"
    full = [i for i in run.incidents if i.type == "full-network"]
    cut = [i for i in full if {"AS64528", "AS64529"} <= set(i.asns)]
    assert cut, "the state ISPs' November cut must be one full-network incident"
    frontier = [i for i in full if i.scope == "regional" and i.regions == ["AZ/frontier"]]
    assert frontier and frontier[-1].end is None and frontier[-1].asns == ["AS64531"]
    assert outages.precision >= 0.8, f"spurious: {_show(outages.spurious)}"


def test_web_connectivity_throttling_lies_inside_the_scenarios_throttling(scored) -> None:
    c, run, scenario, truth, _, _ = scored
    inside, total = throttling_inside_truth(run.incidents, truth, scenario, c.round)
    print(f"throttling detections inside a throttling policy: {inside} of {total}")
    assert inside >= 0.95 * total


def test_incidents_are_stable_on_the_same_data(scored) -> None:
    c, run, *_ = scored
    again = make_incidents(MakeIncidentsParams(store=str(c.store), signal_step=c.round, use_stored_signals=False))
    assert [i.incident_id for i in again.incidents] == [i.incident_id for i in run.incidents]
    # Every start and end of a blocking incident points at the measurements that prove it.
    for i in run.incidents:
        if i.type == "service-based":
            assert any(e.role == "start" and e.measurement_uid for e in i.evidence)
            if i.end is not None:
                assert any(e.role in ("end", "before-end") and e.measurement_uid for e in i.evidence)


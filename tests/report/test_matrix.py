"""The status matrix: the state rule, local days, counts equal to `aggregate_verdicts`, evidence uids per cell."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from report_data import campaign_verdicts, verdict

from netvigil.incidents.aggregates import aggregate_verdicts
from netvigil.incidents.services import load_services
from netvigil.report.matrix import MatrixRule, cell_state, status_cells

UTC = dt.timezone.utc
BAKU = ZoneInfo("Asia/Baku")


@pytest.mark.parametrize("counts, state", [
    ((3, 0, 0, 0, 0), "ok"),
    ((0, 3, 0, 0, 0), "blocked"),
    ((1, 1, 0, 0, 0), "blocked"),          # half of the conclusive verdicts: blocked
    ((2, 1, 0, 0, 0), "mixed"),            # a third
    ((4, 1, 0, 0, 0), "mixed"),            # 0.2 exactly
    ((5, 1, 0, 0, 3), "ok"),               # below 0.2; inconclusive verdicts do not count
    ((0, 1, 2, 0, 0), "throttled"),        # the larger of the two names it
    ((0, 2, 2, 0, 0), "blocked"),          # a tie is blocked
    ((0, 0, 0, 2, 1), "down"),
    ((0, 0, 0, 1, 1), "down"),
    ((0, 0, 0, 1, 2), "inconclusive"),
    ((0, 0, 0, 0, 0), "inconclusive"),
])
def test_cell_state_rule(counts, state):
    assert cell_state(*counts) == state


def test_the_rule_is_data():
    rule = MatrixRule(blocked_share=0.9, mixed_share=0.5)
    assert cell_state(1, 3, 0, 0, 0, rule) == "mixed"
    assert cell_state(0, 9, 0, 0, 0, rule) == "blocked"
    assert rule.describe().startswith("report.matrix.v1: ")


def test_days_are_local_and_samples_follow_the_state():
    services = load_services()
    t = dt.datetime(2020, 9, 26, 21, 0, tzinfo=UTC)   # 27 Sep 01:00 in Baku
    vs = [verdict(t, "AS64528", "https://www.facebook.com/", "blocked", uid="b1"),
          verdict(t + dt.timedelta(minutes=1), "AS64528", "https://facebook.com/", "ok", uid="o1"),
          verdict(t + dt.timedelta(minutes=2), "AS64528", "https://fbcdn.net/", "blocked", method="dns", uid="b2"),
          verdict(t - dt.timedelta(hours=2), "AS64528", "https://facebook.com/", "ok", uid="o0")]
    local = status_cells(vs, services, tz=BAKU)
    assert [(c.day, c.service, c.state, c.total, c.ok, c.blocked) for c in local] == [
        (dt.date(2020, 9, 26), "facebook", "ok", 1, 1, 0),
        (dt.date(2020, 9, 27), "facebook", "blocked", 3, 1, 2)]
    assert local[1].methods == ["dns", "tls"]
    assert local[1].sample_uids == ["b1", "b2", "o1"]      # the state's own outcome first
    utc = status_cells(vs, services)
    assert [(c.day, c.total) for c in utc] == [(dt.date(2020, 9, 26), 4)]


def test_counts_equal_aggregate_verdicts():
    services = load_services()
    vs = campaign_verdicts()
    cells = status_cells(vs, services)
    expected = defaultdict(lambda: [0] * 6)
    for r in aggregate_verdicts(vs, services, bucket="day", level="service"):
        acc = expected[(r.bucket.date(), r.probe_asn, r.key)]
        for i, n in enumerate((r.total, r.ok, r.blocked, r.throttled, r.down, r.inconclusive)):
            acc[i] += n
    got = {(c.day, c.asn, c.service): [c.total, c.ok, c.blocked, c.throttled, c.down, c.inconclusive] for c in cells}
    assert got == dict(expected)
    assert [(c.day, c.asn, c.service) for c in cells] == sorted(got)
    assert all(1 <= len(c.sample_uids) <= 3 for c in cells)

"""`ru-2021-throttle`: Twitter SNI policed to ~130 kbit/s from 10 March 10:00; a random SNI to the same IP
stays fast (the SNI-swap test); the *t.co* substring rule catches reddit.com; nothing before the start."""

from __future__ import annotations

import datetime as dt
import time
from typing import Iterator

import pytest

from netvigil.lab.runtime import Lab

pytestmark = pytest.mark.lab

MSK = dt.timezone(dt.timedelta(hours=3))
RATE = 130_000


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab("ru-2021-throttle", "ru", speed=3600.0)  # policies switch on 10 s after start
    try:
        yield lab
    finally:
        lab.down()


def test_sni_throttling_switches_on_at_ten(lab, labkit):
    probe = labkit.make_probe(lab)
    before = probe("rostel", op="download", ip="203.0.113.10", sni="abs.twimg.com", seconds=1.0)
    assert lab.clock().now() < dt.datetime(2021, 3, 10, 10, tzinfo=MSK)
    assert before["bps"] > 10 * RATE, "not throttled before 10:00"
    time.sleep(max(0.0, lab.clock().real_time(dt.datetime(2021, 3, 10, 10, 30, tzinfo=MSK)) - time.time()))
    for isp in ("rostel", "mts"):
        slow = probe(isp, op="download", ip="203.0.113.10", sni="abs.twimg.com", seconds=3.0)
        swapped = probe(isp, op="download", ip="203.0.113.10", sni="r4nd0m-9x.example", seconds=1.0)
        assert slow["bps"] <= 1.2 * RATE, slow
        assert swapped["bps"] >= 10 * slow["bps"], (swapped, slow)
    collateral = probe("rostel", op="download", ip="203.0.113.13", sni="www.reddit.com", seconds=2.0)
    assert collateral["bps"] <= 1.2 * RATE, "the *t.co* substring rule also throttles reddit.com"
    domestic = probe("rostel", op="download", ip="198.51.100.100", sni="yandex.ru", seconds=1.0)
    assert domestic["bps"] > 10 * RATE
    on = {(r.policy, r.isp) for r in lab.truth() if r.state == "on"}
    assert {("twitter-fixed", "rostel"), ("twitter-mobile", "mts"), ("tco-substring", "rostel")} <= on
    assert all(r.time == dt.datetime(2021, 3, 10, 10, tzinfo=MSK) for r in lab.truth())

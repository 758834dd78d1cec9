"""`ir-2019-shutdown`: the international links are cut while domestic sites and domestic DNS keep working;
fixed lines come back before mobile ones."""

from __future__ import annotations

import datetime as dt
import time
from typing import Iterator

import pytest

from netvigil.lab.runtime import Lab

pytestmark = pytest.mark.lab

IRST = dt.timezone(dt.timedelta(hours=3, minutes=30))
SPEED = 36_000.0  # ten scenario hours per second


def wait_for(lab: Lab, day: int, hour: int) -> None:
    when = dt.datetime(2019, 11, day, hour, tzinfo=IRST)
    assert lab.clock().now() < when, "test too slow for the scenario speed"
    time.sleep(max(0.0, lab.clock().real_time(when) - time.time()))


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab("ir-2019-shutdown", "ir", speed=SPEED)
    try:
        yield lab
    finally:
        lab.down()


def test_international_cut_then_staggered_restoration(lab, labkit):
    probe = labkit.make_probe(lab)
    google, aparat = "203.0.113.10", "198.51.100.120"
    assert probe("tci", op="connect", ip=google, port=443)["ok"]

    wait_for(lab, 18, 12)
    for isp in ("tci", "mci", "irancell"):
        assert probe(isp, op="connect", ip=google, port=443, timeout=1.0)["error"] == "TimeoutError"
        assert probe(isp, op="http", scheme="https", ip=aparat, host="www.aparat.com")["status"] == 200
        assert probe(isp, op="resolve", name="www.google.com") == {"addrs": [google]}  # domestic DNS still up

    wait_for(lab, 22, 12)
    assert probe("tci", op="connect", ip=google, port=443)["ok"], "fixed line restored on 21 Nov"
    assert probe("mci", op="connect", ip=google, port=443, timeout=1.0)["error"] == "TimeoutError"

    truth = [(r.policy, r.state, r.time) for r in lab.truth()]
    assert ("cut-fixed", "on", dt.datetime(2019, 11, 16, 19, tzinfo=IRST)) in truth
    assert ("cut-fixed", "off", dt.datetime(2019, 11, 21, 12, tzinfo=IRST)) in truth

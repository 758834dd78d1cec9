"""Throughput figures from throttling and speed-test measurements, for the throughput chart: the throttled target's
plateau (the rate after slow start, `analysis.throughput.assess`, recomputed from the samples as the verdict was) and
the control downloads' median beside it; the speed test's download rate. Pure: a decoded measurement in, a point
out (None when it carries no rate)."""

from __future__ import annotations

import datetime as dt

from netvigil.analysis.observations.throttling import speedtest_keys, throttling_keys
from netvigil.analysis.throughput import assess
from netvigil.incidents.detect import parse_time
from netvigil.model.measurement import Measurement
from netvigil.report.dataset import ThroughputPoint

__all__ = ["THROUGHPUT_TESTS", "throughput_point"]

THROUGHPUT_TESTS = ("throttling", "speedtest")


def throughput_point(m: Measurement, *, outcome: str = "", asn: str | None = None) -> ThroughputPoint | None:
    t = parse_time(m.envelope.measurement_start_time)
    if t is None:
        return None
    asn = asn or m.envelope.probe_asn or ""
    if m.test_name == "throttling":
        tk = throttling_keys(m.test_keys)
        if tk is None or not tk.downloads:
            return None
        a = assess(tk.downloads)
        target = a.plateau.rate_bps if a.plateau is not None else None
        control = next((c.control_median_bps for c in a.rounds if c.control_median_bps is not None), None)
        if target is None:
            target = next((c.target_median_bps for c in a.rounds if c.target_median_bps is not None), None)
        if target is None:
            return None
        return ThroughputPoint(time=t.astimezone(dt.timezone.utc), asn=asn, test_name="throttling",
                               target=tk.target_host or m.input or "", kbit_s=round(target / 1000, 3),
                               control_kbit_s=None if control is None else round(control / 1000, 3),
                               outcome=outcome, measurement_uid=m.uid)
    if m.test_name == "speedtest":
        tk = speedtest_keys(m.test_keys)
        if tk is None or tk.summary is None or tk.summary.download is None:
            return None
        host = tk.server.hostname if tk.server is not None and tk.server.hostname else "network"
        return ThroughputPoint(time=t.astimezone(dt.timezone.utc), asn=asn, test_name="speedtest", target=host,
                               kbit_s=round(float(tk.summary.download), 3), outcome=outcome, measurement_uid=m.uid)
    return None

"""Speedtest verdicts: one per measurement, target ``network``: the speeds, or why there are none.

One speed test cannot say a network is throttled (that needs its history: a drop against the same helper over
time), so a measured speed is ``ok`` with the numbers in the detail, kbit/s and milliseconds as ndt's summary,
and the series lives in the test keys' ``summary``. A helper that could not be reached is ``inconclusive``: it
may be down, or the network may be cut (the reachability and outage signals tell which).
"""

from __future__ import annotations

from netvigil.analysis.observations.throttling import speedtest_keys
from netvigil.analysis.rules import rule
from netvigil.analysis.verdicts.common import make_verdict
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Outcome, Verdict

__all__ = ["make_verdicts"]

MEASURED = rule("speedtest.measured", Outcome.OK, None, 0.5, "moderate",
                "download and/or upload speed measured against the control helper (numbers in the detail)")
FAILED = rule("speedtest.failed", Outcome.INCONCLUSIVE, None, 0.0, "weak",
              "no transfer completed: the helper is unreachable from here, or down")


def _fmt(kbit: float | None) -> str:
    if kbit is None:
        return "?"
    return f"{kbit / 1000:.2f} Mbit/s ({kbit:.0f} kbit/s)" if kbit >= 1000 else f"{kbit:.1f} kbit/s"


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    tk = speedtest_keys(m.test_keys)
    domain = tk.server.hostname if tk is not None and tk.server is not None else None
    s = tk.summary if tk is not None else None
    if tk is None or s is None or (s.download is None and s.upload is None):
        failures = [f for f in ((tk.download_failure, tk.upload_failure, tk.rtt_failure, tk.failure)
                                if tk is not None else ()) if f]
        detail = "failures: " + ", ".join(dict.fromkeys(failures)) if failures else "no speeds recorded"
        decisive = [o.observation_id for o in observations if o.failure]
        return [make_verdict(m, "network", FAILED, detail=detail, decisive=decisive, domain=domain)]
    parts = [f"download {_fmt(s.download)}", f"upload {_fmt(s.upload)}"]
    if s.min_rtt is not None:
        parts.append(f"RTT min {s.min_rtt:.1f} / avg {s.avg_rtt:.1f} / max {s.max_rtt:.1f} ms")
    for name, failure in (("download", tk.download_failure), ("upload", tk.upload_failure)):
        if failure:
            parts.append(f"{name} failed: {failure}")
    decisive = [o.observation_id for o in observations if o.kind == "http"]
    return [make_verdict(m, "network", MEASURED, detail="; ".join(parts), decisive=decisive, domain=domain)]

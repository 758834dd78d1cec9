"""Throttling verdicts: one per measurement, for the target host, recomputed from the recorded samples.

Throttled (method ``bandwidth``) needs two rounds that agree: Wehe's area and KS tests both significant with the
target slower, or OONI's 10x rule, in each. The plateau (the target's rate after slow start) and whether it is
flat (a policer) or noisy (congestion) go in the detail. No differentiation in the first round is ``ok``; rounds
that disagree, transfers that failed or were too short are ``inconclusive``. The probe's own ``summary`` is shown
beside ours but never decides.
"""

from __future__ import annotations

import math

from netvigil.analysis.observations.throttling import download_label, throttling_keys
from netvigil.analysis.rules import rule
from netvigil.analysis.throughput import Assessment, Comparison, assess
from netvigil.analysis.verdicts.common import make_verdict
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = ["make_verdicts", "format_bps"]

CONFIRMED = rule("throttling.confirmed", Outcome.THROTTLED, Method.BANDWIDTH, 0.8, "strong",
                 "Wehe's area test and KS test (p < 0.01) both show the target-SNI download slower than the "
                 "random/no-SNI downloads from the same address, in two rounds")
EXTREME_ONLY = rule("throttling.extreme_only", Outcome.THROTTLED, Method.BANDWIDTH, 0.6, "moderate",
                    "the target-SNI download was at least 10x slower than the control downloads in both rounds "
                    "(OONI's extreme throttling), though Wehe's tests did not agree in both")
EXTREME = rule("throttling.extreme", Outcome.THROTTLED, Method.BANDWIDTH, 0.9, "strong",
               "also: at least 10x slower than the controls in every round (OONI's extreme throttling)")
POLICER = rule("throttling.policer", Outcome.THROTTLED, Method.BANDWIDTH, 0.8, "strong",
               "also: the target's throughput after slow start is flat (a policer's plateau)")
CONGESTION = rule("throttling.congestion", Outcome.THROTTLED, Method.BANDWIDTH, 0.6, "moderate",
                  "also: the target's throughput after slow start is noisy (congestion-like, not a flat policer)")
NO_DIFFERENCE = rule("throttling.no_difference", Outcome.OK, None, 0.7, "strong",
                     "no differentiation: the target-SNI and control downloads have the same throughput distribution")
SMALL_DIFFERENCE = rule("throttling.small_difference", Outcome.OK, None, 0.5, "moderate",
                        "the KS test sees a difference but the area between the CDFs is below Wehe's threshold: "
                        "too small to call throttling (Wehe: no differentiation)")
FASTER = rule("throttling.faster", Outcome.OK, None, 0.5, "moderate",
              "the target-SNI download was faster than the controls (prioritised, not throttled)")
UNCONFIRMED = rule("throttling.unconfirmed", Outcome.INCONCLUSIVE, None, 0.0, "weak",
                   "one round showed differentiation and the other did not (or there was no second round)")
STAT_INCONCLUSIVE = rule("throttling.inconclusive", Outcome.INCONCLUSIVE, None, 0.0, "weak",
                         "Wehe's area test is above its threshold but the KS test is not significant")
TOO_SHORT = rule("throttling.too_short", Outcome.INCONCLUSIVE, None, 0.0, "weak",
                 "a download gave fewer than 3 throughput samples (the file ended too soon): no statistics")
FAILED = rule("throttling.failed", Outcome.INCONCLUSIVE, None, 0.0, "weak",
              "the target download or every control download failed: nothing to compare")
NO_DATA = rule("throttling.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak",
               "no downloads in the test keys (the name did not resolve, or the keys are unreadable)")

_BY_REASON = {
    "confirmed": CONFIRMED, "extreme": EXTREME_ONLY, "no_difference": NO_DIFFERENCE,
    "small_difference": SMALL_DIFFERENCE, "faster": FASTER, "unconfirmed": UNCONFIRMED,
    "inconclusive": STAT_INCONCLUSIVE, "too_short": TOO_SHORT, "failed": FAILED, "no_data": NO_DATA,
}


def format_bps(bps: float | None) -> str:
    if bps is None or math.isnan(bps):
        return "?"
    if bps >= 1e6:
        return f"{bps / 1e6:.2f} Mbit/s"
    return f"{bps / 1e3:.1f} kbit/s"


def _round_text(i: int, c: Comparison) -> str:
    if c.area is None:
        return f"round {i}: {c.differentiation.value}" + (f" ({c.failure})" if c.failure else "")
    ratio = "inf" if c.ratio is None or math.isinf(c.ratio) else f"{c.ratio:.1f}"
    return (f"round {i}: {c.differentiation.value}, target {format_bps(c.target_median_bps)} vs control "
            f"{format_bps(c.control_median_bps)} ({ratio}x), area {c.area:.2f} (threshold {c.area_threshold}), "
            f"KS p {c.ks_pvalue:.1e}")


def _detail(a: Assessment, probe_result: str | None) -> str:
    parts: list[str] = []
    p = a.plateau
    if a.result == "throttled" and p is not None:
        flat = f"{p.kind}, CV {p.cv:.2f}" if p.kind else "too few buckets to tell policer from congestion"
        parts.append(f"plateau {format_bps(p.rate_bps)} ({flat})")
    if a.extreme:
        parts.append("extreme (>= 10x slower)")
    parts += [_round_text(i + 1, c) for i, c in enumerate(a.rounds)]
    parts += list(a.notes)
    if probe_result and probe_result != a.result:
        parts.append(f"the probe concluded {probe_result}")
    return "; ".join(parts)


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    tk = throttling_keys(m.test_keys)
    host = (tk.target_host if tk is not None else None) or m.input or "throttling"
    if tk is None or not tk.downloads:
        why = f"the probe reports {tk.failure}" if tk is not None and tk.failure else "no downloads recorded"
        return [make_verdict(m, host, NO_DATA, detail=why, domain=host)]
    a = assess(tk.downloads)
    decided_by = _BY_REASON[a.reason]
    fired: list[str] = []
    confidence = None
    if a.result == "throttled":
        if a.extreme:
            fired.append(EXTREME.rule_id)
            confidence = max(decided_by.confidence, EXTREME.confidence) if decided_by is CONFIRMED else None
        if a.plateau is not None and a.plateau.kind == "policer":
            fired.append(POLICER.rule_id)
        elif a.plateau is not None and a.plateau.kind == "congestion":
            fired.append(CONGESTION.rule_id)
    labels = {download_label(d) for d in tk.downloads if d is not None}
    decisive = [o.observation_id for o in observations if o.kind == "http" and o.target in labels]
    probe_result = tk.summary.result if tk.summary is not None else None
    return [make_verdict(m, host, decided_by, fired=fired, decisive=decisive, detail=_detail(a, probe_result),
                         confidence=confidence, domain=host)]

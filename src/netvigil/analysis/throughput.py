"""Throughput statistics for the throttling test: 0.25 s buckets, Wehe's area and KS tests, OONI's 10x rule, and
the policer/congestion split. Pure functions over the samples the probe recorded; no I/O.

Facts this follows (docs/nettest-throttling.md has the sources):

- Wehe (Kakhki et al., Li et al.) compares two replays by their throughput in 0.25 s intervals. The *area test*
  is the area between the two empirical throughput CDFs divided by the smaller of the two maximum throughputs
  (Wehe's analysis code: ``area / min(max1, max2)``); the threshold is 0.5, or 0.3 when either replay's average
  throughput is above 10 Mbit/s. The *KS test* is the two-sample Kolmogorov-Smirnov test, significant at
  p < 0.01. Both significant: differentiation; area large but KS not significant: inconclusive; area small:
  no differentiation. Differentiation and inconclusive results are confirmed by a rerun.
- OONI's throttling methodology calls a slowdown of 10x or more *extreme throttling*; a policer converges to a
  flat rate while congestion is noisy.

The area between two empirical CDFs is the first Wasserstein distance, so ``scipy.stats.wasserstein_distance``
computes it, and ``scipy.stats.ks_2samp`` the KS test (scipy is imported on first use: importing the analysis
must stay cheap for tests that never need it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from netvigil.model.throughput import ThrottlingDownload, ThroughputSample

__all__ = [
    "Assessment",
    "Comparison",
    "DEFAULT_PARAMS",
    "Differentiation",
    "Plateau",
    "ThroughputParams",
    "assess",
    "bucket_rates",
    "cdf_area",
    "compare",
    "compare_round",
    "decide",
    "ks_pvalue",
    "needs_rerun",
    "plateau",
    "round_rates",
]


@dataclass(frozen=True, slots=True)
class ThroughputParams:
    """Every number the decision uses, under one id: change a value, change the id."""

    params_id: str = "throughput.wehe.v1"
    bucket_seconds: float = 0.25          # Wehe's throughput interval
    area_threshold: float = 0.5           # Wehe's default area threshold
    area_threshold_fast: float = 0.3      # ... when either average throughput is above fast_bps
    fast_bps: float = 10e6
    ks_alpha: float = 0.01                # Wehe: KS p-value below 1 %
    extreme_ratio: float = 10.0           # OONI: "extreme" throttling is a 10x slowdown or more
    policer_cv: float = 0.25              # a policer's plateau: 0.25 s buckets within ~25 % of their mean
    slow_start_buckets: int = 2           # buckets skipped before the plateau (TCP slow start, a policer's burst)
    min_buckets: int = 3                  # fewer samples than this per side: no statistics
    min_interval_fraction: float = 0.5    # a trailing interval shorter than half a bucket is not a sample


DEFAULT_PARAMS = ThroughputParams()


# -- samples -> buckets ---------------------------------------------------------------------------------------------

def _counter(sample: ThroughputSample, direction: str, tcp: bool) -> int | None:
    if tcp:
        info = sample.tcp_info
        if info is None:
            return None
        return info.bytes_received if direction == "download" else info.bytes_acked
    return sample.app_info.num_bytes if sample.app_info is not None else None


def _elapsed(sample: ThroughputSample) -> int | None:
    if sample.app_info is not None and sample.app_info.elapsed_time is not None:
        return sample.app_info.elapsed_time
    return sample.tcp_info.elapsed_time if sample.tcp_info is not None else None


def bucket_rates(samples: Sequence[ThroughputSample] | None, *, direction: str = "download",
                 params: ThroughputParams = DEFAULT_PARAMS) -> list[float]:
    """Throughput (bit/s) of each interval between consecutive samples, oldest first.

    The kernel's TCP counters are used when every sample has them (they count bytes as they arrive, while the
    application sees a TLS record only once all of it is in: at 130 kbit/s a 16 KiB record takes a second);
    otherwise the application's byte counts. A trailing interval shorter than half a bucket is dropped."""
    usable = [s for s in samples or () if s is not None and _elapsed(s) is not None]
    usable.sort(key=lambda s: _elapsed(s) or 0)
    tcp = bool(usable) and all(_counter(s, direction, True) is not None for s in usable)
    points = [(_elapsed(s) or 0, _counter(s, direction, tcp)) for s in usable]
    points = [(t, b) for t, b in points if b is not None]
    shortest = params.bucket_seconds * params.min_interval_fraction
    rates: list[float] = []
    for (t0, b0), (t1, b1) in zip(points, points[1:]):
        dt = (t1 - t0) / 1e6
        if dt < shortest:
            continue
        rates.append(max(0, b1 - b0) * 8 / dt)
    return rates


# -- Wehe's tests -----------------------------------------------------------------------------------------------------

def cdf_area(a: Sequence[float], b: Sequence[float]) -> float:
    """Area between the empirical CDFs of `a` and `b`, over the smaller of their maxima (Wehe's area test)."""
    from scipy.stats import wasserstein_distance

    area = float(wasserstein_distance(a, b))
    scale = min(max(a), max(b))
    if scale <= 0:
        return math.inf if area > 0 else 0.0
    return area / scale


def ks_pvalue(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (scipy; exact for small samples)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(a, b).pvalue)


class Differentiation(StrEnum):
    YES = "yes"                      # both tests significant, target slower: throttling in this round
    FASTER = "faster"                # both significant, target faster (prioritised, not throttled)
    INCONCLUSIVE = "inconclusive"    # large area, KS not significant
    SMALL = "small"                  # KS significant, area small: a difference too small to matter (Wehe: none)
    NO = "no"
    TOO_SHORT = "too_short"          # too few buckets on one side
    FAILED = "failed"                # the target's download, or every control download, failed


@dataclass(frozen=True, slots=True)
class Comparison:
    """One round: the target download's buckets against the pooled control downloads' buckets."""

    differentiation: Differentiation
    area: float | None = None
    area_threshold: float | None = None
    ks_pvalue: float | None = None
    target_median_bps: float | None = None
    control_median_bps: float | None = None
    ratio: float | None = None                 # control median / target median
    extreme: bool = False
    failure: str | None = None                 # for FAILED: the first failure
    n_target: int = 0
    n_control: int = 0


def compare(target: Sequence[float], control: Sequence[float], params: ThroughputParams = DEFAULT_PARAMS,
            ) -> Comparison:
    """Wehe's decision for one pair of throughput samples, with OONI's 10x ratio beside it."""
    n_t, n_c = len(target), len(control)
    if n_t < params.min_buckets or n_c < params.min_buckets:
        return Comparison(Differentiation.TOO_SHORT, n_target=n_t, n_control=n_c)
    t_med, c_med = statistics.median(target), statistics.median(control)
    ratio = c_med / t_med if t_med > 0 else math.inf
    fast = max(statistics.fmean(target), statistics.fmean(control)) > params.fast_bps
    threshold = params.area_threshold_fast if fast else params.area_threshold
    area = cdf_area(target, control)
    p = ks_pvalue(target, control)
    slower = statistics.fmean(target) < statistics.fmean(control)
    if area >= threshold and p < params.ks_alpha:
        outcome = Differentiation.YES if slower else Differentiation.FASTER
    elif area >= threshold:
        outcome = Differentiation.INCONCLUSIVE
    elif p < params.ks_alpha:
        outcome = Differentiation.SMALL
    else:
        outcome = Differentiation.NO
    return Comparison(outcome, area=area, area_threshold=threshold, ks_pvalue=p, target_median_bps=t_med,
                      control_median_bps=c_med, ratio=ratio, extreme=slower and ratio >= params.extreme_ratio,
                      n_target=n_t, n_control=n_c)


def needs_rerun(c: Comparison) -> bool:
    """Wehe reruns after a differentiation or an inconclusive result; the rerun must agree."""
    return c.differentiation in (Differentiation.YES, Differentiation.INCONCLUSIVE) or c.extreme


# -- plateau ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Plateau:
    rate_bps: float
    cv: float | None                 # coefficient of variation of the buckets after slow start
    kind: str | None                 # "policer" (flat) | "congestion" (noisy) | None (too few buckets)
    buckets: int


def plateau(rate_lists: Iterable[Sequence[float]], params: ThroughputParams = DEFAULT_PARAMS) -> Plateau | None:
    """The target's rate after slow start, over all its downloads: mean bucket rate and how flat it is."""
    after: list[float] = []
    everything: list[float] = []
    for rates in rate_lists:
        everything += rates
        after += rates[params.slow_start_buckets:]
    if not everything:
        return None
    if len(after) < params.min_buckets:
        return Plateau(statistics.fmean(everything), None, None, len(everything))
    mean = statistics.fmean(after)
    if mean <= 0:
        return Plateau(0.0, None, None, len(after))
    cv = statistics.pstdev(after) / mean
    return Plateau(mean, cv, "policer" if cv <= params.policer_cv else "congestion", len(after))


# -- downloads -> rounds -> decision --------------------------------------------------------------------------------------

def round_rates(downloads: Sequence[ThrottlingDownload], round_no: int, params: ThroughputParams = DEFAULT_PARAMS,
                ) -> tuple[list[float] | None, list[float] | None, str | None]:
    """(target buckets, pooled control buckets, first failure) of one round; None for a side whose downloads all
    failed (or are missing)."""
    target: list[float] | None = None
    control: list[float] = []
    failure: str | None = None
    controls_ok = 0
    for d in downloads:
        if d.round != round_no:
            continue
        if d.failure:
            failure = failure or f"{d.variant}: {d.failure}"
            continue
        rates = bucket_rates(d.samples, params=params)
        if d.variant == "target_sni":
            target = rates
        else:
            control += rates
            controls_ok += 1
    if controls_ok == 0:
        return target, None, failure or "no control download"
    return target, control, failure


def compare_round(downloads: Sequence[ThrottlingDownload], round_no: int,
                  params: ThroughputParams = DEFAULT_PARAMS) -> Comparison:
    target, control, failure = round_rates(downloads, round_no, params)
    if target is None or control is None:
        return Comparison(Differentiation.FAILED, failure=failure or "no target download")
    return compare(target, control, params)


@dataclass(frozen=True, slots=True)
class Assessment:
    """The whole measurement: its rounds, the conclusion and why, the target's plateau."""

    result: str                      # throttled | ok | inconclusive
    reason: str                      # confirmed | extreme | no_difference | small_difference | faster |
                                     # unconfirmed | inconclusive | too_short | failed | no_data
    rounds: tuple[Comparison, ...] = ()
    plateau: Plateau | None = None
    extreme: bool = False
    params_id: str = DEFAULT_PARAMS.params_id
    notes: tuple[str, ...] = field(default=())


_OK_REASONS = {Differentiation.NO: "no_difference", Differentiation.SMALL: "small_difference",
               Differentiation.FASTER: "faster"}


def decide(rounds: Sequence[Comparison]) -> tuple[str, str]:
    """(result, reason) from the rounds in order: throttling needs two agreeing rounds (Wehe's confirmation), by
    Wehe's tests or by OONI's 10x rule; a first round without differentiation is ok; anything else inconclusive."""
    if not rounds:
        return "inconclusive", "no_data"
    first = rounds[0]
    if first.differentiation in _OK_REASONS and not first.extreme:
        return "ok", _OK_REASONS[first.differentiation]
    if first.differentiation is Differentiation.TOO_SHORT:
        return "inconclusive", "too_short"
    if first.differentiation is Differentiation.FAILED:
        return "inconclusive", "failed"
    if len(rounds) < 2:
        return "inconclusive", "unconfirmed" if first.differentiation is Differentiation.YES else "inconclusive"
    second = rounds[1]
    if first.differentiation is Differentiation.YES and second.differentiation is Differentiation.YES:
        return "throttled", "confirmed"
    if first.extreme and second.extreme:
        return "throttled", "extreme"
    if second.differentiation is Differentiation.FAILED:
        return "inconclusive", "failed"
    if first.differentiation is Differentiation.INCONCLUSIVE and second.differentiation in _OK_REASONS:
        return "ok", _OK_REASONS[second.differentiation]
    if second.differentiation is Differentiation.TOO_SHORT:
        return "inconclusive", "too_short"
    if first.differentiation is Differentiation.INCONCLUSIVE and second.differentiation is Differentiation.INCONCLUSIVE:
        return "inconclusive", "inconclusive"
    return "inconclusive", "unconfirmed"


def assess(downloads: Sequence[ThrottlingDownload] | None, params: ThroughputParams = DEFAULT_PARAMS) -> Assessment:
    """Judge a throttling measurement from its downloads alone (the probe's own summary is never read)."""
    downloads = [d for d in downloads or () if d is not None]
    round_numbers = sorted({d.round for d in downloads if d.round is not None})
    if not round_numbers:
        return Assessment("inconclusive", "no_data", params_id=params.params_id)
    rounds = tuple(compare_round(downloads, r, params) for r in round_numbers)
    result, reason = decide(rounds)
    target_rates = [bucket_rates(d.samples, params=params) for d in downloads
                    if d.variant == "target_sni" and not d.failure]
    plat = plateau(target_rates, params)
    notes = tuple(f"round {i + 1}: {c.failure}" for i, c in enumerate(rounds) if c.failure)
    return Assessment(result, reason, rounds, plat, all(c.extreme for c in rounds[:2]) if len(rounds) >= 2 else
                      bool(rounds[0].extreme), params.params_id, notes)

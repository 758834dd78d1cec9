"""Outage detection on any `Signal`, in the style IODA documents: a ratio to a robust baseline, held for a
minimum number of rounds, with the baseline protected from the outage itself.

For each round i (one point of the series) the baseline b[i] is the median of the *history* before i: either all
points of the past 7 days ("moving-median") or only the points at the same time of day on each of the past 7 days
("time-of-day", for signals with a daily cycle; ``tod_spread`` rounds either side of that time are pooled in to
steady the median). The round is *below* when value/b < threshold (0.8; 0.5 for a BGP-like signal, whose
visibility only falls when prefixes are withdrawn). An outage is declared once ``min_rounds_start`` rounds in a row
are below; it starts at the first of them. It ends at the first of ``min_rounds_end`` rounds in a row back at or
above the threshold. Missing points (None) neither extend nor break a
run: they are skipped. While an outage lasts (up to ``max_inpaint_s``), the history is fed the baseline's own
prediction instead of the observed value ("inpainting"), so a long outage does not drag the baseline down and end
itself; after that the observed values go in and a lasting new level becomes the norm. The event's score is IODA's
alert area: the sum over its rounds of (1 - value/baseline) x minutes per round (IODA's tables show the same sum
with the drop in percent, i.e. 100 times this number).

Everything here is pure: records in, records out. Parameters are data (`OutageParams`, loadable from a mapping
read from TOML by the caller), and `DETECTOR_ID` names the method on every event it makes.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from netvigil.model.signal import OutageEvent, Signal

__all__ = [
    "BASELINES", "DETECTOR_ID", "DetectorConfig", "OutageParams", "SignalDetection",
    "config_from_mapping", "detect_outages", "detect_signal", "merge_signals", "signal_key",
]

DETECTOR_ID = "netvigil-outage/1"
BASELINES = ("moving-median", "time-of-day")
DAY = 86_400


@dataclass(frozen=True)
class OutageParams:
    """The detector's knobs. Defaults follow IODA's published rule; a round is one point of the signal."""

    baseline: str = "moving-median"      # "moving-median" | "time-of-day"
    window_s: int = 7 * DAY              # how far back the baseline looks
    ratio_threshold: float = 0.8         # below: value/baseline < this
    bgp_ratio_threshold: float = 0.5     # the same for signals flagged bgp_like
    min_rounds_start: int = 2            # rounds in a row below before an outage is declared
    min_rounds_end: int = 2              # rounds in a row back above before it is over
    max_inpaint_s: int = 7 * DAY         # feed the baseline its prediction for at most this long into an outage
    min_history_s: int = DAY             # moving-median: at least this much (non-missing) history before judging
    min_tod_days: int = 3                # time-of-day: at least this many past days with a point at that time
    tod_spread: int = 1                  # time-of-day: also use this many rounds either side of that time

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {self.baseline!r}")
        for name in ("window_s", "min_rounds_start", "min_rounds_end", "min_tod_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("max_inpaint_s", "min_history_s", "tod_spread"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("ratio_threshold", "bgp_ratio_threshold"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1]")

    def threshold_for(self, signal: Signal) -> float:
        return self.bgp_ratio_threshold if signal.bgp_like else self.ratio_threshold


@dataclass(frozen=True)
class DetectorConfig:
    """Default parameters plus per-datasource overrides (exact datasource name, e.g. "ioda:merit-nt")."""

    default: OutageParams = OutageParams()
    by_datasource: Mapping[str, OutageParams] = field(default_factory=dict)

    def params_for(self, datasource: str) -> OutageParams:
        return self.by_datasource.get(datasource, self.default)


_FIELDS = {f.name: f.type for f in dataclasses.fields(OutageParams)}


def _params_from(table: Mapping[str, Any], base: OutageParams, where: str) -> OutageParams:
    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(_FIELDS)})")
    values: dict[str, Any] = {}
    for name, value in table.items():
        want = type(getattr(base, name))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool):
            raise ValueError(f"{where}: {name} must be a {want.__name__}, not {value!r}")
        values[name] = value
    return dataclasses.replace(base, **values)


def config_from_mapping(doc: Mapping[str, Any]) -> DetectorConfig:
    """A `DetectorConfig` from a parsed TOML document. The settings sit at the top level or under ``[outages]``;
    ``[outages.datasource."<name>"]`` tables override them for one datasource. Raises ValueError on unknown keys
    or wrong types, so a typo is never silently ignored."""
    table = doc.get("outages", doc)
    if not isinstance(table, Mapping):
        raise ValueError("[outages] must be a table")
    per_source = table.get("datasource", {})
    if not isinstance(per_source, Mapping):
        raise ValueError("[outages.datasource] must be a table of tables")
    default = _params_from({k: v for k, v in table.items() if k != "datasource"}, OutageParams(), "[outages]")
    overrides = {}
    for name, sub in per_source.items():
        if not isinstance(sub, Mapping):
            raise ValueError(f'[outages.datasource."{name}"] must be a table')
        overrides[name] = _params_from(sub, default, f'[outages.datasource."{name}"]')
    return DetectorConfig(default=default, by_datasource=overrides)


class _SortedWindow:
    """A multiset of floats kept sorted: insert, remove and median in O(log n) + a memmove."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[float] = []

    def add(self, x: float) -> None:
        insort(self.items, x)

    def remove(self, x: float) -> None:
        i = bisect_left(self.items, x)
        if i < len(self.items) and self.items[i] == x:
            del self.items[i]

    def median(self) -> float:
        items, n = self.items, len(self.items)
        mid = n // 2
        return items[mid] if n % 2 else (items[mid - 1] + items[mid]) / 2.0


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2.0


@dataclass
class SignalDetection:
    """What the detector saw on one signal: the events, and per round the baseline and whether it was below
    (None where it could not judge: a missing point or too little history). Kept for charts and evidence."""

    signal: Signal
    events: list[OutageEvent]
    baseline: list[float | None]
    below: list[bool | None]
    baseline_mode: str
    threshold: float


def _clean(v: float | None) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def detect_signal(signal: Signal, params: OutageParams | None = None) -> SignalDetection:
    """Run the detector over one signal, oldest point first, as it would run live."""
    p = params or OutageParams()
    step = signal.step
    if step <= 0:
        raise ValueError(f"signal {signal.entity_type}/{signal.entity_code} {signal.datasource}: step must be > 0")
    values = [_clean(v) for v in signal.values]
    n = len(values)
    thr = p.threshold_for(signal)
    mode = p.baseline
    period = DAY // step if DAY % step == 0 else 0
    if mode == "time-of-day" and period < 1:
        mode = "moving-median"           # a daily profile needs whole rounds per day; fall back, say so in detail
    window = max(1, p.window_s // step)
    days = max(1, p.window_s // DAY)
    min_points = max(1, math.ceil(p.min_history_s / step))
    max_inpaint = p.max_inpaint_s // step
    spread = min(p.tod_spread, max(0, period // 2 - 1)) if period else 0

    hist: list[float | None] = []        # what the baseline sees: observed values, or predictions while in outage
    sw = _SortedWindow()                 # moving-median: the non-missing history of the last `window` rounds
    baseline: list[float | None] = [None] * n
    below_flags: list[bool | None] = [None] * n
    events: list[OutageEvent] = []

    def set_hist(j: int, x: float | None) -> None:
        old = hist[j]
        hist[j] = x
        if mode == "moving-median" and j >= len(hist) - window:
            if old is not None:
                sw.remove(old)
            if x is not None:
                sw.add(x)

    def baseline_at(i: int) -> float | None:
        if mode == "moving-median":
            if len(sw.items) < min_points:
                return None
            return sw.median()
        got: list[float] = []
        n_days = 0
        for k in range(1, days + 1):
            centre = i - k * period
            if centre < 0:
                break
            day = [x for j in range(max(0, centre - spread), min(i, centre + spread + 1))
                   if (x := hist[j]) is not None]
            if day:
                n_days += 1
                got.extend(day)
        if n_days < p.min_tod_days:
            return None
        return _median(got)

    in_outage = False
    start = -1
    pending: list[int] = []              # below rounds not yet declared an outage
    recovering: list[int] = []           # rounds back above, not yet enough to end the outage

    def emit(end_index: int | None) -> None:
        stop = n if end_index is None else end_index
        minutes = step / 60.0
        score = 0.0
        min_ratio = math.inf
        rounds = 0
        for j in range(start, stop):
            v, b = values[j], baseline[j]
            if v is None or b is None or b <= 0:
                continue
            r = v / b
            min_ratio = min(min_ratio, r)
            if below_flags[j]:
                rounds += 1
            score += max(0.0, 1.0 - r) * minutes
        detail = {
            "baseline": mode, "threshold": f"{thr:g}", "step_s": str(step), "rounds_below": str(rounds),
            "min_ratio": f"{min_ratio:.4f}" if math.isfinite(min_ratio) else "",
            "baseline_at_start": f"{baseline[start]:.6g}" if baseline[start] is not None else "",
        }
        if mode != p.baseline:
            detail["baseline_requested"] = p.baseline
        events.append(OutageEvent(
            entity_type=signal.entity_type, entity_code=signal.entity_code,
            start=signal.time_of(start), end=None if end_index is None else signal.time_of(end_index),
            datasource=signal.datasource, source="detector", score=round(score, 3), country=signal.country,
            asns=[signal.asn] if signal.asn else [], method=f"{DETECTOR_ID}:{mode}", detail=detail,
        ))

    for i in range(n):
        if mode == "moving-median" and i - window - 1 >= 0:
            old = hist[i - window - 1]
            if old is not None:
                sw.remove(old)
        b = baseline_at(i)
        baseline[i] = b
        v = values[i]
        if v is None or b is None or b <= 0:
            # Cannot judge this round. In an outage the history still gets the prediction (when there is one).
            hist.append(b if (in_outage and b is not None and i - start < max_inpaint) else v)
            if mode == "moving-median" and hist[-1] is not None:
                sw.add(hist[-1])
            continue
        below = v / b < thr
        below_flags[i] = below
        feed: float | None = v
        if not in_outage:
            if below:
                pending.append(i)
                if len(pending) >= p.min_rounds_start:
                    in_outage, start = True, pending[0]
                    recovering = []
                    if max_inpaint > 0:
                        for j in pending[:-1]:
                            set_hist(j, baseline[j])
                        feed = b
                    pending = []
            else:
                pending = []
        else:
            if below:
                recovering = []
                if i - start < max_inpaint:
                    feed = b
            else:
                recovering.append(i)
                if len(recovering) >= p.min_rounds_end:
                    emit(recovering[0])
                    in_outage, start, recovering = False, -1, []
        hist.append(feed)
        if mode == "moving-median":
            sw.add(feed)
    if in_outage:
        emit(None)
    return SignalDetection(signal=signal, events=events, baseline=baseline, below=below_flags,
                           baseline_mode=mode, threshold=thr)


def detect_outages(signals: Iterable[Signal], config: DetectorConfig | OutageParams | None = None) -> list[OutageEvent]:
    """Events on every signal, each judged with the parameters for its datasource; ordered by start, entity."""
    cfg = config if isinstance(config, DetectorConfig) else DetectorConfig(default=config or OutageParams())
    out: list[OutageEvent] = []
    for s in signals:
        out.extend(detect_signal(s, cfg.params_for(s.datasource)).events)
    out.sort(key=lambda e: (e.start, e.entity_type, e.entity_code, e.datasource))
    return out


def signal_key(s: Signal) -> tuple[str, str, str, str, int, int]:
    """Series that can be joined into one: same entity (and network, for a region measured inside one),
    datasource, step and phase."""
    return (s.entity_type, s.entity_code, s.asn or "", s.datasource, s.step, s.start % s.step if s.step > 0 else 0)


def merge_signals(signals: Iterable[Signal]) -> list[Signal]:
    """Join pieces of the same series (imported week by week, or re-imported) into one continuous series per
    `signal_key`. Gaps become None; where pieces overlap, a later piece's non-missing value wins."""
    groups: dict[tuple[str, str, str, str, int, int], list[Signal]] = {}
    for s in signals:
        groups.setdefault(signal_key(s), []).append(s)
    merged: list[Signal] = []
    for key, parts in groups.items():
        step = key[4]
        if len(parts) == 1 or step <= 0:
            merged.extend(parts)
            continue
        first = min(p.start for p in parts)
        last = max(p.until for p in parts)
        values: list[float | None] = [None] * ((last - first) // step)
        for part in parts:
            offset = (part.start - first) // step
            for k, v in enumerate(part.values):
                if v is not None:
                    values[offset + k] = v
        base = parts[-1]
        country = next((p.country for p in reversed(parts) if p.country), None)
        merged.append(Signal(entity_type=base.entity_type, entity_code=base.entity_code, datasource=base.datasource,
                             start=first, step=step, values=values, country=country,
                             bgp_like=any(p.bgp_like for p in parts), asn=base.asn))
    merged.sort(key=lambda s: (s.entity_type, s.entity_code, s.asn or "", s.datasource, s.start))
    return merged

"""Onset and end of blocking (or throttling) per network x target: a two-state change-point rule over the verdict
stream, with an explicit evidence requirement.

One series is the time-ordered verdicts of one (country, ASN, region, target). Only conclusive verdicts count:
``blocked`` and ``throttled`` are *bad*, ``ok`` is *good*; ``down`` and ``inconclusive`` (the site is down for the
control too, or nothing could be compared) neither start nor end anything. The series is clear until a run of bad
verdicts meets the rule, then blocked until a run of good verdicts meets it:

- among the last ``window`` conclusive verdicts, at least ``min_measurements`` speak for the new state,
- they are at least ``min_share`` of that window (one odd verdict inside a stretch is tolerated),
- they come from at least ``min_reports`` distinct reports (OONI identifies no probes, by design: independent runs
  stand in for independent probes, so one broken run cannot make an incident).

The change is dated at the window's first verdict of the new state (so the error is at most one probing round), and
the verdicts that met the rule, plus the last verdict of the old state before them, are kept as evidence. One refinement
dates onsets more closely: an inconclusive verdict whose probe failed the way blocking makes it fail, but without a
control to compare (*weak*, e.g. Web Connectivity's `wc.control.missing`), never counts for the rule, yet when it
lies between the last good verdict and the first bad one it is the earliest sign of the change and dates the start. The rule is online: a
series that is blocked at the end of the data stays open (an ongoing incident), and appending data never moves an
earlier decision.

What counts as bad, good or neutral in a pass (throttled pages, failures the network rule gives to the network) is
decided by the caller (``detect.py``); this module only reads the flags.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["BlockingRule", "Episode", "Point", "detect_episodes"]


@dataclass(frozen=True, slots=True)
class BlockingRule:
    # v2: in the blocking pass a throttled page counts as good and an unreached probe without control may repeat a
    # DNS/TCP blocking (detect.py); v1 read throttled pages as neutral. The window rule itself is unchanged.
    rule_id: str = "inc.blocking.v2"
    min_measurements: int = 3
    min_share: float = 0.6
    min_reports: int = 2
    window: int = 4          # conclusive verdicts looked at together


@dataclass(frozen=True, slots=True)
class Point:
    """One conclusive verdict of a series."""

    time: dt.datetime
    uid: str
    report: str
    bad: bool
    outcome: str
    method: str | None = None
    confidence: float = 0.0
    weak: bool = False    # inconclusive, but the probe failed where blocking would make it fail (no control)
    neutral: bool = False # says nothing in this pass (blocked, in the throttling pass; a network's failure)
    rule: str = ""        # the verdict's deciding rule (what kind of failure it was: detect.py's network rule)


@dataclass(slots=True)
class Episode:
    """One blocked stretch of one series."""

    start: dt.datetime
    end: dt.datetime | None
    start_evidence: list[Point]
    end_evidence: list[Point] = field(default_factory=list)
    before_start: Point | None = None  # the last good verdict before the onset
    before_end: Point | None = None    # the last bad verdict before the end
    methods: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    bad: int = 0
    good: int = 0
    confidence_sum: float = 0.0
    last_bad: Point | None = None      # the latest bad verdict (dates an end that could not be observed)
    end_observed: bool = True          # False: closed at last_bad because the network went dark (detect.py)
    earliest_sign: Point | None = None # a weak failure that dates the start before the first bad verdict

    @property
    def confidence(self) -> float:
        """Mean verdict confidence of the bad verdicts, scaled by how consistently bad the stretch was."""
        if not self.bad:
            return 0.0
        return round(self.confidence_sum / (self.bad + self.good), 3)


def detect_episodes(points: Iterable[Point], rule: BlockingRule = BlockingRule()) -> list[Episode]:
    """The blocked stretches of one time-ordered series (pure; see the module doc for the rule)."""
    episodes: list[Episode] = []
    blocked = False
    window: list[Point] = []
    last_same: Point | None = None  # the latest verdict of the current state that left the window
    current: Episode | None = None
    trouble: Point | None = None  # clear state: a weak point directly before the latest bad one
    last_weak: Point | None = None  # the latest weak point with nothing conclusive after it
    for p in points:
        if p.weak:
            last_weak = p
            continue
        if p.neutral:
            last_weak = None
            continue
        if not blocked and p.bad and last_weak is not None and trouble is None:
            trouble = last_weak
        elif not blocked and not p.bad:
            trouble = None
        last_weak = None
        if current is not None:
            _count(current, p)
        window.append(p)
        if len(window) > rule.window:
            left = window.pop(0)
            if left.bad == blocked:
                last_same = left
        new = [q for q in window if q.bad != blocked]
        if (len(new) < rule.min_measurements or len(new) < rule.min_share * len(window)
                or len({q.report for q in new}) < rule.min_reports):
            continue
        # The change happened after the window's last verdict of the old state: date it at the first verdict of
        # the new state after that one (an odd early verdict, followed by one of the old state, is noise).
        old_state = [q for q in window if q.bad == blocked]
        first = next((q for q in new if not old_state or q.time > old_state[-1].time), new[0])
        before = old_state[-1] if old_state else last_same
        if not blocked:
            # A weak failure directly before the first bad verdict (nothing conclusive between) is the earliest
            # sign of the change, and dates the start.
            start = trouble.time if trouble is not None and trouble.time < first.time and (
                before is None or trouble.time > before.time) else first.time
            proof = [q for q in new if q.time >= first.time] or new
            current = Episode(start=start, end=None, start_evidence=proof[: rule.min_measurements],
                              before_start=before, earliest_sign=trouble if start != first.time else None)
            for q in window:
                if q.time >= first.time:
                    _count(current, q)
            episodes.append(current)
        else:
            assert current is not None
            current.end = first.time
            current.end_evidence = ([q for q in new if q.time >= first.time] or new)[: rule.min_measurements]
            current.before_end = before
            # The window's verdicts from the end on were counted into the episode; they belong after it.
            for q in window:
                if q.time >= first.time:
                    _uncount(current, q)
            current = None
        blocked = not blocked
        trouble = None
        last_same = new[-1]
        window = [q for q in window if q.time > new[-1].time]
    return episodes


def _count(e: Episode, p: Point) -> None:
    if p.bad:
        e.bad += 1
        e.confidence_sum += p.confidence
        if e.last_bad is None or p.time >= e.last_bad.time:
            e.last_bad = p
        e.outcomes[p.outcome] += 1
        if p.method:
            e.methods[p.method] += 1
    else:
        e.good += 1


def _uncount(e: Episode, p: Point) -> None:
    if p.bad:
        e.bad -= 1
        e.confidence_sum -= p.confidence
        e.outcomes[p.outcome] -= 1
        if p.method:
            e.methods[p.method] -= 1
    else:
        e.good -= 1

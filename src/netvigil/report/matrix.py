"""The status matrix: one cell per local day x network x service, with the verdict counts, the state they add up to
and a few measurement uids behind it.

Days are the country's calendar days (the verdicts' times read in its zone), so a block that began at midnight in
Baku starts a new column. Outcomes are counted as `incidents.aggregates.aggregate_verdicts` counts them (the tests
hold the two to the same numbers); the matrix counts in the same pass that reads the verdicts for everything else,
with the local day and the service looked up once per hour and per target. The state rule (`MatrixRule`,
``report.matrix.v1``) reads only conclusive verdicts (ok, blocked, throttled):

- *blocked* or *throttled*: blocked + throttled are at least ``blocked_share`` (0.5) of the conclusive verdicts
  (whichever of the two is larger names it; a tie is blocked);
- *mixed*: at least ``mixed_share`` (0.2), below 0.5 (one ISP's probes disagree, or the change happened that day);
- *ok*: below ``mixed_share``;
- no conclusive verdict: *down* when verdicts saying the site fails for the control too are at least as many as the
  inconclusive ones, else *inconclusive* (e.g. a network in a shutdown, where nothing could be compared).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from netvigil.incidents.detect import parse_time
from netvigil.incidents.services import ServiceMap
from netvigil.model.verdict import Verdict
from netvigil.report.dataset import StatusCell

__all__ = ["STATES", "MatrixBuilder", "MatrixRule", "cell_state", "status_cells"]

STATES = ("ok", "blocked", "throttled", "mixed", "down", "inconclusive")
UTC = dt.timezone.utc


@dataclass(frozen=True, slots=True)
class MatrixRule:
    rule_id: str = "report.matrix.v1"
    blocked_share: float = 0.5     # bad (blocked + throttled) share of conclusive verdicts for a blocked cell
    mixed_share: float = 0.2       # ... for a mixed cell (below blocked_share)
    samples: int = 3               # measurement uids kept per cell

    def describe(self) -> str:
        return (f"{self.rule_id}: blocked/throttled when blocked+throttled >= {self.blocked_share:g} of conclusive "
                f"verdicts, mixed from {self.mixed_share:g}, ok below; no conclusive verdict: down or inconclusive")


def cell_state(ok: int, blocked: int, throttled: int, down: int, inconclusive: int,
               rule: MatrixRule = MatrixRule()) -> str:
    conclusive = ok + blocked + throttled
    if conclusive == 0:
        return "down" if down and down >= inconclusive else "inconclusive"
    bad = (blocked + throttled) / conclusive
    if bad >= rule.blocked_share:
        return "blocked" if blocked >= throttled else "throttled"
    if bad >= rule.mixed_share:
        return "mixed"
    return "ok"


_SAMPLE_ORDER = {
    "blocked": ("blocked", "throttled", "ok", "down", "inconclusive"),
    "throttled": ("throttled", "blocked", "ok", "down", "inconclusive"),
    "mixed": ("blocked", "throttled", "ok", "down", "inconclusive"),
    "ok": ("ok", "blocked", "throttled", "down", "inconclusive"),
    "down": ("down", "inconclusive", "ok", "blocked", "throttled"),
    "inconclusive": ("inconclusive", "down", "ok", "blocked", "throttled"),
}
_INDEX = {"ok": 1, "blocked": 2, "throttled": 3, "down": 4, "inconclusive": 5}


class MatrixBuilder:
    """Counts verdicts into cells as they stream by (one network after another keeps memory at one cell per day x
    network x service). Outcomes are counted as `aggregate_verdicts` counts them; days are local to ``tz``."""

    def __init__(self, services: ServiceMap, *, tz: dt.tzinfo = UTC, rule: MatrixRule = MatrixRule()) -> None:
        self.services = services
        self.tz = tz
        self.rule = rule
        self._offsets: dict[str, dt.timedelta] = {}      # per UTC hour: zones change offset on the hour
        self._service: dict[tuple, str] = {}
        # key -> [total, ok, blocked, throttled, down, inconclusive], methods, samples per outcome
        self._counts: dict[tuple, list[int]] = {}
        self._methods: dict[tuple, Counter[str]] = defaultdict(Counter)
        self._samples: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))

    def day_of(self, text: str | None, t: dt.datetime) -> dt.date:
        hour = (text or "")[:13]
        offset = self._offsets.get(hour)
        if offset is None:
            offset = self._offsets[hour] = t.astimezone(self.tz).utcoffset() or dt.timedelta(0)
        return (t + offset).date()

    def add(self, v: Verdict, t: dt.datetime | None = None) -> None:
        """One verdict (``t``: its start time, if the caller parsed it already)."""
        t = t or parse_time(v.measurement_start_time)
        if t is None:
            return
        skey = (v.test_name, v.target, v.domain)
        service = self._service.get(skey)
        if service is None:
            service = self._service[skey] = self.services.service_of(v.test_name, v.target, v.domain)
        key = (self.day_of(v.measurement_start_time, t), v.probe_asn or "", service)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0, 0, 0, 0, 0, 0]
        counts[0] += 1
        outcome = v.outcome if v.outcome in _INDEX else "inconclusive"
        counts[_INDEX[outcome]] += 1
        if outcome in ("blocked", "throttled") and v.method:
            self._methods[key][v.method] += 1
        kept = self._samples[key][outcome]
        if len(kept) < self.rule.samples and v.measurement_uid not in kept:
            kept.append(v.measurement_uid)

    def cells(self) -> list[StatusCell]:
        """The cells so far, ordered by (day, ASN, service)."""
        out = []
        for key in sorted(self._counts):
            total, ok, blocked, throttled, down, inconclusive = self._counts[key]
            state = cell_state(ok, blocked, throttled, down, inconclusive, self.rule)
            picked: list[str] = []
            for outcome in _SAMPLE_ORDER[state]:
                for uid in self._samples[key].get(outcome, ()):
                    if len(picked) < self.rule.samples and uid not in picked:
                        picked.append(uid)
            methods = self._methods.get(key, Counter())
            out.append(StatusCell(
                day=key[0], asn=key[1], service=key[2], state=state, total=total, ok=ok, blocked=blocked,
                throttled=throttled, down=down, inconclusive=inconclusive,
                methods=[m for m, _ in sorted(methods.items(), key=lambda kv: (-kv[1], kv[0]))],
                sample_uids=picked))
        return out


def status_cells(verdicts: Iterable[Verdict], services: ServiceMap, *, tz: dt.tzinfo = UTC,
                 rule: MatrixRule = MatrixRule()) -> list[StatusCell]:
    """Cells for ``verdicts``, ordered by (day, ASN, service)."""
    b = MatrixBuilder(services, tz=tz, rule=rule)
    for v in verdicts:
        b.add(v)
    return b.cells()

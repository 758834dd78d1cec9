"""Outage signals from the probes' own measurements: in a shutdown the probe keeps measuring into its spool, and
what it records is that nothing works — neither the sites nor the control helper abroad. The share of measurements
where *something* still worked, per network (and region) and round, falls to near zero; the outage detector reads it
like any other signal once the spool has been delivered.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from netvigil.incidents.detect import parse_time
from netvigil.model.signal import EntityType, Signal
from netvigil.model.verdict import Verdict

__all__ = ["BOTH_FAIL_RULES", "both_failed", "probe_signals"]

DATASOURCE = "probe:both-fail"

# Verdict rules that mean "the probe reached nothing and neither did it reach the control helper": Web
# Connectivity's `wc.control.missing.unreached` (no DNS answer or no TCP connect, no control answer). A blocked
# site with a flaky control (`wc.control.missing`: the probe got past TCP) is not an outage; nor is `down`, where the
# control was reached and the site failed for both.
BOTH_FAIL_RULES = frozenset({"wc.control.missing.unreached"})


def both_failed(v: Verdict) -> bool:
    return bool(v.rule_ids and v.rule_ids[0] in BOTH_FAIL_RULES)


def probe_signals(verdicts: Iterable[Verdict], *, step: dt.timedelta, start: dt.datetime | None = None,
                  end: dt.datetime | None = None) -> list[Signal]:
    """One signal per (country, ASN, region): per ``step`` bucket the share of measurements that did not fail for
    both probe and control (1.0 = everything reachable, 0.0 = nothing; None = no measurement in that bucket).

    Buckets are aligned to ``start`` (default: the first measurement's time floored to ``step``) and run to ``end``
    (default: the last measurement). A network whose probes sit in several regions gets one signal per region
    (entity ``region``, code ``CC/region``, ``asn`` set), so a regional cut does not look like half an ISP failing;
    a network measured in one region only is one ``asn`` signal (its region says nothing about scope). Regions of
    probes in different networks are never mixed into one signal.
    """
    seconds = int(step.total_seconds())
    if seconds <= 0:
        raise ValueError("step must be positive")
    counts: dict[tuple[str, str, str], dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    first: int | None = None
    last: int | None = None
    for v in verdicts:
        t = parse_time(v.measurement_start_time)
        if t is None or not v.probe_cc or not v.probe_asn:
            continue
        ts = int(t.timestamp())
        first = ts if first is None else min(first, ts)
        last = ts if last is None else max(last, ts)
        cell = counts[(v.probe_cc, v.probe_asn, v.probe_region or "")][ts]
        cell[0] += 1
        cell[1] += 0 if both_failed(v) else 1
    if first is None or last is None:
        return []
    origin = int(start.timestamp()) if start is not None else first - first % seconds
    stop = int(end.timestamp()) if end is not None else last + 1
    n = max(0, -(-(stop - origin) // seconds))
    regions_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for cc, asn, region in counts:
        regions_of[(cc, asn)].add(region)
    signals: list[Signal] = []
    for (cc, asn, region), cells in sorted(counts.items()):
        total = [0] * n
        fine = [0] * n
        for ts, (t_all, t_ok) in cells.items():
            i = (ts - origin) // seconds
            if 0 <= i < n:
                total[i] += t_all
                fine[i] += t_ok
        values = [None if total[i] == 0 else round(fine[i] / total[i], 4) for i in range(n)]
        if region and len(regions_of[(cc, asn)]) > 1:
            entity_type, code = EntityType.REGION.value, f"{cc}/{region}"
        else:
            entity_type, code = EntityType.ASN.value, asn
        signals.append(Signal(entity_type=entity_type, entity_code=code, datasource=DATASOURCE, start=origin,
                              step=seconds, values=values, country=cc, asn=asn))
    return signals

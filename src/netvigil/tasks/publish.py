"""Build the publication of one country and period: the store's verdicts read once (networks, status matrix,
throughput candidates, the probes' round), the incident task (`make_incidents`), measurements attached to the
probe-side outages, prices (`price_incident_list`), the timeline, the outage signals. The I/O edge of `report/` and
`web/`; everything that judges or words is a pure function in `netvigil.report`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from pathlib import Path

from netvigil.codec import BadRecord, decode_measurement
from netvigil.countries import alpha2, country_name
from netvigil.incidents.detect import IncidentParams, parse_time
from netvigil.incidents.listing import IncidentFilter
from netvigil.incidents.outages import DETECTOR_ID
from netvigil.incidents.services import ServiceMap, load_services
from netvigil.model.incident import Incident
from netvigil.model.signal import EntityType, Signal
from netvigil.model.verdict import Verdict
from netvigil.report.dataset import Network, Publication, ThroughputPoint
from netvigil.report.evidence import is_probe_outage, with_outage_measurements
from netvigil.report.matrix import MatrixBuilder, MatrixRule
from netvigil.report.summary import cost_overlaps, infer_round, total_cost
from netvigil.report.throughput import THROUGHPUT_TESTS, throughput_point
from netvigil.report.timeline import timeline_of
from netvigil.report.zones import country_timezone, timezone_named
from netvigil.store import Store, StoreError, open_store

__all__ = ["PublishError", "build_publication"]

UTC = dt.timezone.utc
_OUTAGE_LOOKAHEAD = dt.timedelta(days=2)   # how far past an outage's start/end to look for its measurements


class PublishError(ValueError):
    """A problem with what was asked (an unknown country, an empty period)."""


class _Scan:
    """What one pass over the country's verdicts collects."""

    def __init__(self, services: ServiceMap, tz: dt.tzinfo, rule: MatrixRule) -> None:
        self.matrix = MatrixBuilder(services, tz=tz, rule=rule)
        self.verdicts = 0
        self.measurements = 0
        self._last_uid: str | None = None
        self.first: dt.datetime | None = None
        self.last: dt.datetime | None = None
        self.rules_version = 0
        self.networks: dict[str, dict] = {}
        self.report_starts: dict[tuple[str, str], dict[str, dt.datetime]] = defaultdict(dict)
        self.throughput: list[tuple[str, str, str]] = []      # (uid, asn, outcome)

    def add(self, v: Verdict) -> None:
        asn = v.probe_asn or ""
        net = self.networks.get(asn)
        if net is None:
            net = self.networks[asn] = {"measurements": 0, "regions": set(), "uid": v.measurement_uid}
        self.verdicts += 1
        # The stream is ordered by (country, ASN, time, verdict id) and a verdict id starts with its measurement's
        # uid: the verdicts of one measurement are adjacent, so counting changes of uid counts measurements.
        if v.measurement_uid != self._last_uid:
            self._last_uid = v.measurement_uid
            self.measurements += 1
            net["measurements"] += 1
        if v.probe_region:
            net["regions"].add(v.probe_region)
        if v.rules_version > self.rules_version:
            self.rules_version = v.rules_version
        if v.test_name in THROUGHPUT_TESTS:
            self.throughput.append((v.measurement_uid, asn, v.outcome))
        t = parse_time(v.measurement_start_time)
        if t is None:
            return
        if self.first is None or t < self.first:
            self.first = t
        if self.last is None or t > self.last:
            self.last = t
        if v.report_id:
            starts = self.report_starts[(asn, v.probe_region or "")]
            seen = starts.get(v.report_id)
            if seen is None or t < seen:
                starts[v.report_id] = t
        self.matrix.add(v, t)


def _country(country: str) -> str:
    cc = alpha2(country)
    if cc is None:
        raise PublishError(f"unknown country {country!r}: give an ISO 3166 code such as AZ, or a country name")
    return cc


def _midnight(t: dt.datetime, tz: dt.tzinfo, *, up: bool) -> dt.datetime:
    """The local midnight at or before ``t`` (``up``: at or after it), in UTC."""
    lt = t.astimezone(tz)
    day = lt.date()
    if up and lt.time() != dt.time():
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(), tz).astimezone(UTC)


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _network_name(store: Store, uid: str | None) -> str:
    if not uid:
        return ""
    try:
        raw = store.get_raw(uid)
        if raw is None:
            return ""
        return decode_measurement(raw, test_keys_for=()).envelope.probe_network_name or ""
    except (BadRecord, StoreError):  # a name is a nicety: an unreadable record must not stop the publication
        return ""


def _throughput(store: Store, candidates: list[tuple[str, str, str]]) -> tuple[list[ThroughputPoint], int]:
    points: list[ThroughputPoint] = []
    unreadable = 0
    for uid, asn, outcome in candidates:
        try:
            raw = store.get_raw(uid)
            m = decode_measurement(raw) if raw is not None else None
        except (BadRecord, StoreError):  # counted and set aside, never fatal
            m = None
        point = throughput_point(m, outcome=outcome, asn=asn) if m is not None else None
        if point is None:
            unreadable += 1
        else:
            points.append(point)
    points.sort(key=lambda p: (p.time, p.asn, p.measurement_uid))
    return points, unreadable


def _window_verdicts(store: Store, cc: str, asns: list[str], since: dt.datetime) -> list[Verdict]:
    with store.iter_verdicts({"probe_cc": cc, "probe_asn": asns}, since, since + _OUTAGE_LOOKAHEAD) as rows:
        return sorted(rows, key=lambda v: (v.measurement_start_time or "", v.measurement_uid))


def _outage_evidence(store_url: str | None, cc: str, incidents: list[Incident]) -> list[Incident]:
    targets = [i for i in incidents if is_probe_outage(i)]
    if not targets:
        return incidents
    out: dict[str, Incident] = {}
    with open_store(store_url, read_only=True) as store:
        for i in targets:
            after_start = _window_verdicts(store, cc, list(i.asns), i.start)
            after_end = _window_verdicts(store, cc, list(i.asns), i.end) if i.end is not None else []
            out[i.incident_id] = with_outage_measurements(i, after_start, after_end)
    return [out.get(i.incident_id, i) for i in incidents]


def _country_signals(signals: list[Signal], cc: str) -> list[Signal]:
    def ours(s: Signal) -> bool:
        if (s.country or "").upper() == cc:
            return True
        if s.entity_type == EntityType.COUNTRY.value:
            return s.entity_code.upper() == cc
        return s.entity_type == EntityType.REGION.value and s.entity_code.upper().startswith(cc + "/")
    return [s for s in signals if ours(s)]


def build_publication(store: str | None, country: str, since: dt.datetime | None = None,
                      until: dt.datetime | None = None, *, economics_dir: Path | None = None,
                      signals_dir: Path | None = None, services_path: Path | None = None,
                      signal_step: dt.timedelta | None = None, generated_at: dt.datetime | None = None,
                      matrix_rule: MatrixRule = MatrixRule(), params: IncidentParams = IncidentParams(),
                      ) -> Publication:
    """Everything a report or the dashboard shows for ``country`` over [since, until) (naive times are UTC; None:
    from the first to the last measurement, widened to the country's local midnights).

    ``signal_step`` is the probes' round (the probe-side outage signal's step); None infers it from the gaps
    between consecutive reports of each network. Missing economics inputs leave costs None with a note; a missing
    or unreadable store raises StoreError; an unknown country raises PublishError."""
    from netvigil.tasks.economics import price_incident_list
    from netvigil.tasks.incidents import MakeIncidentsParams, make_incidents
    from netvigil.tasks.signals import SignalsError, load_signals

    t0 = time.perf_counter()
    cc = _country(country)
    since, until = _aware(since), _aware(until)
    if since is not None and until is not None and until <= since:
        raise PublishError(f"the period is empty: {since.isoformat()} is not before {until.isoformat()}")
    tzname = country_timezone(cc)
    tz = timezone_named(tzname)
    services = load_services(services_path)
    notes: dict[str, str] = {}

    # 1. One pass over the country's verdicts: networks, matrix, throughput candidates, the probes' round.
    scan = _Scan(services, tz, matrix_rule)
    with open_store(store, read_only=True) as st:
        with st.iter_verdicts({"probe_cc": cc}, since, until) as rows:
            for v in rows:
                scan.add(v)
        names = {asn: _network_name(st, net["uid"]) for asn, net in scan.networks.items()}
        throughput, unreadable = _throughput(st, scan.throughput)
    t_scan = time.perf_counter()
    if unreadable:
        notes["throughput"] = f"{unreadable} throttling/speed-test measurements gave no rate (failed or unreadable)"

    period_since = since or (_midnight(scan.first, tz, up=False) if scan.first else None)
    period_until = until or (_midnight(scan.last, tz, up=True) if scan.last else None)
    if period_since is None or period_until is None:
        now = dt.datetime.now(UTC)
        period_since = period_since or period_until or now
        period_until = period_until or now
        notes["empty"] = f"no verdicts for {cc} in the store for this period"

    # 2. Incidents (their own pass over the store), measurements behind the probe-side outages, prices.
    step = signal_step or infer_round({k: v.values() for k, v in scan.report_starts.items()}) or dt.timedelta(hours=1)
    run = make_incidents(MakeIncidentsParams(
        store=store, filter=IncidentFilter(country=cc, since=since, until=until), services_path=services_path,
        params=params, signal_step=step, signals_dir=signals_dir))
    t_incidents = time.perf_counter()
    incidents = _outage_evidence(store, cc, run.incidents)
    priced, cost_note = price_incident_list(incidents, economics_dir, until=period_until)
    if cost_note:
        notes["cost"] = cost_note

    # 3. Signals: the probes' own, and stored/imported ones for the country.
    signals = _country_signals(list(run.probe_signals), cc)
    try:
        signals += _country_signals(load_signals(signals_dir), cc)
    except (SignalsError, OSError) as exc:
        notes["signals"] = f"stored signals not read: {exc}"

    networks = [Network(asn=asn, name=names.get(asn, ""), measurements=net["measurements"],
                        regions=sorted(net["regions"])) for asn, net in sorted(scan.networks.items())]
    timeline = timeline_of(priced, names={n.asn: n.name for n in networks}, tz=tz,
                           regions={n.asn: n.regions for n in networks})
    total = total_cost(priced)
    overlaps = cost_overlaps(priced)
    rule = params.blocking
    notes.update({
        "timezone": tzname,
        "country_name": country_name(cc) or cc,
        "verdict_rules_version": str(scan.rules_version),
        "incident_rule": (f"{rule.rule_id}: at least {rule.min_measurements} of the last {rule.window} conclusive "
                          f"verdicts, share >= {rule.min_share:g}, from >= {rule.min_reports} reports; merge window "
                          f"{params.merge_window}"),
        "outage_detector": f"{DETECTOR_ID} on the probe-side signal probe:both-fail, step {step}",
        "signal_step_seconds": str(int(step.total_seconds())),
        "matrix_rule": matrix_rule.describe(),
        "services_version": str(services.version),
        "cost_method": total.method if total is not None else "netvigil-cost/1",
        "stored_outage_events": str(run.stored_events),
        "build_seconds": f"{time.perf_counter() - t0:.2f}",
        "build_split": (f"scan {t_scan - t0:.2f} s, incidents {t_incidents - t_scan:.2f} s, "
                        f"rest {time.perf_counter() - t_incidents:.2f} s"),
    })
    if total is not None and overlaps:
        notes["cost_overlaps"] = (f"{overlaps} pairs of priced incidents overlap in time on a shared network: the "
                                  f"total adds them and may count some activity twice")
    return Publication(
        country=cc, since=period_since, until=period_until,
        generated_at=_aware(generated_at) or dt.datetime.now(UTC).replace(microsecond=0),
        measurements=scan.measurements, verdicts=scan.verdicts, networks=networks, incidents=priced,
        timeline=timeline, matrix=scan.matrix.cells(), throughput=throughput, signals=signals, total_cost=total, notes=notes)

"""`netvigil probe run`: measure many URLs concurrently, spool every measurement first, then judge and store.

Order of duties for each measurement, so that nothing is lost in a shutdown or a crash: (1) the nettest measures
within its time budget; (2) the OONI-format bytes are written durably to the spool; (3) only then is the
measurement decoded and judged, and the results written to the local store in batches; (4) the uploader
(when a collector is configured) delivers the spool and removes what the collector acknowledged.

Concurrency is a fixed pool of worker tasks on one event loop: network waits overlap, the CPU work of one
measurement (decode, analysis) runs between them, and the store is written from a thread.

Times in the envelope come from the run's clock (`MakeProbeRunParams.clock`): the wall clock, or in the lab the
scenario clock; `test_runtime` is always real seconds. `next_tick` is the schedule of `probe run --every`: a fixed
grid of start times, so runs do not drift however long each one takes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from netvigil.analysis import FingerprintDB, analyze
from netvigil.codec import decode_measurement
from netvigil.control.client import ControlClient
from netvigil.model.verdict import Verdict
from netvigil.probe.envelope import Clock, ReportInfo, encode_measurement, make_report_id, wall_clock
from netvigil.probe.geo import ProbeLocation
from netvigil.probe.inputs import Target
from netvigil.probe.nettests import web_connectivity as wc
from netvigil.probe.suite import Nettest
from netvigil.probe.spool import Spool
from netvigil.store import StoreBatch, open_store

__all__ = ["MakeProbeRunParams", "ProbeResult", "ProbeRunSummary", "Tick", "make_probe_run", "next_tick", "run_probe"]

STORE_BATCH = 200
# A nettest enforces its own budget step by step; this margin only catches a probe bug that would hang.
BUDGET_GRACE = 10.0


@dataclass(slots=True)
class MakeProbeRunParams:
    targets: list[Target]
    options: wc.WebConnectivityOptions
    location: ProbeLocation
    spool: Spool
    fingerprints: FingerprintDB
    store_url: str | None = None          # None: do not store locally
    concurrency: int = 32
    client_resolver: str | None = None
    on_result: Callable[[ProbeResult], None] | None = None
    clock: Clock = wall_clock             # stamps measurement_start_time and test_start_time
    annotations: dict[str, str] = field(default_factory=dict)   # extra OONI annotations (probe_region)
    tests: list[Nettest] = field(default_factory=list)          # other nettests, after the URL pool (suite.py)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One measured URL, as the progress display and the summary see it."""

    url: str
    uid: str
    outcome: str
    method: str | None
    rule: str | None
    ooni_blocking: object
    ooni_accessible: bool | None
    seconds: float
    probe_error: str | None = None     # the probe itself failed (a bug), not the network

    def as_dict(self) -> dict:
        return {"url": self.url, "measurement_uid": self.uid, "outcome": self.outcome, "method": self.method,
                "rule": self.rule, "ooni_blocking": self.ooni_blocking, "ooni_accessible": self.ooni_accessible,
                "seconds": round(self.seconds, 3), "probe_error": self.probe_error}


@dataclass(slots=True)
class ProbeRunSummary:
    report_id: str                     # Web Connectivity's report (or the first test's, without URLs)
    reports: dict[str, str] = field(default_factory=dict)   # test name -> report id
    measured: int = 0
    spooled: int = 0
    stored: int = 0
    probe_errors: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    results: list[ProbeResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.measured / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {"report_id": self.report_id, "reports": self.reports, "measured": self.measured, "spooled": self.spooled,
                "stored": self.stored, "probe_errors": self.probe_errors, "seconds": round(self.seconds, 3),
                "urls_per_second": round(self.rate, 3), "outcomes": dict(self.outcomes),
                "results": [r.as_dict() for r in self.results]}


def make_probe_run(params: MakeProbeRunParams) -> ProbeRunSummary:
    return asyncio.run(run_probe(params))


async def run_probe(params: MakeProbeRunParams) -> ProbeRunSummary:
    started = params.clock()

    def report_for(name: str, version: str, helpers: dict | None) -> ReportInfo:
        return ReportInfo(test_name=name, test_version=version,
                          report_id=make_report_id(name, params.location, started), test_start_time=started,
                          location=params.location, test_helpers=helpers, annotations=dict(params.annotations))

    report = report_for(wc.TEST_NAME, wc.TEST_VERSION, wc.test_helpers(params.options))
    reports = ([report] if params.targets else []) + [report_for(t.name, t.version, t.helpers) for t in params.tests]
    summary = ProbeRunSummary(report_id=reports[0].report_id if reports else report.report_id,
                              reports={r.test_name: r.report_id for r in reports})
    queue: asyncio.Queue[Target | None] = asyncio.Queue()
    for target in params.targets:
        queue.put_nowait(target)
    workers = max(1, min(params.concurrency, len(params.targets) or 1))
    for _ in range(workers):
        queue.put_nowait(None)
    control = ControlClient(params.options.control_url, tls=params.options.control_tls, max_idle=params.concurrency) \
        if params.options.control_url and params.targets else None
    pending = StoreBatch()
    store_lock = asyncio.Lock()
    t0 = time.perf_counter()
    # Opened for the run and closed after it: a scheduled probe holds the store's lock only while it measures.
    store = await asyncio.to_thread(open_store, params.store_url) if params.store_url is not None else None

    async def flush(force: bool = False) -> None:
        nonlocal pending
        if store is None or not pending.measurements:
            return
        if not force and len(pending.measurements) < STORE_BATCH:
            return
        batch, pending = pending, StoreBatch()
        async with store_lock:
            written = await asyncio.to_thread(store.write_batch, batch)
        summary.stored += written.new

    async def account(result: ProbeResult, batch: StoreBatch | None) -> None:
        summary.measured += 1
        summary.spooled += bool(result.uid)
        summary.outcomes[result.outcome] += 1
        summary.probe_errors += result.probe_error is not None
        summary.results.append(result)
        if batch is not None:
            pending.measurements += batch.measurements
            pending.observations += batch.observations
            pending.verdicts += batch.verdicts
            await flush()
        if params.on_result is not None:
            params.on_result(result)

    async def worker() -> None:
        while (target := await queue.get()) is not None:
            await account(*await _measure_one(target, report, params, control))

    test_reports = list(zip(params.tests, reports[-len(params.tests):] if params.tests else []))

    async def other_tests(bandwidth: bool) -> None:
        # One test after another (each runs its own checks concurrently).
        for test, test_report in test_reports:
            if test.bandwidth == bandwidth:
                for input_ in test.inputs:
                    await account(*await _measure_nettest(test, input_, test_report, params))

    try:
        # Messengers and Tor beside the URL pool; throughput tests after it, alone on the link.
        await asyncio.gather(other_tests(False), *(worker() for _ in range(workers if params.targets else 0)))
        await other_tests(True)
        await flush(force=True)
    finally:
        if control is not None:
            await control.aclose()
        if store is not None:
            await asyncio.to_thread(store.close)
    summary.seconds = time.perf_counter() - t0
    return summary


async def _measure_one(target: Target, report: ReportInfo, params: MakeProbeRunParams,
                       control: ControlClient | None) -> tuple[ProbeResult, StoreBatch | None]:
    started = params.clock()
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(params.options.budget + BUDGET_GRACE):
            tk = await wc.measure(target.url, params.options, control=control,
                                  client_resolver=params.client_resolver)
    except Exception as exc:  # noqa: BLE001 - a probe bug must cost one URL, not the run
        return _probe_error(target.url, exc, t0), None
    return await _record(report, target.url, started, time.monotonic() - t0, tk, params)


async def _measure_nettest(test: Nettest, input_: str | None, report: ReportInfo,
                           params: MakeProbeRunParams) -> tuple[ProbeResult, StoreBatch | None]:
    started = params.clock()
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(test.budget + BUDGET_GRACE):
            tk = await test.measure(input_)
    except Exception as exc:  # noqa: BLE001 - a probe bug must cost one measurement, not the run
        return _probe_error(input_ or test.name, exc, t0), None
    return await _record(report, input_, started, time.monotonic() - t0, tk, params)


def _probe_error(what: str, exc: Exception, t0: float) -> ProbeResult:
    return ProbeResult(url=what, uid="", outcome="probe_error", method=None, rule=None, ooni_blocking=None,
                       ooni_accessible=None, seconds=time.monotonic() - t0,
                       probe_error=f"{type(exc).__name__}: {exc}"[:300])


async def _record(report: ReportInfo, input_: str | None, started: Any, runtime: float, tk: Any,
                  params: MakeProbeRunParams) -> tuple[ProbeResult, StoreBatch]:
    """Encode, spool (durably, before anything else happens to it), judge; the verdict that sums it up first
    blocked/throttled, for the display."""
    raw = encode_measurement(report, input_, started, runtime, tk)
    m = decode_measurement(raw)
    await asyncio.to_thread(params.spool.put, raw, m.uid)
    observations, verdicts = analyze(m, params.fingerprints)
    batch = StoreBatch(measurements=[m], observations=observations, verdicts=verdicts)
    v: Verdict | None = _headline(verdicts)
    return ProbeResult(
        url=input_ or report.test_name, uid=m.uid, outcome=v.outcome if v else "inconclusive",
        method=v.method if v else None, rule=v.rule_ids[0] if v and v.rule_ids else None,
        ooni_blocking=getattr(tk, "blocking", None), ooni_accessible=getattr(tk, "accessible", None),
        seconds=runtime,
    ), batch


_SEVERITY = {"blocked": 0, "throttled": 1, "down": 2, "inconclusive": 3, "ok": 4}


def _headline(verdicts: list[Verdict]) -> Verdict | None:
    """Web Connectivity has one verdict; a messenger or Tor measurement one per target: show the worst."""
    if not verdicts:
        return None
    return min(verdicts, key=lambda v: _SEVERITY.get(v.outcome, 5))


@dataclass(frozen=True, slots=True)
class Tick:
    """One scheduled run: its index on the grid and the time (same clock as `now`) at which to start it."""

    index: int
    at: float

    def skipped(self, last: int | None) -> int:
        """Grid ticks passed over since run `last` (runs that took longer than a period)."""
        return 0 if last is None else max(0, self.index - last - 1)


def next_tick(anchor: float, period: float, now: float, last: int | None, *, wait_first: bool = False) -> Tick:
    """The next run of a schedule whose runs start on the grid ``anchor + k * period``.

    The first run (``last`` None) starts at once, or with ``wait_first`` at the first grid tick at or after
    ``now`` and never before ``anchor`` (a lab probe waits for its scenario clock's first round). Each later run takes the tick after
    ``last``; when that tick has already passed (the previous run overran), it starts at once, and when several
    have passed it takes the latest of them: runs never queue up, the grid never drifts, and a run is never
    started twice for one tick.
    """
    if not period > 0:
        raise ValueError(f"the period must be positive, not {period!r}")
    elapsed = (now - anchor) / period
    if last is None:
        if wait_first:
            k = max(0, math.ceil(elapsed - 1e-9))
            return Tick(k, max(now, anchor + k * period))
        return Tick(math.floor(elapsed + 1e-9), now)
    k = max(last + 1, math.floor(elapsed + 1e-9))
    return Tick(k, max(now, anchor + k * period))

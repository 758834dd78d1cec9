"""`netvigil demo`: the whole job on the embedded defaults, in a few minutes, on one machine.

It brings the lab up with the `az-2020` scenario (Azerbaijan, 26 Sept - 14 Nov 2020), runs a probe in every ISP
client through the compressed timeline (`netvigil.lab.campaign`: the probes upload through netvigil's real
collector, which judges every measurement into one store), detects the incidents and prices them
(`netvigil.tasks.publish.build_publication`), writes the report (`netvigil.report.render.write_report`) and serves
the dashboard (`netvigil.web.app`). Without `keep_serving` the dashboard is served just long enough to check that
it answers; with it, until Ctrl-C or SIGTERM.

Output directory (default ./netvigil-demo):

    campaign/           the campaign's files: store.duckdb, truth.jsonl (the censor's ground truth), campaign.json, ...
    report/             report.html (self-contained), report.md, the charts as PNG and SVG
    publication.json    the publication the report and the dashboard show (msgspec JSON)
    demo.json           the summary: timings per phase, counts, incidents, cost, report files, dashboard checks

Timing: rounds of 1 day of scenario time at the campaign's default pace (3.5 real seconds a round: 49 rounds for the
49 days) keep the whole run under 5 minutes on 2 cores (about 220 s); the figures are in docs/demo.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netvigil.lab.campaign import CampaignProgress, CampaignResult
    from netvigil.report.dataset import Publication
    from netvigil.report.render import ReportFiles

__all__ = [
    "DEMO_LAB",
    "DEMO_ROUND",
    "DEMO_SCENARIO",
    "DashboardCheck",
    "DemoError",
    "DemoParams",
    "DemoProgress",
    "DemoResult",
    "PHASES",
    "run_demo",
    "serve_output",
]

DEMO_SCENARIO = "az-2020"
DEMO_LAB = "demo"
DEMO_ROUND = dt.timedelta(days=1)
MARKER = ".netvigil-demo"                # marks an output directory as the demo's own (safe to replace)
CHECK_PATHS = ("/", "/api/overview")     # what "the dashboard answers" means
CHECK_TIMEOUT = 60.0
DEFAULT_PORT = 8080

# The demo's phases, in order, with the label a progress view shows.
PHASES: tuple[tuple[str, str], ...] = (
    ("check", "check the machine"),
    ("lab", "lab up, collector, probes"),
    ("campaign", "probes through the timeline"),
    ("collect", "last uploads, analysis"),
    ("down", "lab down, counts"),
    ("incidents", "incidents and costs"),
    ("report", "report"),
    ("dashboard", "dashboard"),
)

# run_campaign's phases -> the demo's
_CAMPAIGN_PHASE = {"lab": "lab", "collector": "lab", "probes": "lab", "window": "campaign", "stopping": "collect",
                   "upload": "collect", "drain": "collect", "down": "down", "account": "down", "done": "down"}

EXIT_USAGE = 2
EXIT_MISSING = 4
EXIT_STORE = 5
EXIT_LAB = 7
EXIT_SERVE = 10


class DemoError(Exception):
    """The demo cannot run or failed; one line, and the exit code the CLI gives."""

    def __init__(self, message: str, code: int = EXIT_LAB) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class DemoProgress:
    """One step of the demo for a progress view: a phase starts, advances or ends."""

    phase: str                            # one of PHASES' ids
    event: str                            # start | update | end
    seconds: float = 0.0                  # with "end": how long the phase took
    round: int = 0                        # campaign: rounds of the window done so far ...
    rounds: int = 0                       # ... of this many
    measurements: int = 0                 # campaign: measured so far (in the spools or delivered) ...
    delivered: int = 0                    # ... of which the collector has acknowledged this many
    scenario_time: dt.datetime | None = None
    detail: str = ""


@dataclass(slots=True)
class DemoParams:
    out: Path = Path("netvigil-demo")
    scenario: str = DEMO_SCENARIO
    name: str = DEMO_LAB                  # the lab's name (1-8 lowercase letters/digits)
    round: dt.timedelta = DEMO_ROUND
    economics_dir: Path | None = None     # None: $NETVIGIL_ECONOMICS or the data directory; absent: no costs
    host: str = "127.0.0.1"
    port: int | None = None               # None: 8080, or any free port if that is taken and not keep_serving
    keep_serving: bool = False
    progress: Callable[[DemoProgress], None] | None = None
    serving: Callable[[DemoResult], None] | None = None  # keep_serving: called once the dashboard answers


@dataclass(slots=True)
class DashboardCheck:
    url: str
    answers: dict[str, int | str] = field(default_factory=dict)  # path -> HTTP status, or the error
    seconds: dict[str, float] = field(default_factory=dict)
    kept_serving: bool = False

    @property
    def ok(self) -> bool:
        return all(self.answers.get(p) == 200 for p in CHECK_PATHS)


@dataclass(slots=True)
class DemoResult:
    out: Path
    scenario: str
    country: str
    lab: str
    started: float                        # time.time()
    phases: dict[str, float] = field(default_factory=dict)     # seconds per phase
    campaign: CampaignResult | None = None
    outcomes: dict[str, int] = field(default_factory=dict)     # verdicts per outcome
    economics: Path | None = None
    economics_note: str | None = None     # why nothing was priced
    publication: Publication | None = None
    report: ReportFiles | None = None
    dashboard: DashboardCheck | None = None
    ended: float | None = None

    @property
    def wall_seconds(self) -> float:
        return (self.ended or time.time()) - self.started

    def summary(self) -> dict[str, Any]:
        """The demo's summary as plain JSON data (demo.json, `netvigil demo --json`)."""
        return demo_summary(self)


# -- pure parts -----------------------------------------------------------------------------------------------

def campaign_step(p: CampaignProgress, rounds: int) -> DemoProgress:
    """A campaign progress report as the demo's: phase, round i of N, measurements so far. Pure."""
    phase = _CAMPAIGN_PHASE.get(p.phase, "campaign")
    done = min(rounds, int(p.fraction * rounds + 1e-9)) if phase == "campaign" else (rounds if phase != "lab" else 0)
    when = p.scenario_time if p.fraction > 0 else None  # (before the window opens the clock shows the preroll)
    return DemoProgress(phase, "update", round=done, rounds=rounds, measurements=p.spooled + p.delivered,
                        delivered=p.delivered, scenario_time=when, detail=p.phase)


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _cost(c: Any) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"low": round(c.low, 2), "central": round(c.central, 2), "high": round(c.high, 2), "currency": c.currency,
            "method": c.method}


def demo_summary(r: DemoResult) -> dict[str, Any]:
    """Pure: the result as JSON-able data."""
    c, pub = r.campaign, r.publication
    incidents = list(pub.incidents) if pub is not None else []
    priced = [i for i in incidents if i.cost is not None]
    doc: dict[str, Any] = {
        "out": str(r.out), "scenario": r.scenario, "country": r.country, "lab": r.lab,
        "wall_seconds": round(r.wall_seconds, 1),
        "phases": {k: round(v, 1) for k, v in r.phases.items()},
    }
    if c is not None:
        totals = c.doc.get("totals", {})
        doc["campaign"] = {
            "dir": str(c.out), "window": {"start": c.start.isoformat(), "until": c.until.isoformat()},
            "round_scenario_seconds": c.round.total_seconds(), "round_real_seconds": round(c.period, 3),
            "rounds": c.rounds, "speed": round(c.speed, 1), "clients": len(c.clients), "urls": len(c.urls),
            "measured": totals.get("measured"), "stored": c.stored, "verdicts": c.verdicts,
            "problems": list(c.problems),
        }
    if pub is not None:
        doc["timezone"] = pub.notes.get("timezone")
    doc["verdicts"] = dict(sorted(r.outcomes.items()))
    doc["incidents"] = {
        "total": len(incidents),
        "by_type": dict(sorted(Counter(i.type for i in incidents).items())),
        "list": [{"id": i.incident_id, "type": i.type, "scope": i.scope, "start": _iso(i.start), "end": _iso(i.end),
                  "asns": list(i.asns), "regions": list(i.regions), "services": list(i.services),
                  "methods": list(i.methods), "summary": i.summary, "cost": _cost(i.cost),
                  "evidence": sum(1 for e in i.evidence if e.measurement_uid)} for i in incidents],
    }
    doc["cost"] = {
        "economics": str(r.economics) if r.economics else None,
        "priced": len(priced), "of": len(incidents),
        "total": _cost(pub.total_cost) if pub is not None else None,
        "note": r.economics_note,
    }
    if pub is not None:
        doc["timeline"] = [{"time": e.time.isoformat(), "kind": e.kind, "text": e.text,
                            "measurements": len(e.measurement_uids)} for e in pub.timeline]
    if r.report is not None:
        doc["report"] = {"html": str(r.report.html), "markdown": str(r.report.markdown),
                         "charts": [str(p) for p in r.report.charts]}
    if r.dashboard is not None:
        d = r.dashboard
        doc["dashboard"] = {"url": d.url, "answers": dict(d.answers), "seconds": dict(d.seconds), "ok": d.ok,
                            "kept_serving": d.kept_serving}
    return doc


# -- checks before anything starts -------------------------------------------------------------------------------

def _owner_alive(pid: int, start: str | None) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(") ", 1)[1].split()[19] == start
    except (OSError, IndexError):
        return False


def check_machine(p: DemoParams) -> None:
    """Everything that would make the demo fail late, checked first: the lab name, the output directory, the
    dashboard's port, the lab's prerequisites, no lab of that name running. Raises DemoError."""
    from netvigil.lab.check import lab_ready
    from netvigil.lab.runtime import state_dir

    if not (1 <= len(p.name) <= 8 and p.name.isalnum() and p.name == p.name.lower() and p.name.isascii()):
        raise DemoError(f"lab name {p.name!r}: use 1-8 lowercase letters or digits", EXIT_USAGE)
    _check_out_dir(p.out)
    p.port = _choose_port(p)
    ok, reason = lab_ready()
    if not ok:
        raise DemoError(f"the lab cannot run on this machine: {reason}. See `netvigil lab check`; without root, "
                        "run scripts/demo (it enters a user namespace)", EXIT_LAB)
    state = state_dir(p.name) / "state.json"
    if state.exists():
        try:
            doc = json.loads(state.read_text(encoding="utf-8"))
            running = _owner_alive(int(doc["owner_pid"]), doc.get("owner_start"))
        except (OSError, ValueError, KeyError, TypeError):
            running = False
        if running:
            raise DemoError(f"a lab named {p.name!r} is running (owner pid {doc['owner_pid']}): wait for it, stop it "
                            f"with `netvigil lab down -n {p.name}`, or give the demo another --name", EXIT_LAB)


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DemoError(f"--out {out} is a file", EXIT_USAGE)
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise DemoError(f"--out {out} is not empty and holds no earlier demo: choose a new or empty directory",
                        EXIT_USAGE)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=False)


def _choose_port(p: DemoParams) -> int:
    """The dashboard's port, checked now rather than after the campaign: the one asked for, else DEFAULT_PORT, or
    when that is taken and the dashboard is only checked, any free one (0)."""
    port = DEFAULT_PORT if p.port is None else p.port
    try:
        _bind(p.host, port).close()
    except OSError as exc:
        if p.port is None and not p.keep_serving:
            return 0
        raise DemoError(f"the dashboard cannot listen on {p.host}:{port}: {exc.strerror or exc} (choose another "
                        "--port, or --port 0 for any free one)", EXIT_SERVE) from None
    return port


def find_economics(explicit: Path | None) -> tuple[Path | None, str | None]:
    """The cost model's inputs: (directory, None) when they load; (None, why) when not (the demo goes on without
    costs). An explicit directory that does not load is the user's mistake: DemoError."""
    from netvigil.tasks.economics import EconomicsDataError, default_economics_dir, load_economics

    directory = explicit or default_economics_dir()
    try:
        load_economics(directory)
    except EconomicsDataError as exc:
        if explicit is not None:
            raise DemoError(f"--economics: {exc}", EXIT_MISSING) from None
        return None, (f"incidents not priced: no cost inputs in {directory} (run `netvigil data update --economics` "
                      "or pass --economics DIR)")
    return directory, None


# -- the run ----------------------------------------------------------------------------------------------------

class _Phases:
    """Times the demo's phases and reports them to the progress callback."""

    def __init__(self, result: DemoResult, progress: Callable[[DemoProgress], None] | None) -> None:
        self.result = result
        self.progress = progress
        self.current: str | None = None
        self.since = 0.0

    def enter(self, phase: str) -> None:
        if phase == self.current:
            return
        order = [p for p, _ in PHASES]
        if self.current is not None and order.index(phase) < order.index(self.current):
            return  # run_campaign's phases never go back; ignore a late report
        self.close()
        self.current, self.since = phase, time.monotonic()
        self.emit(DemoProgress(phase, "start"))

    def close(self, detail: str = "") -> None:
        if self.current is None:
            return
        took = time.monotonic() - self.since
        self.result.phases[self.current] = self.result.phases.get(self.current, 0.0) + took
        self.emit(DemoProgress(self.current, "end", seconds=took, detail=detail))
        self.current = None

    def emit(self, step: DemoProgress) -> None:
        if self.progress is not None:
            self.progress(step)


def run_demo(p: DemoParams) -> DemoResult:
    """Run the demo (see the module docstring). The lab is always taken down, also when anything fails or the
    process is interrupted (KeyboardInterrupt: the CLI turns SIGTERM and SIGHUP into one); demo.json records how
    far it got. Raises DemoError."""
    import msgspec

    from netvigil.lab.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(p.scenario)
    except ScenarioError as exc:
        raise DemoError(str(exc), EXIT_USAGE) from None
    result = DemoResult(out=p.out.resolve(), scenario=scenario.name, country=scenario.country, lab=p.name,
                        started=time.time())
    phases = _Phases(result, p.progress)
    phases.enter("check")
    check_machine(p)
    result.economics, result.economics_note = find_economics(p.economics_dir)
    _fresh_out_dir(p.out)
    phases.close()
    try:
        result.campaign = _campaign(p, phases)
        phases.close()

        phases.enter("incidents")
        result.publication = pub = _publication(p, result)
        (p.out / "publication.json").write_bytes(msgspec.json.format(msgspec.json.encode(pub), indent=1) + b"\n")
        priced = sum(1 for i in pub.incidents if i.cost is not None)
        phases.close(f"{len(pub.incidents)} incidents, {priced} priced")

        phases.enter("report")
        from netvigil.report.render import write_report

        result.report = write_report(pub, p.out / "report")
        phases.close(f"{len(result.report.charts)} chart files")

        phases.enter("dashboard")
        result.dashboard = _dashboard(p, result, phases)
        phases.close("answers" if result.dashboard.ok else "did not answer")
    finally:
        phases.close()
        if result.ended is None:  # (a kept dashboard's check set it when the dashboard first answered)
            result.ended = time.time()
        _write_summary(p.out, result)
    return result


def _fresh_out_dir(out: Path) -> None:
    """An empty output directory with the demo's marker (an earlier demo's output is replaced)."""
    if out.is_dir() and (out / MARKER).exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("netvigil demo output: `netvigil demo` replaces this directory\n", encoding="utf-8")


def _campaign(p: DemoParams, phases: _Phases) -> CampaignResult:
    from netvigil.lab.campaign import CampaignError, CampaignParams, run_campaign
    from netvigil.lab.netns import LabError
    from netvigil.lab.runtime import down_lab
    from netvigil.lab.scenario import ScenarioError, load_scenario

    s = load_scenario(p.scenario)
    rounds = -(-(s.end - s.start) // p.round)  # the window is the whole scenario

    def on_progress(cp: CampaignProgress) -> None:
        step = campaign_step(cp, rounds)
        phases.enter(step.phase)
        phases.emit(step)

    params = CampaignParams(out=p.out / "campaign", scenario=p.scenario, name=p.name, round=p.round,
                            progress=on_progress)
    phases.enter("lab")
    done = False
    try:
        result = run_campaign(params)
        done = True
        return result
    except (CampaignError, LabError, ScenarioError) as exc:
        raise DemoError(f"the campaign failed: {exc}", EXIT_LAB) from None
    finally:
        # run_campaign takes its lab down itself; this catches what an interrupted teardown left, and after a
        # campaign that went through removes the lab's state directory too (its records are in campaign/).
        # After a failure the lab's logs stay in /run/netvigil-lab/<name>/logs.
        down_lab(p.name, purge=done)


def _publication(p: DemoParams, result: DemoResult) -> Publication:
    """Incidents, prices, matrix, timeline: `build_publication` over the campaign's store and window, with the
    campaign's round as the probe-side signal's step. Only the demo's own measurements count: its signals
    directory (none) stands in for the data directory's stored signals."""
    from netvigil.store import StoreError
    from netvigil.tasks.publish import PublishError, build_publication

    c = result.campaign
    assert c is not None
    try:
        result.outcomes = verdict_outcomes(c.store)
        return build_publication(str(c.store), result.country, c.start, c.until, economics_dir=result.economics,
                                 signals_dir=_signals_dir(p.out), signal_step=c.round)
    except (StoreError, PublishError) as exc:
        raise DemoError(f"the incidents could not be built from {c.store}: {exc}", EXIT_STORE) from None


def _signals_dir(out: Path) -> Path:
    return out / "signals"  # never written: no stored signals or outage events beside the demo's measurements


def verdict_outcomes(store_path: Path) -> dict[str, int]:
    """Verdicts per outcome in the campaign's store."""
    from netvigil.store import open_store, parse_verdict_query

    with open_store(str(store_path), read_only=True) as store:
        res = store.query_verdicts(parse_verdict_query("outcome"))
    counts: dict[str, int] = {}
    for row in res.as_dicts():
        n = next((v for k, v in row.items() if k != "outcome" and isinstance(v, int)), 0)
        counts[str(row.get("outcome"))] = int(n)
    return counts


def _get(url: str) -> tuple[int | str, float]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT) as resp:  # noqa: S310 (our own dashboard)
            resp.read()
            status: int | str = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        status = f"error: {getattr(exc, 'reason', exc)}"
    return status, round(time.monotonic() - t0, 3)


def check_dashboard(url: str) -> DashboardCheck:
    """GET the overview page and its JSON: the dashboard answers when both say 200."""
    check = DashboardCheck(url=url)
    base = url.rstrip("/")
    for path in CHECK_PATHS:
        check.answers[path], check.seconds[path] = _get(base + path)
    return check


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _dashboard(p: DemoParams, result: DemoResult, phases: _Phases) -> DashboardCheck:
    from netvigil.web.app import WebSettings

    c = result.campaign
    assert c is not None
    settings = WebSettings(store=str(c.store), country=result.country, publication=result.publication,
                           economics_dir=result.economics, signals_dir=_signals_dir(p.out),
                           report_dir=p.out / "report")
    if p.keep_serving:
        return _serve_until_stopped(p, settings, result, phases)
    return _serve_briefly(p, settings)


def _serve_briefly(p: DemoParams, settings: Any) -> DashboardCheck:
    """The dashboard on its own thread, long enough to check that it answers."""
    import uvicorn

    from netvigil.web.app import create_app

    try:
        sock = _bind(p.host, p.port)
    except OSError as exc:
        raise DemoError(f"the dashboard cannot listen on {p.host}:{p.port}: {exc.strerror or exc}", EXIT_SERVE) \
            from None
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                                           lifespan="auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="demo-dashboard", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise DemoError("the dashboard did not start (see the messages above)", EXIT_SERVE)
            time.sleep(0.05)
        return check_dashboard(_url(p.host, sock.getsockname()[1]))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _serve_until_stopped(p: DemoParams, settings: Any, result: DemoResult, phases: _Phases) -> DashboardCheck:
    """`serve` in the foreground until Ctrl-C or SIGTERM; once it listens, the dashboard is checked and the
    `serving` callback shows the summary."""
    from netvigil.web.app import serve

    holder: list[DashboardCheck] = []
    failed: list[BaseException] = []

    def ready(url: str) -> None:
        def check() -> None:
            try:
                found = check_dashboard(url)
                found.kept_serving = True
                holder.append(found)
                result.dashboard = found
                phases.close("answers" if found.ok else "did not answer")
                result.ended = time.time()
                _write_summary(p.out, result)
                if p.serving is not None:
                    p.serving(result)
            except Exception as exc:  # noqa: BLE001 (reported below, after the dashboard has stopped)
                failed.append(exc)
                os.kill(os.getpid(), signal.SIGINT)  # stops `serve` as Ctrl-C would

        threading.Thread(target=check, name="demo-dashboard-check", daemon=True).start()

    try:
        serve(settings, p.host, p.port, ready=ready)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a kept dashboard ends
    if failed:
        raise DemoError(f"the dashboard check failed: {failed[0]!r}", EXIT_SERVE)
    return holder[0] if holder else DashboardCheck(url=_url(p.host, p.port), kept_serving=True)


def serve_output(out: Path, host: str = "127.0.0.1", port: int | None = None,
                 ready: Callable[[str], None] | None = None) -> None:
    """The dashboard of an earlier demo in `out` (its publication.json, campaign store and report), until Ctrl-C or
    SIGTERM; no lab needed. scripts/demo uses it to keep the dashboard of a demo run inside a user namespace (whose
    network this machine cannot reach) up from outside it. Raises DemoError."""
    import msgspec

    from netvigil.report.dataset import Publication
    from netvigil.web.app import WebSettings, serve

    try:
        pub = msgspec.json.decode((out / "publication.json").read_bytes(), type=Publication)
    except FileNotFoundError:
        raise DemoError(f"no demo output in {out} (no publication.json): run `netvigil demo --out {out}` first",
                        EXIT_MISSING) from None
    except msgspec.DecodeError as exc:
        raise DemoError(f"{out / 'publication.json'}: {exc}", EXIT_MISSING) from None
    try:
        economics = json.loads((out / "demo.json").read_text(encoding="utf-8"))["cost"]["economics"]
    except (OSError, ValueError, KeyError, TypeError):
        economics = None
    port = DEFAULT_PORT if port is None else port
    try:
        _bind(host, port).close()
    except OSError as exc:
        raise DemoError(f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_SERVE) from None
    settings = WebSettings(store=str(out / "campaign" / "store.duckdb"), country=pub.country, publication=pub,
                           economics_dir=Path(economics) if economics else None, signals_dir=_signals_dir(out),
                           report_dir=out / "report")
    try:
        serve(settings, host, port, ready=ready)
    except KeyboardInterrupt:
        pass


def _write_summary(out: Path, result: DemoResult) -> None:
    if out.is_dir():
        (out / "demo.json").write_text(json.dumps(result.summary(), indent=1) + "\n", encoding="utf-8")

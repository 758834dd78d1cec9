"""A lab campaign: probes in every ISP client of a scenario, through its compressed timeline, into one store.

`run_campaign` brings a lab up (or uses a running one), starts netvigil's real collector on the lab's internet side,
and in every client host a scheduled `netvigil probe run --every <round> --clock <scenario clock>`: measurements
are stamped in scenario time, spooled first, and uploaded through the collector; a probe cut off by the censor
keeps measuring into its spool and delivers once its network is back. At the end it stops the probes (they stop by
themselves when the scenario clock reaches the window's end), uploads what is left, drains the collector's worker
and writes, in the output directory:

    store.duckdb        every measurement with observations and verdicts (the collector's store)
    truth.jsonl         the censor's ground truth (every policy switch, scenario time)
    actions.jsonl       what the censor's DNS responder and DPI relay did, flow by flow
    ip-table.json       the lab's geo-IP table (client prefixes, ASNs, regions)
    scenario.toml       the scenario as run: the window, the speed, the collector host
    urls.txt            the URLs every probe measured
    campaign.json       parameters, real and scenario times, per-client counts and round coverage
    clients/<isp>-<client>/   each probe's spool (delivered.jsonl) and output; collector/ the collector's log

Timing: one round is `round` of scenario time and `round / speed` real seconds. The lab's clock starts a few
rounds before the window (`preroll`) so that the collector and the probes are running when the window opens. Each
probe gets its own clock file: the lab's clock (same anchor, same speed) with its start moved to its first run and
its end to the window's end, so it runs once per round from the window's start and stops by itself at its end.
The runs fall a quarter round into each round (away from the full hours where scenarios switch policies) and the
clients are staggered over a further eighth of a round, so that they do not all hit the control helper, the
collector and the CPU in the same instant.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
import math
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from netvigil.lab.clock import ScenarioClock, write_clock
from netvigil.lab.dpi import BLOCKPAGE_MARKER
from netvigil.lab.netns import LabError, set_pdeathsig
from netvigil.lab.runtime import Lab, LabState, _child_env, lab_exec_argv, read_state
from netvigil.lab.scenario import Scenario, ScenarioError, Target, load_scenario, scenario_path

__all__ = [
    "COLLECTOR_ID",
    "CampaignError",
    "CampaignParams",
    "CampaignProgress",
    "CampaignResult",
    "ClientRun",
    "ProbeSettings",
    "RoundCoverage",
    "campaign_urls",
    "derive_scenario",
    "parse_scenario_time",
    "round_coverage",
    "run_campaign",
]

COLLECTOR_ID = "collector"               # the `host` target the collector listens on
COLLECTOR_NAME = "collector.netvigil-lab.example"
COLLECTOR_PORT = 80
DEFAULT_ROUND = dt.timedelta(hours=12)
DEFAULT_ROUND_SECONDS = 3.5              # real seconds per round when no speed is given (see docs/lab.md)
# Real seconds from the lab's clock start to the window's first round: the lab, the collector and 8 probe processes
# are ready ~5 s after the start on a quiet 2-core machine, and took over 16 s on a loaded one.
PREROLL_SECONDS = 20.0
MIN_ROUND_SECONDS = 1.5
MAX_BUDGET = 2.3                         # seconds one URL may take in the lab ...
BUDGET_SHARE = 0.85                      # ... and at most this share of a round, so that runs never overrun
READY_TIMEOUT = 60.0
CONTROL_CONCURRENCY = 256                # the control helper's default (64) answers 503 beyond that
# Every client asks the helper about the same URLs within an eighth of a round: one measurement answers them all
# for a quarter of a round (2 h of scenario time with 8 h rounds; the helper stands outside every censor). Each of
# 168 controls a round measured afresh kept one helper process busy past the probes' budget on a loaded machine,
# and whole runs lost their controls.
CONTROL_SHARE_ROUNDS = 0.25
HELD_ROUNDS = 1                          # delivered a round or more after it was measured: "held" in the spool
_OFFSET = re.compile(r"^\+(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")


class CampaignError(Exception):
    """The campaign cannot run (bad window, unknown scenario, no control target) or failed; one line."""


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """`probe run` flags for the lab. A silent drop costs a probe its whole step timeout, so in the lab, where
    every handshake completes in milliseconds, the step timeouts are 1-1.5 s (real probes: 5-20 s). The URL's budget
    (and with it the HTTP and control timeouts) is by default 85 % of a round's real length, at most 2.3 s: a run
    then ends before the next round starts, and a page on a 2 Mbit/s throttled link still has time to arrive.
    Uploads try once per request and leave the rest to the next round's upload."""

    budget: float | None = None           # None: min(MAX_BUDGET, BUDGET_SHARE * real seconds per round)
    dns_timeout: float = 1.0
    connect_timeout: float = 1.5          # one lost SYN (TCP resends it after 1 s) is not a blocked address
    tls_timeout: float = 1.0
    http_timeout: float | None = None     # None: the budget
    control_timeout: float | None = None  # None: the budget (a busy helper answers late rather than never)
    upload_timeout: float = 2.0
    upload_attempts: int = 1
    concurrency: int = 32
    control_tls: bool = False  # ask the control helper over plain HTTP: nothing in the lab tampers with it

    def for_round(self, period: float) -> ProbeSettings:
        """These settings with every default filled in for rounds of `period` real seconds."""
        budget = self.budget if self.budget is not None else round(min(MAX_BUDGET, BUDGET_SHARE * period), 2)
        budget = max(1.0, budget)
        return replace(self, budget=budget,
                       http_timeout=self.http_timeout if self.http_timeout is not None else budget,
                       control_timeout=self.control_timeout if self.control_timeout is not None else budget)

    def argv(self) -> list[str]:
        assert self.budget is not None and self.http_timeout is not None and self.control_timeout is not None
        return ["--budget", f"{self.budget:g}", "--dns-timeout", f"{self.dns_timeout:g}",
                "--connect-timeout", f"{self.connect_timeout:g}", "--tls-timeout", f"{self.tls_timeout:g}",
                "--http-timeout", f"{self.http_timeout:g}", "--control-timeout", f"{self.control_timeout:g}",
                "--upload-timeout", f"{self.upload_timeout:g}", "--upload-attempts", str(self.upload_attempts),
                "--concurrency", str(self.concurrency)]


@dataclass(slots=True)
class CampaignParams:
    out: Path
    scenario: str | None = None          # a shipped name or a path; None: the running lab's (with `running`)
    name: str = "camp"                    # the lab's name
    running: bool = False                 # use the running lab `name` instead of bringing one up
    speed: float | None = None            # scenario seconds per real second; None: round / DEFAULT_ROUND_SECONDS
    round: dt.timedelta = DEFAULT_ROUND   # scenario time between two runs of every probe
    start: dt.datetime | None = None      # the window (scenario time); default: the whole scenario
    until: dt.datetime | None = None
    urls: list[str] | None = None         # default: `campaign_urls(scenario)`
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    preroll: float = PREROLL_SECONDS
    progress: Callable[[CampaignProgress], None] | None = None


@dataclass(frozen=True, slots=True)
class CampaignProgress:
    """What a progress display shows, about once a second."""

    phase: str                            # lab | collector | probes | window | stopping | upload | drain | done
    scenario_time: dt.datetime | None = None
    fraction: float = 0.0                 # of the window
    spooled: int = 0                      # measurements waiting in the clients' spools now
    delivered: int = 0                    # measurements the collector acknowledged so far


@dataclass(frozen=True, slots=True)
class RoundCoverage:
    """How many measurements one client made in each round of the window."""

    expected: int                         # rounds in the window
    counts: tuple[int, ...]               # measurements per round
    urls: int

    @property
    def complete(self) -> int:
        return sum(1 for c in self.counts if c >= self.urls)

    @property
    def missing(self) -> list[int]:
        return [i for i, c in enumerate(self.counts) if c == 0]

    @property
    def partial(self) -> list[int]:
        return [i for i, c in enumerate(self.counts) if 0 < c < self.urls]


@dataclass(slots=True)
class ClientRun:
    isp: str
    client: str
    region: str
    asn: str
    namespace: str
    exit_code: int | None = None
    runs: int = 0
    measured: int = 0
    spooled: int = 0
    probe_errors: int = 0
    delivered: int = 0                    # lines in the spool's delivered.jsonl
    in_store: int = 0                     # of those, measurement uids present in the store
    pending: int = 0                      # left in the spool at the end
    rejected: int = 0
    bad: int = 0
    held: int = 0                         # delivered HELD_ROUNDS round(s) or more after they were measured
    final_upload: str | None = None       # None (nothing left), "client", or "internet" (still cut off at the end)
    run_seconds: list[float] = field(default_factory=list)
    coverage: RoundCoverage | None = None
    outside_window: int = 0               # stored measurements stamped outside [start, until)

    @property
    def id(self) -> str:
        return f"{self.isp}/{self.client}"

    def as_dict(self) -> dict[str, Any]:
        secs = sorted(self.run_seconds)
        cov = self.coverage
        return {
            "isp": self.isp, "client": self.client, "region": self.region, "probe_asn": self.asn,
            "namespace": self.namespace, "exit_code": self.exit_code, "runs": self.runs, "measured": self.measured,
            "spooled": self.spooled, "probe_errors": self.probe_errors, "delivered": self.delivered,
            "in_store": self.in_store, "pending": self.pending, "rejected": self.rejected, "bad": self.bad,
            "held_then_delivered": self.held, "final_upload": self.final_upload,
            "outside_window": self.outside_window,
            "run_seconds": _spread(secs),
            "rounds": None if cov is None else {
                "expected": cov.expected, "complete": cov.complete, "partial": cov.partial,
                "missing": cov.missing, "measurements_per_round": list(cov.counts)},
        }


@dataclass(slots=True)
class CampaignResult:
    out: Path
    scenario: str
    lab: str
    speed: float
    round: dt.timedelta
    period: float                          # real seconds per round
    start: dt.datetime                     # the window, scenario time
    until: dt.datetime
    urls: list[str]
    clients: list[ClientRun]
    real_start: float                      # time.time() when the campaign began
    window_real_start: float
    window_real_end: float
    real_end: float
    stored: int = 0                        # measurements in the store
    verdicts: int = 0
    duplicates: int = 0                    # measurement uids delivered more than once (must be 0)
    problems: list[str] = field(default_factory=list)
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        return self.out / "store.duckdb"

    @property
    def truth(self) -> Path:
        return self.out / "truth.jsonl"

    @property
    def ip_table(self) -> Path:
        return self.out / "ip-table.json"

    @property
    def rounds(self) -> int:
        return math.ceil((self.until - self.start) / self.round)

    @property
    def wall_seconds(self) -> float:
        return self.real_end - self.real_start


# -- pure parts ---------------------------------------------------------------------------------------------

def parse_scenario_time(text: str, scenario: Scenario) -> dt.datetime:
    """A window edge: an ISO date-time (no offset: the scenario start's), a date, or an offset from the
    scenario's start like "+40d" or "+1d6h"."""
    text = text.strip()
    m = _OFFSET.match(text)
    if m and any(m.groups()):
        d, h, mi, s = (int(g or 0) for g in m.groups())
        return scenario.start + dt.timedelta(days=d, hours=h, minutes=mi, seconds=s)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CampaignError(f"not a scenario time: {text!r} (use e.g. 2020-11-04T00:00+04:00 or +40d)") from None
    return value if value.tzinfo else value.replace(tzinfo=scenario.start.tzinfo)


def parse_round(text: str) -> dt.timedelta:
    """'6h', '30m', '1d', '90s' -> a timedelta of scenario time."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise CampaignError(f"not a round length: {text!r} (use e.g. 6h, 12h, 1d)")
    return dt.timedelta(seconds=float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


def campaign_urls(scenario: Scenario) -> list[str]:
    """The URLs a campaign measures: ``https://<first name>/`` of every web target that serves a site, plus
    ``http://<first name>/`` where the scenario makes its site answer plain HTTP (``http_mode = "serve"``:
    web.whatsapp.com in az-2020, which worked over HTTP but not HTTPS). Sites that stand in for an app's back end
    (Telegram's data centres, WhatsApp's registration server, Signal's service) are left out: the messenger
    nettests measure them, they are no page a test list carries."""
    service_sites = ("telegram-dc", "whatsapp-registration", "signal-service")
    urls: list[str] = []
    for t in scenario.targets:
        if t.kind != "web" or not t.names or "site" not in t.server or t.server["site"] in service_sites:
            continue
        urls.append(f"https://{t.names[0]}/")
        if t.server.get("http_mode") == "serve":
            urls.append(f"http://{t.names[0]}/")
    return urls


def collector_target(scenario: Scenario) -> Target | None:
    for t in scenario.targets:
        if t.id == COLLECTOR_ID:
            return t
    return None


def _free_internet_address(scenario: Scenario) -> str:
    used = {scenario.authoritative, scenario.blockpage, scenario.proxy, scenario.public_resolver,
            *(t.address for t in scenario.targets), *(i.resolver for i in scenario.isps)}
    for host in [70, *range(71, 250)]:
        addr = f"203.0.113.{host}"
        if addr not in used:
            return addr
    raise CampaignError("no free address in 203.0.113.0/24 for the collector")


def derive_scenario(doc: Mapping[str, Any], scenario: Scenario, start: dt.datetime, end: dt.datetime,
                    speed: float, share_seconds: float | None = None) -> dict[str, Any]:
    """The scenario file a campaign runs: `doc` (the decoded TOML of `scenario`) with the clock starting at
    `start`, ending at `end`, at `speed`, every policy time absolute (offsets like "+1d" were relative to the old
    start), a `host` target for the collector when there is none, and room in the control helpers for every client
    at once (`max_concurrency`, unless the scenario sets it) and, with `share_seconds`, answers shared between
    identical requests that long (`share_seconds`, unless the scenario sets it). Pure."""
    out = copy.deepcopy(dict(doc))
    head = out.setdefault("scenario", {})
    head["start"], head["end"], head["speed"] = start, end, float(speed)
    raw_policies = out.get("policies", [])
    if len(raw_policies) != len(scenario.policies):
        raise CampaignError("the scenario file and its parsed policies disagree")
    for raw, policy in zip(raw_policies, scenario.policies):
        raw["start"] = policy.start
        if policy.end is None:
            raw.pop("end", None)
        else:
            raw["end"] = policy.end
    if collector_target(scenario) is None:
        out.setdefault("targets", []).append({"id": COLLECTOR_ID, "kind": "host", "names": [COLLECTOR_NAME],
                                              "address": _free_internet_address(scenario)})
    for raw in out.get("targets", []):  # every client asks the helper each round: room for all of them at once
        if raw.get("kind") == "control":
            raw.setdefault("server", {}).setdefault("max_concurrency", CONTROL_CONCURRENCY)
            if share_seconds is not None:
                raw["server"].setdefault("share_seconds", round(share_seconds, 3))
    return out


def round_coverage(times: Sequence[dt.datetime], start: dt.datetime, until: dt.datetime, round_: dt.timedelta,
                   urls: int) -> tuple[RoundCoverage, int]:
    """Measurements per round of the window [start, until), and how many fall outside it. Pure."""
    expected = math.ceil((until - start) / round_)
    counts = [0] * expected
    outside = 0
    for t in times:
        if not start <= t < until:
            outside += 1
            continue
        counts[int((t - start) // round_)] += 1
    return RoundCoverage(expected, tuple(counts), urls), outside


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 3), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "max": round(ordered[-1], 3)}


def _json_docs(text: str) -> list[dict[str, Any]]:
    """The JSON documents a scheduled `probe run --json` printed one after another (pretty-printed)."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            doc, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            nxt = text.find("\n{", i)  # skip a torn document (a probe killed while printing)
            if nxt < 0:
                break
            i = nxt + 1
            continue
        if isinstance(doc, dict):
            docs.append(doc)
    return docs


def _fingerprint_csvs(directory: Path, scenario: Scenario) -> None:
    """OONI-format fingerprints for the lab's own blockpage (the lab stands in for a real country's)."""
    directory.mkdir(parents=True, exist_ok=True)
    head = ("name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,"
            "source,exp_url,notes\n")
    cc = scenario.country
    (directory / "fingerprints_http.csv").write_text(
        head + f"lab.{cc.lower()}_0,nat,,body,contains,{BLOCKPAGE_MARKER},5,{cc},netvigil lab,,\n", encoding="utf-8")
    (directory / "fingerprints_dns.csv").write_text(
        head + f"lab.{cc.lower()}_1,nat,,dns,full,{scenario.blockpage},5,{cc},netvigil lab,,\n", encoding="utf-8")


# -- the run ------------------------------------------------------------------------------------------------

class _Campaign:
    def __init__(self, params: CampaignParams) -> None:
        self.p = params
        self.out = params.out
        self.lab: Lab | None = None
        self.state: LabState | None = None
        self.collector: subprocess.Popen | None = None
        self.probes: dict[str, subprocess.Popen] = {}
        self.clients: list[ClientRun] = []
        self.problems: list[str] = []
        self.clock: ScenarioClock | None = None
        self.marks: dict[str, float] = {}        # real time at which each phase began
        self.uploads: dict[str, tuple[subprocess.Popen, Any, str]] = {}  # final uploads running, by client

    def emit(self, phase: str, **kw: Any) -> None:
        self.marks.setdefault(phase, time.time())
        if self.p.progress is not None:
            self.p.progress(CampaignProgress(phase, **kw))

    # -- setup --
    def prepare(self) -> tuple[Scenario, dt.datetime, dt.datetime, float, Path | None]:
        p = self.p
        if p.round.total_seconds() <= 0:
            raise CampaignError("the round must be longer than 0 s")
        if self.out.exists() and any(self.out.iterdir()):
            raise CampaignError(f"the output directory {self.out} is not empty")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir()
        if p.running:
            self.state = read_state(p.name)
            scenario = load_scenario(self.state.scenario)
            speed = self.state.speed
            if collector_target(scenario) is None:
                raise CampaignError(f"the running lab {p.name!r} has no {COLLECTOR_ID!r} host target for the "
                                    "collector; let the campaign bring the lab up instead")
            clock = self.state.clock()
            ready = clock.now() + dt.timedelta(seconds=p.preroll * speed)  # when the probes will be running
            first = clock.start + p.round * math.ceil((ready - clock.start) / p.round)
            start = max(p.start or first, first)
            until = min(p.until or clock.end, clock.end)
            derived = None
        else:
            if p.scenario is None:
                raise CampaignError("no scenario given")
            try:
                path = scenario_path(p.scenario)
                scenario = load_scenario(str(path))
                doc = tomllib.loads(path.read_text(encoding="utf-8"))
            except (ScenarioError, OSError) as exc:
                raise CampaignError(str(exc)) from None
            speed = p.speed or p.round.total_seconds() / DEFAULT_ROUND_SECONDS
            start = p.start or scenario.start
            until = p.until or scenario.end
            if not scenario.start <= start < until <= scenario.end:
                raise CampaignError(f"the window {start.isoformat()} .. {until.isoformat()} is not inside the "
                                    f"scenario ({scenario.start.isoformat()} .. {scenario.end.isoformat()})")
            pre_rounds = max(1, math.ceil(p.preroll * speed / p.round.total_seconds()))
            derived_doc = derive_scenario(doc, scenario, start - pre_rounds * p.round, until, speed,
                                          CONTROL_SHARE_ROUNDS * p.round.total_seconds() / speed)
            import tomli_w

            derived = self.out / "scenario.toml"
            derived.write_bytes(tomli_w.dumps(derived_doc).encode("utf-8"))
            try:
                scenario = load_scenario(str(derived))
            except ScenarioError as exc:
                raise CampaignError(f"the derived scenario does not parse: {exc}") from None
        if until <= start:
            raise CampaignError("the window is empty (nothing left of the scenario)")
        period = p.round.total_seconds() / speed
        if period < MIN_ROUND_SECONDS:
            raise CampaignError(f"a round of {p.round} at speed {speed:g} lasts {period:.2f} real seconds; "
                                f"at least {MIN_ROUND_SECONDS:g} s is needed (lower --speed or lengthen --round)")
        return scenario, start, until, speed, derived

    def up(self, derived: Path, speed: float) -> None:
        self.emit("lab")
        try:
            self.lab = Lab(str(derived), lab=self.p.name, speed=speed).up()
        except (LabError, ScenarioError) as exc:
            raise CampaignError(f"the lab did not come up: {exc}") from None
        self.state = self.lab.state

    def start_collector(self, scenario: Scenario) -> str:
        assert self.state is not None
        self.emit("collector")
        target = collector_target(scenario)
        assert target is not None
        argv = [sys.executable, "-m", "netvigil", "collector", "serve", "--host", target.address, "--port",
                str(COLLECTOR_PORT), "--data-dir", str(self.out / "collector"), "--store",
                str(self.out / "store.duckdb"), "--fingerprints", str(self.out / "fingerprints")]
        self.collector = self._spawn(lab_exec_argv(self.state, "internet", argv), "collector")
        return f"http://{target.address}/" if COLLECTOR_PORT == 80 else f"http://{target.address}:{COLLECTOR_PORT}/"

    def start_probes(self, scenario: Scenario, collector_url: str, period: float, urls_file: Path,
                     start: dt.datetime, until: dt.datetime) -> None:
        assert self.state is not None
        self.emit("probes")
        control = next((t for t in scenario.targets if t.kind == "control" and t.names), None)
        if control is None:
            raise CampaignError(f"scenario {scenario.name!r} has no control target (kind = \"control\")")
        s = self.p.probe.for_round(period)
        control_url = f"{'https' if s.control_tls else 'http'}://{control.names[0]}/"
        udp = f"{scenario.public_resolver}:53" if scenario.public_resolver else ""
        table = {e.host: e for e in self.state.ip_table() if e.role == "client"}
        lab_clock = self.state.clock()
        hosts = [(isp, ns, client) for isp in scenario.isps
                 for ns, client in zip(self.state.clients[isp.id], isp.clients)]
        for i, (isp, ns, client) in enumerate(hosts):
            run = ClientRun(isp.id, client.name, client.region, f"AS{isp.asn}", ns)
            if ns in table and table[ns].region:
                run.region = table[ns].region or client.region
            d = self.out / "clients" / f"{isp.id}-{client.name}"
            d.mkdir(parents=True)
            first = start + self.p.round / 4 + self.p.round / 8 * i / len(hosts)
            write_clock(d / "clock.json", ScenarioClock(first, until, lab_clock.speed,
                                                        lab_clock.real_time(first)))
            argv = [sys.executable, "-m", "netvigil", "probe", "run", "--json", "--file", str(urls_file),
                    "--control", control_url, "--udp-resolver", udp, "--ca-file", str(self.state.ca_file),
                    "--spool", str(d / "spool"), "--no-store", "--fingerprints", str(self.out / "fingerprints"),
                    "--collector", collector_url, "--every", f"{period:.6f}s",
                    "--clock", str(d / "clock.json"), *s.argv()]
            self.probes[run.id] = self._spawn(lab_exec_argv(self.state, f"{isp.id}/{client.name}", argv),
                                              f"{isp.id}-{client.name}", directory=d, name="probe")
            self.clients.append(run)

    def _spawn(self, argv: list[str], label: str, directory: Path | None = None,
               name: str | None = None) -> subprocess.Popen:
        d = directory or self.out / "logs"
        base = name or label
        with open(d / f"{base}.out", "wb") as out, open(d / f"{base}.err", "wb") as err:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=_child_env(),
                                    preexec_fn=set_pdeathsig)

    def wait_collector_ready(self) -> None:
        assert self.collector is not None
        log = self.out / "logs" / "collector.out"
        deadline = time.monotonic() + READY_TIMEOUT
        while b"READY" not in log.read_bytes():
            if self.collector.poll() is not None:
                tail = (self.out / "logs" / "collector.err").read_text(errors="replace")[-1500:]
                raise CampaignError(f"the collector exited with {self.collector.returncode}: {tail}")
            if time.monotonic() > deadline:
                raise CampaignError(f"the collector was not READY after {READY_TIMEOUT:.0f} s")
            time.sleep(0.05)

    # -- during --
    def counts(self) -> tuple[int, int]:
        pending = delivered = 0
        for run in self.clients:
            spool = self.out / "clients" / f"{run.isp}-{run.client}" / "spool"
            if spool.is_dir():
                pending += sum(1 for f in spool.glob("*.json"))
                log = spool / "delivered.jsonl"
                if log.exists():
                    with open(log, "rb") as fh:
                        delivered += sum(1 for _ in fh)
        return pending, delivered

    def watch(self, start: dt.datetime, until: dt.datetime, stop_at: float, deadline: float,
              collector_url: str) -> None:
        """Until every probe has stopped (by itself at the window's end, or by SIGTERM after `deadline`). A probe
        that stopped with measurements its last upload could not deliver (still cut off) has its spool carried
        out at once, while the others are still delivering theirs."""
        assert self.state is not None
        clock = self.state.clock()
        span = (until - start).total_seconds()
        last_emit = 0.0
        stopped: set[str] = set()
        while any(p.poll() is None for p in self.probes.values()):
            now = time.time()
            if now >= deadline:
                self.problems.append("probes still running after the window: stopped with SIGTERM")
                self._stop_probes()
                break
            if now - last_emit >= 1.0:
                t = clock.now(now)
                pending, delivered = self.counts()
                phase = "window" if now < stop_at else "stopping"
                frac = min(1.0, max(0.0, (t - start).total_seconds() / span))
                self.emit(phase, scenario_time=t, fraction=frac, spooled=pending, delivered=delivered)
                last_emit = now
            for run in self.clients:
                if run.id in stopped or self.probes[run.id].poll() is None:
                    continue
                stopped.add(run.id)
                if any(self._spool(run).glob("*.json")) and self._last_upload_failed(run):
                    self._start_upload(run, "internet", collector_url)
            time.sleep(0.2)
        for run in self.clients:
            run.exit_code = self.probes[run.id].returncode

    def _signal_probes(self, sig: int) -> None:
        for proc in self.probes.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def _stop_probes(self, timeout: float = 30.0) -> None:
        self._signal_probes(signal.SIGTERM)
        end = time.monotonic() + timeout
        for proc in self.probes.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- end --
    def final_upload(self, collector_url: str) -> None:
        """What the probes' own uploads left behind goes now, from every client at once. A client the censor still
        cuts off when the window ends (a regional cut that is never lifted) cannot deliver: its spool is then
        uploaded from the lab's internet side, as if carried out of the country (started by `watch` as soon as
        that probe has stopped). Either way each measurement goes with its spool uid as idempotency key, so
        nothing can be stored twice."""
        self.emit("upload")
        self._wait_uploads()
        for where in ("client", "internet"):
            for run in self.clients:
                if not any(self._spool(run).glob("*.json")) or run.id in self.uploads:
                    continue
                if where == "client" and self._last_upload_failed(run):
                    continue  # its own last upload found the collector unreachable: no point trying again
                self._start_upload(run, where, collector_url)
            self._wait_uploads()

    def _start_upload(self, run: ClientRun, where: str, collector_url: str) -> None:
        assert self.state is not None
        argv = [sys.executable, "-m", "netvigil", "probe", "upload", "--json", "--collector", collector_url,
                "--spool", str(self._spool(run))]
        argv += ["--attempts", "1", "--timeout", "3"] if where == "client" else ["--attempts", "3", "--timeout", "10"]
        log = open(self._spool(run).parent / "final-upload.out", "ab")
        log.write(f"# from the {where} side\n".encode())
        log.flush()
        proc = subprocess.Popen(lab_exec_argv(self.state, run.id if where == "client" else "internet", argv),
                                stdout=log, stderr=log, env=_child_env(), preexec_fn=set_pdeathsig)
        self.uploads[run.id] = (proc, log, where)
        run.final_upload = where

    def _wait_uploads(self) -> None:
        for rid, (proc, log, where) in list(self.uploads.items()):
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            if proc.returncode not in (0, 9):
                self.problems.append(f"{rid}: the final upload from the {where} side exited with {proc.returncode}")
        self.uploads.clear()

    def _spool(self, run: ClientRun) -> Path:
        return self.out / "clients" / f"{run.isp}-{run.client}" / "spool"

    def _last_upload_failed(self, run: ClientRun) -> bool:
        out = self._spool(run).parent / "probe.out"
        docs = _json_docs(out.read_text(encoding="utf-8", errors="replace")) if out.exists() else []
        uploads = [d["upload"] for d in docs if isinstance(d.get("upload"), dict)]
        return bool(uploads) and bool(uploads[-1].get("failed_transient"))

    def stop_collector(self) -> None:
        if self.collector is None or self.collector.poll() is not None:
            return
        self.collector.send_signal(signal.SIGTERM)
        try:
            self.collector.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.problems.append("the collector did not stop within 90 s of SIGTERM: killed")
            self.collector.kill()
            self.collector.wait()
        if self.collector.returncode != 0:
            self.problems.append(f"the collector exited with {self.collector.returncode}")

    def drain(self) -> None:
        """The collector's worker shares its interpreter with the HTTP side and yields to submissions; what it
        had not judged yet is judged now, by `collector worker --once` (files only, no network)."""
        self.emit("drain")
        argv = [sys.executable, "-m", "netvigil", "collector", "worker", "--once", "--data-dir",
                str(self.out / "collector"), "--store", str(self.out / "store.duckdb"), "--fingerprints",
                str(self.out / "fingerprints")]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=_child_env())
        (self.out / "logs" / "worker-once.out").write_text(r.stdout + r.stderr, encoding="utf-8")
        if r.returncode != 0:
            raise CampaignError(f"the collector worker failed ({r.returncode}): {r.stderr.strip()[-1500:]}")

    def copy_lab_records(self) -> None:
        assert self.state is not None
        for name in ("truth.jsonl", "actions.jsonl", "ip-table.json"):
            src = self.state.dir / name
            if src.exists():
                shutil.copyfile(src, self.out / name)

    def down(self) -> None:
        for proc, log, _ in self.uploads.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        self.uploads.clear()
        if self.probes:
            self._stop_probes(timeout=10)
        self.stop_collector()
        if self.lab is not None:
            self.lab.down()
            self.lab = None

    def account(self, start: dt.datetime, until: dt.datetime, urls: int, period: float) -> tuple[int, int, int]:
        """Per-client counts from the probes' output, spools and the store; returns (stored, verdicts, dups)."""
        from netvigil.store import open_store

        assert self.clock is not None
        rows: dict[str, dt.datetime] = {}
        with open_store(str(self.out / "store.duckdb")) as store:
            stats = store.stats()["tables"]
            export = self.out / "logs" / "measurements.csv"
            store.export("measurements", export, "csv")
        with open(export, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                t = dt.datetime.fromisoformat(row["measurement_start_time"]).replace(tzinfo=dt.UTC)
                rows[row["uid"]] = t
        export.unlink()
        seen: dict[str, int] = {}
        for run in self.clients:
            d = self.out / "clients" / f"{run.isp}-{run.client}"
            for doc in _json_docs((d / "probe.out").read_text(encoding="utf-8", errors="replace")):
                if "measured" in doc:
                    run.runs += 1
                    run.measured += int(doc.get("measured", 0))
                    run.spooled += int(doc.get("spooled", 0))
                    run.probe_errors += int(doc.get("probe_errors", 0))
                    run.run_seconds.append(float(doc.get("seconds", 0.0)))
            spool = d / "spool"
            times: list[dt.datetime] = []
            log = spool / "delivered.jsonl"
            lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
            for line in lines:
                rec = json.loads(line)
                uid = rec.get("measurement_uid")
                run.delivered += 1
                seen[uid] = seen.get(uid, 0) + 1
                if uid in rows:
                    run.in_store += 1
                    times.append(rows[uid])
                    delivered_at = dt.datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp()
                    measured_at = self.clock.real_time(rows[uid])
                    if delivered_at - measured_at >= HELD_ROUNDS * period:
                        run.held += 1
            run.pending = sum(1 for _ in spool.glob("*.json")) if spool.is_dir() else 0
            run.rejected = sum(1 for _ in (spool / "rejected").glob("*.json")) if (spool / "rejected").is_dir() else 0
            run.bad = sum(1 for f in (spool / "bad").iterdir() if f.suffix != ".jsonl") \
                if (spool / "bad").is_dir() else 0
            run.coverage, run.outside_window = round_coverage(times, start, until, self.p.round, urls)
        dups = sum(1 for n in seen.values() if n > 1)
        return int(stats.get("measurements", 0)), int(stats.get("verdicts", 0)), dups


def run_campaign(params: CampaignParams) -> CampaignResult:
    """Run a whole campaign (see the module docstring); the lab is torn down at the end, also on failure (unless it
    was a running lab given by name). Raises CampaignError with one line when it cannot run."""
    c = _Campaign(params)
    real_start = time.time()
    scenario, start, until, speed, derived = c.prepare()
    urls = list(params.urls) if params.urls else campaign_urls(scenario)
    if not urls:
        raise CampaignError(f"scenario {scenario.name!r} has no web targets with a site to measure; give urls")
    urls_file = params.out / "urls.txt"
    urls_file.write_text("".join(u + "\n" for u in urls), encoding="utf-8")
    _fingerprint_csvs(params.out / "fingerprints", scenario)
    period = params.round.total_seconds() / speed
    try:
        if derived is not None:
            c.up(derived, speed)
        assert c.state is not None
        collector_url = c.start_collector(scenario)
        c.wait_collector_ready()
        c.start_probes(scenario, collector_url, period, urls_file, start, until)
        clock = c.clock = c.state.clock()
        window_real_start, window_real_end = clock.real_time(start), clock.real_time(until)
        late = time.time() - window_real_start
        if late > 0:  # their first rounds will be missing (campaign.json shows which)
            c.problems.append(f"the probes were started {late:.1f} s after the window opened (raise the preroll)")
        # The probes' clocks end with the window: they stop by themselves after their last round's upload.
        c.watch(start, until, window_real_end, window_real_end + period + 120.0, collector_url)
        c.final_upload(collector_url)
        c.stop_collector()
        c.drain()
        c.copy_lab_records()
        clock_doc = clock.to_json()
    finally:
        c.emit("down")
        c.down()
    c.emit("account")
    stored, verdicts, dups = c.account(start, until, len(urls), period)
    for run in c.clients:  # 9: an upload found the collector unreachable (a cut): expected, if all arrived later
        if run.exit_code not in (0, None, 9):
            c.problems.append(f"{run.id}: the probe exited with {run.exit_code} (see clients/{run.isp}-"
                              f"{run.client}/probe.err)")
        if run.pending:
            c.problems.append(f"{run.id}: {run.pending} measurement(s) still in the spool")
    if dups:
        c.problems.append(f"{dups} measurement uid(s) delivered more than once")
    result = CampaignResult(
        out=params.out, scenario=scenario.name, lab=params.name, speed=speed, round=params.round, period=period,
        start=start, until=until, urls=urls, clients=c.clients, real_start=real_start,
        window_real_start=window_real_start, window_real_end=window_real_end, real_end=time.time(),
        stored=stored, verdicts=verdicts, duplicates=dups, problems=c.problems,
    )
    c.emit("done")
    result.real_end = time.time()
    result.doc = _campaign_doc(result, params, clock_doc)
    result.doc["real"]["phases"] = {k: round(v - real_start, 2) for k, v in c.marks.items()}
    (params.out / "campaign.json").write_text(json.dumps(result.doc, indent=1) + "\n", encoding="utf-8")
    return result


def _campaign_doc(r: CampaignResult, params: CampaignParams, clock: dict[str, Any]) -> dict[str, Any]:
    def iso(real: float) -> str:
        return dt.datetime.fromtimestamp(real, dt.UTC).isoformat(timespec="milliseconds")

    all_secs = [s for c in r.clients for s in c.run_seconds]
    return {
        "scenario": r.scenario, "lab": r.lab, "running_lab": params.running,
        "speed": r.speed, "round": {"scenario_seconds": r.round.total_seconds(), "real_seconds": round(r.period, 4)},
        "rounds": r.rounds,
        "window": {"start": r.start.isoformat(), "until": r.until.isoformat()},
        "clock": clock,
        "real": {"start": iso(r.real_start), "window_start": iso(r.window_real_start),
                 "window_end": iso(r.window_real_end), "end": iso(r.real_end),
                 "wall_seconds": round(r.wall_seconds, 2),
                 "window_seconds": round(r.window_real_end - r.window_real_start, 2)},
        "probe": asdict(params.probe.for_round(r.period)), "preroll_seconds": params.preroll, "urls": r.urls,
        "totals": {"clients": len(r.clients), "runs": sum(c.runs for c in r.clients),
                   "measured": sum(c.measured for c in r.clients),
                   "delivered": sum(c.delivered for c in r.clients),
                   "held_then_delivered": sum(c.held for c in r.clients),
                   "pending": sum(c.pending for c in r.clients), "stored": r.stored, "verdicts": r.verdicts,
                   "duplicate_uids": r.duplicates, "run_seconds": _spread(all_secs)},
        "clients": [c.as_dict() for c in r.clients],
        "problems": r.problems,
        "files": {"store": "store.duckdb", "truth": "truth.jsonl", "actions": "actions.jsonl",
                  "ip_table": "ip-table.json", "scenario": "scenario.toml", "urls": "urls.txt"},
    }


"""A running lab: the process that calls `Lab.up()` owns every namespace, server and censor it starts.

Ownership rules that keep the host clean: children get PR_SET_PDEATHSIG (they die with the owner), `down()`
runs at exit, and `down_lab()` removes whatever carries the lab's name prefix (so a lab whose owner was
SIGKILLed is cleared by the next `up` or by `netvigil lab down`). All state lives under
/run/netvigil-lab/<lab>/: `state.json`, `clock`, `truth.jsonl`, `actions.jsonl`, `ip-table.json`, the CA and
server/censor/control-helper logs, and the control helpers' certificates (`control/`).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import netvigil
from netvigil.lab.clock import ScenarioClock, read_clock
from netvigil.lab.controlhelper import CONTROL_MODULE, control_argv, make_control_helpers
from netvigil.lab.iptable import IpInfo, load_ip_table, make_ip_table, write_ip_table
from netvigil.lab.netns import LabError, build_topology, delete_namespaces, netns_argv, set_pdeathsig
from netvigil.lab.plan import Plan, make_plan, ns_prefix
from netvigil.lab.scenario import Scenario, load_scenario, scenario_path
from netvigil.lab.serverspec import make_server_specs
from netvigil.lab.truth import GroundTruth, read_ground_truth

if TYPE_CHECKING:
    from netvigil.lab.servers.ca import CAFiles

__all__ = ["Lab", "LabState", "STATE_ROOT", "down_lab", "lab_exec_argv", "read_state", "state_dir"]

STATE_ROOT = Path(os.environ.get("NETVIGIL_LAB_STATE", "/run/netvigil-lab"))
SERVERS_MODULE = "netvigil.lab.servers"
READY_TIMEOUT = 60.0


def state_dir(lab: str) -> Path:
    return STATE_ROOT / lab


def _child_env() -> dict[str, str]:
    """The children run `python -m netvigil...` from this very source tree, installed or not."""
    src = str(Path(netvigil.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True, slots=True)
class LabState:
    """What `state.json` records for other processes (CLI, probes, tests)."""

    lab: str
    scenario: str
    owner_pid: int
    owner_start: str | None
    speed: float
    clients: dict[str, list[str]]  # ISP id -> client namespaces
    namespaces: list[str]

    @property
    def dir(self) -> Path:
        return state_dir(self.lab)

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca" / "ca.pem"

    def clock(self) -> ScenarioClock:
        return read_clock(self.dir / "clock")

    def truth(self) -> list[GroundTruth]:
        return list(read_ground_truth(self.dir / "truth.jsonl"))

    def ip_table(self) -> list[IpInfo]:
        return load_ip_table(self.dir / "ip-table.json")


def read_state(lab: str) -> LabState:
    path = state_dir(lab) / "state.json"
    try:
        return LabState(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise LabError(f"no running lab {lab!r} (no {path}); start one with `netvigil lab up`") from None


def lab_exec_argv(state: LabState, where: str, argv: list[str]) -> list[str]:
    """argv that runs `argv` on a host of the lab: an ISP id (its first client), `isp/client`, or a role
    (`internet`, `domestic`, `backbone`). The environment carries the lab CA and name for probes."""
    pre = ns_prefix(state.lab)
    if where in ("internet", "domestic", "backbone"):
        ns = pre + {"internet": "inet", "domestic": "dom", "backbone": "bb"}[where]
    elif "/" in where:
        isp, client = where.split("/", 1)
        ns = f"{pre}{isp}-{client}"
    elif where in state.clients:
        ns = state.clients[where][0]
    else:
        raise LabError(f"no ISP {where!r} in lab {state.lab!r}; ISPs: {', '.join(state.clients)}")
    if ns not in state.namespaces:
        raise LabError(f"no host {where!r} in lab {state.lab!r}")
    ca = state.ca_file
    env = [f"SSL_CERT_FILE={ca}", f"CURL_CA_BUNDLE={ca}", f"REQUESTS_CA_BUNDLE={ca}", f"NETVIGIL_LAB={state.lab}",
           f"NETVIGIL_LAB_DIR={state.dir}"]
    return netns_argv(ns, ["env", *env, *argv])


def _start_time(pid: int) -> str | None:
    """A process's start time: with the pid it identifies the owner even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def down_lab(lab: str, purge: bool = False) -> list[str]:
    """Remove every namespace (and so veth, qdisc, nft table, process) of lab `lab`, also if its owner died.

    Keeps the ground-truth and logs in the state directory unless `purge`."""
    sd = state_dir(lab)
    try:
        doc = json.loads((sd / "state.json").read_text())
        owner = doc["owner_pid"]
        if owner != os.getpid() and _start_time(owner) == doc.get("owner_start"):
            os.kill(owner, signal.SIGTERM)
            for _ in range(100):  # the owner's own cleanup is the tidiest; give it a moment
                os.kill(owner, 0)
                time.sleep(0.05)
    except (OSError, ValueError, KeyError):
        pass
    removed = delete_namespaces(ns_prefix(lab))
    if purge:
        shutil.rmtree(sd, ignore_errors=True)
    else:
        (sd / "state.json").unlink(missing_ok=True)
    return removed


class Lab:
    """One lab instance: `up()` builds and starts it, `down()` removes it. Also a context manager."""

    def __init__(self, scenario: str, lab: str = "lab", speed: float | None = None) -> None:
        self.scenario_file = scenario_path(scenario).resolve()
        self.scenario: Scenario = load_scenario(str(self.scenario_file))
        self.lab = lab
        self.speed = speed or self.scenario.speed
        self.plan: Plan = make_plan(lab, self.scenario)
        self.dir = state_dir(lab)
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._up = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def up(self) -> Lab:
        down_lab(self.lab, purge=True)  # leftovers of a crashed owner of the same lab
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        self._up = True
        atexit.register(self.down)
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        helpers = make_control_helpers(self.plan, self.scenario)
        if helpers and importlib.util.find_spec(CONTROL_MODULE + ".__main__") is None:
            raise LabError(f"scenario {self.scenario.name!r} has control targets, but {CONTROL_MODULE} "
                           "(the control helper) is not installed")
        resolv = {n.ns: self.plan.resolvers[n.isp] for n in self.plan.clients() if n.isp}
        # The internet side and any side hosting a control helper (whose getaddrinfo reads resolv.conf) ask
        # the lab's own uncensored resolver, never the host's.
        for ns in {self.plan.internet, *(h.ns for h in helpers)}:
            resolv[ns] = self.scenario.public_resolver or self.scenario.authoritative
        build_topology(self.plan, resolv)
        write_ip_table(self.dir / "ip-table.json", make_ip_table(self.plan, self.scenario))
        ca = self._make_ca()
        specs = make_server_specs(self.plan, self.scenario, self.dir)
        for ns, spec in specs.items():
            path = self.dir / f"spec-{ns}.json"
            path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
            self._start(ns, [sys.executable, "-m", SERVERS_MODULE, str(path)])
        for helper in helpers:
            leaf = None
            if helper.tls:
                from netvigil.lab.servers.ca import issue_leaf

                issued = issue_leaf(ca, helper.cert_names, self.dir / "control" / helper.target)
                leaf = (issued.cert, issued.key)
            argv = control_argv(helper, sys.executable, ca.cert, leaf, self.dir / "ip-table.json")
            self._start(helper.ns, argv, name=helper.name)
        self._wait_ready([name for name, _ in self._procs])
        self._start(self.plan.backbone, [sys.executable, "-m", "netvigil.lab.censor", "--lab", self.lab,
                                         "--scenario", str(self.scenario_file), "--state-dir", str(self.dir),
                                         "--speed", str(self.speed)], name="censor")
        self._wait_ready(["censor"])
        state = {
            "lab": self.lab, "scenario": str(self.scenario_file), "owner_pid": os.getpid(),
            "owner_start": _start_time(os.getpid()), "speed": self.speed,
            "clients": {i.id: [n.ns for n in self.plan.clients(i.id)] for i in self.scenario.isps},
            "namespaces": [n.ns for n in self.plan.nodes],
        }
        (self.dir / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")

    def _make_ca(self) -> CAFiles:
        try:
            from netvigil.lab.servers.ca import make_ca
        except ImportError as exc:
            raise LabError(f"the lab servers are not installed ({exc}); see `netvigil lab check`") from exc
        return make_ca(self.dir / "ca")

    def _start(self, ns: str, argv: list[str], name: str | None = None) -> None:
        name = name or ns
        out = open(self.dir / "logs" / f"{name}.out", "wb")
        err = open(self.dir / "logs" / f"{name}.err", "wb")
        proc = subprocess.Popen(netns_argv(ns, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=_child_env(), preexec_fn=set_pdeathsig, start_new_session=True)
        out.close()
        err.close()
        self._procs.append((name, proc))

    def _wait_ready(self, names: list[str]) -> None:
        procs = dict(self._procs)
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = set(names)
        while waiting:
            for name in list(waiting):
                if b"READY" in (self.dir / "logs" / f"{name}.out").read_bytes():
                    waiting.discard(name)
                elif procs[name].poll() is not None:
                    err = (self.dir / "logs" / f"{name}.err").read_text(errors="replace").strip()[-2000:]
                    raise LabError(f"{name} exited with {procs[name].returncode} before READY:\n{err}")
            if time.monotonic() > deadline:
                raise LabError(f"not READY after {READY_TIMEOUT:.0f}s: {', '.join(sorted(waiting))} "
                               f"(logs in {self.dir / 'logs'})")
            time.sleep(0.05)

    def down(self) -> None:
        if not self._up:
            return
        self._up = False
        for _, proc in reversed(self._procs):  # censor first: it removes its nft table itself
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self._procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        delete_namespaces(ns_prefix(self.lab))
        (self.dir / "state.json").unlink(missing_ok=True)
        atexit.unregister(self.down)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- use ---------------------------------------------------------------------------------------------
    @property
    def state(self) -> LabState:
        return read_state(self.lab)

    def clock(self) -> ScenarioClock:
        return read_clock(self.dir / "clock")

    def truth(self) -> list[GroundTruth]:
        return list(read_ground_truth(self.dir / "truth.jsonl"))

    def exec(self, where: str, argv: list[str], timeout: float | None = None,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run `argv` on a lab host (see `lab_exec_argv`) and capture its output."""
        return subprocess.run(lab_exec_argv(self.state, where, argv), capture_output=True, text=True,
                              timeout=timeout, input=input, env=_child_env())

"""``netvigil lab``: the censorship lab's commands (thin: flags in, `netvigil.lab` calls out).

Exit codes: 0 success; 2 usage error; 7 the lab cannot run here or failed (message says why).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from netvigil.console import err, out, print_json, print_table
from netvigil.lab.check import check_prerequisites
from netvigil.lab.netns import LabError, delete_namespaces, list_namespaces
from netvigil.lab.runtime import Lab, down_lab, lab_exec_argv, read_state, state_dir
from netvigil.lab.scenario import ScenarioError, list_scenarios, load_scenario
from netvigil.lab.truth import read_ground_truth

app = typer.Typer(help="Censorship lab: network namespaces, a censor on the backbone, scripted scenarios.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

EXIT_LAB = 7
NameOpt = Annotated[str, typer.Option("--name", "-n", help="Lab name (1-8 lowercase letters/digits).")]


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(EXIT_LAB)


@app.command()
def check() -> None:
    """What the lab needs on this machine, what is missing, and how to install it."""
    findings = check_prerequisites()
    print_table(None, ["item", "ok", "detail", "fix"],
                [(f.item, "yes" if f.ok else "NO", f.detail, "" if f.ok else f.fix) for f in findings])
    if not all(f.ok for f in findings):
        raise typer.Exit(EXIT_LAB)


@app.command("scenarios")
def scenarios() -> None:
    """List the shipped scenarios."""
    rows = []
    for name in list_scenarios():
        s = load_scenario(name)
        rows.append((name, s.country, s.start.date(), s.end.date(), len(s.isps), len(s.policies), s.description))
    print_table(None, ["scenario", "cc", "start", "end", "isps", "policies", "description"], rows)


@app.command()
def up(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario name or a path to a .toml file.")],
    name: NameOpt = "lab",
    speed: Annotated[Optional[float], typer.Option(help="Scenario seconds per real second.")] = None,
    detach: Annotated[bool, typer.Option(help="Return once the lab is ready; a background owner keeps it.")] = False,
    exit_at_end: Annotated[bool, typer.Option(help="Tear down when the scenario clock reaches its end.")] = False,
) -> None:
    """Build the lab and run the scenario; stays in the foreground (Ctrl-C or `lab down` ends it)."""
    if detach:
        argv = [sys.executable, "-c", "from netvigil.cli_lab import app; app()", "up", scenario, "--name", name]
        argv += (["--speed", str(speed)] if speed else []) + (["--exit-at-end"] if exit_at_end else [])
        sd = state_dir(name)
        sd.mkdir(parents=True, exist_ok=True)
        with open(sd / "owner.log", "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if read_state(name).owner_pid == proc.pid:
                    out.print(f"lab {name!r} up ({scenario}); owner pid {proc.pid}; `netvigil lab down -n {name}`")
                    return
            except (LabError, ValueError, TypeError):
                pass
            time.sleep(0.2)
        raise _fail(LabError(f"the lab did not come up; see {sd / 'owner.log'}"))
    try:
        lab = Lab(scenario, lab=name, speed=speed)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _stop)
        lab.up()
    except (LabError, ScenarioError) as exc:
        raise _fail(exc) from None
    try:
        state = lab.state
        out.print(f"lab {name!r}: scenario {lab.scenario.name}, speed {lab.speed:g}x, state in {state.dir}")
        for isp, hosts in state.clients.items():
            out.print(f"  {isp}: {', '.join(hosts)}")
        while not stop:
            if exit_at_end and lab.clock().ended():
                break
            time.sleep(0.2)
    finally:
        lab.down()


@app.command()
def status(name: NameOpt = "lab", json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Scenario time, the policies in force now, and the lab's hosts."""
    try:
        state = read_state(name)
        clock = state.clock()
    except (LabError, OSError) as exc:
        raise _fail(exc) from None
    scenario = load_scenario(state.scenario)
    now = clock.now()
    active = scenario.active_policies(min(now, scenario.end))
    doc = {"lab": name, "scenario": scenario.name, "scenario_time": now.isoformat(), "speed": clock.speed,
           "ended": clock.ended(), "active_policies": [p.id for p in active], "clients": state.clients}
    if json:
        print_json(doc)
        return
    out.print(f"lab {name!r} scenario {scenario.name}  time {now.isoformat(timespec='seconds')}  "
              f"speed {clock.speed:g}x{'  (ended)' if doc['ended'] else ''}")
    print_table("active policies", ["policy", "technique", "isps", "targets", "until"],
                [(p.id, p.technique.value, ",".join(p.isps), ",".join(p.targets) or "*", p.end or "-")
                 for p in active])


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_(
    where: Annotated[str, typer.Argument(help="ISP id (its first client), ISP/client, internet, domestic or "
                                              "backbone.")],
    cmd: Annotated[list[str], typer.Argument(help="Command to run there (after --).")],
    name: NameOpt = "lab",
) -> None:
    """Run a command on a lab host, e.g. `netvigil lab exec alpha -- curl https://news.example/`."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    try:
        argv = lab_exec_argv(read_state(name), where, cmd)
    except LabError as exc:
        raise _fail(exc) from None
    os.execvp(argv[0], argv)


@app.command()
def down(
    name: NameOpt = "lab",
    all_labs: Annotated[bool, typer.Option("--all", help="Remove every netvigil lab namespace (nv-*).")] = False,
    purge: Annotated[bool, typer.Option(help="Also delete the state directory (ground truth, logs).")] = False,
) -> None:
    """Stop the lab: no namespace, veth, nft table or process of it stays behind."""
    prefix = "nv-" if all_labs else f"nv-{name}-"
    before = list_namespaces(prefix)
    if all_labs:
        delete_namespaces(prefix)
    else:
        down_lab(name, purge=purge)
    left = list_namespaces(prefix)
    out.print(f"removed {len(set(before) - set(left))} namespace(s)")
    if left:
        raise _fail(LabError(f"still present: {', '.join(left)}"))


@app.command()
def truth(name: NameOpt = "lab", json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the ground-truth log: every policy switch the censor made, in scenario time."""
    path = state_dir(name) / "truth.jsonl"
    if not path.exists():
        raise _fail(LabError(f"no ground truth for lab {name!r} ({path})"))
    records = list(read_ground_truth(path))
    if json:
        print_json([asdict(r) for r in records])
        return
    print_table(None, ["scenario time", "state", "technique", "isp", "region", "target", "policy"],
                [(r.t, r.state, r.technique, r.isp, r.region or "", r.target, r.policy) for r in records])


@app.command()
def campaign(
    out: Annotated[Path, typer.Option("--out", help="Output directory (new or empty): store, truth, campaign.json.")],
    scenario: Annotated[Optional[str], typer.Argument(help="A shipped scenario or a .toml path. Omit it to use the "
                                                           "running lab --name.")] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="Lab name: the lab to bring up, or the running lab to "
                                                           "use when SCENARIO is omitted.")] = "camp",
    speed: Annotated[Optional[float], typer.Option(min=1.0, help="Scenario seconds per real second. Default: one "
                                                   "round every 3.5 real seconds.")] = None,
    round_: Annotated[str, typer.Option("--round", help="Scenario time between two runs of every probe.")] = "12h",
    start: Annotated[Optional[str], typer.Option("--from", help="Window start (scenario time, ISO or +offset from "
                                                 "the scenario start). Default: the scenario start.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Window end (exclusive). Default: the scenario "
                                                 "end.")] = None,
    urls: Annotated[Optional[Path], typer.Option("--urls", help="URLs to measure, one per line. Default: every web "
                                                 "target of the scenario.")] = None,
    budget: Annotated[Optional[float], typer.Option(min=1.0, help="Seconds one URL may take (step timeouts stay "
                                                    "1 s). Default: 85 % of a round, at most 2.3 s.")] = None,
    preroll: Annotated[float, typer.Option(min=2.0, help="Real seconds between the lab clock's start and the "
                                           "window, for the collector and the probes to start.")] = 20.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print campaign.json instead of the summary table.")]
    = False,
) -> None:
    """Probes in every ISP client through the scenario's compressed timeline, uploading through the real collector
    into one store; writes the store, the ground truth and campaign.json into --out."""
    from netvigil.lab.campaign import (
        CampaignError, CampaignParams, ProbeSettings, parse_round, parse_scenario_time, run_campaign,
    )

    try:
        rnd = parse_round(round_)
        if scenario is not None:
            if (state_dir(name) / "state.json").exists():
                raise CampaignError(f"lab {name!r} is running: omit SCENARIO to use it, or choose another --name")
            parsed = load_scenario(scenario)
        else:
            parsed = load_scenario(read_state(name).scenario)
            if speed is not None:
                raise CampaignError("--speed applies only to a lab the campaign brings up (give SCENARIO)")
        url_list = _read_urls(urls) if urls is not None else None
        params = CampaignParams(
            out=out, scenario=scenario, name=name, running=scenario is None, speed=speed, round=rnd,
            start=parse_scenario_time(start, parsed) if start else None,
            until=parse_scenario_time(until, parsed) if until else None, urls=url_list,
            probe=ProbeSettings(budget=budget),
            preroll=preroll)
    except (CampaignError, ScenarioError, LabError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    def _interrupt(*_: object) -> None:  # SIGTERM/SIGHUP like Ctrl-C: run_campaign takes its lab down on the way out
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = _campaign_with_progress(params, run_campaign, quiet=json_out)
    except (CampaignError, LabError, ScenarioError) as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        err.print(f"interrupted: lab {name!r} taken down; what the campaign wrote so far is in {out}")
        raise typer.Exit(130) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if json_out:
        print_json(result.doc)
    else:
        _print_campaign(result)
    if result.problems:
        raise typer.Exit(EXIT_LAB)


def _read_urls(path: Path) -> list[str]:
    from netvigil.lab.campaign import CampaignError

    if not path.is_file():
        raise CampaignError(f"no such URL file: {path}")
    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(("http://", "https://")):
            raise CampaignError(f"{path}:{n}: not an http(s) URL: {line!r}")
        found.append(line)
    if not found:
        raise CampaignError(f"{path}: no URLs")
    return found


def _campaign_with_progress(params, run, quiet: bool):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.fields[phase]}"), BarColumn(bar_width=None),
                        TextColumn("{task.fields[when]}  spooled {task.fields[spooled]}  delivered "
                                   "{task.fields[delivered]}"), TimeElapsedColumn(),
                        console=err, transient=True, disable=quiet or not err.is_terminal)
    with progress:
        task = progress.add_task("campaign", total=1.0, phase="lab", when="", spooled=0, delivered=0)
        phases: list[str] = []

        def show(p) -> None:
            if not phases or phases[-1] != p.phase:
                phases.append(p.phase)
                if not quiet and not err.is_terminal:
                    err.print(f"campaign: {p.phase}")
            when = p.scenario_time.isoformat(timespec="minutes") if p.scenario_time else ""
            progress.update(task, completed=p.fraction, phase=p.phase, when=when, spooled=p.spooled,
                            delivered=p.delivered)

        params.progress = show
        return run(params)


def _print_campaign(result) -> None:
    rows = []
    for c in result.clients:
        cov = c.coverage
        rows.append((c.id, c.region, c.asn, c.runs, c.measured, c.delivered, c.in_store, c.held, c.pending,
                     f"{cov.complete}/{cov.expected}" if cov else "-", ",".join(map(str, cov.missing)) if cov else ""))
    print_table(f"campaign {result.scenario}: {result.start.isoformat()} .. {result.until.isoformat()}",
                ["client", "region", "asn", "runs", "measured", "delivered", "in store", "held", "pending",
                 "full rounds", "missing rounds"], rows)
    t = result.doc["totals"]
    out.print(f"speed {result.speed:g}x, one round = {result.round} = {result.period:.2f} s; {result.rounds} rounds; "
              f"{t['measured']} measurements, {result.stored} stored, {result.verdicts} verdicts; "
              f"wall {result.wall_seconds:.0f} s; output in {result.out}")
    for problem in result.problems:
        err.print(f"[yellow]problem:[/] {problem}")


def main() -> None:  # `python -m netvigil.cli_lab` without the lead's top-level CLI
    app()


if __name__ == "__main__":
    main()

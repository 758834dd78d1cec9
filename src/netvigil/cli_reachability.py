"""`netvigil reachability`: probe address blocks from outside, round after round, and write per-ASN / region /
country reachability signals (Trinocular-style; `docs/reachability.md`).

The lead registers it with `app.command("reachability")(reachability)`; `python -m netvigil.cli_reachability`
runs it on its own.
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from netvigil.console import err, out, print_json, print_table

__all__ = ["reachability"]

EXIT_USAGE = 2
EXIT_QUARANTINED = 3
EXIT_MISSING = 4
EXIT_LAB = 7


class Measure(StrEnum):
    count = "count"
    share = "share"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _ports(text: str) -> tuple[int, ...]:
    ports: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise ValueError(f"--ports: {part!r} is not a TCP port (1-65535)")
        ports.append(int(part))
    return tuple(dict.fromkeys(ports))


def _sparkline(values: list[float | None], full: float) -> str:
    bars = " ▁▂▃▄▅▆▇█"
    return "".join("·" if v is None else bars[round(8 * v / full)] if full else bars[0] for v in values)


def _run_stoppable(fn, params):
    """SIGTERM (systemd's stop) ends the run like Ctrl-C: the rounds measured so far are written."""
    import signal

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return fn(params)
    try:
        return fn(params)
    finally:
        signal.signal(signal.SIGTERM, previous)


def reachability(
    targets: Annotated[Optional[Path], typer.Option("--targets", help="CSV of prefix,asn,country,region (prefixes "
                                                    "shorter than /24 are split into /24 blocks).")] = None,
    lab: Annotated[Optional[str], typer.Option("--lab", help="Probe a running lab's ISP addresses from its internet "
                                               "namespace, on its scenario clock.")] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=0, help="Rounds to run after the census; 0: until "
                                        "stopped (Ctrl-C or SIGTERM).")] = 6,
    round_seconds: Annotated[int, typer.Option("--round-seconds", min=1, help="Seconds between rounds, in the "
                                               "signal's clock (scenario seconds with --lab). Trinocular: 660.")] = 660,
    rate: Annotated[float, typer.Option("--rate", min=0.01, help="Packets per second at most (ICMP echoes and "
                                        "TCP SYNs together).")] = 100.0,
    ports: Annotated[str, typer.Option("--ports", help="TCP ports to send a SYN to ('' for none); SYN-ACK or "
                                       "RST both mean the address is up.")] = "80,443",
    icmp: Annotated[bool, typer.Option("--icmp/--no-icmp", help="Also send an ICMP echo (raw socket as root, "
                                       "else the unprivileged ICMP socket; TCP only if neither works).")] = True,
    timeout: Annotated[float, typer.Option("--timeout", min=0.05, help="Real seconds one probe waits for an "
                                           "answer.")] = 2.0,
    max_probes: Annotated[int, typer.Option("--max-probes", min=1, max=100, help="Probes per block per round "
                                            "before it is called uncertain.")] = 15,
    measure: Annotated[Measure, typer.Option("--measure", help="Signal value: blocks up (count) or up / decided "
                                             "(share).")] = Measure.count,
    source: Annotated[Optional[str], typer.Option("--source", help="Send probes from this local address. With "
                                                  "--lab: an address of the lab's internet side by default.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed for the probing order.")] = None,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="A JSONL file of its own for the Signals (rewritten after each round). Default: the signals "
        "store, <data dir>/signals/signals.jsonl (joined with what is there).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Probe blocks from outside (TCP/ICMP, adaptive, rate-limited) and write reachability Signals.

    Only per-entity counts are written: no address and no per-block result leaves the run."""
    from netvigil.probe.reachability import BeliefParams, ProbeConfig
    from netvigil.tasks.reachability import (
        MakeReachabilityParams,
        ReachabilityError,
        RealClock,
        SignalsWriteError,
        lab_targets,
        load_targets_csv,
        make_reachability_run,
    )

    if (targets is None) == (lab is None):
        raise _fail("give exactly one of --targets CSV or --lab NAME", EXIT_USAGE)
    try:
        port_list = _ports(ports)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if not port_list and not icmp:
        raise _fail("nothing to probe with: give --ports or --icmp", EXIT_USAGE)
    if source is not None:
        try:
            ipaddress.IPv4Address(source)
        except ValueError:
            raise _fail(f"--source: {source!r} is not an IPv4 address", EXIT_USAGE) from None
    netns = None
    clock = RealClock()
    try:
        if targets is not None:
            if not targets.is_file():
                raise _fail(f"no such file: {targets}", EXIT_MISSING)
            load = load_targets_csv(targets)
        else:
            target = lab_targets(lab)
            load, clock, netns = target.load, target.clock, target.netns
            source = source or target.source
    except ReachabilityError as exc:
        raise _fail(str(exc), EXIT_LAB if lab else EXIT_MISSING) from None
    for problem in load.problems[:20]:
        err.print(f"[yellow]set aside:[/] {problem}")
    if len(load.problems) > 20:
        err.print(f"[yellow]… and {len(load.problems) - 20} more rows set aside[/]")
    if not load.blocks:
        raise _fail("no valid blocks to probe", EXIT_USAGE)
    cfg = ProbeConfig(ports=port_list, icmp=icmp, icmp_privileged=os.geteuid() == 0, timeout=timeout,
                      source=source)
    params = MakeReachabilityParams(
        blocks=load.blocks, rounds=rounds, step=round_seconds, rate=rate, config=cfg,
        belief=BeliefParams(max_probes=max_probes), clock=clock, netns=netns, out=out_path,
        measure=measure.value, seed=seed)
    if not json_out:
        def progress(i: int, stats, signals) -> None:
            states = " · ".join(f"{k} {v}" for k, v in sorted(stats.blocks.items()))
            err.print(f"round {i + 1}: {states}; {stats.probes} probes, {stats.packets} packets, "
                      f"{stats.seconds:.2f} s")
        params.on_round = progress
        err.print(f"census of {len(load.blocks)} blocks, then "
                  f"{'rounds until stopped' if rounds == 0 else f'{rounds} rounds'} every {round_seconds} s"
                  f"{f' (scenario time, {round_seconds / clock.speed:.3g} s real)' if lab else ''}")
    try:
        run = _run_stoppable(make_reachability_run, params)
    except SignalsWriteError as exc:
        raise _fail(str(exc), EXIT_MISSING) from None
    except ReachabilityError as exc:
        raise _fail(str(exc), EXIT_LAB if lab else EXIT_USAGE) from None
    if json_out:
        doc = run.as_dict()
        doc["targets"] = {"rows": load.rows, "blocks": len(load.blocks), "set_aside": load.problems}
        print_json(doc)
    else:
        for note in run.notes:
            err.print(f"[yellow]note:[/] {note}")
        rows = []
        for s in run.signals:
            seen = [v for v in s.values if v is not None]
            full = max(seen) if seen else 0.0
            rows.append((s.entity_type, s.entity_code, _sparkline(s.values, full),
                         ", ".join("-" if v is None else f"{v:g}" for v in s.values[-6:])))
        print_table(f"reachability: {len(run.rounds)} rounds of {run.step} s from "
                    f"{run.start} ({run.measurable}/{run.blocks} blocks measurable)",
                    ["entity", "code", "rounds", "last values"], rows)
        out.print(f"signals written to {run.out}")
    raise typer.Exit(EXIT_QUARANTINED if load.problems else 0)


if __name__ == "__main__":
    typer.run(reachability)

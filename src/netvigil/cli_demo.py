"""`netvigil demo`: flags in, `netvigil.tasks.demo.run_demo` called, a progress view and the summary out.

Exit codes: 0 done; 2 bad flags or output directory; 4 --economics given but unusable (or --serve-only without a demo
in --out); 5 the store could not be read; 7 the lab cannot run here or the campaign failed; 10 the dashboard cannot
listen on --host/--port or did not answer; 130 interrupted (the lab is taken down).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from netvigil.console import err, out, print_json

if TYPE_CHECKING:
    from netvigil.tasks.demo import DemoProgress, DemoResult

__all__ = ["demo_command"]

EXIT_SERVE = 10
EXIT_INTERRUPTED = 130


def demo_command(
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory: the campaign's store and ground truth, "
                                          "the report, demo.json. An earlier demo's output there is replaced.")]
    = Path("netvigil-demo"),
    host: Annotated[str, typer.Option("--host", help="Address the dashboard listens on.")] = "127.0.0.1",
    port: Annotated[Optional[int], typer.Option("--port", min=0, max=65535, help="The dashboard's port (0: any "
                                                "free one). Default: 8080, or any free one if 8080 is taken and the "
                                                "dashboard is only checked.")] = None,
    keep_serving: Annotated[bool, typer.Option("--keep-serving", help="Leave the dashboard up until Ctrl-C (by "
                                               "default it is checked, then stopped).")] = False,
    round_: Annotated[str, typer.Option("--round", help="Advanced: scenario time between two probe runs (every "
                                        "round takes the same few real seconds: 12h doubles the campaign's "
                                        "length).")] = "1d",
    economics: Annotated[Optional[Path], typer.Option("--economics", help="Directory of the cost model's inputs "
                                                      "(`netvigil data update --economics`). Default: the data "
                                                      "directory; without them the demo runs without costs.")]
    = None,
    name: Annotated[str, typer.Option("--name", "-n", help="The lab's name (1-8 lowercase letters/digits).")]
    = "demo",
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary (demo.json) as JSON.")] = False,
    serve_only: Annotated[bool, typer.Option("--serve-only", help="Only serve the dashboard of the demo already in "
                                             "--out, until Ctrl-C (no lab).")] = False,
) -> None:
    """The whole job in a few minutes: the az-2020 lab, probes in every ISP through the compressed timeline,
    the collector, incidents, costs, the report and the dashboard."""
    from netvigil.lab.campaign import CampaignError, parse_round
    from netvigil.tasks.demo import DemoError, DemoParams, run_demo, serve_output

    if serve_only:
        previous = _terminate_as_interrupt(name)
        try:
            serve_output(out_dir, host, port, ready=lambda url: err.print(
                f"[bold]dashboard[/] {url} — the demo in {out_dir}; serving until Ctrl-C"))
        except DemoError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(exc.code) from None
        finally:
            _restore(previous)
        return

    try:
        rnd = parse_round(round_)
    except CampaignError as exc:
        err.print(f"[bold red]error:[/] --round: {exc}")
        raise typer.Exit(2) from None
    view = _View(live=err.is_terminal)

    def serving(result: DemoResult) -> None:
        view.stop()
        _show(result, json_out)
        d = result.dashboard
        if d is not None:
            err.print(f"[bold]dashboard[/] {d.url} — serving until Ctrl-C")

    params = DemoParams(out=out_dir, host=host, port=port, keep_serving=keep_serving, round=rnd,
                        economics_dir=economics, name=name, progress=view.update, serving=serving)
    previous = _terminate_as_interrupt(name)
    try:
        with view:
            result = run_demo(params)
    except DemoError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted:[/] the lab is down; partial output in " + str(out_dir))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        _restore(previous)
    if not keep_serving:
        _show(result, json_out)
    if result.dashboard is not None and not result.dashboard.ok:
        raise typer.Exit(EXIT_SERVE)


def _terminate_as_interrupt(name: str) -> dict[int, Any]:
    """SIGTERM and SIGHUP end the demo like Ctrl-C, so that every `finally` runs and the lab comes down; a second
    signal while it is coming down is ignored (a third one abandons the teardown)."""
    previous: dict[int, Any] = {}
    seen = [0]

    def handler(signum: int, frame: object) -> None:
        seen[0] += 1
        if seen[0] == 2:
            err.print("[yellow]the lab is coming down;[/] interrupt once more to abandon that (then: "
                      f"`netvigil lab down -n {name}`)")
            return
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class _View:
    """The progress view: one row per phase (a spinner while it runs, its time once done); the campaign's row
    counts rounds and measurements. Plain lines on stderr when it is not a terminal."""

    def __init__(self, live: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.live = live
        self.progress = Progress(SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.description}"),
                                 BarColumn(bar_width=30), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=err, disable=not live)
        self.tasks: dict[str, Any] = {}
        self.started = False
        self.last_round = -1

    def __enter__(self) -> _View:
        if self.live:
            self.progress.start()
            self.started = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False

    def update(self, step: DemoProgress) -> None:
        from netvigil.tasks.demo import PHASES

        label = dict(PHASES).get(step.phase, step.phase)
        if not self.live:
            self._plain(step, label)
            return
        task = self.tasks.get(step.phase)
        if task is None:
            total = step.rounds or 1
            task = self.tasks[step.phase] = self.progress.add_task(label, total=total, info="")
        if step.event == "update" and step.phase == "collect" and step.measurements:
            self.progress.update(task, total=step.measurements, completed=step.delivered,
                                 info="measurements delivered to the collector")
        elif step.event == "update" and step.phase == "campaign" and step.rounds:
            when = f" · {step.scenario_time:%d %b %Y}" if step.scenario_time else " · waiting for the window"
            self.progress.update(task, total=step.rounds, completed=step.round,
                                 info=f"rounds · {step.measurements:,} measurements{when}")
        elif step.event == "end":
            t = next((t for t in self.progress.tasks if t.id == task), None)
            total = t.total if t is not None and t.total else 1
            self.progress.update(task, total=total, completed=total,
                                 info=step.detail or f"{step.seconds:.1f} s")
            self.progress.stop_task(task)

    def _plain(self, step: DemoProgress, label: str) -> None:
        if step.event == "start":
            err.print(f"demo: {label} ...")
        elif step.event == "end":
            extra = f" ({step.detail})" if step.detail else ""
            err.print(f"demo: {label}: {step.seconds:.1f} s{extra}")
        elif step.phase == "campaign" and step.rounds and step.round != self.last_round and step.round % 10 == 0 \
                and step.round > 0:
            self.last_round = step.round
            err.print(f"demo:   round {step.round}/{step.rounds}, {step.measurements:,} measurements")


_KIND = {"service-based": "blocking", "full-network": "outage", "throttling": "throttling"}


def _dates(start: str, end: str | None, tz: Any) -> str:
    import datetime as dt

    first = dt.datetime.fromisoformat(start).astimezone(tz).strftime("%d %b")
    last = dt.datetime.fromisoformat(end).astimezone(tz).strftime("%d %b") if end else "ongoing"
    return f"{first} - {last}"


def _where(scope: str, asns: list[str]) -> str:
    nets = asns[0] if len(asns) == 1 else f"{len(asns)} networks"
    return nets if scope == "isp" else f"{nets}, {scope}"


def _incident_table(items: list[dict[str, Any]], tz: Any) -> None:
    from rich import box
    from rich.table import Table

    from netvigil.economics.explain import usd

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), header_style="bold")
    for col in ("dates", "kind", "services / regions", "where", "USD"):
        table.add_column(col, overflow="fold", justify="right" if col == "USD" else "left")
    for i in items:
        cost = i["cost"]
        table.add_row(_dates(i["start"], i["end"], tz), _KIND.get(i["type"], i["type"]),
                      ", ".join(i["services"] or i["regions"]), _where(i["scope"], i["asns"]),
                      usd(cost["central"]) if cost else "")
    out.print(table)


def _show(result: DemoResult, json_out: bool) -> None:
    from netvigil.economics.explain import usd
    from netvigil.report.zones import timezone_named

    doc = result.summary()
    if json_out:
        print_json(doc)
        return
    tzname = doc.get("timezone") or "UTC"
    tz = timezone_named(tzname)
    out.print(f"[bold]netvigil demo[/]: {doc['scenario']} ({doc['country']}) in {doc['wall_seconds']:.0f} s — "
              + ", ".join(f"{k} {v:.1f} s" for k, v in doc["phases"].items()))
    c = doc.get("campaign", {})
    if c:
        out.print(f"campaign: {c['rounds']} rounds of {c['round_scenario_seconds'] / 3600:g} h "
                  f"({c['round_real_seconds']:.2f} s each), {c['clients']} probes x {c['urls']} URLs: "
                  f"{c['stored']:,} measurements stored, {c['verdicts']:,} verdicts")
        for problem in c["problems"]:
            err.print(f"[yellow]campaign problem:[/] {problem}")
    if doc["verdicts"]:
        out.print("verdicts: " + ", ".join(f"{k} {v:,}" for k, v in doc["verdicts"].items()))
    inc = doc["incidents"]
    out.print(f"incidents: {inc['total']} (" + ", ".join(f"{n} {t}" for t, n in inc["by_type"].items())
              + f"); dates in {tzname}, cost central estimate")
    _incident_table(inc["list"], tz)
    cost = doc["cost"]
    if cost["total"]:
        t = cost["total"]
        out.print(f"cost: {usd(t['low'])} to {usd(t['high'])} {t['currency']} (central {usd(t['central'])}); "
                  f"{cost['priced']} of {cost['of']} incidents priced")
    if cost["note"]:
        err.print(f"[yellow]note:[/] {cost['note']}")
    rep = doc.get("report")
    if rep:
        out.print(f"report: {rep['html']}")
        out.print(f"        {rep['markdown']} (+ {len(rep['charts'])} chart files)")
    d = doc.get("dashboard")
    if d:
        state = "answers" if d["ok"] else "did NOT answer: " + ", ".join(f"{p} {s}" for p, s in d["answers"].items())
        out.print(f"dashboard: {d['url']} {state}")
        if not d["kept_serving"]:
            out.print(f"           stopped; to browse it: netvigil demo --serve-only --out {doc['out']}")
    out.print(f"summary: {Path(doc['out']) / 'demo.json'}")


def main() -> None:  # `python -m netvigil.cli_demo` without the lead's top-level CLI
    typer.run(demo_command)


if __name__ == "__main__":
    main()

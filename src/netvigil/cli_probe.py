"""`netvigil probe …`: measure from inside a network, keep every measurement, deliver it when possible."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Callable, Optional

import msgspec
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from netvigil.config import default_spool_dir
from netvigil.console import err, out, print_json, print_table

app = typer.Typer(help="Measure websites from this network (OONI Web Connectivity), spool and upload.",
                  no_args_is_help=True)

EXIT_USAGE = 2
EXIT_MISSING = 4
EXIT_STORE = 5
EXIT_PROBE_ERRORS = 8
EXIT_UPLOAD_INCOMPLETE = 9
MIN_UPLOAD_SECONDS = 0.2  # a scheduled upload with less time than this before the next run is not started

SpoolOpt = Annotated[Optional[Path], typer.Option("--spool", help="Spool directory. Default: $NETVIGIL_SPOOL or "
                                                  "the data directory's spool/.")]
CAOpt = Annotated[Optional[Path], typer.Option("--ca-file", help="Trust these CAs instead of the system store "
                                               "(PEM bundle) for measured sites and helpers.")]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def parse_duration(text: str) -> float:
    """'90s', '30m', '1h', '1d' or plain seconds -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 1h, 1d)")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]


def _tls(ca_file: Path | None):
    from netvigil.probe.netx import TLSConfig

    if ca_file is not None and not ca_file.is_file():
        raise _fail(f"no such CA file: {ca_file}", EXIT_MISSING)
    return TLSConfig(ca_file=str(ca_file) if ca_file else None)


def _lab_table(explicit: Path | None) -> Path | None:
    """The lab's IP table: given, or the one of the lab this process runs in (`netvigil lab exec` sets the env)."""
    if explicit is not None:
        return explicit
    lab_dir = os.environ.get("NETVIGIL_LAB_DIR")
    if lab_dir and (Path(lab_dir) / "ip-table.json").is_file():
        return Path(lab_dir) / "ip-table.json"
    return None


@app.command("run")
def run(
    lists: Annotated[Optional[str], typer.Option("--list", help="Test lists by name, comma-separated (az,global).")] = None,
    lists_dir: Annotated[Optional[Path], typer.Option(help="Directory of Citizen Lab test lists. Default: "
                                                      "$NETVIGIL_TEST_LISTS or the data directory's test-lists/.")] = None,
    url: Annotated[list[str], typer.Option("--url", help="A URL to measure; repeatable.")] = [],  # noqa: B006
    file: Annotated[list[Path], typer.Option("--file", help="A file of URLs (one per line) or a test-list CSV; "
                                             "repeatable.")] = [],  # noqa: B006
    category: Annotated[list[str], typer.Option("--category", help="Only these category codes; repeatable.")] = [],  # noqa: B006
    exclude_category: Annotated[list[str], typer.Option(help="Skip these category codes; repeatable.")] = [],  # noqa: B006
    limit: Annotated[Optional[int], typer.Option(min=1, help="Measure at most this many URLs.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=512, help="URLs measured at once.")] = 32,
    budget: Annotated[float, typer.Option(min=1.0, help="Seconds one URL may take, all steps included.")] = 40.0,
    control: Annotated[Optional[str], typer.Option("--control", envvar="NETVIGIL_CONTROL",
                                                   help="Control helper URL (netvigil control serve).")] = None,
    udp_resolver: Annotated[str, typer.Option(help="Public resolver ip:port for the extra UDP lookup "
                                              "('' to skip).")] = "8.8.8.8:53",
    doh: Annotated[Optional[str], typer.Option("--doh", help="DoH URL for an extra lookup.")] = None,
    ca_file: CAOpt = None,
    cc: Annotated[Optional[str], typer.Option("--cc", help="Probe country code (overrides lookups).")] = None,
    asn: Annotated[Optional[str], typer.Option("--asn", help="Probe ASN, AS123 (overrides lookups).")] = None,
    network_name: Annotated[Optional[str], typer.Option(help="Probe network name.")] = None,
    mmdb: Annotated[Optional[Path], typer.Option(help="IP-to-ASN/country database (.mmdb).")] = None,
    ip_table: Annotated[Optional[Path], typer.Option(help="The lab's ip-table.json (default: the lab this runs in).")] = None,
    spool: SpoolOpt = None,
    store: Annotated[Optional[str], typer.Option(help="Store URL or path. Default: $NETVIGIL_STORE or the data "
                                                 "directory.")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not write results to the local store.")] = False,
    fingerprints: Annotated[Optional[Path], typer.Option(help="Directory with OONI fingerprint CSVs.")] = None,
    collector: Annotated[Optional[str], typer.Option(envvar="NETVIGIL_COLLECTOR", help="Collector URL: upload the "
                                                     "spool after each run.")] = None,
    every: Annotated[Optional[str], typer.Option(help="Keep measuring on this schedule (e.g. 1h) until stopped.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    dns_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds for each DNS lookup (within "
                                                         "--budget). Default: 5.")] = None,
    connect_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds for each TCP connect. "
                                                             "Default: 10.")] = None,
    tls_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds for each TLS handshake. "
                                                         "Default: 10.")] = None,
    http_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds for each HTTP exchange, body "
                                                          "included. Default: 15.")] = None,
    control_timeout: Annotated[Optional[float], typer.Option(min=0.1, help="Seconds for the control helper's "
                                                             "answer. Default: 20.")] = None,
    upload_timeout: Annotated[float, typer.Option(min=0.5, help="Seconds per upload request (with "
                                                  "--collector).")] = 15.0,
    upload_attempts: Annotated[int, typer.Option(min=1, max=100, help="Tries per upload request before leaving "
                                                 "the rest for the next upload.")] = 5,
    clock: Annotated[Optional[Path], typer.Option("--clock", envvar="NETVIGIL_CLOCK", help="Lab only: a scenario "
                                                  "clock file (/run/netvigil-lab/<lab>/clock). Measurements are "
                                                  "stamped in scenario time and --every runs on the scenario's "
                                                  "grid until the scenario ends.")] = None,
    region: Annotated[Optional[str], typer.Option("--region", help="The probe's region, written as the OONI "
                                                  "annotation probe_region. Default: in the lab, the client's "
                                                  "region from the lab's IP table.")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="Nettests, comma-separated: web_connectivity, "
                                                "whatsapp, telegram, facebook_messenger, signal, tor, vpn, "
                                                "throttling, speedtest, or all (the suite for a country). "
                                                "Default: web_connectivity.")] = None,
    telegram_dc: Annotated[list[str], typer.Option("--telegram-dc", help="telegram: a data-centre IP to test "
                                                   "instead of the defaults; repeatable.")] = [],  # noqa: B006
    facebook_asn: Annotated[list[int], typer.Option("--facebook-asn", help="facebook_messenger: an ASN its "
                                                    "answers may come from (default 32934); repeatable.")] = [],  # noqa: B006
    signal_ca: Annotated[Optional[Path], typer.Option("--signal-ca", help="signal: the CA its servers use "
                                                      "(default: Signal's own root).")] = None,
    tor_targets: Annotated[list[Path], typer.Option("--tor-targets", help="tor: a targets file (JSON/TOML) "
                                                    "instead of the directory authorities; repeatable.")] = [],  # noqa: B006
    tor_bridge: Annotated[list[str], typer.Option("--tor-bridge", help="tor: a bridge line; repeatable.")] = [],  # noqa: B006
    vpn_config: Annotated[list[Path], typer.Option("--vpn-config", help="vpn: a WireGuard (.conf) or OpenVPN "
                                                   "(.ovpn) config to test at handshake level; repeatable.")] = [],  # noqa: B006
    throttle_target: Annotated[list[str], typer.Option("--throttle-target", help="throttling: a host name to test "
                                                       "by SNI swap; repeatable.")] = [],  # noqa: B006
    throttle_address: Annotated[Optional[str], typer.Option(help="throttling: the server IP for every "
                                                            "download (default: resolved).")] = None,
    throttle_path: Annotated[Optional[str], typer.Option(help="throttling: a large object's path on that "
                                                         "server.")] = None,
) -> None:
    """Measure with OONI's nettests (Web Connectivity by default); spool, judge and store every measurement."""
    from netvigil.cli import _fingerprints
    from netvigil.config import default_store_url
    from netvigil.probe.geo import GeoError, local_address, locate, system_resolver
    from netvigil.probe.inputs import InputError, default_lists_dir, load_targets
    from netvigil.probe.nettests.web_connectivity import WebConnectivityOptions
    from netvigil.probe.spool import Spool
    from netvigil.tasks.probing import MakeProbeRunParams

    try:
        period = parse_duration(every) if every else None
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    if period is not None and period <= 0:
        raise _fail(f"--every must be longer than 0 s, got {every!r}", EXIT_USAGE)
    scenario_clock = _scenario_clock(clock)
    for path in file:
        if not path.is_file():
            raise _fail(f"no such file: {path}", EXIT_MISSING)
    from netvigil.probe.suite import WEB, parse_tests

    try:
        tests = parse_tests(test)
    except ValueError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    web = WEB in tests
    names = [n.strip() for n in (lists or "").split(",") if n.strip()]
    if not web and (names or url or file):
        raise _fail("--list/--url/--file are Web Connectivity inputs: add web_connectivity to --test", EXIT_USAGE)
    try:
        inputs = load_targets(lists=names, lists_dir=lists_dir or default_lists_dir(), urls=url, files=file,
                              categories=category, exclude_categories=exclude_category, limit=limit)
    except InputError as exc:
        raise _fail(str(exc), EXIT_MISSING) from None
    for problem in inputs.problems[:20]:
        err.print(f"[yellow]skipped input:[/] {problem}")
    if len(inputs.problems) > 20:
        err.print(f"[yellow]… and {len(inputs.problems) - 20} more skipped inputs[/]")
    if web and not inputs.targets and test is None:
        raise _fail("nothing to measure: give --list, --url or --file", EXIT_USAGE)
    if web and not inputs.targets:
        err.print("[yellow]note:[/] web_connectivity left out: no URLs (give --list, --url or --file)")
    resolver = system_resolver()
    table = _lab_table(ip_table)
    try:
        location = locate(cc=cc, asn=asn, network_name=network_name, mmdb=mmdb, lab_table=table,
                          probe_ip=local_address(resolver) if resolver else None, resolver_ip=resolver)
    except GeoError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    annotations = {}
    probe_region = region if region is not None else _lab_region(table, resolver)
    if probe_region:
        annotations["probe_region"] = probe_region
    for flag, value in (("--control", control), ("--collector", collector), ("--doh", doh)):
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise _fail(f"{flag} expects an http(s) URL, got {value!r}", EXIT_USAGE)
    tls = _tls(ca_file)
    timeouts = {name: value for name, value in (("dns_timeout", dns_timeout), ("connect_timeout", connect_timeout),
                                                ("tls_timeout", tls_timeout), ("http_timeout", http_timeout),
                                                ("control_timeout", control_timeout)) if value is not None}
    options = WebConnectivityOptions(control_url=control, control_tls=tls, tls=tls,
                                     udp_resolver=udp_resolver or None, doh_url=doh, budget=budget, **timeouts)
    spool_dir = spool or default_spool_dir()
    store_url = None if no_store else (store or default_store_url())
    nettests = _suite(tests, test is not None and test.strip() != "all", tls, None,
                      timeouts, table, mmdb, telegram_dc, facebook_asn, signal_ca, tor_targets, tor_bridge,
                      vpn_config, throttle_target, throttle_address, throttle_path, control)
    if not inputs.targets and not nettests:
        raise _fail("nothing to measure", EXIT_USAGE)
    params = MakeProbeRunParams(targets=inputs.targets if web else [], options=options, location=location,
                                spool=Spool(spool_dir), fingerprints=_fingerprints(fingerprints),
                                store_url=store_url, concurrency=concurrency, client_resolver=resolver,
                                annotations=annotations, tests=nettests)
    if scenario_clock is not None:
        params.clock = scenario_clock.now
    if control is None and params.targets:
        err.print("[yellow]warning:[/] no control helper (--control): verdicts will be inconclusive unless a "
                  "blockpage fingerprint proves blocking")
    _stop_on_sigterm()
    if period is None:
        code = 0
        try:
            code = _run_once(params, json_out, collector, tls, upload_attempts, upload_timeout)
        except KeyboardInterrupt:
            err.print(f"stopped; every finished measurement is in the spool ({params.spool.path})")
        raise typer.Exit(code)
    raise typer.Exit(_run_scheduled(params, period, scenario_clock, json_out, collector, tls, upload_attempts,
                                    upload_timeout))


def _suite(tests, explicit, tls, budget, timeouts, table, mmdb, telegram_dc, facebook_asn, signal_ca, tor_targets,
           tor_bridge, vpn_config, throttle_target, throttle_address, throttle_path, control):
    """The non-URL nettests of this run (probe/suite.py); a bad flag or file is a clear error."""
    from netvigil.control.asn import asn_lookup
    from netvigil.probe.suite import SuiteOptions, build_nettests

    for path in (*tor_targets, *vpn_config, *([signal_ca] if signal_ca else [])):
        if not path.is_file():
            raise _fail(f"no such file: {path}", EXIT_MISSING)
    try:
        lookup = asn_lookup(mmdb=[mmdb] if mmdb else [], lab_table=table)
        opts = SuiteOptions(tls=tls, budget=budget, timeouts={k: v for k, v in timeouts.items()
                                                              if k != "control_timeout"},
                            asn_lookup=lookup, telegram_dcs=tuple(telegram_dc), facebook_asns=tuple(facebook_asn),
                            signal_ca=str(signal_ca) if signal_ca else None, tor_targets=tuple(tor_targets),
                            tor_bridges=tuple(tor_bridge), vpn_configs=tuple(vpn_config),
                            throttle_targets=tuple(throttle_target), throttle_address=throttle_address,
                            throttle_path=throttle_path, control_url=control, control_tls=tls)
        nettests, notes = build_nettests([t for t in tests if t != "web_connectivity"], opts, explicit=explicit)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc).splitlines()[0], EXIT_USAGE) from None
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    return nettests


def _scenario_clock(path: Path | None):
    """The lab's scenario clock from its file, or None; a missing or unreadable file is a clear error."""
    if path is None:
        return None
    from netvigil.lab.clock import read_clock

    if not path.is_file():
        raise _fail(f"no such clock file: {path} (a running lab writes /run/netvigil-lab/<lab>/clock)", EXIT_MISSING)
    try:
        return read_clock(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _fail(f"not a scenario clock file: {path} ({exc})", EXIT_USAGE) from None


def _lab_region(table: Path | None, resolver: str | None) -> str | None:
    """Inside the lab: this client's region from the lab's IP table ("default" is no region at all)."""
    if table is None or resolver is None:
        return None
    from netvigil.lab.iptable import load_ip_table, lookup_ip
    from netvigil.probe.geo import local_address

    address = local_address(resolver)
    try:
        info = lookup_ip(address, load_ip_table(table)) if address else None
    except (OSError, ValueError, TypeError):
        return None
    return info.region if info is not None and info.region not in (None, "", "default") else None


def _run_scheduled(params, period: float, clock, json_out: bool, collector: str | None, tls, attempts: int,
                   timeout: float) -> int:
    """`--every`: runs on a fixed grid of start times (see `next_tick`), each followed by an upload that stops
    in time for the next run.

    With a scenario clock the grid is the scenario's (anchored at its start, first run at its first tick) and the
    schedule ends by itself once the scenario has; without one the first run starts at once. An upload never
    delays a run and never overlaps one (on a slow or throttled link it would slow the measurements down): what
    it could not deliver in time stays in the spool for the next one. Stopping an upload is safe: an entry leaves
    the spool only with a receipt, and a repeat of a submission the collector already has gets its first receipt.
    """
    from netvigil.tasks.probing import next_tick

    now = time.time if clock is not None else time.monotonic
    anchor = clock.epoch if clock is not None else now()
    code, last = 0, None
    try:
        while True:
            tick = next_tick(anchor, period, now(), last, wait_first=clock is not None)
            if clock is not None and clock.ended(tick.at + period / 2):
                err.print(f"the scenario ended at {clock.end.isoformat()}; schedule done")
                break
            if tick.skipped(last):
                err.print(f"[yellow]warning:[/] the last run took longer than the period: {tick.skipped(last)} "
                          "scheduled run(s) skipped")
            wait = tick.at - now()
            if wait > 0:
                when = f" (scenario time {clock.now(time.time() + wait).isoformat(timespec='seconds')})" \
                    if clock is not None else ""
                err.print(f"next run in {wait:,.1f} s{when} (Ctrl-C or SIGTERM to stop)")
                time.sleep(wait)
            last = tick.index
            upload_until = anchor + (tick.index + 1) * period
            code = max(code, _run_once(params, json_out, collector, tls, attempts, timeout,
                                       upload_for=lambda: upload_until - now() - min(0.5, period / 20)))
    except KeyboardInterrupt:
        err.print(f"stopped; every finished measurement is in the spool ({params.spool.path})")
        return code
    if collector:  # the schedule is over: deliver what the last runs left in the spool
        result, _ = _upload(params.spool, collector, tls, quiet=json_out, attempts=attempts, timeout=timeout)
        if json_out:
            print_json({"upload": msgspec.to_builtins(result)})
        if result.failed_transient:
            code = max(code, EXIT_UPLOAD_INCOMPLETE)
    return code


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """systemd stops services with SIGTERM: treat it like Ctrl-C (what is spooled stays spooled)."""
    signal.signal(signal.SIGTERM, _interrupt)


def _run_once(params, json_out: bool, collector: str | None, tls, attempts: int = 5, timeout: float = 15.0,
              upload_for: Callable[[], float] | None = None) -> int:
    """One run, then (with a collector) one upload; `upload_for` says how many seconds the upload may take."""
    from netvigil.store import StoreError
    from netvigil.tasks.probing import make_probe_run

    counts: dict[str, int] = {}
    progress = Progress(
        TextColumn("[bold]measuring"), BarColumn(bar_width=None), MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
        console=err, transient=True, disable=json_out or not err.is_terminal,
    )
    with progress:
        task = progress.add_task("probe", total=len(params.targets), counts="")

        def on_result(result) -> None:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            progress.update(task, advance=1, counts=" · ".join(f"{k} {v}" for k, v in sorted(counts.items())))

        params.on_result = on_result
        try:
            summary = make_probe_run(params)
        except StoreError as exc:
            raise _fail(f"{exc} (the measurements are safe in the spool: {params.spool.path})", EXIT_STORE) from None
    upload, stopped = _upload(params.spool, collector, tls, quiet=json_out, attempts=attempts, timeout=timeout,
                              within=upload_for() if upload_for is not None else None) \
        if collector else (None, False)
    if json_out:
        doc = summary.as_dict()
        doc["location"] = {"probe_cc": params.location.probe_cc, "probe_asn": params.location.probe_asn,
                           "source": params.location.source}
        if upload is not None:
            doc["upload"] = msgspec.to_builtins(upload)
            if upload_for is not None:
                doc["upload"]["stopped_for_next_run"] = stopped
        print_json(doc)
    else:
        _print_summary(summary, params)
    if summary.probe_errors:
        return EXIT_PROBE_ERRORS
    if upload is not None and upload.failed_transient:
        return EXIT_UPLOAD_INCOMPLETE
    return 0


def _print_summary(summary, params) -> None:
    interesting = [r for r in summary.results if r.outcome != "ok"]
    if interesting:
        print_table("not ok", ["url", "verdict", "method", "rule", "OONI blocking"], (
            (r.url, r.outcome, r.method or "", r.rule or r.probe_error or "", r.ooni_blocking)
            for r in sorted(interesting, key=lambda r: (r.outcome, r.url))
        ))
    rows = [
        ("location", f"{params.location.probe_cc} {params.location.probe_asn} ({params.location.source})"),
        ("measured", summary.measured),
        *((f"  · {outcome}", n) for outcome, n in sorted(summary.outcomes.items())),
        ("spooled", f"{summary.spooled} in {params.spool.path}"),
        ("stored", summary.stored if params.store_url else "no (--no-store)"),
        ("probe errors", summary.probe_errors),
        ("time", f"{summary.seconds:.1f} s ({summary.rate:.1f} URLs/s)"),
        ("report id", summary.report_id),
    ]
    print_table("probe run", ["", "value"], rows)


def _upload(spool, collector: str, tls, quiet: bool, attempts: int = 5, timeout: float = 15.0,
            within: float | None = None):
    """Upload the spool -> (result, stopped). With `within` seconds the upload is stopped when they are up
    (the counts are then those of what it did so far) or not started when they are too few."""
    from netvigil.probe.upload import UploadResult, upload_spool

    events: Counter = Counter()
    errors: list[str] = []

    def on_progress(event) -> None:
        events[event.kind] += 1
        if event.kind == "error":
            errors.append(event.detail)

    async def bounded():
        upload = upload_spool(spool, collector, tls=tls, max_attempts=attempts, timeout=timeout,
                              on_progress=on_progress)
        if within is None:
            return await upload
        try:
            return await asyncio.wait_for(upload, within)
        except TimeoutError:
            return None

    result = None
    if within is None or within >= MIN_UPLOAD_SECONDS:
        try:
            result = asyncio.run(bounded())
        except ValueError as exc:  # a malformed collector URL
            raise _fail(str(exc), EXIT_USAGE) from None
    stopped = result is None
    if result is None:
        result = UploadResult(delivered=events["delivered"], already_delivered=events["already_delivered"],
                              failed_transient=events["left"], rejected=events["rejected"], bad=events["bad"],
                              errors=errors)
    if not quiet:
        _print_upload(result)
        if stopped:
            err.print("upload stopped to keep the schedule; the rest stays in the spool for the next upload")
    return result, stopped


def _print_upload(result) -> None:
    print_table("upload", ["", "count"], [
        ("delivered", result.delivered), ("already delivered", result.already_delivered),
        ("left in spool (collector unreachable)", result.failed_transient), ("rejected", result.rejected),
        ("malformed (set aside)", result.bad),
    ])
    for line in result.errors[:10]:
        err.print(f"[yellow]upload:[/] {line}")


@app.command("upload")
def upload(
    collector: Annotated[str, typer.Option(envvar="NETVIGIL_COLLECTOR", help="Collector URL.")],
    spool: SpoolOpt = None,
    ca_file: CAOpt = None,
    attempts: Annotated[int, typer.Option(min=1, max=100, help="Tries per request before giving up for now.")] = 5,
    timeout: Annotated[float, typer.Option(min=0.5, help="Seconds per request.")] = 15.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Deliver spooled measurements; each leaves the spool only when the collector acknowledged it."""
    from netvigil.probe.spool import Spool

    directory = spool or default_spool_dir()
    if not directory.is_dir():
        raise _fail(f"no spool at {directory}", EXIT_MISSING)
    result, _ = _upload(Spool(directory), collector, _tls(ca_file), quiet=json_out, attempts=attempts, timeout=timeout)
    if json_out:
        print_json(msgspec.to_builtins(result))
    if result.failed_transient:
        raise typer.Exit(EXIT_UPLOAD_INCOMPLETE)


@app.command("spool")
def spool_status(spool: SpoolOpt = None, json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """How many measurements wait in the spool."""
    from netvigil.probe.spool import Spool

    s = Spool(spool or default_spool_dir())
    doc = {"spool": str(s.path), "pending": s.count(), "bytes": s.bytes()}
    if json_out:
        print_json(doc)
    else:
        out.print(f"{doc['pending']} measurements ({doc['bytes']:,} bytes) waiting in {doc['spool']}")

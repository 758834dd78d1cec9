"""`netvigil cost`: price a disruption (a country and a window, or a JSON file of incidents) as a range.

Exit codes as in ``cli.py``: 2 usage error (unknown country, bad dates or shares); 3 finished, but some incidents
could not be priced or read; 4 the economics data (or an input file) is missing or lacks a needed value.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import typer
from rich.markup import escape

from netvigil.console import err, out, print_json, print_table

__all__ = ["cost"]

EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_MISSING = 4

_TYPE_ALIASES = {
    "full-network": ("full-network",), "full": ("full-network",), "shutdown": ("full-network",),
    "service-based": ("service-based",), "service": ("service-based",),
    "throttling": ("throttling",),
    "service-based+throttling": ("service-based", "throttling"), "both": ("service-based", "throttling"),
}


class ScopeOpt(StrEnum):
    national = "national"
    regional = "regional"
    isp = "isp"


class CombineOpt(StrEnum):
    bounds = "bounds"
    quadrature = "quadrature"


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _when(text: str, flag: str) -> dt.datetime:
    """A date (midnight UTC) or an ISO date-time (UTC unless it says otherwise)."""
    try:
        if len(text.strip()) == 10:
            d = dt.date.fromisoformat(text.strip())
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise _fail(f"{flag} {text!r} is not a date (YYYY-MM-DD) or ISO date-time", EXIT_USAGE) from None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _share(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """0.3, low:high, or low:central:high; each in [0, 1]."""
    if text is None:
        return None
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise _fail(f"{flag} {text!r}: expected a share such as 0.3, 0.2:0.4 or 0.2:0.3:0.4", EXIT_USAGE) from None
    if len(parts) == 1:
        low = central = high = parts[0]
    elif len(parts) == 2:
        low, high = parts
        central = (low + high) / 2
    elif len(parts) == 3:
        low, central, high = parts
    else:
        raise _fail(f"{flag} {text!r}: give one, two or three numbers", EXIT_USAGE)
    if not (0.0 <= low <= central <= high <= 1.0):
        raise _fail(f"{flag} {text!r}: need 0 <= low <= central <= high <= 1", EXIT_USAGE)
    return low, central, high


def _money(v: float) -> str:
    from netvigil.economics.explain import usd

    return usd(v)


def _print_explain(est) -> None:  # noqa: ANN001 - CostEstimate, imported lazily
    from netvigil.economics.explain import EXPLAIN_COLUMNS, PARAM_COLUMNS, arithmetic_lines, factor_rows, param_rows

    title = (f"{est.country_name} ({est.country}) {est.type}, scope {est.scope}, "
             f"{est.start:%Y-%m-%d %H:%M} to {est.end:%Y-%m-%d %H:%M} UTC")
    print_table(escape(f"factors: {title}"), EXPLAIN_COLUMNS, [[escape(c) for c in r] for r in factor_rows(est)])
    print_table("parameters used", PARAM_COLUMNS, [[escape(c) for c in r] for r in param_rows(est)])
    for line in arithmetic_lines(est):
        out.print(line, markup=False, highlight=False)
    _print_notes(est)


def _print_notes(est) -> None:  # noqa: ANN001
    for note in est.notes:
        out.print(f"note ({est.type}): {note}", markup=False, highlight=False)


def _as_json(est, explain: bool) -> dict:  # noqa: ANN001
    from netvigil.economics.explain import arithmetic_lines

    doc = msgspec.to_builtins(est)
    if explain:
        doc["arithmetic"] = arithmetic_lines(est)
    return doc


def cost(
    country: Annotated[Optional[str], typer.Option("--country", "-c", help="Country: ISO code (AZ, AZE) or name.")] = None,
    from_: Annotated[Optional[str], typer.Option("--from", help="Start: YYYY-MM-DD (00:00 UTC) or ISO date-time.")] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="End (exclusive): YYYY-MM-DD (00:00 UTC) or ISO date-time.")] = None,
    types: Annotated[Optional[list[str]], typer.Option(
        "--type", "-t", help="full-network | service-based | throttling | service-based+throttling (or 'both': a "
        "service-based block and a national throttling over the same window, priced together). Repeat for "
        "several estimates. Default full-network.")] = None,
    scope: Annotated[ScopeOpt, typer.Option(help="Who is affected: the whole country, a region, one ISP.")] = ScopeOpt.national,
    share: Annotated[Optional[str], typer.Option(
        help="Regional scope: the region's share of the population; ISP scope: the ISP's market share. 0.3, "
        "low:high or low:central:high.")] = None,
    asns: Annotated[Optional[list[str]], typer.Option("--asn", help="ISP scope: the affected network(s), e.g. "
                                                      "AS28787 (without --share each gets the default share range).")] = None,
    mobile_only: Annotated[bool, typer.Option("--mobile-only", help="Only mobile networks were cut (scales by "
                                              "the mobile share of subscriptions).")] = False,
    ie_share: Annotated[Optional[str], typer.Option("--ie-share", help="A published internet-economy share of "
                                                    "GDP for this country (0.05 or low:central:high) instead of the "
                                                    "estimate from internet penetration.")] = None,
    year: Annotated[Optional[int], typer.Option(help="Use this year's inputs (default: each calendar year's own; "
                                                "a missing year falls back to the latest earlier one).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Directory with the WDI/OWID CSVs. Default: "
                                                 "$NETVIGIL_ECONOMICS or <data dir>/economics.")] = None,
    params_file: Annotated[Optional[Path], typer.Option("--params", help="TOML file overriding the method's "
                                                        "parameters by id (see docs/cost-model.md).")] = None,
    combine: Annotated[Optional[CombineOpt], typer.Option(help="How factor ranges combine: bounds (every factor at "
                                                          "its end at once; default) or quadrature.")] = None,
    incidents_file: Annotated[Optional[Path], typer.Option("--incidents", help="Price every incident in this JSON "
                                                           "array of netvigil Incidents, and their total.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Price ongoing incidents up to this time (default: now).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show every factor with its range and source, the "
                                          "parameters and the arithmetic.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimate the economic cost of an internet disruption as a low / central / high range (method netvigil-cost/1,
    docs/cost-model.md)."""
    from dataclasses import replace

    from netvigil.countries import alpha2
    from netvigil.economics import (
        DEFAULT_PARAMS, CostDataError, CostError, MissingDataError, UnknownCountryError, country_year, load_params,
    )
    from netvigil.tasks.economics import EconomicsDataError, default_economics_dir, load_economics

    params = DEFAULT_PARAMS
    if params_file is not None:
        try:
            params = load_params(params_file.read_text(encoding="utf-8"), label=params_file.stem)
        except OSError as exc:
            raise _fail(f"cannot read {params_file}: {exc.strerror or exc}", EXIT_MISSING) from None
        except ValueError as exc:
            raise _fail(f"{params_file}: {exc}", EXIT_USAGE) from None
    if combine is not None and combine.value != params.combine:
        params = replace(params, combine=combine.value)

    if incidents_file is None:
        # Check the flags before reading any data: a usage mistake should not wait on a missing directory.
        if country is None or from_ is None or to is None:
            raise _fail("give --country, --from and --to (or --incidents FILE.json)", EXIT_USAGE)
        if alpha2(country) is None:
            raise _fail(f"unknown country {country!r} (use an ISO 3166 code such as AZ or AZE, or a name)", EXIT_USAGE)
        start, end = _when(from_, "--from"), _when(to, "--to")
        if end <= start:
            raise _fail(f"--to {to} is not after --from {from_}", EXIT_USAGE)
        kinds: list[tuple[str, ...]] = []
        for t in types or ["full-network"]:
            key = t.strip().lower()
            if key not in _TYPE_ALIASES:
                raise _fail(f"unknown --type {t!r} (full-network, service-based, throttling, "
                            "service-based+throttling)", EXIT_USAGE)
            kinds.append(_TYPE_ALIASES[key])
        share_range = _share(share, "--share")
        if scope == ScopeOpt.regional and share_range is None:
            raise _fail("--scope regional needs --share (the region's share of the population)", EXIT_USAGE)
        if scope == ScopeOpt.national and share_range is not None:
            raise _fail("--share applies to --scope regional or isp", EXIT_USAGE)
        ie_range = _share(ie_share, "--ie-share")
    elif country or from_ or to or types:
        raise _fail("--incidents prices the incidents in the file; do not combine it with --country/--from/--to/"
                    "--type", EXIT_USAGE)
    until_t = _when(until, "--until") if until else dt.datetime.now(dt.timezone.utc)

    directory = data or default_economics_dir()
    try:
        inputs = load_economics(directory)
    except EconomicsDataError as exc:
        raise _fail(str(exc), EXIT_MISSING) from None
    rejected = inputs.rejected()
    if rejected and not json_out:
        by_file: dict[str, int] = {}
        for r in rejected:
            by_file[r.file] = by_file.get(r.file, 0) + 1
        err.print("rows set aside in the economics files: "
                  + ", ".join(f"{f} {n}" for f, n in sorted(by_file.items())), markup=False, highlight=False)

    if incidents_file is not None:
        _price_file(incidents_file, inputs, params, until_t, explain, json_out)
        return

    assert from_ is not None and country is not None  # checked above
    try:
        country_year(inputs, country, year or start.year)
    except UnknownCountryError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    except MissingDataError as exc:
        raise _fail(str(exc), EXIT_MISSING) from None

    from netvigil.economics import estimate_combined
    from netvigil.model import Incident

    a2 = alpha2(country)
    estimates = []
    for kind in kinds:
        incidents = [Incident(incident_id=f"cli-{t}", type=t, country=a2, scope=scope.value, start=start, end=end,
                              asns=list(asns or [])) for t in kind]
        try:
            estimates.append(estimate_combined(
                incidents, inputs, params,
                population_share=share_range if scope == ScopeOpt.regional else None,
                isp_share=share_range if scope == ScopeOpt.isp else None,
                mobile_only=mobile_only, ie_share=ie_range, inputs_year=year))
        except CostDataError as exc:
            raise _fail(str(exc), EXIT_MISSING) from None
        except CostError as exc:
            raise _fail(str(exc), EXIT_USAGE) from None

    if json_out:
        print_json({"method": params.method, "estimates": [_as_json(e, explain) for e in estimates]})
        return
    first = estimates[0]
    title = (f"cost of disruption, {first.country_name} ({first.country}), {first.start:%Y-%m-%d %H:%M} to "
             f"{first.end:%Y-%m-%d %H:%M} UTC, {first.days:.2f} days, scope {first.scope}"
             + (", mobile only" if mobile_only else "") + f" ({params.method}, ranges by {params.combine})")
    rows = [(e.type, _money(e.daily.low), _money(e.daily.central), _money(e.daily.high),
             _money(e.range.low), _money(e.range.central), _money(e.range.high)) for e in estimates]
    print_table(escape(title), ["type", "per day low", "central", "high", "total low", "central", "high"], rows)
    for est in estimates:
        if explain:
            _print_explain(est)
        else:
            _print_notes(est)


def _price_file(path: Path, inputs, params, until: dt.datetime, explain: bool, json_out: bool) -> None:  # noqa: ANN001
    from netvigil.economics.model import overlapping, price_incidents_report
    from netvigil.model import Incident

    try:
        body = path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_MISSING) from None
    try:
        raws = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise _fail(f"{path} is not a JSON array of incidents: {exc}", EXIT_USAGE) from None
    incidents: list[Incident] = []
    unreadable: list[tuple[int, str]] = []
    for i, raw in enumerate(raws):
        try:
            incidents.append(msgspec.json.decode(raw, type=Incident))
        except msgspec.DecodeError as exc:
            unreadable.append((i, str(exc)))
    report = price_incidents_report(incidents, inputs, params, until=until)
    total = report.total
    overlaps = overlapping(report.estimates)
    if json_out:
        print_json({
            "method": params.method, "until": until,
            "incidents": [msgspec.to_builtins(i) for i in report.incidents],
            "estimates": [_as_json(e, explain) for e in report.estimates],
            "skipped": [{"incident_id": i, "reason": r} for i, r in report.skipped],
            "unreadable": [{"index": i, "reason": r} for i, r in unreadable],
            "overlapping": [list(p) for p in overlaps],
            "total": msgspec.to_builtins(total) if total else None,
        })
    else:
        rows = [(e.incident_id, e.country, e.type, e.scope, f"{e.start:%Y-%m-%d %H:%M}",
                 f"{e.end:%Y-%m-%d %H:%M}" + (" (ongoing)" if e.ongoing else ""), f"{e.days:.2f}",
                 _money(e.range.low), _money(e.range.central), _money(e.range.high)) for e in report.estimates]
        if total:
            rows.append(("total", "", "", "", "", "", f"{sum(e.days for e in report.estimates):.2f}",
                         _money(total.low), _money(total.central), _money(total.high)))
        print_table(escape(f"cost of {len(report.estimates)} incident(s) from {path} ({params.method})"),
                    ["incident", "country", "type", "scope", "start", "end", "days", "low", "central", "high"],
                    [[escape(str(c)) for c in r] for r in rows])
        for est in report.estimates:
            if explain:
                _print_explain(est)
        for a, b in overlaps:
            out.print(f"note: {a} and {b} overlap in time in the same country; the total adds both "
                      "(price them together if they hit the same users)", markup=False, highlight=False)
        for iid, reason in report.skipped:
            err.print(f"not priced: {iid}: {reason}", markup=False, highlight=False)
        for i, reason in unreadable:
            err.print(f"not an incident: element {i}: {reason}", markup=False, highlight=False)
    if report.skipped or unreadable:
        raise typer.Exit(EXIT_PARTIAL)


if __name__ == "__main__":  # `python -m netvigil.cli_cost`, until `netvigil cost` is registered in cli.py
    typer.run(cost)

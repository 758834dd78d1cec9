"""Write a Publication as a report: one self-contained HTML file (CSS inline, charts as inline SVG, no external
reference of any kind), a Markdown file with the charts as PNG files beside it (SVG copies too), and the
publication itself as JSON (the data behind every sentence).

The view model (`context`) is computed here, in Python, so the templates (`templates/report.html`,
`templates/report.md`) only lay it out.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import msgspec

from netvigil.countries import country_name
from netvigil.model.incident import Incident
from netvigil.report import charts
from netvigil.report.dataset import Publication, StatusCell
from netvigil.report.matrix import STATES
from netvigil.report.method import method_notes
from netvigil.economics.explain import usd as money
from netvigil.report.summary import summary_lines
from netvigil.report.timeline import METHOD_PHRASES, network_label, short_name, target_label, when_text
from netvigil.report.zones import timezone_named, zone_label

__all__ = ["MATRIX_SYMBOLS", "ReportFiles", "context", "inline_svg", "render_html", "render_markdown",
           "write_report"]

# One character per day in the Markdown matrix.
MATRIX_SYMBOLS = {"ok": ".", "blocked": "B", "throttled": "T", "mixed": "m", "down": "d", "inconclusive": "?",
                  None: "-"}
_SHOWN_UIDS = 3


@dataclass(slots=True)
class ReportFiles:
    html: Path
    markdown: Path
    charts: list[Path] = field(default_factory=list)   # PNG and SVG of every chart
    data: Path | None = None                           # the publication as JSON


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("netvigil.report", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
)


def _md(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


_ENV.filters["md"] = _md


# -- inline SVG ---------------------------------------------------------------------------------------------------------

_XML_HEAD = re.compile(r"^.*?(?=<svg)", re.S)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'(xlink:href|href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")


def inline_svg(svg: bytes, prefix: str) -> str:
    """An SVG document as an element to place inside HTML: no XML declaration or DOCTYPE, no namespace URIs (HTML
    parsers know SVG), ids prefixed so several charts on one page cannot collide."""
    text = svg.decode("utf-8")
    text = _XML_HEAD.sub("", text, count=1)
    text = _XMLNS.sub("", text)
    text = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _HREF.sub(lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"', text)
    text = _URL.sub(lambda m: f"url(#{prefix}-{m.group(1)})", text)
    return text.replace("<svg ", '<svg role="img" ', 1)


# -- view model ---------------------------------------------------------------------------------------------------------

def _days(pub: Publication, tz: dt.tzinfo) -> list[dt.date]:
    first = pub.since.astimezone(tz).date()
    last = (pub.until - dt.timedelta(microseconds=1)).astimezone(tz).date()
    return [first + dt.timedelta(days=i) for i in range(max(0, (last - first).days + 1))]


def _cell_title(c: StatusCell) -> str:
    """A cell's hover text: compact (a matrix has thousands of cells); all counts and uids are in the JSON."""
    how = f" ({', '.join(c.methods)})" if c.methods else ""
    counts = ", ".join(f"{n} {k}" for k, n in (("blocked", c.blocked), ("throttled", c.throttled), ("ok", c.ok),
                                                 ("down", c.down), ("inconclusive", c.inconclusive)) if n)
    uid = f"; e.g. {c.sample_uids[0]}" if c.sample_uids else ""
    return f"{c.asn} {c.day.day} {c.day:%b}: {c.state}{how}: {counts}{uid}"


def _matrix(pub: Publication, tz: dt.tzinfo, days: list[dt.date]) -> list[dict[str, Any]]:
    names = {n.asn: n.name for n in pub.networks}
    index = {d: i for i, d in enumerate(days)}
    by_service: dict[str, dict[str, list[StatusCell | None]]] = defaultdict(dict)
    for c in pub.matrix:
        if c.day not in index:
            continue
        row = by_service[c.service].setdefault(c.asn, [None] * len(days))
        row[index[c.day]] = c
    tables = []
    for service, rows in by_service.items():
        bad = sum(1 for r in rows.values() for c in r if c is not None and c.state in ("blocked", "throttled"))
        out_rows = []
        for asn in sorted(rows):
            label = network_label(asn, names)
            cells = [{"state": c.state, "title": _cell_title(c)} if c else {"state": "none", "title": ""}
                     for c in rows[asn]]
            strip = "".join(MATRIX_SYMBOLS[c.state if c else None] for c in rows[asn])
            blocked_days = sum(1 for c in rows[asn] if c is not None and c.state in ("blocked", "throttled"))
            out_rows.append({"asn": asn, "label": label, "cells": cells, "strip": strip,
                             "blocked_days": blocked_days})
        tables.append({"service": service, "rows": out_rows, "bad": bad})
    tables.sort(key=lambda t: (t["bad"] == 0, t["service"]))
    return tables


def _day_header(days: list[dt.date]) -> list[dict[str, str]]:
    out = []
    for i, d in enumerate(days):
        month = f"{d:%b}" if i == 0 or d.day == 1 else ""
        out.append({"day": str(d.day), "month": month, "title": f"{d.day} {d:%b %Y}", "monday": d.weekday() == 0})
    return out


def _strip_ruler(days: list[dt.date]) -> str:
    """Under a Markdown strip: the first day of each month and each Monday marked."""
    return "".join("|" if d.day == 1 else "'" if d.weekday() == 0 else " " for d in days).rstrip()


def _incident_row(i: Incident, tz: dt.tzinfo, names: dict[str, str]) -> dict[str, Any]:
    uids = list(dict.fromkeys(e.measurement_uid for e in i.evidence if e.measurement_uid))
    targets = list(dict.fromkeys(target_label(t) for t in i.targets))
    cost = "" if i.cost is None else f"{money(i.cost.low)} – {money(i.cost.high)} (central {money(i.cost.central)})"
    return {
        "id": i.incident_id, "type": i.type, "scope": i.scope, "source": i.source,
        "networks": [network_label(a, names) for a in i.asns], "regions": i.regions,
        "services": i.services, "targets": targets,
        "start": when_text(i.start, tz), "end": when_text(i.end, tz) if i.end else "ongoing",
        "methods": [METHOD_PHRASES.get(m, m) for m in i.methods], "confidence": f"{i.confidence:.2f}",
        "cost": cost, "uids": uids, "uids_shown": uids[:_SHOWN_UIDS], "uids_more": max(0, len(uids) - _SHOWN_UIDS),
        "summary": i.summary,
    }


def _timeline(pub: Publication, tz: dt.tzinfo) -> list[dict[str, Any]]:
    days: dict[dt.date, list] = {}
    for e in pub.timeline:
        d = e.time.astimezone(tz).date()
        days.setdefault(d, []).append({"kind": e.kind, "text": e.text, "uids": e.measurement_uids,
                                       "more": max(0, len(e.measurement_uids) - _SHOWN_UIDS),
                                       "incident": e.incident_id})
    return [{"day": f"{d.day} {d:%B %Y}", "entries": entries} for d, entries in sorted(days.items())]


def context(pub: Publication, *, name: str = "report", svgs: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the templates show, as plain values."""
    tz = timezone_named(pub.notes.get("timezone"))
    names = {n.asn: n.name for n in pub.networks}
    days = _days(pub, tz)
    cname = pub.notes.get("country_name") or country_name(pub.country) or pub.country
    last_day = (pub.until - dt.timedelta(microseconds=1)).astimezone(tz)
    first_day = pub.since.astimezone(tz)
    notes = {k: v for k, v in sorted(pub.notes.items())}
    return {
        "title": f"Internet disruptions in {cname}, {first_day.day} {first_day:%b %Y} – {last_day.day} "
                 f"{last_day:%b %Y}",
        "country": pub.country, "country_name": cname,
        "zone": pub.notes.get("timezone", "UTC"), "zone_label": zone_label(pub.since, tz),
        "period": f"{when_text(pub.since, tz)} to {when_text(pub.until, tz)} (end exclusive)",
        "generated": pub.generated_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": summary_lines(pub, tz, cname),
        "networks": [{"asn": n.asn, "name": short_name(n.name), "full_name": n.name, "regions": n.regions,
                      "measurements": n.measurements} for n in pub.networks],
        "timeline": _timeline(pub, tz),
        "timeline_count": len(pub.timeline),
        "days": _day_header(days), "ruler": _strip_ruler(days),
        "first_day": f"{days[0].day} {days[0]:%b %Y}" if days else "",
        "matrix": _matrix(pub, tz, days),
        "states": STATES, "symbols": {s: MATRIX_SYMBOLS[s] for s in STATES},
        "incidents": [_incident_row(i, tz, names) for i in pub.incidents],
        "charts": [{"name": c, "title": charts.TITLES[c], "svg": (svgs or {}).get(c, ""),
                    "png": f"{name}-{c}.png", "svg_file": f"{name}-{c}.svg"} for c in charts.CHARTS],
        "total_cost": (None if pub.total_cost is None else
                       {"low": money(pub.total_cost.low), "central": money(pub.total_cost.central),
                        "high": money(pub.total_cost.high), "method": pub.total_cost.method}),
        "notes": notes,
        "method_phrases": METHOD_PHRASES,
        "method": method_notes(pub.notes),
        "data_file": f"{name}.json",
    }


def render_html(pub: Publication, *, name: str = "report", svgs: dict[str, str] | None = None) -> str:
    if svgs is None:
        svgs = {c: inline_svg(charts.render(pub, c, "svg"), f"c{n}") for n, c in enumerate(charts.CHARTS)}
    return _ENV.get_template("report.html").render(**context(pub, name=name, svgs=svgs))


def render_markdown(pub: Publication, *, name: str = "report") -> str:
    return _ENV.get_template("report.md").render(**context(pub, name=name))


def write_report(pub: Publication, out_dir: Path, *, name: str = "report") -> ReportFiles:
    """``<name>.html``, ``<name>.md``, ``<name>-<chart>.png/.svg`` and ``<name>.json`` in ``out_dir`` (created)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"report name {name!r}: use letters, digits, '.', '_' or '-'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    svgs: dict[str, str] = {}
    for n, chart in enumerate(charts.CHARTS):
        for fmt in ("png", "svg"):
            data = charts.render(pub, chart, fmt)
            path = out_dir / f"{name}-{chart}.{fmt}"
            _write(path, data)
            files.append(path)
            if fmt == "svg":
                svgs[chart] = inline_svg(data, f"c{n}")
    html = out_dir / f"{name}.html"
    _write(html, render_html(pub, name=name, svgs=svgs).encode("utf-8"))
    md = out_dir / f"{name}.md"
    _write(md, render_markdown(pub, name=name).encode("utf-8"))
    data_path = out_dir / f"{name}.json"
    _write(data_path, msgspec.json.format(msgspec.json.encode(pub), indent=1))
    return ReportFiles(html=html, markdown=md, charts=files, data=data_path)


def _write(path: Path, data: bytes) -> None:
    """Through a temporary file and a rename: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)

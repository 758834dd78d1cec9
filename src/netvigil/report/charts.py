"""The report's charts, drawn from a Publication with matplotlib's Agg canvas (no pyplot, no display, no global
figure state): PNG and SVG bytes, the same bytes for the same publication (fixed ``svg.hashsalt``, no dates or
software names in the metadata, glyphs as paths so no font is looked up at view time).

- ``blocking``: blocking-rate heatmap, rows network x service (those ever mixed, blocked or throttled), columns local
  days, colour = blocked + throttled share of the conclusive verdicts (grey: nothing conclusive);
- ``throughput``: throttling plateaus and speed-test download rates over time per network; without such
  measurements, the daily share of Web Connectivity pages judged throttled per network (said so in the title);
- ``signals``: the outage signals (probe-side share of measurements reaching anything, stored/imported ones), one
  panel per entity, with the detected full-network incidents on it shaded;
- ``cost``: low-central-high range per priced incident (largest first) and the total, log scale.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import threading
from collections import defaultdict

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from netvigil.model.incident import Incident, IncidentType
from netvigil.model.signal import EntityType, Signal
from netvigil.report.dataset import Publication
from netvigil.economics.explain import usd as money
from netvigil.report.timeline import short_name
from netvigil.report.zones import timezone_named

__all__ = ["CHARTS", "FORMATS", "TITLES", "render"]

CHARTS = ("blocking", "throughput", "signals", "cost")
FORMATS = ("svg", "png")
TITLES = {
    "blocking": "Blocking rate per network and service, by day",
    "throughput": "Throughput over time per network",
    "signals": "Outage signals, detected outages shaded",
    "cost": "Estimated cost per incident (low - central - high)",
}
_RC = {
    "svg.hashsalt": "netvigil-report",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")
_DPI = 100
# rc_context swaps matplotlib's global settings: one chart at a time, so a server drawing charts on several threads
# gets the same bytes as the report.
_LOCK = threading.Lock()
_MAX_SIGNAL_PANELS = 12
_MAX_COST_BARS = 15


def _tz(pub: Publication) -> dt.tzinfo:
    return timezone_named(pub.notes.get("timezone"))


def _local(t: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """A time as the local wall clock (naive), what the date axes show."""
    return t.astimezone(tz).replace(tzinfo=None)


def _names(pub: Publication) -> dict[str, str]:
    return {n.asn: short_name(n.name) for n in pub.networks}


def _net(asn: str, names: dict[str, str]) -> str:
    return f"{asn} {names[asn]}" if names.get(asn) else asn


def _date_axis(ax, pub: Publication, tz: dt.tzinfo) -> None:
    locator = AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlim(_local(pub.since, tz), _local(pub.until, tz))


def _margins(fig: Figure, left: float, right: float, top: float = 0.45, bottom: float = 0.45, hspace: float = 0.25
             ) -> tuple[float, float, float, float]:
    """Fixed margins in inches (labels need the same room whatever the figure's size); the axes' box as figure
    fractions (left, bottom, right, top)."""
    w, h = fig.get_size_inches()
    box = (left / w, bottom / h, 1 - right / w, 1 - top / h)
    fig.subplots_adjust(left=box[0], bottom=box[1], right=box[2], top=box[3], hspace=hspace)
    return box


def _empty(fig: Figure, title: str, message: str) -> None:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, loc="left")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes, color="#555555")


def _zone_note(pub: Publication, tz: dt.tzinfo) -> str:
    return f"local time ({pub.notes.get('timezone', 'UTC')})"


# -- blocking heatmap ---------------------------------------------------------------------------------------------------

def _blocking(pub: Publication) -> Figure:
    tz = _tz(pub)
    names = _names(pub)
    first = pub.since.astimezone(tz).date()
    last = (pub.until - dt.timedelta(microseconds=1)).astimezone(tz).date()
    ndays = max(1, (last - first).days + 1)
    rows: dict[tuple[str, str], list[float]] = {}
    interesting: set[tuple[str, str]] = set()
    for c in pub.matrix:
        key = (c.asn, c.service)
        col = (c.day - first).days
        if not 0 <= col < ndays:
            continue
        row = rows.setdefault(key, [math.nan] * ndays)
        conclusive = c.ok + c.blocked + c.throttled
        row[col] = (c.blocked + c.throttled) / conclusive if conclusive else math.nan
        if c.state in ("blocked", "throttled"):
            interesting.add(key)
    keys = sorted(interesting)
    height = max(2.6, 0.16 * len(keys) + 1.8)
    fig = Figure(figsize=(11, height), dpi=_DPI)
    if not keys:
        _empty(fig, TITLES["blocking"], "No network and service was blocked or throttled on any day of this period.")
        return fig
    box = _margins(fig, left=2.9, right=1.0, top=0.65)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="#e6e6e6")
    start_num = date2num(dt.datetime.combine(first, dt.time()))
    data = [rows[k] for k in keys]
    img = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0, vmax=1.0,
                    extent=(start_num, start_num + ndays, len(keys), 0))
    ax.set_yticks([i + 0.5 for i in range(len(keys))], [f"{_net(a, names)} · {s}" for a, s in keys], fontsize=6.5)
    previous = None
    for i, (asn, _) in enumerate(keys):
        if previous is not None and asn != previous:
            ax.axhline(i, color="#333333", linewidth=0.6)
        previous = asn
    ax.xaxis_date()
    locator = AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_title(f"{TITLES['blocking']}\ndays in {_zone_note(pub, tz)}; rows: the {len(keys)} network x service "
                 f"pairs blocked or throttled on at least one day", loc="left")
    w, _ = fig.get_size_inches()
    cax = fig.add_axes((box[2] + 0.1 / w, box[1], 0.12 / w, box[3] - box[1]))
    bar = fig.colorbar(img, cax=cax)
    bar.set_label("blocked + throttled share of conclusive verdicts")
    return fig


# -- throughput ---------------------------------------------------------------------------------------------------------

def _throughput(pub: Publication) -> Figure:
    tz = _tz(pub)
    names = _names(pub)
    fig = Figure(figsize=(11, 3.6), dpi=_DPI)
    _margins(fig, left=0.8, right=2.3, top=0.65)
    ax = fig.add_subplot()
    colour = {asn: _COLOURS[i % len(_COLOURS)] for i, asn in enumerate(sorted({n.asn for n in pub.networks}))}
    if pub.throughput:
        by_asn: dict[str, list] = defaultdict(list)
        for p in pub.throughput:
            by_asn[p.asn].append(p)
        for asn in sorted(by_asn):
            pts = sorted(by_asn[asn], key=lambda p: (p.time, p.measurement_uid))
            c = colour.get(asn, _COLOURS[len(colour) % len(_COLOURS)])
            ax.plot([_local(p.time, tz) for p in pts], [max(p.kbit_s, 1e-3) for p in pts], marker="o",
                    markersize=3, linewidth=0.8, color=c, label=_net(asn, names))
            ctrl = [p for p in pts if p.control_kbit_s]
            if ctrl:
                ax.scatter([_local(p.time, tz) for p in ctrl], [p.control_kbit_s for p in ctrl], s=10,
                           facecolors="none", edgecolors=c, linewidths=0.6)
        ax.set_yscale("log")
        ax.set_ylabel("kbit/s (log)")
        ax.set_title(f"{TITLES['throughput']}\nthrottled target's plateau or speed-test download (filled), control "
                     f"downloads (hollow); {_zone_note(pub, tz)}", loc="left")
    else:
        daily: dict[str, dict[dt.date, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for c in pub.matrix:
            acc = daily[c.asn][c.day]
            acc[0] += c.throttled
            acc[1] += c.ok + c.blocked + c.throttled
        if not daily:
            fig.clear()
            _empty(fig, TITLES["throughput"], "No measurements in this period.")
            return fig
        for asn in sorted(daily):
            days = sorted(daily[asn])
            xs = [dt.datetime.combine(d, dt.time(12)) for d in days]
            ys = [daily[asn][d][0] / daily[asn][d][1] if daily[asn][d][1] else math.nan for d in days]
            ax.plot(xs, ys, linewidth=0.9, marker=".", markersize=3, color=colour.get(asn, "#333333"),
                    label=_net(asn, names))
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("share of pages throttled")
        ax.set_title(f"{TITLES['throughput']}\nno throttling or speed-test measurements in this period: instead, the "
                     "share of Web Connectivity pages judged throttled (headers arrived, body stalled) per day",
                     loc="left")
    _date_axis(ax, pub, tz)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return fig


# -- signals ------------------------------------------------------------------------------------------------------------

def _covers(incident: Incident, s: Signal) -> bool:
    if incident.type != IncidentType.FULL_NETWORK.value:
        return False
    if s.entity_type == EntityType.COUNTRY.value:
        return incident.scope == "national" or not incident.asns
    if s.entity_type == EntityType.REGION.value:
        return s.entity_code in incident.regions or (not incident.regions and (s.asn or "") in incident.asns)
    return s.entity_code in incident.asns and not incident.regions


def _signal_label(s: Signal, names: dict[str, str]) -> str:
    if s.entity_type == EntityType.ASN.value:
        who = _net(s.entity_code, names)
    elif s.entity_type == EntityType.REGION.value and s.asn:
        who = f"{_net(s.asn, names)}, region {s.entity_code.split('/', 1)[-1]}"
    else:
        who = s.entity_code
    return f"{who} · {s.datasource}"


def _signals(pub: Publication) -> Figure:
    tz = _tz(pub)
    names = _names(pub)
    lo, hi = pub.since.timestamp(), pub.until.timestamp()
    shown = [s for s in pub.signals if s.start < hi and s.until > lo]
    outage_of = {id(s): [i for i in pub.incidents if _covers(i, s)] for s in shown}
    shown.sort(key=lambda s: (not outage_of[id(s)], s.entity_type, s.entity_code, s.datasource))
    left = max(0, len(shown) - _MAX_SIGNAL_PANELS)
    shown = sorted(shown[:_MAX_SIGNAL_PANELS], key=lambda s: (s.entity_type, s.entity_code, s.datasource))
    if not shown:
        fig = Figure(figsize=(11, 2.4), dpi=_DPI)
        _empty(fig, TITLES["signals"], "No outage signal covers this period.")
        return fig
    fig = Figure(figsize=(11, 0.95 * len(shown) + 1.2), dpi=_DPI)
    _margins(fig, left=2.9, right=0.3, top=0.65, hspace=0.35)
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    for ax, s in zip(axes, shown):
        xs = [_local(s.time_of(i), tz) for i in range(len(s.values))]
        ys = [math.nan if v is None else v for v in s.values]
        ax.step(xs, ys, where="post", linewidth=0.9, color="#1f77b4")
        for inc in outage_of[id(s)]:
            end = inc.end or pub.until
            ax.axvspan(_local(inc.start, tz), _local(end, tz), color="#d62728", alpha=0.22, linewidth=0)
        if s.datasource.startswith("probe:"):
            ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(_signal_label(s, names), rotation=0, ha="right", va="center", fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
    _date_axis(axes[-1], pub, tz)
    more = f"; {left} more signals not drawn" if left else ""
    axes[0].set_title(f"{TITLES['signals']}\nprobe-side: share of measurements per round that reached anything; "
                      f"{_zone_note(pub, tz)}{more}", loc="left")
    return fig


# -- cost ---------------------------------------------------------------------------------------------------------------

def _incident_label(i: Incident, tz: dt.tzinfo) -> str:
    what = ", ".join(i.services[:2]) + (f" +{len(i.services) - 2}" if len(i.services) > 2 else "") \
        if i.services else "all traffic"
    where = i.asns[0] if len(i.asns) == 1 else f"{len(i.asns)} networks" if i.asns else i.scope
    if i.regions and i.scope == "regional":
        where += " (" + ", ".join(r.split("/", 1)[-1] for r in i.regions) + ")"
    start = i.start.astimezone(tz)
    return f"{start.day} {start:%b} · {i.type} · {what} · {where}"


def _cost(pub: Publication) -> Figure:
    tz = _tz(pub)
    priced = [i for i in pub.incidents if i.cost is not None and i.cost.high > 0]
    if not priced or pub.total_cost is None:
        fig = Figure(figsize=(11, 2.4), dpi=_DPI)
        _empty(fig, TITLES["cost"], "No incident could be priced: " + pub.notes.get("cost", "no priced incident."))
        return fig
    priced.sort(key=lambda i: (-i.cost.central, i.start, i.incident_id))  # type: ignore[union-attr]
    top = priced[:_MAX_COST_BARS]
    rest = priced[_MAX_COST_BARS:]
    rows: list[tuple[str, float, float, float, str]] = [
        (_incident_label(i, tz), i.cost.low, i.cost.central, i.cost.high, "#1f77b4") for i in top]  # type: ignore[union-attr]
    if rest:
        rows.append((f"{len(rest)} other incidents", sum(i.cost.low for i in rest),  # type: ignore[union-attr]
                     sum(i.cost.central for i in rest), sum(i.cost.high for i in rest), "#7f7f7f"))  # type: ignore[union-attr]
    t = pub.total_cost
    rows.append((f"total ({len(priced)} priced incidents)", t.low, t.central, t.high, "#d62728"))
    fig = Figure(figsize=(11, 0.28 * len(rows) + 1.3), dpi=_DPI)
    _margins(fig, left=3.6, right=0.3, bottom=0.55)
    ax = fig.add_subplot()
    for y, (label, low, central, high, colour) in enumerate(rows):
        low = max(low, 1.0)
        ax.barh(y, max(high, low) - low, left=low, height=0.55, color=colour, alpha=0.35, linewidth=0)
        ax.plot([central], [y], marker="|", markersize=11, markeredgewidth=2, color=colour)
        ax.text(max(high, low) * 1.08, y, f"{money(low)} – {money(high)} (central {money(central)})", va="center",
                fontsize=6.5)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=6.5)
    ax.invert_yaxis()
    ax.set_xscale("log")
    highest = max(r[3] for r in rows)
    ax.set_xlim(max(1.0, min(max(r[1], 1.0) for r in rows) / 2), highest * 60)
    ax.set_xlabel(f"US$ (log scale), method {t.method}")
    ax.set_title(f"{TITLES['cost']}; the total adds incidents that may overlap", loc="left")
    return fig


_DRAW = {"blocking": _blocking, "throughput": _throughput, "signals": _signals, "cost": _cost}


def render(pub: Publication, name: str, fmt: str = "svg") -> bytes:
    """One chart of ``pub`` as SVG or PNG bytes (deterministic; safe to call from several threads)."""
    if name not in _DRAW:
        raise ValueError(f"unknown chart {name!r}; choose from {', '.join(CHARTS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose svg or png")
    with _LOCK, matplotlib.rc_context(_RC):
        fig = _DRAW[name](pub)
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        if fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        else:
            fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


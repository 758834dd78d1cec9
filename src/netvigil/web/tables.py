"""What the dashboard's pages, its JSON API and its CSV downloads show, as pure functions over a Publication, the
store's verdicts and one measurement's observations. One shaping for all three: a page's table, its JSON and its
CSV are the same rows, so a downloaded file says exactly what the page said.

No I/O here: ``app.py`` reads the store and the publication and hands the records in.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from netvigil.analysis.rules import RULES
from netvigil.incidents.listing import IncidentFilter, select
from netvigil.model.incident import CostRange, Evidence, Incident
from netvigil.model.observation import Observation
from netvigil.model.verdict import Verdict
from netvigil.report.dataset import (
    Network,
    Publication,
    StatusCell,
    ThroughputPoint,
    TimelineEntry,
)

__all__ = [
    "CELL_COLUMNS",
    "EVIDENCE_COLUMNS",
    "INCIDENT_COLUMNS",
    "NETWORK_COLUMNS",
    "OBSERVATION_COLUMNS",
    "THROUGHPUT_COLUMNS",
    "TIMELINE_COLUMNS",
    "VERDICT_COLUMNS",
    "CurrentStatus",
    "IncidentDetail",
    "IncidentList",
    "MatrixRow",
    "MeasurementDetail",
    "MeasurementList",
    "Overview",
    "RuleNote",
    "as_dict",
    "cell_rows",
    "csv_text",
    "current_status",
    "envelope_facts",
    "evidence_rows",
    "filter_incidents",
    "incident_detail",
    "incident_rows",
    "network_rows",
    "observation_rows",
    "observation_summary",
    "ongoing",
    "overview",
    "rule_notes",
    "throughput_rows",
    "timeline_rows",
    "verdict_rows",
]


# -- the API's answers (their JSON Schema documents /openapi.json) --------------------------------------------


class MatrixRow(msgspec.Struct, kw_only=True):
    """One service of the current status matrix: its latest cell on every network (None: never measured there)."""
    service: str
    cells: list[StatusCell | None]


class CurrentStatus(msgspec.Struct, kw_only=True):
    """The status matrix as it stands: per network and service, the cell of the latest day measured."""
    day: dt.date | None                # the publication's latest day with any cell
    asns: list[str]                    # column order
    rows: list[MatrixRow]


class Overview(msgspec.Struct, kw_only=True):
    country: str
    since: dt.datetime
    until: dt.datetime
    generated_at: dt.datetime
    measurements: int
    verdicts: int
    status: CurrentStatus
    ongoing: list[Incident]            # incidents without an end
    recent: list[Incident]             # the latest incidents to start (ongoing or not), newest first
    incidents: int
    networks: list[Network]
    total_cost: CostRange | None
    user_reports: int | None = None    # reports shown beside incidents (None: user reports not available)
    notes: dict[str, str] = {}


class IncidentList(msgspec.Struct, kw_only=True):
    total: int
    incidents: list[Incident]


class IncidentDetail(msgspec.Struct, kw_only=True):
    incident: Incident
    timeline: list[TimelineEntry]      # the publication's sentences about this incident
    related: list[Incident]
    user_reports: list[dict[str, Any]] = []


class RuleNote(msgspec.Struct, kw_only=True):
    """Why a verdict is what it is: one rule that fired, with its documented conclusion."""
    rule_id: str
    outcome: str = ""
    method: str | None = None
    evidence: str = ""                 # confirmed | strong | moderate | weak
    comment: str = ""


class MeasurementList(msgspec.Struct, kw_only=True):
    total: int
    offset: int
    limit: int
    filters: dict[str, str]
    items: list[dict[str, Any]]        # VERDICT_COLUMNS


class MeasurementDetail(msgspec.Struct, kw_only=True):
    uid: str
    envelope: dict[str, Any]
    verdicts: list[Verdict]
    rules: list[RuleNote]
    observations: list[Observation]
    decoding_error: str | None = None  # the raw bytes could not be decoded again (shown, never hidden)


# -- incidents ----------------------------------------------------------------------------------------------


def ongoing(incidents: Iterable[Incident]) -> list[Incident]:
    """Incidents without an end, newest start first."""
    return sorted((i for i in incidents if i.end is None), key=lambda i: (i.start, i.incident_id), reverse=True)


def filter_incidents(incidents: Sequence[Incident], f: IncidentFilter) -> list[Incident]:
    """The incident list's filters (type, network, service, time); newest start first."""
    return sorted(select(incidents, f), key=lambda i: (i.start, i.incident_id), reverse=True)


INCIDENT_COLUMNS = ("incident_id", "type", "scope", "country", "start", "end", "asns", "regions", "services",
                    "targets", "methods", "confidence", "source", "cost_low", "cost_central", "cost_high",
                    "cost_currency", "cost_method", "evidence", "related", "summary")


def incident_rows(incidents: Iterable[Incident]) -> list[dict[str, Any]]:
    rows = []
    for i in incidents:
        c = i.cost
        rows.append({
            "incident_id": i.incident_id, "type": i.type, "scope": i.scope, "country": i.country,
            "start": i.start, "end": i.end, "asns": i.asns, "regions": i.regions, "services": i.services,
            "targets": i.targets, "methods": i.methods, "confidence": i.confidence, "source": i.source,
            "cost_low": c.low if c else None, "cost_central": c.central if c else None,
            "cost_high": c.high if c else None, "cost_currency": c.currency if c else None,
            "cost_method": c.method if c else None, "evidence": len(i.evidence), "related": i.related,
            "summary": i.summary,
        })
    return rows


EVIDENCE_COLUMNS = ("incident_id", "role", "time", "measurement_uid", "asn", "target", "outcome", "method", "source",
                    "note")


def evidence_rows(incident: Incident) -> list[dict[str, Any]]:
    """The incident's evidence, in time order (start, during and end records interleaved as they happened)."""
    def row(e: Evidence) -> dict[str, Any]:
        return {"incident_id": incident.incident_id, "role": e.role, "time": e.time,
                "measurement_uid": e.measurement_uid, "asn": e.asn, "target": e.target, "outcome": e.outcome,
                "method": e.method, "source": e.source, "note": e.note}
    return [row(e) for e in sorted(incident.evidence, key=lambda e: (e.time, e.role, e.measurement_uid or ""))]


def incident_detail(pub: Publication, incident_id: str, user_reports: Sequence[Any] = ()) -> IncidentDetail | None:
    by_id = {i.incident_id: i for i in pub.incidents}
    incident = by_id.get(incident_id)
    if incident is None:
        return None
    return IncidentDetail(
        incident=incident,
        timeline=sorted((t for t in pub.timeline if t.incident_id == incident_id), key=lambda t: t.time),
        related=[by_id[r] for r in incident.related if r in by_id],
        user_reports=[as_dict(r) for r in user_reports],
    )


TIMELINE_COLUMNS = ("time", "kind", "incident_id", "text", "measurement_uids")


def timeline_rows(entries: Iterable[TimelineEntry]) -> list[dict[str, Any]]:
    return [{"time": t.time, "kind": t.kind, "incident_id": t.incident_id, "text": t.text,
             "measurement_uids": t.measurement_uids} for t in entries]


# -- the status matrix, networks, throughput ----------------------------------------------------------------


def current_status(matrix: Sequence[StatusCell]) -> CurrentStatus:
    """Per network x service, the cell of the latest day that network measured that service (a service measured
    last week shows last week's state, dated, rather than a blank)."""
    latest: dict[tuple[str, str], StatusCell] = {}
    for cell in matrix:
        key = (cell.asn, cell.service)
        held = latest.get(key)
        if held is None or cell.day > held.day:
            latest[key] = cell
    asns = sorted({a for a, _ in latest})
    services = sorted({s for _, s in latest})
    rows = [MatrixRow(service=s, cells=[latest.get((a, s)) for a in asns]) for s in services]
    day = max((c.day for c in matrix), default=None)
    return CurrentStatus(day=day, asns=asns, rows=rows)


CELL_COLUMNS = ("day", "asn", "service", "state", "total", "ok", "blocked", "throttled", "down", "inconclusive",
                "methods", "sample_uids")


def cell_rows(cells: Iterable[StatusCell | None]) -> list[dict[str, Any]]:
    return [{name: getattr(c, name) for name in CELL_COLUMNS} for c in cells if c is not None]


NETWORK_COLUMNS = ("asn", "name", "measurements", "regions")


def network_rows(networks: Iterable[Network]) -> list[dict[str, Any]]:
    return [{"asn": n.asn, "name": n.name, "measurements": n.measurements, "regions": n.regions} for n in networks]


THROUGHPUT_COLUMNS = ("time", "asn", "test_name", "target", "kbit_s", "control_kbit_s", "outcome", "measurement_uid")


def throughput_rows(points: Iterable[ThroughputPoint]) -> list[dict[str, Any]]:
    return [{name: getattr(p, name) for name in THROUGHPUT_COLUMNS} for p in points]


def overview(pub: Publication, *, recent: int = 10, user_reports: int | None = None) -> Overview:
    by_start = sorted(pub.incidents, key=lambda i: (i.start, i.incident_id), reverse=True)
    return Overview(
        country=pub.country, since=pub.since, until=pub.until, generated_at=pub.generated_at,
        measurements=pub.measurements, verdicts=pub.verdicts, status=current_status(pub.matrix),
        ongoing=ongoing(pub.incidents), recent=by_start[:recent], incidents=len(pub.incidents),
        networks=sorted(pub.networks, key=lambda n: n.asn), total_cost=pub.total_cost, user_reports=user_reports,
        notes=dict(pub.notes),
    )


# -- measurements -------------------------------------------------------------------------------------------

VERDICT_COLUMNS = ("measurement_start_time", "measurement_uid", "probe_cc", "probe_asn", "probe_region",
                   "test_name", "target", "domain", "outcome", "method", "confidence", "confirmed", "fingerprint",
                   "rule_ids", "detail", "ooni_blocking", "ooni_accessible", "verdict_id", "report_id")


def verdict_rows(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    return [{name: getattr(v, name) for name in VERDICT_COLUMNS} for v in verdicts]


def rule_notes(verdicts: Iterable[Verdict]) -> list[RuleNote]:
    """Every rule the verdicts name, once, with what the rule concludes and why (``analysis/rules.py``)."""
    seen: dict[str, RuleNote] = {}
    for v in verdicts:
        for rid in v.rule_ids:
            if rid in seen:
                continue
            r = RULES.get(rid)
            seen[rid] = (RuleNote(rule_id=rid, outcome=str(r.outcome), method=str(r.method) if r.method else None,
                                  evidence=r.evidence, comment=r.comment)
                         if r is not None else RuleNote(rule_id=rid, comment="(not a rule of this netvigil version)"))
    return list(seen.values())


# What the measurement page lists of the OONI envelope (df-000); probe_ip is never shown (it is scrubbed anyway).
_ENVELOPE_FACTS = ("measurement_start_time", "test_name", "test_version", "input", "probe_cc", "probe_asn",
                   "probe_network_name", "resolver_asn", "resolver_network_name", "software_name",
                   "software_version", "report_id", "test_start_time", "test_runtime", "data_format_version",
                   "annotations")


def envelope_facts(envelope: Any) -> dict[str, Any]:
    """The envelope fields a reader checks first, those present only, in a fixed order."""
    facts = {}
    for name in _ENVELOPE_FACTS:
        value = getattr(envelope, name, None)
        if value not in (None, "", {}, []):
            facts[name] = value
    return facts


OBSERVATION_COLUMNS = tuple(Observation.__struct_fields__)
_OBS_LEADING = ("observation_id", "measurement_uid", "origin", "kind", "target", "hostname", "ip", "port",
                "failure", "t0", "t")


def observation_rows(observations: Iterable[Observation]) -> list[dict[str, Any]]:
    return [{name: getattr(o, name) for name in OBSERVATION_COLUMNS} for o in observations]


def observation_summary(o: Observation) -> str:
    """The fields of one observation beyond the table's leading ones, as ``name=value`` text."""
    parts = []
    for name in OBSERVATION_COLUMNS:
        if name in _OBS_LEADING:
            continue
        value = getattr(o, name)
        if value is None or value == []:
            continue
        if isinstance(value, list):
            value = ",".join(map(str, value))
        parts.append(f"{name}={value}")
    return " ".join(parts)


# -- CSV ------------------------------------------------------------------------------------------------------


_PLAIN = (str, int, float)


def _cell(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ";".join(str(_cell(v)) for v in value)
    if isinstance(value, dict):
        return msgspec.json.encode(value).decode()
    return value


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """RFC 4180 CSV with a header row; lists joined by ``;``, times in ISO 8601, empty for None."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    cell = _cell
    writer.writerows([cell(row.get(c)) for c in columns] for row in rows)
    return buf.getvalue()


def as_dict(value: Any) -> dict[str, Any]:
    """A user report (or any record) as a plain dict for templates and JSON, whatever its record type; a record
    that wraps the report (``{"report": …, "agreement": …}``) is flattened one level."""
    if isinstance(value, msgspec.Struct):
        out = msgspec.structs.asdict(value)
    elif hasattr(value, "__dataclass_fields__"):
        out = {f: getattr(value, f) for f in value.__dataclass_fields__}
    elif isinstance(value, dict):
        out = dict(value)
    else:
        return {"value": value}
    inner = out.get("report")
    if inner is not None and not isinstance(inner, (str, int, float)):
        out = {**as_dict(inner), **{k: v for k, v in out.items() if k != "report"}}
    return out

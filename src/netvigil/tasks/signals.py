"""Outage signals on disk: import IODA / Cloudflare Radar files, keep signals and outage events as JSONL, run the
detector over the stored signals.

Layout under ``data_dir()/"signals"`` (or the directory given):
- ``signals.jsonl``   one `Signal` per line; pieces of the same series are joined (`merge_signals`), so importing
  the same file twice, or consecutive weeks, leaves one continuous series.
- ``events.jsonl``    one `OutageEvent` per line, keyed by (source, entity, datasource, start): imported events
  replace their earlier copy; ``detect`` replaces every event of source "detector" with the new run's.
- ``rejected.jsonl``  the items set aside by imports, with the file, where in it, and why (appended).
Files are rewritten whole through a temporary file and an atomic rename.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import msgspec
import orjson

from netvigil.config import data_dir
from netvigil.incidents.external import (
    ExternalData, Rejected, detect_kind, events_from_alerts, parse_cloudflare, parse_ioda,
)
from netvigil.incidents.from_outages import incidents_from_outages
from netvigil.incidents.outages import DetectorConfig, config_from_mapping, detect_outages, merge_signals
from netvigil.model.incident import Incident
from netvigil.model.signal import OutageEvent, Signal

__all__ = [
    "DetectSummary", "FileImport", "ImportSummary", "SignalsError", "detect_stored", "import_files", "load_config",
    "load_events", "load_outage_incidents", "load_rejected", "load_signals", "parse_file", "signals_dir",
    "write_events",
    "write_signals",
]

SOURCES = ("auto", "ioda", "cloudflare")


class SignalsError(Exception):
    """A problem the user can fix: a missing file, an unreadable config."""


def signals_dir(base: Path | None = None) -> Path:
    return base if base is not None else data_dir() / "signals"


def _read_jsonl(path: Path, type_: type) -> list:
    if not path.exists():
        return []
    decoder = msgspec.json.Decoder(type_)
    out = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(decoder.decode(line))
                except msgspec.DecodeError as exc:
                    raise SignalsError(f"{path}:{n}: {exc}") from None
    return out


def _write_jsonl(path: Path, records: Iterable[msgspec.Struct]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    encoder = msgspec.json.Encoder()
    with tmp.open("wb") as fh:
        for r in records:
            fh.write(encoder.encode(r) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_signals(base: Path | None = None) -> list[Signal]:
    return _read_jsonl(signals_dir(base) / "signals.jsonl", Signal)


def load_events(base: Path | None = None) -> list[OutageEvent]:
    return _read_jsonl(signals_dir(base) / "events.jsonl", OutageEvent)


class _RejectedRow(msgspec.Struct, kw_only=True):
    file: str
    kind: str
    where: str
    reason: str
    at: dt.datetime


def load_rejected(base: Path | None = None) -> list[_RejectedRow]:
    return _read_jsonl(signals_dir(base) / "rejected.jsonl", _RejectedRow)


def _event_key(e: OutageEvent) -> tuple[str, str, str, str, dt.datetime]:
    return (e.source, e.entity_type, e.entity_code, e.datasource, e.start)


def _sorted_events(events: Iterable[OutageEvent]) -> list[OutageEvent]:
    return sorted(events, key=lambda e: (e.start, e.source, e.entity_type, e.entity_code, e.datasource))


def write_signals(signals: Iterable[Signal], base: Path | None = None) -> list[Signal]:
    """Add signals to the store (joined with what is there); returns the stored series."""
    merged = merge_signals([*load_signals(base), *signals])
    _write_jsonl(signals_dir(base) / "signals.jsonl", merged)
    return merged


def write_events(events: Iterable[OutageEvent], base: Path | None = None, *,
                 replace_source: str | None = None) -> list[OutageEvent]:
    """Add events (a new copy replaces an old one with the same key). With ``replace_source``, every stored event
    of that source is dropped first."""
    kept = {_event_key(e): e for e in load_events(base) if replace_source is None or e.source != replace_source}
    for e in events:
        kept[_event_key(e)] = e
    out = _sorted_events(kept.values())
    _write_jsonl(signals_dir(base) / "events.jsonl", out)
    return out


@dataclass
class FileImport:
    path: str
    source: str = ""
    signals: int = 0
    events: int = 0
    alerts: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class ImportSummary:
    files: list[FileImport] = field(default_factory=list)
    stored_signals: int = 0
    stored_events: int = 0

    @property
    def rejected(self) -> int:
        return sum(len(f.rejected) for f in self.files)

    def as_dict(self) -> dict:
        return {
            "files": [{"path": f.path, "source": f.source, "signals": f.signals, "events": f.events,
                       "alerts": f.alerts, "rejected": len(f.rejected),
                       "reasons": [f"{r.where}: {r.reason}" for r in f.rejected]} for f in self.files],
            "signals": sum(f.signals for f in self.files), "events": sum(f.events for f in self.files),
            "alerts": sum(f.alerts for f in self.files), "rejected": self.rejected,
            "stored_signals": self.stored_signals, "stored_events": self.stored_events,
        }


def parse_file(path: Path, source: str = "auto", *, country: str | None = None,
               alerts_as_events: bool = False) -> tuple[str, ExternalData]:
    """Read and parse one JSON file. A file that is not JSON comes back as one rejected item, not an error."""
    if source not in SOURCES:
        raise SignalsError(f"unknown source {source!r} (one of {', '.join(SOURCES)})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SignalsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return source, ExternalData(rejected=[Rejected(kind="document", where="", reason=f"not JSON: {exc}")])
    kind = detect_kind(doc) if source == "auto" else source
    data = parse_cloudflare(doc) if kind == "cloudflare" else parse_ioda(doc, country=country)
    if alerts_as_events and data.alerts:
        data.events.extend(events_from_alerts(data.alerts))
    return kind, data


def import_files(paths: Sequence[Path], source: str = "auto", base: Path | None = None, *,
                 country: str | None = None, alerts_as_events: bool = False) -> ImportSummary:
    """Import IODA / Radar JSON files into the signals directory. Missing files raise `SignalsError` before
    anything is written; bad items inside a file are counted and written to rejected.jsonl."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SignalsError("no such file: " + ", ".join(missing))
    summary = ImportSummary()
    signals: list[Signal] = []
    events: list[OutageEvent] = []
    rejected_rows: list[_RejectedRow] = []
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    for p in paths:
        kind, data = parse_file(p, source, country=country, alerts_as_events=alerts_as_events)
        summary.files.append(FileImport(path=str(p), source=kind, signals=len(data.signals), events=len(data.events),
                                        alerts=len(data.alerts), rejected=list(data.rejected)))
        signals.extend(data.signals)
        events.extend(data.events)
        rejected_rows.extend(_RejectedRow(file=str(p), kind=r.kind, where=r.where, reason=r.reason, at=now)
                             for r in data.rejected)
    summary.stored_signals = len(write_signals(signals, base)) if signals else len(load_signals(base))
    summary.stored_events = len(write_events(events, base)) if events else len(load_events(base))
    if rejected_rows:
        d = signals_dir(base)
        d.mkdir(parents=True, exist_ok=True)
        enc = msgspec.json.Encoder()
        with (d / "rejected.jsonl").open("ab") as fh:
            for row in rejected_rows:
                fh.write(enc.encode(row) + b"\n")
    return summary


def load_config(path: Path | None) -> DetectorConfig:
    """The detector's parameters from a TOML file (defaults when ``path`` is None)."""
    if path is None:
        return DetectorConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SignalsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SignalsError(f"{path}: not valid TOML: {exc}") from None
    try:
        return config_from_mapping(doc)
    except ValueError as exc:
        raise SignalsError(f"{path}: {exc}") from None


@dataclass
class DetectSummary:
    signals: int
    events: list[OutageEvent]
    replaced: int                    # detector events that were stored before this run


def detect_stored(base: Path | None = None, config: DetectorConfig | None = None) -> DetectSummary:
    """Run the detector over every stored signal; its events replace the previous run's."""
    signals = load_signals(base)
    before = sum(1 for e in load_events(base) if e.source == "detector")
    events = detect_outages(signals, config or DetectorConfig())
    write_events(events, base, replace_source="detector")
    return DetectSummary(signals=len(signals), events=events, replaced=before)


def load_outage_incidents(base: Path | None = None) -> list[Incident]:
    """Every stored outage event (detected and imported) as full-network incidents, for `netvigil incidents`."""
    return incidents_from_outages(load_events(base))

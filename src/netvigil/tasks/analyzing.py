"""``netvigil analyze``: judge files without storing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections import Counter
from pathlib import Path
from typing import Iterator

from netvigil.analysis import FingerprintDB, analyze
from netvigil.model.verdict import Verdict
from netvigil.tasks.importing import iter_decoded
from netvigil.tasks.reader import RawRecord

__all__ = ["MakeAnalysisParams", "AnalysisRow", "make_analysis"]


@dataclass(slots=True)
class MakeAnalysisParams:
    paths: list[Path]
    fingerprints: FingerprintDB
    bad: Counter[str] = field(default_factory=Counter)
    bad_records: list[tuple[str, int, str, str]] = field(default_factory=list)


@dataclass(slots=True)
class AnalysisRow:
    source: str
    line: int
    verdict: Verdict

    def as_dict(self) -> dict:
        v = self.verdict
        return {
            "source": self.source, "line": self.line, "measurement_uid": v.measurement_uid,
            "test_name": v.test_name, "input": v.input, "target": v.target, "probe_cc": v.probe_cc,
            "probe_asn": v.probe_asn, "measurement_start_time": v.measurement_start_time,
            "outcome": v.outcome, "method": v.method, "confidence": v.confidence, "confirmed": v.confirmed,
            "fingerprint": v.fingerprint, "rule_ids": v.rule_ids, "detail": v.detail,
            "ooni_blocking": v.ooni_blocking, "ooni_accessible": v.ooni_accessible,
        }


def make_analysis(params: MakeAnalysisParams) -> Iterator[AnalysisRow]:
    """Verdict rows, streamed; bad records are counted in ``params.bad``."""

    def on_bad(record: RawRecord, reason: str, detail: str) -> None:
        params.bad[reason] += 1
        params.bad_records.append((record.path, record.line, reason, detail))

    for record, m in iter_decoded(params.paths, on_bad):
        _observations, verdicts = analyze(m, params.fingerprints)
        for v in verdicts:
            yield AnalysisRow(record.path, record.line, v)

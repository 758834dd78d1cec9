"""Analysis: measurement -> observations -> verdicts. Pure functions, no I/O."""

from __future__ import annotations

from netvigil.analysis.fingerprints import EMPTY, FingerprintDB
from netvigil.analysis.registry import ANALYSED_TESTS, JUDGES, OBSERVERS
from netvigil.analysis.rules import RULES, RULES_VERSION, rule
from netvigil.analysis.verdicts.common import make_verdict
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Outcome, Verdict

__all__ = ["make_observations", "make_verdicts", "analyze", "ANALYSED_TESTS", "RULES", "RULES_VERSION", "FingerprintDB"]

R_UNANALYSED = rule("generic.unanalysed", Outcome.INCONCLUSIVE, None, 0.0, "weak",
                    "netvigil has no analysis for this test yet; the measurement is kept as recorded.")


def make_observations(m: Measurement) -> list[Observation]:
    observer = OBSERVERS.get(m.test_name)
    return observer(m) if observer is not None else []


def make_verdicts(m: Measurement, observations: list[Observation], fingerprints: FingerprintDB = EMPTY) -> list[Verdict]:
    judge = JUDGES.get(m.test_name)
    if judge is None:
        return [make_verdict(m, m.input or m.test_name, R_UNANALYSED, detail=f"test {m.test_name!r} not analysed")]
    return judge(m, observations, fingerprints)


def analyze(m: Measurement, fingerprints: FingerprintDB = EMPTY) -> tuple[list[Observation], list[Verdict]]:
    """Observations and verdicts for one measurement."""
    observations = make_observations(m)
    return observations, make_verdicts(m, observations, fingerprints)

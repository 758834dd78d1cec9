"""Helpers every test's verdict code uses to build Verdict records."""

from __future__ import annotations

from functools import lru_cache

from netvigil.analysis.observations.common import domain_of
from netvigil.analysis.rules import RULES_VERSION, Rule
from netvigil.model.failure import FailureClass, failure_class as _failure_class
from netvigil.model.measurement import Measurement
from netvigil.model.verdict import Verdict

__all__ = ["make_verdict", "failure_class"]


@lru_cache(maxsize=1024)
def failure_class(failure: str | None) -> FailureClass | None:
    """``netvigil.model.failure.failure_class``, memoised for the judges.

    Judges ask it for the same few failure strings over and over, and each
    answer costs an enum lookup that raises for strings outside the vocabulary.
    """
    return _failure_class(failure)


def region_of(env) -> str | None:
    """The region a probe declared in its annotations (`probe_region`); OONI's envelope has no region field."""
    annotations = env.annotations
    if not annotations:
        return None
    region = annotations.get("probe_region")
    return region if isinstance(region, str) and region else None


def make_verdict(
    m: Measurement,
    target: str,
    decided_by: Rule,
    *,
    fired: list[str] | None = None,
    decisive: list[str] | None = None,
    detail: str = "",
    confirmed: bool = False,
    fingerprint: str | None = None,
    fingerprint_scope: str | None = None,
    confidence: float | None = None,
    domain: str | None = None,
    ooni_blocking: str | None = None,
    ooni_accessible: bool | None = None,
) -> Verdict:
    """A Verdict for ``target`` decided by ``decided_by`` (its outcome and method)."""
    env = m.envelope
    # The deciding rule first, then every other rule that fired, in order.
    rule_ids = [decided_by.rule_id] + [r for r in fired or () if r != decided_by.rule_id]
    return Verdict(
        verdict_id=f"{m.uid}/{target}",
        measurement_uid=m.uid,
        test_name=m.test_name,
        input=m.input,
        target=target,
        domain=domain if domain is not None else domain_of(m.input or target),
        probe_cc=env.probe_cc,
        probe_asn=env.probe_asn,
        measurement_start_time=env.measurement_start_time,
        outcome=decided_by.outcome.value,
        method=decided_by.method.value if decided_by.method else None,
        confidence=decided_by.confidence if confidence is None else confidence,
        confirmed=confirmed,
        fingerprint=fingerprint,
        fingerprint_scope=fingerprint_scope,
        rule_ids=rule_ids,
        decisive=list(decisive or []),
        detail=detail,
        ooni_blocking=ooni_blocking,
        ooni_accessible=ooni_accessible,
        rules_version=RULES_VERSION,
        report_id=env.report_id or None,
        probe_region=region_of(env),
    )

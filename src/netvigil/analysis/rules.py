"""Rules as data.

Every verdict names the rules that fired. A rule's meaning never changes under
its id: to change a rule, add a new id and bump RULES_VERSION. Conditions are
Python predicates kept beside the code of each test (``analysis/verdicts/``);
this table holds what a rule concludes and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from netvigil.model.verdict import Method, Outcome

__all__ = ["Rule", "RULES", "RULES_VERSION", "rule"]

RULES_VERSION = 2  # 2: wc.control.missing.unreached split off wc.control.missing


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    outcome: Outcome
    method: Method | None
    confidence: float
    evidence: str          # "confirmed" | "strong" | "moderate" | "weak"
    comment: str


RULES: dict[str, Rule] = {}


def rule(rule_id: str, outcome: Outcome, method: Method | None, confidence: float, evidence: str, comment: str) -> Rule:
    """Declare a rule once; a duplicate id is a programming error."""
    if rule_id in RULES:
        raise ValueError(f"duplicate rule id {rule_id}")
    r = Rule(rule_id, outcome, method, confidence, evidence, comment)
    RULES[rule_id] = r
    return r

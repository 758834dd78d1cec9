"""Verdicts: the judgement on one measurement (or one target of a messenger test)."""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ["Outcome", "Method", "Verdict"]


class Outcome(StrEnum):
    OK = "ok"
    BLOCKED = "blocked"
    THROTTLED = "throttled"
    DOWN = "down"              # fails for probe and control alike: not interference
    INCONCLUSIVE = "inconclusive"


class Method(StrEnum):
    DNS = "dns"
    TCP_IP = "tcp_ip"
    TLS = "tls"
    HTTP_FAILURE = "http-failure"
    HTTP_DIFF = "http-diff"
    BANDWIDTH = "bandwidth"    # data flows, far slower than it should
    BOOTSTRAP = "bootstrap"    # tunnel/circumvention bootstrap failed


class Verdict(msgspec.Struct, gc=False, kw_only=True):
    verdict_id: str
    measurement_uid: str
    test_name: str
    input: str | None
    target: str
    domain: str | None
    probe_cc: str | None
    probe_asn: str | None
    measurement_start_time: str | None
    outcome: str
    method: str | None = None
    confidence: float = 0.0
    confirmed: bool = False
    fingerprint: str | None = None
    fingerprint_scope: str | None = None
    rule_ids: list[str] = []
    decisive: list[str] = []
    detail: str = ""
    ooni_blocking: str | None = None
    ooni_accessible: bool | None = None
    rules_version: int = 0
    report_id: str | None = None        # the run it came from: aggregates count contributing probes by it
    probe_region: str | None = None     # a region the probe declared (annotation `probe_region`), for regional scope

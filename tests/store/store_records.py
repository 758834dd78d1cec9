"""Records for store tests: real netem-qa measurements, hand-built observations and verdicts.

The rows are built here rather than by ``netvigil.analysis`` so the store tests
pin only the store; their shape (a few rows per network operation, one verdict
per measurement) matches what analysis emits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

from netvigil.codec import decode_measurement
from netvigil.model.archival import NetworkTestKeys
from netvigil.model.measurement import Measurement, SourceRef
from netvigil.model.observation import Observation
from netvigil.model.verdict import Verdict

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
NETEM_QA = SHARED_DATA / "ooni" / "measurements" / "netem-qa"


def require_shared() -> bool:
    return os.environ.get("NETVIGIL_REQUIRE_SHARED") == "1"


def load_netem_qa() -> list[Measurement]:
    """Decode every netem-qa file, with its path and line as the source."""
    files = sorted(NETEM_QA.glob("*.json"))
    return [decode_measurement(f.read_bytes(), SourceRef(path=str(f), line=1)) for f in files]


def observations_for(m: Measurement) -> list[Observation]:
    """One row per DNS answer set, TCP connect, TLS handshake and HTTP transaction."""
    tk = m.test_keys
    if not isinstance(tk, NetworkTestKeys):
        return []
    rows: list[Observation] = []

    def add(kind: str, **fields: object) -> None:
        rows.append(Observation(
            observation_id=f"{m.uid}:{len(rows)}", measurement_uid=m.uid, origin="probe", kind=kind,
            target=m.input, **fields,  # type: ignore[arg-type]
        ))

    for q in tk.queries or []:
        answers = [a.ipv4 or a.ipv6 or a.hostname or "" for a in q.answers or []]
        add("dns", hostname=q.hostname, failure=q.failure, t0=q.t0, t=q.t, dns_engine=q.engine,
            dns_query_type=q.query_type, dns_answers=answers,
            dns_answer_asns=[a.asn or 0 for a in q.answers or []], dns_bogon=False)
    for c in tk.tcp_connect or []:
        add("tcp", ip=c.ip, port=c.port, t0=c.t0, t=c.t, transaction_id=c.transaction_id,
            failure=c.status.failure if c.status else None)
    for h in tk.tls_handshakes or []:
        add("tls", tls_server_name=h.server_name, tls_version=h.tls_version, failure=h.failure,
            tls_cert_count=len(h.peer_certificates or []), tls_no_verify=h.no_tls_verify)
    for r in tk.requests or []:
        resp = r.response
        add("http", failure=r.failure, http_url=r.request.url if r.request else None,
            http_status=resp.code if resp else None,
            http_header_names=sorted((resp.headers or {}).keys()) if resp else None)
    return rows


def verdict_for(m: Measurement, **overrides: object) -> Verdict:
    blocking = getattr(m.test_keys, "blocking", None)
    method = blocking if isinstance(blocking, str) else None
    outcome = "blocked" if method else ("ok" if blocking is False else "inconclusive")
    v = Verdict(
        verdict_id=f"{m.uid}:v", measurement_uid=m.uid, test_name=m.test_name, input=m.input,
        target=m.input or "", domain="www.example.com", probe_cc=m.envelope.probe_cc,
        probe_asn=m.envelope.probe_asn, measurement_start_time=m.envelope.measurement_start_time,
        outcome=outcome, method=method, confidence=0.9 if method else 0.5, confirmed=bool(method),
        rule_ids=["wc.test"], decisive=[f"{m.uid}:0"], ooni_blocking=str(blocking), rules_version=1,
    )
    return msgspec.structs.replace(v, **overrides) if overrides else v


def replicate(
    templates: list[Measurement], n: int, prefix: str = "syn"
) -> Iterator[tuple[Measurement, list[Observation], Verdict]]:
    """``n`` copies of the templates with fresh uids (rows renamed to match).

    Each copy's raw bytes carry its uid (so no two blobs are equal and the
    database cannot deduplicate them); copies are made lazily, so a large
    synthetic import costs the store its real work without the generator
    holding gigabytes.
    """
    rows = [(m, observations_for(m), verdict_for(m)) for m in templates]
    for i in range(n):
        m, obs, v = rows[i % len(rows)]
        uid = f"{prefix}{i:09d}"
        yield (
            msgspec.structs.replace(m, uid=uid, raw=m.raw.replace(b"{", b'{"x_uid": "%s", ' % uid.encode(), 1)),
            [msgspec.structs.replace(o, observation_id=f"{uid}:{k}", measurement_uid=uid) for k, o in enumerate(obs)],
            msgspec.structs.replace(v, verdict_id=f"{uid}:v", measurement_uid=uid),
        )

"""Observations: one flat row per network operation, from probe or control.

Columns are prefixed by layer (``dns_``, ``tcp_``, ``tls_``, ``http_``) so one
table holds every kind; a column that does not apply to a row's kind is None.
Rows are rebuilt from the raw measurement at any time (record facts first).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

__all__ = ["Observation", "ObservationKind", "Origin"]


class ObservationKind(StrEnum):
    DNS = "dns"
    TCP = "tcp"
    TLS = "tls"
    HTTP = "http"


class Origin(StrEnum):
    PROBE = "probe"
    CONTROL = "control"


class Observation(msgspec.Struct, gc=False, omit_defaults=True):
    """One network operation. Field order is part of the record's contract.

    Analysis builds these rows positionally (``analysis/observations/common.py``):
    for a 39-field struct that is several times cheaper than keywords, and an
    import builds millions of rows. Add new fields at the end; moving one breaks
    that module's import-time check, on purpose. Keywords work as usual.
    """

    observation_id: str
    measurement_uid: str
    origin: str
    kind: str
    target: str | None = None
    hostname: str | None = None
    ip: str | None = None
    port: int | None = None
    ip_asn: int | None = None
    transaction_id: int | None = None
    t0: float | None = None
    t: float | None = None
    failure: str | None = None
    tags: str | None = None

    dns_engine: str | None = None
    dns_resolver: str | None = None
    dns_query_type: str | None = None
    dns_answers: list[str] | None = None
    dns_answer_ips: list[str] | None = None
    dns_answer_asns: list[int] | None = None
    dns_bogon: bool | None = None

    tls_server_name: str | None = None
    tls_version: str | None = None
    tls_cipher_suite: str | None = None
    tls_cert_count: int | None = None
    tls_leaf_sha256: str | None = None
    tls_no_verify: bool | None = None

    http_url: str | None = None
    http_method: str | None = None
    http_status: int | None = None
    http_body_length: int | None = None
    http_body_truncated: bool | None = None
    http_title: str | None = None
    http_header_names: list[str] | None = None
    http_location: str | None = None
    http_server: str | None = None
    http_redirect_depth: int | None = None
    http_bytes_read: int | None = None
    http_read_seconds: float | None = None

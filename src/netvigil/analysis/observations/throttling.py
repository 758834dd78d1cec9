"""Throttling -> observations: one row per DNS lookup, connect, TLS handshake and HTTP transfer.

Each download is its own target, ``<variant>#<round>`` (``target_sni#1``, ``random_sni#1``, ``no_sni#2``…), so a
row says which SNI it carried; its HTTP row holds the body bytes read and the seconds of the timed transfer (the
0.25 s samples stay in the measurement, where the verdict reads them).
"""

from __future__ import annotations

from typing import Any

import msgspec

from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.throughput import SpeedtestTestKeys, ThrottlingDownload, ThrottlingTestKeys

__all__ = ["make_observations", "throttling_keys", "speedtest_keys", "download_label", "by_transaction"]


def _typed(tk: Any, kind: type[msgspec.Struct]) -> Any:
    """The keys as `kind`: already typed, or converted from the dict the codec keeps for unknown tests."""
    if isinstance(tk, kind):
        return tk
    if isinstance(tk, msgspec.Struct):
        tk = msgspec.to_builtins(tk)
    if not isinstance(tk, dict):
        return None
    try:
        return msgspec.convert(tk, kind, strict=False)
    except msgspec.ValidationError:
        return None


def throttling_keys(tk: Any) -> ThrottlingTestKeys | None:
    return _typed(tk, ThrottlingTestKeys)


def speedtest_keys(tk: Any) -> SpeedtestTestKeys | None:
    return _typed(tk, SpeedtestTestKeys)


def download_label(d: ThrottlingDownload) -> str:
    return f"{d.variant or 'unknown'}#{d.round or 0}"


def by_transaction(items: list | None) -> dict[int | None, list]:
    out: dict[int | None, list] = {}
    for item in items or ():
        if item is not None:
            out.setdefault(item.transaction_id, []).append(item)
    return out


def make_observations(m: Measurement) -> list[Observation]:
    tk = throttling_keys(m.test_keys)
    b = ObservationBuilder(m.uid)
    if tk is None:
        return b.rows
    host = tk.target_host or m.input
    b.dns(tk.queries, target=host)
    connects, handshakes, requests = by_transaction(tk.tcp_connect), by_transaction(tk.tls_handshakes), by_transaction(tk.requests)
    for d in tk.downloads or ():
        if d is None:
            continue
        label = download_label(d)
        tid = d.transaction_id
        b.tcp(connects.get(tid), target=label)
        b.tls(handshakes.get(tid), target=label)
        for row, _body, _pairs in b.http(requests.get(tid), target=label):
            row.http_bytes_read = d.num_bytes
            row.http_read_seconds = d.seconds
            row.http_redirect_depth = 0
    return b.rows

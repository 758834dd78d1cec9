"""Speedtest -> observations: the RTT connects (target ``rtt``), then the ``download`` and ``upload`` transfers'
connect, TLS handshake and HTTP rows (``transfer`` when one failed before its request)."""

from __future__ import annotations

from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.analysis.observations.throttling import by_transaction, speedtest_keys
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations"]


def make_observations(m: Measurement) -> list[Observation]:
    tk = speedtest_keys(m.test_keys)
    b = ObservationBuilder(m.uid)
    if tk is None:
        return b.rows
    b.dns(tk.queries, target="rtt")
    handshakes, requests = by_transaction(tk.tls_handshakes), by_transaction(tk.requests)
    transfer_ids = set(requests)
    for c in tk.tcp_connect or ():
        if c is None:
            continue
        tid = c.transaction_id
        if tid not in transfer_ids and tid not in handshakes:
            b.tcp([c], target="rtt")
            continue
        txs = requests.get(tid) or []
        label = ("upload" if any(t.request is not None and t.request.method == "POST" for t in txs)
                 else "download" if txs else "transfer")
        b.tcp([c], target=label)
        b.tls(handshakes.get(tid), target=label)
        for row, _body, _pairs in b.http(txs, target=label):
            row.http_redirect_depth = 0
    return b.rows

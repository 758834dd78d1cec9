"""Tor (ts-023) -> observations, one target per Tor endpoint tested.

Each target (directory authority OR port, relay OR port, directory port, obfs4
bridge) carries its own network arrays. The observation ``target`` is
``<protocol>:<name>`` (name = ``target_name``, else the address, else the key
OONI filed it under) so verdicts can be per endpoint and per protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from netvigil.analysis.observations._messaging import network_arrays
from netvigil.analysis.observations.common import ObservationBuilder
from netvigil.model.archival import TorTarget
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation

__all__ = ["make_observations", "TorEndpoint", "tor_endpoints"]


@dataclass(frozen=True, slots=True)
class TorEndpoint:
    label: str             # "<protocol>:<name>", the verdict/observation target
    protocol: str          # or_port | or_port_dirauth | dir_port | obfs4 | …
    name: str
    failure: str | None    # the probe's own failure for this target
    target: TorTarget
    raw: Any               # the stored value (dict when the typed decode failed), for its arrays


def _as_target(value: Any) -> TorTarget | None:
    if isinstance(value, TorTarget):
        return value
    if isinstance(value, dict):
        try:
            return msgspec.convert(value, TorTarget, strict=False)
        except msgspec.ValidationError:
            # Keep what identifies the target; network_arrays() re-reads the arrays leniently.
            keep = {k: value.get(k) for k in ("target_address", "target_name", "target_protocol", "failure")
                    if isinstance(value.get(k), str)}
            return TorTarget(**keep)
    return None


def tor_endpoints(tk: Any) -> list[TorEndpoint]:
    """The targets in a stable order (dict order as stored, which OONI keeps sorted)."""
    targets = tk.get("targets") if isinstance(tk, dict) else getattr(tk, "targets", None)
    if isinstance(targets, dict):
        items = list(targets.items())
    elif isinstance(targets, list):
        items = [(None, t) for t in targets]
    else:
        return []
    out = []
    for key, raw in items:
        t = _as_target(raw)
        if t is None:
            continue
        protocol = t.target_protocol or "unknown"
        name = t.target_name or t.target_address or key or f"#{len(out)}"
        failure = t.failure
        if failure is None and isinstance(t.summary, dict):
            # Newer probes summarise per step: {"connect": {"failure": …}, "handshake": …}.
            for step in t.summary.values():
                if isinstance(step, dict) and step.get("failure"):
                    failure = str(step["failure"])
                    break
        out.append(TorEndpoint(f"{protocol}:{name}", protocol, name, failure, t, raw))
    return out


def make_observations(m: Measurement) -> list[Observation]:
    b = ObservationBuilder(m.uid)
    for ep in tor_endpoints(m.test_keys):
        arrays = network_arrays(ep.raw if isinstance(ep.raw, dict) else ep.target)
        b.dns(arrays.queries, target=ep.label)
        b.tcp(arrays.tcp_connect, target=ep.label)
        b.tls(arrays.tls_handshakes, target=ep.label)
        for row, _body, _headers in b.http(arrays.requests, events=arrays.network_events, target=ep.label):
            row.http_redirect_depth = 0     # separate fetches, not a redirect chain
    return b.rows

"""Helpers for the messenger, Tor and circumvention verdicts.

The core question for a messenger service is "did the probe get as far as it
needed to, and if not, which layer stopped it?". ``reach`` answers it from the
observation rows of one target: success at the goal layer wins; otherwise the
lowest layer where every attempt failed is the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from netvigil.analysis.rules import Rule, rule
from netvigil.analysis.verdicts.common import failure_class
from netvigil.model.failure import FailureClass
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome

__all__ = [
    "Reach",
    "reach",
    "row_ok",
    "by_target",
    "ids",
    "describe",
    "layered_rules",
    "ooni_status",
    "version_tuple",
    "NETWORK_CLASSES",
]

_LAYERS = ("dns", "tcp", "tls", "http")
_METHOD = {"dns": Method.DNS, "tcp": Method.TCP_IP, "tls": Method.TLS, "http": Method.HTTP_FAILURE}
_SUFFIX = {"dns": "dns_blocked", "tcp": "tcp_blocked", "tls": "tls_blocked", "http": "http_failure"}

# Failures a network in the path can cause (as opposed to certificate or local errors).
NETWORK_CLASSES = frozenset({
    FailureClass.TIMEOUT, FailureClass.RESET, FailureClass.REFUSED, FailureClass.EOF,
    FailureClass.UNREACHABLE, FailureClass.DNS_NAME, FailureClass.DNS_SERVER, FailureClass.TLS_OTHER,
})
_MAX_DECISIVE = 32


def row_ok(r: Observation, *, allow_bogon: bool = False) -> bool:
    """A DNS row counts only with usable answers; other rows when they did not fail."""
    if r.failure is not None:
        return False
    if r.kind == "dns":
        return bool(r.dns_answer_ips) and (allow_bogon or not r.dns_bogon)
    return True


def _failure_of(r: Observation) -> str:
    if r.failure:
        return r.failure
    if r.kind == "dns":
        return "dns_bogon_error" if r.dns_bogon else "dns_no_answer"
    return "unknown_failure"


@dataclass(frozen=True, slots=True)
class Reach:
    reached: bool
    layer: str | None                 # failing layer: dns | tcp | tls | http
    failure: str | None               # most frequent failure at that layer
    ok_rows: tuple[Observation, ...]
    failed_rows: tuple[Observation, ...]
    empty: bool                       # no rows at all: nothing to judge

    @property
    def method(self) -> Method | None:
        return _METHOD.get(self.layer or "")


def _most_common(values: Iterable[str]) -> str | None:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None   # ties: first seen


def reach(rows: Sequence[Observation], goal: str, *, allow_bogon: bool = False) -> Reach:
    """Did ``rows`` get to ``goal`` (dns|tcp|tls|http)? If not, where did they stop?"""
    if not rows:
        return Reach(False, None, None, (), (), True)
    by: dict[str, list[Observation]] = {k: [] for k in _LAYERS}
    for r in rows:
        if r.kind in by:
            by[r.kind].append(r)
    ok = tuple(r for r in by[goal] if row_ok(r, allow_bogon=allow_bogon))
    if ok:
        return Reach(True, None, None, ok, (), False)
    for layer in _LAYERS[: _LAYERS.index(goal) + 1]:
        attempts = by[layer]
        if attempts and not any(row_ok(r, allow_bogon=allow_bogon) for r in attempts):
            failure = _most_common(_failure_of(r) for r in attempts)
            if layer == "http":
                layer = _refine_http(failure)
            return Reach(False, layer, failure, (), tuple(attempts), False)
    return Reach(False, None, None, (), (), not by[goal])


def _refine_http(failure: str | None) -> str:
    """Old probes log only the HTTP transaction: name the layer its failure points at."""
    cls = failure_class(failure)
    if cls in (FailureClass.TLS_CERT, FailureClass.TLS_OTHER):
        return "tls"
    if cls in (FailureClass.DNS_NAME, FailureClass.DNS_SERVER):
        return "dns"
    return "http"


def by_target(observations: Iterable[Observation]) -> dict[str, list[Observation]]:
    out: dict[str, list[Observation]] = {}
    for o in observations:
        out.setdefault(o.target or "", []).append(o)
    return out


def ids(rows: Iterable[Observation]) -> list[str]:
    out = []
    for r in rows:
        out.append(r.observation_id)
        if len(out) >= _MAX_DECISIVE:
            break
    return out


def _label(r: Observation) -> str:
    if r.kind == "dns":
        return f"dns {r.hostname}"
    if r.kind == "tcp":
        return f"tcp {r.ip}:{r.port}"
    if r.kind == "tls":
        return f"tls {r.tls_server_name}@{r.ip or '?'}"
    return f"http {r.http_url or r.hostname}"


def describe(rows: Iterable[Observation], limit: int = 6) -> str:
    """'tcp 1.2.3.4:443 connection_reset; …' for the detail text, capped."""
    parts = []
    rows = list(rows)
    for r in rows[:limit]:
        if r.kind == "dns" and r.failure is None and r.dns_answer_ips:
            state = ",".join(r.dns_answer_ips[:3])
        elif not row_ok(r):
            state = _failure_of(r)
        else:
            state = f"HTTP {r.http_status}" if r.http_status else "ok"
        parts.append(f"{_label(r)} {state}")
    if len(rows) > limit:
        parts.append(f"… {len(rows) - limit} more")
    return "; ".join(parts)


def layered_rules(prefix: str, confidence: float, evidence: str, what: str) -> dict[str, Rule]:
    """One blocked rule per layer: ``<prefix>.dns_blocked`` … ``<prefix>.http_failure``."""
    return {
        layer: rule(
            f"{prefix}.{_SUFFIX[layer]}", Outcome.BLOCKED, _METHOD[layer], confidence, evidence,
            f"{what}: every {layer.upper()} attempt failed and nothing got further",
        )
        for layer in _LAYERS
    }


def ooni_status(status: str | None, failure: str | None) -> tuple[str | None, bool | None]:
    """OONI's own "ok"/"blocked" summary as (ooni_blocking, ooni_accessible), kept for comparison."""
    if status is None:
        return None, None
    if status == "blocked":
        return failure or "blocked", False
    return None, status == "ok"


def version_tuple(version: str | None) -> tuple[int, ...]:
    out = []
    for part in (version or "").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)

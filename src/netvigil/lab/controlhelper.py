"""The control helpers that a scenario's `control` targets run (pure: what to start, where, with which flags).

A `control` target is netvigil's real control helper (`python -m netvigil.control serve`), not a stub site, so a
probe inside the lab gets genuine control measurements taken from the uncensored side. Each target runs twice,
like OONI's helpers: HTTPS on 443 with a lab-CA leaf for the target's names, and plain HTTP on 80. The helper
may fetch any lab host (`--allow-net` the three documentation ranges, which it would otherwise refuse as
non-public) and trusts the lab CA (`--ca-file`), since every lab site's certificate comes from it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from netvigil.lab.plan import Plan
from netvigil.lab.scenario import CONTROL_HTTP_PORT, CONTROL_HTTPS_PORT, INTERNET_RANGE, Scenario

__all__ = ["ALLOW_NETS", "CONTROL_MODULE", "DEFAULT_RATE", "ControlHelper", "control_argv", "make_control_helpers"]

CONTROL_MODULE = "netvigil.control"
ALLOW_NETS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
# Requests per minute: far above what one lab client sends (the probe benchmark runs ~100 requests/s).
DEFAULT_RATE = 60_000


@dataclass(frozen=True, slots=True)
class ControlHelper:
    """One helper process: `name` is its log name (`helper-<target>-<port>`) in the lab's logs/."""

    name: str
    ns: str
    target: str
    address: str
    port: int
    tls: bool
    names: tuple[str, ...]
    rate: int = DEFAULT_RATE
    max_concurrency: int | None = None
    timeout: float | None = None
    share_seconds: float | None = None

    @property
    def cert_names(self) -> list[str]:
        """The leaf's subject names: the target's names, and its address for IP-literal helper URLs."""
        return [*self.names, self.address]


# The helper's limits a scenario may set, each passed on as the `control serve` flag of the same name.
_OPTIONAL_LIMITS = {"max_concurrency": int, "timeout": float, "share_seconds": float}


def make_control_helpers(plan: Plan, scenario: Scenario) -> list[ControlHelper]:
    """Every control helper process of the scenario, HTTPS first, in target order."""
    out: list[ControlHelper] = []
    for t in scenario.targets:
        if t.kind != "control":
            continue
        ns = plan.internet if ipaddress.ip_address(t.address) in INTERNET_RANGE else plan.domestic
        limits = {key: kind(t.server[key]) if key in t.server else None for key, kind in _OPTIONAL_LIMITS.items()}
        limits["rate"] = int(t.server.get("rate", DEFAULT_RATE))
        for port, tls in ((CONTROL_HTTPS_PORT, True), (CONTROL_HTTP_PORT, False)):
            out.append(ControlHelper(f"helper-{t.id}-{port}", ns, t.id, t.address, port, tls, t.names, **limits))
    return out


def control_argv(helper: ControlHelper, python: str, ca_file: Path, leaf: tuple[Path, Path] | None,
                 ip_table: Path | None = None) -> list[str]:
    """The helper's command line (its CLI contract); `leaf` is (cert, key) for the TLS instance, `ip_table` the
    lab's IP table, so the helper's `ip_info` carries the lab's ASNs as a real helper's carries real ones."""
    argv = [python, "-m", CONTROL_MODULE, "serve", "--host", helper.address, "--port", str(helper.port)]
    if helper.tls:
        if leaf is None:
            raise ValueError(f"{helper.name}: a TLS helper needs a certificate")
        argv += ["--tls-cert", str(leaf[0]), "--tls-key", str(leaf[1])]
    for net in ALLOW_NETS:
        argv += ["--allow-net", net]
    argv += ["--ca-file", str(ca_file), "--rate", str(helper.rate)]
    for key in _OPTIONAL_LIMITS:  # unset: the helper's own default
        value = getattr(helper, key)
        if value is not None:
            argv += ["--" + key.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)]
    if ip_table is not None:
        argv += ["--lab-ip-table", str(ip_table)]
    return argv

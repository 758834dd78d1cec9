"""Ground truth: what the lab's censor actually did, one JSON line per policy switch per ISP and target.

Analysis and incident detection are scored against this log, so each line carries the scenario time the switch
was scheduled for (`t`) and the real time it took effect (`applied`), letting a test check both.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from netvigil.lab.scenario import Policy

__all__ = ["GroundTruth", "read_ground_truth", "switches", "write_ground_truth"]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    t: str  # scenario time of the switch, ISO 8601 UTC
    isp: str
    target: str  # a target id, or "*" for whole-network techniques
    technique: str
    state: str  # "on" | "off"
    policy: str
    region: str | None = None
    rate_bps: int | None = None
    allow: tuple[str, ...] = ()
    applied: float | None = None  # real epoch seconds when the censor finished applying it
    applied_t: str | None = None  # scenario time at `applied`

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.t)


def switches(policy: Policy, state: str, t: dt.datetime) -> list[GroundTruth]:
    """The log lines for turning `policy` on or off at scenario time `t` (pure)."""
    targets = policy.targets or ("*",)
    regions = policy.regions or (None,)
    return [GroundTruth(t=t.isoformat(), isp=isp, target=target, technique=policy.technique.value, state=state,
                        policy=policy.id, region=region, rate_bps=policy.rate_bps, allow=policy.allow)
            for isp in policy.isps for target in targets for region in regions]


def write_ground_truth(path: Path, records: Iterable[GroundTruth]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(asdict(r), separators=(",", ":")) + "\n")
        fh.flush()


def read_ground_truth(path: Path) -> Iterator[GroundTruth]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                row["allow"] = tuple(row.get("allow", ()))
                yield GroundTruth(**row)

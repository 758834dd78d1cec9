"""Synthetic outage signals with known truth, to measure the detector (docs/signals.md, "Synthetic signals").

value[i] = max(0, L * (1 + A * cos(2π (t_i - peak) / 1 day)) * (1 - d_i) + L * σ * z_i)

where L is the level (e.g. responsive /24 blocks), A the diurnal amplitude (the daily cycle peaks at ``peak_hour``
UTC), d_i the depth of an injected drop covering round i (0 outside drops; 1.0 is a full outage), σ the noise as a
fraction of L and z_i standard Gaussian draws. With probability ``missing_rate`` a point is None (missing). One
`random.Random(seed)` draws, for every round in order, z_i and then the missing-point coin, so the same seed gives
the same noise with or without drops: a drop changes only the rounds it covers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from netvigil.model.signal import Signal

__all__ = ["Drop", "SyntheticSpec", "generate"]

DAY = 86_400


@dataclass(frozen=True)
class Drop:
    """An injected outage: ``length`` rounds from round ``start``, removing ``depth`` of the signal."""

    start: int
    length: int
    depth: float

    def __post_init__(self) -> None:
        if self.start < 0 or self.length < 1 or not 0.0 < self.depth <= 1.0:
            raise ValueError(f"bad drop {self}: start >= 0, length >= 1, 0 < depth <= 1")

    @property
    def end(self) -> int:
        """The first round after the drop."""
        return self.start + self.length


@dataclass(frozen=True)
class SyntheticSpec:
    entity_type: str = "asn"
    entity_code: str = "AS64500"
    datasource: str = "synthetic"
    country: str | None = None
    start: int = 1_598_918_400           # 2020-09-01 00:00 UTC
    step: int = 600                      # one round = 10 minutes (IODA's active-probing round)
    days: float = 14.0
    level: float = 1000.0
    amplitude: float = 0.2
    peak_hour: float = 15.0
    noise: float = 0.03
    missing_rate: float = 0.0
    drops: tuple[Drop, ...] = ()
    seed: int = 0
    bgp_like: bool = False

    @property
    def rounds(self) -> int:
        return int(round(self.days * DAY / self.step))

    @property
    def rounds_per_day(self) -> int:
        return DAY // self.step


def generate(spec: SyntheticSpec) -> Signal:
    """The signal the spec describes (deterministic for a given spec, seed included)."""
    if spec.step <= 0 or spec.level <= 0 or spec.noise < 0 or not 0.0 <= spec.amplitude < 1.0:
        raise ValueError("step and level must be > 0, noise >= 0, 0 <= amplitude < 1")
    n = spec.rounds
    depth = [0.0] * n
    for d in spec.drops:
        for i in range(d.start, min(d.end, n)):
            depth[i] = max(depth[i], d.depth)
    rng = random.Random(spec.seed)
    peak = spec.peak_hour * 3600.0
    values: list[float | None] = []
    for i in range(n):
        t = spec.start + i * spec.step
        z = rng.gauss(0.0, 1.0)
        missing = rng.random() < spec.missing_rate
        diurnal = 1.0 + spec.amplitude * math.cos(2.0 * math.pi * ((t - peak) % DAY) / DAY)
        v = spec.level * diurnal * (1.0 - depth[i]) + spec.level * spec.noise * z
        values.append(None if missing else round(max(0.0, v), 3))
    return Signal(entity_type=spec.entity_type, entity_code=spec.entity_code, datasource=spec.datasource,
                  start=spec.start, step=spec.step, values=values, country=spec.country, bgp_like=spec.bgp_like)

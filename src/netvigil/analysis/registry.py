"""Which observation maker and which judge serve each test (an explicit table)."""

from __future__ import annotations

from typing import Callable

from netvigil.analysis.fingerprints import FingerprintDB
from netvigil.analysis.observations import web_connectivity as wc_observations
from netvigil.analysis.verdicts import web_connectivity as wc_verdicts
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Verdict

__all__ = ["OBSERVERS", "JUDGES", "Observer", "Judge"]

Observer = Callable[[Measurement], list[Observation]]
Judge = Callable[[Measurement, list[Observation], FingerprintDB], list[Verdict]]

OBSERVERS: dict[str, Observer] = {
    "web_connectivity": wc_observations.make_observations,
}

JUDGES: dict[str, Judge] = {
    "web_connectivity": wc_verdicts.make_verdicts,
}

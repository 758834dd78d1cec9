"""Which observation maker and which judge serve each test: one explicit table.

A test missing here keeps its measurement and gets an ``inconclusive`` verdict
naming rule ``generic.unanalysed``.
"""

from __future__ import annotations

from typing import Callable

from netvigil.analysis.fingerprints import FingerprintDB
from netvigil.analysis.observations import (
    circumvention as circumvention_obs,
    facebook_messenger as facebook_messenger_obs,
    signal as signal_obs,
    telegram as telegram_obs,
    tor as tor_obs,
    web_connectivity as web_connectivity_obs,
    whatsapp as whatsapp_obs,
)
from netvigil.analysis.verdicts import (
    circumvention as circumvention_v,
    facebook_messenger as facebook_messenger_v,
    signal as signal_v,
    telegram as telegram_v,
    tor as tor_v,
    web_connectivity as web_connectivity_v,
    whatsapp as whatsapp_v,
)
from netvigil.analysis.observations import speedtest as speedtest_obs, throttling as throttling_obs
from netvigil.analysis.verdicts import speedtest as speedtest_v, throttling as throttling_v
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Verdict

__all__ = ["OBSERVERS", "JUDGES", "ANALYSED_TESTS", "Observer", "Judge"]

Observer = Callable[[Measurement], list[Observation]]
Judge = Callable[[Measurement, list[Observation], FingerprintDB], list[Verdict]]


def _no_fingerprints(judge: Callable[[Measurement, list[Observation]], list[Verdict]]) -> Judge:
    """Adapt a judge that has no use for blockpage fingerprints."""

    def adapted(m: Measurement, observations: list[Observation], _fps: FingerprintDB) -> list[Verdict]:
        return judge(m, observations)

    adapted.__name__ = getattr(judge, "__name__", "judge")
    return adapted


OBSERVERS: dict[str, Observer] = {
    "web_connectivity": web_connectivity_obs.make_observations,
    "whatsapp": whatsapp_obs.make_observations,
    "telegram": telegram_obs.make_observations,
    "facebook_messenger": facebook_messenger_obs.make_observations,
    "signal": signal_obs.make_observations,
    "tor": tor_obs.make_observations,
    "throttling": throttling_obs.make_observations,
    "speedtest": speedtest_obs.make_observations,
    **{name: circumvention_obs.make_observations for name in circumvention_obs.TESTS},
}

JUDGES: dict[str, Judge] = {
    "web_connectivity": web_connectivity_v.make_verdicts,
    "whatsapp": _no_fingerprints(whatsapp_v.make_verdicts),
    "telegram": _no_fingerprints(telegram_v.make_verdicts),
    "facebook_messenger": _no_fingerprints(facebook_messenger_v.make_verdicts),
    "signal": _no_fingerprints(signal_v.make_verdicts),
    "tor": _no_fingerprints(tor_v.make_verdicts),
    "throttling": _no_fingerprints(throttling_v.make_verdicts),
    "speedtest": _no_fingerprints(speedtest_v.make_verdicts),
    **{name: _no_fingerprints(circumvention_v.make_verdicts) for name in circumvention_obs.TESTS},
}

# Tests whose test keys analysis reads; any other gets the generic verdict from its envelope alone.
ANALYSED_TESTS: frozenset[str] = frozenset(OBSERVERS) | frozenset(JUDGES)

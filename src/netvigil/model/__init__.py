"""Records that cross stages: measurements, observations, verdicts, failures, incidents, signals. No I/O."""

from netvigil.model.failure import Failure, FailureClass, canonical_failure, failure_class
from netvigil.model.measurement import Measurement, SourceRef
from netvigil.model.observation import Observation, ObservationKind, Origin
from netvigil.model.incident import CostRange, Evidence, Incident, IncidentType, Scope
from netvigil.model.signal import EntityType, OutageEvent, Signal
from netvigil.model.throughput import SpeedtestTestKeys, ThrottlingTestKeys, ThroughputSample
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = [
    "Failure", "FailureClass", "canonical_failure", "failure_class",
    "Measurement", "SourceRef",
    "Observation", "ObservationKind", "Origin",
    "Method", "Outcome", "Verdict",
    "CostRange", "Evidence", "Incident", "IncidentType", "Scope",
    "EntityType", "OutageEvent", "Signal",
    "SpeedtestTestKeys", "ThrottlingTestKeys", "ThroughputSample",
]

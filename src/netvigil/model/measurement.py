"""A decoded measurement: the typed view plus the exact bytes it came from."""

from __future__ import annotations

from typing import Any

import msgspec

from netvigil.model.archival import MeasurementEnvelope

__all__ = ["Measurement", "SourceRef"]


class SourceRef(msgspec.Struct, frozen=True, gc=False):
    """Where a record was read from: file path and 1-based line (or member index)."""

    path: str
    line: int


class Measurement(msgspec.Struct, gc=False):
    """One OONI-format measurement.

    ``uid`` is OONI's ``measurement_uid`` when present, else a stable hash of the
    fields that identify a measurement (see ``netvigil.codec.measurement_uid``).
    ``test_keys`` is the typed struct for tests netvigil models, a plain dict
    for any other test, or None. ``raw`` keeps the original bytes as evidence.
    """

    uid: str
    envelope: MeasurementEnvelope
    test_keys: Any
    raw: bytes
    source: SourceRef | None = None

    @property
    def test_name(self) -> str:
        return self.envelope.test_name or ""

    @property
    def input(self) -> str | None:
        value = self.envelope.input
        if value is None or isinstance(value, str):
            return value or None
        return str(value)

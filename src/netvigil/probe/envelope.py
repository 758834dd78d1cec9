"""The df-000 envelope around a nettest's test keys: one OONI-format measurement, as bytes.

The probe's IP address is never known to this module: the location's envelope fields carry OONI's scrubbed
"127.0.0.1" as ``probe_ip``, and only the ASN, country and network name of the probe.

Times come from a `Clock` (a function returning an aware datetime): the wall clock normally, the lab's scenario
clock in the censorship lab, so that measurements are stamped in the scenario's time.
"""

from __future__ import annotations

import platform
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

import netvigil
from netvigil.probe.geo import ProbeLocation

__all__ = ["SOFTWARE_NAME", "Clock", "ReportInfo", "make_report_id", "encode_measurement", "ooni_time", "wall_clock"]

SOFTWARE_NAME = "netvigil"
DATA_FORMAT_VERSION = "0.2.0"
_ALPHABET = string.ascii_letters + string.digits
_ENCODER = msgspec.json.Encoder()
# The annotation keys the envelope writes itself; a caller's annotations cannot replace them.
_OWN_ANNOTATIONS = ("engine_name", "engine_version", "platform", "architecture", "location_source")

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    """Now, in UTC: the default `Clock`."""
    return datetime.now(UTC)


def ooni_time(when: datetime) -> str:
    """OONI's "YYYY-MM-DD hh:mm:ss" in UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def make_report_id(test_name: str, location: ProbeLocation, when: datetime) -> str:
    """A report id shaped like OONI's: time, test, country, ASN number, a random tail."""
    asn = location.probe_asn.removeprefix("AS") or "0"
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(50))
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}_{test_name.replace('_', '')}_{location.probe_cc}_{asn}_n1_{tail}"


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """What every measurement of one run of one nettest shares."""

    test_name: str
    test_version: str
    report_id: str
    test_start_time: datetime
    location: ProbeLocation
    test_helpers: dict[str, Any] | None = None
    # Extra OONI annotations (strings), e.g. ``probe_region``: the envelope has no region field.
    annotations: Mapping[str, str] = field(default_factory=dict)


def encode_measurement(report: ReportInfo, input: str | None, started: datetime, runtime: float,
                       test_keys: msgspec.Struct | dict[str, Any]) -> bytes:
    """One measurement as OONI JSON bytes (df-000 envelope).

    `started` and the report's `test_start_time` are whatever clock the runner used (wall or scenario time);
    `runtime` is always real seconds."""
    loc = report.location
    annotations = {k: v for k, v in report.annotations.items() if k not in _OWN_ANNOTATIONS}
    envelope = {
        "annotations": {
            "engine_name": SOFTWARE_NAME,
            "engine_version": netvigil.__version__,
            "platform": platform.system().lower(),
            "architecture": platform.machine(),
            "location_source": loc.source,
            **annotations,
        },
        "data_format_version": DATA_FORMAT_VERSION,
        "input": input,
        "measurement_start_time": ooni_time(started),
        **loc.envelope_fields(),
        "report_id": report.report_id,
        "software_name": SOFTWARE_NAME,
        "software_version": netvigil.__version__,
        "test_helpers": report.test_helpers,
        "test_keys": test_keys,
        "test_name": report.test_name,
        "test_runtime": round(runtime, 6),
        "test_start_time": ooni_time(report.test_start_time),
        "test_version": report.test_version,
    }
    return _ENCODER.encode(envelope)

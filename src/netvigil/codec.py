"""Bytes <-> Measurement. Pure: no files, no sockets (readers live in ``tasks``).

Decoding is two msgspec passes: the envelope with ``test_keys`` left raw, then
the test keys into the struct for that test. A record whose test keys do not fit
their struct (a field of an unexpected type in some old probe) keeps them as a
plain dict instead of being rejected: analysis degrades, nothing is lost.

A caller that only analyses and stores (the importer) may name the tests whose
test keys it wants decoded now; the others are left in ``raw`` (and in the
envelope's raw ``test_keys``) until ``decode_test_keys`` is asked for them.
The importer decodes each measurement's test keys right before judging it and
drops them right after, so they are never held for a whole batch, and never
decoded at all for tests such as ``http_invalid_request_line`` or ``ndt``
whose (large) test keys analysis does not read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from enum import StrEnum
from typing import Any

import msgspec
import orjson

from netvigil.model.archival import TEST_KEYS_TYPES, MeasurementEnvelope
from netvigil.model.throughput import THROUGHPUT_TEST_KEYS_TYPES
from netvigil.model.measurement import Measurement, SourceRef

__all__ = [
    "BadRecord",
    "BadRecordReason",
    "decode_measurement",
    "decode_test_keys",
    "encode_measurement",
    "measurement_uid",
    "measurement_to_dict",
]


class BadRecordReason(StrEnum):
    INVALID_JSON = "invalid_json"
    LEGACY_YAML = "legacy_yaml"
    NOT_A_MEASUREMENT = "not_a_measurement"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"


class BadRecord(Exception):
    """A record that is not a usable measurement; ``reason`` is a BadRecordReason."""

    def __init__(self, reason: BadRecordReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


_ENVELOPE = msgspec.json.Decoder(MeasurementEnvelope, strict=False)
_TEST_KEYS = {name: msgspec.json.Decoder(t, strict=False)
              for name, t in {**TEST_KEYS_TYPES, **THROUGHPUT_TEST_KEYS_TYPES}.items()}
_ANY = msgspec.json.Decoder()
_CANONICAL = msgspec.json.Encoder(order="sorted")
_REQUIRED = ("test_name", "measurement_start_time")


def _looks_like_yaml(raw: bytes) -> bool:
    head = raw.lstrip()[:64]
    return head.startswith(b"---") or head.startswith(b"%YAML") or (
        not head.startswith((b"{", b"[")) and b": " in head
    )


def decode_measurement(
    raw: bytes, source: SourceRef | None = None, *, test_keys_for: Container[str] | None = None
) -> Measurement:
    """Decode one OONI measurement, or raise BadRecord with the reason.

    With ``test_keys_for``, test keys are decoded only for those tests (and
    whenever the uid is computed from them); any other measurement gets
    ``test_keys=None`` (see ``decode_test_keys``) while its bytes, envelope and
    uid are as usual.
    """
    if not raw or raw.isspace():  # (not raw.strip(): that copies every record)
        raise BadRecord(BadRecordReason.EMPTY)
    try:
        env = _ENVELOPE.decode(raw)
    except msgspec.ValidationError as exc:
        env = _lenient_envelope(raw, exc)
    except msgspec.DecodeError as exc:
        if _looks_like_yaml(raw):
            raise BadRecord(BadRecordReason.LEGACY_YAML, "YAML report (pre-2016 ooniprobe)") from None
        raise BadRecord(BadRecordReason.INVALID_JSON, str(exc)) from None
    if not (env.test_name and env.measurement_start_time):
        missing = [f for f in _REQUIRED if not getattr(env, f)]
        raise BadRecord(BadRecordReason.NOT_A_MEASUREMENT, "missing " + ", ".join(missing))
    if test_keys_for is None or env.test_name in test_keys_for or not (env.measurement_uid or env.report_id):
        test_keys = _decode_test_keys(env)
    else:
        test_keys = None
    return Measurement(
        uid=measurement_uid(env, test_keys),
        envelope=env,
        test_keys=test_keys,
        raw=raw,
        source=source,
    )


def _lenient_envelope(raw: bytes, exc: Exception) -> MeasurementEnvelope:
    """The typed envelope failed: keep what fits, drop mistyped envelope fields."""
    try:
        obj = _ANY.decode(raw)
    except msgspec.DecodeError:
        raise BadRecord(BadRecordReason.INVALID_JSON, str(exc)) from None
    if not isinstance(obj, dict):
        raise BadRecord(BadRecordReason.NOT_A_MEASUREMENT, f"top-level JSON {type(obj).__name__}, not an object")
    fields: dict[str, Any] = {}
    for name in MeasurementEnvelope.__struct_fields__:
        if name not in obj:
            continue
        if name == "test_keys":
            fields[name] = msgspec.Raw(msgspec.json.encode(obj[name]))
            continue
        try:
            fields[name] = getattr(msgspec.convert({name: obj[name]}, MeasurementEnvelope, strict=False), name)
        except msgspec.ValidationError:
            continue
    return MeasurementEnvelope(**fields)


def decode_test_keys(m: Measurement) -> Any:
    """The test keys of a measurement decoded with ``test_keys_for``, as ``decode_measurement`` makes them."""
    return _decode_test_keys(m.envelope)


def _decode_test_keys(env: MeasurementEnvelope) -> Any:
    raw_tk = env.test_keys
    if raw_tk is None or len(raw_tk) == 0 or (len(raw_tk) == 4 and bytes(raw_tk) == b"null"):
        return None
    decoder = _TEST_KEYS.get(env.test_name or "")
    if decoder is not None:
        try:
            return decoder.decode(raw_tk)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
    try:
        value = _ANY.decode(raw_tk)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else {"value": value}


def measurement_uid(env: MeasurementEnvelope, test_keys: Any = None) -> str:
    """OONI's ``measurement_uid``, else a stable hash of what identifies a measurement.

    OONI identifies a measurement by its report and input: the hash covers
    report id, input, test name, start times, runtime and probe network, so the
    same measurement gets the same id however its file is formatted. Only
    records without a report id (nothing else tells them apart) also hash their
    decoded test keys. Hashing every record's content would cost as much as
    parsing it, so a record that repeats another's identity with different
    content counts as a duplicate (and is reported as one, never silently).
    """
    if env.measurement_uid:
        return env.measurement_uid
    parts = [
        env.report_id or "", str(env.input or ""), env.test_name or "",
        env.measurement_start_time or "", env.test_start_time or "",
        repr(env.test_runtime), env.probe_asn or "", env.probe_cc or "", env.id or "",
    ]
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16)
    if not env.report_id:
        h.update(_CANONICAL.encode(test_keys))
    return "nv1_" + h.hexdigest()


def measurement_to_dict(m: Measurement) -> dict[str, Any]:
    """The measurement as OONI JSON objects: typed fields over the raw ones.

    Typed values win where both exist; any field netvigil does not model (at any
    depth) is carried over from the raw record, so encoding loses nothing.
    """
    base = orjson.loads(m.raw) if m.raw else {}
    if not isinstance(base, dict):
        base = {}
    env = m.envelope
    typed = msgspec.to_builtins({
        f: getattr(env, f) for f in env.__struct_fields__ if f != "test_keys" and getattr(env, f) is not None
    })
    merged = _merge(base, typed)
    if m.test_keys is not None:
        merged["test_keys"] = _merge(base.get("test_keys") or {}, msgspec.to_builtins(m.test_keys))
    elif "test_keys" not in merged:
        merged["test_keys"] = None
    return merged


def _merge(raw: Any, typed: Any) -> Any:
    if isinstance(raw, dict) and isinstance(typed, dict):
        out = dict(raw)
        for k, v in typed.items():
            out[k] = _merge(raw.get(k), v)
        return out
    if isinstance(raw, list) and isinstance(typed, list) and len(raw) == len(typed):
        return [_merge(r, t) for r, t in zip(raw, typed)]
    return typed


def encode_measurement(m: Measurement) -> bytes:
    """Valid OONI JSON for a measurement (one line, no trailing newline)."""
    return orjson.dumps(measurement_to_dict(m))

"""What the collector accepts, checked before anything is written; each refusal is a 4xx with a reason.

Rules are those of ooni/spec (bk-003 for the report calls, df-000 for the envelope): required fields
present with the spec's shapes, ``measurement_start_time`` not more than a day ahead of our clock, and
the submission filed under a report opened for the same test, country and network. Test keys are not
judged here (a test we do not model is passed through and stored as it came).

Also here: the idempotency key of a submission, the measurement uid the collector assigns, and the
scrubbing of the submitter's address from what is stored.
"""

from __future__ import annotations

import codecs
import hashlib
import ipaddress
import os
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec
import orjson

__all__ = [
    "KNOWN_TESTS",
    "MAX_BATCH_BODY",
    "MAX_BATCH_ITEMS",
    "MAX_MEASUREMENT_BODY",
    "SCRUBBED_PROBE_IP",
    "Envelope",
    "OpenRequest",
    "Rejected",
    "check_envelope",
    "check_idempotency_key",
    "check_measurement",
    "check_open",
    "content_key",
    "decode_batch",
    "decode_item",
    "decode_submission",
    "finish",
    "header_key",
    "new_measurement_uid",
    "normalize_test_name",
    "parse_json",
    "report_id_of",
    "scrub_address",
    "utc_now",
]

SCRUBBED_PROBE_IP = "127.0.0.1"
MAX_MEASUREMENT_BODY = 2 << 20
MAX_BATCH_BODY = 32 << 20
MAX_BATCH_ITEMS = 5000
FUTURE_SLACK = timedelta(days=1)
OONI_TIME = "%Y-%m-%d %H:%M:%S"

# OONI's tests (ooni/spec nettests/); any other well-formed name is accepted and stored unjudged.
KNOWN_TESTS = frozenset({
    "bridge_reachability", "browser_web", "dash", "dns_consistency", "dnscheck", "dnsping", "echcheck",
    "facebook_messenger", "http_header_field_manipulation", "http_host", "http_invalid_request_line",
    "http_requests", "meek_fronted_requests_test", "multi_protocol_traceroute", "ndt", "openvpn",
    "portfiltering", "psiphon", "quicping", "riseupvpn", "signal", "simplequicping", "sni_blocking",
    "stunreachability", "tcp_connect", "tcpping", "telegram", "tlsmiddlebox", "tlsping", "tor", "torsf",
    "urlgetter", "vanilla_tor", "web_connectivity", "whatsapp",
})

_ASN = re.compile(r"AS[0-9]{1,10}")
_CC = re.compile(r"[A-Z]{2}")
_SOFTWARE = re.compile(r"[0-9A-Za-z_.+-]{1,64}")
_TEST_NAME = re.compile(r"[a-zA-Z0-9_\- ]{1,64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_MIN_TIME = datetime(1970, 1, 1)
# Fields the collector sets itself: they do not take part in a submission's content hash.
_ASSIGNED = frozenset({"report_id", "measurement_uid", "probe_ip"})


class Rejected(Exception):
    """A refusal: HTTP ``status``, a short ``code`` (the metrics label) and a one-line reason."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


class OpenRequest(msgspec.Struct, frozen=True):
    """bk-003 3.1: what a report is opened for."""

    test_name: str
    test_version: str
    probe_cc: str
    probe_asn: str
    software_name: str
    software_version: str
    data_format_version: str
    test_start_time: str | None = None


class Envelope(msgspec.Struct, frozen=True):
    """The checked envelope fields the collector itself needs."""

    test_name: str
    probe_cc: str
    probe_asn: str
    measurement_start_time: datetime


RawDoc = dict[str, msgspec.Raw]
_RAW_DOC = msgspec.json.Decoder(RawDoc)
_ANY = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()
_SCALARS = ("test_name", "probe_cc", "probe_asn", "software_name", "software_version", "test_version",
            "data_format_version", "measurement_start_time", "test_start_time", "report_id", "probe_ip", "id",
            "probe_network_name", "resolver_ip", "resolver_asn", "test_runtime", "input")
_CONTAINERS = ("test_keys", "annotations", "test_helpers")
_RAW_SCRUBBED_IP = msgspec.Raw(b'"127.0.0.1"')


class _Submission(msgspec.Struct):
    """bk-003 3.2's body: the measurement stays undecoded below its top-level keys (no Python objects
    are made for test keys: that is most of a submission's bytes and most of the cost of parsing it)."""

    format: Any = None
    content: RawDoc | None = None


_SUBMISSION = msgspec.json.Decoder(_Submission)
_BATCH = msgspec.json.Decoder(list[msgspec.Raw])


def parse_json(raw: bytes) -> Any:
    """JSON from a request body (UTF-8, nesting at most 1024 deep), or a 400."""
    if not raw.strip():
        raise Rejected(400, "empty_body", "empty request body: expected JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, "invalid_json", f"body is not valid JSON: {_one_line(str(exc))}") from None


def _decode(decoder: msgspec.json.Decoder, raw: bytes | msgspec.Raw, what: str) -> Any:
    """msgspec decoding with every failure a 400: bad UTF-8, bad JSON, wrong shape, too deep."""
    view = memoryview(raw)
    if view.nbytes <= 4096 and not bytes(view).strip():
        raise Rejected(400, "empty_body", f"empty {what}: expected JSON")
    try:
        codecs.utf_8_decode(raw, "strict", True)  # msgspec does not check strings it only skips over
    except UnicodeDecodeError as exc:
        raise Rejected(400, "invalid_utf8", f"{what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise Rejected(400, "invalid_field", f"{what}: {_one_line(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise Rejected(400, "invalid_json", f"{what} is not valid JSON: {_one_line(str(exc))}") from None
    except RecursionError:
        raise Rejected(400, "too_deep", f"{what} is nested too deeply") from None


def _one_line(text: str, limit: int = 160) -> str:
    return " ".join(text.split())[:limit]


def _field(doc: dict[str, Any], name: str, pattern: re.Pattern[str], where: str, *, required: bool = True) -> Any:
    value = doc.get(name)
    if value is None and not required and name not in doc:
        return None
    if not isinstance(value, str):
        what = "missing" if name not in doc else f"must be a string, not {_type_name(value)}"
        raise Rejected(400, "missing_field" if name not in doc else "invalid_field", f"{where}{name} {what}")
    if not pattern.fullmatch(value):
        raise Rejected(400, "invalid_field", f"{where}{name} does not match {pattern.pattern}")
    return value


def _type_name(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _time(doc: dict[str, Any], name: str, now: datetime, where: str, *, required: bool) -> datetime | None:
    value = _field(doc, name, _TIME, where, required=required)
    if value is None:
        return None
    try:  # the regex fixed the layout; this is strptime without its cost
        when = datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]), int(value[14:16]),
                        int(value[17:19]))
    except ValueError:
        raise Rejected(400, "invalid_field", f"{where}{name} is not a valid {OONI_TIME} time") from None
    if when > now + FUTURE_SLACK:
        raise Rejected(400, "future_time", f"{where}{name} is more than a day in the future")
    if when < _MIN_TIME:
        raise Rejected(400, "invalid_field", f"{where}{name} is before 1970")
    return when


def check_open(body: Any, now: datetime) -> OpenRequest:
    """bk-003 3.1: every required field with its shape, ``format`` json (YAML reports are not taken)."""
    if not isinstance(body, dict):
        raise Rejected(400, "not_object", f"body must be a JSON object, not {_type_name(body)}")
    if body.get("format") != "json":
        raise Rejected(400, "invalid_field", 'format must be "json" (YAML reports are not accepted)')
    if "content" in body:
        raise Rejected(400, "invalid_field", "content in an open request is not supported: submit it to the report")
    fields = {
        "test_name": _field(body, "test_name", _TEST_NAME, ""),
        "test_version": _field(body, "test_version", _SOFTWARE, ""),
        "probe_cc": _field(body, "probe_cc", _CC, ""),
        "probe_asn": _field(body, "probe_asn", _ASN, ""),
        "software_name": _field(body, "software_name", _SOFTWARE, ""),
        "software_version": _field(body, "software_version", _SOFTWARE, ""),
        "data_format_version": _field(body, "data_format_version", _SOFTWARE, ""),
    }
    start = _time(body, "test_start_time", now, "", required=False)
    return OpenRequest(**fields, test_start_time=start.strftime(OONI_TIME) if start else None)


def decode_submission(raw: bytes) -> RawDoc:
    """bk-003 3.2/3.4: ``{"format": "json", "content": {...}}`` -> the measurement, top-level keys only."""
    body = _decode(_SUBMISSION, raw, "body")
    if body.format != "json":
        raise Rejected(400, "invalid_field", 'format must be "json" (YAML reports are not accepted)')
    if body.content is None:
        raise Rejected(400, "missing_field", "content missing: expected the measurement as a JSON object")
    return body.content


def decode_batch(raw: bytes) -> list[msgspec.Raw]:
    items = _decode(_BATCH, raw, "body")
    if not items:
        raise Rejected(400, "empty_body", "empty batch")
    return items


def decode_item(item: msgspec.Raw) -> tuple[RawDoc, Any]:
    """A batch item: a bare measurement, or ``{"format", "content", "idempotency_key"}``. -> (doc, key or None)."""
    doc = _decode(_RAW_DOC, item, "item")
    if "content" not in doc:
        return doc, None
    if _value(doc, "format") != "json":
        raise Rejected(400, "invalid_field", 'format must be "json" (YAML reports are not accepted)')
    key = _value(doc, "idempotency_key") if "idempotency_key" in doc else None
    if key is None and "idempotency_key" in doc:
        raise Rejected(400, "invalid_field", "idempotency_key must be a string")
    return _decode(_RAW_DOC, doc["content"], "content"), key


def _value(doc: RawDoc, name: str) -> Any:
    raw = doc.get(name)
    return None if raw is None else _ANY.decode(raw)


def _kind(raw: msgspec.Raw) -> Any:
    """A stand-in with the JSON type of a container value, without decoding it."""
    first = bytes(memoryview(raw)[:1])
    if first == b"{":
        return {}
    if first == b"[":
        return []
    return _ANY.decode(raw)


def check_measurement(doc: RawDoc, now: datetime) -> Envelope:
    """df-000's required top-level keys and their shapes (``now``: naive UTC)."""
    view: dict[str, Any] = {name: _ANY.decode(doc[name]) for name in _SCALARS if name in doc}
    view.update({name: _kind(doc[name]) for name in _CONTAINERS if name in doc})
    return check_envelope(view, now)


def check_envelope(doc: dict[str, Any], now: datetime) -> Envelope:
    w = "content."
    test_name = _field(doc, "test_name", _TEST_NAME, w)
    probe_cc = _field(doc, "probe_cc", _CC, w)
    probe_asn = _field(doc, "probe_asn", _ASN, w)
    _field(doc, "software_name", _SOFTWARE, w)
    _field(doc, "software_version", _SOFTWARE, w)
    _field(doc, "test_version", _SOFTWARE, w)
    _field(doc, "data_format_version", _SOFTWARE, w)
    start = _time(doc, "measurement_start_time", now, w, required=True)
    assert start is not None
    _time(doc, "test_start_time", now, w, required=False)
    if not isinstance(doc.get("test_keys"), dict):
        what = "missing" if "test_keys" not in doc else f"must be an object, not {_type_name(doc['test_keys'])}"
        raise Rejected(400, "missing_field" if "test_keys" not in doc else "invalid_field", f"{w}test_keys {what}")
    value = doc.get("input")
    if value is not None and not isinstance(value, str) and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        raise Rejected(400, "invalid_field", f"{w}input must be a string, a list of strings or null")
    for name in ("annotations", "test_helpers"):
        if doc.get(name) is not None and not isinstance(doc[name], dict | list):
            raise Rejected(400, "invalid_field", f"{w}{name} must be an object")
    for name in ("report_id", "probe_ip", "id", "probe_network_name", "resolver_ip", "resolver_asn"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise Rejected(400, "invalid_field", f"{w}{name} must be a string")
    runtime = doc.get("test_runtime")
    if runtime is not None and (isinstance(runtime, bool) or not isinstance(runtime, int | float)):
        raise Rejected(400, "invalid_field", f"{w}test_runtime must be a number")
    return Envelope(test_name, probe_cc, probe_asn, start)


def report_id_of(doc: RawDoc) -> Any:
    return _value(doc, "report_id")


def finish(doc: RawDoc, uid: str, report_id: str) -> bytes:
    """The bytes to store: probe_ip scrubbed, the report id and uid set; every other key and value as sent."""
    doc["probe_ip"] = _RAW_SCRUBBED_IP
    doc["report_id"] = msgspec.Raw(_ENCODE.encode(report_id))
    doc["measurement_uid"] = msgspec.Raw(_ENCODE.encode(uid))
    return _ENCODE.encode(doc)


def check_idempotency_key(value: Any) -> str:
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise Rejected(400, "invalid_field", "idempotency key must be 1-200 visible ASCII characters")
    return value


def header_key(key: str, env: Envelope) -> bytes:
    """A probe's own key, scoped to its network and test: one probe cannot claim another's key."""
    scope = "\0".join((env.probe_cc, env.probe_asn, env.test_name, key))
    return hashlib.blake2b(b"key\0" + scope.encode(), digest_size=16).digest()


def content_key(doc: RawDoc) -> bytes:
    """For a probe that sends no key: a hash of its measurement, top-level keys in sorted order with their
    values as sent, without the fields the collector assigns (so re-filing the same bytes under a new
    report is still the same measurement)."""
    h = hashlib.blake2b(b"content\0", digest_size=16)
    for name in sorted(doc):
        if name not in _ASSIGNED:
            value = doc[name]
            encoded = name.encode("utf-8", "surrogatepass")
            h.update(len(encoded).to_bytes(4, "little") + encoded + len(value).to_bytes(8, "little"))
            h.update(value)
    return h.digest()


def normalize_test_name(name: str) -> str:
    """OONI's spelling in report ids and uids: web_connectivity -> webconnectivity."""
    return _NOT_ALNUM.sub("", name.lower())[:64] or "unknown"


def new_measurement_uid(env: Envelope, now: datetime) -> str:
    """OONI's measurement_uid shape: receive time, country, test, 64 random bits."""
    return (f"{now.year:04d}{now.month:02d}{now.day:02d}{now.hour:02d}{now.minute:02d}{now.second:02d}."
            f"{now.microsecond:06d}_{env.probe_cc}_{normalize_test_name(env.test_name)}_{os.urandom(8).hex()}")


def scrub_address(data: bytes, address: str | None) -> bytes:
    """Replace the submitter's address wherever it appears in the measurement by "[scrubbed]".

    127.0.0.1 and ::1 are what every probe writes as probe_ip (and what a reverse proxy on the same host
    connects from): they identify nobody and are left alone.
    """
    if not address or address in (SCRUBBED_PROBE_IP, "::1"):
        return data
    pattern = _address_pattern(address)
    return pattern.sub(b"[scrubbed]", data) if pattern is not None else data


@lru_cache(maxsize=4096)
def _address_pattern(address: str) -> re.Pattern[bytes] | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    v4 = [ip] if ip.version == 4 else ([ip.ipv4_mapped] if ip.ipv4_mapped is not None else [])
    v6 = sorted({str(ip), ip.exploded}, key=len, reverse=True) if ip.version == 6 else []
    # Whole addresses only: 10.0.0.1 must not hit 10.0.0.10 or 110.0.0.1; "1.2.3.4:443" is an address.
    parts = [rb"(?<![0-9.])" + re.escape(str(a).encode()) + rb"(?![0-9]|\.[0-9])" for a in v4]
    parts += [rb"(?<![0-9A-Fa-f:])" + re.escape(f.encode()) + rb"(?![0-9A-Fa-f:])" for f in v6]
    return re.compile(b"|".join(parts))


def utc_now() -> datetime:
    """Naive UTC, as OONI timestamps are."""
    return datetime.now(UTC).replace(tzinfo=None)

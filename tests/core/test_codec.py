"""Decoding real OONI data tolerantly and encoding it back without loss."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from netvigil.codec import BadRecord, decode_measurement, encode_measurement, measurement_to_dict
from netvigil.model.archival import WebConnectivityTestKeys, WhatsAppTestKeys

MINIMAL = {"test_name": "web_connectivity", "measurement_start_time": "2020-09-27 14:00:00"}


def test_every_real_json_round_trips_exactly(real_dir: Path, netem_qa_dir: Path) -> None:
    checked = 0
    for path in sorted(real_dir.glob("*.json")) + sorted(netem_qa_dir.glob("*.json")):
        raw = path.read_bytes()
        try:
            m = decode_measurement(raw)
        except BadRecord:
            continue
        assert json.loads(encode_measurement(m)) == json.loads(raw), path.name
        checked += 1
    assert checked >= 90


def test_missing_keys_and_nulls_are_tolerated() -> None:
    m = decode_measurement(orjson.dumps(dict(MINIMAL, test_keys={"queries": None, "requests": [None and {}],
                                                                  "control": None, "blocking": None})))
    assert isinstance(m.test_keys, WebConnectivityTestKeys)
    assert m.test_keys.control is None and m.test_keys.queries is None


def test_base64_body_and_headers_list_are_decoded(real_dir: Path) -> None:
    from netvigil.analysis.observations.common import body_text, headers_as_pairs

    m = decode_measurement((real_dir / "web_connectivity_b64_hdr.json").read_bytes())
    resp = m.test_keys.requests[0].response
    pairs = headers_as_pairs(resp.headers, resp.headers_list)
    assert pairs and all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)
    raw = orjson.dumps(dict(MINIMAL, test_keys={"requests": [{"response": {
        "body": {"format": "base64", "data": "PHRpdGxlPkhpPC90aXRsZT4="},
        "headers_list": [["Server", "x"], ["Set-Cookie", {"format": "base64", "data": "YT1i"}]]}}]}))
    resp = decode_measurement(raw).test_keys.requests[0].response
    assert body_text(resp.body) == "<title>Hi</title>"
    assert headers_as_pairs(resp.headers, resp.headers_list) == [("Server", "x"), ("Set-Cookie", "a=b")]


def test_unknown_fields_survive_encoding() -> None:
    raw = orjson.dumps(dict(MINIMAL, x_future_field={"a": 1}, test_keys={
        "x_new_key": [1, 2], "queries": [{"hostname": "a.example", "x_extra": True, "answers": []}]}))
    back = orjson.loads(encode_measurement(decode_measurement(raw)))
    assert back["x_future_field"] == {"a": 1}
    assert back["test_keys"]["x_new_key"] == [1, 2]
    assert back["test_keys"]["queries"][0]["x_extra"] is True


def test_mistyped_test_keys_fall_back_to_raw_dict_instead_of_failing() -> None:
    raw = orjson.dumps(dict(MINIMAL, test_name="whatsapp", test_keys={"whatsapp_endpoints_blocked": "not-a-list"}))
    m = decode_measurement(raw)
    assert m.test_keys == {"whatsapp_endpoints_blocked": "not-a-list"}
    ok = decode_measurement(orjson.dumps(dict(MINIMAL, test_name="whatsapp", test_keys={"whatsapp_endpoints_blocked": []})))
    assert isinstance(ok.test_keys, WhatsAppTestKeys)


def test_mistyped_envelope_field_is_dropped_not_fatal() -> None:
    m = decode_measurement(orjson.dumps(dict(MINIMAL, probe_asn=["AS1"], test_runtime="fast", test_keys={})))
    assert m.envelope.probe_asn is None and m.test_name == "web_connectivity"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "invalid_json"),
    (b"---\nprobe_asn: AS1\ntest_name: x\n", "legacy_yaml"),
    (b"[1, 2]", "not_a_measurement"),
    (b'{"hello": "world"}', "not_a_measurement"),
    (b"   \n", "empty"),
])
def test_bad_records_have_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRecord) as exc:
        decode_measurement(raw)
    assert exc.value.reason.value == reason


def test_uid_is_measurement_uid_when_present_else_stable_across_formatting(real_dir: Path) -> None:
    raw = (real_dir / "http_header_field_manipulation_1.json").read_bytes()
    assert decode_measurement(raw).uid == json.loads(raw)["measurement_uid"]
    pretty = (real_dir / "report1.json").read_bytes()
    compact = orjson.dumps(json.loads(pretty))
    assert decode_measurement(pretty).uid == decode_measurement(compact).uid
    assert decode_measurement(pretty).uid.startswith("nv1_")
    # Same report, input, start time and runtime: OONI's identity of a measurement.
    other = (real_dir / "report1blocked.json").read_bytes()
    assert decode_measurement(other).uid == decode_measurement(pretty).uid
    # Without a report id the content decides.
    a = orjson.dumps(dict(MINIMAL, test_keys={"blocking": False}))
    b = orjson.dumps(dict(MINIMAL, test_keys={"blocking": "dns"}))
    assert decode_measurement(a).uid != decode_measurement(b).uid
    assert decode_measurement(a).uid == decode_measurement(orjson.dumps(orjson.loads(a), option=orjson.OPT_INDENT_2)).uid


def test_measurement_to_dict_keeps_probe_ip_as_recorded_scrubbed(real_dir: Path) -> None:
    d = measurement_to_dict(decode_measurement((real_dir / "whatsapp.json").read_bytes()))
    assert d["probe_ip"] == "127.0.0.1"


def test_test_keys_for_decodes_only_the_named_tests_and_keeps_the_uid(real_dir: Path, netem_qa_dir: Path) -> None:
    from netvigil.codec import decode_test_keys

    checked = skipped = 0
    for path in sorted(real_dir.glob("*.json")) + sorted(netem_qa_dir.glob("*.json")):
        raw = path.read_bytes()
        try:
            full = decode_measurement(raw)
        except BadRecord:
            continue
        lean = decode_measurement(raw, test_keys_for={"web_connectivity"})
        assert (lean.uid, lean.envelope, lean.raw) == (full.uid, full.envelope, full.raw), path.name
        if full.test_name == "web_connectivity" or not (full.envelope.report_id or full.envelope.measurement_uid):
            assert lean.test_keys == full.test_keys, path.name
        else:
            assert lean.test_keys is None, path.name
            skipped += full.test_keys is not None
        assert decode_test_keys(lean) == full.test_keys, path.name
        checked += 1
    assert checked >= 90 and skipped >= 5


def test_uid_from_content_still_decodes_test_keys_when_asked_for_none() -> None:
    raw = orjson.dumps({"test_name": "ndt", "measurement_start_time": "2020-09-27 14:00:00",
                        "test_keys": {"download": 1}})
    m = decode_measurement(raw, test_keys_for=())
    assert m.test_keys == {"download": 1}
    assert m.uid == decode_measurement(raw).uid

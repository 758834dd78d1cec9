"""Validation, report ids and scrubbing, without a server."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from netvigil.collector.reportid import ReportIds, load_secret
from netvigil.collector.validate import (
    Rejected,
    check_measurement,
    content_key,
    decode_submission,
    finish,
    scrub_address,
)

NOW = datetime(2026, 3, 1, 12, 0, 0)


def doc(**override: Any) -> dict[str, Any]:
    d = {"test_name": "web_connectivity", "test_version": "0.4.3", "probe_cc": "IT", "probe_asn": "AS137",
         "software_name": "ooniprobe", "software_version": "3.22.0", "data_format_version": "0.2.0",
         "measurement_start_time": "2026-03-01 11:59:00", "test_keys": {"accessible": True}, "probe_ip": "127.0.0.1",
         "input": "https://example.org/", "report_id": "r"}
    d.update(override)
    return {k: v for k, v in d.items() if v is not ...}


def submit_body(content: Any) -> bytes:
    return orjson.dumps({"format": "json", "content": content})


def check(content: Any) -> None:
    check_measurement(decode_submission(submit_body(content)), NOW)


@pytest.mark.parametrize(("override", "code", "words"), [
    ({"test_name": ...}, "missing_field", "test_name missing"),
    ({"probe_cc": "italy"}, "invalid_field", "probe_cc does not match"),
    ({"probe_asn": 137}, "invalid_field", "probe_asn must be a string, not a number"),
    ({"test_keys": [1]}, "invalid_field", "test_keys must be an object"),
    ({"test_keys": ...}, "missing_field", "test_keys missing"),
    ({"measurement_start_time": "2026-03-03 12:00:00"}, "future_time", "more than a day in the future"),
    ({"measurement_start_time": "2026-02-30 12:00:00"}, "invalid_field", "not a valid"),
    ({"measurement_start_time": "yesterday"}, "invalid_field", "measurement_start_time does not match"),
    ({"input": {"a": 1}}, "invalid_field", "input must be"),
    ({"software_version": "x" * 100_000}, "invalid_field", "software_version does not match"),
    ({"test_runtime": True}, "invalid_field", "test_runtime must be a number"),
])
def test_envelope_errors_name_the_field(override: dict[str, Any], code: str, words: str) -> None:
    with pytest.raises(Rejected) as info:
        check(doc(**override))
    assert info.value.status == 400 and info.value.code == code and words in info.value.reason


def test_a_measurement_a_day_ahead_is_fine_and_unknown_tests_pass_through() -> None:
    check(doc(measurement_start_time="2026-03-02 11:59:59", test_name="some_new_test"))


@pytest.mark.parametrize(("body", "code"), [
    (b"", "empty_body"),
    (b"[1,2]", "invalid_field"),
    (b'{"format":"json","content":"{}"}', "invalid_field"),
    (b'{"format":"yaml","content":{}}', "invalid_field"),
    (b'{"format":"json"}', "missing_field"),
    (b'{"format":"json","content":{"a":"\xff"}}', "invalid_utf8"),
    (b'{"format":"json","content":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}", "too_deep"),
    (b'{"format":"json","content":{"a":1}', "invalid_json"),
])
def test_bodies_that_are_not_submissions(body: bytes, code: str) -> None:
    with pytest.raises(Rejected) as info:
        decode_submission(body)
    assert info.value.code == code and info.value.status == 400


def test_stored_bytes_keep_everything_but_what_the_collector_sets() -> None:
    original = doc(probe_ip="198.51.100.7", report_id="abc", extra={"nested": [1, 2.5, None, "é"]})
    raw = decode_submission(submit_body(original))
    stored = orjson.loads(finish(raw, "UID", "REPORT"))
    assert stored == {**original, "probe_ip": "127.0.0.1", "report_id": "REPORT", "measurement_uid": "UID"}
    assert list(stored)[:-1] == list(original)  # key order kept, the uid appended


def test_content_key_ignores_assigned_fields_only() -> None:
    a = decode_submission(submit_body(doc()))
    b = decode_submission(submit_body(doc(report_id="other", probe_ip="127.0.0.1", measurement_uid="x")))
    c = decode_submission(submit_body(doc(input="https://example.com/")))
    assert content_key(a) == content_key(b) != content_key(c)


@pytest.mark.parametrize(("address", "text", "expected"), [
    ("198.51.100.7", '"198.51.100.7" "198.51.100.7:443" "198.51.100.70" "1198.51.100.7" "198.51.100.7.5"',
     '"[scrubbed]" "[scrubbed]:443" "198.51.100.70" "1198.51.100.7" "198.51.100.7.5"'),
    ("2001:db8::7", '"2001:db8::7" "[2001:db8::7]:443" "2001:db8::77" "2001:0db8:0000:0000:0000:0000:0000:0007"',
     '"[scrubbed]" "[[scrubbed]]:443" "2001:db8::77" "[scrubbed]"'),
    ("::ffff:198.51.100.7", '"198.51.100.7"', '"[scrubbed]"'),
    ("127.0.0.1", '"127.0.0.1"', '"127.0.0.1"'),
])
def test_scrubbing_replaces_whole_addresses_only(address: str, text: str, expected: str) -> None:
    assert scrub_address(text.encode(), address) == expected.encode()


def test_report_ids_are_signed_and_checked(tmp_path: Path) -> None:
    ids = ReportIds(load_secret(tmp_path / "secret"))
    rid = ids.mint("web_connectivity", "IT", "AS137", NOW)
    assert len(rid) <= 200 and rid.startswith("20260301T120000Z_webconnectivity_IT_137_nv1_")
    info = ids.verify(rid, NOW + timedelta(hours=1))
    assert (info.test, info.probe_cc, info.probe_asn) == ("webconnectivity", "IT", "AS137")
    # another collector with the same secret file accepts it; one with another secret does not
    assert ReportIds(load_secret(tmp_path / "secret")).verify(rid, NOW) == info
    with pytest.raises(Rejected, match="not issued by this collector"):
        ReportIds(b"another secret of enough length").verify(rid, NOW)
    forged = rid.replace("_IT_", "_IR_")
    with pytest.raises(Rejected, match="not issued") as err:
        ids.verify(forged, NOW)
    assert err.value.status == 404
    with pytest.raises(Rejected, match="expired"):
        ids.verify(rid, NOW + timedelta(days=8))
    with pytest.raises(Rejected, match="malformed"):
        ids.verify("x" * 300, NOW)
    env = check_measurement(decode_submission(submit_body(doc(probe_asn="AS138"))), NOW)
    with pytest.raises(Rejected) as err:
        ids.check_matches(info, env)
    assert err.value.code == "report_mismatch"


def test_the_secret_file_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "d" / "secret"
    first = load_secret(path)
    assert load_secret(path) == first and len(first) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("short")
    with pytest.raises(ValueError, match="at least 32"):
        load_secret(path)

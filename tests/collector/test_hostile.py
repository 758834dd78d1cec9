"""Hostile input: over 10,000 generated bodies against a running collector -> every one a 4xx with a reason.

Each generated request is invalid by construction (a real measurement with one thing broken, a broken
envelope, random JSON or bytes, invalid UTF-8 inside a string, nesting thousands deep, bodies over the
size limit, forged or malformed report ids, bad idempotency keys, unsupported encodings). The collector
must answer each with a 4xx and ``{"error": <reason>}``: no 5xx, no dropped connection, no crash, nothing
stored. The client connects from a distinctive loopback address; the address must appear nowhere after.
"""

from __future__ import annotations

import http.client
import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from collector_harness import CLIENT_ADDRESS, CollectorProc, files_containing, group_of, open_body, vary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 10_500
REQUIRED = ("test_name", "test_version", "probe_cc", "probe_asn", "software_name", "software_version",
            "data_format_version", "measurement_start_time", "test_keys")
PATTERNED = {"test_name": r"[a-zA-Z0-9_\- ]{1,64}", "probe_cc": r"[A-Z]{2}", "probe_asn": r"AS[0-9]{1,10}",
             "software_name": r"[0-9A-Za-z_.+-]{1,64}", "software_version": r"[0-9A-Za-z_.+-]{1,64}",
             "test_version": r"[0-9A-Za-z_.+-]{1,64}", "data_format_version": r"[0-9A-Za-z_.+-]{1,64}",
             "measurement_start_time": r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"}
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\xe2\x82", b"\x80"]

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
not_strings = json_values.filter(lambda v: not isinstance(v, str))
not_objects = json_values.filter(lambda v: not isinstance(v, dict))
huge = st.integers(70, 1_500_000).map(lambda n: "A" * n)
# Strategies are built once here: building them inside a draw costs more than the draw.
PICK = st.integers(0, 10**9)
REQUIRED_S = st.sampled_from(REQUIRED)
PATTERNED_S = st.sampled_from(sorted(PATTERNED))
MISMATCHED = {f: st.text(max_size=20).filter(lambda t, f=f: not re.fullmatch(PATTERNED[f], t)) for f in PATTERNED}
FUTURE = st.datetimes(min_value=datetime.now(UTC).replace(tzinfo=None) + timedelta(days=2),
                      max_value=datetime(9999, 1, 1))
TIME_FIELD = st.sampled_from(["measurement_start_time", "test_start_time"])
BAD_INPUT = (st.dictionaries(st.text(max_size=5), json_values, min_size=1, max_size=3)
             | st.lists(not_strings, min_size=1, max_size=3) | st.integers(-(2**63), 2**63 - 1) | st.booleans())
BAD_RUNTIME = st.text(max_size=10) | st.booleans() | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2)
OTHER_CC = st.sampled_from(["AA", "QQ", "XX"])
ASN_NUMBER = st.integers(1, 10**9)
SOMETIMES = st.integers(0, 3)
JUNK = st.dictionaries(st.sampled_from(["x_a", "x_b", "x_c"]), json_values, max_size=2)
MEASUREMENT_HOW = st.sampled_from(["drop", "type", "pattern", "huge", "future", "report_id", "mismatch", "input",
                                   "test_keys", "runtime"])
WRAPPER_HOW = st.sampled_from(["format", "content", "nocontent", "notobject", "json", "bytes", "utf8", "empty"])
NOT_JSON_FORMAT = json_values.filter(lambda v: v != "json")
NOT_NULL_OBJECTS = not_objects.filter(lambda v: v is not None)
OTHER_KEYS = st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("content", "format")), json_values,
                             max_size=3)
EMPTYISH = st.sampled_from([b"", b" ", b"\r\n", b"null", b"{}", b"[]"])
BAD_UTF8_S = st.sampled_from(BAD_UTF8)
BYTES = st.binary(max_size=300)
DEEP_HOW = st.sampled_from(["deep", "deep", "deep", "big", "declared"])
DEPTH = st.integers(2_000, 200_000)
NESTING = st.sampled_from([("[", "]"), ('{"a":', "}")])
PADDING = st.integers(2 << 20, 3 << 20)
DECLARED = st.integers(65 << 20, 1 << 40)
REPORT_HOW = st.sampled_from(["random_id", "tampered", "close", "open", "open_type", "open_missing"])
RANDOM_ID = st.text(min_size=1, max_size=300)
ID_CHAR = st.sampled_from(string.ascii_letters + string.digits + "_")
OPEN_FIELDS = st.sampled_from(sorted(set(PATTERNED) - {"measurement_start_time"}))
OPEN_KEYS = st.sampled_from(["test_name", "test_version", "probe_asn", "probe_cc", "software_name",
                             "software_version", "data_format_version", "format"])
HEADER_HOW = st.sampled_from(["key", "encoding", "batch", "batch_items"])
BAD_KEY = (st.builds(lambda n, t: "k" * n + t, st.integers(201, 400), st.text(alphabet=string.ascii_letters,
                                                                             max_size=5))
           | st.sampled_from([" ", "\t", "é", "a b"]).map(lambda s: "a" + s + "b"))
ENCODING = st.sampled_from(["gzip", "deflate", "br", "zstd", "compress", "x-anything"])
BAD_BATCH = st.sampled_from([b"", b"[]", b"{}", b"[", b"null", b'"x"'])
BATCH_ITEMS = st.lists(not_objects | st.builds(lambda d: {"format": "json", "content": d}, not_objects), min_size=1,
                       max_size=20)
KIND = st.integers(0, 99)


class Client:
    """One kept-alive connection from CLIENT_ADDRESS; reopened if the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.sent = 0

    def send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             declared: int | None = None) -> tuple[int, bytes]:
        fresh = self.conn is None
        try:
            return self._send(method, path, body, headers, declared)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            if fresh:
                raise
            # the server may close a kept-alive connection that sat idle (5 s): once more on a new one
            return self._send(method, path, body, headers, declared)

    def _send(self, method: str, path: str, body: bytes, headers: dict[str, str] | None,
              declared: int | None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                   source_address=(CLIENT_ADDRESS, 0))
        conn = self.conn
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body) if declared is None else declared))
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.endheaders()
            if declared is None:
                conn.send(body)
            r = conn.getresponse()
            data = r.read()
            if r.getheader("connection", "").lower() == "close" or r.will_close:
                self.close()
        except BaseException:
            self.close()
            raise
        self.sent += 1
        return r.status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, bases: list[dict[str, Any]]):
    root = tmp_path_factory.mktemp("hostile")
    c = CollectorProc(root, ["--rate-per-client", "0", "--rate-per-report", "0"]).start()
    reports = {}
    for doc in bases:
        if group_of(doc) not in reports:
            reports[group_of(doc)] = c.open_report(doc)
    yield c, reports
    if c.alive():
        assert c.stop() == 0


def _submission(doc: dict[str, Any]) -> bytes:
    return orjson.dumps({"format": "json", "content": doc})


def _pick(draw, bases, reports) -> tuple[dict[str, Any], str]:
    n = draw(PICK)
    base = bases[n % len(bases)]
    rid = reports[group_of(base)]
    return vary(base, n, rid), rid


@st.composite
def broken_measurement(draw, bases, reports) -> tuple[str, str, bytes, dict[str, str]]:
    doc, rid = _pick(draw, bases, reports)
    how = draw(MEASUREMENT_HOW)
    if how == "drop":
        doc.pop(draw(REQUIRED_S))
    elif how == "type":
        name = draw(REQUIRED_S)
        doc[name] = draw(not_objects if name == "test_keys" else not_strings)
    elif how == "pattern":
        field = draw(PATTERNED_S)
        doc[field] = draw(MISMATCHED[field])
    elif how == "huge":
        doc[draw(PATTERNED_S)] = draw(huge)
    elif how == "future":
        doc[draw(TIME_FIELD)] = draw(FUTURE).strftime("%Y-%m-%d %H:%M:%S")
    elif how == "report_id":
        doc["report_id"] = draw(MISMATCHED["probe_cc"] | not_strings)
    elif how == "mismatch":  # a well-formed measurement of another network than its report's
        doc["probe_cc"] = draw(OTHER_CC)
        doc["probe_asn"] = "AS" + str(draw(ASN_NUMBER))
    elif how == "input":
        doc["input"] = draw(BAD_INPUT)
    elif how == "test_keys":
        doc["test_keys"] = draw(not_objects)
    else:
        doc["test_runtime"] = draw(BAD_RUNTIME)
    if draw(SOMETIMES) == 0:  # sometimes fields nobody knows, too
        doc.update(draw(JUNK))
    return "POST", f"/report/{rid}", _submission(doc), {}


@st.composite
def broken_wrapper(draw, bases, reports) -> tuple[str, str, bytes, dict[str, str]]:
    doc, rid = _pick(draw, bases, reports)
    how = draw(WRAPPER_HOW)
    if how == "format":
        body = orjson.dumps({"format": draw(NOT_JSON_FORMAT), "content": doc})
    elif how == "content":
        body = orjson.dumps({"format": "json", "content": draw(NOT_NULL_OBJECTS)})
    elif how == "nocontent":
        body = orjson.dumps({"format": "json", **draw(OTHER_KEYS)})
    elif how == "notobject":
        body = orjson.dumps(draw(not_objects))
    elif how == "json":
        body = orjson.dumps(draw(json_values))
    elif how == "bytes":
        body = draw(BYTES)
    elif how == "utf8":  # well-formed JSON but for one invalid UTF-8 sequence inside a string
        doc["test_keys"] = {**doc["test_keys"], "x_note": "@@BAD@@"}
        body = _submission(doc).replace(b"@@BAD@@", b"a" + draw(BAD_UTF8_S) + b"b")
    else:
        body = draw(EMPTYISH)
    return "POST", f"/report/{rid}", body, {}


@st.composite
def deep_or_oversized(draw, bases, reports) -> tuple[str, str, bytes, dict[str, str]] | tuple[str, str, int]:
    doc, rid = _pick(draw, bases, reports)
    how = draw(DEEP_HOW)
    if how == "deep":
        depth = draw(DEPTH)
        opener, closer = draw(NESTING)
        doc["test_keys"] = {"x_deep": "@@DEEP@@"}
        body = _submission(doc).replace(b'"@@DEEP@@"', (opener * depth + "1" + closer * depth).encode())
        return "POST", f"/report/{rid}", body, {}
    if how == "big":
        doc["test_keys"] = {**doc["test_keys"], "x_pad": "p" * draw(PADDING)}
        return "POST", f"/report/{rid}", _submission(doc), {}
    return "POST", f"/report/{rid}", draw(DECLARED)  # only the header: never sent


@st.composite
def broken_report_or_open(draw, bases, reports) -> tuple[str, str, bytes, dict[str, str]]:
    doc, rid = _pick(draw, bases, reports)
    how = draw(REPORT_HOW)
    if how == "random_id":
        bad = draw(RANDOM_ID)
        return "POST", "/report/" + quote(bad, safe=""), _submission(doc), {}
    if how in ("tampered", "close"):
        i = draw(PICK) % len(rid)
        c = draw(ID_CHAR)
        bad = rid[:i] + (c if c != rid[i] else ("0" if rid[i] != "0" else "1")) + rid[i + 1:]
        return "POST", f"/report/{bad}" + ("/close" if how == "close" else ""), _submission(doc), {}
    body = open_body(doc)
    if how == "open":
        field = draw(OPEN_FIELDS)
        body[field] = draw(MISMATCHED[field])
    elif how == "open_type":
        body[draw(OPEN_KEYS)] = draw(not_strings)
    else:
        body.pop(draw(OPEN_KEYS))
    return "POST", "/report", orjson.dumps(body), {}


@st.composite
def broken_headers_or_batch(draw, bases, reports) -> tuple[str, str, bytes, dict[str, str]]:
    doc, rid = _pick(draw, bases, reports)
    how = draw(HEADER_HOW)
    if how == "key":
        return "POST", f"/report/{rid}", _submission(doc), {"X-Idempotency-Key": draw(BAD_KEY)}
    if how == "encoding":
        return "POST", f"/report/{rid}", _submission(doc), {"Content-Encoding": draw(ENCODING)}
    if how == "batch":
        return "POST", "/measurements", draw(BAD_BATCH), {}
    items = draw(BATCH_ITEMS)
    if draw(SOMETIMES) == 0:
        items.append({**doc, "test_keys": None})
    return "POST", "/measurements", orjson.dumps(items), {"X-Batch": "items"}


def _check(status: int, body: bytes, batch_items: bool) -> None:
    assert 400 <= status < 500, (status, body[:300])
    answer = orjson.loads(body)
    assert isinstance(answer.get("error"), str) and answer["error"].strip(), body[:300]


def test_hostile_bodies_are_all_answered_with_a_4xx_and_a_reason(target, bases) -> None:
    c, reports = target
    client = Client(c.port)
    statuses: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data) -> None:
        k = data.draw(KIND)
        if k < 40:
            req = data.draw(broken_measurement(bases, reports))
        elif k < 65:
            req = data.draw(broken_wrapper(bases, reports))
        elif k < 83:
            req = data.draw(broken_report_or_open(bases, reports))
        elif k < 97:
            req = data.draw(broken_headers_or_batch(bases, reports))
        else:
            req = data.draw(deep_or_oversized(bases, reports))
        if len(req) == 3:  # a declared body too large to be read: headers only
            method, path, declared = req
            status, body = client.send(method, path, declared=declared)
        else:
            method, path, payload, headers = req
            batch_items = headers.pop("X-Batch", None) is not None
            status, body = client.send(method, path, payload, headers)
            if batch_items and status == 200:  # a batch is answered per item: every item refused
                results = orjson.loads(body)["results"]
                assert all(400 <= r["status"] < 500 and r["error"] for r in results), results
                statuses[200] = statuses.get(200, 0) + 1
                return
        statuses[status] = statuses.get(status, 0) + 1
        _check(status, body, False)

    one()
    client.close()
    assert client.sent >= 10_000, client.sent
    assert c.alive()
    assert c.get("/health", token=None).json()["status"] == "ok"
    stats = c.get("/api/v1/stats").json()
    assert stats["log"]["records"] == 0  # nothing hostile was stored
    good = vary(bases[0], 1, reports[group_of(bases[0])])
    assert c.post(f"/report/{good['report_id']}", {"format": "json", "content": good}).status == 200
    err = c.stderr()
    assert "Traceback" not in err and "internal error" not in err and "ERROR" not in err, err[-3000:]
    assert files_containing([c.data_dir, *c.outputs], CLIENT_ADDRESS.encode()) == []
    print(f"{client.sent} hostile requests; statuses {dict(sorted(statuses.items()))}")

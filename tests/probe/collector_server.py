"""A minimal OONI-shaped collector for tests (ooni/spec backends/bk-003-collector.md).

Test code, stdlib only, until the real collector exists. It implements the three
calls a probe makes (open, update, close a report), validates what the spec says
a collector MUST validate, and deduplicates submissions on ``X-Idempotency-Key``:
the same key twice gets the first receipt back (header ``Idempotent-Replayed:
true``) and is not stored again.

    python tests/probe/collector_server.py --host 127.0.0.1 --port 0 --out stored.jsonl \
        [--stats stats.json] [--drop-first-ack N] [--fail-first N] [--report-ttl S] [--tls-cert C --tls-key K]

prints ``READY <host>:<port>`` (flushed) once listening. Every stored measurement is
one line of ``--out`` (the ``content`` object as received); ``--stats`` is a JSON
sidecar rewritten on every change: stored, duplicates, dropped_acks and requests
per endpoint. ``--drop-first-ack N`` stores the first N submissions and then
closes the connection without answering (a lost acknowledgement); ``--fail-first
N`` answers the first N submissions ``503`` (Retry-After: 0) without storing them;
``--report-ttl S`` closes reports S seconds after they were opened (the real
collector does so after hours of inactivity), so late submissions get a 404;
``--tls-cert``/``--tls-key`` serve HTTPS. SIGTERM exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BACKEND_VERSION = "0.1.0-test"
MAX_BODY = 16 << 20

_ASN = re.compile(r"AS[0-9]{1,10}")
_CC = re.compile(r"[A-Z]{2}")
_SOFTWARE = re.compile(r"[0-9A-Za-z_.+-]+")
_TEST_NAME = re.compile(r"[a-zA-Z0-9_\- ]+")
_TIME = "%Y-%m-%d %H:%M:%S"
_SUBMIT = re.compile(r"/report/([^/]+)")
_CLOSE = re.compile(r"/report/([^/]+)/close")


class BadRequest(Exception):
    """A 4xx the spec requires; the message goes back to the probe as {"error": ...}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.strptime(value, _TIME)
    except ValueError:
        return False
    return True


def check_open(body: Any) -> dict[str, Any]:
    """Section 3.1: every required field present and well-formed, format json."""
    if not isinstance(body, dict):
        raise BadRequest("body is not a JSON object")
    rules = {
        "probe_asn": _ASN,
        "probe_cc": _CC,
        "software_name": _SOFTWARE,
        "software_version": _SOFTWARE,
        "test_name": _TEST_NAME,
        "test_version": _SOFTWARE,
    }
    for name, pattern in rules.items():
        value = body.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise BadRequest(f"missing or invalid {name}")
    if not isinstance(body.get("data_format_version"), str):
        raise BadRequest("missing or invalid data_format_version")
    if body.get("format") != "json":
        raise BadRequest("format must be json")
    if "test_start_time" in body and not _is_time(body["test_start_time"]):
        raise BadRequest("invalid test_start_time")
    return body


def check_content(report_id: str, body: Any) -> dict[str, Any]:
    """Section 3.2: a JSON object with the df-000 top-level keys, filed under this very report."""
    if not isinstance(body, dict) or body.get("format") != "json":
        raise BadRequest("body must be a JSON object with format json")
    content = body.get("content")
    if not isinstance(content, dict):
        raise BadRequest("content is not a JSON object")
    if content.get("report_id") != report_id:
        raise BadRequest("content.report_id does not match the report")
    for key in ("test_name", "probe_asn", "probe_cc", "software_name", "software_version", "data_format_version"):
        if not isinstance(content.get(key), str):
            raise BadRequest(f"content.{key} missing")
    if not _is_time(content.get("measurement_start_time")):
        raise BadRequest("content.measurement_start_time missing or not %Y-%m-%d %H:%M:%S")
    if not isinstance(content.get("test_keys"), dict):
        raise BadRequest("content.test_keys is not an object")
    return content


class Collector:
    """The collector's state; one lock, because the server answers on many threads."""

    def __init__(self, out: Path, stats: Path | None, drop_first_ack: int = 0, fail_first: int = 0,
                 report_ttl: float | None = None) -> None:
        self.out = out
        self.report_ttl = report_ttl
        self.stats_path = stats
        self.drop_left = drop_first_ack
        self.fail_left = fail_first
        self.lock = threading.Lock()
        self.reports: dict[str, dict[str, Any]] = {}  # report_id -> {"open": bool, "meta": ...}
        self.receipts: dict[str, dict[str, Any]] = {}  # idempotency key -> first receipt
        self.stats: dict[str, Any] = {
            "stored": 0,
            "duplicates": 0,
            "dropped_acks": 0,
            "unavailable": 0,
            "requests": {"open": 0, "submit": 0, "close": 0},
            "rejected": 0,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
        self._write_stats()

    def _write_stats(self) -> None:
        if self.stats_path is None:
            return
        tmp = self.stats_path.with_name(self.stats_path.name + ".tmp")
        tmp.write_text(json.dumps(self.stats, sort_keys=True))
        os.replace(tmp, self.stats_path)

    def count(self, what: str, by: int = 1) -> None:
        with self.lock:
            if what in self.stats["requests"]:
                self.stats["requests"][what] += by
            else:
                self.stats[what] += by
            self._write_stats()

    def open_report(self, meta: dict[str, Any]) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = re.sub(r"[^A-Za-z0-9]", "", meta["test_name"])
        report_id = f"{stamp}_{name}_{meta['probe_cc']}_{meta['probe_asn']}_{secrets.token_hex(32)}"
        with self.lock:
            self.reports[report_id] = {"open": True, "meta": meta, "opened": time.monotonic()}
        return report_id

    def close_report(self, report_id: str) -> None:
        with self.lock:
            report = self.reports.get(report_id)
            if report is None:
                raise BadRequest("no such report", 404)
            report["open"] = False

    def take_failure(self) -> bool:
        """Whether this submission gets a 503 (the --fail-first budget)."""
        with self.lock:
            if self.fail_left <= 0:
                return False
            self.fail_left -= 1
            self.stats["unavailable"] += 1
            self._write_stats()
            return True

    def submit(self, report_id: str, body: Any, key: str | None) -> tuple[dict[str, Any], bool, bool]:
        """Store once per key. Returns (receipt, replayed, drop_the_ack)."""
        with self.lock:
            report = self.reports.get(report_id)
            if report is not None and self.report_ttl is not None and (
                time.monotonic() - report["opened"] > self.report_ttl
            ):
                report["open"] = False
            if report is None or not report["open"]:
                raise BadRequest("no such open report", 404)
            if key is not None and key in self.receipts:
                self.stats["duplicates"] += 1
                self._write_stats()
                return self.receipts[key], True, False
            content = check_content(report_id, body)
            stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f")
            name = re.sub(r"[^A-Za-z0-9]", "", content["test_name"])
            receipt = {
                "measurement_uid": f"{stamp}_{content['probe_cc']}_{name}_{secrets.token_hex(8)}",
                "report_id": report_id,
            }
            line = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            with self.out.open("ab") as fh:  # persist before answering (spec 3.2, point 6)
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            if key is not None:
                self.receipts[key] = receipt
            self.stats["stored"] += 1
            drop = self.drop_left > 0
            if drop:
                self.drop_left -= 1
                self.stats["dropped_acks"] += 1
            self._write_stats()
            return receipt, False, drop


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "netvigil-test-collector"
    collector: Collector  # set on the subclass made in main()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read stdout for READY only
        return

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise BadRequest("body too large", 413)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise BadRequest("body too large", 413)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, body: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        try:
            raw = self._read_body()  # read first: answering before the body is read would reset the connection
            if self.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise BadRequest("content encoding not supported", 415)  # spec 1.0: the probe retries uncompressed
            path = self.path.split("?", 1)[0]
            if path == "/report":
                self.collector.count("open")
                meta = check_open(_json(raw))
                report_id = self.collector.open_report(meta)
                self._answer(200, {"backend_version": BACKEND_VERSION, "report_id": report_id,
                                   "supported_formats": ["json"]})
            elif m := _CLOSE.fullmatch(path):
                self.collector.count("close")
                self.collector.close_report(m.group(1))
                self._answer(200, {"status": "success"})
            elif m := _SUBMIT.fullmatch(path):
                self.collector.count("submit")
                if self.collector.take_failure():
                    self._answer(503, {"error": "try again"}, (("Retry-After", "0"),))
                    return
                key = self.headers.get("X-Idempotency-Key")
                receipt, replayed, drop = self.collector.submit(m.group(1), _json(raw), key)
                if drop:
                    self.close_connection = True  # stored, but the probe never hears about it
                    return
                self._answer(200, receipt, (("Idempotent-Replayed", "true"),) if replayed else ())
            else:
                raise BadRequest("not found", 404)
        except BadRequest as exc:
            self.collector.count("rejected")
            self.close_connection = True
            self._answer(exc.status, {"error": str(exc)})

    def do_GET(self) -> None:
        self.close_connection = True
        self._answer(405, {"error": "method not allowed"})


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body is not JSON") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stats", type=Path)
    parser.add_argument("--drop-first-ack", type=int, default=0, metavar="N")
    parser.add_argument("--fail-first", type=int, default=0, metavar="N")
    parser.add_argument("--report-ttl", type=float, metavar="SECONDS")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    args = parser.parse_args(argv)
    collector = Collector(args.out, args.stats, args.drop_first_ack, args.fail_first, args.report_ttl)
    handler = type("BoundHandler", (Handler,), {"collector": collector})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    if args.tls_cert is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = server.server_address[:2]
    print(f"READY {host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared by the collector tests and bench/collector.py: real collector processes, real measurements.

Measurements are the real OONI samples in ../shared/data/ooni/measurements, varied (a fresh ``id``,
times near now, the collector's report id) so that thousands of distinct ones can be submitted.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from netvigil.collector.validate import Rejected, check_envelope, utc_now

REPO = Path(__file__).resolve().parents[2]
REPORT_FIELDS = ("test_name", "test_version", "probe_asn", "probe_cc", "software_name", "software_version",
                 "data_format_version")
TOKEN = "collector-test-token-3f9a"
CLIENT_ADDRESS = "127.77.0.9"  # distinctive: the privacy test greps for it everywhere


def load_bases(dirs: Iterable[Path], max_bytes: int = 256 << 10) -> list[dict[str, Any]]:
    """Every single-measurement JSON file under ``dirs`` that the collector would take (sorted by name)."""
    bases = []
    now = utc_now()
    for directory in dirs:
        for path in sorted(directory.glob("*.json")):
            raw = path.read_bytes()
            if len(raw) > max_bytes:
                continue
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            doc["probe_ip"] = "127.0.0.1"
            try:
                check_envelope(doc, now)
            except Rejected:
                continue
            if all(isinstance(doc.get(f), str) and doc[f] for f in REPORT_FIELDS):
                bases.append(doc)
    return bases


def group_of(doc: dict[str, Any]) -> tuple[str, ...]:
    return tuple(doc[f] for f in REPORT_FIELDS)


def open_body(doc: dict[str, Any]) -> dict[str, Any]:
    return {**{f: doc[f] for f in REPORT_FIELDS}, "format": "json"}


def vary(base: dict[str, Any], i: int, report_id: str) -> dict[str, Any]:
    """A distinct measurement made from a real one: its own id, recent times, filed under ``report_id``."""
    doc = dict(base)
    doc["id"] = str(uuid.UUID(int=(0xC011EC7 << 96) | i))
    doc["measurement_start_time"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - i % 3600))
    doc["test_start_time"] = doc["measurement_start_time"]
    doc["report_id"] = report_id
    return doc


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            *, source: str = CLIENT_ADDRESS, timeout: float = 10.0) -> Answer:
    """One request on its own connection, from ``source`` (a loopback address)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


@dataclass
class CollectorProc:
    """A ``python -m netvigil.collector serve`` process; stdout/stderr go to files (the privacy test reads them)."""

    root: Path
    args: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    outputs: list[Path] = field(default_factory=list)
    token: str | None = TOKEN

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def store_path(self) -> Path:
        return self.root / "store.duckdb"

    def start(self, timeout: float = 30.0) -> CollectorProc:
        token_args = []
        if self.token is not None:
            token_file = self.root / "token"
            token_file.write_text(self.token + "\n")
            token_args = ["--token-file", str(token_file)]
        out, err = self.root / f"stdout.{self.runs}", self.root / f"stderr.{self.runs}"
        self.outputs += [out, err]
        self.runs += 1
        cmd = [sys.executable, "-m", "netvigil.collector", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--store", str(self.store_path), *token_args, *self.args]
        env = {**os.environ, "NETVIGIL_DATA_DIR": str(self.root / "home")}  # no defaults from the real home
        with out.open("wb") as fo, err.open("wb") as fe:
            self.proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=self.root, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = out.read_text()
            if text.startswith("READY"):
                self.port = int(text.split()[1].rsplit(":", 1)[1])
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"collector did not start: {err.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM; returns the exit code (0 expected)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.outputs if p.name.startswith("stderr"))

    def get(self, path: str, token: str | None = TOKEN) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return request(self.port, "GET", path, headers=headers)

    def post(self, path: str, payload: Any, headers: dict[str, str] | None = None) -> Answer:
        return request(self.port, "POST", path, orjson.dumps(payload),
                       {"Content-Type": "application/json", **(headers or {})})

    def open_report(self, doc: dict[str, Any]) -> str:
        answer = self.post("/report", open_body(doc))
        assert answer.status == 200, answer.body
        return answer.json()["report_id"]

    def wait_drained(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stats once the worker has processed every log record."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.get("/api/v1/stats").json()
            if stats["queue_depth"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"worker did not drain: {stats}")
            time.sleep(0.1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def files_containing(roots: Iterable[Path], needle: bytes) -> list[Path]:
    """Every file under ``roots`` (recursively) whose bytes contain ``needle``."""
    hits = []
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        hits += [p for p in paths if needle in p.read_bytes()]
    return hits

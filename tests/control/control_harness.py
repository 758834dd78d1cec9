"""Helpers for the control-helper tests: real processes on loopback, a tiny HTTP client, a silent sentinel.

(A uniquely named module rather than conftest.py, so it cannot clash with other test folders' helpers.)
"""

from __future__ import annotations

import http.client
import json
import select
import signal
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
# The lab-server tests' harness: how to run `python -m netvigil.lab.servers` on a private loopback /24.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab_servers"))
from servers_harness import random_net, subprocess_env, wait_ready  # noqa: E402,F401 - re-exported for the control tests


# lab host numbers (127.a.b.N) -> role
NORMAL, WRONG_HOST, UNTRUSTED, REDIRECT_OUT, REDIRECT_OK = 10, 13, 14, 15, 16
SILENT, HANGING, CLOSED = 60, 61, 70   # must never be reached; accepts but never answers; nothing listens
HTTPS_HELPER = 3
LAB_ASN = 64500  # the lab IP table's ASN for 127.a.b.0/24 (NORMAL has its own /32: LAB_ASN + 1)


@dataclass
class Lab:
    net: str
    ca: Path     # the lab CA (ca.pem)
    root: Path

    def ip(self, n: int) -> str:
        return f"{self.net}.{n}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


def start_lab_servers(spec: dict, tmp: Path) -> subprocess.Popen:
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, "-m", "netvigil.lab.servers", str(spec_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    wait_ready(proc, "lab servers")
    return proc


def helper_argv(host: str, port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "netvigil.control", "serve", "--host", host, "--port", str(port), *flags]


@dataclass
class Helper:
    proc: subprocess.Popen
    url: str                      # http(s)://host:port/
    ssl_context: ssl.SSLContext | None = None
    stdout: str = ""


def start_helper(host: str, *flags: str, tls: tuple[Path, Path] | None = None,
                 ca: Path | None = None) -> Helper:
    """`python -m netvigil.control serve` on host:<free port>; waits for READY."""
    port = free_port(host)
    extra = list(flags)
    if tls is not None:
        extra += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    proc = subprocess.Popen(helper_argv(host, port, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=subprocess_env())
    out = wait_ready(proc, "control helper")
    scheme = "https" if tls else "http"
    ctx = ssl.create_default_context(cafile=str(ca)) if tls and ca else None
    return Helper(proc, f"{scheme}://{host}:{port}/", ctx, out)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def call(helper: Helper, method: str = "POST", path: str = "/", body: bytes | dict | None = None,
         timeout: float = 30.0) -> Reply:
    """One request to the helper over a fresh connection."""
    parts = urlsplit(helper.url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=helper.ssl_context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    try:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def fetch_page(ip: str, port: int, *, tls: bool, ca: Path | None = None) -> tuple[int, bytes]:
    """GET / from a lab web server directly (Host = the IP), to compare with what the helper reports."""
    if tls:
        ctx = ssl.create_default_context(cafile=str(ca))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(ip, port, timeout=10, context=ctx)
    else:
        conn = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        conn.request("GET", "/", headers={"User-Agent": "netvigil-tests"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Sentinel:
    """A listening socket that never accepts: proves whether anyone connected (the kernel queues them)."""

    def __init__(self, ip: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.sock.setblocking(False)

    def connected(self) -> bool:
        ready, _, _ = select.select([self.sock], [], [], 0.2)
        return bool(ready)

    def close(self) -> None:
        self.sock.close()

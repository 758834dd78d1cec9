"""Helpers for the lab-servers tests: start/stop the real process, a spec on loopback, a small HTTP/TLS client.

Only loopback is used; high ports keep the tests runnable without root. (A uniquely named module rather than
conftest.py, so it cannot clash with other test folders' conftest modules.)
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h11

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # the package may not be installed in the venv yet
    sys.path.insert(0, str(SRC))

READY_TIMEOUT = 30.0
DELAY = 0.4  # emulated latency of the delayed web host (.25) and authoritative DNS server (.55)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


def random_net() -> str:
    """A 127.a.b.0/24 prefix unlikely to collide with another test run on this machine."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"


def start_servers(spec: dict, tmp: Path) -> subprocess.Popen:
    """Run `python -m netvigil.lab.servers` on `spec` and wait (bounded) for its READY line."""
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen(
        [sys.executable, "-m", "netvigil.lab.servers", str(spec_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(),
    )
    wait_ready(proc, "servers")
    return proc


def wait_ready(proc: subprocess.Popen, what: str) -> str:
    """Wait (bounded) for the READY line; return everything read from stdout so far."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + READY_TIMEOUT
    out = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            data = os.read(proc.stdout.fileno(), 4096)
            out += data
            if b"READY\n" in out:
                return out.decode()
            if not data:  # EOF: the process is exiting
                proc.wait(5)
                raise AssertionError(f"{what} exited {proc.returncode}: {proc.stderr.read().decode()}")
    proc.kill()
    proc.wait(5)
    raise AssertionError(f"{what} did not print READY within {READY_TIMEOUT} s")


def stop_servers(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


@dataclass
class Lab:
    net: str
    root: Path
    spec: dict
    proc: subprocess.Popen

    def ip(self, n: int) -> str:
        return f"{self.net}.{n}"

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca" / "ca.pem"

    @property
    def state(self) -> Path:
        return self.root / "state"


# host number → web entry (all HTTP on 18080, HTTPS on 18443)
WEB_HOSTS: dict[int, dict] = {
    10: {"names": ["facebook.com", "www.facebook.com"], "site": "facebook"},
    11: {"names": ["www.youtube.com", "youtube.com"], "site": "youtube"},
    12: {"names": ["expired.example"], "site": "news", "behaviour": "expired_cert"},
    13: {"names": ["wronghost.example"], "site": "news", "behaviour": "wrong_host_cert"},
    14: {"names": ["untrusted.example"], "site": "news", "behaviour": "untrusted_cert"},
    15: {"names": ["broken.example"], "site": "news", "behaviour": "broken_redirect"},
    16: {"names": ["loop.example"], "site": "news", "behaviour": "redirect_loop"},
    17: {"names": ["shielded.example"], "site": "news", "behaviour": "cloudflare_challenge"},
    18: {"names": ["moved.example"], "site": "news", "behaviour": "redirect_to:https://www.facebook.com/"},
    19: {"names": ["v.whatsapp.net"], "site": "whatsapp-registration"},
    21: {"names": ["chat.signal.org", "storage.signal.org"], "site": "signal-service"},
    22: {"names": ["meydan.tv", "www.meydan.tv"], "site": "news"},
    23: {"names": ["abs.twimg.com", "pbs.twimg.com"], "site": "twimg"},
}


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: bytes  # empty when the caller only counted bytes
    received: int  # body bytes received

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def http_request(ip: str, port: int, host: str, path: str = "/", *, tls: bool = False, ca: Path | None = None,
                 sni: str | None = None, method: str = "GET", body: bytes = b"", timeout: float = 5.0,
                 keep_body: bool = True) -> Reply:
    """One HTTP/1.1 exchange over a fresh socket; TLS verifies against `ca` with SNI `sni` (default: host)."""
    sock = socket.create_connection((ip, port), timeout=timeout)
    try:
        if tls:
            ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
            sock = ctx.wrap_socket(sock, server_hostname=sni or host)
        conn = h11.Connection(h11.CLIENT)
        headers = [("Host", host), ("Connection", "close"), ("User-Agent", "netvigil-tests")]
        if body or method == "POST":
            headers.append(("Content-Length", str(len(body))))
        sock.sendall(conn.send(h11.Request(method=method, target=path, headers=headers)))
        if body:
            sock.sendall(conn.send(h11.Data(data=body)))
        sock.sendall(conn.send(h11.EndOfMessage()))
        status, resp_headers, chunks, received = 0, {}, [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(256 * 1024))
            elif isinstance(event, h11.Response):
                status = event.status_code
                for k, v in event.headers:
                    resp_headers.setdefault(k.decode().lower(), []).append(v.decode())
            elif isinstance(event, h11.Data):
                received += len(event.data)
                if keep_body:
                    chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return Reply(status, resp_headers, b"".join(chunks), received)
    finally:
        sock.close()

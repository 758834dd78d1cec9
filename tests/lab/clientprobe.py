"""A plain client run INSIDE a lab client namespace: stdlib sockets/ssl/http.client and dnspython only.

Usage: python clientprobe.py '<json op>' -> prints one JSON object. Errors are reported by exception class
name (ConnectionResetError, TimeoutError, ...), which is exactly what the tests assert on: the symptom an
ordinary program sees, not anything the lab says about itself.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit


def _err(exc: BaseException) -> dict:
    name = type(exc).__name__
    if isinstance(exc, socket.timeout):
        name = "TimeoutError"
    return {"error": name, "detail": str(exc)[:300]}


def _ctx(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def resolve(op: dict) -> dict:
    try:
        infos = socket.getaddrinfo(op["name"], 80, socket.AF_INET, socket.SOCK_STREAM)
        return {"addrs": sorted({i[4][0] for i in infos})}
    except socket.gaierror as exc:
        return {"error": "gaierror", "errno": exc.errno, "detail": str(exc)}


def dnsquery(op: dict) -> dict:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    q = dns.message.make_query(op["name"], op.get("qtype", "A"))
    t0 = time.monotonic()
    try:
        r = dns.query.udp(q, op["server"], timeout=op.get("timeout", 2.0))
    except dns.exception.Timeout:
        return {"error": "Timeout", "elapsed": time.monotonic() - t0}
    addrs = sorted(rd.address for rrset in r.answer for rd in rrset if hasattr(rd, "address"))
    return {"rcode": dns.rcode.to_text(r.rcode()), "addrs": addrs, "aa": bool(r.flags & 0x400),
            "elapsed": time.monotonic() - t0}


def connect(op: dict) -> dict:
    t0 = time.monotonic()
    try:
        s = socket.create_connection((op["ip"], op["port"]), timeout=op.get("timeout", 2.0))
        s.close()
        return {"ok": True, "elapsed": time.monotonic() - t0}
    except OSError as exc:
        return {**_err(exc), "elapsed": time.monotonic() - t0}


def send_recv(op: dict) -> dict:
    """Connect, send bytes, read: shows a reset or silence that comes after the handshake."""
    try:
        s = socket.create_connection((op["ip"], op["port"]), timeout=op.get("timeout", 2.0))
    except OSError as exc:
        return {"stage": "connect", **_err(exc)}
    try:
        s.sendall(op["payload"].encode())
        data = s.recv(65536)
        return {"stage": "recv", "ok": True, "data": data[:200].decode("latin-1")}
    except OSError as exc:
        return {"stage": "recv", **_err(exc)}
    finally:
        s.close()


def tls(op: dict) -> dict:
    """TCP connect, then a TLS handshake with `sni` (the stage tells where it failed)."""
    t0 = time.monotonic()
    try:
        raw = socket.create_connection((op["ip"], op.get("port", 443)), timeout=op.get("timeout", 2.0))
    except OSError as exc:
        return {"stage": "connect", **_err(exc)}
    try:
        s = _ctx(op.get("verify", True)).wrap_socket(raw, server_hostname=op["sni"])
        version = s.version()
        s.close()
        return {"stage": "handshake", "ok": True, "version": version, "elapsed": time.monotonic() - t0}
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        return {"stage": "handshake", **_err(exc), "elapsed": time.monotonic() - t0}


def http_get(op: dict) -> dict:
    """One HTTP(S) GET to `ip` with Host `host` (no redirects followed); `wait` is request sent → response head."""
    scheme = op.get("scheme", "http")
    t0 = time.monotonic()
    try:
        if scheme == "https":
            raw = socket.create_connection((op["ip"], op.get("port", 443)), timeout=op.get("timeout", 2.0))
            conn = http.client.HTTPSConnection(op["host"], timeout=op.get("timeout", 2.0))
            conn.sock = _ctx(op.get("verify", True)).wrap_socket(raw, server_hostname=op["host"])
        else:
            conn = http.client.HTTPConnection(op["ip"], op.get("port", 80), timeout=op.get("timeout", 2.0))
        if conn.sock is None:
            conn.connect()  # here, so that `wait` leaves the handshakes out
        sent = time.monotonic()
        conn.request("GET", op.get("path", "/"), headers={"Host": op["host"], "User-Agent": "netvigil-test"})
        r = conn.getresponse()
        wait = time.monotonic() - sent
        body = r.read()
        return {"status": r.status, "headers": dict(r.getheaders()), "body": body[:4000].decode("utf-8", "replace"),
                "length": len(body), "wait": wait, "elapsed": time.monotonic() - t0}
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return _err(exc)


def download(op: dict) -> dict:
    """Stream from a largefile server over TLS with `sni` for `seconds`; report bytes/s after the handshake."""
    try:
        raw = socket.create_connection((op["ip"], 443), timeout=5)
        s = _ctx(False).wrap_socket(raw, server_hostname=op["sni"])
        s.sendall(f"GET / HTTP/1.1\r\nHost: {op['sni']}\r\nConnection: close\r\n\r\n".encode())
        total, t0 = 0, time.monotonic()
        deadline = t0 + op.get("seconds", 3.0)
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            total += len(chunk)
        elapsed = time.monotonic() - t0
        s.close()
        return {"bytes": total, "seconds": elapsed, "bps": total * 8 / elapsed}
    except (OSError, ssl.SSLError) as exc:
        return _err(exc)


def control(op: dict) -> dict:
    """POST a Web Connectivity control request for `url` to the helper at `helper` (its name resolved by the
    system resolver, as a probe does); returns the HTTP status and the decoded answer."""
    helper = urlsplit(op["helper"])
    timeout = op.get("timeout", 15.0)
    request = {"http_request": op["url"], "tcp_connect": op.get("tcp_connect", []),
               "http_request_headers": {"User-Agent": ["netvigil-test"], "Accept": ["text/html"]}}
    t0 = time.monotonic()
    try:
        if helper.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                helper.hostname, helper.port or 443, timeout=timeout, context=_ctx(op.get("verify", True)))
        else:
            conn = http.client.HTTPConnection(helper.hostname, helper.port or 80, timeout=timeout)
        conn.request("POST", helper.path or "/", body=json.dumps(request).encode(),
                     headers={"Content-Type": "application/json", "User-Agent": "netvigil-test"})
        r = conn.getresponse()
        body = r.read()
        conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return {**_err(exc), "elapsed": time.monotonic() - t0}
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    return {"status": r.status, "answer": answer, "elapsed": time.monotonic() - t0}


OPS = {"resolve": resolve, "dnsquery": dnsquery, "connect": connect, "send_recv": send_recv, "tls": tls,
       "http": http_get, "download": download, "control": control}

if __name__ == "__main__":
    op = json.loads(sys.argv[1])
    print(json.dumps(OPS[op.pop("op")](op)))

"""netvigil.probe.netx against real servers on loopback: the lab servers (`python -m netvigil.lab.servers`)
on a random 127.a.b.0/24, plus small asyncio servers started by the tests themselves (DoH, echo, silent,
misbehaving HTTP). Nothing leaves loopback: the one getaddrinfo that would ask the system's DNS server runs
in a mount namespace whose resolv.conf names the lab's authoritative server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import random
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.resolver
import h11
import msgspec
import pytest
from cryptography import x509

from netvigil.analysis import make_observations
from netvigil.analysis.observations.common import binary_bytes, read_stats
from netvigil.codec import decode_measurement
from netvigil.lab.servers.ca import issue_leaf, make_ca
from netvigil.lab.servers.largefile import content_at
from netvigil.model.archival import ArchivalBinaryData, WebConnectivityTestKeys
from netvigil.model.failure import Failure
from netvigil.probe.netx import (
    DEFAULT_HEADERS,
    CookieJar,
    DNSResponseError,
    NetxError,
    TLSConfig,
    Trace,
    connect,
    failure_of,
    fetch,
    getaddrinfo,
    http_request,
    lookup_doh,
    lookup_udp,
    tls_handshake,
)

SRC = Path(__file__).resolve().parents[2] / "src"
HTTP, HTTPS, DNS_PORT, DOH_PORT = 18080, 18443, 15353, 18453
VOCABULARY = {f.value for f in Failure}


# ---------------------------------------------------------------------------------------------- the lab


@dataclass
class Lab:
    net: str
    root: Path
    proc: subprocess.Popen
    system_dns: bool  # an authoritative server on <net>.55:53, for getaddrinfo in a mount namespace

    def ip(self, n: int) -> str:
        return f"{self.net}.{n}"

    @property
    def ca(self) -> str:
        return str(self.root / "ca" / "ca.pem")

    @property
    def resolver(self) -> str:
        return f"{self.net}.53:{DNS_PORT}"

    @property
    def tls(self) -> TLSConfig:
        return TLSConfig(ca_file=self.ca)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("netx")
    rng = random.SystemRandom()
    net = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"
    system_dns = os.geteuid() == 0  # port 53
    web = {
        10: {"names": ["facebook.com", "www.facebook.com"], "site": "facebook"},
        12: {"names": ["expired.example"], "site": "news", "behaviour": "expired_cert"},
        13: {"names": ["wronghost.example"], "site": "news", "behaviour": "wrong_host_cert"},
        14: {"names": ["untrusted.example"], "site": "news", "behaviour": "untrusted_cert"},
        15: {"names": ["broken.example"], "site": "news", "behaviour": "broken_redirect"},
        16: {"names": ["loop.example"], "site": "news", "behaviour": "redirect_loop"},
        18: {"names": ["moved.example"], "site": "news",
             "behaviour": f"redirect_to:https://www.facebook.com:{HTTPS}/"},
    }
    spec = {
        "state_dir": str(root / "state"),
        "ca_dir": str(root / "ca"),
        "zones": {
            "facebook.com": [f"{net}.10"], "www.facebook.com": [f"{net}.10"],
            "expired.example": [f"{net}.12"], "wronghost.example": [f"{net}.13"],
            "untrusted.example": [f"{net}.14"], "broken.example": [f"{net}.15"], "loop.example": [f"{net}.16"],
            "moved.example": [f"{net}.18"], "largefile.example": [f"{net}.40"], "doh.example": [f"{net}.60"],
            "dual.example": [f"{net}.10", "2001:db8::10"],
            "big.example": [f"{net}.{190 + i}" for i in range(60)],  # too big for a 512-byte UDP answer
            "a.zone.example": [f"{net}.10"],  # so zone.example exists without records: NODATA
        },
        "dns": [{"bind": f"{net}.53", "role": "authoritative", "port": DNS_PORT}]
        + ([{"bind": f"{net}.55", "role": "authoritative", "port": 53}] if system_dns else []),
        "web": [{"bind": f"{net}.{n}", "http_port": HTTP, "https_port": HTTPS, "http_mode": "serve", **w}
                for n, w in web.items()],
        "largefile": [{"bind": f"{net}.40", "names": ["largefile.example"], "http_port": HTTP,
                       "https_port": None, "size": 400_000}],
    }
    (root / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, "-m", "netvigil.lab.servers", str(root / "spec.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert proc.stdout is not None and proc.stderr is not None
    out, deadline = b"", time.monotonic() + 30
    while b"READY\n" not in out:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("lab servers did not start within 30 s")
        if select.select([proc.stdout], [], [], 0.1)[0]:
            data = os.read(proc.stdout.fileno(), 4096)
            if not data:
                proc.wait(5)
                pytest.fail(f"lab servers exited {proc.returncode}: {proc.stderr.read().decode()}")
            out += data
    yield Lab(net, root, proc, system_dns)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    finally:
        proc.stdout.close()
        proc.stderr.close()


def run(coro_fn: Callable[[], Awaitable[object]], timeout: float = 20.0) -> object:
    """Run one test coroutine; afterwards no task may be left and no file descriptor may leak."""
    fds_before = len(os.listdir("/proc/self/fd"))

    async def main() -> object:
        async with asyncio.timeout(timeout):
            result = await coro_fn()
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, f"tasks left running: {left}"
        return result

    result = asyncio.run(main())
    assert len(os.listdir("/proc/self/fd")) <= fds_before, "a socket was left open"
    return result


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def failures(items: list) -> list[str | None]:
    return [getattr(i, "failure", None) if not hasattr(i, "status") else i.status.failure for i in items]


# ------------------------------------------------------------------------------------ small test servers


@contextlib.asynccontextmanager
async def serving(handler: Callable, host: str, port: int = 0, ssl_ctx: ssl.SSLContext | None = None
                  ) -> AsyncIterator[int]:
    """An asyncio server for one test; yields its port; handlers are cut off when it stops."""
    tasks: set[asyncio.Task] = set()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            async with asyncio.timeout(10):
                await handler(reader, writer)
        except (Exception, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(on_conn, host, port, ssl=ssl_ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()


async def h11_serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    respond: Callable[[h11.Request, bytes], Awaitable[tuple[int, list, bytes]]]) -> None:
    """A keep-alive HTTP/1.1 server loop: `respond(request, body) -> (status, headers, body)`."""
    conn = h11.Connection(h11.SERVER)
    while True:
        request, body = None, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                return
        status, headers, payload = await respond(request, body)
        headers = [*headers, ("Content-Length", str(len(payload)))]
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        writer.write(conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        if conn.our_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


def doh_app(lab: Lab, seen: list[str]) -> Callable:
    """DoH endpoint (forwarding to the lab authoritative server) plus two cookie pages."""
    upstream = lab.ip(53)

    async def respond(request: h11.Request, body: bytes) -> tuple[int, list, bytes]:
        target = request.target.decode()
        seen.append(f"{request.method.decode()} {target}")
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        if target == "/dns-query" and request.method == b"POST":
            if headers.get("content-type") != "application/dns-message":
                return 415, [], b""
            query = dns.message.from_wire(body)
            reply = await dns.asyncquery.udp(query, upstream, port=DNS_PORT, timeout=3)
            return 200, [("Content-Type", "application/dns-message")], reply.to_wire()
        if target == "/broken-doh":
            return 500, [("Content-Type", "text/plain")], b"upstream down"
        if target == "/set-cookie":
            return 302, [("Location", "/echo-cookie"), ("Set-Cookie", "nvtest=chocolate; Path=/")], b""
        if target.startswith("/redirect?to="):
            return 302, [("Location", target.removeprefix("/redirect?to="))], b""
        if target == "/echo-cookie":
            return 200, [("Content-Type", "text/plain")], headers.get("cookie", "no cookie").encode()
        return 404, [], b""

    return lambda reader, writer: h11_serve(reader, writer, respond)


def doh_context(lab: Lab) -> ssl.SSLContext:
    leaf = issue_leaf(make_ca(lab.root / "ca"), ["doh.example"], lab.root / "doh-certs")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.cert, leaf.key)
    return ctx


# ------------------------------------------------------------------------------------------ failure_of


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code = code
    return exc


@pytest.mark.parametrize("exc, expected", [
    (TimeoutError(), "generic_timeout_error"),
    (asyncio.TimeoutError(), "generic_timeout_error"),
    (socket.timeout("timed out"), "generic_timeout_error"),
    (dns.exception.Timeout(), "generic_timeout_error"),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "connection_reset"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection_refused"),
    (EOFError(), "eof_error"),
    (asyncio.IncompleteReadError(b"ab", 10), "eof_error"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "eof_error"),
    (ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"), "eof_error"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "host_unreachable"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "network_unreachable"),
    (_verify_error(10), "ssl_invalid_certificate"),
    (_verify_error(9), "ssl_invalid_certificate"),
    (_verify_error(62), "ssl_invalid_hostname"),
    (_verify_error(18), "ssl_unknown_authority"),
    (_verify_error(19), "ssl_unknown_authority"),
    (_verify_error(20), "ssl_unknown_authority"),
    (_verify_error(21), "ssl_unknown_authority"),
    (ssl.SSLError(1, "[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure"), "ssl_failed_handshake"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns_nxdomain_error"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "dns_temporary_failure"),
    (socket.gaierror(socket.EAI_NODATA, "No address associated with hostname"), "dns_no_answer"),
    (dns.resolver.NXDOMAIN(), "dns_nxdomain_error"),
    (dns.resolver.NoAnswer(), "dns_no_answer"),
    (DNSResponseError(dns.rcode.SERVFAIL), "dns_server_misbehaving"),
    (DNSResponseError(dns.rcode.REFUSED), "dns_refused_error"),
    (DNSResponseError(dns.rcode.NXDOMAIN), "dns_nxdomain_error"),
    (DNSResponseError(dns.rcode.NOERROR, "AAAA"), "dns_no_answer"),
    (NetxError("connection_reset"), "connection_reset"),
])
def test_failure_of_maps_to_ooni_strings(exc: BaseException, expected: str) -> None:
    assert failure_of(exc) == expected
    assert expected in VOCABULARY


def test_failure_of_anything_else_is_unknown_failure_with_text() -> None:
    assert failure_of(ValueError("weird thing")) == "unknown_failure: weird thing"
    assert failure_of(RuntimeError()) == "unknown_failure: RuntimeError"
    # a TLS error after the handshake is not a failed handshake
    assert failure_of(ssl.SSLError(1, "bad record mac"), operation="read").startswith("unknown_failure: ")
    # asyncio's errno-less reset is a FIN during the handshake; a kernel reset stays a reset
    assert failure_of(ConnectionResetError(), operation="handshake") == "eof_error"
    assert failure_of(ConnectionResetError(errno.ECONNRESET, "reset"), operation="handshake") == "connection_reset"


# ------------------------------------------------------------------------------------------------- DNS


def test_getaddrinfo_localhost() -> None:
    trace = Trace()
    ips = run(lambda: getaddrinfo(trace, "localhost", timeout=5))
    assert "127.0.0.1" in ips
    [q] = trace.queries
    assert (q.engine, q.query_type, q.hostname, q.failure) == ("getaddrinfo", "ANY", "localhost", None)
    assert {"A"} <= {a.answer_type for a in q.answers}
    assert all((a.ipv4 if a.answer_type == "A" else a.ipv6) in ips for a in q.answers)
    assert 0 <= q.t0 <= q.t and q.transaction_id == 1


_GAI_CHILD = """
import asyncio, json, msgspec, sys
from netvigil.probe.netx import NetxError, Trace, getaddrinfo
async def main():
    trace = Trace()
    out = {}
    for name in sys.argv[1:]:
        try:
            out[name] = await getaddrinfo(trace, name, timeout=5)
        except NetxError as exc:
            out[name] = exc.failure
    return out, msgspec.to_builtins(trace.queries)
print(json.dumps(asyncio.run(main())))
"""


def test_getaddrinfo_nonexistent_name_is_nxdomain(lab: Lab, tmp_path: Path) -> None:
    """The system resolver, pointed (in a private mount namespace) at the lab's authoritative server."""
    if not lab.system_dns or shutil.which("unshare") is None:
        pytest.skip("needs root (DNS on port 53 and a mount namespace)")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {lab.ip(55)}\noptions timeout:2 attempts:1\n")
    script = tmp_path / "gai.py"
    script.write_text(_GAI_CHILD)
    cmd = f'mount --bind {resolv} /etc/resolv.conf && exec "$0" "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", cmd, sys.executable, str(script), "nonexistent.invalid", "facebook.com"],
        capture_output=True, text=True, timeout=30, env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    results, queries = json.loads(proc.stdout)
    assert results == {"nonexistent.invalid": "dns_nxdomain_error", "facebook.com": [lab.ip(10)]}
    assert [q["failure"] if "failure" in q else None for q in queries] == ["dns_nxdomain_error", None]
    assert queries[0]["engine"] == "getaddrinfo" and queries[0]["query_type"] == "ANY"
    assert "answers" not in queries[0]
    assert queries[1]["answers"] == [{"answer_type": "A", "ipv4": lab.ip(10)}]


def test_udp_lookup_answers_and_nodata_for_the_missing_family(lab: Lab) -> None:
    trace = Trace()
    ips = run(lambda: lookup_udp(trace, "facebook.com", lab.resolver))
    assert ips == [lab.ip(10)]
    a, aaaa = sorted(trace.queries, key=lambda q: q.query_type)
    assert (a.query_type, a.failure, a.engine) == ("A", None, "udp")
    assert a.resolver_address == lab.resolver and a.hostname == "facebook.com"
    assert [(x.answer_type, x.ipv4, x.ttl) for x in a.answers] == [("A", lab.ip(10), 300)]
    assert (aaaa.query_type, aaaa.failure, aaaa.answers) == ("AAAA", "dns_no_answer", None)
    assert a.transaction_id == aaaa.transaction_id == 1


def test_udp_lookup_both_families(lab: Lab) -> None:
    trace = Trace()
    ips = run(lambda: lookup_udp(trace, "dual.example", lab.resolver))
    assert ips == [lab.ip(10), "2001:db8::10"]
    answers = {q.query_type: q.answers for q in trace.queries}
    assert answers["AAAA"][0].answer_type == "AAAA" and answers["AAAA"][0].ipv6 == "2001:db8::10"


def test_udp_lookup_nxdomain(lab: Lab) -> None:
    trace = Trace()
    with pytest.raises(NetxError) as err:
        run(lambda: lookup_udp(trace, "nonexistent.invalid", lab.resolver))
    assert err.value.failure == "dns_nxdomain_error"
    assert sorted(q.query_type for q in trace.queries) == ["A", "AAAA"]
    assert failures(trace.queries) == ["dns_nxdomain_error"] * 2


def test_udp_lookup_nodata(lab: Lab) -> None:
    trace = Trace()
    with pytest.raises(NetxError) as err:
        run(lambda: lookup_udp(trace, "zone.example", lab.resolver, qtypes=("A",)))
    assert err.value.failure == "dns_no_answer"
    assert failures(trace.queries) == ["dns_no_answer"]


def test_udp_lookup_truncated_answer_is_retried_over_tcp(lab: Lab) -> None:
    trace = Trace()
    ips = run(lambda: lookup_udp(trace, "big.example", lab.resolver, qtypes=("A",)))
    assert len(ips) == 60 and len(trace.queries[0].answers) == 60


def test_resolver_addresses() -> None:
    from netvigil.probe.netx.dns import parse_resolver

    assert parse_resolver("192.0.2.53") == ("192.0.2.53", 53)
    assert parse_resolver("192.0.2.53:5353") == ("192.0.2.53", 5353)
    assert parse_resolver("2001:db8::53") == ("2001:db8::53", 53)
    assert parse_resolver("[2001:db8::53]:853") == ("2001:db8::53", 853)
    for bad in ("dns.example", "192.0.2.53:dns", "192.0.2.53:0", "[2001:db8::53]x", ""):
        with pytest.raises(ValueError, match="resolver"):
            parse_resolver(bad)


def test_udp_lookup_silent_server_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        trace = Trace()
        start = time.monotonic()
        with pytest.raises(NetxError) as err:
            run(lambda: lookup_udp(trace, "facebook.com", f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.3))
        assert time.monotonic() - start < 3
    assert err.value.failure == "generic_timeout_error"
    assert failures(trace.queries) == ["generic_timeout_error"] * 2


def test_doh_lookup_over_traced_https(lab: Lab) -> None:
    trace, seen = Trace(), []
    ctx = doh_context(lab)

    async def go() -> tuple:
        async with serving(doh_app(lab, seen), lab.ip(60), DOH_PORT, ctx):
            url = f"https://doh.example:{DOH_PORT}/dns-query"
            ips = await lookup_doh(trace, "www.facebook.com", url, tls=lab.tls,
                                   resolve=lambda h: lookup_udp(trace, h, lab.resolver, qtypes=("A",)))
            with pytest.raises(NetxError) as err:
                await lookup_doh(trace, "nonexistent.invalid", url, tls=lab.tls, qtypes=("A",),
                                 resolve=lambda h: lookup_udp(trace, h, lab.resolver, qtypes=("A",)))
            with pytest.raises(NetxError) as broken:
                await lookup_doh(trace, "www.facebook.com", f"https://{lab.ip(60)}:{DOH_PORT}/broken-doh",
                                 tls=TLSConfig(ca_file=lab.ca, verify=False), qtypes=("A",))
            return ips, err.value.failure, broken.value.failure

    ips, nx, broken = run(go)
    assert ips == [lab.ip(10)]
    assert nx == "dns_nxdomain_error" and broken == "http_unexpected_status_code"
    doh = [q for q in trace.queries if q.engine == "doh"]
    assert [(q.hostname, q.query_type, q.failure) for q in doh] == [
        ("www.facebook.com", "A", None), ("www.facebook.com", "AAAA", "dns_no_answer"),
        ("nonexistent.invalid", "A", "dns_nxdomain_error"), ("www.facebook.com", "A", "http_unexpected_status_code"),
    ]
    assert doh[0].resolver_address == f"https://doh.example:{DOH_PORT}/dns-query"
    assert doh[0].answers[0].ipv4 == lab.ip(10) and doh[0].answers[0].ttl == 300
    first = doh[0].transaction_id
    # both qtypes went over one connection, and the whole flow shares the lookup's transaction id
    assert [c.ip for c in trace.tcp_connect if c.transaction_id == first] == [lab.ip(60)]
    assert [h.server_name for h in trace.tls_handshakes if h.transaction_id == first] == ["doh.example"]
    posts = [r for r in trace.requests if r.transaction_id == first]
    assert len(posts) == 2 and seen[:2] == ["POST /dns-query"] * 2
    assert posts[0].request.method == "POST" and posts[0].request.headers["Content-Type"] == "application/dns-message"
    assert posts[0].request.headers["Host"] == f"doh.example:{DOH_PORT}"
    wire = binary_bytes(posts[0].request.body)  # valid UTF-8 here, so stored as text (as OONI does)
    assert dns.message.from_wire(wire).id == 0  # RFC 8484: id 0
    assert posts[0].response.code == 200
    assert any(q.engine == "udp" and q.hostname == "doh.example" for q in trace.queries)


# ------------------------------------------------------------------------------------------------- TCP


def test_connect_refused() -> None:
    port = free_port()
    trace = Trace()
    with pytest.raises(NetxError) as err:
        run(lambda: connect(trace, "127.0.0.1", port, timeout=2))
    assert err.value.failure == "connection_refused"
    [c] = trace.tcp_connect
    assert (c.ip, c.port, c.status.success, c.status.blocked, c.status.failure) == (
        "127.0.0.1", port, False, False, "connection_refused")
    [ev] = trace.network_events
    assert (ev.operation, ev.proto, ev.address, ev.failure) == ("connect", "tcp", f"127.0.0.1:{port}",
                                                                "connection_refused")


def test_connect_reads_and_writes_are_traced_exactly() -> None:
    trace = Trace()
    payload = os.urandom(300_000)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def go() -> bytes:
        async with serving(echo, "127.0.0.1") as port:
            conn = await connect(trace, "127.0.0.1", port, timeout=2)
            async with conn:
                await conn.write(payload, timeout=5)
                got = b""
                while len(got) < len(payload):
                    got += await conn.read(timeout=5)
            return got

    assert run(go) == payload
    [c] = trace.tcp_connect
    assert c.status.success is True and c.status.failure is None and c.status.blocked is False
    reads = [e for e in trace.network_events if e.operation == "read"]
    writes = [e for e in trace.network_events if e.operation == "write"]
    assert sum(e.num_bytes for e in reads) == len(payload) and len(reads) >= 2
    assert [e.num_bytes for e in writes] == [len(payload)]
    assert all(e.transaction_id == c.transaction_id and e.proto == "tcp" for e in reads + writes)
    assert all(e.t0 <= e.t for e in reads) and [e.t0 for e in reads] == sorted(e.t0 for e in reads)
    assert read_stats(trace.network_events)[c.transaction_id][0] == len(payload)


def test_ipv6_endpoints_are_bracketed() -> None:
    try:
        port = free_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    trace = Trace()

    async def go() -> str:
        async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hi")
            await writer.drain()

        async with serving(hello, "::1", port):
            async with await connect(trace, "::1", port, timeout=2) as conn:
                await conn.read(timeout=2)
                return conn.address

    assert run(go) == f"[::1]:{port}"
    assert trace.tcp_connect[0].ip == "::1"
    assert {e.address for e in trace.network_events} == {f"[::1]:{port}"}


# ------------------------------------------------------------------------------------------------- TLS


def test_tls_handshake_success_records_the_chain(lab: Lab) -> None:
    trace = Trace()

    async def go() -> None:
        conn = await connect(trace, lab.ip(10), HTTPS, timeout=2)
        async with conn:
            await tls_handshake(trace, conn, "www.facebook.com", tls=lab.tls, timeout=5)
            assert conn.tls and conn.alpn == "http/1.1"

    run(go)
    [h] = trace.tls_handshakes
    assert h.failure is None and h.no_tls_verify is False
    assert h.server_name == "www.facebook.com" and h.address == f"{lab.ip(10)}:{HTTPS}"
    assert h.tls_version in ("TLSv1.3", "TLSv1.2") and h.cipher_suite and h.negotiated_protocol == "http/1.1"
    assert h.transaction_id == trace.tcp_connect[0].transaction_id and h.t0 <= h.t
    certs = [x509.load_der_x509_certificate(base64.b64decode(c.data)) for c in h.peer_certificates]
    assert all(c.format == "base64" for c in h.peer_certificates)
    names = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert "www.facebook.com" in names
    lab_ca = x509.load_pem_x509_certificate(Path(lab.ca).read_bytes())
    assert certs[0].issuer == lab_ca.subject


@pytest.mark.parametrize("host, n, failure", [
    ("expired.example", 12, "ssl_invalid_certificate"),
    ("wronghost.example", 13, "ssl_invalid_hostname"),
    ("untrusted.example", 14, "ssl_unknown_authority"),
])
def test_tls_handshake_failures(lab: Lab, host: str, n: int, failure: str) -> None:
    trace = Trace()

    async def go() -> None:
        conn = await connect(trace, lab.ip(n), HTTPS, timeout=2)
        try:
            with pytest.raises(NetxError) as err:
                await tls_handshake(trace, conn, host, tls=lab.tls, timeout=5)
            assert err.value.failure == failure
            assert conn.closed
        finally:
            await conn.close()

    run(go)
    [h] = trace.tls_handshakes
    assert (h.failure, h.server_name, h.no_tls_verify, h.tls_version) == (failure, host, False, None)
    # the certificate that failed is evidence: it is recorded
    assert h.peer_certificates, "the rejected chain should be recorded"
    leaf = x509.load_der_x509_certificate(base64.b64decode(h.peer_certificates[0].data))
    assert leaf.subject.rfc4514_string()


def test_tls_without_verification_accepts_a_bad_certificate(lab: Lab) -> None:
    trace = Trace()

    async def go() -> None:
        async with await connect(trace, lab.ip(12), HTTPS, timeout=2) as conn:
            await tls_handshake(trace, conn, "expired.example", tls=TLSConfig(ca_file=lab.ca, verify=False))

    run(go)
    [h] = trace.tls_handshakes
    assert h.failure is None and h.no_tls_verify is True and h.peer_certificates


def test_tls_handshake_timeout_against_a_silent_server() -> None:
    trace = Trace()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the ClientHello

    async def go() -> None:
        async with serving(silent, "127.0.0.1") as port:
            conn = await connect(trace, "127.0.0.1", port, timeout=2)
            start = time.monotonic()
            with pytest.raises(NetxError) as err:
                await tls_handshake(trace, conn, "example.org", tls=TLSConfig(), timeout=0.3)
            assert time.monotonic() - start < 2.0  # the timeout, not a wait for a close that never comes
            assert err.value.failure == "generic_timeout_error" and conn.closed

    run(go)
    assert failures(trace.tls_handshakes) == ["generic_timeout_error"]


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rst: bool) -> None:
    await reader.read(1)  # the ClientHello has arrived
    if rst:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


@pytest.mark.parametrize("rst, failure", [(False, "eof_error"), (True, "connection_reset")])
def test_tls_handshake_cut_by_the_peer(rst: bool, failure: str) -> None:
    """A FIN in mid-handshake is eof_error and a RST connection_reset: censors differ in which they send."""
    trace = Trace()

    async def go() -> None:
        async with serving(lambda r, w: _hang_up(r, w, rst), "127.0.0.1") as port:
            conn = await connect(trace, "127.0.0.1", port, timeout=2)
            with pytest.raises(NetxError) as err:
                await tls_handshake(trace, conn, "example.org", tls=TLSConfig(), timeout=3)
            assert err.value.failure == failure and conn.closed

    run(go)
    assert failures(trace.tls_handshakes) == [failure]
    assert trace.tls_handshakes[0].peer_certificates is None


def test_concurrent_handshakes_keep_their_own_chains(lab: Lab) -> None:
    trace = Trace()

    async def one(n: int, host: str) -> None:
        conn = await connect(trace, lab.ip(n), HTTPS, timeout=2)
        try:
            await tls_handshake(trace, conn, host, tls=lab.tls, timeout=5)
        except NetxError:
            pass
        finally:
            await conn.close()

    run(lambda: asyncio.gather(*(one(n, h) for n, h in [(10, "facebook.com"), (12, "expired.example"),
                                                          (14, "untrusted.example")] * 3)))
    assert len(trace.tls_handshakes) == 9
    for h in trace.tls_handshakes:
        leaf = x509.load_der_x509_certificate(base64.b64decode(h.peer_certificates[0].data))
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert h.server_name in sans.get_values_for_type(x509.DNSName)
        assert (h.failure is None) == (h.server_name == "facebook.com")


# ------------------------------------------------------------------------------------------------ HTTP


def lab_resolver(trace: Trace, lab: Lab) -> Callable[[str], Awaitable[list[str]]]:
    return lambda host: lookup_udp(trace, host, lab.resolver, qtypes=("A",))


def test_fetch_follows_redirects_and_carries_cookies(lab: Lab) -> None:
    trace = Trace()
    jar = CookieJar()

    async def go() -> tuple:
        first = await fetch(trace, f"http://moved.example:{HTTP}/", resolve=lab_resolver(trace, lab),
                            tls=lab.tls, cookies=jar)
        again = await fetch(trace, f"https://www.facebook.com:{HTTPS}/robots.txt", resolve=lab_resolver(trace, lab),
                            tls=lab.tls, cookies=jar)
        return first, again

    first, again = run(go)
    assert [r.status for r in first] == [302, 200]
    assert first[0].header("Location") == f"https://www.facebook.com:{HTTPS}/"
    assert first[1].url == f"https://www.facebook.com:{HTTPS}/"
    assert b"<title>" in first[1].body and not first[1].truncated
    assert {c.name for c in jar} >= {"fr", "sb"}
    # archived newest first; the request of the second fetch carried the cookies the first one was given
    requests = trace.test_keys()["requests"]
    assert [r.request.url for r in requests] == [
        f"https://www.facebook.com:{HTTPS}/robots.txt", f"https://www.facebook.com:{HTTPS}/",
        f"http://moved.example:{HTTP}/"]
    sent_cookie = requests[0].request.headers.get("Cookie", "")
    assert "fr=" in sent_cookie and "sb=" in sent_cookie
    assert "Cookie" not in requests[2].request.headers
    hop = requests[1]
    assert hop.response.code == 200 and hop.request.headers["Host"] == f"www.facebook.com:{HTTPS}"
    assert [k for k, _ in hop.request.headers_list][:4] == ["Host", "User-Agent", "Accept", "Accept-Language"]
    assert hop.request.headers["User-Agent"] == dict(DEFAULT_HEADERS)["User-Agent"]
    assert isinstance(hop.response.body, str) and "<title>" in hop.response.body
    assert hop.alpn == "http/1.1" and hop.address == f"{lab.ip(10)}:{HTTPS}"
    # each hop is one flow: its connect, handshake and request share the transaction id
    tls_ids = {h.transaction_id for h in trace.tls_handshakes}
    assert hop.transaction_id in tls_ids
    assert hop.transaction_id in {c.transaction_id for c in trace.tcp_connect}


def test_fetch_carries_a_cookie_set_by_a_redirect(lab: Lab) -> None:
    trace, seen = Trace(), []

    async def go() -> tuple[list, list]:
        async with serving(doh_app(lab, seen), lab.ip(60), DOH_PORT, doh_context(lab)):
            url = f"https://doh.example:{DOH_PORT}/set-cookie"
            plain = await fetch(trace, url, tls=lab.tls, resolve=lab_resolver(trace, lab))
            mine = await fetch(trace, url, tls=lab.tls, resolve=lab_resolver(trace, lab),
                               headers=[*DEFAULT_HEADERS, ("Cookie", "mine=1")])
            return plain, mine

    chain, mine = run(go)
    assert [r.status for r in chain] == [302, 200]
    assert chain[1].body == b"nvtest=chocolate"
    assert "Cookie" not in trace.requests[0].request.headers
    assert trace.requests[1].request.headers["Cookie"] == "nvtest=chocolate"
    assert mine[1].body == b"mine=1; nvtest=chocolate"  # the caller's cookie is kept, the jar's added


def test_fetch_tries_addresses_in_order(lab: Lab) -> None:
    trace = Trace()

    async def resolve(host: str) -> list[str]:
        return [lab.ip(99), lab.ip(10)]  # nothing listens on .99

    chain = run(lambda: fetch(trace, f"http://facebook.com:{HTTP}/", resolve=resolve, tls=lab.tls))
    assert chain[-1].status == 200
    assert [(c.ip, c.status.failure) for c in trace.tcp_connect] == [
        (lab.ip(99), "connection_refused"), (lab.ip(10), None)]
    assert len({c.transaction_id for c in trace.tcp_connect}) == 1


def test_fetch_broken_redirect(lab: Lab) -> None:
    trace = Trace()
    with pytest.raises(NetxError) as err:
        run(lambda: fetch(trace, f"http://broken.example:{HTTP}/", resolve=lab_resolver(trace, lab), tls=lab.tls))
    assert err.value.failure == "http_invalid_redirect_location_host"
    assert [r.status for r in err.value.responses] == [302]
    assert err.value.responses[0].header("location") == "http:///"


@pytest.mark.parametrize("location, failure", [
    ("http://doh.example:abc/", "http_invalid_redirect_location_host"),
    ("https:", "http_invalid_redirect_location_host"),
    ("//", "http_invalid_redirect_location_host"),
    ("ftp://doh.example/file", "unknown_failure: redirect to unsupported scheme 'ftp'"),
])
def test_fetch_unusable_locations(lab: Lab, location: str, failure: str) -> None:
    trace = Trace()

    async def go() -> NetxError:
        async with serving(doh_app(lab, []), lab.ip(60), DOH_PORT, doh_context(lab)):
            for limit in (10, 0):  # reported as unusable even where the redirect limit is reached
                with pytest.raises(NetxError) as err:
                    await fetch(trace, f"https://doh.example:{DOH_PORT}/redirect?to={location}", tls=lab.tls,
                                resolve=lab_resolver(trace, lab), max_redirects=limit)
                assert err.value.failure == failure and len(err.value.responses) == 1
        return err.value

    run(go)


def test_fetch_rejects_a_bad_url_before_any_io() -> None:
    trace = Trace()
    for url in ("ftp://example.org/", "http:///nohost", "http://example.org:http/"):
        with pytest.raises(ValueError, match="fetch needs"):
            run(lambda: fetch(trace, url))
    assert trace.test_keys() == {k: [] for k in ("queries", "tcp_connect", "tls_handshakes", "requests",
                                                 "network_events")}


def test_fetch_redirect_loop_stops_at_max_redirects(lab: Lab) -> None:
    trace = Trace()
    with pytest.raises(NetxError) as err:
        run(lambda: fetch(trace, f"http://loop.example:{HTTP}/", resolve=lab_resolver(trace, lab), tls=lab.tls,
                          max_redirects=10))
    assert err.value.failure == "http_too_many_redirects"
    assert len(err.value.responses) == 11 and len(trace.requests) == 11
    assert trace.requests[-1].request.url == f"http://loop.example:{HTTP}/loop/10"


def test_fetch_dns_failure_is_the_transaction_failure(lab: Lab) -> None:
    trace = Trace()
    with pytest.raises(NetxError) as err:
        run(lambda: fetch(trace, f"http://nonexistent.invalid:{HTTP}/", resolve=lab_resolver(trace, lab)))
    assert err.value.failure == "dns_nxdomain_error"
    [tx] = trace.requests
    assert tx.failure == "dns_nxdomain_error" and tx.response is None
    assert tx.request.url == f"http://nonexistent.invalid:{HTTP}/" and tx.request.headers["Host"]


def test_fetch_timeout_bounds_the_whole_fetch(lab: Lab) -> None:
    trace = Trace()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the request, never answers

    async def go() -> None:
        async with serving(stall, "127.0.0.1") as port:
            start = time.monotonic()
            with pytest.raises(NetxError) as err:
                await fetch(trace, f"http://127.0.0.1:{port}/", timeout=0.5)
            assert time.monotonic() - start < 3
            assert err.value.failure == "generic_timeout_error"

    run(go)
    [tx] = trace.requests
    assert tx.failure == "generic_timeout_error" and tx.response is None
    assert [e.failure for e in trace.network_events if e.operation == "read"] == ["generic_timeout_error"]


def test_max_body_truncates_and_read_events_add_up(lab: Lab) -> None:
    trace = Trace()

    async def go() -> tuple:
        cut = await fetch(trace, f"http://largefile.example:{HTTP}/300000", resolve=lab_resolver(trace, lab),
                          max_body=100_000)
        whole = await fetch(trace, f"http://largefile.example:{HTTP}/200000", resolve=lab_resolver(trace, lab))
        return cut[-1], whole[-1]

    cut, whole = run(go)
    assert cut.truncated and len(cut.body) == 100_000 and cut.body == content_at(0, 100_000)
    assert not whole.truncated and whole.body == content_at(0, 200_000)
    tx_cut, tx_whole = trace.requests
    assert tx_cut.failure is None and tx_cut.response.body_is_truncated is True
    assert isinstance(tx_cut.response.body, ArchivalBinaryData)
    assert len(base64.b64decode(tx_cut.response.body.data)) == 100_000
    stats = read_stats(trace.network_events)
    # the whole download: every body byte was read, plus the response head (a few hundred bytes)
    read, seconds = stats[tx_whole.transaction_id]
    head = read - 200_000
    assert 50 < head < 2000 and seconds > 0
    reads = [e for e in trace.network_events if e.operation == "read" and e.transaction_id == tx_whole.transaction_id]
    assert sum(e.num_bytes for e in reads) == read and all(e.address == tx_whole.address for e in reads)
    # the truncated one stopped reading soon after the limit: far less than the 300 000 offered
    assert 100_000 <= stats[tx_cut.transaction_id][0] < 100_000 + 2 * 65536 + 2000


async def _misbehaving(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, how: str) -> None:
    await reader.readuntil(b"\r\n\r\n")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\nServer: test\r\n\r\n"
    if how == "eof_mid_head":
        writer.write(head[:20])
    else:
        writer.write(head + b"x" * 100)
    await writer.drain()
    if how == "reset":
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


@pytest.mark.parametrize("how, failure", [
    ("eof_mid_head", "eof_error"),
    ("eof_mid_body", "eof_error"),
    ("reset", "connection_reset"),
])
def test_http_request_cut_short(how: str, failure: str) -> None:
    trace = Trace()

    async def go() -> None:
        async with serving(lambda r, w: _misbehaving(r, w, how), "127.0.0.1") as port:
            conn = await connect(trace, "127.0.0.1", port, timeout=2)
            try:
                with pytest.raises(NetxError) as err:
                    await http_request(trace, conn, f"http://127.0.0.1:{port}/page", timeout=5)
                assert err.value.failure == failure and conn.closed
            finally:
                await conn.close()

    run(go)
    [tx] = trace.requests
    assert tx.failure == failure
    if how == "eof_mid_head":
        assert tx.response is None
    else:  # what arrived before the failure is recorded
        assert tx.response.code == 200 and tx.response.headers["Server"] == "test"
        assert tx.response.body in ("x" * 100, "")


def test_host_header_and_target_as_sent() -> None:
    from netvigil.probe.netx.http import _target, host_header

    assert host_header("http://user:pw@Example.org:8080/x") == "Example.org:8080"
    assert host_header("https://[2001:db8::1]:8443/") == "[2001:db8::1]:8443"
    assert host_header("http://bücher.example/") == "xn--bcher-kva.example"
    assert host_header("http://bücher.example:81/") == "xn--bcher-kva.example:81"
    assert _target("http://a.example") == "/"
    assert _target("http://a.example/p?q=1") == "/p?q=1"
    assert _target("http://a.example/ü?q=ä") == "/%C3%BC?q=%C3%A4"


# -------------------------------------------------------------------------------------- into a measurement


def test_trace_round_trips_through_the_codec_as_web_connectivity(lab: Lab) -> None:
    trace = Trace()
    url = f"https://www.facebook.com:{HTTPS}/"

    async def go() -> None:
        await lookup_udp(trace, "www.facebook.com", lab.resolver)
        await fetch(trace, f"http://moved.example:{HTTP}/", resolve=lab_resolver(trace, lab), tls=lab.tls)
        with contextlib.suppress(NetxError):
            await fetch(trace, f"https://expired.example:{HTTPS}/", resolve=lab_resolver(trace, lab), tls=lab.tls)

    run(go)
    keys = trace.test_keys()
    envelope = {
        "annotations": {"engine_name": "netvigil"}, "data_format_version": "0.2.0", "input": url,
        "measurement_start_time": "2024-05-01 12:00:00", "test_start_time": "2024-05-01 12:00:00",
        "probe_asn": "AS64496", "probe_cc": "ZZ", "probe_ip": "127.0.0.1", "report_id": "20240501T120000Z_netx",
        "software_name": "netvigil", "software_version": "0.1.0", "test_name": "web_connectivity",
        "test_runtime": 1.5, "test_version": "0.5.0",
        "test_keys": {**keys, "agent": "redirect", "http_experiment_failure": None},
    }
    raw = msgspec.json.encode(envelope)
    m = decode_measurement(raw)
    assert isinstance(m.test_keys, WebConnectivityTestKeys)
    for name, records in keys.items():
        assert getattr(m.test_keys, name) == records, name
    assert [r.response.code if r.response else None for r in m.test_keys.requests] == [None, 200, 302]
    assert m.test_keys.tls_handshakes[-1].failure == "ssl_invalid_certificate"
    # the analysis reads what was recorded: flows, certificates and throughput
    rows = make_observations(m)
    http_rows = [r for r in rows if r.kind == "http" and r.http_status == 200]
    assert http_rows and http_rows[0].http_bytes_read and http_rows[0].http_bytes_read >= http_rows[0].http_body_length
    assert any(r.kind == "tls" and r.failure == "ssl_invalid_certificate" and r.tls_leaf_sha256 for r in rows)
    assert any(r.kind == "dns" and r.dns_engine == "udp" and r.dns_answer_ips == [lab.ip(10)] for r in rows)

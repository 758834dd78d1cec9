"""The censor: a daemon inside the backbone namespace that runs the scenario clock and enforces policies.

    python -m netvigil.lab.censor --lab NAME --scenario PATH --state-dir DIR [--speed N]

It is the single writer of the clock file and the ground-truth log. Kernel techniques are loaded as one nft
table (see `nftrules`); DNS techniques are answered by an intercepting responder (udp/53 toward the lab's
DNS servers is redirected to it); TLS/HTTP techniques and per-SNI throttling are applied by a transparent
relay that TLS/HTTP flows toward lab servers are redirected to. The relay decides once per connection, from
the first bytes, exactly as an inline DPI box does; everything it does not block it forwards unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from netvigil.lab import dpi
from netvigil.lab.clock import ScenarioClock, write_clock
from netvigil.lab.nftrules import (TABLE, Interception, access_lines, make_interception, render_ruleset,
                                   render_shaper, render_shaping)
from netvigil.lab.plan import Plan, make_plan
from netvigil.lab.scenario import Policy, Scenario, Technique, load_scenario
from netvigil.lab.truth import switches, write_ground_truth

SO_ORIGINAL_DST = 80
HOLD_SECONDS = 600.0  # a "silent" connection is held this long, then aborted
FIRST_BYTES_WAIT = 2.0  # how long DPI waits for the client's first bytes before forwarding blind
UPSTREAM_TIMEOUT = 5.0


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack("!2xH4s8x", raw)
    return socket.inet_ntoa(packed), port


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as an injected reset looks to the client."""
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class Censor:
    """Holds the active policy set; the relay and DNS interceptor read it for every new flow or query."""

    def __init__(self, lab: str, scenario: Scenario, state_dir: Path, speed: float) -> None:
        self.lab = lab
        self.scenario = scenario
        self.plan: Plan = make_plan(lab, scenario)
        self.icpt: Interception = make_interception(scenario)
        self.state_dir = state_dir
        self.speed = speed
        self.active: tuple[Policy, ...] = ()
        # who is asking, looked up for every flow and query: precomputed once
        self.isp_by_ip = {ip: isp for isp in self.plan.resolvers for ip in self.plan.isp_addresses(isp)}
        self.region_by_ip = {self.plan.client_ip(n.ns): n.region for n in self.plan.clients()}
        self.clock: ScenarioClock | None = None
        self.truth_path = state_dir / "truth.jsonl"
        self.actions_path = state_dir / "actions.jsonl"
        self._actions = self.actions_path.open("a", encoding="utf-8")

    # -- policy switching -------------------------------------------------------------------------------
    def apply(self, t: dt.datetime) -> None:
        new = self.scenario.active_policies(t)
        ruleset = render_ruleset(self.plan, self.scenario, new, self.icpt)
        out = subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, capture_output=True)
        if out.returncode != 0:
            raise RuntimeError(f"nft rejected the ruleset: {out.stderr.strip()}\n{ruleset}")
        lines = access_lines(self.scenario)
        old_shaping = render_shaping(self.plan, self.active, lines)
        for iface, rate in render_shaping(self.plan, new, lines).items():
            if rate == old_shaping.get(iface) and self.active:
                continue
            subprocess.run(["tc", "qdisc", "del", "dev", iface, "root"], capture_output=True)
            for argv in render_shaper(iface, rate) if rate is not None else []:
                subprocess.run(argv, check=True, capture_output=True)
        gone = [p for p in self.active if p not in new]
        came = [p for p in new if p not in self.active]
        self.active = new
        applied = time.time()
        applied_t = self.clock.now(applied).isoformat() if self.clock else t.isoformat()
        records = [r for p in gone for r in switches(p, "off", t)] + [r for p in came for r in switches(p, "on", t)]
        records = [type(r)(**{**_fields(r), "applied": applied, "applied_t": applied_t}) for r in records]
        write_ground_truth(self.truth_path, records)

    async def run_clock(self) -> None:
        assert self.clock is not None
        for point in self.scenario.change_points()[1:]:
            delay = self.clock.real_time(point) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.apply(point)

    def log_action(self, **fields: object) -> None:
        now = self.clock.now().isoformat() if self.clock else None
        self._actions.write(json.dumps({"t": now, **fields}, separators=(",", ":")) + "\n")
        self._actions.flush()

    # -- TLS/HTTP relay ----------------------------------------------------------------------------------
    async def handle_flow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          proxy: bool = False) -> None:
        try:
            await self._flow(reader, writer, proxy)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            writer.transport.abort()

    async def _flow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: bool) -> None:
        sock = writer.get_extra_info("socket")
        client_ip = writer.get_extra_info("peername")[0]
        dst, port = writer.get_extra_info("sockname")[:2] if proxy else original_dst(sock)
        first = await self._first_bytes(reader)
        sni = dpi.parse_sni(first) if first[:1] == b"\x16" else None
        head = dpi.http_head(first)
        if proxy:  # a DNS-hijack transparent proxy: route by name to the real site
            name = sni or (head.host if head else None)
            target = next((t for t in self.scenario.targets if name and t.matches_name(name, "suffix")), None)
            if target is None:
                _rst(writer)
                return
            dst = target.address
        isp, region = self.isp_by_ip.get(client_ip), self.region_by_ip.get(client_ip)
        policy = dpi.decide_flow(self.active, self.scenario, isp, region, sni, head)
        technique = policy.technique if policy else None
        if policy is not None:
            self.log_action(layer="relay", technique=technique.value, policy=policy.id, isp=isp, client=client_ip,
                            dst=f"{dst}:{port}", sni=sni, host=head.host if head else None)
        if technique in (Technique.TLS_DROP, Technique.HTTP_DROP):
            await self._hold(reader)
            writer.transport.abort()
            return
        if technique in (Technique.TLS_RST, Technique.HTTP_RST):
            _rst(writer)
            return
        if technique in (Technique.TLS_FIN, Technique.HTTP_FIN):
            writer.close()
            return
        if technique is Technique.HTTP_BLOCKPAGE:
            body = dpi.BLOCKPAGE_BODY
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
            writer.close()
            return
        rate = policy.rate_bps if technique is Technique.THROTTLE_SNI else None
        await self._forward(reader, writer, first, dst, port, rate)

    async def _first_bytes(self, reader: asyncio.StreamReader) -> bytes:
        data = b""
        deadline = time.monotonic() + FIRST_BYTES_WAIT
        while len(data) < 16384:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(16384), left)
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            if data[:1] == b"\x16" and dpi.tls_hello_complete(data):
                break
            if data[:1] != b"\x16" and (b"\r\n\r\n" in data or not dpi.looks_like_http(data)):
                break
        return data

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        """Swallow everything the client sends, answer nothing: the client sees a timeout."""
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            try:
                if not await asyncio.wait_for(reader.read(65536), deadline - time.monotonic()):
                    return
            except asyncio.TimeoutError:
                return

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes,
                       dst: str, port: int, rate_bps: int | None) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(dst, port), UPSTREAM_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            _rst(writer)
            return
        up_writer.write(first)
        up = asyncio.create_task(_pipe(reader, up_writer, rate_bps))
        down = asyncio.create_task(_pipe(up_reader, writer, rate_bps))
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        reset = any(t.result() == "reset" for t in done)
        if reset:
            for t in pending:
                t.cancel()
            _rst(writer)
            up_writer.transport.abort()
            return
        try:
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 60)
        except asyncio.TimeoutError:
            pass
        writer.close()
        up_writer.close()

    # -- DNS interception --------------------------------------------------------------------------------
    async def answer_dns(self, data: bytes, client: tuple[str, int], upstream: str,
                         transport: asyncio.DatagramTransport) -> None:
        try:
            query = dns.message.from_wire(data)
            question = query.question[0]
        except Exception:  # not DNS: forward untouched, the server will judge it
            query, question = None, None
        isp = self.isp_by_ip.get(client[0])
        policy = dpi.decide_dns(self.active, self.scenario, isp, question.name.to_text()) if question is not None else None
        if policy is None:
            reply = await _udp_exchange(data, upstream, 53)
            if reply is not None:
                transport.sendto(reply, client)
            return
        t = policy.technique
        self.log_action(layer="dns", technique=t.value, policy=policy.id, isp=isp, client=client[0],
                        qname=question.name.to_text(), qtype=dns.rdatatype.to_text(question.rdtype))
        if t is Technique.DNS_DROP:
            return
        response = dns.message.make_response(query)
        if t is Technique.DNS_NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif t is Technique.DNS_SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif t is Technique.DNS_FORGE and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, dns.rdatatype.A,
                                                       dpi.forged_address(policy, self.scenario)))
        response.flags |= dns.flags.AA  # the forgery claims to come from the authoritative server
        transport.sendto(response.to_wire(), client)


def _fields(record: object) -> dict:
    return {f: getattr(record, f) for f in record.__dataclass_fields__}  # type: ignore[attr-defined]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate_bps: int | None) -> str:
    """Copy until EOF, pacing to `rate_bps` if set; returns "eof" or "reset"."""
    chunk = 1400 if rate_bps else 65536
    sent = 0
    t0 = time.monotonic()
    try:
        while data := await reader.read(chunk):
            writer.write(data)
            await writer.drain()
            if rate_bps:
                sent += len(data)
                ahead = t0 + sent * 8 / rate_bps - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except OSError:
        return "reset"
    try:
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass
    return "eof"


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if not self.fut.done():
            self.fut.set_result(data)


async def _udp_exchange(data: bytes, server: str, port: int, timeout: float = 4.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Reply(fut), remote_addr=(server, port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(fut, timeout)
    except (asyncio.TimeoutError, OSError):
        return None
    finally:
        transport.close()


class _DnsListener(asyncio.DatagramProtocol):
    def __init__(self, censor: Censor, upstream: str) -> None:
        self.censor = censor
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        assert self.transport is not None
        task = asyncio.create_task(self.censor.answer_dns(data, addr, self.upstream, self.transport))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def count_flow_bytes() -> None:
    """Turn on conntrack byte accounting in this (the backbone's) namespace: the shapers' new-flow rule reads it."""
    Path("/proc/sys/net/netfilter/nf_conntrack_acct").write_text("1\n", encoding="ascii")


async def serve(censor: Censor) -> None:
    loop = asyncio.get_running_loop()
    count_flow_bytes()
    servers = [await asyncio.start_server(censor.handle_flow, "0.0.0.0", censor.icpt.relay_port,
                                          reuse_address=True, backlog=512)]
    for port in (80, 443):
        servers.append(await asyncio.start_server(lambda r, w: censor.handle_flow(r, w, proxy=True),
                                                  censor.scenario.proxy, port, reuse_address=True))
    for upstream, port in censor.icpt.dns.items():
        await loop.create_datagram_endpoint(lambda u=upstream: _DnsListener(censor, u), local_addr=("0.0.0.0", port))
    censor.apply(censor.scenario.start)
    censor.clock = ScenarioClock(censor.scenario.start, censor.scenario.end, censor.speed, time.time())
    write_clock(censor.state_dir / "clock", censor.clock)
    print("READY", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    clock_task = asyncio.create_task(censor.run_clock())
    await stop.wait()
    clock_task.cancel()
    for s in servers:
        s.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netvigil.lab.censor", description=__doc__.splitlines()[0])
    ap.add_argument("--lab", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--speed", type=float)
    args = ap.parse_args(argv)
    scenario = load_scenario(args.scenario)
    censor = Censor(args.lab, scenario, args.state_dir, args.speed or scenario.speed)
    try:
        asyncio.run(serve(censor))
    finally:
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

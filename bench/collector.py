"""Durable submissions per second of the collector, against the same disk's raw fsync rate (not a pytest test).

    .venv/bin/python bench/collector.py [--clients 200] [--seconds 20] [--worker thread|none] [--json]

Starts ``python -m netvigil.collector serve`` on loopback (rate limits off), then a SECOND process with
``--clients`` concurrent clients (asyncio + h11, one keep-alive connection each, as a load balancer
would hold them) submitting real OONI measurements (``../shared/data/ooni/measurements``, varied so
each is new) with ``X-Idempotency-Key`` for ``--seconds``. Every 200 it counts is a measurement on disk
(the collector answers after the fsync). Prints durable measurements/s and p50/p99 latency next to, in
the same run and the same directory: one writer appending 1 KiB records with an fdatasync after each,
and the same with one fdatasync per group of ``--clients`` records (group commit, the collector's way).
With ``--worker thread`` (the default deployment) the collector also judges and stores in-process
while it accepts; the report says how far behind the worker was at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "collector"))

import h11
import orjson
from collector_harness import CollectorProc, group_of, load_bases, open_body, request

SHARED = REPO.parent / "shared" / "data" / "ooni" / "measurements"


# -- baseline: raw appends with fsync -------------------------------------------------------------------


def fsync_rate(directory: Path, record: int, group: int, seconds: float) -> float:
    """Records/s appending ``record``-byte records with one fdatasync per ``group`` records."""
    path = directory / f"fsync-{record}-{group}.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    chunk = os.urandom(record) * group
    n = 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            os.write(fd, chunk)
            os.fdatasync(fd)
            n += group
    finally:
        os.close(fd)
        path.unlink()
    return n / (time.perf_counter() - t0)


# -- the load process -------------------------------------------------------------------------------------


async def _client(port: int, bodies: list[tuple[bytes, bytes]], start: int, stride: int, deadline: float,
                  latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    i = start
    try:
        while time.monotonic() < deadline:
            template, report = bodies[i % len(bodies)]
            key = f"bench-{i}"
            body = template.replace(b"@ID@", key.encode(), 1)
            headers = [("Host", "collector"), ("Content-Type", "application/json"),
                       ("Content-Length", str(len(body))), ("X-Idempotency-Key", key)]
            t = time.perf_counter()
            writer.write(conn.send(h11.Request(method="POST", target=f"/report/{report}", headers=headers))
                         + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            status = 0
            async with asyncio.timeout(30):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        if not data:
                            raise ConnectionError("closed by the collector")
                        conn.receive_data(data)
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.EndOfMessage):
                        break
            conn.start_next_cycle()
            if status == 200:
                latencies.append(time.perf_counter() - t)
            else:
                errors.append(f"HTTP {status}")
            i += stride
    except (OSError, ConnectionError, h11.ProtocolError, TimeoutError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()


async def _load(port: int, clients: int, seconds: float) -> dict:
    bases = load_bases([SHARED / "real", SHARED / "netem-qa"])
    reports: dict[tuple[str, ...], str] = {}
    for doc in bases:
        if group_of(doc) not in reports:
            answer = request(port, "POST", "/report", orjson.dumps(open_body(doc)), source="127.0.0.1")
            assert answer.status == 200, answer.body
            reports[group_of(doc)] = answer.json()["report_id"]
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    bodies = []
    for doc in bases:
        report = reports[group_of(doc)]
        content = {**doc, "id": "@ID@", "report_id": report, "measurement_start_time": now, "test_start_time": now}
        bodies.append((orjson.dumps({"format": "json", "content": content}), report.encode().decode()))
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.monotonic()
    deadline = t0 + seconds
    await asyncio.gather(*(_client(port, bodies, k, clients, deadline, latencies, errors) for k in range(clients)))
    elapsed = time.monotonic() - t0
    latencies.sort()
    sizes = [len(b) for b, _ in bodies]
    return {
        "accepted": len(latencies), "seconds": round(elapsed, 2), "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "errors": len(errors), "first_errors": errors[:5],
        "distinct_bodies": len(bodies), "mean_body_bytes": round(statistics.mean(sizes)),
    }


def _drain(collector: CollectorProc, stats: dict) -> dict:
    """Once the load stops, how fast the in-process worker works off the backlog (judge + store)."""
    t0, stored0 = time.monotonic(), stats["worker"]["stored"]
    while stats["queue_depth"] > 0 and time.monotonic() - t0 < 300:
        time.sleep(0.25)
        stats = collector.get("/api/v1/stats").json()
    elapsed = time.monotonic() - t0
    return {"drain_s": round(elapsed, 1), "drain_per_s": (stats["worker"]["stored"] - stored0) / elapsed}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--worker", choices=("thread", "none"), default="thread")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--load", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the load process itself
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(_load(args.load, args.clients, args.seconds))))
        return
    if not (SHARED / "real").is_dir():
        sys.exit(f"shared data absent: {SHARED}")
    with tempfile.TemporaryDirectory(prefix="netvigil-bench-collector-") as tmp:
        root = Path(tmp)
        single = fsync_rate(root, 1024, 1, 3.0)
        grouped = fsync_rate(root, 1024, args.clients, 3.0)
        extra = ["--rate-per-client", "0", "--rate-per-report", "0"]
        if args.worker == "none":
            extra.append("--no-worker")
        collector = CollectorProc(root, extra).start()
        try:
            assert collector.proc is not None
            cpu0, children0 = _cpu_seconds(collector.proc.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run([sys.executable, __file__, "--load", str(collector.port), "--clients",
                                   str(args.clients), "--seconds", str(args.seconds)],
                                  capture_output=True, text=True, check=False, timeout=args.seconds + 120)
            if proc.returncode != 0:
                sys.exit(f"load process failed: {proc.stderr[-2000:]}")
            load = json.loads(proc.stdout)
            server_cpu = _cpu_seconds(collector.proc.pid) - cpu0
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            client_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
            metrics = collector.get("/metrics", token=None).body.decode()
            stats = collector.get("/api/v1/stats").json() if args.worker == "thread" else None
            drain = _drain(collector, stats) if stats is not None else None
        finally:
            code = collector.stop()
        commits = _metric(metrics, "netvigil_collector_commit_records_count")
        result = {
            "load": load,
            "fsync_1k_each_per_s": round(single), "fsync_1k_group_per_s": round(grouped),
            "ratio_to_fsync_each": round(load["per_second"] / single, 2) if single else None,
            "fsyncs": int(commits),
            "mean_records_per_fsync": round(_metric(metrics, "netvigil_collector_commit_records_sum") / commits, 1)
            if commits else None,
            "worker": None if stats is None else {"stored": stats["worker"]["stored"],
                                                  "queue_depth_at_end": stats["queue_depth"], **(drain or {})},
            "collector_exit": code,
            "server_cpu_s": round(server_cpu, 2), "client_cpu_s": round(client_cpu, 2),
            "server_cpu_us_per_measurement": round(server_cpu / load["accepted"] * 1e6) if load["accepted"] else None,
            "load_average_1m": os.getloadavg()[0],
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"collector: {load['per_second']:,.0f} durable measurements/s over {load['seconds']} s "
          f"({load['accepted']:,} acknowledged, {load['errors']} errors), {args.clients} clients, "
          f"mean body {load['mean_body_bytes']:,} B")
    print(f"latency: p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, max {load['max_ms']} ms")
    print(f"CPU: collector {result['server_cpu_s']} s ({result['server_cpu_us_per_measurement']} us per "
          f"measurement), load process {result['client_cpu_s']} s; 1-min load average at the end "
          f"{result['load_average_1m']:.2f} on {os.cpu_count()} cores")
    print(f"group commit: {result['fsyncs']:,} fsyncs, {result['mean_records_per_fsync']} records each")
    print(f"baseline, same disk: 1 KiB append + fdatasync each {single:,.0f}/s; "
          f"grouped by {args.clients} {grouped:,.0f}/s; collector / fsync-each = {result['ratio_to_fsync_each']}")
    if result["worker"]:
        w = result["worker"]
        print(f"in-process worker: {w['stored']:,} stored meanwhile, {w['queue_depth_at_end']:,} still queued at the "
              f"end, then worked off in {w['drain_s']} s ({w['drain_per_s']:,.0f} judged and stored/s)")


if __name__ == "__main__":
    main()

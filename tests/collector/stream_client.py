"""A client process that streams measurements to a collector and records every acknowledgement.

    python stream_client.py --port P --count N --acks FILE --dirs DIR... [--concurrency C] [--source ADDR]
                            [--deadline S]

Measurements are real ones from DIR... varied (collector_harness.vary) so all N are distinct. Even-numbered ones
carry ``X-Idempotency-Key``; odd ones rely on the collector's content hash. Each goes over a kept-alive
connection and is retried (new connection, short backoff) after any failure, 429 or 5xx until it is
acknowledged; the collector may die at any moment. Each acknowledgement is one line of FILE,
``{"i", "uid", "replayed"}``, written when it arrives. A 4xx other than 429 is a refusal: counted and
not retried (the test expects none). Prints a JSON summary; exits 0 if every measurement was
acknowledged before the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import h11
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from collector_harness import group_of, load_bases, open_body, vary


class Link:
    """One kept-alive HTTP/1.1 connection (asyncio + h11) from a chosen source address."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source = port, source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.conn: h11.Connection | None = None

    async def post(self, target: str, body: bytes, headers: list[tuple[str, str]], timeout: float = 15.0):
        if self.conn is None or self.conn.our_state is not h11.IDLE:
            await self.close()
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.source, 0)), timeout)
            self.conn = h11.Connection(h11.CLIENT)
        assert self.writer is not None and self.reader is not None
        conn = self.conn
        all_headers = [("Host", "collector"), ("Content-Type", "application/json"),
                       ("Content-Length", str(len(body))), *headers]
        self.writer.write(conn.send(h11.Request(method="POST", target=target, headers=all_headers))
                          + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        status, replayed, chunks = 0, False, []
        async with asyncio.timeout(timeout):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await self.reader.read(65536)
                    if not data:
                        raise ConnectionError("closed")
                    conn.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    replayed = (b"idempotent-replayed", b"true") in [(k.lower(), v) for k, v in event.headers]
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            await self.close()
        return status, replayed, b"".join(chunks)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = self.conn = None


async def main(args: argparse.Namespace) -> int:
    bases = load_bases([Path(d) for d in args.dirs])
    deadline = time.monotonic() + args.deadline
    link = Link(args.port, args.source)
    reports: dict[tuple[str, ...], str] = {}
    for doc in bases:
        while group_of(doc) not in reports:
            try:
                status, _, body = await link.post("/report", orjson.dumps(open_body(doc)), [])
                if status == 200:
                    reports[group_of(doc)] = orjson.loads(body)["report_id"]
                    continue
            except (OSError, ConnectionError, TimeoutError, h11.ProtocolError):
                await link.close()
            if time.monotonic() > deadline:
                return 2
            await asyncio.sleep(0.1)
    await link.close()

    pending = iter(range(args.count))
    with Path(args.acks).open("a", buffering=1) as acks:  # small line writes: not worth a thread
        summary = await _stream(args, bases, reports, pending, deadline, acks)
    summary["refusals"] = summary["refusals"][:5]
    print(json.dumps(summary), flush=True)
    return 0 if summary["acked"] == args.count else 1


async def _stream(args: argparse.Namespace, bases: list, reports: dict, pending, deadline: float, acks) -> dict:
    summary = {"acked": 0, "replayed": 0, "refused": 0, "retries": 0, "refusals": []}

    async def worker() -> None:
        link = Link(args.port, args.source)
        for i in pending:
            base = bases[i % len(bases)]
            doc = vary(base, i, reports[group_of(base)])
            body = orjson.dumps({"format": "json", "content": doc})
            headers = [("X-Idempotency-Key", f"fault-{i}")] if i % 2 == 0 else []
            while True:
                if time.monotonic() > deadline:
                    return
                try:
                    status, replayed, answer = await link.post(f"/report/{doc['report_id']}", body, headers)
                except (OSError, ConnectionError, TimeoutError, h11.ProtocolError):
                    status = 0
                    await link.close()
                if status == 200:
                    uid = orjson.loads(answer)["measurement_uid"]
                    acks.write(json.dumps({"i": i, "uid": uid, "replayed": replayed}) + "\n")
                    summary["acked"] += 1
                    summary["replayed"] += replayed
                    break
                if 400 <= status < 500 and status != 429:
                    summary["refused"] += 1
                    summary["refusals"].append(answer.decode(errors="replace")[:200])
                    break
                summary["retries"] += 1
                await asyncio.sleep(random.uniform(0.02, 0.2))
        await link.close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--acks", required=True)
    parser.add_argument("--dirs", nargs="+", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument("--deadline", type=float, default=120.0)
    sys.exit(asyncio.run(main(parser.parse_args())))

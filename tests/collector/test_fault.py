"""The fault test: a client streams 10,000 measurements, the collector is SIGKILLed at random moments and
restarted; afterwards every acknowledged measurement is in the store exactly once."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from collector_harness import CLIENT_ADDRESS, CollectorProc, files_containing, free_port

from netvigil.collector.log import KIND_MEASUREMENT, LogReader, Position
from netvigil.store import open_store

STREAM_CLIENT = Path(__file__).with_name("stream_client.py")
COUNT = 10_000
KILLS = 4


def acked(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_sigkill_at_random_moments_loses_no_acknowledged_measurement(tmp_path: Path, netem_qa_dir: Path,
                                                                      real_dir: Path) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    print(f"fault test seed {seed}")
    c = CollectorProc(tmp_path / "collector", ["--rate-per-client", "0", "--rate-per-report", "0"], port=free_port())
    (tmp_path / "collector").mkdir()
    c.start()
    acks = tmp_path / "acks.jsonl"
    client = subprocess.Popen(
        [sys.executable, str(STREAM_CLIENT), "--port", str(c.port), "--count", str(COUNT), "--acks", str(acks),
         "--source", CLIENT_ADDRESS, "--concurrency", "64", "--deadline", "150",
         "--dirs", str(real_dir), str(netem_qa_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = []
    try:
        for point in sorted(rng.sample(range(500, COUNT - 1500), KILLS)):
            deadline = time.monotonic() + 120
            while len(acked(acks)) < point and client.poll() is None:
                assert time.monotonic() < deadline, "the client made no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))
            if client.poll() is not None:
                break
            kills.append(len(acked(acks)))
            c.kill()
            c.start()
        out, err = client.communicate(timeout=180)
        streamed = time.monotonic()
    finally:
        if client.poll() is None:
            client.kill()
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    assert client.returncode == 0, (summary, err[-2000:])
    assert len(kills) >= 3, f"killed only at {kills}"
    assert summary["refused"] == 0

    lines = acked(acks)
    by_index: dict[int, set[str]] = {}
    for line in lines:
        by_index.setdefault(line["i"], set()).add(line["uid"])
    assert sorted(by_index) == list(range(COUNT))
    assert all(len(uids) == 1 for uids in by_index.values())  # a replayed ack names the first uid
    uids = {next(iter(u)) for u in by_index.values()}
    assert len(uids) == COUNT

    stats = c.wait_drained(timeout=90)
    print(f"drained {time.monotonic() - streamed:.1f} s after the client finished")
    assert c.stop() == 0
    assert stats["worker"]["quarantined"] == 0
    log_uids = Counter(r.uid for r in LogReader(c.data_dir / "log", Position(1, 0)) if r.kind == KIND_MEASUREMENT)
    assert set(log_uids) == uids and max(log_uids.values()) == 1  # one record per measurement, across 4 crashes
    with open_store(c.store_path, read_only=True) as st:
        assert st.stats()["tables"]["measurements"] == COUNT
        assert st.known_uids(sorted(uids)) == uids
    # the client's address reached the collector (and was scrubbed from nothing it stored or printed)
    assert files_containing([c.data_dir, c.store_path, *c.outputs], CLIENT_ADDRESS.encode()) == []
    print(f"kills after {kills} acknowledgements; {summary}")

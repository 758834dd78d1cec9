"""The reachability prober: the belief model, aggregation into signals, target loading, and real probes on
loopback (a listener, a closed port, and an address that never answers inside a private network namespace)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from netvigil.cli_reachability import reachability
from netvigil.lab.iptable import IpInfo
from netvigil.probe.reachability import (
    BeliefParams,
    Block,
    BlockModel,
    BlockRound,
    BlockState,
    ProbeConfig,
    RoundStats,
    TokenBucket,
    aggregate_signals,
    availability,
    census_model,
    decide,
    entity_keys,
    first_round_start,
    icmp_problem,
    negatives_to_down,
    probe_address,
    refill,
    round_start_belief,
    run_census,
    run_round,
    update_belief,
    update_model,
)
from netvigil.tasks.reachability import (
    MakeReachabilityParams,
    load_lab_blocks,
    load_targets_csv,
    make_reachability_run,
    parse_target_rows,
    read_signals,
)

P = BeliefParams()
UP, DOWN, UNC, UNM = BlockState.UP, BlockState.DOWN, BlockState.UNCERTAIN, BlockState.UNMEASURED


# -- belief ------------------------------------------------------------------------------------------------------

def test_one_reply_decides_up_from_any_starting_belief():
    for avail in (P.min_availability, 0.3, 0.5, 0.9, P.max_availability):
        for start in (P.floor, 0.2, 0.5, P.cap):
            b = update_belief(round_start_belief(start, P), True, avail, P)
            assert decide(b, P) is UP, (avail, start, b)


def test_negatives_needed_follow_availability_and_starting_belief():
    # Well-answering blocks go down after few misses; sparse ones need many; too sparse ones never decide.
    assert negatives_to_down(0.99, P.cap, P) == 2
    assert negatives_to_down(0.99, 0.5, P) == 1
    assert negatives_to_down(0.9, P.cap, P) == 3
    assert negatives_to_down(0.5, P.cap, P) == 10
    assert negatives_to_down(0.5, 0.5, P) == 4
    assert negatives_to_down(0.1, P.cap, P) is None           # > 15 probes: uncertain, as Trinocular
    ks = [negatives_to_down(a, P.cap, P) or 99 for a in (0.3, 0.5, 0.7, 0.9, 0.99)]
    assert ks == sorted(ks, reverse=True)


def test_bayes_update_moves_the_right_way_and_stays_a_probability():
    rng = random.Random(7)
    for _ in range(2000):
        b, a = rng.uniform(0.001, 0.999), rng.uniform(0.1, 0.99)
        up, down = update_belief(b, True, a, P), update_belief(b, False, a, P)
        assert 0.0 < down <= b <= up < 1.0
    # the formula itself: P(up | no reply) = (1-A)B / ((1-A)B + (1-eps)(1-B))
    assert update_belief(0.5, False, 0.5, P) == pytest.approx(0.25 / (0.25 + (1 - P.false_reply) * 0.5))


def test_decide_thresholds_and_round_start_clamp():
    assert decide(0.9, P) is UP and decide(0.1, P) is DOWN and decide(0.5, P) is UNC
    assert round_start_belief(1.0, P) == P.cap and round_start_belief(0.0, P) == P.floor


def test_census_model_and_availability_learning():
    assert census_model({"192.0.2.1": 0, "192.0.2.2": 0}, 2, P).state is UNM
    m = census_model({"192.0.2.9": 1, "192.0.2.10": 2, "192.0.2.3": 0}, 2, P)
    assert m.responsive == ("192.0.2.9", "192.0.2.10") and m.state is UP and m.belief == P.cap
    assert m.availability == 0.75
    assert availability(4, 4, P) == P.max_availability and availability(0, 10, P) == P.min_availability
    # only rounds decided UP teach availability (an outage is not low availability)
    after_up = update_model(m, BlockRound(UP, 3, 1), 0.95)
    assert (after_up.answered, after_up.asked, after_up.state) == (4, 7, UP)
    after_down = update_model(m, BlockRound(DOWN, 3, 0), 0.05)
    assert (after_down.answered, after_down.asked, after_down.state, after_down.belief) == (3, 4, DOWN, 0.05)


def test_schedule_and_bucket_level():
    assert first_round_start(1000.5, 600) == 1200 and first_round_start(1200, 600) == 1200
    assert first_round_start(1000.5, 600, align=False) == 1001
    assert refill(0.0, 0.5, 10.0, 3.0) == 3.0 and refill(1.0, 0.1, 10.0, 5.0) == 2.0


def test_token_bucket_paces_packets():
    async def go() -> float:
        bucket = TokenBucket(50.0, burst=1)
        t0 = time.monotonic()
        for _ in range(11):
            await bucket.take()
        return time.monotonic() - t0

    elapsed = asyncio.run(go())
    assert 0.17 <= elapsed < 0.6   # 10 tokens after the first at 50/s = 0.2 s


# -- rounds with a scripted network ------------------------------------------------------------------------------

def _model(addrs: tuple[str, ...], answered: int, asked: int, belief: float = P.cap, state=UP) -> BlockModel:
    return BlockModel(addrs, answered, asked, belief, state)


def test_round_decides_each_block_adaptively():
    alive = {"a1", "a2", "b1"}
    sent: list[str] = []

    async def probe(addr: str) -> bool:
        sent.append(addr)
        return addr in alive

    models = [
        _model(("a1", "a2"), 4, 4),                       # up: one probe
        _model(("c1", "c2", "c3"), 6, 6),                 # went dark: A=0.99 from 0.99 -> 2 probes
        _model(("d1",), 3, 6),                            # dark and A=0.5: 10 probes, the same address again
        _model(("e1", "e2"), 1, 10),                      # dark and A=0.1: never decided within 15 probes
        _model((), 0, 0, 0.0, UNM),                       # nothing ever answered: not probed
    ]
    new, rounds = asyncio.run(run_round(models, probe, random.Random(1), P))
    assert [r.state for r in rounds] == [UP, DOWN, DOWN, UNC, UNM]
    assert [r.probes for r in rounds] == [1, 2, 10, 15, 0]
    assert new[1].state is DOWN and new[1].belief <= P.down
    assert sent.count("d1") == 10 and not any(a.startswith("b") for a in sent)
    # next round: a dark block needs one miss to stay down, and one reply brings a block back up
    alive.update({"c1", "c2", "c3"})
    _, again = asyncio.run(run_round(new, probe, random.Random(2), P))
    assert (again[1].state, again[1].probes) == (UP, 1)
    assert (again[2].state, again[2].probes) == (DOWN, 1)


def test_round_deadline_leaves_slow_blocks_uncertain():
    async def slow(addr: str) -> bool:
        await asyncio.sleep(0.3)
        return False

    models = [_model(("x",), 3, 6)]
    new, rounds = asyncio.run(run_round(models, slow, random.Random(0), P, deadline=time.monotonic() + 0.5))
    assert rounds[0].state is UNC and rounds[0].timed_out
    assert new[0] == models[0]   # the belief carries over unchanged


def test_census_learns_ever_responsive_addresses():
    async def probe(addr: str) -> bool:
        return addr in {"192.0.2.1", "192.0.2.77"}

    blocks = [Block("192.0.2.0/24", "AS64500", "XA"), Block("198.51.100.7/32", "AS64501", "XA")]
    models = asyncio.run(run_census(blocks, probe, P))
    assert models[0].responsive == ("192.0.2.1", "192.0.2.77") and models[0].asked == 4
    assert models[1].state is UNM
    assert len(blocks[0].candidates()) == 254 and blocks[1].candidates() == ["198.51.100.7"]


# -- aggregation -------------------------------------------------------------------------------------------------

BLOCKS = [
    Block("192.0.2.0/24", "AS64601", "XA", "north"),
    Block("198.51.100.0/24", "AS64601", "XA", "south"),
    Block("203.0.113.0/24", "AS64602", "XA", "north"),
    Block("203.0.113.128/25", "AS64603", None, None),
]


def test_entity_keys():
    assert entity_keys(BLOCKS[0]) == [("asn", "AS64601", "XA"), ("country", "XA", "XA"), ("region", "XA/north", "XA")]
    assert entity_keys(BLOCKS[3]) == [("asn", "AS64603", None)]


def test_aggregate_counts_shares_and_gaps():
    rounds = [
        [UP, UP, UP, UP],
        [DOWN, UP, UP, UNC],
        None,                      # a round that did not run
        [DOWN, DOWN, UNC, UNC],
    ]
    sigs = {(s.entity_type, s.entity_code): s for s in aggregate_signals(BLOCKS, rounds, 1200, 600)}
    assert list(sigs) == [("country", "XA"), ("region", "XA/north"), ("region", "XA/south"), ("asn", "AS64601"),
                          ("asn", "AS64602"), ("asn", "AS64603")]
    assert sigs[("asn", "AS64601")].values == [2.0, 1.0, None, 0.0]
    assert sigs[("asn", "AS64602")].values == [1.0, 1.0, None, None]       # uncertain only: missing, not zero
    assert sigs[("asn", "AS64603")].values == [1.0, None, None, None]
    assert sigs[("country", "XA")].values == [3.0, 2.0, None, 0.0]
    assert sigs[("region", "XA/north")].country == "XA"
    s = sigs[("asn", "AS64601")]
    assert (s.start, s.step, s.datasource, s.until) == (1200, 600, "reachability", 1200 + 4 * 600)
    share = {(s.entity_type, s.entity_code): s for s in aggregate_signals(BLOCKS, rounds, 0, 600, "share")}
    assert share[("country", "XA")].values == [1.0, round(2 / 3, 6), None, 0.0]


def test_aggregate_skips_unmeasurable_entities():
    sigs = aggregate_signals(BLOCKS[:1], [[UNM], [UNM]], 0, 60)
    assert sigs == []
    with pytest.raises(ValueError):
        aggregate_signals(BLOCKS, [], 0, 60, "mean")


# -- targets -----------------------------------------------------------------------------------------------------

def test_target_rows_are_validated_and_split(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(textwrap.dedent("""\
        prefix,asn,country,region
        # comment
        192.0.2.0/23,AS64601,xa,north
        198.51.100.0/24,64602,XA,
        198.51.100.128/25,AS64603,XA,
        203.0.113.5/32,AS64604,XA,south
        not-a-prefix,AS1,XA,
        192.0.2.1/24,AS1,XA,
        2001:db8::/48,AS1,XA,
        203.0.113.0/24,ASX,XA,
        203.0.113.0/24,AS1,XAA,
        10.0.0.0/8,AS1,XA,

        """), encoding="utf-8")
    load = load_targets_csv(path)
    assert [b.prefix for b in load.blocks] == ["192.0.2.0/24", "192.0.3.0/24",
                                               "198.51.100.0/24", "203.0.113.5/32"]
    assert load.blocks[0] == Block("192.0.2.0/24", "AS64601", "XA", "north")
    assert load.blocks[2].asn == "AS64602" and load.blocks[2].region is None
    assert load.rows == 10 and len(load.problems) == 7
    reasons = "\n".join(load.problems)
    for needle in ("line 5: 198.51.100.128/25 overlaps", "line 7: 'not-a-prefix' is not a prefix",
                   "line 8: '192.0.2.1/24' is not a prefix", "line 9: 2001:db8::/48: IPv6",
                   "line 10: 'ASX' is not an ASN", "line 11: 'XAA' is not a two-letter",
                   "line 12: 10.0.0.0/8 is 65536"):
        assert needle in reasons


def test_rows_without_header_and_short_rows():
    load = parse_target_rows([(1, ["203.0.113.0/24", "AS65000"]), (2, ["203.0.113.0/25"])])
    assert load.blocks == [Block("203.0.113.0/24", "AS65000", None, None)]
    assert load.problems == ["line 2: expected prefix,asn,country,region"]


def test_lab_table_gives_one_block_per_isp_address():
    table = [
        IpInfo("192.0.2.14/32", 64601, "Alpha", "XA", "client", "alpha", "capital", "nv-x-alpha-c1"),
        IpInfo("198.51.100.10/32", 64601, "Alpha", "XA", "resolver", "alpha", None, "nv-x-alpha"),
        IpInfo("192.0.2.10/32", 64601, "Alpha", "XA", "router", "alpha", None, "nv-x-alpha"),
        IpInfo("203.0.113.10/32", 65000, "Lab Internet", "ZZ", "server", None, None, "news"),
        IpInfo("192.0.2.0/24", 64512, "Backbone", "XA", "backbone"),
    ]
    load = load_lab_blocks(table)
    assert load.blocks == [Block("192.0.2.14/32", "AS64601", "XA", "capital"),
                           Block("198.51.100.10/32", "AS64601", "XA", None),
                           Block("192.0.2.10/32", "AS64601", "XA", None)]


# -- real probes on loopback -------------------------------------------------------------------------------------

def _listener() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    return srv, srv.getsockname()[1]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_tcp_syn_ack_and_rst_both_mean_up():
    srv, port = _listener()
    closed = _closed_port()
    try:
        cfg = ProbeConfig(ports=(port,), icmp=False, timeout=1.0)
        stats = RoundStats()
        assert asyncio.run(probe_address("127.0.0.1", cfg, TokenBucket(100), stats)) is True
        assert asyncio.run(probe_address("127.0.0.2", ProbeConfig(ports=(closed,), icmp=False, timeout=1.0)))
        assert (stats.probes, stats.packets) == (1, 1)
    finally:
        srv.close()


@pytest.mark.skipif(os.geteuid() != 0 and icmp_problem(False) is not None, reason="no ICMP socket for this user")
def test_icmp_echo_on_loopback():
    privileged = os.geteuid() == 0
    assert icmp_problem(privileged) is None
    cfg = ProbeConfig(ports=(), icmp=True, icmp_privileged=privileged, timeout=1.0)
    assert asyncio.run(probe_address("127.0.0.3", cfg)) is True


# Inside a private network namespace (unshare: nothing of the host is touched) 192.0.2.99 is routed into the
# loopback device but is nobody's address: SYNs and echoes to it vanish, as in a shutdown.
_NETNS_SCRIPT = r"""
import asyncio, json, random, socket, subprocess, sys, time
from netvigil.probe.reachability import *

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
srv = socket.socket(); srv.bind(("127.0.0.1", 8080)); srv.listen(8)
P = BeliefParams()
cfg = ProbeConfig(ports=(8080, 9), icmp=icmp_problem(True) is None, timeout=0.3)
out = {"icmp": cfg.icmp}

async def main():
    bucket = TokenBucket(500)
    probe = lambda a: probe_address(a, cfg, bucket)
    blocks = [Block("127.0.0.1/32", "AS64500", "XA", "r1"), Block("127.0.0.2/32", "AS64500", "XA", "r2"),
              Block("192.0.2.99/32", "AS64501", "XA", "r1")]
    models = await run_census(blocks, probe, P)
    out["census"] = [m.state.value for m in models]
    subprocess.run(["ip", "route", "add", "192.0.2.99/32", "dev", "lo"], check=True)
    t0 = time.monotonic()
    out["blackholed"] = await probe("192.0.2.99")
    out["blackholed_seconds"] = time.monotonic() - t0
    # as if the census had seen it up (before the cut): a model by hand
    models[2] = BlockModel(("192.0.2.99",), 4, 4, P.cap, BlockState.UP)
    states = []
    for i in range(2):
        models, results = await run_round(models, probe, random.Random(i), P)
        states.append([r.state for r in results])
        out.setdefault("probes", []).append([r.probes for r in results])
    out["rounds"] = [[s.value for s in r] for r in states]
    sigs = aggregate_signals(blocks, states, 0, 60)
    out["signals"] = {s.entity_code: s.values for s in sigs}

asyncio.run(main())
print(json.dumps(out))
"""


def _in_private_netns(script: str) -> dict:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (iproute2) for a private network namespace")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(["unshare", "-rn", sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60, env=env, check=False)
    if r.returncode != 0 and ("unshare failed" in r.stderr or "Operation not permitted" in r.stderr):
        pytest.skip(f"cannot create a user+network namespace here: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_listener_closed_port_and_blackholed_address_in_a_private_namespace():
    out = _in_private_netns(_NETNS_SCRIPT)
    # census: the listener and the closed port (RST) answer; 192.0.2.99 has no route at census time
    assert out["census"] == ["up", "up", "unmeasured"]
    assert out["blackholed"] is False and out["blackholed_seconds"] < 2.0
    assert out["rounds"] == [["up", "up", "down"], ["up", "up", "down"]]
    assert out["probes"][0] == [1, 1, 2] and out["probes"][1] == [1, 1, 1]
    assert out["signals"] == {"XA": [2.0, 2.0], "XA/r1": [1.0, 1.0], "XA/r2": [1.0, 1.0], "AS64500": [2.0, 2.0],
                              "AS64501": [0.0, 0.0]}


# -- the task and the command ------------------------------------------------------------------------------------

def test_run_writes_counts_only(tmp_path):
    srv, port = _listener()
    out = tmp_path / "sig.jsonl"
    try:
        params = MakeReachabilityParams(
            blocks=[Block("127.0.0.1/32", "AS64500", "XA", "r1"), Block("127.0.0.4/32", "AS64500", "XA", "r1")],
            rounds=2, step=1, rate=200, config=ProbeConfig(ports=(port,), icmp=False, timeout=0.5), out=out,
            seed=3)
        run = make_reachability_run(params)
    finally:
        srv.close()
    sigs = read_signals(out)
    assert {s.entity_code: s.values for s in sigs} == {"XA": [2.0, 2.0], "XA/r1": [2.0, 2.0], "AS64500": [2.0, 2.0]}
    assert sigs[0].start == run.start and sigs[0].step == 1
    doc = run.as_dict()
    assert doc["rounds"] == 2 and doc["census"]["probes"] == 4 and doc["probes_per_round"] == 2
    text = out.read_text() + json.dumps(doc)
    assert "127.0.0" not in text   # privacy: no address in what is written or printed


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(reachability)
    return app


def test_cli_usage_errors(tmp_path):
    runner = CliRunner()
    assert runner.invoke(_cli(), []).exit_code == 2
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("127.0.0.1/32,AS64500,XA,\n", encoding="utf-8")
    assert runner.invoke(_cli(), ["--targets", str(csv_path), "--lab", "x"]).exit_code == 2
    r = runner.invoke(_cli(), ["--targets", str(csv_path), "--ports", "80,http"])
    assert r.exit_code == 2 and "not a TCP port" in r.output
    assert runner.invoke(_cli(), ["--targets", str(tmp_path / "nope.csv")]).exit_code == 4
    assert runner.invoke(_cli(), ["--targets", str(csv_path), "--ports", "", "--no-icmp"]).exit_code == 2
    r = runner.invoke(_cli(), ["--lab", "nosuchlab"])
    assert r.exit_code == 7 and "nosuchlab" in r.output and "Traceback" not in r.output


def test_cli_runs_into_the_signals_store_and_reports_set_aside_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("NETVIGIL_DATA_DIR", str(tmp_path / "data"))
    srv, port = _listener()
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("prefix,asn,country,region\n127.0.0.1/32,AS64500,XA,\nbogus,AS1,XA,\n", encoding="utf-8")
    try:
        r = CliRunner().invoke(_cli(), ["--targets", str(csv_path), "--rounds", "1", "--round-seconds", "1",
                                        "--ports", str(port), "--no-icmp", "--timeout", "0.5", "--json"])
    finally:
        srv.close()
    assert r.exit_code == 3, r.output          # finished, one row set aside
    doc = json.loads(r.stdout[r.stdout.index("{"):])
    assert doc["targets"]["set_aside"] == [
        "line 3: 'bogus' is not a prefix ('bogus' does not appear to be an IPv4 or IPv6 network)"]
    stored = tmp_path / "data" / "signals" / "signals.jsonl"
    assert doc["out"] == str(stored)
    assert {s.entity_code: s.values for s in read_signals(stored)} == {"XA": [1.0], "AS64500": [1.0]}


def test_endless_run_stops_on_request_and_keeps_what_it_measured(tmp_path):
    srv, port = _listener()
    out = tmp_path / "sig.jsonl"
    params = MakeReachabilityParams(
        blocks=[Block("127.0.0.1/32", "AS64500", "XA")], rounds=0, step=1, rate=100,
        config=ProbeConfig(ports=(port,), icmp=False, timeout=0.5), out=out, align=False)
    timer = threading.Timer(2.5, params.stop.set)
    timer.start()
    try:
        t0 = time.monotonic()
        run = make_reachability_run(params)
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
        srv.close()
    assert elapsed < 4.0 and len(run.rounds) >= 1
    assert read_signals(out)[0].values == [1.0] * len(run.rounds)

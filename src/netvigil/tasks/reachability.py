"""`netvigil reachability`: load the blocks to watch, learn them (census), probe them round after round on a fixed
schedule, and write one `Signal` per ASN / region / country (`docs/reachability.md`): into the signals store
(`netvigil.tasks.signals`: `<data dir>/signals/signals.jsonl`, joined with what is there) or, with `out`, into a
JSONL file of their own (one msgspec-encoded Signal per line, the same format). Both are rewritten every round.

Targets come from a CSV (`prefix,asn,country,region`) or from a running lab's `ip-table.json` (every address of
every ISP: clients, routers, resolvers; one /32 block each). In a lab the prober measures from the lab's internet
namespace (outside the country): the rounds run on a thread that has entered that namespace, and the signal's
clock is the lab's scenario clock, so its times compare directly with the ground truth.

Only per-entity counts are written: no address, no per-address or per-block result leaves memory.
"""

from __future__ import annotations

import asyncio
import csv
import ctypes
import datetime as dt
import ipaddress
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import msgspec

from netvigil.model.signal import Signal
from netvigil.probe.reachability import (
    RULES_ID,
    BeliefParams,
    Block,
    BlockModel,
    BlockState,
    ProbeConfig,
    RoundStats,
    TokenBucket,
    aggregate_signals,
    count_states,
    first_round_start,
    icmp_problem,
    probe_address,
    run_census,
    run_round,
)

__all__ = [
    "LabClock",
    "LabTarget",
    "MakeReachabilityParams",
    "ReachabilityError",
    "ReachabilityRun",
    "RealClock",
    "SignalsWriteError",
    "TargetLoad",
    "lab_source",
    "lab_targets",
    "load_lab_blocks",
    "load_targets_csv",
    "make_reachability_run",
    "parse_target_rows",
    "read_signals",
    "store_signals",
    "write_signals",
]

MAX_BLOCKS_PER_ROW = 4096          # a /12 at most: larger rows are set aside rather than silently truncated
CLONE_NEWNET = 0x40000000
ROUND_MARGIN = 0.05                # share of a round kept free at its end so the next one starts on time
_ASN = re.compile(r"^(?:AS)?(\d{1,10})$", re.IGNORECASE)


class ReachabilityError(Exception):
    """A user-facing problem (bad targets, no lab, no permission); the CLI prints it without a traceback."""


class SignalsWriteError(ReachabilityError):
    """The signals file cannot be written."""


# -- targets -----------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class TargetLoad:
    blocks: list[Block] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "line 4: ...": rows set aside, with the reason
    rows: int = 0


def _split(net: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    return list(net.subnets(new_prefix=24)) if net.prefixlen < 24 else [net]


def _bucket(net: ipaddress.IPv4Network) -> str:
    """The /24 a block lies in (or is): overlapping blocks always share it."""
    return str(net.supernet(new_prefix=24)) if net.prefixlen > 24 else str(net)


def parse_target_rows(rows: Iterable[tuple[int, list[str]]]) -> TargetLoad:
    """(line number, cells) rows of `prefix,asn,country,region` -> blocks (a prefix shorter than /24 becomes its
    /24s); malformed and overlapping rows are set aside with a reason."""
    load = TargetLoad()
    by_24: dict[str, list[ipaddress.IPv4Network]] = {}
    for line, cells in rows:
        cells = [c.strip() for c in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        load.rows += 1
        if len(cells) < 2:
            load.problems.append(f"line {line}: expected prefix,asn,country,region")
            continue
        prefix, asn_text = cells[0], cells[1]
        country = cells[2].upper() if len(cells) > 2 and cells[2] else None
        region = cells[3] if len(cells) > 3 and cells[3] else None
        try:
            net = ipaddress.ip_network(prefix)
        except ValueError as exc:
            load.problems.append(f"line {line}: {prefix!r} is not a prefix ({exc})")
            continue
        if not isinstance(net, ipaddress.IPv4Network):
            load.problems.append(f"line {line}: {prefix}: IPv6 blocks are not probed")
            continue
        m = _ASN.match(asn_text)
        if not m or not 0 < int(m.group(1)) < 2**32:
            load.problems.append(f"line {line}: {asn_text!r} is not an ASN (AS123 or 123)")
            continue
        if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
            load.problems.append(f"line {line}: {country!r} is not a two-letter country code")
            continue
        if region is not None and "/" in region:
            load.problems.append(f"line {line}: region {region!r} must not contain '/'")
            continue
        parts = _split(net)
        if len(parts) > MAX_BLOCKS_PER_ROW:
            load.problems.append(f"line {line}: {prefix} is {len(parts)} /24 blocks; at most {MAX_BLOCKS_PER_ROW} "
                                 "per row (split it)")
            continue
        clash = next((q for p in parts for q in by_24.get(_bucket(p), ()) if p.overlaps(q)), None)
        if clash is not None:
            load.problems.append(f"line {line}: {prefix} overlaps an earlier row's {clash}")
            continue
        for p in parts:
            by_24.setdefault(_bucket(p), []).append(p)
            load.blocks.append(Block(str(p), f"AS{int(m.group(1))}", country, region))
    return load


def load_targets_csv(path: Path) -> TargetLoad:
    """A CSV of `prefix,asn,country,region` (header optional, `#` comments allowed)."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(enumerate(csv.reader(fh), start=1))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReachabilityError(f"cannot read targets {path}: {exc}") from None
    if rows and rows[0][1] and rows[0][1][0].strip().lower() == "prefix":
        rows = rows[1:]
    return parse_target_rows(rows)


def load_lab_blocks(table: list) -> TargetLoad:
    """Every ISP address of the lab (`IpInfo` rows with an ISP: clients, routers, resolvers) as a /32 block.

    A lab ISP has a handful of addresses, not /24s, so each address is its own block: the per-ASN count is then
    the number of the ISP's addresses that answer."""
    load = TargetLoad()
    for info in table:
        if info.isp is None or info.role not in ("client", "router", "resolver"):
            continue
        load.rows += 1
        load.blocks.append(Block(info.prefix, info.as_label, info.cc, info.region))
    return load


# -- clocks ------------------------------------------------------------------------------------------------------

class SignalClock(Protocol):
    """The clock the signal is written in: Unix seconds, and when (time.time()) a signal time happens."""

    speed: float

    def now(self) -> float: ...

    def real_at(self, t: float) -> float: ...


@dataclass(frozen=True, slots=True)
class RealClock:
    speed: float = 1.0

    def now(self) -> float:
        return time.time()

    def real_at(self, t: float) -> float:
        return t


@dataclass(frozen=True, slots=True)
class LabClock:
    """The lab's scenario clock (`netvigil.lab.clock.ScenarioClock`): signal times are scenario times."""

    clock: object

    @property
    def speed(self) -> float:
        return float(self.clock.speed)

    def now(self) -> float:
        return self.clock.now().timestamp()

    def real_at(self, t: float) -> float:
        return self.clock.real_time(dt.datetime.fromtimestamp(t, dt.UTC))


@dataclass(frozen=True, slots=True)
class LabTarget:
    load: TargetLoad
    clock: LabClock
    netns: Path                       # the lab's internet namespace: the prober runs there
    source: str | None                # an address abroad to send from (None: the link address, see lab_source)


def lab_source(table: list) -> str | None:
    """An address of the lab's internet side (203.0.113.0/24, on the internet namespace's loopback) to send from.

    Without it, probes leave with the internet namespace's link address, which lies in 192.0.2.0/24: the censor
    counts that range as domestic, so an `outage_international` would not stop the replies."""
    foreign = ipaddress.ip_network("203.0.113.0/24")
    for info in table:
        net = ipaddress.ip_network(info.prefix)
        if info.role == "server" and net.prefixlen == 32 and net.network_address in foreign:
            return str(net.network_address)
    return None


def lab_targets(lab: str) -> LabTarget:
    """A running lab's ISP addresses, its clock, its internet namespace and an address there to send from."""
    from netvigil.lab.netns import LabError
    from netvigil.lab.plan import ns_prefix
    from netvigil.lab.runtime import read_state

    try:
        state = read_state(lab)
        table = state.ip_table()
        clock = state.clock()
    except (LabError, OSError, ValueError) as exc:
        raise ReachabilityError(f"lab {lab!r}: {exc}") from None
    netns = Path("/run/netns") / (ns_prefix(lab) + "inet")
    if not netns.exists():
        raise ReachabilityError(f"lab {lab!r} has no internet namespace ({netns}); is it running? "
                                f"(`netvigil lab status -n {lab}`)")
    return LabTarget(load_lab_blocks(table), LabClock(clock), netns, lab_source(table))


# -- output ------------------------------------------------------------------------------------------------------

def store_signals(signals: list[Signal]) -> Path:
    """Into the signals store (`netvigil.tasks.signals`: `<data dir>/signals/signals.jsonl`), joined with what is
    there; writing the growing series again after each round only fills in its new points."""
    from netvigil.tasks import signals as store

    try:
        store.write_signals(signals)
    except (OSError, store.SignalsError) as exc:
        raise SignalsWriteError(f"cannot store signals in {store.signals_dir()}: {exc}") from None
    return store.signals_dir() / "signals.jsonl"


def write_signals(path: Path, signals: list[Signal]) -> None:
    """JSONL, one msgspec-encoded Signal per line, replaced atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    enc = msgspec.json.Encoder()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            for s in signals:
                fh.write(enc.encode(s) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        raise SignalsWriteError(f"cannot write signals to {path}: {exc}") from None


def read_signals(path: Path) -> list[Signal]:
    dec = msgspec.json.Decoder(Signal)
    return [dec.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


# -- the run -----------------------------------------------------------------------------------------------------

@dataclass(slots=True)
class MakeReachabilityParams:
    blocks: list[Block]
    rounds: int                            # 0: until stopped
    step: int                              # seconds between rounds, in the signal's clock
    rate: float                            # packets per second, all methods together
    config: ProbeConfig = field(default_factory=ProbeConfig)
    belief: BeliefParams = field(default_factory=BeliefParams)
    clock: SignalClock = field(default_factory=RealClock)
    netns: Path | None = None              # probe from inside this network namespace (a lab's internet side)
    out: Path | None = None                # a JSONL file of its own; None: the signals store (store_signals)
    measure: str = "count"                 # count | share
    seed: int | None = None
    align: bool = True                     # rounds on multiples of `step`
    on_round: Callable[[int, RoundStats, list[Signal]], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass(slots=True)
class ReachabilityRun:
    blocks: int = 0
    measurable: int = 0                    # blocks with at least one ever-responsive address
    start: int = 0
    step: int = 0
    round_real_seconds: float = 0.0
    census: RoundStats = field(default_factory=RoundStats)
    rounds: list[RoundStats | None] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    out: Path | None = None
    rate: float = 0.0
    packets_per_second: float = 0.0        # what was sent over the whole run, census included
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        ran = [r for r in self.rounds if r is not None]
        return {
            "method": RULES_ID, "blocks": self.blocks, "measurable_blocks": self.measurable, "start": self.start,
            "step": self.step,
            "round_real_seconds": round(self.round_real_seconds, 3), "rounds": len(self.rounds),
            "missed_rounds": len(self.rounds) - len(ran), "census": self.census.as_dict(),
            "per_round": [r.as_dict() if r is not None else None for r in self.rounds],
            "probes_per_round": round(sum(r.probes for r in ran) / len(ran), 2) if ran else 0,
            "packets_per_round": round(sum(r.packets for r in ran) / len(ran), 2) if ran else 0,
            "rate": self.rate, "packets_per_second": round(self.packets_per_second, 2),
            "out": str(self.out) if self.out else None, "notes": self.notes,
            "signals": [msgspec.to_builtins(s) for s in self.signals],
        }


def _thread_netns() -> os.stat_result:
    return os.stat("/proc/thread-self/ns/net")


def _enter_netns(path: Path) -> None:
    """Move the calling thread (only it) into the network namespace at `path`."""
    try:
        here, there = _thread_netns(), os.stat(path)
    except OSError as exc:
        raise ReachabilityError(f"network namespace {path}: {exc}") from None
    if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if hasattr(os, "setns"):
            os.setns(fd, CLONE_NEWNET)
        else:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
    except OSError as exc:
        raise ReachabilityError(f"cannot enter {path} ({exc.strerror}): entering a lab namespace needs root; or "
                                "run the prober there with `netvigil lab exec -n LAB internet -- netvigil "
                                "reachability --lab LAB ...`") from None
    finally:
        os.close(fd)


def _icmp_setup(cfg: ProbeConfig, notes: list[str]) -> ProbeConfig:
    """Keep ICMP if this namespace allows it (raw socket as root, else the unprivileged datagram socket)."""
    if not cfg.icmp:
        return cfg
    problem = icmp_problem(cfg.icmp_privileged)
    if problem is None:
        return cfg
    if cfg.icmp_privileged and icmp_problem(False) is None:
        notes.append("ICMP through the unprivileged datagram socket (no raw socket here)")
        return replace(cfg, icmp_privileged=False)
    if not cfg.ports:
        raise ReachabilityError(f"{problem}, and no TCP ports to probe instead")
    notes.append(f"{problem}: probing with TCP only (ports {','.join(map(str, cfg.ports))})")
    return replace(cfg, icmp=False)


def _check_source(source: str | None) -> None:
    """A source address that is not ours would turn every probe into a silent miss: refuse it up front."""
    if source is None:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((source, 0))
        except OSError as exc:
            raise ReachabilityError(f"cannot send from {source}: {exc.strerror or exc}") from None


async def _sleep_until(real: float, stop: threading.Event) -> bool:
    """Sleep until time.time() >= real; False if asked to stop first."""
    while (left := real - time.time()) > 0:
        if stop.is_set():
            return False
        await asyncio.sleep(min(left, 0.2))
    return not stop.is_set()


async def _unless_stopped(coro, stop: threading.Event):
    """Await `coro`, but give up (cancel it, return None) as soon as `stop` is set: Ctrl-C ends a long census or
    round at once instead of after it."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        if stop.is_set():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        await asyncio.wait({task}, timeout=0.2)
    return task.result()


async def _run(p: MakeReachabilityParams, run: ReachabilityRun) -> None:
    _check_source(p.config.source)
    cfg = _icmp_setup(p.config, run.notes)
    bucket = TokenBucket(p.rate)
    rng = random.Random(p.seed)
    began = time.time()
    census = RoundStats()

    async def probe_census(addr: str) -> bool:
        return await probe_address(addr, cfg, bucket, census)

    t0 = time.monotonic()
    models: list[BlockModel] | None = await _unless_stopped(run_census(p.blocks, probe_census, p.belief), p.stop)
    if models is None:
        return
    census.seconds = time.monotonic() - t0
    census.blocks = count_states(m.state for m in models)
    run.census = census
    run.measurable = sum(1 for m in models if m.state is not BlockState.UNMEASURED)
    if run.measurable < len(models):
        run.notes.append(f"{len(models) - run.measurable} of {len(models)} blocks had no address answering in the "
                         "census and are not counted")
    run.round_real_seconds = p.step / p.clock.speed
    methods = int(cfg.icmp) + len(cfg.ports)
    if run.measurable * methods > p.rate * run.round_real_seconds * (1 - ROUND_MARGIN):
        run.notes.append(f"--rate {p.rate:g}/s cannot send even one probe to each of {run.measurable} blocks "
                         f"in a {run.round_real_seconds:.3g} s round; rounds will time out")
    run.start = first_round_start(p.clock.now(), p.step, p.align)
    run.step = p.step

    def save(signals: list[Signal]) -> None:
        if p.out is not None:
            write_signals(p.out, signals)
            run.out = p.out
        else:
            run.out = store_signals(signals)
    states: list[list[BlockState] | None] = []
    i = 0
    while p.rounds == 0 or i < p.rounds:
        t_start = run.start + i * p.step
        real_start, real_next = p.clock.real_at(t_start), p.clock.real_at(t_start + p.step)
        if not await _sleep_until(real_start, p.stop):
            break
        if time.time() >= real_next:  # this whole round's slot has passed (suspended, or a slow census)
            states.append(None)
            run.rounds.append(None)
        else:
            stats = RoundStats()

            async def probe_round(addr: str, stats: RoundStats = stats) -> bool:
                return await probe_address(addr, cfg, bucket, stats)

            t0 = time.monotonic()
            deadline = real_next - ROUND_MARGIN * (real_next - real_start)
            done = await _unless_stopped(run_round(models, probe_round, rng, p.belief, deadline=deadline,
                                                   clock=time.time), p.stop)
            if done is None:
                break  # stopped mid-round: that round is not recorded
            models, results = done
            stats.seconds = time.monotonic() - t0
            stats.blocks = count_states(r.state for r in results)
            stats.timed_out = sum(1 for r in results if r.timed_out)
            states.append([r.state for r in results])
            run.rounds.append(stats)
        run.signals = aggregate_signals(p.blocks, states, run.start, p.step, p.measure)
        save(run.signals)
        if p.on_round is not None and run.rounds[-1] is not None:
            p.on_round(i, run.rounds[-1], run.signals)
        i += 1
    sent = census.packets + sum(r.packets for r in run.rounds if r is not None)
    run.packets_per_second = sent / max(time.time() - began, 1e-9)
    # Stopped before the first round: nothing measured, nothing written (the census alone is no signal).


def make_reachability_run(p: MakeReachabilityParams) -> ReachabilityRun:
    """Census, then `rounds` rounds on the schedule; Signals are rewritten after every round. Runs on its own
    thread (which enters `netns` when given); Ctrl-C or `p.stop` ends it after writing what was measured."""
    if not p.blocks:
        raise ReachabilityError("no blocks to probe")
    if p.step < 1:
        raise ReachabilityError("a round must be at least 1 s long (in the signal's clock)")
    run = ReachabilityRun(blocks=len(p.blocks), rate=p.rate)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            if p.netns is not None:
                _enter_netns(p.netns)
            asyncio.run(_run(p, run))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            failure.append(exc)

    thread = threading.Thread(target=work, name="reachability", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        p.stop.set()
        thread.join()
        run.notes.append(f"stopped after {len(run.rounds)} rounds; what was measured is written")
    if failure:
        raise failure[0]
    return run

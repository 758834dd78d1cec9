"""Active reachability probing in the style of Trinocular: is each address block up, down or uncertain, round by
round, and how many blocks of each ASN / region / country answer (`docs/reachability.md`).

Model (after Quan, Heidemann, Pradkin, "Trinocular", SIGCOMM 2013; the parameter values are our own, as data):
- A *block* (a /24, or a longer prefix such as one lab address) has a set of *ever-responsive* addresses E(b),
  learned in a census, and an *availability* A = the chance that one of them answers a single probe while the
  block is up.
- The prober keeps a *belief* B = P(block up). A positive reply multiplies the odds of "up" by A / eps (eps: the
  chance of a reply from a block that is down, tiny); a missing reply by (1 - A) / (1 - eps). The block is UP
  when B >= 0.9, DOWN when B <= 0.1, otherwise UNCERTAIN.
- Each round probes E(b) in a random order, one probe at a time, until the belief is decided (up after the first
  positive; down after k negatives, k following from A and the starting belief) or 15 probes were sent.

A "probe" of one address is every configured method at once (ICMP echo, TCP SYN to each port); it is positive
when any answers. For TCP both a SYN-ACK and an RST mean "something at that address is up"; a timeout or an
ICMP unreachable is negative. Packets, not probes, are what the global token bucket paces.

Privacy: per-address results live only in memory during a run. What leaves this module for output is per-entity
counts (`aggregate_signals`) and anonymous totals (`RoundStats`).

Pure parts (no I/O): the belief update, the decision, k, availability, the schedule, the aggregation. The I/O
parts (`probe_address`, `run_census`, `run_round`) take their probe function and token bucket as arguments.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import random
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from netvigil.model.signal import EntityType, Signal

__all__ = [
    "DATASOURCE", "RULES_ID", "BeliefParams", "Block", "BlockModel", "BlockRound", "BlockState", "ProbeConfig",
    "RoundStats", "TokenBucket", "aggregate_signals", "availability", "census_model", "count_states", "decide",
    "entity_keys", "first_round_start", "icmp_problem", "negatives_to_down", "probe_address", "refill",
    "round_start_belief", "run_census", "run_round", "tcp_answers", "update_belief", "update_model",
]

DATASOURCE = "reachability"
RULES_ID = "reach-belief-v1"  # the belief model below; a change of meaning gets a new id


class BlockState(StrEnum):
    UP = "up"
    DOWN = "down"
    UNCERTAIN = "uncertain"      # 15 probes were not enough to decide, or the round ran out of time
    UNMEASURED = "unmeasured"    # no ever-responsive address: the block cannot be judged at all


@dataclass(frozen=True, slots=True)
class BeliefParams:
    """The belief model's parameters (id `RULES_ID`): the 15-probe cap as Trinocular's, the rest our own."""

    up: float = 0.9                   # B >= up: the block is up
    down: float = 0.1                 # B <= down: the block is down
    max_probes: int = 15              # per block per round
    false_reply: float = 1e-4         # eps = P(a reply | block down): stray or spoofed replies
    floor: float = 0.01               # a carried belief starts each round within [floor, cap], so that no block
    cap: float = 0.99                 # ... becomes impossible to convince
    min_availability: float = 0.1     # A is kept within [min, max]: A = 1 would make one lost packet an outage
    max_availability: float = 0.99
    census_passes: int = 2            # probes per candidate address in the census


@dataclass(frozen=True, slots=True)
class Block:
    """An address block and the entities it counts for (what a geo-IP database says about it)."""

    prefix: str                       # "203.0.113.0/24", or "192.0.2.14/32" for one lab address
    asn: str                          # "AS64601"
    country: str | None = None        # "XA"
    region: str | None = None         # "north" (the entity code becomes "XA/north")

    def candidates(self) -> list[str]:
        """Every address the census tries: all hosts of the prefix (the prefix itself for a /32 or /31)."""
        net = ipaddress.ip_network(self.prefix)
        return [str(a) for a in (net.hosts() if net.num_addresses > 2 else net)]


@dataclass(frozen=True, slots=True)
class BlockModel:
    """What the prober knows about one block between rounds (in memory only: it holds addresses)."""

    responsive: tuple[str, ...]       # E(b), from the census
    answered: int                     # positives seen while the block was up (census included) ...
    asked: int                        # ... out of this many probes: A = answered / asked
    belief: float                     # B(up) at the end of the last round
    state: BlockState

    @property
    def availability(self) -> float:
        return self.answered / self.asked if self.asked else 0.0


@dataclass(frozen=True, slots=True)
class BlockRound:
    """One block's round: anonymous (no address), kept for aggregation and totals."""

    state: BlockState
    probes: int
    positives: int
    timed_out: bool = False           # still probing when the round's time was up


@dataclass(slots=True)
class RoundStats:
    """Totals of one round or census, for the run summary."""

    probes: int = 0                   # address probes (each = all methods at once)
    packets: int = 0                  # ICMP echoes + TCP SYNs sent
    blocks: dict[str, int] = field(default_factory=dict)   # state -> blocks
    seconds: float = 0.0
    timed_out: int = 0                # blocks still probing when the round's time was up

    def as_dict(self) -> dict:
        return {"probes": self.probes, "packets": self.packets, "blocks": dict(self.blocks),
                "seconds": round(self.seconds, 3), "timed_out": self.timed_out}


# -- the belief (pure) -------------------------------------------------------------------------------------------

def _clamp(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def availability(answered: int, asked: int, params: BeliefParams) -> float:
    """A(E(b)) as the belief uses it: the observed answer rate, kept within [min, max]."""
    raw = answered / asked if asked else params.min_availability
    return _clamp(raw, params.min_availability, params.max_availability)


def update_belief(belief: float, positive: bool, avail: float, params: BeliefParams) -> float:
    """Bayes' rule for one probe: P(up | reply) or P(up | no reply), given A and eps."""
    eps = params.false_reply
    if positive:
        up, down = avail * belief, eps * (1.0 - belief)
    else:
        up, down = (1.0 - avail) * belief, (1.0 - eps) * (1.0 - belief)
    total = up + down
    return up / total if total > 0 else belief


def decide(belief: float, params: BeliefParams) -> BlockState:
    if belief >= params.up:
        return BlockState.UP
    if belief <= params.down:
        return BlockState.DOWN
    return BlockState.UNCERTAIN


def round_start_belief(belief: float, params: BeliefParams) -> float:
    """The belief a round starts from: the last one, within [floor, cap]."""
    return _clamp(belief, params.floor, params.cap)


def negatives_to_down(avail: float, start: float, params: BeliefParams) -> int | None:
    """k: how many missing replies in a row take the belief from `start` to DOWN; None if more than the cap."""
    belief = start
    for k in range(1, params.max_probes + 1):
        belief = update_belief(belief, False, avail, params)
        if belief <= params.down:
            return k
    return None


def census_model(replies: dict[str, int], passes: int, params: BeliefParams) -> BlockModel:
    """From census replies (address -> positives out of `passes` probes) to the block's starting model."""
    responsive = tuple(sorted((a for a, n in replies.items() if n > 0), key=ipaddress.ip_address))
    if not responsive:
        return BlockModel((), 0, 0, 0.0, BlockState.UNMEASURED)
    answered = sum(replies[a] for a in responsive)
    return BlockModel(responsive, answered, passes * len(responsive), params.cap, BlockState.UP)


def update_model(model: BlockModel, result: BlockRound, belief: float) -> BlockModel:
    """After a round: keep the belief and state; learn availability only from rounds decided UP (the ratio of
    sums over such rounds is a consistent estimate of A even though a round stops at its first reply)."""
    if result.state is BlockState.UP:
        return replace(model, belief=belief, state=result.state, answered=model.answered + result.positives,
                       asked=model.asked + result.probes)
    return replace(model, belief=belief, state=result.state)


# -- schedule and rate (pure parts) ------------------------------------------------------------------------------

def first_round_start(now: float, step: int, align: bool = True) -> int:
    """The first round's start in the signal's clock: the next multiple of `step` (IODA-style aligned bins)."""
    return math.ceil(now / step) * step if align else math.ceil(now)


def refill(tokens: float, elapsed: float, rate: float, burst: float) -> float:
    """A token bucket's level after `elapsed` seconds."""
    return min(burst, tokens + max(0.0, elapsed) * rate)


class TokenBucket:
    """The global packet rate: `rate` packets per second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else min(rate, 50.0))
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()
        self.taken = 0

    async def take(self, n: int = 1) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = self._clock()
                self._tokens = refill(self._tokens, now - self._last, self.rate, self.burst)
                self._last = now
                if self._tokens >= n:
                    self._tokens -= n
                    self.taken += n
                    return
                await asyncio.sleep((n - self._tokens) / self.rate)


# -- aggregation (pure) ------------------------------------------------------------------------------------------

def entity_keys(block: Block) -> list[tuple[str, str, str | None]]:
    """(entity type, entity code, country) for every entity the block counts toward."""
    keys: list[tuple[str, str, str | None]] = [(EntityType.ASN.value, block.asn, block.country)]
    if block.country:
        keys.append((EntityType.COUNTRY.value, block.country, block.country))
        if block.region:
            keys.append((EntityType.REGION.value, f"{block.country}/{block.region}", block.country))
    return keys


_ORDER = {EntityType.COUNTRY.value: 0, EntityType.REGION.value: 1, EntityType.ASN.value: 2}


def aggregate_signals(blocks: Sequence[Block], rounds: Sequence[Sequence[BlockState] | None], start: int, step: int,
                      measure: str = "count", datasource: str = DATASOURCE) -> list[Signal]:
    """Per-entity signals: value i = blocks UP in round i (`count`) or UP / decided (`share`).

    `rounds[i]` holds one state per block (same order as `blocks`), or None for a round that did not run. A
    round in which none of an entity's blocks was decided (all uncertain) is a missing point (None), not zero.
    Blocks without any ever-responsive address are not counted anywhere."""
    if measure not in ("count", "share"):
        raise ValueError(f"measure {measure!r}: count or share")
    members: dict[tuple[str, str, str | None], list[int]] = defaultdict(list)
    for i, block in enumerate(blocks):
        for key in entity_keys(block):
            members[key].append(i)
    out: list[Signal] = []
    for (etype, code, country), idx in sorted(members.items(), key=lambda kv: (_ORDER[kv[0][0]], kv[0][1])):
        values: list[float | None] = []
        for states in rounds:
            if states is None:
                values.append(None)
                continue
            own = [states[i] for i in idx if states[i] is not BlockState.UNMEASURED]
            decided = [s for s in own if s in (BlockState.UP, BlockState.DOWN)]
            if not decided:
                values.append(None)
                continue
            up = sum(1 for s in decided if s is BlockState.UP)
            values.append(float(up) if measure == "count" else round(up / len(decided), 6))
        if all(all(states is None or states[i] is BlockState.UNMEASURED for i in idx) for states in rounds) and rounds:
            continue  # nothing measurable in this entity: no signal rather than a row of gaps
        out.append(Signal(entity_type=etype, entity_code=code, datasource=datasource, start=start, step=step,
                          values=values, country=country))
    return out


# -- measuring (I/O) ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProbeConfig:
    ports: tuple[int, ...] = (80, 443)
    icmp: bool = True
    icmp_privileged: bool = True      # raw socket (root); False: the kernel's unprivileged ICMP datagram socket
    timeout: float = 2.0              # seconds one probe waits for any answer
    source: str | None = None         # local address to send from (the lab: an address abroad, see docs)


def icmp_problem(privileged: bool) -> str | None:
    """Why ICMP cannot be used here (None: it can). Call it in the network namespace that will probe."""
    try:
        from icmplib import ICMPv4Socket
        from icmplib.exceptions import SocketPermissionError
    except ImportError:
        return "icmplib is not installed"
    try:
        ICMPv4Socket(privileged=privileged).close()
    except SocketPermissionError:
        how = "a raw socket needs root (CAP_NET_RAW)" if privileged else (
            "unprivileged ICMP sockets are off (sysctl net.ipv4.ping_group_range)")
        return f"ICMP unavailable: {how}"
    except OSError as exc:
        return f"ICMP unavailable: {exc}"
    return None


async def tcp_answers(address: str, port: int, timeout: float, source: str | None = None) -> bool:
    """A SYN answered by SYN-ACK (connected) or RST (refused): the address is up. Anything else: no answer."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if source is not None:
            sock.bind((source, 0))
        await asyncio.wait_for(loop.sock_connect(sock, (address, port)), timeout)
        return True
    except ConnectionRefusedError:
        return True
    except (TimeoutError, OSError):
        return False
    finally:
        # Close with RST (linger 0): a probe should leave no TIME_WAIT and no half-open connection behind.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()


async def _icmp_answers(address: str, timeout: float, privileged: bool, source: str | None) -> bool:
    from icmplib import async_ping
    from icmplib.exceptions import ICMPLibError

    try:
        host = await async_ping(address, count=1, timeout=timeout, privileged=privileged, source=source)
    except (ICMPLibError, OSError):
        return False
    return host.is_alive


async def probe_address(address: str, cfg: ProbeConfig, bucket: TokenBucket | None = None,
                        stats: RoundStats | None = None) -> bool:
    """One probe: every method at once, positive as soon as one answers (the others are cancelled)."""
    methods: list[Awaitable[bool]] = []
    if cfg.icmp:
        methods.append(_icmp_answers(address, cfg.timeout, cfg.icmp_privileged, cfg.source))
    methods += [tcp_answers(address, port, cfg.timeout, cfg.source) for port in cfg.ports]
    tasks: list[asyncio.Task[bool]] = []
    try:
        for method in methods:
            if bucket is not None:
                await bucket.take()
            tasks.append(asyncio.ensure_future(method))
        if stats is not None:
            stats.probes += 1
            stats.packets += len(tasks)
        for done in asyncio.as_completed(tasks):
            if await done:
                return True
        return False
    finally:
        for t in tasks:
            t.cancel()
        for m in methods[len(tasks):]:
            m.close()  # never started (cancelled while waiting for a token)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


Prober = Callable[[str], Awaitable[bool]]


async def run_census(blocks: Sequence[Block], probe: Prober, params: BeliefParams,
                     concurrency: int = 256) -> list[BlockModel]:
    """Probe every candidate address `census_passes` times; E(b) = those that answered at least once."""
    gate = asyncio.Semaphore(concurrency)
    replies: list[dict[str, int]] = [dict.fromkeys(b.candidates(), 0) for b in blocks]

    async def one(i: int, addr: str) -> None:
        async with gate:
            if await probe(addr):
                replies[i][addr] += 1

    for _ in range(params.census_passes):
        await asyncio.gather(*(one(i, a) for i, r in enumerate(replies) for a in r))
    return [census_model(r, params.census_passes, params) for r in replies]


async def _probe_block(model: BlockModel, probe: Prober, rng: random.Random,
                       params: BeliefParams) -> tuple[BlockRound, float]:
    order = list(model.responsive)
    rng.shuffle(order)
    avail = availability(model.answered, model.asked, params)
    belief = round_start_belief(model.belief, params)
    probes = positives = 0
    while probes < params.max_probes:
        positive = await probe(order[probes % len(order)])
        probes += 1
        positives += positive
        belief = update_belief(belief, positive, avail, params)
        state = decide(belief, params)
        if (positive and state is BlockState.UP) or (not positive and state is BlockState.DOWN):
            return BlockRound(state, probes, positives), belief
    # Out of probes: a block is only called UP on a reply in this round; a belief still high after misses only
    # means its availability is too low to tell (Trinocular's "uncertain").
    state = BlockState.DOWN if belief <= params.down else BlockState.UNCERTAIN
    return BlockRound(state, probes, positives), belief


async def run_round(models: Sequence[BlockModel], probe: Prober, rng: random.Random, params: BeliefParams,
                    deadline: float | None = None, concurrency: int = 512,
                    clock: Callable[[], float] = time.monotonic) -> tuple[list[BlockModel], list[BlockRound]]:
    """One round over every measurable block, blocks in a random order; a block still undecided at `deadline`
    (in `clock` seconds) is UNCERTAIN this round and keeps its belief."""
    gate = asyncio.Semaphore(concurrency)
    results: list[tuple[BlockRound, float] | None] = [None] * len(models)

    async def one(i: int) -> None:
        async with gate:
            results[i] = await _probe_block(models[i], probe, rng, params)

    todo = [i for i, m in enumerate(models) if m.state is not BlockState.UNMEASURED]
    rng.shuffle(todo)
    tasks = [asyncio.ensure_future(one(i)) for i in todo]
    if tasks:
        timeout = None if deadline is None else max(0.0, deadline - clock())
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    new_models: list[BlockModel] = []
    rounds: list[BlockRound] = []
    for model, res in zip(models, results):
        if model.state is BlockState.UNMEASURED:
            rounds.append(BlockRound(BlockState.UNMEASURED, 0, 0))
            new_models.append(model)
        elif res is None:
            rounds.append(BlockRound(BlockState.UNCERTAIN, 0, 0, timed_out=True))
            new_models.append(model)
        else:
            rounds.append(res[0])
            new_models.append(update_model(model, res[0], res[1]))
    return new_models, rounds


def count_states(states: Iterable[BlockState]) -> dict[str, int]:
    """Blocks per state (anonymous totals for the run summary)."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s.value] = counts.get(s.value, 0) + 1
    return counts

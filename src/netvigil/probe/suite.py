"""Which nettests one `probe run` runs, and how each is set up: the test modules stay independent, and the runner
sees every test the same way (a name, its inputs, a budget, and a coroutine that measures one input).

`all` is the suite for a country: Web Connectivity on the URL lists, the four messengers and Tor, and — when their
inputs exist — VPN endpoints from the user's configs, the throttling test on its targets and the speed test
against the control helper.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from netvigil.probe.netx.tls import TLSConfig

__all__ = ["ALL", "NETTESTS", "Nettest", "SuiteOptions", "build_nettests", "parse_tests"]

WEB = "web_connectivity"
NETTESTS = (WEB, "whatsapp", "telegram", "facebook_messenger", "signal", "tor", "vpn", "throttling", "speedtest")
ALL = "all"
BANDWIDTH_TESTS = frozenset({"throttling", "speedtest"})


@dataclass(frozen=True, slots=True)
class Nettest:
    """One test of a run other than Web Connectivity's URL pool."""

    name: str
    version: str
    inputs: list[str | None]
    measure: Callable[[str | None], Awaitable[Any]]
    budget: float
    helpers: dict | None = None
    bandwidth: bool = False      # measures throughput: runs alone, after the URL pool, so pages do not share the link


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    """What the CLI flags say about the non-URL tests; None/empty keeps each test's defaults."""

    tls: TLSConfig = field(default_factory=TLSConfig)
    budget: float | None = None
    timeouts: dict[str, float] = field(default_factory=dict)      # dns/connect/tls/http_timeout
    asn_lookup: Any = None
    telegram_dcs: tuple[str, ...] = ()
    facebook_asns: tuple[int, ...] = ()
    signal_ca: str | None = None
    tor_targets: tuple[Path, ...] = ()
    tor_bridges: tuple[str, ...] = ()
    vpn_configs: tuple[Path, ...] = ()
    throttle_targets: tuple[str, ...] = ()
    throttle_address: str | None = None
    throttle_path: str | None = None
    control_url: str | None = None
    control_tls: TLSConfig = field(default_factory=TLSConfig)


def parse_tests(text: str | None) -> list[str]:
    """`--test` as a list of test names (`all` expands); ValueError names the unknown ones."""
    names = [n.strip() for n in (text or WEB).split(",") if n.strip()]
    if ALL in names:
        return list(NETTESTS)
    unknown = [n for n in names if n not in NETTESTS]
    if unknown:
        raise ValueError(f"unknown test(s) {', '.join(unknown)}; choose from {', '.join(NETTESTS)} or all")
    return list(dict.fromkeys(names))


def _kw(opts: SuiteOptions, *names: str) -> dict[str, Any]:
    kw = {k: v for k, v in opts.timeouts.items() if k in names}
    if opts.budget is not None and "budget" in names:
        kw["budget"] = opts.budget
    return kw


_STEPS = ("budget", "dns_timeout", "connect_timeout", "tls_timeout", "http_timeout")


def build_nettests(names: list[str], opts: SuiteOptions, *, explicit: bool) -> tuple[list[Nettest], list[str]]:
    """The Nettests for `names` (Web Connectivity excluded: the runner's URL pool does it) and notes on tests
    left out for lack of inputs. With `explicit` (the user named the test), a test without inputs is an error
    (ValueError); in `all` it is left out with a note."""
    import importlib

    def module(name: str) -> Any:
        # Only the named tests are imported: throttling loads scipy (seconds), on purpose before any timed decision.
        return importlib.import_module(f"netvigil.probe.nettests.{name}")

    tests: list[Nettest] = []
    notes: list[str] = []

    def add(test: Any, o: Any) -> None:
        inputs = test.default_inputs(o)
        if not inputs:
            raise ValueError(f"{test.TEST_NAME}: nothing to measure")
        tests.append(Nettest(test.TEST_NAME, test.TEST_VERSION, inputs, partial(test.measure, opts=o),
                             o.budget, test.test_helpers(o), bandwidth=test.TEST_NAME in BANDWIDTH_TESTS))

    def skip(name: str, why: str) -> None:
        if explicit:
            raise ValueError(f"{name}: {why}")
        notes.append(f"{name} left out: {why}")

    messenger = dict(tls=opts.tls, asn_lookup=opts.asn_lookup, **_kw(opts, *_STEPS))
    for name in names:
        if name == "web_connectivity":
            continue
        mod = module(name)
        if name == "whatsapp":
            add(mod, mod.WhatsAppOptions(**messenger))
        elif name == "telegram":
            extra = {"datacenters": opts.telegram_dcs} if opts.telegram_dcs else {}
            add(mod, mod.TelegramOptions(**messenger, **extra))
        elif name == "facebook_messenger":
            extra = {"expected_asns": frozenset(opts.facebook_asns)} if opts.facebook_asns else {}
            add(mod, mod.FacebookMessengerOptions(**messenger, **extra))
        elif name == "signal":
            add(mod, mod.SignalOptions(**messenger, ca_file=opts.signal_ca))
        elif name == "tor":
            targets = mod.make_targets(files=opts.tor_targets, bridges=opts.tor_bridges) \
                if (opts.tor_targets or opts.tor_bridges) else None
            if targets is not None and targets.problems:
                raise ValueError("tor targets: " + "; ".join(str(p) for p in targets.problems[:5]))
            extra = {"targets": targets.targets} if targets is not None else {}
            add(mod, mod.TorOptions(**extra, **_kw(opts, *_STEPS)))
        elif name == "vpn":
            endpoints = [e for p in opts.vpn_configs for e in mod.load_vpn_config(p)]
            if not endpoints:
                skip("vpn", "no endpoints (give --vpn-config; provider sites are Web Connectivity URLs)")
                continue
            add(mod, mod.VpnOptions(endpoints=tuple(endpoints),
                                    **_kw(opts, "budget", "dns_timeout", "connect_timeout")))
        elif name == "throttling":
            extra: dict[str, Any] = {}
            if opts.throttle_targets:
                extra["targets"] = opts.throttle_targets
            if opts.throttle_address:
                extra["address"] = opts.throttle_address
            if opts.throttle_path:
                extra["path"] = opts.throttle_path
            add(mod, mod.ThrottlingOptions(**extra))
        elif name == "speedtest":
            if not opts.control_url:
                skip("speedtest", "needs --control (the helper serves the speed endpoints)")
                continue
            add(mod, mod.SpeedtestOptions(control_url=opts.control_url, tls=opts.control_tls))
    return tests, notes
